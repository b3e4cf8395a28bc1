//! Read markers moved by the senders' own messages, kept in memory and written at most once per
//! [`FLUSH_INTERVAL`].
//!
//! Sending a message moves the sender's read (and delivered) marker to it. Written with every
//! message, that upsert dirtied one more page per commit: 1.5 of the 9.7 system calls of a private
//! message at 1k/s (`scripts/pm-probe.sh`, docs/design/message-path.md). Here a committed message
//! only records its sender's new marker in memory; the writer writes what accumulated in one
//! transaction per interval, and every read of the markers raises what it read from the database
//! to what is still pending. The price: a crash forgets the moves of the last interval (the
//! messages themselves are committed before they are acknowledged, as always), so after one the
//! sender's own newest messages may count as unread on their other devices until they read them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{params, Connection};

use super::queries::{dm_participants, to_sql};
use crate::ConversationRecord;

/// How long a sender's marker move may wait in memory before it is written.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Pending moves past which a flush is due whatever the interval, so memory stays bounded.
const FLUSH_AT_ENTRIES: usize = 50_000;

/// One pending move: `(user, conv, seq)`.
pub(super) type Move = (String, String, u64);

#[derive(Default)]
pub(super) struct OwnMarkers {
    /// user → conv → the newest seq the user sent there since it was last written.
    pending: Mutex<HashMap<String, HashMap<String, u64>>>,
    entries: AtomicU64,
    /// Bumped after each flush has removed what it wrote: a read that saw it move runs again.
    flushes: AtomicU64,
}

impl OwnMarkers {
    /// Records the moves of a committed transaction.
    pub(super) fn record(&self, moves: impl IntoIterator<Item = Move>) {
        let mut pending = self.pending.lock();
        for (user, conv, seq) in moves {
            let convs = pending.entry(user).or_default();
            let marker = convs.entry(conv).or_insert_with(|| {
                self.entries.fetch_add(1, Ordering::Relaxed);
                0
            });
            *marker = (*marker).max(seq);
        }
    }

    fn get(&self, pending: &HashMap<String, HashMap<String, u64>>, user: &str, conv: &str) -> u64 {
        pending.get(user).and_then(|convs| convs.get(conv)).copied().unwrap_or(0)
    }

    /// The user's pending marker in `conv` (0 when none).
    pub(super) fn pending_for(&self, user: &str, conv: &str) -> u64 {
        self.get(&self.pending.lock(), user, conv)
    }

    pub(super) fn flush_due(&self, since_last: Duration) -> bool {
        let entries = self.entries.load(Ordering::Relaxed) as usize;
        entries > 0 && (since_last >= FLUSH_INTERVAL || entries >= FLUSH_AT_ENTRIES)
    }

    /// A copy of every pending move, to be written.
    pub(super) fn snapshot(&self) -> Vec<Move> {
        let pending = self.pending.lock();
        let mut moves = Vec::with_capacity(self.entries.load(Ordering::Relaxed) as usize);
        for (user, convs) in pending.iter() {
            moves.extend(convs.iter().map(|(conv, seq)| (user.clone(), conv.clone(), *seq)));
        }
        moves
    }

    /// Forgets the moves a committed flush wrote, unless they moved on meanwhile.
    pub(super) fn written(&self, moves: &[Move]) {
        let mut pending = self.pending.lock();
        for (user, conv, seq) in moves {
            let Some(convs) = pending.get_mut(user) else { continue };
            if convs.get(conv) == Some(seq) {
                convs.remove(conv);
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
            if convs.is_empty() {
                pending.remove(user);
            }
        }
        drop(pending);
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }

    /// Runs `read` (which reads markers from the database) until no flush finished during it.
    ///
    /// A move missing from memory was removed after its flush committed; if that flush finished
    /// before `read` started, `read`'s snapshot holds it, otherwise the count moved and `read`
    /// runs again. Flushes come once per interval, so a second run is rare and a third rarer.
    pub(super) fn consistent<R, E>(&self, mut read: impl FnMut() -> Result<R, E>) -> Result<R, E> {
        loop {
            let before = self.flushes.load(Ordering::SeqCst);
            let value = read()?;
            if self.flushes.load(Ordering::SeqCst) == before {
                return Ok(value);
            }
        }
    }

    /// Raises the markers of `user`'s conversations (and, in private ones, the peer's) to the
    /// pending moves; `recount(conv, after)` counts again what is unread after a raised marker.
    pub(super) fn raise<E>(
        &self,
        user: &str,
        conversations: &mut [ConversationRecord],
        mut recount: impl FnMut(&str, u64) -> Result<u64, E>,
    ) -> Result<(), E> {
        let mut raised = Vec::new();
        {
            let pending = self.pending.lock();
            if pending.is_empty() {
                return Ok(());
            }
            for (index, conversation) in conversations.iter_mut().enumerate() {
                let own = self.get(&pending, user, &conversation.conv);
                if own > conversation.read_seq {
                    conversation.read_seq = own;
                    raised.push(index);
                }
                let Some((a, b)) = dm_participants(&conversation.conv) else { continue };
                let peer = if a == user { b } else { a };
                let theirs = self.get(&pending, peer, &conversation.conv);
                conversation.peer_read_seq = conversation.peer_read_seq.max(theirs);
                conversation.peer_delivered_seq = conversation.peer_delivered_seq.max(theirs);
            }
        }
        for index in raised {
            let conversation = &mut conversations[index];
            conversation.unread = recount(&conversation.conv, conversation.read_seq)?;
        }
        Ok(())
    }
}

/// Writes moves into `read_markers` (inside the caller's transaction): a sender has read up to
/// their own message, and so received it.
pub(super) fn write_moves(conn: &Connection, moves: &[Move]) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO read_markers (user, conv, seq, delivered_seq) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (user, conv) DO UPDATE SET seq = MAX(seq, excluded.seq), \
         delivered_seq = MAX(delivered_seq, excluded.seq)",
    )?;
    for (user, conv, seq) in moves {
        upsert.execute(params![user, conv, to_sql(*seq)])?;
    }
    Ok(())
}

/// When the writer last flushed, so it knows when the next one is due.
pub(super) struct FlushClock(pub(super) Instant);

impl Default for FlushClock {
    fn default() -> Self {
        FlushClock(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(conv: &str) -> ConversationRecord {
        ConversationRecord {
            conv: conv.into(),
            last_seq: 9,
            last_ts: 0,
            read_seq: 3,
            peer_read_seq: 4,
            peer_delivered_seq: 5,
            unread: 6,
        }
    }

    #[test]
    fn pending_moves_raise_the_users_and_the_peers_markers_never_lower_them() {
        let markers = OwnMarkers::default();
        markers.record([
            ("alice".to_owned(), "dm:alice:bob".to_owned(), 7),
            ("bob".to_owned(), "dm:alice:bob".to_owned(), 8),
            ("alice".to_owned(), "room:lobby".to_owned(), 2),
        ]);
        let mut listed = [conversation("dm:alice:bob"), conversation("room:lobby")];
        let mut recounted = Vec::new();
        let recount = |conv: &str, after: u64| {
            recounted.push((conv.to_owned(), after));
            Ok::<_, ()>(9 - after)
        };
        markers.raise("alice", &mut listed, recount).unwrap();
        assert_eq!((listed[0].read_seq, listed[0].peer_read_seq, listed[0].peer_delivered_seq), (7, 8, 8));
        assert_eq!(listed[0].unread, 2, "counted again after the raised marker");
        assert_eq!(
            (listed[1].read_seq, listed[1].peer_read_seq, listed[1].unread),
            (3, 4, 6),
            "lower moves change nothing"
        );
        assert_eq!(recounted, [("dm:alice:bob".to_owned(), 7)]);
    }

    #[test]
    fn a_written_move_is_forgotten_unless_it_moved_on_meanwhile() {
        let markers = OwnMarkers::default();
        markers.record([("alice".to_owned(), "c".to_owned(), 1), ("bob".to_owned(), "c".to_owned(), 1)]);
        assert!(markers.flush_due(FLUSH_INTERVAL));
        assert!(!markers.flush_due(Duration::ZERO), "not before the interval");
        let flushed = markers.snapshot();
        markers.record([("alice".to_owned(), "c".to_owned(), 2)]);
        markers.written(&flushed);
        assert_eq!(markers.pending_for("alice", "c"), 2);
        assert_eq!(markers.pending_for("bob", "c"), 0);
        assert_eq!(markers.snapshot(), [("alice".to_owned(), "c".to_owned(), 2)]);
    }

    #[test]
    fn a_read_during_which_a_flush_finished_runs_again() {
        let markers = OwnMarkers::default();
        let mut runs = 0;
        let value = markers.consistent(|| {
            runs += 1;
            if runs == 1 {
                markers.written(&[]);
            }
            Ok::<_, ()>(runs)
        });
        assert_eq!((value, runs), (Ok(2), 2));
    }
}
