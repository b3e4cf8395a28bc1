//! A batch of joins, written by the writer inside its group commit.

use std::collections::HashSet;

use rusqlite::params;

use super::queries::{load_head, message_from, to_sql, MESSAGES, MESSAGE_COLUMNS};
use super::threads::Worker;
use crate::{JoinRequest, Joined, JoinedBatch, JoinedRoom, Millis};

/// Creates the missing rooms, adds the members and starts the new ones' read markers, then reads
/// each room's newest `history` messages once: all on the writer's connection, which sees the
/// open transaction's own appends.
pub(super) fn join_batch(
    worker: &Worker,
    requests: &[JoinRequest],
    history: u32,
    now: Millis,
) -> rusqlite::Result<JoinedBatch> {
    let conn = &worker.conn;
    let mut create = conn.prepare_cached(
        "INSERT INTO rooms (name, created_by, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
    )?;
    let mut add = conn.prepare_cached(
        "INSERT INTO room_members (room, user, joined_at) VALUES (?1, ?2, ?3) ON CONFLICT (room, user) DO NOTHING",
    )?;
    let mut mark = conn.prepare_cached(
        "INSERT INTO read_markers (user, conv, seq, delivered_seq) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (user, conv) DO UPDATE SET seq = MAX(seq, excluded.seq), \
         delivered_seq = MAX(delivered_seq, excluded.seq)",
    )?;
    let mut newest = conn.prepare_cached(&format!(
        "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = ?1 ORDER BY m.seq DESC LIMIT ?2) \
         ORDER BY seq"
    ))?;
    let mut batch = JoinedBatch::default();
    let mut creators = HashSet::new();
    for (room, first) in JoinedBatch::distinct_rooms(requests) {
        if create.execute(params![room, requests[first].user, now])? > 0 {
            creators.insert(first);
        }
        let conv = format!("room:{room}");
        let last_seq = match worker.heads.get(&conv) {
            Some(head) => head.last_seq,
            None => load_head(conn, &conv)?.last_seq,
        };
        let history = newest.query_map(params![conv, i64::from(history)], message_from)?.collect::<Result<_, _>>()?;
        batch.rooms.insert(room.to_owned(), JoinedRoom { history, last_seq });
    }
    for (index, request) in requests.iter().enumerate() {
        let newly = add.execute(params![request.room, request.user, now])? > 0;
        if newly {
            let last_seq = batch.rooms[&request.room].last_seq;
            mark.execute(params![request.user, format!("room:{}", request.room), to_sql(last_seq)])?;
        }
        batch.joins.push(Joined { created: creators.contains(&index), newly });
    }
    Ok(batch)
}
