//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of exactly one
//! connection (no lock contention, no `SQLITE_BUSY` between our own writes), while reads use a
//! few other connections that WAL lets run alongside the writer.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{
    AppendOutcome, ConversationRecord, Millis, NewMessage, RoomSummary, SessionRecord, Store, StoreError, StoreResult,
    StoredMessage, UserRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Enough for the core's concurrent reads (history, listings) without many idle file handles.
const READER_CONNECTIONS: u32 = 4;
/// How long a statement waits on a lock held by another process (a backup, the sqlite3 shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the memory of the head cache; past it the cache starts over, as heads are cheap to
/// reread from the primary key.
const MAX_CACHED_HEADS: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// `synchronous = FULL`: commits also survive a power loss, at the cost of an fsync each.
    /// The default, `NORMAL`, survives a crash of the process, which is what the server promises.
    pub synchronous_full: bool,
}

/// The newest message of a conversation, which the next append continues from.
#[derive(Debug, Clone, Copy, Default)]
struct ConvHead {
    last_seq: u64,
    last_ts: Millis,
}

pub struct SqliteStore {
    writer: SqlitePool,
    /// The same pool as `writer` in memory, where each connection would be its own database.
    reader: SqlitePool,
    /// Serialises appends, so that a head read from the cache is not moved by another append
    /// before this one commits.
    append_lock: tokio::sync::Mutex<()>,
    /// Committed heads, so appends do not look up every conversation's last seq. Only appends
    /// fill it, under `append_lock`: a reader could race an append and put back a stale head.
    heads: Mutex<HashMap<String, ConvHead>>,
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    conv: String,
    seq: u64,
    id: String,
    sender: String,
    recipient: Option<String>,
    room: Option<String>,
    text: String,
    ts: Millis,
}

impl From<MessageRow> for StoredMessage {
    fn from(row: MessageRow) -> Self {
        StoredMessage {
            conv: row.conv,
            seq: row.seq,
            id: row.id,
            sender: row.sender,
            recipient: row.recipient,
            room: row.room,
            text: row.text,
            ts: row.ts,
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|error| StoreError::Setup(format!("cannot create {}: {error}", parent.display())))?;
        }
        let synchronous = if options.synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal };
        let common = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false)
            .synchronous(synchronous);

        let writer = pool_options(1)
            .connect_with(common.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
            .await
            .map_err(|error| setup_error(path, error))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|error| StoreError::Setup(format!("cannot migrate the database: {error}")))?;
        // Opened after the writer switched the file to WAL, which is persistent: readers must not
        // try to change the journal mode themselves, as that needs an exclusive lock.
        let reader = pool_options(READER_CONNECTIONS)
            .connect_with(common.pragma("query_only", "ON"))
            .await
            .map_err(|error| setup_error(path, error))?;
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(Self::from_pools(writer, reader))
    }

    /// An empty database that lives as long as the store, for tests.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(false);
        let pool = pool_options(1)
            .connect_with(options)
            .await
            .map_err(|error| StoreError::Setup(format!("cannot open an in-memory database: {error}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|error| StoreError::Setup(format!("cannot migrate the database: {error}")))?;
        Ok(Self::from_pools(pool.clone(), pool))
    }

    fn from_pools(writer: SqlitePool, reader: SqlitePool) -> Self {
        SqliteStore { writer, reader, append_lock: tokio::sync::Mutex::new(()), heads: Mutex::new(HashMap::new()) }
    }

    fn cached_head(&self, conv: &str) -> Option<ConvHead> {
        self.heads.lock().get(conv).copied()
    }

    fn forget_heads<'a>(&self, convs: impl IntoIterator<Item = &'a str>) {
        let mut heads = self.heads.lock();
        for conv in convs {
            heads.remove(conv);
        }
    }

    fn remember_heads(&self, moved: HashMap<&str, ConvHead>) {
        let mut heads = self.heads.lock();
        if heads.len() + moved.len() > MAX_CACHED_HEADS {
            heads.clear();
        }
        for (conv, head) in moved {
            heads.insert(conv.to_owned(), head);
        }
    }

    /// Writes the batch into the open transaction and records in `moved` the new head of each
    /// conversation that got a message.
    async fn write_batch<'b>(
        &self,
        conn: &mut SqliteConnection,
        batch: &'b [NewMessage],
        moved: &mut HashMap<&'b str, ConvHead>,
    ) -> Result<Vec<AppendOutcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for message in batch {
            if let Some(key) = &message.idempotency_key {
                // Also sees messages stored earlier in this batch: they are in the transaction.
                let original = sqlx::query_as::<_, MessageRow>(
                    "SELECT conv, seq, id, sender, recipient, room, text, ts FROM messages \
                     WHERE sender = ?1 AND idem_key = ?2",
                )
                .bind(&message.sender)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(original) = original {
                    outcomes.push(AppendOutcome::Duplicate(original.into()));
                    continue;
                }
            }
            let head = match moved.get(message.conv.as_str()) {
                Some(head) => *head,
                None => match self.cached_head(&message.conv) {
                    Some(head) => head,
                    None => load_head(conn, &message.conv).await?,
                },
            };
            let stored = StoredMessage {
                conv: message.conv.clone(),
                seq: head.last_seq + 1,
                id: message.id.clone(),
                sender: message.sender.clone(),
                recipient: message.recipient.clone(),
                room: message.room.clone(),
                text: message.text.clone(),
                ts: message.ts,
            };
            sqlx::query(
                "INSERT INTO messages (conv, seq, id, sender, recipient, room, text, ts, idem_key) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(&stored.conv)
            .bind(to_sql(stored.seq))
            .bind(&stored.id)
            .bind(&stored.sender)
            .bind(&stored.recipient)
            .bind(&stored.room)
            .bind(&stored.text)
            .bind(stored.ts)
            .bind(&message.idempotency_key)
            .execute(&mut *conn)
            .await?;
            moved.insert(message.conv.as_str(), ConvHead { last_seq: stored.seq, last_ts: stored.ts });
            outcomes.push(AppendOutcome::Stored(stored));
        }
        for (conv, head) in moved.iter() {
            let (user_a, user_b) = dm_participants(conv).unzip();
            sqlx::query(
                "INSERT INTO conversations (conv, user_a, user_b, last_seq, last_ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq, last_ts = excluded.last_ts",
            )
            .bind(*conv)
            .bind(user_a)
            .bind(user_b)
            .bind(to_sql(head.last_seq))
            .bind(head.last_ts)
            .execute(&mut *conn)
            .await?;
        }
        Ok(outcomes)
    }
}

fn pool_options(connections: u32) -> SqlitePoolOptions {
    // Connections live as long as the store: each keeps its prepared statements, and an
    // in-memory database would vanish with its only connection.
    SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

fn setup_error(path: &Path, error: sqlx::Error) -> StoreError {
    StoreError::Setup(format!("cannot open {}: {error}", path.display()))
}

/// SQLite integers are signed; seqs never get near the limit, bounds given by callers might.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The two users of a `dm:<a>:<b>` conversation; user names cannot contain ':'.
fn dm_participants(conv: &str) -> Option<(&str, &str)> {
    conv.strip_prefix("dm:")?.split_once(':')
}

async fn load_head(conn: &mut SqliteConnection, conv: &str) -> Result<ConvHead, sqlx::Error> {
    let newest =
        sqlx::query_as::<_, (u64, Millis)>("SELECT seq, ts FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1")
            .bind(conv)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(newest.map(|(last_seq, last_ts)| ConvHead { last_seq, last_ts }).unwrap_or_default())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, name: &str, password_hash: Option<&str>, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(password_hash)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query_as::<_, (String, Option<String>, Millis)>(
            "SELECT name, password_hash, created_at FROM users WHERE name = ?1",
        )
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(name, password_hash, created_at)| UserRecord { name, password_hash, created_at }))
    }

    async fn list_users(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        let names = match after {
            Some(after) => {
                sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE name > ?1 ORDER BY name LIMIT ?2")
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                sqlx::query_scalar::<_, String>("SELECT name FROM users ORDER BY name LIMIT ?1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        Ok(names)
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&session.token_hash)
            .bind(&session.user)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query_as::<_, (String, String, Millis, Millis)>(
            "SELECT token_hash, user, created_at, expires_at FROM sessions WHERE token_hash = ?1",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(token_hash, user, created_at, expires_at)| SessionRecord {
            token_hash,
            user,
            created_at,
            expires_at,
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?1").bind(token_hash).execute(&self.writer).await?;
        Ok(())
    }

    async fn create_room(&self, room: &str, creator: &str, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO rooms (name, created_by, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(room)
        .bind(creator)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        let exists = sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ?1)")
            .bind(room)
            .fetch_one(&self.reader)
            .await?;
        Ok(exists)
    }

    async fn list_rooms(&self) -> StoreResult<Vec<RoomSummary>> {
        let rows = sqlx::query_as::<_, (String, u64)>(
            "SELECT r.name, (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name) \
             FROM rooms r ORDER BY r.name",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(|(name, members)| RoomSummary { name, members }).collect())
    }

    async fn add_member(&self, room: &str, user: &str, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO room_members (room, user, joined_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (room, user) DO NOTHING",
        )
        .bind(room)
        .bind(user)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn remove_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM room_members WHERE room = ?1 AND user = ?2")
            .bind(room)
            .bind(user)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn members(&self, room: &str) -> StoreResult<Vec<String>> {
        let users = sqlx::query_scalar::<_, String>("SELECT user FROM room_members WHERE room = ?1 ORDER BY user")
            .bind(room)
            .fetch_all(&self.reader)
            .await?;
        Ok(users)
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let rooms = sqlx::query_scalar::<_, String>("SELECT room FROM room_members WHERE user = ?1 ORDER BY room")
            .bind(user)
            .fetch_all(&self.reader)
            .await?;
        Ok(rooms)
    }

    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<AppendOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let _serialised = self.append_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let mut moved = HashMap::new();
        let outcomes = match self.write_batch(&mut tx, batch, &mut moved).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // Dropping the transaction rolls it back. A failure here may come from a stale
                // head (say, another process wrote): reread the heads next time.
                self.forget_heads(batch.iter().map(|message| message.conv.as_str()));
                return Err(error.into());
            }
        };
        // A commit that fails, or whose future is dropped, may or may not have landed: until it
        // is known to have, the next append must reread these heads rather than trust the cache.
        self.forget_heads(moved.keys().copied());
        tx.commit().await?;
        self.remember_heads(moved);
        Ok(outcomes)
    }

    async fn messages_after(&self, conv: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query_as::<_, MessageRow>(
            "SELECT conv, seq, id, sender, recipient, room, text, ts FROM messages \
             WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(conv)
        .bind(to_sql(after))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(StoredMessage::from).collect())
    }

    async fn messages_before(&self, conv: &str, before: Option<u64>, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query_as::<_, MessageRow>(
            "SELECT * FROM ( \
                 SELECT conv, seq, id, sender, recipient, room, text, ts FROM messages \
                 WHERE conv = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3 \
             ) ORDER BY seq",
        )
        .bind(conv)
        .bind(before.map_or(i64::MAX, to_sql))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(StoredMessage::from).collect())
    }

    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>> {
        let rows = sqlx::query_as::<_, (String, u64, Millis, u64)>(
            "SELECT c.conv AS conv, c.last_seq, c.last_ts, COALESCE(r.seq, 0) \
             FROM conversations c \
             LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = c.conv \
             WHERE c.user_a = ?1 OR c.user_b = ?1 \
             UNION ALL \
             SELECT 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_ts, 0), \
                    COALESCE(r.seq, 0) \
             FROM room_members m \
             LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
             LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = 'room:' || m.room \
             WHERE m.user = ?1 \
             ORDER BY conv",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(conv, last_seq, last_ts, read_seq)| ConversationRecord { conv, last_seq, last_ts, read_seq })
            .collect())
    }

    async fn last_seq(&self, conv: &str) -> StoreResult<u64> {
        if let Some(head) = self.cached_head(conv) {
            return Ok(head.last_seq);
        }
        let last_seq = sqlx::query_scalar::<_, u64>("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?1")
            .bind(conv)
            .fetch_one(&self.reader)
            .await?;
        Ok(last_seq)
    }

    async fn set_read(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        let stored = sqlx::query_scalar::<_, u64>(
            "INSERT INTO read_markers (user, conv, seq) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user, conv) DO UPDATE SET seq = MAX(seq, excluded.seq) \
             RETURNING seq",
        )
        .bind(user)
        .bind(conv)
        .bind(to_sql(seq))
        .fetch_one(&self.writer)
        .await?;
        Ok(stored)
    }

    async fn close(&self) {
        // Folds the WAL back into the database file, so a copy of that file alone is complete.
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await {
            tracing::warn!(%error, "final wal checkpoint failed");
        }
        self.reader.close().await;
        self.writer.close().await;
    }
}
