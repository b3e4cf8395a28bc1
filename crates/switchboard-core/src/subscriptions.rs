//! The node's room subscriptions on the bus, kept in step with the rooms it has listeners in.
//!
//! Changes are applied by one task, so a subscription and an unsubscription of the same room can
//! never overtake each other; each room is set to what the hub says when its turn comes, so a burst
//! of changes to one room costs one bus call. A new connection waits for the changes requested
//! before its sync read: a room message published after that read then reaches this node.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use switchboard_bus::Topic;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::node::NodeShared;

/// Rooms whose subscription may be out of step, and how many requests were made so far.
#[derive(Default)]
struct Dirty {
    rooms: BTreeSet<Arc<str>>,
    requested: u64,
}

pub struct RoomSubscriptions {
    dirty: Mutex<Dirty>,
    wake: Notify,
    /// The last request number applied.
    applied: watch::Sender<u64>,
}

impl Default for RoomSubscriptions {
    fn default() -> Self {
        RoomSubscriptions { dirty: Mutex::default(), wake: Notify::new(), applied: watch::channel(0).0 }
    }
}

impl RoomSubscriptions {
    /// Asks for the room's subscription to follow the hub (subscribed while it has listeners).
    pub fn touch(&self, room: &str) {
        {
            let mut dirty = self.dirty.lock();
            dirty.rooms.insert(Arc::from(room));
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
            let (rooms, mark) = {
                let mut dirty = shared.room_subscriptions.dirty.lock();
                (std::mem::take(&mut dirty.rooms), dirty.requested)
            };
            if rooms.is_empty() {
                let subscriptions = shared.room_subscriptions.clone();
                drop(shared);
                // A `touch` since the check above left a permit: this returns at once.
                subscriptions.wake.notified().await;
                continue;
            }
            let mut calls = JoinSet::new();
            for room in rooms {
                let bus = shared.bus.clone();
                let wanted = shared.hub.has_listeners(&room);
                calls.spawn(async move {
                    let topic = Topic::Room(room.to_string());
                    let outcome = if wanted { bus.subscribe(topic).await } else { bus.unsubscribe(topic).await };
                    if let Err(error) = outcome {
                        tracing::warn!(%error, room = %room, wanted, "room subscription change failed");
                    }
                });
            }
            while calls.join_next().await.is_some() {}
            shared.room_subscriptions.applied.send_replace(mark);
        }
    }
}
