//! Replies and changes inside an append's transaction: the target is read (and, for a change,
//! updated in place) by primary key, so a plain message pays nothing for them.

use rusqlite::{params, Connection, OptionalExtension};

use super::queries::to_sql;
use crate::{react, reactions_from_sql, reactions_to_sql, EntryKind, NewMessage, Quote, Reaction, Rejection};

/// What an entry carries once its target was checked.
#[derive(Debug, Default)]
pub(super) struct Checked {
    pub(super) quote: Option<Quote>,
    /// A react entry: the target's reactions after it.
    pub(super) reactions: Vec<Reaction>,
}

type Outcome = rusqlite::Result<Result<Checked, Rejection>>;

/// The message a reply quotes: it must be a message of the conversation, not deleted.
pub(super) fn check_reply(conn: &Connection, conv: &str, target: u64) -> Outcome {
    let mut statement = conn.prepare_cached(
        "SELECT kind, sender, substr(text, 1, 101), deleted FROM messages WHERE conv = ?1 AND seq = ?2",
    )?;
    let row = statement
        .query_row(params![conv, to_sql(target)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, bool>(3)?))
        })
        .optional()?;
    Ok(match row {
        Some((kind, _, _, _)) if EntryKind::from_code(kind) != EntryKind::Message => Err(Rejection::NotFound),
        None => Err(Rejection::NotFound),
        Some((_, _, _, true)) => Err(Rejection::Deleted),
        Some((_, from, text, false)) => {
            Ok(Checked { quote: Some(Quote::new(from, &text, false)), reactions: Vec::new() })
        }
    })
}

/// Checks a change against its target and applies it there, recording `seq` as the target's
/// newest change. Who may make it was decided by the core before.
pub(super) fn apply_change(conn: &Connection, change: &NewMessage, target: u64, seq: u64) -> Outcome {
    let mut statement =
        conn.prepare_cached("SELECT kind, deleted, reactions FROM messages WHERE conv = ?1 AND seq = ?2")?;
    let row = statement
        .query_row(params![change.conv, to_sql(target)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .optional()?;
    let reactions = match row {
        None => return Ok(Err(Rejection::NotFound)),
        Some((kind, _, _)) if EntryKind::from_code(kind) != EntryKind::Message => return Ok(Err(Rejection::NotFound)),
        Some((_, true, _)) => return Ok(Err(Rejection::Deleted)),
        Some((_, false, reactions)) => reactions_from_sql(reactions.as_deref()),
    };
    let (target, seq) = (to_sql(target), to_sql(seq));
    let mut checked = Checked::default();
    match change.kind {
        EntryKind::Message => return Ok(Err(Rejection::NotFound)),
        EntryKind::Edit => {
            conn.prepare_cached(
                "UPDATE messages SET text = ?3, edited_at = ?4, changed_seq = ?5 WHERE conv = ?1 AND seq = ?2",
            )?
            .execute(params![change.conv, target, change.text, change.ts, seq])?;
        }
        EntryKind::Delete => {
            conn.prepare_cached(
                "UPDATE messages SET text = '', deleted = 1, reactions = NULL, changed_seq = ?3 \
                 WHERE conv = ?1 AND seq = ?2",
            )?
            .execute(params![change.conv, target, seq])?;
        }
        EntryKind::React => {
            let Some(reactions) = react(reactions, &change.sender, &change.text) else {
                return Ok(Err(Rejection::TooManyReactions));
            };
            conn.prepare_cached("UPDATE messages SET reactions = ?3, changed_seq = ?4 WHERE conv = ?1 AND seq = ?2")?
                .execute(params![change.conv, target, reactions_to_sql(&reactions), seq])?;
            checked.reactions = reactions;
        }
    }
    Ok(Ok(checked))
}
