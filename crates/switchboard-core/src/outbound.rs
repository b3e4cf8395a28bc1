//! Each connection's outbound queue, shared by the hub (which fills it) and the transport (which
//! drains it into the socket).
//!
//! The queue is bounded in frames and bytes. When a reader falls that far behind, the queue is
//! emptied and marked overflowed, and the transport closes the connection as a slow consumer:
//! everything it missed is in the store and comes back when the client resumes with its cursors.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::CloseCode;
use tokio::sync::Notify;

pub type ConnId = u64;

/// A connection as the rest of the node sees it. This struct, plus the transport's own few
/// fields, is what an idle connection costs.
pub struct Connection {
    pub id: ConnId,
    pub user: Arc<str>,
    /// When the connection logged in (ms since the Unix epoch).
    pub connected_at: i64,
    state: Mutex<QueueState>,
    ready: Notify,
    max_frames: usize,
    max_bytes: usize,
    /// Sends of this connection taken into the message pipeline and not answered yet, so that a
    /// closing connection can wait for their acks (see `pipeline::Origin`).
    sends_in_flight: AtomicUsize,
}

#[derive(Default)]
struct QueueState {
    frames: VecDeque<WireFrame>,
    bytes: usize,
    overflowed: bool,
    /// Set when the node closes the connection; the transport closes with this code once the
    /// queue is written out.
    closed: Option<CloseCode>,
    /// While the connection is catching up, live messages wait here so that they can be put
    /// after the missed ones and those already sent dropped.
    syncing: Option<Vec<SequencedFrame>>,
    /// After the sync, per conversation, the newest seq it carried: a message committed before the
    /// sync read the store can still be handed over live after the sync ended, and must not reach
    /// the client twice. Sorted by conversation; empty for a user without conversations.
    synced: Box<[(Box<str>, u64)]>,
    /// Room over the bounds granted to a sync's frames until they are written, so that a large
    /// catch-up does not count as a slow reader.
    sync_allowance_frames: usize,
    sync_allowance_bytes: usize,
}

/// A live message held back while its connection syncs.
pub struct SequencedFrame {
    pub conv: Box<str>,
    pub seq: u64,
    pub frame: WireFrame,
}

/// What the transport should do after draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    Open,
    /// The reader was too slow; close with the slow-consumer code.
    Overflowed,
    /// The node closed the connection: close with this code.
    Closed(CloseCode),
}

impl Connection {
    pub fn new(id: ConnId, user: Arc<str>, connected_at: i64, max_frames: usize, max_bytes: usize) -> Self {
        Connection {
            id,
            user,
            connected_at,
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            max_frames,
            max_bytes,
            sends_in_flight: AtomicUsize::new(0),
        }
    }

    /// Queues a frame. Returns false when the queue overflowed (now or before) or was closed.
    pub fn push(&self, frame: WireFrame) -> bool {
        let accepted = {
            let mut state = self.state.lock();
            let max_frames = self.max_frames + state.sync_allowance_frames;
            let max_bytes = self.max_bytes + state.sync_allowance_bytes;
            Self::push_locked(&mut state, frame, max_frames, max_bytes)
        };
        self.ready.notify_one();
        accepted
    }

    fn push_locked(state: &mut QueueState, frame: WireFrame, max_frames: usize, max_bytes: usize) -> bool {
        if state.overflowed || state.closed.is_some() {
            return false;
        }
        if state.frames.len() >= max_frames || state.bytes + frame.len() > max_bytes {
            state.overflowed = true;
            state.frames = VecDeque::new();
            state.bytes = 0;
            return false;
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        true
    }

    /// Queues a conversation message; while the connection syncs it is held back instead, and one
    /// the sync carried already is dropped.
    pub fn push_message(&self, conv: &str, seq: u64, frame: WireFrame) -> bool {
        {
            let mut state = self.state.lock();
            if let Some(held) = state.syncing.as_mut() {
                if held.len() < self.max_frames {
                    held.push(SequencedFrame { conv: conv.into(), seq, frame });
                    return true;
                }
                state.overflowed = true;
                state.syncing = None;
                drop(state);
                self.ready.notify_one();
                return false;
            }
            if let Ok(index) = state.synced.binary_search_by(|(synced, _)| (**synced).cmp(conv)) {
                if seq <= state.synced[index].1 {
                    return true;
                }
            }
        }
        self.push(frame)
    }

    /// Starts holding live messages back (before the connection registers in the hub).
    pub fn begin_sync(&self) {
        self.state.lock().syncing = Some(Vec::new());
    }

    /// Ends the sync: after what is queued already (the `session` answer and any events), queues
    /// the missed messages, then the held-back live ones that were not among them; from then on
    /// live messages flow straight into the queue, but for those the sync covered. `sent` tells,
    /// per conversation, the newest seq the client now has. The sync may exceed the queue bound
    /// once: it is bounded by `sync_limit_per_conv` instead.
    pub fn finish_sync(&self, missed: Vec<WireFrame>, sent: HashMap<String, u64>) {
        let sent_of = |conv: &str| sent.get(conv).copied().unwrap_or(0);
        {
            let mut state = self.state.lock();
            let held = state.syncing.take().unwrap_or_default();
            let mut added = 0;
            for frame in missed {
                added += frame.len();
                state.frames.push_back(frame);
            }
            for item in held {
                if item.seq > sent_of(&item.conv) {
                    added += item.frame.len();
                    state.frames.push_back(item.frame);
                }
            }
            state.bytes += added;
            state.sync_allowance_frames = state.frames.len();
            state.sync_allowance_bytes = state.bytes;
            let mut synced: Vec<(Box<str>, u64)> =
                sent.into_iter().filter(|&(_, seq)| seq > 0).map(|(conv, seq)| (conv.into_boxed_str(), seq)).collect();
            synced.sort_unstable();
            state.synced = synced.into_boxed_slice();
        }
        self.ready.notify_one();
    }

    /// Moves up to `max` queued frames into `out`.
    pub fn drain_into(&self, out: &mut Vec<WireFrame>, max: usize) -> QueueStatus {
        let mut state = self.state.lock();
        if state.overflowed {
            return QueueStatus::Overflowed;
        }
        let take = state.frames.len().min(max);
        let mut drained_bytes = 0;
        for frame in state.frames.drain(..take) {
            drained_bytes += frame.len();
            out.push(frame);
        }
        state.bytes -= drained_bytes;
        state.sync_allowance_frames = state.sync_allowance_frames.saturating_sub(take);
        state.sync_allowance_bytes = state.sync_allowance_bytes.saturating_sub(drained_bytes);
        if state.frames.is_empty() && state.frames.capacity() > 64 {
            // Give back what a burst grew, so an idle connection stays small.
            state.frames = VecDeque::new();
        }
        if let Some(code) = state.closed {
            if out.is_empty() {
                return QueueStatus::Closed(code);
            }
        }
        QueueStatus::Open
    }

    /// Asks the transport to close once the queue is written out.
    pub fn close(&self) {
        self.close_with(CloseCode::Normal);
    }

    /// Asks the transport to close with `code` once the queue is written out.
    pub fn close_with(&self, code: CloseCode) {
        self.state.lock().closed.get_or_insert(code);
        self.ready.notify_one();
    }

    /// Resolves when frames were queued (or the state changed) since the last drain.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Whether the reader fell too far behind; checked while a write waits on a full socket.
    pub fn is_overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Counts a send handed to the message pipeline.
    pub fn send_submitted(&self) {
        self.sends_in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a send answered (its ack or error is queued already); the last one wakes the
    /// transport, which may be waiting for it before it closes.
    pub fn send_answered(&self) {
        if self.sends_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ready.notify_one();
        }
    }

    /// Sends handed to the pipeline whose answer is not queued yet.
    pub fn sends_in_flight(&self) -> usize {
        self.sends_in_flight.load(Ordering::Acquire)
    }

    pub fn queued_frames(&self) -> usize {
        self.state.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> WireFrame {
        WireFrame::text(text.as_bytes())
    }

    fn drain(connection: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        connection.drain_into(&mut out, usize::MAX);
        out.iter().map(|f| String::from_utf8(f.payload().to_vec()).unwrap()).collect()
    }

    #[test]
    fn the_last_answered_send_wakes_the_transport() {
        let connection = Connection::new(1, "a".into(), 0, 10, 1 << 20);
        connection.send_submitted();
        connection.send_submitted();
        connection.send_answered();
        assert_eq!(connection.sends_in_flight(), 1);
        connection.send_answered();
        assert_eq!(connection.sends_in_flight(), 0);
        let woken = ready_now(&connection);
        assert!(woken, "the last answer leaves a wake-up for the transport");
    }

    /// Polls `ready()` once: true if a wake-up was stored.
    fn ready_now(connection: &Connection) -> bool {
        use std::future::Future;
        let mut ready = std::pin::pin!(connection.ready());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        ready.as_mut().poll(&mut context).is_ready()
    }

    #[test]
    fn a_full_queue_overflows_and_frees_its_frames() {
        let connection = Connection::new(1, "a".into(), 0, 2, 1 << 20);
        assert!(connection.push(frame("1")));
        assert!(connection.push(frame("2")));
        assert!(!connection.push(frame("3")));
        assert!(!connection.push(frame("4")), "an overflowed queue takes nothing more");
        let mut out = Vec::new();
        assert_eq!(connection.drain_into(&mut out, 10), QueueStatus::Overflowed);
        assert!(out.is_empty());
    }

    #[test]
    fn the_byte_bound_counts_too() {
        let connection = Connection::new(1, "a".into(), 0, 100, 10);
        assert!(connection.push(frame("12345")));
        assert!(!connection.push(frame("123456789")));
    }

    #[test]
    fn a_large_sync_does_not_count_as_a_slow_reader() {
        let connection = Connection::new(1, "a".into(), 0, 2, 1 << 20);
        connection.begin_sync();
        connection.finish_sync((0..5).map(|i| frame(&i.to_string())).collect(), HashMap::new());
        assert!(connection.push(frame("live")), "the sync's own size must not overflow the queue");
        let mut out = Vec::new();
        assert_eq!(connection.drain_into(&mut out, 10), QueueStatus::Open);
        assert_eq!(out.len(), 6);
        assert!(connection.push(frame("a")));
        assert!(connection.push(frame("b")));
        assert!(!connection.push(frame("c")), "once written, the normal bound applies again");
    }

    #[test]
    fn sync_puts_missed_messages_first_and_drops_what_they_covered() {
        let connection = Connection::new(1, "a".into(), 0, 100, 1 << 20);
        let conv = "dm:a:b";
        connection.begin_sync();
        connection.push(frame("event"));
        connection.push_message(conv, 5, frame("live-5"));
        connection.push_message(conv, 6, frame("live-6"));
        connection.finish_sync(vec![frame("missed-4"), frame("missed-5")], HashMap::from([(conv.to_owned(), 5)]));
        assert_eq!(drain(&connection), ["event", "missed-4", "missed-5", "live-6"]);
        connection.push_message(conv, 7, frame("live-7"));
        assert_eq!(drain(&connection), ["live-7"]);
        // Committed before the sync read it, handed over live only after the sync ended.
        connection.push_message(conv, 5, frame("late-5"));
        connection.push_message("room:other", 1, frame("other-1"));
        assert_eq!(drain(&connection), ["other-1"], "the sync carried seq 5 already");
    }
}
