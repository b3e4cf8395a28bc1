//! The server API's keys: compared in constant time, never printed.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The API keys a backend may present as `Authorization: Bearer <key>`. Only their SHA-256
/// digests are kept, so that comparing takes the same time whatever the length or the content
/// of a guess, and `Debug` shows how many there are, not what they are.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ApiKeys({} set)", self.digests.len())
    }
}

impl ApiKeys {
    /// Keys from settings; empty ones are ignored.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> ApiKeys {
        let digests = keys
            .into_iter()
            .filter(|key| !key.as_ref().is_empty())
            .map(|key| Sha256::digest(key.as_ref().as_bytes()).into())
            .collect();
        ApiKeys { digests }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys; every key is compared, in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for key in &self.digests {
            found |= key.ct_eq(&digest);
        }
        bool::from(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_key_is_accepted_and_debug_shows_none() {
        let keys = ApiKeys::new(["first-key", "", "second-key"]);
        assert!(keys.accepts("first-key"));
        assert!(keys.accepts("second-key"));
        assert!(!keys.accepts("first-ke"));
        assert!(!keys.accepts(""));
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 set)");
        assert!(ApiKeys::new(Vec::<String>::new()).is_empty());
    }
}
