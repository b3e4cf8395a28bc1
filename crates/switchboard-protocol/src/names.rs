//! Names of users and rooms, and the ids of conversations.

use std::fmt;

/// Longest user name, in bytes.
pub const MAX_USER_NAME: usize = 32;
/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must be 1 to {max} characters of a-z, 0-9, '_', '-' or '.', starting with a letter, digit or '_'")]
    Invalid { max: usize },
    #[error("conversation id must be 'dm:<user>:<user>' or 'room:<room>'")]
    InvalidConversation,
}

fn valid_name(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > max {
        return false;
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit() || bytes[0] == b'_') {
        return false;
    }
    bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

/// Normalises a user name: names are case-insensitive and stored lowercase.
pub fn user_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim().to_ascii_lowercase();
    if valid_name(&name, MAX_USER_NAME) {
        Ok(name)
    } else {
        Err(NameError::Invalid { max: MAX_USER_NAME })
    }
}

/// Normalises a room name, with the same rules as user names but longer.
pub fn room_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim().to_ascii_lowercase();
    if valid_name(&name, MAX_ROOM_NAME) {
        Ok(name)
    } else {
        Err(NameError::Invalid { max: MAX_ROOM_NAME })
    }
}

/// A conversation: the private one between two users, or a room.
///
/// Its text form is the id clients see: `dm:<a>:<b>` with the two names sorted, or `room:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvId {
    Direct { low: String, high: String },
    Room(String),
}

impl ConvId {
    /// The private conversation of two (already normalised) users, whichever sends.
    pub fn direct(a: &str, b: &str) -> Self {
        if a <= b {
            ConvId::Direct { low: a.to_owned(), high: b.to_owned() }
        } else {
            ConvId::Direct { low: b.to_owned(), high: a.to_owned() }
        }
    }

    pub fn room(name: &str) -> Self {
        ConvId::Room(name.to_owned())
    }

    /// The other participant of a private conversation, seen from `me`.
    pub fn peer_of(&self, me: &str) -> Option<&str> {
        match self {
            ConvId::Direct { low, high } if low == me => Some(high),
            ConvId::Direct { low, high } if high == me => Some(low),
            _ => None,
        }
    }

    pub fn is_participant(&self, user: &str) -> bool {
        matches!(self, ConvId::Direct { low, high } if low == user || high == user)
    }

    pub fn room_name(&self) -> Option<&str> {
        match self {
            ConvId::Room(name) => Some(name),
            ConvId::Direct { .. } => None,
        }
    }

    pub fn parse(text: &str) -> Result<Self, NameError> {
        if let Some(room) = text.strip_prefix("room:") {
            return room_name(room).map(ConvId::Room).map_err(|_| NameError::InvalidConversation);
        }
        let Some(pair) = text.strip_prefix("dm:") else {
            return Err(NameError::InvalidConversation);
        };
        let Some((a, b)) = pair.split_once(':') else {
            return Err(NameError::InvalidConversation);
        };
        let a = user_name(a).map_err(|_| NameError::InvalidConversation)?;
        let b = user_name(b).map_err(|_| NameError::InvalidConversation)?;
        Ok(ConvId::direct(&a, &b))
    }
}

impl fmt::Display for ConvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvId::Direct { low, high } => write!(f, "dm:{low}:{high}"),
            ConvId::Room(name) => write!(f, "room:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_lowercased_and_checked() {
        assert_eq!(user_name(" Alice ").unwrap(), "alice");
        assert!(user_name("").is_err());
        assert!(user_name("a:b").is_err());
        assert!(user_name("-lead").is_err());
        assert!(user_name(&"x".repeat(33)).is_err());
        assert_eq!(user_name("bob_2.x-y").unwrap(), "bob_2.x-y");
    }

    #[test]
    fn direct_conversation_ids_do_not_depend_on_who_sends() {
        let one = ConvId::direct("bob", "alice");
        let other = ConvId::direct("alice", "bob");
        assert_eq!(one, other);
        assert_eq!(one.to_string(), "dm:alice:bob");
        assert_eq!(one.peer_of("alice"), Some("bob"));
        assert_eq!(one.peer_of("carol"), None);
        assert_eq!(ConvId::parse("dm:bob:alice").unwrap(), one);
        assert_eq!(ConvId::parse("room:Lobby").unwrap().to_string(), "room:lobby");
        assert!(ConvId::parse("chan:x").is_err());
        assert!(ConvId::parse("dm:alice").is_err());
    }
}
