//! The message pipeline: sends are batched into the store, and each message is fanned out only
//! once it is durable, then acknowledged to its sender.
//!
//! One writer task takes whatever has queued up while the previous batch was being written (group
//! commit), so the store sees one transaction per batch and a burst costs a few transactions, not
//! one per message. Fan-out happens in commit order, so each conversation reaches every recipient
//! in `seq` order.

use std::sync::Arc;
use std::time::Instant;

use switchboard_protocol::event::{MessageView, ServerFrame};
use switchboard_protocol::RefValue;
use switchboard_store::{AppendOutcome, NewMessage, StoredMessage};
use tokio::sync::mpsc;

use crate::error::ChatError;
use crate::node::NodeShared;
use crate::outbound::Connection;

/// A message waiting for the store, with where its acknowledgement goes.
pub struct PendingMessage {
    pub message: NewMessage,
    pub origin: Option<Origin>,
    pub received_at: Instant,
}

/// The connection that sent a message and the `ref` of its request. While it exists the send
/// counts as in flight on the connection, whose closing waits for the answer: it is dropped
/// right after the ack or error is queued, or when the message is dropped unanswered.
pub struct Origin {
    connection: Arc<Connection>,
    reference: Option<RefValue>,
}

impl Origin {
    pub fn new(connection: Arc<Connection>, reference: Option<RefValue>) -> Origin {
        connection.send_submitted();
        Origin { connection, reference }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.connection.send_answered();
    }
}

pub(crate) async fn run_writer(shared: Arc<NodeShared>, mut pending: mpsc::Receiver<PendingMessage>) {
    let batch_max = shared.config.batch_max.max(1);
    let mut messages: Vec<NewMessage> = Vec::new();
    let mut meta: Vec<(Option<Origin>, Instant)> = Vec::with_capacity(batch_max);
    while let Some(first) = pending.recv().await {
        messages.push(first.message);
        meta.push((first.origin, first.received_at));
        while messages.len() < batch_max {
            let Ok(next) = pending.try_recv() else { break };
            messages.push(next.message);
            meta.push((next.origin, next.received_at));
        }
        // Handed to the store, which may write it on another thread; the next batch starts anew.
        let batch = std::mem::take(&mut messages);
        let batch_len = batch.len();
        match shared.store.append(batch).await {
            Ok(outcomes) => {
                shared.metrics.store_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for (outcome, (origin, received_at)) in outcomes.iter().zip(meta.drain(..)) {
                    deliver_outcome(&shared, outcome, origin, received_at);
                }
            }
            Err(error) => {
                shared.metrics.store_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%error, batch = batch_len, "message batch not stored");
                let error = ChatError::Store(error);
                for (origin, _) in meta.drain(..) {
                    if let Some(origin) = origin {
                        shared.push_error(&origin.connection, origin.reference.as_ref(), &error);
                    }
                }
            }
        }
        meta.clear();
    }
    tracing::debug!("message pipeline drained");
}

fn deliver_outcome(shared: &NodeShared, outcome: &AppendOutcome, origin: Option<Origin>, received_at: Instant) {
    use std::sync::atomic::Ordering::Relaxed;
    let (message, duplicate) = match outcome {
        AppendOutcome::Stored(message) => (message, false),
        AppendOutcome::Duplicate(message) => (message, true),
    };
    // The ack goes first: queued behind a room's fan-out, it would wait for every recipient's
    // connection to be written.
    let sender = origin.as_ref().map(|o| o.connection.id);
    if let Some(origin) = origin {
        let conv = message.conv.as_str();
        let ack = ServerFrame::Ack {
            reference: origin.reference.as_ref(),
            conv,
            id: &message.id,
            seq: message.seq,
            ts: message.ts,
            duplicate,
        };
        origin.connection.push(ack.encode());
    }
    if duplicate {
        shared.metrics.messages_duplicate.fetch_add(1, Relaxed);
    } else {
        shared.metrics.messages_stored.fetch_add(1, Relaxed);
        let reached = shared.fan_out(message, sender);
        shared.metrics.deliveries.fetch_add(reached as u64, Relaxed);
        shared.metrics.delivery_latency.observe(received_at.elapsed());
        if message.room.is_some() {
            // Only room talk is counted: words of private conversations must not leak.
            shared.popular.record(&message.text, (message.ts / 1000) as u64);
        }
    }
}

/// The client's view of a stored message.
pub fn view_of(message: &StoredMessage) -> MessageView<'_> {
    MessageView {
        conv: &message.conv,
        id: &message.id,
        seq: message.seq,
        from: &message.sender,
        to: message.recipient.as_deref(),
        room: message.room.as_deref(),
        text: &message.text,
        ts: message.ts,
        key: message.key.as_deref(),
    }
}
