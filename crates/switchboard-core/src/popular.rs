//! The most used words over a sliding window (seed 001's `popular`), cluster-wide.
//!
//! Counts live in one bucket per second; a query adds up the buckets inside its window, and
//! buckets older than the configured window are dropped as time moves on. Each bucket holds at
//! most [`MAX_WORDS_PER_BUCKET`] distinct words, so memory stays bounded under any input.
//!
//! A node counts the room messages it stores, and also keeps those counts aside until the cluster
//! upkeep sends them to the other nodes in one batch a second ([`PopularWords::take_unsent`]);
//! what the others send is merged into the same buckets ([`PopularWords::merge`]) and never sent
//! on, so every word is counted once per node and the ranking is the cluster's, a second late at
//! most. Only counts cross the bus, never message text, and never to a room's subscribers.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

pub const MAX_WORDS_PER_BUCKET: usize = 20_000;
/// Words longer than this are not counted (they are rarely words).
const MAX_WORD_CHARS: usize = 40;

/// Word counts by second.
type Buckets = BTreeMap<u64, HashMap<Box<str>, u64>>;

/// The counts of one second, as they cross the bus.
pub type SecondCounts = (u64, Vec<(String, u64)>);

pub struct PopularWords {
    window_secs: u64,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// This node's counts and the other nodes'.
    all: Buckets,
    /// This node's counts not sent to the others yet.
    unsent: Buckets,
}

impl PopularWords {
    pub fn new(window_secs: u32) -> Self {
        PopularWords { window_secs: u64::from(window_secs.max(1)), counts: Mutex::new(Counts::default()) }
    }

    pub fn window_secs(&self) -> u32 {
        self.window_secs as u32
    }

    /// Counts the words of a message stored through this node, at second `now_secs`.
    pub fn record(&self, text: &str, now_secs: u64) {
        let words = words_of(text);
        if words.is_empty() {
            return;
        }
        let mut counts = self.counts.lock();
        let Counts { all, unsent } = &mut *counts;
        self.expire(all, now_secs);
        self.expire(unsent, now_secs);
        for word in words {
            add(all.entry(now_secs).or_default(), &word, 1);
            add(unsent.entry(now_secs).or_default(), &word, 1);
        }
    }

    /// Takes this node's counts not sent yet, for the other nodes; those already out of the window
    /// are left behind.
    pub fn take_unsent(&self, now_secs: u64) -> Vec<SecondCounts> {
        let mut counts = self.counts.lock();
        self.expire(&mut counts.unsent, now_secs);
        std::mem::take(&mut counts.unsent)
            .into_iter()
            .map(|(second, words)| (second, words.into_iter().map(|(word, count)| (word.into(), count)).collect()))
            .collect()
    }

    /// Adds another node's counts of one second. Seconds outside the window (allowing as much
    /// clock skew ahead as the window is long) are ignored, so that memory stays bounded.
    pub fn merge(&self, second: u64, words: &[(String, u64)], now_secs: u64) {
        if second + self.window_secs <= now_secs || second > now_secs + self.window_secs {
            return;
        }
        let mut counts = self.counts.lock();
        self.expire(&mut counts.all, now_secs);
        let bucket = counts.all.entry(second).or_default();
        for (word, count) in words {
            if (1..=MAX_WORD_CHARS).contains(&word.chars().count()) {
                add(bucket, word, *count);
            }
        }
    }

    /// The `n` most used words of the last `seconds` (at most the window), most used first; ties
    /// in alphabetical order.
    pub fn top(&self, n: usize, seconds: u32, now_secs: u64) -> Vec<(String, u64)> {
        let seconds = u64::from(seconds).clamp(1, self.window_secs);
        let mut totals: HashMap<&str, u64> = HashMap::new();
        let counts = self.counts.lock();
        for (_, words) in counts.all.range(now_secs.saturating_sub(seconds - 1)..) {
            for (word, count) in words {
                let total = totals.entry(word).or_default();
                *total = total.saturating_add(*count);
            }
        }
        let mut ranked: Vec<(String, u64)> = totals.into_iter().map(|(w, c)| (w.to_owned(), c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(n);
        ranked
    }

    fn expire(&self, buckets: &mut Buckets, now_secs: u64) {
        let oldest_kept = (now_secs + 1).saturating_sub(self.window_secs);
        *buckets = buckets.split_off(&oldest_kept);
    }
}

fn add(bucket: &mut HashMap<Box<str>, u64>, word: &str, count: u64) {
    if let Some(total) = bucket.get_mut(word) {
        *total = total.saturating_add(count);
    } else if bucket.len() < MAX_WORDS_PER_BUCKET {
        bucket.insert(word.into(), count);
    }
}

/// Lowercase words of two or more letters or digits; masked words (`****`) are not words.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| {
            let chars = word.chars().count();
            (2..=MAX_WORD_CHARS).contains(&chars) && !word.chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_case_insensitively_and_ranks_them() {
        let popular = PopularWords::new(60);
        popular.record("Rust is fast, rust is safe", 100);
        popular.record("go is fine", 100);
        let top = popular.top(2, 60, 100);
        assert_eq!(top, vec![("is".to_string(), 3), ("rust".to_string(), 2)]);
    }

    #[test]
    fn old_words_slide_out_of_the_window() {
        let popular = PopularWords::new(10);
        popular.record("old old old", 100);
        popular.record("new", 105);
        assert_eq!(popular.top(1, 10, 105)[0].0, "old");
        assert_eq!(popular.top(5, 10, 111), vec![("new".to_string(), 1)]);
        assert_eq!(popular.top(5, 3, 109), vec![]);
    }

    #[test]
    fn masked_words_and_single_letters_are_not_counted() {
        let popular = PopularWords::new(10);
        popular.record("a **** 42 ok", 1);
        assert_eq!(popular.top(5, 10, 1), vec![("ok".to_string(), 1)]);
    }

    #[test]
    fn own_counts_are_sent_once_and_merged_counts_never() {
        let (here, there) = (PopularWords::new(60), PopularWords::new(60));
        here.record("rust rust go", 100);
        let batch = here.take_unsent(100);
        assert_eq!(batch.len(), 1);
        assert!(here.take_unsent(100).is_empty(), "sent once");
        there.record("rust", 101);
        for (second, words) in &batch {
            there.merge(*second, words, 101);
        }
        assert_eq!(there.top(2, 60, 101), vec![("rust".to_string(), 3), ("go".to_string(), 1)]);
        assert_eq!(there.take_unsent(101), vec![(101, vec![("rust".to_string(), 1)])], "only its own words");
        assert_eq!(here.top(1, 60, 101), vec![("rust".to_string(), 2)], "the sender counted them once");
    }

    #[test]
    fn merged_counts_outside_the_window_are_ignored() {
        let popular = PopularWords::new(10);
        let words = vec![("late".to_string(), 5)];
        popular.merge(90, &words, 100);
        popular.merge(200, &words, 100);
        assert_eq!(popular.top(5, 10, 100), vec![]);
        popular.record("kept", 100);
        assert!(popular.take_unsent(111).is_empty(), "unsent counts expire with the window");
    }
}
