//! A batch of joins in two statements, whatever its size: one that writes (rooms, members, read
//! markers) and one that reads each room's newest messages.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;

use super::{from_sql, store_error, MessageRow, MESSAGES, MESSAGE_COLUMNS};
use crate::{JoinRequest, Joined, JoinedBatch, JoinedRoom, Millis, StoreResult, StoredMessage};

pub(super) async fn join_rooms(
    pool: &PgPool,
    requests: &[JoinRequest],
    history: u32,
    now: Millis,
) -> StoreResult<JoinedBatch> {
    let rooms = JoinedBatch::distinct_rooms(requests);
    // Each (room, user) once, sorted, so that batches from several nodes take the rows' locks in
    // one order and never wait on each other in a cycle.
    let mut pairs: Vec<(&str, &str)> =
        requests.iter().map(|request| (request.room.as_str(), request.user.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut new_rooms: Vec<(&str, &str)> =
        rooms.iter().map(|(room, first)| (*room, requests[*first].user.as_str())).collect();
    new_rooms.sort_unstable();
    // One statement, so one round trip and all or nothing. The markers of new members start at
    // the room's newest seq as the statement found it.
    let rows = sqlx::query_as::<_, (String, String, bool, bool, i64)>(
        "WITH joins AS ( \
             SELECT * FROM unnest($1::text[], $2::text[]) AS j(room, \"user\") \
         ), new_rooms AS ( \
             INSERT INTO rooms (name, created_by, created_at) \
             SELECT *, $5::bigint FROM unnest($3::text[], $4::text[]) \
             ON CONFLICT (name) DO NOTHING RETURNING name \
         ), new_members AS ( \
             INSERT INTO room_members (room, \"user\", joined_at) SELECT room, \"user\", $5 FROM joins \
             ON CONFLICT (room, \"user\") DO NOTHING RETURNING room, \"user\" \
         ), markers AS ( \
             INSERT INTO read_markers (\"user\", conv, seq, delivered_seq) \
             SELECT m.\"user\", 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_seq, 0) \
             FROM new_members m LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
             ORDER BY m.\"user\", m.room \
             ON CONFLICT (\"user\", conv) DO UPDATE SET seq = GREATEST(read_markers.seq, EXCLUDED.seq), \
             delivered_seq = GREATEST(read_markers.delivered_seq, EXCLUDED.seq) \
         ) \
         SELECT j.room, j.\"user\", \
             EXISTS (SELECT 1 FROM new_rooms r WHERE r.name = j.room), \
             EXISTS (SELECT 1 FROM new_members m WHERE m.room = j.room AND m.\"user\" = j.\"user\"), \
             COALESCE(c.last_seq, 0) \
         FROM joins j LEFT JOIN conversations c ON c.conv = 'room:' || j.room",
    )
    .bind(pairs.iter().map(|(room, _)| *room).collect::<Vec<_>>())
    .bind(pairs.iter().map(|(_, user)| *user).collect::<Vec<_>>())
    .bind(new_rooms.iter().map(|(room, _)| *room).collect::<Vec<_>>())
    .bind(new_rooms.iter().map(|(_, creator)| *creator).collect::<Vec<_>>())
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    let mut created_rooms = HashSet::new();
    let mut newly_pairs = HashSet::new();
    let mut last_seqs = HashMap::new();
    for (room, user, created, newly, last_seq) in rows {
        if created {
            created_rooms.insert(room.clone());
        }
        if newly {
            newly_pairs.insert((room.clone(), user));
        }
        last_seqs.insert(room, from_sql(last_seq));
    }
    let convs: Vec<String> = rooms.iter().map(|(room, _)| format!("room:{room}")).collect();
    let messages = sqlx::query_as::<_, MessageRow>(&format!(
        "SELECT h.* FROM unnest($1::text[]) AS r(conv) CROSS JOIN LATERAL ( \
             SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} \
             WHERE m.conv = r.conv ORDER BY m.seq DESC LIMIT $2 \
         ) h",
    ))
    .bind(&convs)
    .bind(i64::from(history))
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    let mut histories: HashMap<String, Vec<StoredMessage>> = HashMap::new();
    for row in messages {
        let message = StoredMessage::from(row);
        if let Some(room) = message.conv.strip_prefix("room:") {
            histories.entry(room.to_owned()).or_default().push(message);
        }
    }
    let mut batch = JoinedBatch::default();
    for (room, _) in &rooms {
        let mut history = histories.remove(*room).unwrap_or_default();
        history.sort_unstable_by_key(|message| message.seq);
        let last_seq = last_seqs.get(*room).copied().unwrap_or(0);
        batch.rooms.insert((*room).to_owned(), JoinedRoom { history, last_seq });
    }
    // The first request of a pair gets its outcome; a repeat in the same batch was a member by
    // then.
    let firsts: HashMap<&str, usize> = rooms.iter().map(|(room, first)| (*room, *first)).collect();
    for (index, request) in requests.iter().enumerate() {
        let created = firsts.get(request.room.as_str()) == Some(&index) && created_rooms.contains(&request.room);
        let newly = newly_pairs.remove(&(request.room.clone(), request.user.clone()));
        batch.joins.push(Joined { created, newly });
    }
    Ok(batch)
}
