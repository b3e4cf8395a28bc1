//! Replies and changes on PostgreSQL: the row a message is read from, and the entries of a batch
//! that read their target (a change, which also updates it; a reply, which quotes it). A batch
//! holding any runs in one explicit transaction ([`super::append`]); plain batches keep their
//! single statement.

use sqlx::PgConnection;

use super::append::Pending;
use super::{from_sql, to_sql};
use crate::{
    react, reactions_from_sql, reactions_to_sql, AppendOutcome, EntryKind, Millis, Quote, Reaction, Rejection,
    StoredMessage,
};

/// A message's columns and what a reply shows of the message it quotes, read from [`MESSAGES`];
/// the quote is looked up by primary key, so it is current (edited, deleted).
pub(super) const MESSAGE_COLUMNS: &str = "m.conv, m.seq, m.id, m.sender, m.recipient, m.room, m.text, m.ts, \
     m.idem_key, m.kind, m.target, m.edited_at, m.deleted, m.reactions, m.changed_seq, \
     q.sender AS quote_from, LEFT(q.text, 101) AS quote_text, q.deleted AS quote_deleted";

/// The messages (`m`) with the messages they reply to (`q`).
pub(super) const MESSAGES: &str =
    "messages m LEFT JOIN messages q ON m.kind = 0 AND q.conv = m.conv AND q.seq = m.target";

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    conv: String,
    seq: i64,
    id: String,
    sender: String,
    recipient: Option<String>,
    room: Option<String>,
    text: String,
    ts: Millis,
    pub(super) idem_key: Option<String>,
    kind: i16,
    target: Option<i64>,
    edited_at: Option<Millis>,
    deleted: bool,
    reactions: Option<String>,
    changed_seq: i64,
    quote_from: Option<String>,
    quote_text: Option<String>,
    quote_deleted: Option<bool>,
}

impl MessageRow {
    pub(super) fn sender(&self) -> &str {
        &self.sender
    }
}

impl From<MessageRow> for StoredMessage {
    fn from(row: MessageRow) -> Self {
        let kind = EntryKind::from_code(i64::from(row.kind));
        let quote = match row.quote_from {
            Some(from) if kind == EntryKind::Message => {
                Some(Quote::new(from, row.quote_text.as_deref().unwrap_or(""), row.quote_deleted.unwrap_or(false)))
            }
            _ => None,
        };
        StoredMessage {
            conv: row.conv,
            seq: from_sql(row.seq),
            id: row.id,
            sender: row.sender,
            recipient: row.recipient,
            room: row.room,
            text: row.text,
            ts: row.ts,
            key: row.idem_key,
            kind,
            target: row.target.map(from_sql),
            quote,
            edited_at: row.edited_at,
            deleted: row.deleted,
            reactions: reactions_from_sql(row.reactions.as_deref()),
            changed_seq: from_sql(row.changed_seq),
        }
    }
}

/// Whether an entry reads its target: a change, or a reply.
pub(super) fn reads_target(item: &Pending<'_>) -> bool {
    item.message.kind != EntryKind::Message || item.message.target.is_some()
}

/// Stores one change or reply inside the batch's transaction: takes the conversation's row lock
/// (as an append does), checks the target, updates it for a change, inserts the entry as the
/// conversation's next seq and moves the head.
pub(super) async fn append_one(conn: &mut PgConnection, item: &Pending<'_>) -> Result<AppendOutcome, sqlx::Error> {
    let message = item.message;
    if let Some(key) = item.key.as_deref() {
        let original = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.sender = $1 AND m.idem_key = $2"
        ))
        .bind(&message.sender)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(original) = original {
            return Ok(AppendOutcome::Duplicate(original.into()));
        }
    }
    let Some(target) = message.target else { return Ok(AppendOutcome::Rejected(Rejection::NotFound)) };
    let head = sqlx::query_scalar::<_, i64>("SELECT last_seq FROM conversations WHERE conv = $1 FOR UPDATE")
        .bind(&message.conv)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(head) = head else { return Ok(AppendOutcome::Rejected(Rejection::NotFound)) };
    let row = sqlx::query_as::<_, (i16, String, String, bool, Option<String>)>(
        "SELECT kind, sender, LEFT(text, 101), deleted, reactions FROM messages WHERE conv = $1 AND seq = $2",
    )
    .bind(&message.conv)
    .bind(to_sql(target))
    .fetch_optional(&mut *conn)
    .await?;
    let (quoted_from, quoted_text, reactions) = match row {
        None => return Ok(AppendOutcome::Rejected(Rejection::NotFound)),
        Some((kind, ..)) if kind != 0 => return Ok(AppendOutcome::Rejected(Rejection::NotFound)),
        Some((_, _, _, true, _)) => return Ok(AppendOutcome::Rejected(Rejection::Deleted)),
        Some((_, from, text, false, reactions)) => (from, text, reactions_from_sql(reactions.as_deref())),
    };
    let seq = from_sql(head) + 1;
    let mut quote = None;
    let mut new_reactions: Vec<Reaction> = Vec::new();
    let (conv, target_sql, seq_sql) = (message.conv.as_str(), to_sql(target), to_sql(seq));
    match message.kind {
        EntryKind::Message => quote = Some(Quote::new(quoted_from, &quoted_text, false)),
        EntryKind::Edit => {
            sqlx::query("UPDATE messages SET text = $3, edited_at = $4, changed_seq = $5 WHERE conv = $1 AND seq = $2")
                .bind(conv)
                .bind(target_sql)
                .bind(item.text.as_ref())
                .bind(message.ts)
                .bind(seq_sql)
                .execute(&mut *conn)
                .await?;
        }
        EntryKind::Delete => {
            sqlx::query(
                "UPDATE messages SET text = '', deleted = TRUE, reactions = NULL, changed_seq = $3 \
                 WHERE conv = $1 AND seq = $2",
            )
            .bind(conv)
            .bind(target_sql)
            .bind(seq_sql)
            .execute(&mut *conn)
            .await?;
        }
        EntryKind::React => {
            let Some(reactions) = react(reactions, &message.sender, &item.text) else {
                return Ok(AppendOutcome::Rejected(Rejection::TooManyReactions));
            };
            new_reactions = reactions;
            sqlx::query("UPDATE messages SET reactions = $3, changed_seq = $4 WHERE conv = $1 AND seq = $2")
                .bind(conv)
                .bind(target_sql)
                .bind(reactions_to_sql(&new_reactions))
                .bind(seq_sql)
                .execute(&mut *conn)
                .await?;
        }
    }
    let edited_at = (message.kind == EntryKind::Edit).then_some(message.ts);
    sqlx::query(
        "INSERT INTO messages (conv, seq, id, sender, recipient, room, text, ts, idem_key, kind, target, edited_at, \
         reactions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&message.conv)
    .bind(to_sql(seq))
    .bind(&message.id)
    .bind(&message.sender)
    .bind(&message.recipient)
    .bind(&message.room)
    .bind(item.text.as_ref())
    .bind(message.ts)
    .bind(item.key.as_deref())
    .bind(message.kind.code() as i16)
    .bind(to_sql(target))
    .bind(edited_at)
    .bind(reactions_to_sql(&new_reactions))
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE conversations SET last_seq = $2, last_ts = $3 WHERE conv = $1")
        .bind(&message.conv)
        .bind(to_sql(seq))
        .bind(message.ts)
        .execute(&mut *conn)
        .await?;
    if message.kind == EntryKind::Message {
        // One has read what one answers, as for any message.
        sqlx::query(
            "INSERT INTO read_markers (\"user\", conv, seq, delivered_seq) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (\"user\", conv) DO UPDATE SET seq = GREATEST(read_markers.seq, EXCLUDED.seq), \
             delivered_seq = GREATEST(read_markers.delivered_seq, EXCLUDED.seq)",
        )
        .bind(&message.sender)
        .bind(&message.conv)
        .bind(to_sql(seq))
        .execute(&mut *conn)
        .await?;
    }
    Ok(AppendOutcome::Stored(StoredMessage {
        conv: message.conv.clone(),
        seq,
        id: message.id.clone(),
        sender: message.sender.clone(),
        recipient: message.recipient.clone(),
        room: message.room.clone(),
        text: item.text.clone().into_owned(),
        ts: message.ts,
        key: item.key.as_deref().map(str::to_owned),
        kind: message.kind,
        target: Some(target),
        quote,
        edited_at,
        deleted: false,
        reactions: new_reactions,
        changed_seq: 0,
    }))
}
