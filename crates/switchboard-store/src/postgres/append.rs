//! Appending a batch: the keyed messages' originals, then one statement that moves the
//! conversations' heads and inserts the new messages.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use sqlx::postgres::PgPool;
use sqlx::PgConnection;

use super::changes::{self, MessageRow, MESSAGE_COLUMNS};
use super::{dm_participants, from_sql, storable, store_error, to_sql};
use crate::{AppendOutcome, Millis, NewMessage, StoreResult, StoredMessage};

/// An append that loses a race on a new idempotency key to another node fails on the unique
/// index and runs again, then finding the original. A second loss needs another key of the same
/// batch raced at the same moment; a third is not worth waiting for.
const APPEND_ATTEMPTS: u32 = 3;
/// The unique index on (sender, idem_key), named in the migration.
const IDEMPOTENCY_INDEX: &str = "messages_by_idempotency_key";

/// A message of the batch with the text and key as they are stored.
pub(super) struct Pending<'a> {
    pub(super) message: &'a NewMessage,
    pub(super) text: Cow<'a, str>,
    pub(super) key: Option<Cow<'a, str>>,
}

/// What becomes of one message of a batch.
enum Slot {
    /// Its key was stored by an earlier batch: this is the original.
    Original(Box<StoredMessage>),
    /// Its key is the one of the message at this index, earlier in the batch.
    SameAs(usize),
    New,
}

/// What a batch adds to one conversation.
struct Growth {
    added: u64,
    /// The timestamp of the batch's last message in the conversation, its newest.
    last_ts: Millis,
    /// The seq of the next new message, once the conversation's row is locked.
    next_seq: u64,
}

/// [`crate::Store::append`] on PostgreSQL: runs the batch again when it lost a race that a second
/// attempt wins.
pub(super) async fn append(pool: &PgPool, batch: &[NewMessage]) -> StoreResult<Vec<AppendOutcome>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let pending: Vec<Pending<'_>> = batch
        .iter()
        .map(|message| Pending {
            message,
            text: storable(&message.text),
            key: message.idempotency_key.as_deref().map(storable),
        })
        .collect();
    let mut attempt = 1;
    let mixed = pending.iter().any(changes::reads_target);
    loop {
        let attempt_result =
            if mixed { try_append_mixed(pool, &pending).await } else { try_append(pool, &pending).await };
        match attempt_result {
            Ok(outcomes) => return Ok(outcomes),
            Err(error) if attempt < APPEND_ATTEMPTS && worth_retrying(&error) => {
                tracing::debug!(%error, attempt, "append raced another node; running the batch again");
                attempt += 1;
            }
            Err(error) => return Err(store_error(error)),
        }
    }
}

/// One attempt at a batch: the keyed messages' originals are read first (if any), then one
/// statement moves the conversations' heads and inserts the new messages. One statement is
/// atomic on its own and one round trip; an explicit transaction would add two more (a
/// message's cost across nodes was mostly these round trips). Nothing of it stays on `Err`.
async fn try_append(pool: &PgPool, pending: &[Pending<'_>]) -> Result<Vec<AppendOutcome>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    append_plain(&mut conn, pending).await
}

/// A batch with changes or replies: in one transaction, each run of plain messages as one
/// statement and each change or reply on its own, in batch order.
async fn try_append_mixed(pool: &PgPool, pending: &[Pending<'_>]) -> Result<Vec<AppendOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(pending.len());
    let mut start = 0;
    while start < pending.len() {
        if changes::reads_target(&pending[start]) {
            outcomes.push(changes::append_one(&mut tx, &pending[start]).await?);
            start += 1;
            continue;
        }
        let end = pending[start..].iter().position(changes::reads_target).map_or(pending.len(), |at| start + at);
        outcomes.extend(append_plain(&mut tx, &pending[start..end]).await?);
        start = end;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Plain messages, on a connection or inside a transaction.
async fn append_plain(conn: &mut PgConnection, pending: &[Pending<'_>]) -> Result<Vec<AppendOutcome>, sqlx::Error> {
    let originals = originals_of(&mut *conn, pending).await?;

    let mut slots = Vec::with_capacity(pending.len());
    let mut first_of_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut growth: BTreeMap<&str, Growth> = BTreeMap::new();
    for (index, item) in pending.iter().enumerate() {
        let message = item.message;
        if let Some(key) = item.key.as_deref() {
            let original =
                if originals.is_empty() { None } else { originals.get(&(message.sender.clone(), key.to_owned())) };
            if let Some(original) = original {
                slots.push(Slot::Original(Box::new(original.clone())));
                continue;
            }
            if let Some(&first) = first_of_key.get(&(message.sender.as_str(), key)) {
                slots.push(Slot::SameAs(first));
                continue;
            }
            first_of_key.insert((message.sender.as_str(), key), index);
        }
        slots.push(Slot::New);
        let conv = growth.entry(message.conv.as_str()).or_insert(Growth { added: 0, last_ts: 0, next_seq: 0 });
        conv.added += 1;
        conv.last_ts = message.ts;
    }
    if growth.is_empty() {
        // Every message of the batch is a duplicate of one stored before.
        return outcomes_of(pending, slots, &growth);
    }
    append_new(conn, pending, &slots, &mut growth).await?;
    outcomes_of(pending, slots, &growth)
}
/// The batch's outcomes, in order, once each conversation's first new seq is in `growth`.
fn outcomes_of(
    pending: &[Pending<'_>],
    slots: Vec<Slot>,
    growth: &BTreeMap<&str, Growth>,
) -> Result<Vec<AppendOutcome>, sqlx::Error> {
    let mut next: HashMap<&str, u64> = growth.iter().map(|(conv, grown)| (*conv, grown.next_seq)).collect();
    let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(pending.len());
    for (item, slot) in pending.iter().zip(slots) {
        let outcome = match slot {
            Slot::Original(original) => AppendOutcome::Duplicate(*original),
            Slot::SameAs(first) => match outcomes[first].message() {
                Some(message) => AppendOutcome::Duplicate(message.clone()),
                None => return Err(sqlx::Error::Protocol("a duplicate of a rejected entry".into())),
            },
            Slot::New => {
                let message = item.message;
                let Some(seq) = next.get_mut(message.conv.as_str()) else {
                    return Err(sqlx::Error::Protocol(format!("no seq reserved for {}", message.conv)));
                };
                let stored = *seq;
                *seq += 1;
                AppendOutcome::Stored(StoredMessage {
                    conv: message.conv.clone(),
                    seq: stored,
                    id: message.id.clone(),
                    sender: message.sender.clone(),
                    recipient: message.recipient.clone(),
                    room: message.room.clone(),
                    text: item.text.clone().into_owned(),
                    ts: message.ts,
                    key: item.key.as_deref().map(str::to_owned),
                    kind: message.kind,
                    target: None,
                    quote: None,
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    changed_seq: 0,
                })
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The messages stored before with the keys of the batch, by (sender, key).
async fn originals_of(
    conn: &mut PgConnection,
    pending: &[Pending<'_>],
) -> Result<HashMap<(String, String), StoredMessage>, sqlx::Error> {
    let (senders, keys): (Vec<&str>, Vec<&str>) =
        pending.iter().filter_map(|item| Some((item.message.sender.as_str(), item.key.as_deref()?))).unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query_as::<_, MessageRow>(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM UNNEST($1::text[], $2::text[]) AS k (sender, idem_key) \
         JOIN messages m ON m.sender = k.sender AND m.idem_key = k.idem_key \
         LEFT JOIN messages q ON m.kind = 0 AND q.conv = m.conv AND q.seq = m.target \
         WHERE m.idem_key IS NOT NULL"
    ))
    .bind(&senders)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = row.idem_key.clone()?;
            Some(((row.sender().to_owned(), key), StoredMessage::from(row)))
        })
        .collect())
}

/// Moves each conversation's `last_seq` past the batch's new messages (creating the missing
/// rows), inserts those messages, numbered from the heads it moved, and moves each sender's read
/// marker to their newest message (one has read what one answers), in one statement; records
/// in `growth` the first seq each conversation got. Rows are locked in conv order, the order of
/// `growth`, so two batches never wait on each other in a cycle; the locks are held until the
/// statement ends, which serialises concurrent appends to a conversation from every node.
async fn append_new(
    conn: &mut PgConnection,
    pending: &[Pending<'_>],
    slots: &[Slot],
    growth: &mut BTreeMap<&str, Growth>,
) -> Result<(), sqlx::Error> {
    let mut convs = Vec::with_capacity(growth.len());
    let mut users_a = Vec::with_capacity(growth.len());
    let mut users_b = Vec::with_capacity(growth.len());
    let mut added = Vec::with_capacity(growth.len());
    let mut last_ts = Vec::with_capacity(growth.len());
    for (conv, grown) in growth.iter() {
        let (user_a, user_b) = dm_participants(conv).unzip();
        convs.push(*conv);
        users_a.push(user_a);
        users_b.push(user_b);
        added.push(to_sql(grown.added));
        last_ts.push(grown.last_ts);
    }
    let new: Vec<&Pending<'_>> =
        pending.iter().zip(slots).filter(|(_, slot)| matches!(slot, Slot::New)).map(|(item, _)| item).collect();
    let message_convs: Vec<&str> = new.iter().map(|item| item.message.conv.as_str()).collect();
    let ids: Vec<&str> = new.iter().map(|item| item.message.id.as_str()).collect();
    let senders: Vec<&str> = new.iter().map(|item| item.message.sender.as_str()).collect();
    let recipients: Vec<Option<&str>> = new.iter().map(|item| item.message.recipient.as_deref()).collect();
    let rooms: Vec<Option<&str>> = new.iter().map(|item| item.message.room.as_deref()).collect();
    let texts: Vec<&str> = new.iter().map(|item| item.text.as_ref()).collect();
    let timestamps: Vec<Millis> = new.iter().map(|item| item.message.ts).collect();
    let keys: Vec<Option<&str>> = new.iter().map(|item| item.key.as_deref()).collect();
    // A conversation's new messages get seqs last_seq - added + 1 ..= last_seq in batch order,
    // the numbering `outcomes_of` gives them too.
    let heads = sqlx::query_as::<_, (String, i64)>(
        "WITH heads AS ( \
             INSERT INTO conversations (conv, user_a, user_b, last_seq, last_ts) \
             SELECT conv, user_a, user_b, added, last_ts \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) \
                  WITH ORDINALITY AS b (conv, user_a, user_b, added, last_ts, position) \
             ORDER BY position \
             ON CONFLICT (conv) DO UPDATE \
             SET last_seq = conversations.last_seq + EXCLUDED.last_seq, last_ts = EXCLUDED.last_ts \
             RETURNING conv, last_seq \
         ), batch AS ( \
             SELECT * FROM UNNEST($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                                  $12::int8[], $13::text[]) \
                  WITH ORDINALITY AS m (conv, id, sender, recipient, room, text, ts, idem_key, position) \
         ), inserted AS ( \
             INSERT INTO messages (conv, seq, id, sender, recipient, room, text, ts, idem_key) \
             SELECT m.conv, \
                    h.last_seq - COUNT(*) OVER (PARTITION BY m.conv) \
                        + ROW_NUMBER() OVER (PARTITION BY m.conv ORDER BY m.position), \
                    m.id, m.sender, m.recipient, m.room, m.text, m.ts, m.idem_key \
             FROM batch m JOIN heads h ON h.conv = m.conv \
             RETURNING sender, conv, seq \
         ), marked AS ( \
             INSERT INTO read_markers (\"user\", conv, seq, delivered_seq) \
             SELECT sender, conv, MAX(seq), MAX(seq) FROM inserted GROUP BY sender, conv ORDER BY sender, conv \
             ON CONFLICT (\"user\", conv) DO UPDATE \
             SET seq = GREATEST(read_markers.seq, EXCLUDED.seq), \
                 delivered_seq = GREATEST(read_markers.delivered_seq, EXCLUDED.seq) \
         ) \
         SELECT conv, last_seq FROM heads",
    )
    .bind(&convs)
    .bind(&users_a)
    .bind(&users_b)
    .bind(&added)
    .bind(&last_ts)
    .bind(&message_convs)
    .bind(&ids)
    .bind(&senders)
    .bind(&recipients)
    .bind(&rooms)
    .bind(&texts)
    .bind(&timestamps)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    if heads.len() != growth.len() {
        return Err(sqlx::Error::Protocol(format!(
            "{} conversations locked for a batch of {}",
            heads.len(),
            growth.len()
        )));
    }
    for (conv, last_seq) in heads {
        let Some(grown) = growth.get_mut(conv.as_str()) else {
            return Err(sqlx::Error::Protocol(format!("locked {conv}, which is not in the batch")));
        };
        let last_seq = from_sql(last_seq);
        if last_seq < grown.added {
            return Err(sqlx::Error::Protocol(format!("{conv} moved to {last_seq}, short of its batch")));
        }
        grown.next_seq = last_seq + 1 - grown.added;
    }
    Ok(())
}

/// Whether running the batch again may succeed: it lost a race on a new idempotency key (the
/// next attempt finds the original), or, in a cycle of such races, was chosen as the deadlock's
/// victim.
fn worth_retrying(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else {
        return false;
    };
    (error.is_unique_violation() && error.constraint() == Some(IDEMPOTENCY_INDEX))
        || error.code().is_some_and(|code| code == "40P01" || code == "40001")
}
