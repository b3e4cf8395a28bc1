//! Server frames.
//!
//! Each frame is serialised once, straight into a complete WebSocket frame ([`WireFrame`]), and
//! that buffer is shared by every recipient: a room message for ten thousand listeners is encoded
//! once and written as is.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::request::RefValue;
use crate::ws::WireFrame;

/// Serialises a frame. Serialising these types cannot fail (no maps with non-string keys, no
/// failing `Serialize` impls), so a failure is a bug and panics in debug builds only.
pub fn encode<T: Serialize>(frame: &T) -> WireFrame {
    let mut failed = false;
    let wire = WireFrame::text_with(|buf| {
        if let Err(error) = serde_json::to_writer(&mut *buf, frame) {
            debug_assert!(false, "server frame failed to serialise: {error}");
            failed = true;
        }
    });
    if failed {
        return WireFrame::text(br#"{"type":"error","code":"internal","message":"frame encoding failed"}"#);
    }
    wire
}

/// The most bytes one answer (a listing, a history page, a join's history, one `sync` summary)
/// takes on the wire: well under a connection's outbound queue bound (4 MiB by default) and the
/// frame size clients accept, so no answer can cut its asker off. Lists stop before it and page.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Room left in an answer for everything but its list: type, ref, conv, cursor, counts.
const ENVELOPE_BYTES: usize = 4096;

/// How many of `items`, taken from the front, fit in one answer with the bound `max_bytes`
/// (never fewer than one of a non-empty list: one entry is far smaller than the bound).
pub fn fitting_prefix<T: Serialize>(items: &[T], max_bytes: usize) -> usize {
    fitting(items.iter(), max_bytes).max(items.len().min(1))
}

/// How many of `items`, taken from the back, fit in one answer with the bound `max_bytes`.
pub fn fitting_suffix<T: Serialize>(items: &[T], max_bytes: usize) -> usize {
    fitting(items.iter().rev(), max_bytes).max(items.len().min(1))
}

fn fitting<'a, T: Serialize + 'a>(items: impl Iterator<Item = &'a T>, max_bytes: usize) -> usize {
    let mut budget = max_bytes.saturating_sub(ENVELOPE_BYTES);
    let mut count = 0;
    for item in items {
        // One more for the comma.
        let size = encoded_len(item) + 1;
        if size > budget {
            break;
        }
        budget -= size;
        count += 1;
    }
    count
}

/// The length of a value's JSON, without building it.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Cannot fail, as for `encode`.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A stored chat message as clients see it: in live delivery, history and recovery alike. It
/// borrows from the stored message, so encoding a delivery copies no field first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MessageView<'a> {
    /// Conversation id: `dm:<a>:<b>` or `room:<name>`.
    pub conv: &'a str,
    /// Unique message id.
    pub id: &'a str,
    /// Position in the conversation: 1, 2, 3... with no gaps.
    pub seq: u64,
    pub from: &'a str,
    /// The recipient of a private message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
    /// The room of a room message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    pub text: &'a str,
    /// Server time of acceptance, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The sender's idempotency key, if the send had one: lets the sender's devices match a
    /// message (live or recovered) to the send they are waiting on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// Absent for a message; `edit`, `delete` or `react` for a change to the message `target`
    /// (then `from` made it, `text` is the new text, "" or the emoji).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// The seq of the message this one answers, and what to show of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<QuoteView<'a>>,
    /// When the text was last edited (an `edit` entry: its own time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// A deleted message: a tombstone with an empty text.
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// The message's reactions (a `react` entry: the target's reactions after it).
    #[serde(skip_serializing_if = "<[Reaction]>::is_empty")]
    pub reactions: &'a [Reaction],
    /// The seq of the newest change already applied to this message: a client applies a change
    /// entry only when its seq is greater.
    #[serde(skip_serializing_if = "is_zero")]
    pub changed_seq: u64,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuoteView<'a> {
    pub from: &'a str,
    /// At most 100 characters of the text, then `…`; empty once the message is deleted.
    pub text: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// One emoji on a message and who set it, in the order they reacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame on every connection.
    Hello {
        protocol: u32,
        server: &'a str,
        node: &'a str,
        max_frame_bytes: usize,
        max_text_chars: usize,
        auth: &'a [&'a str],
    },
    Session {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        user: &'a str,
        token: &'a str,
        expires_at: i64,
        resumed: bool,
        node: &'a str,
        conn: u64,
    },
    /// What the server is about to send to bring this connection up to date.
    Sync {
        conversations: &'a [SyncEntry],
    },
    /// Everything missed has been sent; live frames follow.
    Synced {
        messages: usize,
    },
    Message(&'a MessageView<'a>),
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        conv: &'a str,
        id: &'a str,
        seq: u64,
        ts: i64,
        duplicate: bool,
    },
    History {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        conv: &'a str,
        messages: &'a [MessageView<'a>],
        has_more: bool,
    },
    Conversations {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        conversations: &'a [ConversationView],
        /// The `cursor` for the next page; null on the last.
        next_cursor: Option<&'a str>,
        /// How many entries the whole listing has.
        total: u64,
    },
    Room {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        room: &'a str,
        created: bool,
        joined: bool,
        history: &'a [MessageView<'a>],
        /// Invite-only and hidden from non-members.
        private: bool,
        /// The caller's role: `owner`, `moderator` or `member`.
        role: &'a str,
    },
    MemberJoined {
        room: &'a str,
        user: &'a str,
    },
    MemberLeft {
        room: &'a str,
        user: &'a str,
    },
    /// A big room's size, instead of one event per join or leave: at most one per interval.
    RoomSize {
        room: &'a str,
        members: u64,
        online: u64,
    },
    /// A room was created (by `by`): sent to every logged-in connection, so that room lists grow
    /// without a refresh.
    RoomCreated {
        room: &'a str,
        by: &'a str,
    },
    /// More rooms were created than a node announces one by one (`count` of them): list `rooms`
    /// again.
    RoomsCreated {
        count: u32,
    },
    Members {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        room: &'a str,
        members: &'a [MemberView],
        /// The `cursor` for the next page; null on the last.
        next_cursor: Option<&'a str>,
        /// How many entries the whole listing has.
        total: u64,
    },
    Rooms {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        rooms: &'a [RoomView],
        /// The `cursor` for the next page; null on the last.
        next_cursor: Option<&'a str>,
        /// How many entries the whole listing has.
        total: u64,
    },
    Users {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        users: &'a [UserView],
        /// The `cursor` for the next page; null on the last.
        next_cursor: Option<&'a str>,
    },
    /// The online list, sorted, in chunks; `done` on the last.
    Online {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        users: &'a [&'a str],
        done: bool,
    },
    /// Answer to `watch`: the asked users' online state now; events follow changes.
    Watching {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        users: &'a [UserView],
    },
    UserOnline {
        user: &'a str,
    },
    UserOffline {
        user: &'a str,
    },
    Typing {
        conv: &'a str,
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    },
    Read {
        conv: &'a str,
        user: &'a str,
        seq: u64,
    },
    /// `user`'s devices hold `conv` up to `seq`: "delivered", apart from "seen" (`Read`).
    Delivered {
        conv: &'a str,
        user: &'a str,
        seq: u64,
    },
    Popular {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        seconds: u32,
        words: &'a [WordCount],
    },
    Stats {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        #[serde(flatten)]
        stats: &'a UserStats,
    },
    Whoami {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        user: &'a str,
        node: &'a str,
        conn: u64,
        connected_at: i64,
    },
    /// Answer to `logout`, `read`, `leave` and other requests with nothing else to say.
    Ok {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        of: &'a str,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        ts: i64,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// To the invited user's devices: they are a member of `room` now.
    Invited {
        room: &'a str,
        by: &'a str,
    },
    /// To the removed (or banned) user's devices: they are out of `room`.
    Removed {
        room: &'a str,
        by: &'a str,
        banned: bool,
    },
    /// To the room: `user` is now `owner`, `moderator` or `member`.
    RoleChanged {
        room: &'a str,
        user: &'a str,
        role: &'a str,
    },
    /// To the room: `user` was muted or unmuted.
    MuteChanged {
        room: &'a str,
        user: &'a str,
        muted: bool,
    },
    /// Answer to `blocked`: the users the caller blocks, by name.
    Blocked {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RefValue>,
        users: &'a [String],
    },
}

impl ServerFrame<'_> {
    pub fn encode(&self) -> WireFrame {
        encode(self)
    }
}

/// One conversation in a `sync` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncEntry {
    pub conv: String,
    /// The newest seq in the conversation.
    pub last_seq: u64,
    /// The user's read marker.
    pub read_seq: u64,
    /// Private conversations: the other user's read marker ("seen" up to here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_read_seq: Option<u64>,
    /// Private conversations: how far the other user's devices received ("delivered").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_delivered_seq: Option<u64>,
    /// Messages after the read marker; changes to messages do not count.
    pub unread: u64,
    /// Messages after this seq follow in this sync.
    pub from_seq: u64,
    /// How many messages of this conversation follow.
    pub count: usize,
    /// More messages were missed than a sync carries: page the rest with `history` after the last
    /// one received.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationView {
    pub conv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    pub last_seq: u64,
    pub read_seq: u64,
    /// Private conversations: the other user's read marker ("seen" up to here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_read_seq: Option<u64>,
    /// Private conversations: how far the other user's devices received ("delivered").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_delivered_seq: Option<u64>,
    pub unread: u64,
    /// Timestamp of the newest message, ms since the Unix epoch (0 if empty).
    pub last_ts: i64,
    /// The newest message, shortened to a preview; absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastMessageView>,
}

/// The start of a conversation's newest message, for a conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastMessageView {
    pub seq: u64,
    pub from: String,
    /// The first [`PREVIEW_CHARS`] characters of the text, followed by `…` when it was longer.
    pub text: String,
}

/// How much of a conversation's newest message `conversations` shows: a line of a list, and a
/// page of 1000 entries stays far under the answer bound.
pub const PREVIEW_CHARS: usize = 100;

impl LastMessageView {
    pub fn new(seq: u64, from: &str, text: &str) -> Self {
        let mut chars = text.char_indices();
        let text = match chars.nth(PREVIEW_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_owned(),
        };
        LastMessageView { seq, from: from.to_owned(), text }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub user: String,
    pub online: bool,
    /// `owner` or `moderator`; absent for a plain member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomView {
    pub name: String,
    pub members: u64,
    pub joined: bool,
    pub private: bool,
    /// The caller's role when a member: `owner`, `moderator` or `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub user: String,
    pub online: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordCount {
    pub word: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserStats {
    pub user: String,
    pub online: bool,
    /// When the user's current online period began (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_since: Option<i64>,
    /// How long they have been online, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_secs: Option<u64>,
    /// The same, for people: `1h 2m 3s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_for: Option<String>,
    /// Nodes holding the user's connections.
    pub nodes: Vec<String>,
    pub connections: u32,
}

/// `1h 2m 3s`, as seed 001's `/stats` shows it.
pub fn human_duration(total_secs: u64) -> String {
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = total_secs % 60;
    if hours > 0 {
        format!("{hours}h {minutes}m {seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests;
