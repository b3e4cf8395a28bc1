//! The node's bus subscriptions, kept in step with whom it holds: a room's topic while the room
//! has listeners here, a user's topic while the user has a connection here.
//!
//! Changes are applied by one task, so a subscription and an unsubscription of the same topic can
//! never overtake each other; each topic is set to what the hub says when its turn comes, so a
//! burst of changes to one topic costs one bus call. A new connection waits for the changes
//! requested before its sync read: whatever another node publishes after that read (a room
//! message, a private message, an event for the user) then reaches this node.

use std::collections::BTreeSet;
use std::sync::Weak;

use parking_lot::Mutex;
use switchboard_bus::Topic;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::node::NodeShared;

/// Topics whose subscription may be out of step, and how many requests were made so far.
#[derive(Default)]
struct Dirty {
    topics: BTreeSet<Topic>,
    requested: u64,
}

pub struct Subscriptions {
    dirty: Mutex<Dirty>,
    wake: Notify,
    /// The last request number applied.
    applied: watch::Sender<u64>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions { dirty: Mutex::default(), wake: Notify::new(), applied: watch::channel(0).0 }
    }
}

impl Subscriptions {
    /// Asks for the topic's subscription to follow the hub.
    pub fn touch(&self, topic: Topic) {
        {
            let mut dirty = self.dirty.lock();
            dirty.topics.insert(topic);
            dirty.requested += 1;
        }
        self.wake.notify_one();
    }

    /// Returns once every change requested before the call is applied (or failed and logged).
    pub async fn settled(&self) {
        let mark = self.dirty.lock().requested;
        let mut applied = self.applied.subscribe();
        let _ = applied.wait_for(|applied| *applied >= mark).await;
    }

    /// Applies the requested changes for as long as the node lives.
    pub(crate) async fn run(node: Weak<NodeShared>) {
        loop {
            let Some(shared) = node.upgrade() else { return };
            let (topics, mark) = {
                let mut dirty = shared.subscriptions.dirty.lock();
                (std::mem::take(&mut dirty.topics), dirty.requested)
            };
            if topics.is_empty() {
                let subscriptions = shared.subscriptions.clone();
                drop(shared);
                // A `touch` since the check above left a permit: this returns at once.
                subscriptions.wake.notified().await;
                continue;
            }
            let mut calls = JoinSet::new();
            for topic in topics {
                let wanted = match &topic {
                    Topic::Room(room) => shared.hub.has_listeners(room),
                    Topic::User(user) => shared.hub.is_local(user),
                    Topic::Node(_) | Topic::Cluster => continue,
                };
                let bus = shared.bus.clone();
                calls.spawn(async move {
                    let outcome =
                        if wanted { bus.subscribe(topic.clone()).await } else { bus.unsubscribe(topic.clone()).await };
                    if let Err(error) = outcome {
                        tracing::warn!(%error, ?topic, wanted, "bus subscription change failed");
                    }
                });
            }
            while calls.join_next().await.is_some() {}
            shared.subscriptions.applied.send_replace(mark);
        }
    }
}
