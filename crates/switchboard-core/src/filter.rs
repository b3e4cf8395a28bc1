//! The dirty-word filter (seed 001): every character of a listed word becomes `*`.
//!
//! Latin-script words match whole words only, case-insensitively, so that "class" survives a
//! list that holds "ass". Words in scripts without spaces (Chinese, Japanese...) match anywhere.
//! The filter runs before a message is stored, so history is as clean as live delivery.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

pub struct WordFilter {
    matcher: Option<AhoCorasick>,
    /// Per pattern: whether it must stand as a whole word.
    whole_word: Vec<bool>,
}

impl WordFilter {
    pub fn new(words: &[String]) -> Self {
        let words: Vec<&str> =
            words.iter().map(|w| w.trim()).filter(|w| !w.is_empty() && !w.starts_with('#')).collect();
        if words.is_empty() {
            return WordFilter { matcher: None, whole_word: Vec::new() };
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .ok();
        let whole_word = words.iter().map(|w| w.is_ascii()).collect();
        WordFilter { matcher, whole_word }
    }

    /// Reads a word list: one word per line, `#` starts a comment line.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let words: Vec<String> = text.lines().map(str::to_owned).collect();
        Ok(Self::new(&words))
    }

    /// Returns the text with every match masked, or `None` when nothing matched.
    pub fn mask(&self, text: &str) -> Option<String> {
        let matcher = self.matcher.as_ref()?;
        let mut masked: Option<String> = None;
        let mut copied_up_to = 0;
        for found in matcher.find_iter(text) {
            let (start, end) = (found.start(), found.end());
            if self.whole_word[found.pattern().as_usize()] && !stands_alone(text, start, end) {
                continue;
            }
            let out = masked.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied_up_to..start]);
            out.extend(text[start..end].chars().map(|_| '*'));
            copied_up_to = end;
        }
        let mut out = masked?;
        out.push_str(&text[copied_up_to..]);
        Some(out)
    }
}

fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(words: &[&str]) -> WordFilter {
        WordFilter::new(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn masks_each_character_and_keeps_the_length() {
        let f = filter(&["darn", "heck"]);
        assert_eq!(f.mask("Darn it, HECK!").as_deref(), Some("**** it, ****!"));
        assert_eq!(f.mask("nothing here"), None);
    }

    #[test]
    fn latin_words_match_whole_words_only() {
        let f = filter(&["ass"]);
        assert_eq!(f.mask("a class act"), None);
        assert_eq!(f.mask("you ass."), Some("you ***.".into()));
    }

    #[test]
    fn words_without_spaces_match_anywhere() {
        let f = filter(&["坏蛋"]);
        assert_eq!(f.mask("你这个坏蛋啊").as_deref(), Some("你这个**啊"));
    }

    #[test]
    fn comments_and_blank_lines_are_not_words() {
        let f = filter(&["# a comment", "", "  "]);
        assert_eq!(f.mask("# a comment"), None);
    }
}
