//! The PostgreSQL store, for several nodes sharing one database.
//!
//! Every node writes to the same tables at once, so the store caches nothing: the row of a
//! conversation in `conversations` is its sequence. An append takes the row locks of its batch's
//! conversations (in conv order, so two batches never wait on each other in a cycle), moves each
//! `last_seq` past the batch's new messages and inserts them, all in one statement ([`append`]).
//! Appends to one conversation from any node serialise on its row and get consecutive seqs, and a
//! batch that fails gives its seqs back with it.

mod access;
mod append;
mod changes;
mod joins;
mod read_state;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{
    ActivityCursor, AppendOutcome, ConversationRecord, JoinRequest, JoinedBatch, Millis, NewMessage, Page, RoomSummary,
    SessionRecord, Store, StoreError, StoreResult, StoredMessage, UserRecord,
};
use changes::{MessageRow, MESSAGES, MESSAGE_COLUMNS};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Enough for the core's concurrent reads and one batch writer, per node: the database's
/// connection limit is shared by every node.
const MAX_CONNECTIONS: u32 = 8;
/// How long a query waits for a connection, also when there is no database to connect to: the
/// caller gets `Unavailable` rather than a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// A pooled connection idle this long is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// brings its schema up to date; nodes starting together take turns to migrate.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        // The URL may carry a password: it goes in no message or log, only its parts below.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Setup("a PostgreSQL URL starts with postgres:// or postgresql://".into()));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Setup(format!("invalid PostgreSQL URL: {error}")))?;
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("switchboard"),
        };
        // Read committed whatever the database's default: an append sees what other nodes
        // committed before it, and the upsert of a conversation's row waits for the row's lock and
        // then moves the newest version, where a stricter level would fail the append.
        let options = options.options([("default_transaction_isolation", r"read\ committed")]);
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        let database = options.get_database().unwrap_or("").to_owned();
        let pool_options = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out by default: a round trip more per statement
            // on a busy node (a login storm's statements waited on it). Only a connection idle for
            // a while may have been dropped by the server (a restart): that one is pinged first.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            });
        let pool = match pool_options.clone().connect_with(options.clone()).await {
            Err(error) if is_missing_database(&error) && !database.is_empty() => {
                match create_database(&options, &database).await {
                    Ok(()) => pool_options.connect_with(options).await,
                    Err(error) => Err(error),
                }
            }
            connected => connected,
        };
        let pool = pool.map_err(|error| match store_error(error) {
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL at {host}:{port}: {message}"))
            }
            StoreError::Database(message) | StoreError::Setup(message) => {
                StoreError::Setup(format!("cannot connect to PostgreSQL at {host}:{port}: {message}"))
            }
        })?;
        if let Err(error) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(error));
        }
        tracing::debug!(%host, port, %database, "postgres store open");
        Ok(PostgresStore { pool })
    }
}

/// Maps a database error to the store's: lost or refused connections and a server that is
/// shutting down, starting up, or out of connections, memory or disk are `Unavailable`.
/// SQLSTATE 3D000, invalid_catalog_name: the URL names a database the server does not have.
fn is_missing_database(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if error.code().as_deref() == Some("3D000"))
}

/// Creates the database a node was pointed at, through the server's `postgres` database, so that
/// a cluster starts on a fresh PostgreSQL with nothing done by hand. Nodes starting together may
/// race to it: the one that finds it made already (42P04, duplicate_database, or 23505 when the
/// other's catalog row went in during its own attempt) goes on.
async fn create_database(options: &PgConnectOptions, database: &str) -> Result<(), sqlx::Error> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone().database("postgres"))
        .await?;
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    let created = sqlx::raw_sql(&format!("CREATE DATABASE {quoted}")).execute(&admin).await;
    admin.close().await;
    match created {
        Ok(_) => {
            tracing::info!(%database, "created the postgres database");
            Ok(())
        }
        Err(sqlx::Error::Database(error)) if matches!(error.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(error) => Err(error),
    }
}

fn store_error(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P: operator intervention
            // (admin or crash shutdown, cannot connect now, database dropped).
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::from(error)
    }
}

fn migrate_error(error: MigrateError) -> StoreError {
    let cause = match error {
        MigrateError::Execute(cause) | MigrateError::ExecuteMigration(cause, _) => cause,
        other => return StoreError::Setup(format!("cannot migrate the database: {other}")),
    };
    match store_error(cause) {
        StoreError::Unavailable(message) => StoreError::Unavailable(format!("cannot migrate the database: {message}")),
        StoreError::Database(message) | StoreError::Setup(message) => {
            StoreError::Setup(format!("cannot migrate the database: {message}"))
        }
    }
}

/// PostgreSQL integers are signed; seqs never get near the limit, bounds given by callers might.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// PostgreSQL text cannot hold U+0000, which JSON strings (and SQLite) can: rather than fail a
/// whole batch, everybody's messages in it, over one such character, it is stored as U+FFFD.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The two users of a `dm:<a>:<b>` conversation; user names cannot contain ':'.
fn dm_participants(conv: &str) -> Option<(&str, &str)> {
    conv.strip_prefix("dm:")?.split_once(':')
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_user(&self, name: &str, password_hash: Option<&str>, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query_as::<_, (String, Option<String>, Millis)>(
            "SELECT name, password_hash, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(|(name, password_hash, created_at)| UserRecord { name, password_hash, created_at }))
    }

    async fn list_users(&self, prefix: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        let (low, high) = crate::prefix_range(prefix);
        // A NULL `after` compares as unknown, hence the explicit test.
        let names = sqlx::query_scalar::<_, String>(
            "SELECT name FROM users WHERE ($1::text IS NULL OR name > $1) AND name >= $2 AND name < $3 \
             ORDER BY name LIMIT $4",
        )
        .bind(after)
        .bind(low)
        .bind(high)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(names)
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, \"user\", created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&session.token_hash)
            .bind(&session.user)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query_as::<_, (String, String, Millis, Millis)>(
            "SELECT token_hash, \"user\", created_at, expires_at FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(|(token_hash, user, created_at, expires_at)| SessionRecord {
            token_hash,
            user,
            created_at,
            expires_at,
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn create_room(&self, room: &str, creator: &str, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO rooms (name, created_by, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(room)
        .bind(creator)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        let exists = sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM rooms WHERE name = $1)")
            .bind(room)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(exists)
    }

    async fn list_rooms(&self, viewer: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomSummary>> {
        // A room the viewer may see: public, or private with them a member.
        let rows = sqlx::query_as::<_, (String, i64, bool, bool, bool, bool)>(
            "SELECT r.name, (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name), \
             EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.\"user\" = $1), r.private, \
             r.created_by = $1, \
             EXISTS (SELECT 1 FROM room_moderators d WHERE d.room = r.name AND d.\"user\" = $1) \
             FROM rooms r WHERE ($2::text IS NULL OR r.name > $2) \
             AND (NOT r.private OR EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.\"user\" = $1)) \
             ORDER BY r.name LIMIT $3",
        )
        .bind(viewer)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let total = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM rooms r WHERE NOT r.private \
             OR EXISTS (SELECT 1 FROM room_members m WHERE m.room = r.name AND m.\"user\" = $1)",
        )
        .bind(viewer)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let items = rows
            .into_iter()
            .map(|(name, members, joined, private, owner, moderator)| RoomSummary {
                name,
                members: from_sql(members),
                joined,
                private,
                role: crate::access::member_role(joined, owner, moderator),
            })
            .collect();
        Ok(Page { items, total: from_sql(total) })
    }

    async fn add_member(&self, room: &str, user: &str, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO room_members (room, \"user\", joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT (room, \"user\") DO NOTHING",
        )
        .bind(room)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn remove_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM room_members WHERE room = $1 AND \"user\" = $2")
            .bind(room)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn members(&self, room: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<String>> {
        let items = sqlx::query_scalar::<_, String>(
            "SELECT \"user\" FROM room_members WHERE room = $1 AND ($2::text IS NULL OR \"user\" > $2) \
             ORDER BY \"user\" LIMIT $3",
        )
        .bind(room)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let total = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM room_members WHERE room = $1")
            .bind(room)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(Page { items, total: from_sql(total) })
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let rooms = sqlx::query_scalar::<_, String>("SELECT room FROM room_members WHERE \"user\" = $1 ORDER BY room")
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rooms)
    }

    async fn is_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM room_members WHERE room = $1 AND \"user\" = $2)")
            .bind(room)
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn join_rooms(&self, requests: &[JoinRequest], history: u32, now: Millis) -> StoreResult<JoinedBatch> {
        joins::join_rooms(&self.pool, requests, history, now).await
    }

    async fn open_session(
        &self,
        user: &str,
        create_user: bool,
        session: Option<&SessionRecord>,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        // One statement, so one round trip and all or nothing.
        let rooms = sqlx::query_scalar::<_, String>(
            "WITH new_user AS ( \
                 INSERT INTO users (name, password_hash, created_at) SELECT $1, NULL, $2 WHERE $3 \
                 ON CONFLICT (name) DO NOTHING \
             ), new_session AS ( \
                 INSERT INTO sessions (token_hash, \"user\", created_at, expires_at) \
                 SELECT $4::text, $1, $5, $6 WHERE $4::text IS NOT NULL \
             ) \
             SELECT room FROM room_members WHERE \"user\" = $1 ORDER BY room",
        )
        .bind(user)
        .bind(now)
        .bind(create_user)
        .bind(session.map(|session| session.token_hash.as_str()))
        .bind(session.map_or(now, |session| session.created_at))
        .bind(session.map_or(now, |session| session.expires_at))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rooms)
    }
    async fn append(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<AppendOutcome>> {
        append::append(&self.pool, &batch).await
    }

    async fn messages_after(&self, conv: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"
        ))
        .bind(conv)
        .bind(to_sql(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(StoredMessage::from).collect())
    }

    async fn messages_before(&self, conv: &str, before: Option<u64>, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT * FROM ( \
                 SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} \
                 WHERE m.conv = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3 \
             ) AS newest ORDER BY seq"
        ))
        .bind(conv)
        .bind(before.map_or(i64::MAX, to_sql))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(StoredMessage::from).collect())
    }

    async fn last_messages(&self, convs: &[String]) -> StoreResult<Vec<StoredMessage>> {
        // The newest message of each, not a change to an earlier one.
        let rows = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM conversations c \
             CROSS JOIN LATERAL (SELECT * FROM messages l WHERE l.conv = c.conv AND l.kind = 0 \
                 ORDER BY l.seq DESC LIMIT 1) m \
             LEFT JOIN messages q ON q.conv = m.conv AND q.seq = m.target \
             WHERE c.conv = ANY($1)"
        ))
        .bind(convs)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows.into_iter().map(StoredMessage::from).collect())
    }

    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>> {
        read_state::conversations_of(&self.pool, user).await
    }

    async fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        read_state::conversations_page(&self.pool, user, after, limit).await
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        let row = sqlx::query_as::<_, MessageRow>(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = $1 AND m.seq = $2"
        ))
        .bind(conv)
        .bind(to_sql(seq))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.map(StoredMessage::from))
    }

    async fn last_seq(&self, conv: &str) -> StoreResult<u64> {
        // The row moves in the transaction that inserts the messages: it is never behind them.
        let last_seq = sqlx::query_scalar::<_, i64>("SELECT last_seq FROM conversations WHERE conv = $1")
            .bind(conv)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(last_seq.map_or(0, from_sql))
    }

    async fn set_read(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        read_state::set_read(&self.pool, user, conv, seq).await
    }

    async fn set_delivered(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        read_state::set_delivered(&self.pool, user, conv, seq).await
    }

    async fn health(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(store_error)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn conversations_by_activity(
        &self,
        user: &str,
        after: Option<&ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        read_state::conversations_by_activity(&self.pool, user, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert!(matches!(storable("plain"), Cow::Borrowed("plain")));
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn dm_participants_of_conversations() {
        assert_eq!(dm_participants("dm:alice:bob"), Some(("alice", "bob")));
        assert_eq!(dm_participants("room:lobby"), None);
    }
}
