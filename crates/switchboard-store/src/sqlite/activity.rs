//! A user's conversations by latest activity.
//!
//! SQLite keeps no per-conversation head row (migration 0003: a message writes only its own
//! row), so the order is found at read time: each of the user's conversations costs one descent
//! of the clustered key of `messages` to its newest row, the list is ranked in memory, and only
//! the page's entries then read their read markers. A page therefore costs O(C log C) for a user
//! with C conversations, whichever page it is, and nothing per message written.

use rusqlite::{params, Connection, OptionalExtension};

use super::queries::{dm_participants, unread_after};
use crate::{by_activity, ActivityCursor, ConversationRecord, Page};

pub(super) fn conversations_by_activity(
    conn: &Connection,
    user: &str,
    after: Option<&ActivityCursor>,
    limit: u32,
) -> rusqlite::Result<Page<ConversationRecord>> {
    let mut ids = conn.prepare_cached(
        "SELECT conv FROM conversations WHERE user_a = ?1 OR user_b = ?1 \
         UNION ALL SELECT 'room:' || room FROM room_members WHERE user = ?1",
    )?;
    let mut head = conn.prepare_cached("SELECT seq, ts FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1")?;
    let mut listed = Vec::new();
    let mut total = 0u64;
    let mut rows = ids.query([user])?;
    while let Some(row) = rows.next()? {
        total += 1;
        let conv: String = row.get(0)?;
        let (last_seq, last_ts) =
            head.query_row([&conv], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?))).optional()?.unwrap_or((0, 0));
        let record = ConversationRecord {
            conv,
            last_seq: last_seq as u64,
            last_ts,
            read_seq: 0,
            peer_read_seq: 0,
            peer_delivered_seq: 0,
            unread: 0,
        };
        if after.is_none_or(|cursor| cursor.precedes(&record)) {
            listed.push(record);
        }
    }
    let limit = limit as usize;
    if listed.len() > limit {
        listed.select_nth_unstable_by(limit, by_activity);
        listed.truncate(limit);
    }
    listed.sort_unstable_by(by_activity);
    let mut marker =
        conn.prepare_cached("SELECT seq, delivered_seq FROM read_markers WHERE user = ?1 AND conv = ?2")?;
    let mut markers_of = |who: &str, conv: &str| -> rusqlite::Result<(u64, u64)> {
        let found = marker
            .query_row(params![who, conv], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)))
            .optional()?;
        Ok(found.unwrap_or((0, 0)))
    };
    for record in &mut listed {
        record.read_seq = markers_of(user, &record.conv)?.0;
        if let Some((a, b)) = dm_participants(&record.conv) {
            let peer = if a == user { b } else { a };
            (record.peer_read_seq, record.peer_delivered_seq) = markers_of(peer, &record.conv)?;
        }
        if record.last_seq > record.read_seq {
            record.unread = unread_after(conn, &record.conv, record.read_seq)?;
        }
    }
    Ok(Page { items: listed, total })
}
