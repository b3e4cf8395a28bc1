/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// PHC string (argon2); `None` for users without a password (JWT or open mode).
    pub password_hash: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the token: the token itself is never stored.
    pub token_hash: String,
    pub user: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    pub name: String,
    pub members: u64,
    /// Whether the user who asked is a member.
    pub joined: bool,
    pub private: bool,
    /// The asker's role, when a member.
    pub role: Option<crate::Role>,
}

/// One page of a listing, in ascending key order, and how many entries the whole listing has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A message the core wants stored; the store assigns `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Conversation id, `dm:<a>:<b>` or `room:<name>`.
    pub conv: String,
    /// Unique id chosen by the core.
    pub id: String,
    pub sender: String,
    /// Set for private messages.
    pub recipient: Option<String>,
    /// Set for room messages.
    pub room: Option<String>,
    pub text: String,
    pub ts: Millis,
    /// Client-chosen key that makes a retried send store once, per sender.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conv: String,
    pub seq: u64,
    pub id: String,
    pub sender: String,
    pub recipient: Option<String>,
    pub room: Option<String>,
    pub text: String,
    pub ts: Millis,
    /// The sender's idempotency key, if the send had one.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored(StoredMessage),
    /// The (sender, idempotency key) was stored before: this is the original message.
    Duplicate(StoredMessage),
}

impl AppendOutcome {
    pub fn message(&self) -> &StoredMessage {
        match self {
            AppendOutcome::Stored(message) | AppendOutcome::Duplicate(message) => message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub conv: String,
    pub last_seq: u64,
    /// Timestamp of the newest message (0 when none).
    pub last_ts: Millis,
    /// The user's read marker (0 when never set).
    pub read_seq: u64,
    /// Private conversations: the other user's read marker (the user's own in a conversation
    /// with themselves), so "seen" survives a reload; 0 for rooms.
    pub peer_read_seq: u64,
    /// Private conversations: how far the other user's devices reported receiving; 0 for rooms.
    pub peer_delivered_seq: u64,
}

impl ConversationRecord {
    /// The peer's markers, for a private conversation (rooms have no single peer).
    pub fn peer_markers(&self) -> Option<(u64, u64)> {
        self.conv.starts_with("dm:").then_some((self.peer_read_seq, self.peer_delivered_seq))
    }
}

/// One conversation of a login's sync: where it starts and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRead {
    pub conversation: ConversationRecord,
    /// The seq the sync starts after.
    pub from: u64,
    /// Messages after `from`, ascending, at most the limit asked for.
    pub messages: Vec<StoredMessage>,
}
