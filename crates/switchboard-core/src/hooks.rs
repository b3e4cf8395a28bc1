//! Events for the application's webhooks, and which node reports each so that it is reported
//! once per cluster:
//! - `message.offline`: a private message for a user who is online nowhere (the hook a push
//!   notification service hangs on); by the node that committed the message.
//! - `user.online` / `user.offline`: a user's first connection anywhere opened, or the last one
//!   closed; by the node where that connection opened or closed. When a node dies, its users'
//!   `user.offline` comes from the live node with the smallest id. Two logins racing on two nodes
//!   may both report `user.online`.
//! - `room.created`: by the node that handled the request that created the room.
//!
//! The node only queues them ([`HookQueue`], bounded; a full queue drops and counts): the server's
//! webhook sender POSTs them, so delivery never waits for the application.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use std::sync::OnceLock;
use tokio::sync::mpsc;

/// An event for the webhook, as its JSON body's `event` and fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event")]
pub enum HookEvent {
    #[serde(rename = "message.offline")]
    OfflineMessage { user: String, from: String, conv: String, id: String, seq: u64, text: String, ts: i64 },
    #[serde(rename = "user.online")]
    UserOnline { user: String, ts: i64 },
    #[serde(rename = "user.offline")]
    UserOffline { user: String, ts: i64 },
    #[serde(rename = "room.created")]
    RoomCreated { room: String, by: String, ts: i64 },
}

/// The bounded queue from the node to the webhook sender; off until the server takes it.
#[derive(Default)]
pub struct HookQueue {
    /// Set once; read without a lock on the message path.
    sender: OnceLock<mpsc::Sender<HookEvent>>,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl HookQueue {
    /// Turns the queue on; the sender reads the receiver. Once: a second call gets a receiver
    /// that nothing is sent to.
    pub fn open(&self, capacity: usize) -> mpsc::Receiver<HookEvent> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let _ = self.sender.set(sender);
        receiver
    }

    pub fn is_open(&self) -> bool {
        self.sender.get().is_some()
    }

    /// Queues an event without waiting; drops it when the queue is full.
    pub fn emit(&self, event: HookEvent) {
        let Some(sender) = self.sender.get() else { return };
        if sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl crate::node::NodeShared {
    /// Reports a room created by `by`'s request on this node; only a public one is announced to
    /// every online user.
    pub(crate) fn room_created(&self, room: &str, by: &str, private: bool) {
        self.hooks.emit(HookEvent::RoomCreated { room: room.to_owned(), by: by.to_owned(), ts: crate::now_millis() });
        if !private {
            self.announce_room(room, by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_queue_takes_nothing_and_a_full_one_drops_and_counts() {
        let queue = HookQueue::default();
        queue.emit(HookEvent::UserOnline { user: "a".into(), ts: 1 });
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 0, "off: nothing queued, nothing dropped");
        let mut receiver = queue.open(2);
        for ts in 0..5 {
            queue.emit(HookEvent::UserOnline { user: "a".into(), ts });
        }
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(receiver.try_recv().unwrap(), HookEvent::UserOnline { user: "a".into(), ts: 0 });
        let body = serde_json::to_value(receiver.try_recv().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"event": "user.online", "user": "a", "ts": 1}));
    }
}
