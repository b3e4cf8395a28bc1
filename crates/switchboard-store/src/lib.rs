//! Switchboard's storage.
//!
//! - [`Store`]: what the chat core needs from a database: accounts, sessions, rooms and their
//!   members, messages with gap-free per-conversation sequence numbers, read markers.
//! - [`sqlite::SqliteStore`]: the embedded default (WAL, migrations), also in memory for tests.
//! - [`postgres::PostgresStore`]: PostgreSQL, for several nodes sharing one database.
//!
//! The core batches message writes itself and hands a whole batch to [`Store::append`], so a
//! store sees one transaction per batch, not one per message.
#![deny(unsafe_code)]

mod access;
mod error;
pub mod postgres;
pub mod sqlite;
mod types;

pub use access::{Role, RoomAccess, RoomRules};
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::*;

use std::collections::HashMap;

use async_trait::async_trait;

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: RoomAccess + Send + Sync + 'static {
    /// Creates a user; `password_hash` is `None` for users who log in by JWT or in open mode.
    /// Returns false, changing nothing, when the name is taken.
    async fn create_user(&self, name: &str, password_hash: Option<&str>, now: Millis) -> StoreResult<bool>;
    async fn user(&self, name: &str) -> StoreResult<Option<UserRecord>>;
    /// User names that start with `prefix` (all for ""), in ascending order, after `after`
    /// (exclusive), at most `limit`.
    async fn list_users(&self, prefix: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>>;

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// The session with this token hash, expired or not (the caller checks `expires_at`).
    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;

    /// Returns false, changing nothing, when the room exists.
    async fn create_room(&self, room: &str, creator: &str, now: Millis) -> StoreResult<bool>;
    async fn room_exists(&self, room: &str) -> StoreResult<bool>;
    /// Rooms `viewer` may see (public ones and the private ones they are a member of) by name
    /// after `after` (exclusive), at most `limit`, each with its member count, whether `viewer`
    /// is a member and their role; `total` counts every room they may see.
    async fn list_rooms(&self, viewer: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomSummary>>;
    /// Returns false when the user already was a member.
    async fn add_member(&self, room: &str, user: &str, now: Millis) -> StoreResult<bool>;
    /// Returns false when the user was not a member.
    async fn remove_member(&self, room: &str, user: &str) -> StoreResult<bool>;
    /// Members of a room by name after `after` (exclusive), at most `limit`; `total` counts them all.
    async fn members(&self, room: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<String>>;
    /// Rooms a user is a member of, by name.
    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>>;
    /// Whether `user` is a member of `room`: one key lookup in the stores here (the default
    /// reads all the user's rooms).
    async fn is_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        Ok(self.rooms_of(user).await?.iter().any(|member_of| member_of == room))
    }

    /// A batch of joins in one transaction (the core queues concurrent joins and hands them over
    /// together): creates the missing rooms, adds the members, starts each new member's read
    /// marker at the room's newest seq, and reads each room's newest `history` messages once for
    /// all its joins. On `Err` none of the batch is stored.
    async fn join_rooms(&self, requests: &[JoinRequest], history: u32, now: Millis) -> StoreResult<JoinedBatch>;

    /// What a login writes and then needs, in one call so a store can do it in one round trip:
    /// creates the user (without a password) when `create_user` and the name is free, stores the
    /// new `session` if any, and returns the rooms the user is a member of, by name.
    async fn open_session(
        &self,
        user: &str,
        create_user: bool,
        session: Option<&SessionRecord>,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        if create_user {
            self.create_user(user, None, now).await?;
        }
        if let Some(session) = session {
            self.create_session(session).await?;
        }
        self.rooms_of(user).await
    }

    /// Makes a batch of messages durable in one transaction and returns one outcome per message,
    /// in order. Each new message gets the next `seq` of its conversation (1, 2, 3... gap-free, in
    /// batch order). A message whose (sender, idempotency key) was stored before, in an earlier
    /// batch or earlier in this one, is not stored again: its outcome is `Duplicate` with the
    /// original. On `Err` nothing of the batch is stored. The batch is handed over, so a store
    /// that writes on another thread takes it along without copying every message.
    async fn append(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<AppendOutcome>>;
    /// A store that can commit on the caller's thread (the embedded SQLite) offers it here: the
    /// core then writes a batch where it is, without handing it to another thread and back.
    fn inline_append(&self) -> Option<&dyn InlineAppend> {
        None
    }
    /// Messages with `seq > after`, ascending, at most `limit`.
    async fn messages_after(&self, conv: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>>;
    /// The newest `limit` messages with `seq < before` (all when `before` is None), ascending.
    async fn messages_before(&self, conv: &str, before: Option<u64>, limit: u32) -> StoreResult<Vec<StoredMessage>>;
    /// The newest message of each of these conversations (none for one without messages), in no
    /// particular order: the preview a conversation list shows.
    async fn last_messages(&self, convs: &[String]) -> StoreResult<Vec<StoredMessage>>;
    /// The user's private conversations that have messages, and the rooms they are a member of
    /// (with `last_seq` 0 when a room has no message yet), each with the user's read marker.
    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>>;
    /// [`Store::conversations_of`] by conversation id after `after` (exclusive), at most `limit`;
    /// `total` counts them all.
    async fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>>;
    /// What a login syncs, in one call so a store can read it in one round trip: the user's
    /// conversations (as [`Store::conversations_of`]), each with the seq the sync starts after
    /// (the `cursors` entry, else the read marker, at most `last_seq`) and up to `limit` messages
    /// after it.
    async fn sync_read(&self, user: &str, cursors: &HashMap<String, u64>, limit: u32) -> StoreResult<Vec<SyncRead>> {
        let mut reads = Vec::new();
        for conversation in self.conversations_of(user).await? {
            let from = sync_start(&conversation, cursors);
            let messages = if conversation.last_seq > from {
                self.messages_after(&conversation.conv, from, limit).await?
            } else {
                Vec::new()
            };
            reads.push(SyncRead { conversation, from, messages });
        }
        Ok(reads)
    }
    /// The entry `seq` of a conversation, as history shows it: what a change is checked against.
    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>>;
    /// The newest seq of one conversation (0 when it has none).
    async fn last_seq(&self, conv: &str) -> StoreResult<u64>;
    /// Moves the user's read marker forward (never back), and their delivered marker with it (what
    /// was read was received); returns the read marker now stored.
    async fn set_read(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64>;
    /// Moves the user's delivered marker forward (never back); returns the marker now stored.
    async fn set_delivered(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64>;

    /// Answers when the database answers: for readiness checks.
    async fn health(&self) -> StoreResult<()> {
        self.list_users("", None, 1).await.map(|_| ())
    }

    /// Flushes and closes; called once on shutdown.
    async fn close(&self);

    /// The user's conversations (as [`Store::conversations_of`]) by latest activity: `last_ts`
    /// descending, then id ascending (rooms without messages, at 0, last). A page holds those
    /// after `after` in that order, at most `limit`; `total` counts them all. Costs one head
    /// lookup per conversation of the user (they must be ranked to find the newest), read markers
    /// for the page only.
    async fn conversations_by_activity(
        &self,
        user: &str,
        after: Option<&ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>>;
}

/// [`Store::append`] on the caller's thread: the transaction (tens of microseconds on SQLite
/// without fsync) costs less than the two thread hops of a call.
pub trait InlineAppend: Send + Sync {
    /// Appends as [`Store::append`] does, unless the writer is busy with other work (a burst of
    /// logins): then the batch comes back untouched, for the caller to queue it with
    /// [`Store::append`] rather than wait.
    fn try_append(&self, batch: Vec<NewMessage>) -> Result<StoreResult<Vec<AppendOutcome>>, Vec<NewMessage>>;
}

/// Where a sync of `conversation` starts: after the client's cursor, else after the read marker,
/// and never past the newest message.
pub fn sync_start(conversation: &ConversationRecord, cursors: &HashMap<String, u64>) -> u64 {
    cursors.get(&conversation.conv).copied().unwrap_or(conversation.read_seq).min(conversation.last_seq)
}

/// The range of names that start with `prefix`, as `(lowest, above every match)`, so a store
/// finds them with an index range instead of a scan. Names are lowercase ASCII up to `z`, so
/// every name that starts with `prefix` sorts below `prefix` followed by `{`, the byte after `z`.
pub fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}{{"))
}

/// Where a conversation listing resumes among the user's rooms: the room names after which
/// `room:<name>` sorts after `after`. Conversation ids are `dm:...` or `room:...`, and every
/// `room:` id sorts after every `dm:` id.
pub fn room_cursor(after: Option<&str>) -> Option<&str> {
    match after {
        None => None,
        Some(after) => match after.strip_prefix("room:") {
            Some(room) => Some(room),
            None if after < "room:" => Some(""),
            // Past every room id: a name no room can have (names are lowercase ASCII).
            None => Some("\u{10ffff}"),
        },
    }
}
