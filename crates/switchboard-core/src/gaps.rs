//! The gap filler: connections whose live stream waits for a missing seq (see `ordering.rs`),
//! and the task that reads what is missing from the store once it waited `reorder_wait`.
//!
//! A gap that outlives the wait is a message that took a slow road (a busy bus, a publisher
//! behind) or none (its node died between commit and publish, or did not know this node held a
//! recipient yet). Either way it is in the store, since only a commit hands out a seq: reading it
//! there delivers it in its place and the live copy, if it still comes, is dropped as a
//! duplicate. Whatever the store does not return is skipped, so nothing waits longer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use switchboard_protocol::event::ServerFrame;
use tokio::sync::Notify;

use crate::node::NodeShared;
use crate::outbound::Connection;
use crate::pipeline;

/// Connections with messages held for a gap.
#[derive(Default)]
pub struct GapWatch {
    waiting: Mutex<Vec<Weak<Connection>>>,
    wake: Notify,
}

impl GapWatch {
    /// Called when a connection's first message starts waiting for a gap.
    pub fn watch(&self, connection: &Arc<Connection>) {
        self.waiting.lock().push(Arc::downgrade(connection));
        self.wake.notify_one();
    }

    /// The connections whose wait is over, and when the next one's will be; forgets the ones
    /// that no longer wait or are gone.
    fn due(&self, now: Instant, wait: std::time::Duration) -> (Vec<Arc<Connection>>, Option<Instant>) {
        let mut due = Vec::new();
        let mut next = None::<Instant>;
        self.waiting.lock().retain(|weak| {
            let Some(connection) = weak.upgrade() else { return false };
            let Some(since) = connection.waiting_since() else { return false };
            let deadline = since + wait;
            if deadline <= now {
                due.push(connection);
                return false;
            }
            next = Some(next.map_or(deadline, |next| next.min(deadline)));
            true
        });
        (due, next)
    }
}

/// Runs until the node is dropped.
pub(crate) async fn run_gap_filler(node: Weak<NodeShared>, watch: Arc<GapWatch>) {
    loop {
        let next_deadline = {
            let Some(shared) = node.upgrade() else { return };
            let wait = shared.config.reorder_wait;
            let (due, next) = watch.due(Instant::now(), wait);
            for connection in due {
                fill(&shared, &connection).await;
                if connection.waiting_since().is_some() {
                    watch.waiting.lock().push(Arc::downgrade(&connection));
                }
            }
            let pending = !watch.waiting.lock().is_empty();
            match next {
                Some(deadline) => Some(deadline),
                None if pending => Some(Instant::now() + wait),
                None => None,
            }
        };
        match next_deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = watch.wake.notified() => {}
                }
            }
            None => watch.wake.notified().await,
        }
    }
}

/// Reads each gap of one connection from the store and delivers it in its place.
async fn fill(shared: &NodeShared, connection: &Connection) {
    for gap in connection.gaps() {
        let missing = gap.before - gap.after - 1;
        let limit = missing.min(u64::from(shared.config.sync_limit_per_conv)) as u32;
        match shared.store.messages_after(&gap.conv, gap.after, limit).await {
            Ok(messages) => {
                let mut found = 0;
                for message in messages.iter().filter(|message| message.seq < gap.before) {
                    let frame = ServerFrame::Message(&pipeline::view_of(message)).encode();
                    connection.push_message(&gap.conv, message.seq, frame);
                    found += 1;
                }
                shared.metrics.gap_messages_filled.fetch_add(found, Ordering::Relaxed);
                if found < missing {
                    shared.metrics.gap_seqs_skipped.fetch_add(missing - found, Ordering::Relaxed);
                    tracing::debug!(conv = %gap.conv, after = gap.after, before = gap.before, found, "gap not all in the store");
                }
            }
            Err(error) => {
                shared.metrics.gap_seqs_skipped.fetch_add(missing, Ordering::Relaxed);
                tracing::warn!(%error, conv = %gap.conv, "could not read a gap from the store; skipping it");
            }
        }
        connection.skip_gap(&gap.conv, gap.before);
    }
}
