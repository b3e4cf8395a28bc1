//! Telling duplicates and reordering apart in a member's stream of room seqs, in fixed memory.

/// How a room seq compares with those received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Higher than any before.
    Next,
    /// New, but lower than one received before.
    Late,
    Duplicate,
}

/// The room seqs a member received lately: the highest, and which of the [`SEQ_WINDOW`] below it
/// (a ring of bits, so memory stays fixed however long the run). A seq further back than that is
/// taken as late, not as a duplicate.
pub(super) struct SeqWindow {
    highest: u64,
    bits: [u64; SEQ_WINDOW as usize / 64],
}

const SEQ_WINDOW: u64 = 4096;

impl Default for SeqWindow {
    fn default() -> Self {
        SeqWindow { highest: 0, bits: [0; SEQ_WINDOW as usize / 64] }
    }
}

impl SeqWindow {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let slot = seq % SEQ_WINDOW;
        (&mut self.bits[(slot / 64) as usize], 1 << (slot % 64))
    }

    pub(super) fn insert(&mut self, seq: u64) -> Seen {
        if seq > self.highest {
            if seq - self.highest >= SEQ_WINDOW {
                self.bits = [0; SEQ_WINDOW as usize / 64];
            } else {
                for skipped in self.highest + 1..seq {
                    let (word, bit) = self.bit(skipped);
                    *word &= !bit;
                }
            }
            self.highest = seq;
            let (word, bit) = self.bit(seq);
            *word |= bit;
            return Seen::Next;
        }
        if self.highest - seq >= SEQ_WINDOW {
            return Seen::Late;
        }
        let (word, bit) = self.bit(seq);
        if *word & bit != 0 {
            return Seen::Duplicate;
        }
        *word |= bit;
        Seen::Late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_windows_tell_duplicates_from_late_messages() {
        let mut seen = SeqWindow::default();
        assert_eq!(seen.insert(5), Seen::Next);
        assert_eq!(seen.insert(5), Seen::Duplicate);
        assert_eq!(seen.insert(8), Seen::Next);
        assert_eq!(seen.insert(6), Seen::Late);
        assert_eq!(seen.insert(6), Seen::Duplicate);
        assert_eq!(seen.insert(7), Seen::Late);
        assert_eq!(seen.insert(8), Seen::Duplicate);
        // The slot of 5 is reused by 5 + SEQ_WINDOW: 5 is then too old to tell.
        assert_eq!(seen.insert(5 + SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(5), Seen::Late);
        assert_eq!(seen.insert(9 + SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(7 + SEQ_WINDOW), Seen::Late);
        assert_eq!(seen.insert(100 * SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(9 + SEQ_WINDOW), Seen::Late);
        assert_eq!(seen.insert(100 * SEQ_WINDOW), Seen::Duplicate);
    }
}
