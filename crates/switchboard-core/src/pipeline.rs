//! The message pipeline: sends are batched into the store, and each message is fanned out only
//! once it is durable, then acknowledged to its sender.
//!
//! Every batch is one transaction (group commit), and fan-out happens in commit order, so each
//! conversation reaches every recipient in `seq` order. How a batch reaches the store depends on
//! the store:
//! - a store that commits on the caller's thread (SQLite, [`InlineAppend`]) is written by whichever
//!   sender finds the pipeline idle: it commits its own message and everything queued behind it,
//!   then fans out, all on its own thread. At low rates a message costs no thread hand-off at all;
//!   under load the others queue up while it commits, and the next batch is as big as the backlog;
//! - any other store (PostgreSQL, over the network) is written by one writer task that takes
//!   whatever queued up while the previous batch was in flight.
//!
//! See `docs/design/message-path.md` for the figures behind this.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use switchboard_protocol::event::QuoteView;
use switchboard_protocol::event::{MessageView, ServerFrame};
use switchboard_protocol::RefValue;
use switchboard_store::{AppendOutcome, EntryKind, NewMessage, StoreResult, StoredMessage};
use tokio::sync::mpsc;

use crate::error::ChatError;
use crate::node::NodeShared;
use crate::outbound::Connection;

/// Batches one leader commits before it hands the lead to a task of its own, so that a sender's
/// thread is not kept from its other work for long under a steady load.
const LEADER_ROUNDS: usize = 4;

/// How long closing waits for the messages taken to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Where sends wait for the store.
pub(crate) struct Pipeline {
    intake: Intake,
    capacity: usize,
    batch_max: usize,
}

enum Intake {
    /// For stores that commit on the caller's thread.
    Inline(InlineQueue),
    /// For the others: the writer task's channel, `None` once closed.
    Task(RwLock<Option<mpsc::Sender<PendingMessage>>>),
}

struct InlineQueue {
    waiting: Mutex<VecDeque<PendingMessage>>,
    /// Set while a sender (or a task carrying on for one) commits; the others leave their message
    /// in `waiting` for it.
    leading: AtomicBool,
    closed: AtomicBool,
}

impl Pipeline {
    /// A pipeline for `inline` stores, or one whose writer task reads the returned receiver.
    pub(crate) fn new(
        inline: bool,
        capacity: usize,
        batch_max: usize,
    ) -> (Pipeline, Option<mpsc::Receiver<PendingMessage>>) {
        let capacity = capacity.max(1);
        let batch_max = batch_max.max(1);
        if inline {
            let queue = InlineQueue {
                waiting: Mutex::new(VecDeque::new()),
                leading: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            };
            return (Pipeline { intake: Intake::Inline(queue), capacity, batch_max }, None);
        }
        let (sender, receiver) = mpsc::channel(capacity);
        (Pipeline { intake: Intake::Task(RwLock::new(Some(sender))), capacity, batch_max }, Some(receiver))
    }

    /// Queues a message; with an inline store, commits it (and whatever waits) right here unless
    /// another sender is committing already.
    pub(crate) fn submit(&self, shared: &Arc<NodeShared>, pending: PendingMessage) -> Result<(), ChatError> {
        match &self.intake {
            Intake::Task(sender) => {
                let sender = sender.read();
                let Some(sender) = sender.as_ref() else { return Err(ChatError::Overloaded) };
                sender.try_send(pending).map_err(|_| ChatError::Overloaded)
            }
            Intake::Inline(queue) => {
                if queue.closed.load(Ordering::SeqCst) {
                    return Err(ChatError::Overloaded);
                }
                {
                    let mut waiting = queue.waiting.lock();
                    if waiting.len() >= self.capacity {
                        return Err(ChatError::Overloaded);
                    }
                    waiting.push_back(pending);
                }
                if queue.leading.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    self.lead(shared, queue);
                }
                Ok(())
            }
        }
    }

    /// Commits what waits, batch after batch; the caller holds `leading`, which this gives up
    /// (or hands to a task). A message queued while the leader lets go is taken by the leader's
    /// last look or by its own sender, which then leads.
    fn lead(&self, shared: &Arc<NodeShared>, queue: &InlineQueue) {
        let Some(store) = shared.store.inline_append() else { return };
        loop {
            for _ in 0..LEADER_ROUNDS {
                let (messages, meta) = self.next_batch(queue);
                if messages.is_empty() {
                    break;
                }
                match store.try_append(messages) {
                    Ok(outcomes) => deliver_batch(shared, outcomes, meta),
                    Err(messages) => {
                        // The writer is busy with other calls (logins): rather than block this
                        // thread, a task queues the batch behind them, and leads on after it.
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let outcomes = shared.store.append(messages).await;
                            deliver_batch(&shared, outcomes, meta);
                            shared.pipeline.lead_on(&shared);
                        });
                        return;
                    }
                }
            }
            if !queue.waiting.lock().is_empty() {
                // Still more after a few batches: a task of its own carries on, and this sender's
                // thread goes back to its connections.
                let shared = shared.clone();
                tokio::spawn(async move { shared.pipeline.lead_on(&shared) });
                return;
            }
            queue.leading.store(false, Ordering::SeqCst);
            if queue.waiting.lock().is_empty()
                || queue.leading.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err()
            {
                return;
            }
        }
    }

    /// Leads on, for a task that was handed the lead.
    fn lead_on(&self, shared: &Arc<NodeShared>) {
        if let Intake::Inline(queue) = &self.intake {
            self.lead(shared, queue);
        }
    }

    fn next_batch(&self, queue: &InlineQueue) -> (Vec<NewMessage>, Vec<(Option<Origin>, Instant)>) {
        let mut waiting = queue.waiting.lock();
        let take = waiting.len().min(self.batch_max);
        let mut messages = Vec::with_capacity(take);
        let mut meta = Vec::with_capacity(take);
        for pending in waiting.drain(..take) {
            messages.push(pending.message);
            meta.push((pending.origin, pending.received_at));
        }
        (messages, meta)
    }

    /// Stops taking messages; returns once those taken are written and fanned out.
    pub(crate) async fn close(&self) {
        match &self.intake {
            Intake::Task(sender) => {
                sender.write().take();
            }
            Intake::Inline(queue) => {
                queue.closed.store(true, Ordering::SeqCst);
                // Whoever leads takes what waits; the lead ends once nothing does.
                let deadline = Instant::now() + CLOSE_TIMEOUT;
                while queue.leading.load(Ordering::SeqCst) || !queue.waiting.lock().is_empty() {
                    if Instant::now() > deadline {
                        tracing::warn!("message pipeline did not drain in time");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// The writer task of stores that are not written inline.
pub(crate) async fn run_writer(shared: Arc<NodeShared>, mut pending: mpsc::Receiver<PendingMessage>) {
    let batch_max = shared.pipeline.batch_max;
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
        let outcomes = shared.store.append(batch).await;
        deliver_batch(&shared, outcomes, std::mem::take(&mut meta));
    }
    tracing::debug!("message pipeline drained");
}

/// Acknowledges and fans out a committed batch, in commit order; or tells every sender it failed.
fn deliver_batch(shared: &NodeShared, outcomes: StoreResult<Vec<AppendOutcome>>, meta: Vec<(Option<Origin>, Instant)>) {
    match outcomes {
        Ok(outcomes) => {
            shared.metrics.store_batches.fetch_add(1, Ordering::Relaxed);
            for (outcome, (origin, received_at)) in outcomes.iter().zip(meta) {
                deliver_outcome(shared, outcome, origin, received_at);
            }
        }
        Err(error) => {
            shared.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, batch = meta.len(), "message batch not stored");
            let error = ChatError::Store(error);
            for (origin, _) in meta {
                if let Some(origin) = origin {
                    shared.push_error(&origin.connection, origin.reference.as_ref(), &error);
                }
            }
        }
    }
}

fn deliver_outcome(shared: &NodeShared, outcome: &AppendOutcome, origin: Option<Origin>, received_at: Instant) {
    use std::sync::atomic::Ordering::Relaxed;
    let (message, duplicate) = match outcome {
        AppendOutcome::Stored(message) => (message, false),
        AppendOutcome::Duplicate(message) => (message, true),
        AppendOutcome::Rejected(rejection) => {
            if let Some(origin) = origin {
                let error = ChatError::from(*rejection);
                shared.push_error(&origin.connection, origin.reference.as_ref(), &error);
            }
            return;
        }
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
        if origin.connection.push_ack(ack.encode(), conv, message.seq, !duplicate) {
            shared.hub.gaps.watch(&origin.connection);
        }
    }
    if duplicate {
        shared.metrics.messages_duplicate.fetch_add(1, Relaxed);
    } else {
        shared.metrics.messages_stored.fetch_add(1, Relaxed);
        let reached = shared.fan_out(message, sender);
        shared.metrics.deliveries.fetch_add(reached as u64, Relaxed);
        shared.metrics.delivery_latency.observe(received_at.elapsed());
        if message.room.is_some() && message.kind == EntryKind::Message {
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
        kind: (message.kind != EntryKind::Message).then(|| message.kind.as_str()),
        target: message.target.filter(|_| message.kind != EntryKind::Message),
        reply_to: message.target.filter(|_| message.kind == EntryKind::Message),
        reply: message.quote.as_ref().map(|quote| QuoteView {
            from: &quote.from,
            text: &quote.text,
            deleted: quote.deleted,
        }),
        edited_at: message.edited_at,
        deleted: message.deleted,
        reactions: &message.reactions,
        changed_seq: message.changed_seq,
    }
}
