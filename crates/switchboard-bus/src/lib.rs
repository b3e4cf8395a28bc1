//! Switchboard's cluster bus: how a node reaches the other nodes.
//!
//! Routing is targeted: a node publishes to a [`Topic`] and only the nodes subscribed to it
//! receive the message. Each node is subscribed to its own [`Topic::Node`] inbox (answers meant for
//! it alone) and to [`Topic::Cluster`] (presence and heartbeats); it subscribes to a
//! [`Topic::User`] while it holds a connection of that user (private messages and events for the
//! user) and to a [`Topic::Room`] while it has a member of that room online.
//!
//! [`InProcessBroker`] connects nodes that live in one process: the standalone server (a cluster
//! of one) and the test kit's multi-node clusters. Networked backends implement the same trait.
#![forbid(unsafe_code)]

mod in_process;
mod nats;
mod redis;

pub use self::redis::RedisBus;
pub use in_process::{InProcessBroker, InProcessBus};
pub use nats::NatsBus;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Where a bus message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// One node's inbox.
    Node(String),
    /// Every node with a member of this room online.
    Room(String),
    /// Every node holding a connection of this user.
    User(String),
    /// Every node.
    Cluster,
}

/// A message received from another node.
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub from_node: String,
    pub topic: Topic,
    pub payload: Bytes,
}

/// What a node's bus reports.
#[derive(Debug, Clone)]
pub enum BusEvent {
    Message(BusMessage),
    /// The link to the broker was lost and is back, with every subscription restored. Messages
    /// published meanwhile may be lost: the node re-announces itself and tells its clients to
    /// resume, which recovers them from the store.
    Reconnected,
    /// The link to the broker was lost; publications fail until `Reconnected`.
    Disconnected,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached; the caller decides whether to fail or retry.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A receiving node's inbound queue is full; the message was not taken by that node.
    #[error("bus queue of node {node} is full")]
    Full { node: String },
}

/// Per-node bus message counters, shown in `/metrics`: they prove routing is targeted.
#[derive(Debug, Default)]
pub struct BusCounters {
    pub sent: std::sync::atomic::AtomicU64,
    pub received: std::sync::atomic::AtomicU64,
    /// What was dropped before this node could take it.
    pub dropped: DroppedInbound,
}

/// The topics whose messages were dropped on their way into this node (its inbound queue was
/// full, or the broker cut a slow consumer off): the node asks the connections they were meant
/// for to resume, which recovers them from the store. `unknown` when the topic is not known.
#[derive(Debug, Default)]
pub struct DroppedInbound {
    state: parking_lot::Mutex<(std::collections::BTreeSet<Topic>, bool)>,
}

impl DroppedInbound {
    /// Records a drop of `topic`'s messages, or of unknown ones (`None`).
    pub fn record(&self, topic: Option<&Topic>) {
        let mut state = self.state.lock();
        match topic {
            Some(topic) => {
                state.0.insert(topic.clone());
            }
            None => state.1 = true,
        }
    }

    /// The topics dropped since the last call, and whether unknown ones were.
    pub fn take(&self) -> (Vec<Topic>, bool) {
        let mut state = self.state.lock();
        let topics = std::mem::take(&mut state.0).into_iter().collect();
        (topics, std::mem::take(&mut state.1))
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;
    /// Sends to every other node subscribed to `topic` (never back to this node).
    async fn publish(&self, topic: Topic, payload: Bytes) -> Result<(), BusError>;
    async fn subscribe(&self, topic: Topic) -> Result<(), BusError>;
    async fn unsubscribe(&self, topic: Topic) -> Result<(), BusError>;
    /// The stream of messages and link events for this node; it can be taken once.
    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEvent>>;
    fn counters(&self) -> &BusCounters;
}
