use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::{Bus, BusCounters, BusError, BusEvent, BusMessage, Topic};

/// Bound of each node's inbound queue: a node that stops reading loses the messages over it
/// (reported as [`BusError::Full`]) instead of growing without limit.
const INBOX_CAPACITY: usize = 65_536;

/// The shared switchboard of nodes living in one process.
#[derive(Default, Clone)]
pub struct InProcessBroker {
    inner: Arc<RwLock<BrokerState>>,
    /// Messages for nodes whose delivery is held (a test's slow node), in order.
    held: Arc<Mutex<HashMap<String, Vec<BusEvent>>>>,
}

#[derive(Default)]
struct BrokerState {
    inboxes: HashMap<String, mpsc::Sender<BusEvent>>,
    subscribers: HashMap<Topic, HashSet<String>>,
}

impl InProcessBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node, subscribed to its own inbox and to the cluster topic.
    pub fn join(&self, node_id: &str) -> InProcessBus {
        let (sender, receiver) = mpsc::channel(INBOX_CAPACITY);
        let mut state = self.inner.write();
        state.inboxes.insert(node_id.to_owned(), sender);
        for topic in [Topic::Node(node_id.to_owned()), Topic::Cluster] {
            state.subscribers.entry(topic).or_default().insert(node_id.to_owned());
        }
        InProcessBus {
            broker: self.clone(),
            node_id: node_id.to_owned(),
            incoming: Mutex::new(Some(receiver)),
            counters: BusCounters::default(),
        }
    }

    /// Holds back what is published to `node_id` until [`release`](Self::release): the node is as
    /// slow as a test needs it to be, which is how tests open the windows between nodes.
    pub fn hold(&self, node_id: &str) {
        self.held.lock().entry(node_id.to_owned()).or_default();
    }

    /// Delivers what was held for `node_id`, in order, and stops holding.
    pub fn release(&self, node_id: &str) {
        let inbox = self.inner.read().inboxes.get(node_id).cloned();
        let mut held = self.held.lock();
        let Some(events) = held.remove(node_id) else { return };
        let Some(inbox) = inbox else { return };
        for event in events {
            if inbox.try_send(event).is_err() {
                tracing::warn!(node = node_id, "held bus message dropped: inbox full or gone");
            }
        }
    }

    /// Delivers one event to a node, or holds it.
    fn deliver(&self, node_id: &str, inbox: &mpsc::Sender<BusEvent>, event: BusEvent) -> Result<(), BusError> {
        let mut held = self.held.lock();
        if let Some(events) = held.get_mut(node_id) {
            if events.len() >= INBOX_CAPACITY {
                return Err(BusError::Full { node: node_id.to_owned() });
            }
            events.push(event);
            return Ok(());
        }
        match inbox.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(BusError::Full { node: node_id.to_owned() }),
        }
    }

    fn leave(&self, node_id: &str) {
        let mut state = self.inner.write();
        state.inboxes.remove(node_id);
        state.subscribers.retain(|_, nodes| {
            nodes.remove(node_id);
            !nodes.is_empty()
        });
    }
}

/// One node's handle on an [`InProcessBroker`].
pub struct InProcessBus {
    broker: InProcessBroker,
    node_id: String,
    incoming: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    counters: BusCounters,
}

impl Drop for InProcessBus {
    fn drop(&mut self) {
        self.broker.leave(&self.node_id);
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn publish(&self, topic: Topic, payload: Bytes) -> Result<(), BusError> {
        let targets: Vec<(String, mpsc::Sender<BusEvent>)> = {
            let state = self.broker.inner.read();
            let Some(nodes) = state.subscribers.get(&topic) else {
                return Ok(());
            };
            nodes
                .iter()
                .filter(|node| **node != self.node_id)
                .filter_map(|node| state.inboxes.get(node).map(|inbox| (node.clone(), inbox.clone())))
                .collect()
        };
        let mut full = None;
        for (node, inbox) in targets {
            let message =
                BusMessage { from_node: self.node_id.clone(), topic: topic.clone(), payload: payload.clone() };
            match self.broker.deliver(&node, &inbox, BusEvent::Message(message)) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => full = Some(error),
            }
        }
        match full {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn subscribe(&self, topic: Topic) -> Result<(), BusError> {
        self.broker.inner.write().subscribers.entry(topic).or_default().insert(self.node_id.clone());
        Ok(())
    }

    async fn unsubscribe(&self, topic: Topic) -> Result<(), BusError> {
        let mut state = self.broker.inner.write();
        if let Some(nodes) = state.subscribers.get_mut(&topic) {
            nodes.remove(&self.node_id);
            if nodes.is_empty() {
                state.subscribers.remove(&topic);
            }
        }
        Ok(())
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.incoming.lock().take()
    }

    fn counters(&self) -> &BusCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_subscribed_nodes_receive_a_topic() {
        let broker = InProcessBroker::new();
        let node_a = broker.join("a");
        let node_b = broker.join("b");
        let node_c = broker.join("c");
        let mut inbox_b = node_b.take_incoming().unwrap();
        let mut inbox_c = node_c.take_incoming().unwrap();
        node_b.subscribe(Topic::Room("lobby".into())).await.unwrap();

        node_a.publish(Topic::Room("lobby".into()), Bytes::from_static(b"hi")).await.unwrap();
        node_a.publish(Topic::Node("c".into()), Bytes::from_static(b"pm")).await.unwrap();

        let Some(BusEvent::Message(at_b)) = inbox_b.recv().await else { panic!("no message at b") };
        assert_eq!(at_b.payload, Bytes::from_static(b"hi"));
        assert_eq!(at_b.from_node, "a");
        let Some(BusEvent::Message(at_c)) = inbox_c.recv().await else { panic!("no message at c") };
        assert_eq!(at_c.payload, Bytes::from_static(b"pm"));
        assert!(inbox_b.try_recv().is_err(), "b got a message for c");
        assert!(inbox_c.try_recv().is_err(), "c got a room message it has no members of");
        assert_eq!(node_a.counters().sent.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_node_never_receives_its_own_publications() {
        let broker = InProcessBroker::new();
        let node_a = broker.join("a");
        let mut inbox_a = node_a.take_incoming().unwrap();
        node_a.publish(Topic::Cluster, Bytes::from_static(b"x")).await.unwrap();
        assert!(inbox_a.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_dropped_node_leaves_the_broker() {
        let broker = InProcessBroker::new();
        let node_a = broker.join("a");
        drop(broker.join("b"));
        node_a.publish(Topic::Node("b".into()), Bytes::from_static(b"x")).await.unwrap();
        assert!(!broker.inner.read().inboxes.contains_key("b"));
    }
}
