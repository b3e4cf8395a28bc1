//! Conversation listings with both users' read state, and the read and delivered markers.

use sqlx::postgres::PgPool;

use super::{from_sql, store_error, to_sql};
use crate::{room_cursor, ActivityCursor, ConversationRecord, Millis, Page, StoreResult};

type ConversationRow = (String, i64, Millis, i64, i64, i64, i64);

/// How many messages (not changes) follow the read marker `r` in the conversation `conv`, among
/// the 1000 ([`crate::UNREAD_COUNT_SPAN`]) entries after it: a bounded range of the primary key.
macro_rules! unread {
    ($conv:literal) => {
        concat!(
            "(SELECT COUNT(*) FROM messages x WHERE x.conv = ",
            $conv,
            " AND x.seq > COALESCE(r.seq, 0) AND x.seq <= COALESCE(r.seq, 0) + 1000 AND x.kind = 0)"
        )
    };
}

fn record(
    (conv, last_seq, last_ts, read_seq, peer_read_seq, peer_delivered_seq, unread): ConversationRow,
) -> ConversationRecord {
    ConversationRecord {
        conv,
        last_seq: from_sql(last_seq),
        last_ts,
        read_seq: from_sql(read_seq),
        peer_read_seq: from_sql(peer_read_seq),
        peer_delivered_seq: from_sql(peer_delivered_seq),
        unread: from_sql(unread),
    }
}

pub(super) async fn conversations_of(pool: &PgPool, user: &str) -> StoreResult<Vec<ConversationRecord>> {
    // Every text column is in the "C" collation, so `conv` sorts bytewise as in SQLite. The peer
    // of a private conversation is its other user (the user themselves in `dm:<u>:<u>`).
    let rows = sqlx::query_as::<_, ConversationRow>(concat!(
        "SELECT c.conv AS conv, c.last_seq, c.last_ts, COALESCE(r.seq, 0), \
         COALESCE(p.seq, 0), COALESCE(p.delivered_seq, 0), ",
        unread!("c.conv"),
        " FROM conversations c \
         LEFT JOIN read_markers r ON r.\"user\" = $1 AND r.conv = c.conv \
         LEFT JOIN read_markers p ON p.conv = c.conv \
             AND p.\"user\" = CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END \
         WHERE c.user_a = $1 OR c.user_b = $1 \
         UNION ALL \
         SELECT 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_ts, 0), COALESCE(r.seq, 0), 0, 0, ",
        unread!("'room:' || m.room"),
        " FROM room_members m \
         LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
         LEFT JOIN read_markers r ON r.\"user\" = $1 AND r.conv = 'room:' || m.room \
         WHERE m.\"user\" = $1 \
         ORDER BY conv",
    ))
    .bind(user)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(rows.into_iter().map(record).collect())
}

pub(super) async fn conversations_page(
    pool: &PgPool,
    user: &str,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Page<ConversationRecord>> {
    // Each branch reads its index from the cursor on, at most `limit` rows.
    let rows = sqlx::query_as::<_, ConversationRow>(concat!(
        "SELECT * FROM ( \
             SELECT c.conv AS conv, c.last_seq, c.last_ts, COALESCE(r.seq, 0) AS seq, \
             COALESCE(p.seq, 0) AS peer_seq, COALESCE(p.delivered_seq, 0) AS peer_delivered, ",
        unread!("c.conv"),
        " AS unread FROM conversations c \
             LEFT JOIN read_markers r ON r.\"user\" = $1 AND r.conv = c.conv \
             LEFT JOIN read_markers p ON p.conv = c.conv \
                 AND p.\"user\" = CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END \
             WHERE (c.user_a = $1 OR c.user_b = $1) AND ($2::text IS NULL OR c.conv > $2) \
             UNION ALL \
             (SELECT 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_ts, 0), COALESCE(r.seq, 0), \
              0::bigint, 0::bigint, ",
        unread!("'room:' || m.room"),
        " FROM room_members m \
              LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
              LEFT JOIN read_markers r ON r.\"user\" = $1 AND r.conv = 'room:' || m.room \
              WHERE m.\"user\" = $1 AND ($3::text IS NULL OR m.room > $3) \
              ORDER BY m.room LIMIT $4) \
         ) listed ORDER BY conv LIMIT $4",
    ))
    .bind(user)
    .bind(after)
    .bind(room_cursor(after))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(Page { items: rows.into_iter().map(record).collect(), total: conversation_total(pool, user).await? })
}

/// The user's conversations by latest activity. Each conversation's row holds its head, so the
/// ranking reads one row per conversation of the user (no index on `last_ts`: it would make every
/// append's update of the row touch one more index), and the page's entries alone join their
/// read markers.
pub(super) async fn conversations_by_activity(
    pool: &PgPool,
    user: &str,
    after: Option<&ActivityCursor>,
    limit: u32,
) -> StoreResult<Page<ConversationRecord>> {
    let rows = sqlx::query_as::<_, ConversationRow>(concat!(
        "WITH listed AS ( \
             SELECT c.conv, c.last_seq, c.last_ts, \
                    CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END AS peer \
             FROM conversations c WHERE c.user_a = $1 OR c.user_b = $1 \
             UNION ALL \
             SELECT 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_ts, 0), NULL \
             FROM room_members m LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
             WHERE m.\"user\" = $1 \
         ), page AS ( \
             SELECT * FROM listed \
             WHERE $2::bigint IS NULL OR last_ts < $2 OR (last_ts = $2 AND conv > $3::text COLLATE \"C\") \
             ORDER BY last_ts DESC, conv COLLATE \"C\" LIMIT $4 \
         ) \
         SELECT page.conv, page.last_seq, page.last_ts, COALESCE(r.seq, 0), \
                COALESCE(p.seq, 0), COALESCE(p.delivered_seq, 0), ",
        unread!("page.conv"),
        " FROM page \
         LEFT JOIN read_markers r ON r.\"user\" = $1 AND r.conv = page.conv \
         LEFT JOIN read_markers p ON p.\"user\" = page.peer AND p.conv = page.conv \
         ORDER BY page.last_ts DESC, page.conv COLLATE \"C\"",
    ))
    .bind(user)
    .bind(after.map(|cursor| cursor.last_ts))
    .bind(after.map(|cursor| cursor.conv.as_str()))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(Page { items: rows.into_iter().map(record).collect(), total: conversation_total(pool, user).await? })
}

/// How many conversations the user has: private ones with messages and the rooms they are in.
async fn conversation_total(pool: &PgPool, user: &str) -> StoreResult<u64> {
    let total = sqlx::query_scalar::<_, i64>(
        "SELECT (SELECT COUNT(*) FROM conversations WHERE user_a = $1 OR user_b = $1) \
         + (SELECT COUNT(*) FROM room_members WHERE \"user\" = $1)",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .map_err(store_error)?;
    Ok(from_sql(total))
}

/// Moves the read marker forward and the delivered marker with it; returns the read marker.
pub(super) async fn set_read(pool: &PgPool, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
    move_marker(
        pool,
        user,
        conv,
        seq,
        "INSERT INTO read_markers (\"user\", conv, seq, delivered_seq) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (\"user\", conv) DO UPDATE SET seq = GREATEST(read_markers.seq, EXCLUDED.seq), \
         delivered_seq = GREATEST(read_markers.delivered_seq, EXCLUDED.seq) \
         RETURNING seq",
    )
    .await
}

pub(super) async fn set_delivered(pool: &PgPool, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
    move_marker(
        pool,
        user,
        conv,
        seq,
        "INSERT INTO read_markers (\"user\", conv, seq, delivered_seq) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (\"user\", conv) DO UPDATE \
         SET delivered_seq = GREATEST(read_markers.delivered_seq, EXCLUDED.delivered_seq) \
         RETURNING delivered_seq",
    )
    .await
}

async fn move_marker(pool: &PgPool, user: &str, conv: &str, seq: u64, upsert: &'static str) -> StoreResult<u64> {
    let stored = sqlx::query_scalar::<_, i64>(upsert)
        .bind(user)
        .bind(conv)
        .bind(to_sql(seq))
        .fetch_one(pool)
        .await
        .map_err(store_error)?;
    Ok(from_sql(stored))
}
