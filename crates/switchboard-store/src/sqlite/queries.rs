//! The SQL the store runs, as plain functions of a connection.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::changes::{apply_change, check_reply, Checked};
use super::threads::Worker;
use crate::{
    reactions_from_sql, reactions_to_sql, room_cursor, sync_start, AppendOutcome, ConversationRecord, EntryKind,
    Millis, NewMessage, Page, Quote, RoomSummary, SessionRecord, StoreError, StoreResult, StoredMessage, SyncRead,
    UNREAD_COUNT_SPAN,
};

/// Bounds the memory of the head cache; past it the cache starts over, as heads are cheap to
/// reread from the primary key.
const MAX_CACHED_HEADS: usize = 100_000;

/// The newest message of a conversation, which the next append continues from.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ConvHead {
    pub(super) last_seq: u64,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull | OutOfMemory
                ) =>
            {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// SQLite integers are signed; seqs never get near the limit, bounds given by callers might.
pub(super) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The two users of a `dm:<a>:<b>` conversation; user names cannot contain ':'.
pub(super) fn dm_participants(conv: &str) -> Option<(&str, &str)> {
    conv.strip_prefix("dm:")?.split_once(':')
}

/// A message's columns, and what a reply shows of the message it quotes, read from
/// [`MESSAGES`]: the quote is looked up by primary key, so it is current (edited, deleted).
pub(super) const MESSAGE_COLUMNS: &str = "m.conv, m.seq, m.id, m.sender, m.recipient, m.room, m.text, m.ts, \
     m.idem_key, m.kind, m.target, m.edited_at, m.deleted, m.reactions, m.changed_seq, \
     q.sender AS quote_from, substr(q.text, 1, 101) AS quote_text, q.deleted AS quote_deleted";

/// The messages (`m`) with the messages they reply to (`q`).
pub(super) const MESSAGES: &str =
    "messages m LEFT JOIN messages q ON m.kind = 0 AND q.conv = m.conv AND q.seq = m.target";

pub(super) fn message_from(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let kind = EntryKind::from_code(row.get(9)?);
    let quote = match row.get::<_, Option<String>>(15)? {
        Some(from) if kind == EntryKind::Message => {
            let text: String = row.get(16)?;
            Some(Quote::new(from, &text, row.get(17)?))
        }
        _ => None,
    };
    Ok(StoredMessage {
        conv: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        id: row.get(2)?,
        sender: row.get(3)?,
        recipient: row.get(4)?,
        room: row.get(5)?,
        text: row.get(6)?,
        ts: row.get(7)?,
        key: row.get(8)?,
        kind,
        target: row.get::<_, Option<i64>>(10)?.map(|seq| seq as u64),
        quote,
        edited_at: row.get(11)?,
        deleted: row.get(12)?,
        reactions: reactions_from_sql(row.get::<_, Option<String>>(13)?.as_deref()),
        changed_seq: row.get::<_, i64>(14)? as u64,
    })
}

pub(super) fn load_head(conn: &Connection, conv: &str) -> rusqlite::Result<ConvHead> {
    let mut statement = conn.prepare_cached("SELECT seq FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1")?;
    let newest =
        statement.query_row([conv], |row| Ok(ConvHead { last_seq: row.get::<_, i64>(0)? as u64 })).optional()?;
    Ok(newest.unwrap_or_default())
}

pub(super) fn rooms_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached("SELECT room FROM room_members WHERE user = ?1 ORDER BY room")?;
    let rooms = statement.query_map([user], |row| row.get(0))?.collect();
    rooms
}

pub(super) fn insert_session(conn: &Connection, session: &SessionRecord) -> rusqlite::Result<usize> {
    conn.prepare_cached("INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![session.token_hash, session.user, session.created_at, session.expires_at])
}

pub(super) fn insert_user(
    conn: &Connection,
    name: &str,
    password_hash: Option<&str>,
    now: Millis,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, password_hash, now])
}

/// Appends a batch inside the open transaction and moves the cached heads along.
pub(super) fn append_batch(worker: &mut Worker, batch: &[NewMessage]) -> StoreResult<Vec<AppendOutcome>> {
    match write_batch(worker, batch) {
        Ok((outcomes, moved)) => {
            if worker.heads.len() + moved.len() > MAX_CACHED_HEADS {
                worker.heads.clear();
            }
            for (conv, head) in moved {
                worker.moved_in_transaction.push(conv.clone());
                worker.heads.insert(conv, head);
            }
            // A sender has read their conversation up to their own message (own_markers.rs); a
            // change (a reaction to an old message, say) says nothing of what was read.
            for outcome in &outcomes {
                if let AppendOutcome::Stored(message) = outcome {
                    if message.kind == EntryKind::Message {
                        worker.own_in_transaction.push((message.sender.clone(), message.conv.clone(), message.seq));
                    }
                }
            }
            Ok(outcomes)
        }
        Err(error) => {
            // A failure may come from a stale head (say, another process wrote): reread the heads
            // of this batch next time.
            for message in batch {
                worker.heads.remove(&message.conv);
            }
            Err(error.into())
        }
    }
}

/// Writes the batch and returns its outcomes and the heads it moved; on `Err` the caller rolls
/// the batch back.
pub(super) fn write_batch(
    worker: &Worker,
    batch: &[NewMessage],
) -> rusqlite::Result<(Vec<AppendOutcome>, HashMap<String, ConvHead>)> {
    let conn = &worker.conn;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut moved: HashMap<String, ConvHead> = HashMap::new();
    let mut created: Vec<&str> = Vec::new();
    let mut by_key = conn
        .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.sender = ?1 AND m.idem_key = ?2"))?;
    // A repeated key leaves the row out instead of failing the statement: the common case (a new
    // key) then costs one lookup of the key's index, by the insert itself.
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (conv, seq, id, sender, recipient, room, text, ts, idem_key, kind, target, \
         edited_at, reactions) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (sender, idem_key) WHERE idem_key IS NOT NULL DO NOTHING",
    )?;
    for message in batch {
        let head = match moved.get(message.conv.as_str()).or_else(|| worker.heads.get(message.conv.as_str())) {
            Some(head) => *head,
            None => load_head(conn, &message.conv)?,
        };
        let seq = head.last_seq + 1;
        // Plain messages (nearly all) read nothing more; a change or a reply reads its target.
        let checked = match (message.kind, message.target) {
            (EntryKind::Message, None) => Ok(Checked::default()),
            (EntryKind::Message, Some(target)) => check_reply(conn, &message.conv, target)?,
            (_, None) => Err(crate::Rejection::NotFound),
            (_, Some(target)) => apply_change(conn, message, target, seq)?,
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(rejection) => {
                outcomes.push(AppendOutcome::Rejected(rejection));
                continue;
            }
        };
        let stored = StoredMessage {
            conv: message.conv.clone(),
            seq,
            id: message.id.clone(),
            sender: message.sender.clone(),
            recipient: message.recipient.clone(),
            room: message.room.clone(),
            text: message.text.clone(),
            ts: message.ts,
            key: message.idempotency_key.clone(),
            kind: message.kind,
            target: message.target,
            quote: checked.quote,
            edited_at: (message.kind == EntryKind::Edit).then_some(message.ts),
            deleted: false,
            reactions: checked.reactions,
            changed_seq: 0,
        };
        let inserted = insert.execute(params![
            stored.conv,
            to_sql(stored.seq),
            stored.id,
            stored.sender,
            stored.recipient,
            stored.room,
            stored.text,
            stored.ts,
            message.idempotency_key,
            stored.kind.code(),
            stored.target.map(to_sql),
            stored.edited_at,
            reactions_to_sql(&stored.reactions),
        ])?;
        if inserted == 0 {
            // Only a key can make the insert a no-op; its original is in the store or earlier in
            // this batch's transaction.
            let original = by_key.query_row(params![message.sender, message.idempotency_key], message_from)?;
            outcomes.push(AppendOutcome::Duplicate(original));
            continue;
        }
        if head.last_seq == 0 {
            created.push(message.conv.as_str());
        }
        moved.insert(message.conv.clone(), ConvHead { last_seq: stored.seq });
        outcomes.push(AppendOutcome::Stored(stored));
    }
    // Only a conversation's first message makes its row; its head is read from `messages`.
    let mut create = conn.prepare_cached(
        "INSERT INTO conversations (conv, user_a, user_b) VALUES (?1, ?2, ?3) ON CONFLICT (conv) DO NOTHING",
    )?;
    for conv in &created {
        let (user_a, user_b) = dm_participants(conv).unzip();
        create.execute(params![conv, user_a, user_b])?;
    }
    Ok((outcomes, moved))
}

pub(super) fn messages_after(
    conn: &Connection,
    conv: &str,
    after: u64,
    limit: u32,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3"
    ))?;
    let messages = statement.query_map(params![conv, to_sql(after), i64::from(limit)], message_from)?.collect();
    messages
}

/// A conversation's newest seq and time, from the clustered key of `messages` (SQL of the
/// conversation id expression `conv`); 0 for a room without messages.
fn head_columns(conv: &str) -> String {
    format!(
        "COALESCE((SELECT MAX(seq) FROM messages WHERE conv = {conv}), 0) AS last_seq, \
         COALESCE((SELECT ts FROM messages WHERE conv = {conv} ORDER BY seq DESC LIMIT 1), 0) AS last_ts"
    )
}

/// How many messages (not changes) follow `after` in `conv`: the unread count of a read marker
/// raised after it was read (own_markers.rs).
pub(super) fn unread_after(conn: &Connection, conv: &str, after: u64) -> rusqlite::Result<u64> {
    let mut statement = conn
        .prepare_cached("SELECT COUNT(*) FROM messages WHERE conv = ?1 AND seq > ?2 AND seq <= ?2 + ?3 AND kind = 0")?;
    let span = to_sql(UNREAD_COUNT_SPAN);
    Ok(statement.query_row(params![conv, to_sql(after), span], |row| row.get::<_, i64>(0))? as u64)
}

/// How many messages (not changes) follow the read marker `r` in conversation `conv`, among the
/// [`UNREAD_COUNT_SPAN`] entries after it: a range of the clustered key, bounded.
fn unread_column(conv: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM messages x WHERE x.conv = {conv} AND x.seq > COALESCE(r.seq, 0) \
         AND x.seq <= COALESCE(r.seq, 0) + {UNREAD_COUNT_SPAN} AND x.kind = 0)"
    )
}

static CONVERSATIONS_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.conv AS conv, {dm_head}, COALESCE(r.seq, 0), \
         COALESCE(p.seq, 0), COALESCE(p.delivered_seq, 0), {dm_unread} \
         FROM conversations c \
         LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = c.conv \
         LEFT JOIN read_markers p ON p.conv = c.conv \
             AND p.user = CASE WHEN c.user_a = ?1 THEN c.user_b ELSE c.user_a END \
         WHERE c.user_a = ?1 OR c.user_b = ?1 \
         UNION ALL \
         SELECT 'room:' || m.room, {room_head}, COALESCE(r.seq, 0), 0, 0, {room_unread} \
         FROM room_members m \
         LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = 'room:' || m.room \
         WHERE m.user = ?1 \
         ORDER BY conv",
        dm_head = head_columns("c.conv"),
        room_head = head_columns("'room:' || m.room"),
        dm_unread = unread_column("c.conv"),
        room_unread = unread_column("'room:' || m.room"),
    )
});

pub(super) fn conversations_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<ConversationRecord>> {
    let mut statement = conn.prepare_cached(&CONVERSATIONS_OF)?;
    let conversations = statement.query_map([user], conversation_from)?.collect();
    conversations
}

fn conversation_from(row: &Row<'_>) -> rusqlite::Result<ConversationRecord> {
    Ok(ConversationRecord {
        conv: row.get(0)?,
        last_seq: row.get::<_, i64>(1)? as u64,
        last_ts: row.get(2)?,
        read_seq: row.get::<_, i64>(3)? as u64,
        peer_read_seq: row.get::<_, i64>(4)? as u64,
        peer_delivered_seq: row.get::<_, i64>(5)? as u64,
        unread: row.get::<_, i64>(6)? as u64,
    })
}

/// One page of [`conversations_of`]: private conversations by id, then rooms, each branch read
/// from its index from the cursor on.
pub(super) fn conversations_page(
    conn: &Connection,
    user: &str,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Page<ConversationRecord>> {
    let mut statement = conn.prepare_cached(&CONVERSATIONS_PAGE)?;
    let items = statement
        .query_map(params![user, after, room_cursor(after), i64::from(limit)], conversation_from)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE user_a = ?1 OR user_b = ?1) \
             + (SELECT COUNT(*) FROM room_members WHERE user = ?1)",
        )?
        .query_row([user], |row| row.get(0))?;
    Ok(Page { items, total: total as u64 })
}

static CONVERSATIONS_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT conv, last_seq, last_ts, seq, peer_seq, peer_delivered, unread FROM ( \
             SELECT c.conv AS conv, {dm_head}, COALESCE(r.seq, 0) AS seq, \
             COALESCE(p.seq, 0) AS peer_seq, COALESCE(p.delivered_seq, 0) AS peer_delivered, \
             {dm_unread} AS unread \
             FROM conversations c \
             LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = c.conv \
             LEFT JOIN read_markers p ON p.conv = c.conv \
                 AND p.user = CASE WHEN c.user_a = ?1 THEN c.user_b ELSE c.user_a END \
             WHERE (c.user_a = ?1 OR c.user_b = ?1) AND (?2 IS NULL OR c.conv > ?2) \
             UNION ALL \
             SELECT * FROM ( \
                 SELECT 'room:' || m.room, {room_head}, COALESCE(r.seq, 0), 0, 0, {room_unread} \
                 FROM room_members m \
                 LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = 'room:' || m.room \
                 WHERE m.user = ?1 AND (?3 IS NULL OR m.room > ?3) \
                 ORDER BY m.room LIMIT ?4 \
             ) \
         ) ORDER BY conv LIMIT ?4",
        dm_head = head_columns("c.conv"),
        room_head = head_columns("'room:' || m.room"),
        dm_unread = unread_column("c.conv"),
        room_unread = unread_column("'room:' || m.room"),
    )
});

pub(super) fn rooms_page(
    conn: &Connection,
    viewer: &str,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Page<RoomSummary>> {
    // A room the viewer may see: public, or private with them a member.
    let mut statement = conn.prepare_cached(
        "SELECT r.name, (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name), \
         EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.user = ?1), r.private, \
         r.created_by = ?1, EXISTS (SELECT 1 FROM room_moderators d WHERE d.room = r.name AND d.user = ?1) \
         FROM rooms r WHERE (?2 IS NULL OR r.name > ?2) \
         AND (NOT r.private OR EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.user = ?1)) \
         ORDER BY r.name LIMIT ?3",
    )?;
    let items = statement
        .query_map(params![viewer, after, i64::from(limit)], |row| {
            let joined: bool = row.get(2)?;
            Ok(RoomSummary {
                name: row.get(0)?,
                members: row.get::<_, i64>(1)? as u64,
                joined,
                private: row.get(3)?,
                role: crate::access::member_role(joined, row.get(4)?, row.get(5)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM rooms r WHERE NOT r.private \
             OR EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.user = ?1)",
        )?
        .query_row([viewer], |row| row.get(0))?;
    Ok(Page { items, total: total as u64 })
}

pub(super) fn members_page(
    conn: &Connection,
    room: &str,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Page<String>> {
    let mut statement = conn.prepare_cached(
        "SELECT user FROM room_members WHERE room = ?1 AND (?2 IS NULL OR user > ?2) ORDER BY user LIMIT ?3",
    )?;
    let items = statement
        .query_map(params![room, after, i64::from(limit)], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM room_members WHERE room = ?1")?
        .query_row([room], |row| row.get(0))?;
    Ok(Page { items, total: total as u64 })
}

/// Runs `read` in one read transaction, so a page and its total agree (in memory the writer runs
/// it inside its own transaction already).
pub(super) fn read_consistent<R>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> rusqlite::Result<R>,
) -> rusqlite::Result<R> {
    let tx = if conn.is_autocommit() { Some(conn.unchecked_transaction()?) } else { None };
    let result = read(conn)?;
    if let Some(tx) = tx {
        tx.finish()?;
    }
    Ok(result)
}

/// What a login's sync reads: each conversation of `user` from where `cursors` (or the read
/// marker, once `raise` has brought it up to date) leave it, in one read transaction so the
/// conversations and their messages agree.
pub(super) fn sync_reads(
    conn: &Connection,
    user: &str,
    cursors: &HashMap<String, u64>,
    limit: u32,
    raise: impl Fn(&mut [ConversationRecord]) -> rusqlite::Result<()>,
) -> rusqlite::Result<Vec<SyncRead>> {
    read_consistent(conn, |conn| {
        let mut conversations = conversations_of(conn, user)?;
        raise(&mut conversations)?;
        let mut reads = Vec::with_capacity(conversations.len());
        for conversation in conversations {
            let from = sync_start(&conversation, cursors);
            let messages = if conversation.last_seq > from {
                messages_after(conn, &conversation.conv, from, limit)?
            } else {
                Vec::new()
            };
            reads.push(SyncRead { conversation, from, messages });
        }
        Ok(reads)
    })
}
