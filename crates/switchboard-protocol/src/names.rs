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

/// Where a `conversations` page resumes: the activity time and id of the previous page's last
/// entry. The listing runs newest activity first (ties by id), so what follows the cursor is older,
/// and a conversation that gets a message meanwhile moves above it instead of being listed twice.
///
/// Its text form, the `next_cursor` clients echo, is `<last_ts>:<conv>`, e.g. `1718000000000:room:lobby`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCursor {
    pub last_ts: i64,
    pub conv: ConvId,
}

impl ActivityCursor {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let (ts, conv) = text.split_once(':').ok_or(NameError::InvalidConversation)?;
        if ts.is_empty() || !ts.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(NameError::InvalidConversation);
        }
        let last_ts = ts.parse().map_err(|_| NameError::InvalidConversation)?;
        Ok(ActivityCursor { last_ts, conv: ConvId::parse(conv)? })
    }
}

impl fmt::Display for ActivityCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.last_ts, self.conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_cursors_read_back_what_they_write() {
        let cursor = ActivityCursor::parse("1718000000000:dm:Bob:alice").unwrap();
        assert_eq!(cursor, ActivityCursor { last_ts: 1_718_000_000_000, conv: ConvId::direct("alice", "bob") });
        assert_eq!(cursor.to_string(), "1718000000000:dm:alice:bob");
        assert_eq!(ActivityCursor::parse("0:room:lobby").unwrap().conv, ConvId::room("lobby"));
        for bad in ["room:lobby", "dm:a:b", ":room:x", "-1:room:x", "1:room:", "9999999999999999999999:room:x"] {
            assert!(ActivityCursor::parse(bad).is_err(), "{bad}");
        }
    }

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
