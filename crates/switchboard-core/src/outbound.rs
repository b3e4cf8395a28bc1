//! Each connection's outbound queue, shared by the hub (which fills it) and the transport (which
//! drains it into the socket).
//!
//! The queue is bounded in frames and bytes. When a reader falls that far behind, the queue is
//! emptied and marked overflowed, and the transport closes the connection as a slow consumer:
//! everything it missed is in the store and comes back when the client resumes with its cursors.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::CloseCode;
use tokio::sync::Notify;

use crate::ordering::{Admit, Gap, StreamOrder};

pub type ConnId = u64;

/// The flag in a connection's count of sends in flight that says its transport waits for them.
const AWAITING_ANSWERS: usize = 1 << (usize::BITS - 1);

/// Writes straight into a connection's socket from the thread that queues a frame, when nothing
/// is queued or being written before it: the frame then costs one `write` and no wake-up of the
/// connection's task (which is most of what a message costs at ordinary rates).
pub trait DirectWrite: Send + Sync {
    /// Writes as much of `bytes` as the socket takes at once, without waiting.
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize>;
}

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
    /// Puts each conversation's live messages in seq order (see `ordering.rs`).
    order: StreamOrder,
    /// Room over the bounds granted to a sync's frames until they are written, so that a large
    /// catch-up does not count as a slow reader.
    sync_allowance_frames: usize,
    sync_allowance_bytes: usize,
    /// Set by the transport once the connection is open for writes from other threads.
    direct: Option<Arc<dyn DirectWrite>>,
    /// Whether the transport holds frames it drained and has not finished writing: a frame
    /// written directly meanwhile would overtake them.
    writing: bool,
}

/// A live message held back while its connection syncs.
pub struct SequencedFrame {
    pub conv: Box<str>,
    pub seq: u64,
    pub frame: WireFrame,
}

/// What became of a conversation message offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// False when the queue overflowed (now or before) or was closed.
    pub accepted: bool,
    /// The message waits for a gap, and is the first to: the gap filler must watch this connection.
    pub started_waiting: bool,
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

    /// Queues a frame, or writes it at once when nothing is ahead of it. Returns false when the
    /// queue overflowed (now or before) or was closed.
    pub fn push(&self, frame: WireFrame) -> bool {
        let mut state = self.state.lock();
        let (accepted, queued) = self.enqueue_locked(&mut state, frame);
        drop(state);
        if queued {
            self.ready.notify_one();
        }
        accepted
    }

    /// Writes the frame directly or queues it. Returns (accepted, queued for the transport).
    fn enqueue_locked(&self, state: &mut QueueState, frame: WireFrame) -> (bool, bool) {
        let frame = match Self::write_direct(state, frame) {
            Ok(()) => return (true, false),
            Err(rest) => rest,
        };
        let max_frames = self.max_frames + state.sync_allowance_frames;
        let max_bytes = self.max_bytes + state.sync_allowance_bytes;
        (Self::push_locked(state, frame, max_frames, max_bytes), true)
    }

    /// Writes the frame into the socket when nothing is queued or being written before it; what
    /// the socket did not take comes back, to be queued for the transport. Runs under the queue's
    /// lock, so that direct writes and the transport's never interleave.
    fn write_direct(state: &QueueState, frame: WireFrame) -> Result<(), WireFrame> {
        let Some(direct) = state.direct.as_ref() else { return Err(frame) };
        if state.writing || !state.frames.is_empty() || state.overflowed || state.closed.is_some() {
            return Err(frame);
        }
        match direct.try_write(frame.as_bytes()) {
            Ok(written) if written >= frame.len() => Ok(()),
            Ok(0) => Err(frame),
            Ok(written) => Err(frame.rest(written)),
            // Full (would block) or failed: the transport writes it, and meets the failure itself.
            Err(_) => Err(frame),
        }
    }

    /// Lets frames be written straight into the socket from now on (see [`DirectWrite`]).
    pub fn set_direct_writer(&self, writer: Arc<dyn DirectWrite>) {
        self.state.lock().direct = Some(writer);
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

    /// Queues a conversation message in its conversation's seq order (see `ordering.rs`); while
    /// the connection syncs it is held back instead, and one the client has already is dropped.
    pub fn push_message(&self, conv: &str, seq: u64, frame: WireFrame) -> Pushed {
        let mut state = self.state.lock();
        if let Some(held) = state.syncing.as_mut() {
            if held.len() < self.max_frames {
                held.push(SequencedFrame { conv: conv.into(), seq, frame });
                return Pushed { accepted: true, started_waiting: false };
            }
            state.overflowed = true;
            state.syncing = None;
            drop(state);
            self.ready.notify_one();
            return Pushed { accepted: false, started_waiting: false };
        }
        let admit = state.order.admit(conv, seq, Some(frame));
        self.deliver_admitted(state, conv, admit)
    }

    /// Queues the ack of the connection's own send and, for a newly stored message, takes that
    /// message into its conversation's order (it is answered by the ack, not delivered), under
    /// one lock. Returns true when messages now wait for a gap before it.
    pub fn push_ack(&self, ack: WireFrame, conv: &str, seq: u64, stored: bool) -> bool {
        let mut state = self.state.lock();
        let (_, queued) = self.enqueue_locked(&mut state, ack);
        let started_waiting = if stored && state.syncing.is_none() {
            let admit = state.order.admit(conv, seq, None);
            self.deliver_admitted(state, conv, admit).started_waiting
        } else {
            drop(state);
            false
        };
        if queued {
            self.ready.notify_one();
        }
        started_waiting
    }

    fn deliver_admitted(&self, mut state: MutexGuard<'_, QueueState>, conv: &str, admit: Admit) -> Pushed {
        let mut frame = match admit {
            Admit::Duplicate => return Pushed { accepted: true, started_waiting: false },
            Admit::Held { started } => {
                if state.order.held_count() > self.max_frames {
                    state.overflowed = true;
                    drop(state);
                    self.ready.notify_one();
                    return Pushed { accepted: false, started_waiting: false };
                }
                return Pushed { accepted: true, started_waiting: started };
            }
            Admit::Now(frame) => frame,
        };
        let (mut accepted, mut queued) = (true, false);
        loop {
            if let Some(frame) = frame.take() {
                let (ok, into_queue) = self.enqueue_locked(&mut state, frame);
                accepted &= ok;
                queued |= into_queue;
            }
            match state.order.next_ready(conv) {
                Some(next) => frame = next,
                None => break,
            }
        }
        drop(state);
        if queued {
            self.ready.notify_one();
        }
        Pushed { accepted, started_waiting: false }
    }

    /// When the oldest message held for a gap began waiting.
    pub fn waiting_since(&self) -> Option<std::time::Instant> {
        self.state.lock().order.waiting_since()
    }

    /// The gaps held messages wait for (and their wait starts again).
    pub fn gaps(&self) -> Vec<Gap> {
        self.state.lock().order.gaps(std::time::Instant::now())
    }

    /// Gives up on the seqs of `conv` before `seq`, releasing what waited for them.
    pub fn skip_gap(&self, conv: &str, seq: u64) {
        let mut state = self.state.lock();
        state.order.skip_to(conv, seq);
        match state.order.next_ready(conv) {
            Some(frame) => {
                self.deliver_admitted(state, conv, Admit::Now(frame));
            }
            None => drop(state),
        }
    }

    /// The client got everything of `conv` up to `seq` another way (a join answer).
    pub fn caught_up(&self, conv: &str, seq: u64) {
        self.state.lock().order.caught_up(conv, seq);
    }

    /// The connection no longer follows `conv`.
    pub fn forget_conversation(&self, conv: &str) {
        self.state.lock().order.forget(conv);
    }

    /// Starts holding live messages back (before the connection registers in the hub).
    pub fn begin_sync(&self) {
        self.state.lock().syncing = Some(Vec::new());
    }

    /// Ends the sync: after what is queued already (the `session` answer and any events), queues
    /// the missed messages, then the held-back live ones in each conversation's order; from then
    /// on live messages flow in order, but for those the sync covered. `newest` tells, per
    /// conversation, the newest seq the client now has or can page to. The sync may exceed the
    /// queue bound once: it is bounded by `sync_limit_per_conv` instead. Returns true when live
    /// messages wait for a gap.
    pub fn finish_sync(&self, missed: Vec<WireFrame>, newest: HashMap<String, u64>) -> bool {
        let mut state = self.state.lock();
        let mut held = state.syncing.take().unwrap_or_default();
        let mut added = 0;
        for frame in missed {
            added += frame.len();
            state.frames.push_back(frame);
        }
        state.bytes += added;
        state.sync_allowance_frames = state.frames.len();
        state.sync_allowance_bytes = state.bytes;
        state.order.start(newest);
        held.sort_unstable_by(|a, b| (&a.conv, a.seq).cmp(&(&b.conv, b.seq)));
        let mut started_waiting = false;
        for item in held {
            match state.order.admit(&item.conv, item.seq, Some(item.frame)) {
                Admit::Now(mut frame) => loop {
                    if let Some(ready) = frame.take() {
                        state.bytes += ready.len();
                        state.sync_allowance_frames += 1;
                        state.sync_allowance_bytes += ready.len();
                        state.frames.push_back(ready);
                    }
                    match state.order.next_ready(&item.conv) {
                        Some(next) => frame = next,
                        None => break,
                    }
                },
                Admit::Held { started } => started_waiting |= started,
                Admit::Duplicate => {}
            }
        }
        drop(state);
        self.ready.notify_one();
        started_waiting
    }

    /// Moves up to `max` queued frames into `out`.
    pub fn drain_into(&self, out: &mut Vec<WireFrame>, max: usize) -> QueueStatus {
        let mut state = self.state.lock();
        if state.overflowed {
            return QueueStatus::Overflowed;
        }
        let take = state.frames.len().min(max);
        // Until the transport comes back for more, what it took is not written yet.
        state.writing = take > 0;
        let mut drained_bytes = 0;
        for frame in state.frames.drain(..take) {
            drained_bytes += frame.len();
            out.push(frame);
        }
        state.bytes -= drained_bytes;
        state.sync_allowance_frames = state.sync_allowance_frames.saturating_sub(take);
        state.sync_allowance_bytes = state.sync_allowance_bytes.saturating_sub(drained_bytes);
        if state.frames.is_empty() && state.frames.capacity() > 0 {
            // A drained queue gives its slots back (4 slots are 160 bytes, more than a huge room's
            // member costs otherwise); most frames are written directly, without the queue.
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

    /// Counts a send answered (its ack or error is queued already); once the transport waits for
    /// the answers ([`Connection::await_answers`]), the last one wakes it. Not before: a wake-up
    /// per acknowledged message would cost more than the message.
    pub fn send_answered(&self) {
        if self.sends_in_flight.fetch_sub(1, Ordering::AcqRel) == AWAITING_ANSWERS | 1 {
            self.ready.notify_one();
        }
    }

    /// The transport is closing and waits for the answers to the sends in flight.
    pub fn await_answers(&self) {
        self.sends_in_flight.fetch_or(AWAITING_ANSWERS, Ordering::AcqRel);
    }

    /// Sends handed to the pipeline whose answer is not queued yet.
    pub fn sends_in_flight(&self) -> usize {
        self.sends_in_flight.load(Ordering::Acquire) & !AWAITING_ANSWERS
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
    fn the_last_answered_send_wakes_a_transport_that_waits_for_answers() {
        let connection = Connection::new(1, "a".into(), 0, 10, 1 << 20);
        connection.send_submitted();
        connection.send_answered();
        assert!(!ready_now(&connection), "an answer wakes nobody while the transport does not wait for answers");
        connection.send_submitted();
        connection.send_submitted();
        connection.await_answers();
        connection.send_answered();
        assert_eq!(connection.sends_in_flight(), 1);
        assert!(!ready_now(&connection), "only the last answer wakes the transport");
        connection.send_answered();
        assert_eq!(connection.sends_in_flight(), 0);
        assert!(ready_now(&connection), "the last answer leaves a wake-up for the transport");
    }

    /// A socket that takes at most `room` bytes per write and records them.
    struct FakeSocket {
        room: usize,
        written: Mutex<Vec<u8>>,
    }

    impl DirectWrite for FakeSocket {
        fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
            let taken = bytes.len().min(self.room);
            if taken == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            self.written.lock().extend_from_slice(&bytes[..taken]);
            Ok(taken)
        }
    }

    fn wire(frame: &WireFrame) -> Vec<u8> {
        frame.as_bytes().to_vec()
    }

    #[test]
    fn a_frame_with_nothing_ahead_of_it_is_written_directly_and_wakes_nobody() {
        let connection = Connection::new(1, "a".into(), 0, 10, 1 << 20);
        let socket = Arc::new(FakeSocket { room: usize::MAX, written: Mutex::new(Vec::new()) });
        connection.set_direct_writer(socket.clone());
        assert!(connection.push(frame("hello")));
        assert_eq!(*socket.written.lock(), wire(&frame("hello")));
        assert_eq!(connection.queued_frames(), 0);
        assert!(!ready_now(&connection), "a direct write needs no wake-up of the transport");
    }

    #[test]
    fn what_the_socket_does_not_take_is_queued_and_nothing_overtakes_it() {
        let connection = Connection::new(1, "a".into(), 0, 10, 1 << 20);
        let socket = Arc::new(FakeSocket { room: 3, written: Mutex::new(Vec::new()) });
        connection.set_direct_writer(socket.clone());
        let first = frame("first frame");
        assert!(connection.push(first.clone()));
        assert!(connection.push(frame("second")));
        assert_eq!(socket.written.lock().len(), 3, "only the first write went straight to the socket");
        let mut out = Vec::new();
        connection.drain_into(&mut out, 10);
        let mut sent = socket.written.lock().clone();
        for frame in &out {
            sent.extend_from_slice(frame.as_bytes());
        }
        let mut expected = wire(&first);
        expected.extend(wire(&frame("second")));
        assert_eq!(sent, expected);
        // The transport holds what it drained: a new frame must wait behind it.
        assert!(connection.push(frame("third")));
        assert_eq!(socket.written.lock().len(), 3);
        assert_eq!(connection.queued_frames(), 1);
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
