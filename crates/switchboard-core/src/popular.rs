//! The most used words over a sliding window (seed 001's `popular`).
//!
//! Counts live in one bucket per second; a query adds up the buckets inside its window, and
//! buckets older than the configured window are dropped as time moves on. Each bucket holds at
//! most [`MAX_WORDS_PER_BUCKET`] distinct words, so memory stays bounded under any input.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

pub const MAX_WORDS_PER_BUCKET: usize = 20_000;
/// Words longer than this are not counted (they are rarely words).
const MAX_WORD_CHARS: usize = 40;

/// Word counts of one second.
type Bucket = (u64, HashMap<Box<str>, u64>);

pub struct PopularWords {
    window_secs: u64,
    buckets: Mutex<VecDeque<Bucket>>,
}

impl PopularWords {
    pub fn new(window_secs: u32) -> Self {
        PopularWords { window_secs: u64::from(window_secs.max(1)), buckets: Mutex::new(VecDeque::new()) }
    }

    pub fn window_secs(&self) -> u32 {
        self.window_secs as u32
    }

    /// Counts the words of a message at second `now_secs`.
    pub fn record(&self, text: &str, now_secs: u64) {
        let words = words_of(text);
        if words.is_empty() {
            return;
        }
        let mut buckets = self.buckets.lock();
        while buckets.front().is_some_and(|(second, _)| second + self.window_secs <= now_secs) {
            buckets.pop_front();
        }
        if buckets.back().is_none_or(|(second, _)| *second != now_secs) {
            buckets.push_back((now_secs, HashMap::new()));
        }
        let Some((_, counts)) = buckets.back_mut() else {
            return;
        };
        for word in words {
            if let Some(count) = counts.get_mut(word.as_str()) {
                *count += 1;
            } else if counts.len() < MAX_WORDS_PER_BUCKET {
                counts.insert(word.into_boxed_str(), 1);
            }
        }
    }

    /// The `n` most used words of the last `seconds` (at most the window), most used first; ties
    /// in alphabetical order.
    pub fn top(&self, n: usize, seconds: u32, now_secs: u64) -> Vec<(String, u64)> {
        let seconds = u64::from(seconds).clamp(1, self.window_secs);
        let mut totals: HashMap<&str, u64> = HashMap::new();
        let buckets = self.buckets.lock();
        for (second, counts) in buckets.iter() {
            if second + seconds <= now_secs {
                continue;
            }
            for (word, count) in counts {
                *totals.entry(word).or_default() += count;
            }
        }
        let mut ranked: Vec<(String, u64)> = totals.into_iter().map(|(w, c)| (w.to_owned(), c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(n);
        ranked
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
}
