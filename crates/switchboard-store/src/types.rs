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

/// One `join` of a batch of joins: `user` becomes a member of `room`, which is created (by them)
/// if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub room: String,
    pub user: String,
}

/// What one join of a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The room did not exist: this join created it (one join per created room says so).
    pub created: bool,
    /// The user was not a member before; their read marker now starts at the room's newest seq.
    pub newly: bool,
}

/// A joined room as the join answers need it, read once for all its joins in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedRoom {
    /// The newest messages (at most the limit asked for), ascending.
    pub history: Vec<StoredMessage>,
    /// The room's newest seq when the members were added (0 without messages).
    pub last_seq: u64,
}

/// What a batch of joins did: one [`Joined`] per request, in order, and each room's read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinedBatch {
    pub joins: Vec<Joined>,
    pub rooms: std::collections::HashMap<String, JoinedRoom>,
}

impl JoinedBatch {
    /// The rooms of `requests`, each once, in first-seen order, with the index of the request
    /// that comes first for each: the one that creates the room when it is missing.
    pub fn distinct_rooms(requests: &[JoinRequest]) -> Vec<(&str, usize)> {
        let mut seen = std::collections::HashSet::new();
        let mut rooms: Vec<(&str, usize)> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            if seen.insert(request.room.as_str()) {
                rooms.push((&request.room, index));
            }
        }
        rooms
    }
}
