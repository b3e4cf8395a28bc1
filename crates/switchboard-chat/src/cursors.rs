//! Cursors per conversation (protocol §8 "What a client must do"): the highest `seq` up to which
//! the client holds every message since it picked the conversation up, plus the messages it holds
//! beyond a gap, so that it can deduplicate by `conv` + `seq` and tell when to fetch a gap.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Cursors {
    convs: BTreeMap<String, Conv>,
    /// Changed since the last [`Cursors::take_dirty`].
    dirty: bool,
}

#[derive(Debug, Default)]
struct Conv {
    /// Every message with `seq <= cursor` (since the pickup point) is held.
    cursor: u64,
    /// Messages held beyond a gap: all `> cursor + 1`.
    held: BTreeSet<u64>,
}

impl Cursors {
    /// Cursors saved by an earlier run.
    pub fn from_saved(saved: &BTreeMap<String, u64>) -> Cursors {
        let convs =
            saved.iter().map(|(conv, &cursor)| (conv.clone(), Conv { cursor, held: BTreeSet::new() })).collect();
        Cursors { convs, dirty: false }
    }

    /// The cursors to send with a login frame and to save.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.convs.iter().map(|(conv, state)| (conv.clone(), state.cursor)).collect()
    }

    pub fn get(&self, conv: &str) -> Option<u64> {
        self.convs.get(conv).map(|state| state.cursor)
    }

    /// A `sync` entry: the messages that follow have `seq > from_seq`, so the client holds
    /// everything up to `from_seq` from now on (the server's word wins over a stale cursor).
    pub fn sync_start(&mut self, conv: &str, from_seq: u64) {
        let state = self.convs.entry(conv.to_owned()).or_default();
        if state.cursor != from_seq {
            state.cursor = from_seq;
            state.held.retain(|&seq| seq > from_seq);
            self.advance(conv);
            self.dirty = true;
        }
    }

    /// Picks up a conversation not seen before at `seq` (everything older counts as not wanted,
    /// not as a gap): for a page of history or a `join` answer that starts at `seq + 1`.
    pub fn pick_up(&mut self, conv: &str, seq: u64) {
        if !self.convs.contains_key(conv) {
            self.convs.insert(conv.to_owned(), Conv { cursor: seq, held: BTreeSet::new() });
            self.dirty = true;
        }
    }

    /// Records message `seq` of `conv`; false if it was held already (a duplicate). The first
    /// message of a conversation never seen is its pickup point.
    pub fn observe(&mut self, conv: &str, seq: u64) -> bool {
        let Some(state) = self.convs.get_mut(conv) else {
            self.convs.insert(conv.to_owned(), Conv { cursor: seq, held: BTreeSet::new() });
            self.dirty = true;
            return true;
        };
        if seq <= state.cursor || !state.held.insert(seq) {
            return false;
        }
        self.advance(conv);
        true
    }

    /// The cursor to fetch a gap after (`history` with `after`), when messages are held beyond one.
    pub fn gap(&self, conv: &str) -> Option<u64> {
        self.convs.get(conv).filter(|state| !state.held.is_empty()).map(|state| state.cursor)
    }

    /// Accepts a gap that cannot be filled: the cursor jumps to the next held message.
    pub fn skip_gap(&mut self, conv: &str) {
        if let Some(state) = self.convs.get_mut(conv) {
            if let Some(&first) = state.held.iter().next() {
                state.cursor = first - 1;
                self.advance(conv);
            }
        }
    }

    /// Forgets a conversation (a room left).
    pub fn forget(&mut self, conv: &str) {
        if self.convs.remove(conv).is_some() {
            self.dirty = true;
        }
    }

    /// Whether anything changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn advance(&mut self, conv: &str) {
        let Some(state) = self.convs.get_mut(conv) else { return };
        while state.held.remove(&(state.cursor + 1)) {
            state.cursor += 1;
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_messages_advance_the_cursor_and_duplicates_are_refused() {
        let mut cursors = Cursors::default();
        assert!(cursors.observe("dm:a:b", 4), "first message: the pickup point");
        assert_eq!(cursors.get("dm:a:b"), Some(4));
        assert!(cursors.observe("dm:a:b", 5));
        assert!(!cursors.observe("dm:a:b", 5));
        assert!(!cursors.observe("dm:a:b", 3));
        assert_eq!(cursors.get("dm:a:b"), Some(5));
        assert_eq!(cursors.gap("dm:a:b"), None);
    }

    #[test]
    fn a_jump_is_a_gap_until_filled() {
        let mut cursors = Cursors::from_saved(&BTreeMap::from([("room:x".to_owned(), 10)]));
        assert!(cursors.observe("room:x", 13));
        assert_eq!(cursors.get("room:x"), Some(10));
        assert_eq!(cursors.gap("room:x"), Some(10));
        assert!(cursors.observe("room:x", 11));
        assert!(cursors.observe("room:x", 12));
        assert!(!cursors.observe("room:x", 13), "held already");
        assert_eq!(cursors.get("room:x"), Some(13));
        assert_eq!(cursors.gap("room:x"), None);
    }

    #[test]
    fn sync_start_and_pick_up() {
        let mut cursors = Cursors::default();
        cursors.sync_start("dm:a:b", 40);
        assert!(cursors.observe("dm:a:b", 41));
        assert_eq!(cursors.get("dm:a:b"), Some(41));
        cursors.pick_up("room:x", 7);
        cursors.pick_up("room:x", 2);
        assert_eq!(cursors.get("room:x"), Some(7), "pick_up only sets a conversation never seen");
        assert!(cursors.take_dirty());
        assert!(!cursors.take_dirty());
        cursors.observe("room:x", 10);
        cursors.skip_gap("room:x");
        assert_eq!(cursors.get("room:x"), Some(10));
        assert_eq!(cursors.snapshot(), BTreeMap::from([("dm:a:b".to_owned(), 41), ("room:x".to_owned(), 10)]));
    }
}
