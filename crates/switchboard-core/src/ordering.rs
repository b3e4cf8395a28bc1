//! Each connection's live stream, put in `seq` order per conversation.
//!
//! Messages of one conversation reach a node by different roads: its own commits straight from
//! the pipeline, the other nodes' over the bus, each publisher on its own channel. So seq 6,
//! committed here, can overtake seq 5, committed a millisecond earlier on another node. A
//! connection therefore remembers, per conversation, the next seq its client should see; a
//! message further ahead waits until the ones before it arrive. One that does not come within
//! `reorder_wait` is read from the store by the gap filler (`gaps.rs`), since a seq is only ever
//! handed out by a commit; whatever the store does not have is skipped. Nothing waits longer.

use std::time::Instant;

use switchboard_protocol::ws::WireFrame;

/// Where a conversation's stream stands on one connection, and what waits for a gap to close.
#[derive(Default)]
pub struct StreamOrder {
    /// Per conversation, the next seq to deliver; sorted by conversation.
    next: Vec<(Box<str>, u64)>,
    /// Messages ahead of a gap. `None` stands for the connection's own send, answered by an ack
    /// rather than delivered, which still takes its place in the order.
    held: Vec<Held>,
    /// When the oldest of `held` began waiting.
    waiting_since: Option<Instant>,
}

struct Held {
    conv: Box<str>,
    seq: u64,
    frame: Option<WireFrame>,
}

/// What to do with a message offered to the stream.
#[derive(Debug)]
pub enum Admit {
    /// It is next: deliver it (`None`: the connection's own send, nothing to deliver), then ask
    /// [`StreamOrder::next_ready`] for the ones it frees.
    Now(Option<WireFrame>),
    /// It waits for a gap; `started` when it is the first to wait, so the gap filler must learn
    /// of this connection.
    Held { started: bool },
    /// The client has it already (from the sync, a join answer or a gap fill).
    Duplicate,
}

/// A conversation's missing range: the seqs after `after` and before `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub conv: Box<str>,
    pub after: u64,
    pub before: u64,
}

impl StreamOrder {
    /// Starts from what a sync gave the client: per conversation, the newest seq it holds or
    /// can page to. Conversations not listed did not exist then.
    pub fn start(&mut self, newest: impl IntoIterator<Item = (String, u64)>) {
        let mut next: Vec<(Box<str>, u64)> =
            newest.into_iter().map(|(conv, seq)| (conv.into_boxed_str(), seq + 1)).collect();
        next.sort_unstable();
        self.next = next;
    }

    /// Offers a message (or, with `frame: None`, the connection's own send) to the stream.
    pub fn admit(&mut self, conv: &str, seq: u64, frame: Option<WireFrame>) -> Admit {
        let index = match self.position(conv) {
            Ok(index) => index,
            Err(index) => {
                // A private conversation missing from the sync was created after it: it starts at
                // 1. A room joined from another device has no known start: it starts here.
                let first = if conv.starts_with("room:") { seq } else { 1 };
                self.next.insert(index, (conv.into(), first));
                index
            }
        };
        let next = self.next[index].1;
        if seq < next || self.held.iter().any(|held| held.seq == seq && &*held.conv == conv) {
            return Admit::Duplicate;
        }
        if seq == next {
            self.next[index].1 = seq + 1;
            return Admit::Now(frame);
        }
        self.held.push(Held { conv: conv.into(), seq, frame });
        let started = self.waiting_since.is_none();
        self.waiting_since.get_or_insert_with(Instant::now);
        Admit::Held { started }
    }

    /// The held message of `conv` that is next now, taken out of the wait; `Some(None)` for the
    /// connection's own send. Held ones the stream has passed meanwhile are dropped.
    pub fn next_ready(&mut self, conv: &str) -> Option<Option<WireFrame>> {
        let index = self.position(conv).ok()?;
        let next = self.next[index].1;
        self.held.retain(|held| &*held.conv != conv || held.seq >= next);
        let found = self.held.iter().position(|held| &*held.conv == conv && held.seq == next)?;
        let held = self.held.swap_remove(found);
        self.next[index].1 = next + 1;
        if self.held.is_empty() {
            self.waiting_since = None;
        }
        Some(held.frame)
    }

    /// The client got everything of `conv` up to `seq` another way (a join answer).
    pub fn caught_up(&mut self, conv: &str, seq: u64) {
        match self.position(conv) {
            Ok(index) => self.next[index].1 = self.next[index].1.max(seq + 1),
            Err(index) => self.next.insert(index, (conv.into(), seq + 1)),
        }
    }

    /// Gives up on the seqs of `conv` before `seq`: what was not found in the store.
    pub fn skip_to(&mut self, conv: &str, seq: u64) {
        if let Ok(index) = self.position(conv) {
            self.next[index].1 = self.next[index].1.max(seq);
        }
    }

    /// The connection no longer follows `conv` (it left the room).
    pub fn forget(&mut self, conv: &str) {
        if let Ok(index) = self.position(conv) {
            self.next.remove(index);
        }
        self.held.retain(|held| &*held.conv != conv);
        if self.held.is_empty() {
            self.waiting_since = None;
        }
    }

    /// When the oldest held message began waiting; `None` when nothing waits.
    pub fn waiting_since(&self) -> Option<Instant> {
        self.waiting_since
    }

    /// The gaps held messages wait for, one per conversation, and restarts the wait's clock.
    pub fn gaps(&mut self, now: Instant) -> Vec<Gap> {
        let mut gaps: Vec<Gap> = Vec::new();
        for held in &self.held {
            match gaps.iter_mut().find(|gap| gap.conv == held.conv) {
                Some(gap) => gap.before = gap.before.min(held.seq),
                None => {
                    let after = self.position(&held.conv).map_or(0, |index| self.next[index].1 - 1);
                    gaps.push(Gap { conv: held.conv.clone(), after, before: held.seq });
                }
            }
        }
        if self.waiting_since.is_some() {
            self.waiting_since = Some(now);
        }
        gaps
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    fn position(&self, conv: &str) -> Result<usize, usize> {
        self.next.binary_search_by(|(known, _)| (**known).cmp(conv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: Option<WireFrame>) -> String {
        frame.map_or_else(|| "own".to_owned(), |f| String::from_utf8(f.payload().to_vec()).unwrap())
    }

    /// Offers a message and returns what the client sees because of it, in order.
    fn offer(order: &mut StreamOrder, conv: &str, seq: u64, label: Option<&str>) -> Vec<String> {
        let frame = label.map(|label| WireFrame::text(label.as_bytes()));
        let mut seen = Vec::new();
        if let Admit::Now(frame) = order.admit(conv, seq, frame) {
            seen.push(text(frame));
            while let Some(frame) = order.next_ready(conv) {
                seen.push(text(frame));
            }
        }
        seen
    }

    #[test]
    fn a_message_that_overtook_its_predecessor_waits_for_it() {
        let mut order = StreamOrder::default();
        order.start([("dm:a:b".to_owned(), 4)]);
        assert!(offer(&mut order, "dm:a:b", 6, Some("6")).is_empty());
        assert!(order.waiting_since().is_some());
        assert_eq!(offer(&mut order, "dm:a:b", 5, Some("5")), ["5", "6"]);
        assert!(order.waiting_since().is_none(), "nothing waits once the gap closed");
        assert!(offer(&mut order, "dm:a:b", 6, Some("6 again")).is_empty(), "delivered once");
    }

    #[test]
    fn the_own_send_takes_its_place_without_being_delivered() {
        let mut order = StreamOrder::default();
        order.start([("dm:a:b".to_owned(), 4)]);
        assert!(offer(&mut order, "dm:a:b", 7, Some("7")).is_empty());
        assert!(offer(&mut order, "dm:a:b", 6, None).is_empty(), "own send 6 waits for 5 like the rest");
        assert_eq!(offer(&mut order, "dm:a:b", 5, Some("5")), ["5", "own", "7"]);
    }

    #[test]
    fn conversations_do_not_wait_for_each_other() {
        let mut order = StreamOrder::default();
        order.start([("dm:a:b".to_owned(), 1), ("room:x".to_owned(), 10)]);
        assert!(offer(&mut order, "dm:a:b", 3, Some("b3")).is_empty());
        assert_eq!(offer(&mut order, "room:x", 11, Some("x11")), ["x11"]);
        assert_eq!(order.gaps(Instant::now()), [Gap { conv: "dm:a:b".into(), after: 1, before: 3 }]);
    }

    #[test]
    fn unknown_conversations_start_where_they_must() {
        let mut order = StreamOrder::default();
        order.start([]);
        assert!(offer(&mut order, "dm:a:c", 2, Some("c2")).is_empty(), "a new private conversation starts at 1");
        assert_eq!(offer(&mut order, "dm:a:c", 1, Some("c1")), ["c1", "c2"]);
        assert_eq!(offer(&mut order, "room:big", 500, Some("r500")), ["r500"], "a room joined elsewhere starts here");
    }

    #[test]
    fn a_fill_that_finds_nothing_lets_the_held_ones_through() {
        let mut order = StreamOrder::default();
        order.start([("dm:a:b".to_owned(), 1)]);
        offer(&mut order, "dm:a:b", 4, Some("4"));
        offer(&mut order, "dm:a:b", 3, Some("3"));
        assert_eq!(order.gaps(Instant::now()), [Gap { conv: "dm:a:b".into(), after: 1, before: 3 }]);
        order.skip_to("dm:a:b", 3);
        let released: Vec<String> = std::iter::from_fn(|| order.next_ready("dm:a:b")).map(text).collect();
        assert_eq!(released, ["3", "4"]);
        assert!(order.waiting_since().is_none());
    }

    #[test]
    fn a_join_answer_and_a_leave_reset_a_room() {
        let mut order = StreamOrder::default();
        order.start([]);
        order.caught_up("room:x", 20);
        assert!(offer(&mut order, "room:x", 20, Some("20")).is_empty(), "the join answer carried 20");
        assert_eq!(offer(&mut order, "room:x", 21, Some("21")), ["21"]);
        offer(&mut order, "room:x", 23, Some("23"));
        order.forget("room:x");
        assert!(order.waiting_since().is_none(), "a left room's held messages go with it");
        assert_eq!(offer(&mut order, "room:x", 40, Some("40")), ["40"], "back in the room, it starts afresh");
    }
}
