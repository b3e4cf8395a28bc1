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
    /// A message, or a change to the earlier entry `target`.
    pub kind: EntryKind,
    /// A change's target seq; a message's `reply_to` (the seq it quotes), if any.
    pub target: Option<u64>,
}

/// What an entry of a conversation's `seq` order is: a message, or a change to an earlier message.
/// Changes are entries of their own so that live delivery, sync, cursors and the cluster's order
/// carry them like messages; the changed message's row is updated too, for history pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EntryKind {
    #[default]
    Message,
    /// `text` replaces the target's text.
    Edit,
    /// The target's text is gone; a tombstone stays.
    Delete,
    /// The sender's reaction to the target becomes `text` (an emoji; empty removes it).
    React,
}

impl EntryKind {
    /// The number stored in the `kind` column.
    pub fn code(self) -> i64 {
        match self {
            EntryKind::Message => 0,
            EntryKind::Edit => 1,
            EntryKind::Delete => 2,
            EntryKind::React => 3,
        }
    }

    pub fn from_code(code: i64) -> EntryKind {
        match code {
            1 => EntryKind::Edit,
            2 => EntryKind::Delete,
            3 => EntryKind::React,
            _ => EntryKind::Message,
        }
    }

    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Message => "message",
            EntryKind::Edit => "edit",
            EntryKind::Delete => "delete",
            EntryKind::React => "react",
        }
    }
}

/// One emoji on a message and who set it: the protocol's type, so a message's reactions are
/// sent as stored.
pub use switchboard_protocol::event::Reaction;

/// Most reactions (one per user) one message holds: its row, and every entry that carries its
/// reactions, stays small.
pub const MAX_REACTIONS: usize = 100;

/// Unread counts look at most this many entries after the read marker, so a listing costs the
/// same however far behind a member of a busy room is; past it a count is a lower bound.
pub const UNREAD_COUNT_SPAN: u64 = 1000;

/// What a reply shows of the message it quotes, read with the reply: no second request needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub from: String,
    /// The start of the quoted text, at most [`QUOTE_CHARS`] characters and `…`; empty once
    /// the quoted message is deleted.
    pub text: String,
    pub deleted: bool,
}

/// How much of a quoted message a reply carries.
pub const QUOTE_CHARS: usize = 100;

impl Quote {
    /// A quote of `text` (read as at most [`QUOTE_CHARS`] + 1 characters, so a cut shows).
    pub fn new(from: String, text: &str, deleted: bool) -> Quote {
        let mut chars = text.char_indices();
        let text = match chars.nth(QUOTE_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_owned(),
        };
        Quote { from, text, deleted }
    }
}

/// Why a change (or a reply) was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The target seq is not a message of the conversation.
    NotFound,
    /// The target message was deleted.
    Deleted,
    /// The target holds [`MAX_REACTIONS`] reactions already.
    TooManyReactions,
}

/// The reactions after `user` reacted with `emoji` (empty: took theirs back), or `None` when the
/// message holds too many.
pub fn react(mut reactions: Vec<Reaction>, user: &str, emoji: &str) -> Option<Vec<Reaction>> {
    let had = reactions.iter().any(|reaction| reaction.users.iter().any(|u| u == user));
    let total: usize = reactions.iter().map(|reaction| reaction.users.len()).sum();
    if !had && !emoji.is_empty() && total >= MAX_REACTIONS {
        return None;
    }
    for reaction in &mut reactions {
        reaction.users.retain(|u| u != user);
    }
    reactions.retain(|reaction| !reaction.users.is_empty());
    if !emoji.is_empty() {
        match reactions.iter_mut().find(|reaction| reaction.emoji == emoji) {
            Some(reaction) => reaction.users.push(user.to_owned()),
            None => reactions.push(Reaction { emoji: emoji.to_owned(), users: vec![user.to_owned()] }),
        }
    }
    Some(reactions)
}

/// Reactions as stored (JSON text, NULL for none).
pub fn reactions_to_sql(reactions: &[Reaction]) -> Option<String> {
    if reactions.is_empty() {
        return None;
    }
    serde_json::to_string(reactions).ok()
}

pub fn reactions_from_sql(text: Option<&str>) -> Vec<Reaction> {
    text.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
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
    pub kind: EntryKind,
    /// A change's target seq; a message's `reply_to`.
    pub target: Option<u64>,
    /// A reply's view of the message it quotes.
    pub quote: Option<Quote>,
    /// When the message was last edited; an edit entry: its own time.
    pub edited_at: Option<Millis>,
    /// A deleted message: its text is empty.
    pub deleted: bool,
    /// A message's reactions now; a react entry: the target's reactions after it.
    pub reactions: Vec<Reaction>,
    /// The seq of the newest change applied to this message (0: none): a client applies a change
    /// entry only when it is newer, so replaying old entries never undoes a newer state.
    pub changed_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored(StoredMessage),
    /// The (sender, idempotency key) was stored before: this is the original message.
    Duplicate(StoredMessage),
    /// A change or reply whose target does not allow it: nothing was stored.
    Rejected(Rejection),
}

impl AppendOutcome {
    pub fn message(&self) -> Option<&StoredMessage> {
        match self {
            AppendOutcome::Stored(message) | AppendOutcome::Duplicate(message) => Some(message),
            AppendOutcome::Rejected(_) => None,
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
    /// Messages after the read marker; changes (edits, deletions, reactions) do not count.
    pub unread: u64,
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

/// A position in a user's conversations by activity: entries after it have an older `last_ts`, or
/// the same and a greater id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCursor {
    pub last_ts: Millis,
    pub conv: String,
}

impl ActivityCursor {
    pub fn of(record: &ConversationRecord) -> ActivityCursor {
        ActivityCursor { last_ts: record.last_ts, conv: record.conv.clone() }
    }

    /// Whether `record` comes after this cursor in the activity order.
    pub fn precedes(&self, record: &ConversationRecord) -> bool {
        record.last_ts < self.last_ts || (record.last_ts == self.last_ts && record.conv > self.conv)
    }
}

/// The activity order: newest `last_ts` first, then by id.
pub fn by_activity(a: &ConversationRecord, b: &ConversationRecord) -> std::cmp::Ordering {
    b.last_ts.cmp(&a.last_ts).then_with(|| a.conv.cmp(&b.conv))
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
