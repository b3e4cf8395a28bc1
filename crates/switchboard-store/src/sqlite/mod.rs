//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, so every write runs on one thread that owns the only
//! writing connection, while reads run on a few reader threads that WAL lets run alongside it.
//! Calls reach those threads over channels: one hop per call, whatever it runs.
//!
//! The writer commits whatever queued up while it was busy in one transaction (group commit),
//! each call inside its own savepoint, so a burst of logins or batches costs a few commits, and a
//! call that fails rolls back only its own work. Every caller hears back only after the commit.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync of each) run on a
//! thread of their own, so a commit does not wait for one: the writer only copies the few frames
//! committed since the checkpointer's last pass once the WAL is long, so that its next transaction
//! starts the WAL over. Should writes outpace the checkpointer anyway, the writer waits for a
//! checkpoint of its own once the WAL is twice that long: the WAL file stays bounded.
//!
//! Every connection goes through SQLite's `unix-excl` VFS: the first one locks the database file
//! for this process, and the WAL's index then lives in this process's memory instead of a shared
//! `-shm` file, so taking and releasing its locks costs no `fcntl` (three system calls per commit
//! before, a quarter of a private message's at 1k/s). No other process can open the database while
//! the server runs, which the data folder's lock forbids anyway.

mod joins;
mod queries;
mod threads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use crate::{
    sync_start, AppendOutcome, ConversationRecord, InlineAppend, JoinRequest, JoinedBatch, Millis, NewMessage, Page,
    RoomSummary, SessionRecord, Store, StoreError, StoreResult, StoredMessage, SyncRead, UserRecord,
};
use queries::*;
use threads::*;

/// The schema, one entry per version; `PRAGMA user_version` holds how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_delivered.sql"),
    include_str!("../../migrations/sqlite/0003_conversation_heads.sql"),
];

/// Two cores' worth of concurrent reads (history, listings, login syncs).
const READER_THREADS: usize = 2;
/// How long a statement waits on a lock held by another process (a backup, the sqlite3 shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// `synchronous = FULL`: commits also survive a power loss, at the cost of an fsync each.
    /// The default, `NORMAL`, survives a crash of the process, which is what the server promises.
    pub synchronous_full: bool,
}

pub struct SqliteStore {
    /// `None` once closed.
    writer: RwLock<Option<Queue>>,
    /// The writer's connection, for appends committed on the caller's thread.
    worker: SharedWorker,
    /// The writer's own queue in memory, where each connection would be its own database.
    reader: RwLock<Option<Queue>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, options))
            .await
            .map_err(|error| StoreError::Setup(format!("store setup panicked: {error}")))?
    }

    fn open_blocking(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| StoreError::Setup(format!("cannot create {}: {error}", parent.display())))?;
        }
        let setup = |error: rusqlite::Error| StoreError::Setup(format!("cannot open {}: {error}", path.display()));
        let mut writer = open_excl(path, OpenFlags::default()).map_err(setup)?;
        configure(&writer, options).map_err(setup)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(setup)?;
        // The checkpointer thread does it, off the commit path; the writer bounds the WAL itself.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(setup)?;
        // Above the hard limit: a WAL cut back when it starts over grows again into new blocks,
        // which the kernel zeroes first (6% of the server's CPU at 10k messages/s, perf).
        writer.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES).map_err(setup)?;
        migrate(&mut writer)?;
        let mut threads = Vec::new();
        let checkpointer_conn = open_excl(path, OpenFlags::default()).map_err(setup)?;
        configure(&checkpointer_conn, options).map_err(setup)?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let checkpointer = spawn_checkpointer(checkpointer_conn, PathBuf::from(wal_path), &mut threads)?;
        let (writer_queue, worker) = spawn_writer(writer, Some(checkpointer), &mut threads)?;
        // Opened after the writer switched the file to WAL, which is persistent: readers must not
        // try to change the journal mode themselves, as that needs an exclusive lock.
        let (reader_queue, calls) = mpsc::channel::<Box<dyn Call>>();
        let calls = Arc::new(Mutex::new(calls));
        for index in 0..READER_THREADS {
            // Read-write as far as the VFS knows (a read-only `unix-excl` connection takes real
            // file locks, which would downgrade the process's), read-only by `query_only`.
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = open_excl(path, flags).map_err(setup)?;
            configure(&conn, options).map_err(setup)?;
            conn.pragma_update(None, "query_only", true).map_err(setup)?;
            let calls = calls.clone();
            let handle = thread::Builder::new()
                .name(format!("sqlite-reader-{index}"))
                .spawn(move || run_reader(conn, &calls))
                .map_err(|error| StoreError::Setup(format!("cannot start a store thread: {error}")))?;
            threads.push(handle);
        }
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(SqliteStore {
            writer: RwLock::new(Some(writer_queue)),
            worker,
            reader: RwLock::new(Some(reader_queue)),
            threads: Mutex::new(threads),
        })
    }

    /// An empty database that lives as long as the store, for tests.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let setup = |error: rusqlite::Error| StoreError::Setup(format!("cannot open an in-memory database: {error}"));
        let mut conn = Connection::open_in_memory().map_err(setup)?;
        configure(&conn, SqliteOptions::default()).map_err(setup)?;
        migrate(&mut conn)?;
        let mut threads = Vec::new();
        let (queue, worker) = spawn_writer(conn, None, &mut threads)?;
        Ok(SqliteStore {
            writer: RwLock::new(Some(queue.clone())),
            worker,
            reader: RwLock::new(Some(queue)),
            threads: Mutex::new(threads),
        })
    }

    async fn call<R, F>(queue: &RwLock<Option<Queue>>, work: F) -> StoreResult<R>
    where
        F: FnOnce(&mut Worker) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call: Box<dyn Call> = Box::new(Pending { work, reply });
        let sent = match queue.read().as_ref() {
            Some(queue) => queue.send(call).map_err(|_| ()),
            None => Err(()),
        };
        if sent.is_err() {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        answer.await.map_err(|_| StoreError::Unavailable("the store thread stopped".into()))?
    }

    /// Runs `work` on the writer, inside the next group commit.
    async fn write<R, F>(&self, work: F) -> StoreResult<R>
    where
        F: FnOnce(&mut Worker) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        Self::call(&self.writer, work).await
    }

    /// Runs an upsert of one read marker (`user`, `conv`, `seq` as ?1-?3) that returns the
    /// marker now stored.
    async fn move_marker(&self, user: &str, conv: &str, seq: u64, upsert: &'static str) -> StoreResult<u64> {
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.write(move |worker| {
            let mut statement = worker.conn.prepare_cached(upsert)?;
            Ok(statement.query_row(params![user, conv, to_sql(seq)], |row| row.get::<_, i64>(0))? as u64)
        })
        .await
    }

    /// Runs `work` on a reader, which sees what is committed.
    async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        F: FnOnce(&mut Worker) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        Self::call(&self.reader, work).await
    }
}

impl InlineAppend for SqliteStore {
    fn try_append(&self, batch: Vec<NewMessage>) -> Result<StoreResult<Vec<AppendOutcome>>, Vec<NewMessage>> {
        // Held through the transaction: `close` waits for it, and a closed store takes no more.
        let open = self.writer.read();
        if open.is_none() {
            return Ok(Err(StoreError::Unavailable("the store is closed".into())));
        }
        let Some(mut worker) = self.worker.try_lock() else {
            return Err(batch);
        };
        Ok(worker.transaction(|worker| append_batch(worker, &batch)))
    }
}

/// Runs `read` in one read transaction, so a page and its total agree (in memory the writer runs
/// it inside its own transaction already).
fn read_consistent<R>(conn: &Connection, read: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> rusqlite::Result<R> {
    let tx = if conn.is_autocommit() { Some(conn.unchecked_transaction()?) } else { None };
    let result = read(conn)?;
    if let Some(tx) = tx {
        tx.finish()?;
    }
    Ok(result)
}

fn open_excl(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    Connection::open_with_flags_and_vfs(path, flags, "unix-excl")
}

fn configure(conn: &Connection, options: SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "synchronous", if options.synchronous_full { "FULL" } else { "NORMAL" })?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Applies the migrations not applied yet. A database made by an earlier build recorded its
/// migrations in sqlx's table instead of `user_version`.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let failed = |error: rusqlite::Error| StoreError::Setup(format!("cannot migrate the database: {error}"));
    let mut applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(failed)?;
    if applied == 0 {
        let sqlx_table: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')", [], |row| {
                row.get(0)
            })
            .map_err(failed)?;
        if sqlx_table {
            applied = conn
                .query_row("SELECT COUNT(*) FROM _sqlx_migrations WHERE success", [], |row| row.get(0))
                .map_err(failed)?;
        }
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(migration).map_err(failed)?;
        tx.pragma_update(None, "user_version", index + 1).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Setup(format!(
            "the database has schema version {applied}, newer than this build's {}",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, name: &str, password_hash: Option<&str>, now: Millis) -> StoreResult<bool> {
        let (name, password_hash) = (name.to_owned(), password_hash.map(str::to_owned));
        self.write(move |worker| match insert_user(&worker.conn, &name, password_hash.as_deref(), now) {
            Ok(inserted) => Ok(inserted > 0),
            Err(error) => Err(error.into()),
        })
        .await
    }

    async fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        let name = name.to_owned();
        self.read(move |worker| {
            let mut statement =
                worker.conn.prepare_cached("SELECT name, password_hash, created_at FROM users WHERE name = ?1")?;
            let user = statement
                .query_row([name], |row| {
                    Ok(UserRecord { name: row.get(0)?, password_hash: row.get(1)?, created_at: row.get(2)? })
                })
                .optional()?;
            Ok(user)
        })
        .await
    }

    async fn list_users(&self, prefix: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        let after = after.map(str::to_owned);
        let (low, high) = crate::prefix_range(prefix);
        self.read(move |worker| {
            let mut statement = worker.conn.prepare_cached(
                "SELECT name FROM users WHERE (?1 IS NULL OR name > ?1) AND name >= ?2 AND name < ?3 \
                 ORDER BY name LIMIT ?4",
            )?;
            let names = statement
                .query_map(params![after, low, high, i64::from(limit)], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>();
            Ok(names?)
        })
        .await
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |worker| match insert_session(&worker.conn, &session) {
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let token_hash = token_hash.to_owned();
        self.read(move |worker| {
            let mut statement = worker.conn.prepare_cached(
                "SELECT token_hash, user, created_at, expires_at FROM sessions WHERE token_hash = ?1",
            )?;
            let session = statement
                .query_row([token_hash], |row| {
                    Ok(SessionRecord {
                        token_hash: row.get(0)?,
                        user: row.get(1)?,
                        created_at: row.get(2)?,
                        expires_at: row.get(3)?,
                    })
                })
                .optional()?;
            Ok(session)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_owned();
        self.write(move |worker| {
            match worker
                .conn
                .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")
                .and_then(|mut s| s.execute([token_hash]))
            {
                Ok(_) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn create_room(&self, room: &str, creator: &str, now: Millis) -> StoreResult<bool> {
        let (room, creator) = (room.to_owned(), creator.to_owned());
        self.write(move |worker| {
            let inserted = worker
                .conn
                .prepare_cached(
                    "INSERT INTO rooms (name, created_by, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![room, creator, now]));
            match inserted {
                Ok(inserted) => Ok(inserted > 0),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        let room = room.to_owned();
        self.read(move |worker| {
            let mut statement = worker.conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ?1)")?;
            Ok(statement.query_row([room], |row| row.get(0))?)
        })
        .await
    }

    async fn list_rooms(&self, viewer: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomSummary>> {
        let (viewer, after) = (viewer.to_owned(), after.map(str::to_owned));
        self.read(move |worker| {
            Ok(read_consistent(&worker.conn, |conn| rooms_page(conn, &viewer, after.as_deref(), limit))?)
        })
        .await
    }

    async fn add_member(&self, room: &str, user: &str, now: Millis) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |worker| {
            let inserted = worker
                .conn
                .prepare_cached(
                    "INSERT INTO room_members (room, user, joined_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (room, user) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(params![room, user, now]));
            match inserted {
                Ok(inserted) => Ok(inserted > 0),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn remove_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |worker| {
            let removed = worker
                .conn
                .prepare_cached("DELETE FROM room_members WHERE room = ?1 AND user = ?2")
                .and_then(|mut statement| statement.execute(params![room, user]));
            match removed {
                Ok(removed) => Ok(removed > 0),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn members(&self, room: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<String>> {
        let (room, after) = (room.to_owned(), after.map(str::to_owned));
        self.read(move |worker| {
            Ok(read_consistent(&worker.conn, |conn| members_page(conn, &room, after.as_deref(), limit))?)
        })
        .await
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let user = user.to_owned();
        self.read(move |worker| Ok(rooms_of(&worker.conn, &user)?)).await
    }

    async fn join_rooms(&self, requests: &[JoinRequest], history: u32, now: Millis) -> StoreResult<JoinedBatch> {
        let requests = requests.to_vec();
        self.write(move |worker| Ok(joins::join_batch(worker, &requests, history, now)?)).await
    }

    async fn open_session(
        &self,
        user: &str,
        create_user: bool,
        session: Option<&SessionRecord>,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        let (user, session) = (user.to_owned(), session.cloned());
        self.write(move |worker| {
            let conn = &worker.conn;
            let opened = (|| {
                if create_user {
                    insert_user(conn, &user, None, now)?;
                }
                if let Some(session) = &session {
                    insert_session(conn, session)?;
                }
                rooms_of(conn, &user)
            })();
            match opened {
                Ok(rooms) => Ok(rooms),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn append(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<AppendOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |worker| append_batch(worker, &batch)).await
    }

    fn inline_append(&self) -> Option<&dyn InlineAppend> {
        Some(self)
    }

    async fn messages_after(&self, conv: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let conv = conv.to_owned();
        self.read(move |worker| Ok(messages_after(&worker.conn, &conv, after, limit)?)).await
    }

    async fn messages_before(&self, conv: &str, before: Option<u64>, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let conv = conv.to_owned();
        self.read(move |worker| {
            let mut statement = worker.conn.prepare_cached(&format!(
                "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq < ?2 \
                 ORDER BY seq DESC LIMIT ?3) ORDER BY seq"
            ))?;
            let messages = statement
                .query_map(params![conv, before.map_or(i64::MAX, to_sql), i64::from(limit)], message_from)?
                .collect::<rusqlite::Result<Vec<_>>>();
            Ok(messages?)
        })
        .await
    }

    async fn last_messages(&self, convs: &[String]) -> StoreResult<Vec<StoredMessage>> {
        let convs = convs.to_vec();
        self.read(move |worker| {
            // In-process point reads by primary key: one per conversation costs microseconds.
            let mut statement = worker.conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE conv = ?1 ORDER BY seq DESC LIMIT 1"
            ))?;
            let mut messages = Vec::with_capacity(convs.len());
            for conv in &convs {
                messages.extend(statement.query_row([conv], message_from).optional()?);
            }
            Ok(messages)
        })
        .await
    }

    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>> {
        let user = user.to_owned();
        self.read(move |worker| Ok(conversations_of(&worker.conn, &user)?)).await
    }

    async fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        let (user, after) = (user.to_owned(), after.map(str::to_owned));
        self.read(move |worker| {
            Ok(read_consistent(&worker.conn, |conn| conversations_page(conn, &user, after.as_deref(), limit))?)
        })
        .await
    }

    async fn sync_read(&self, user: &str, cursors: &HashMap<String, u64>, limit: u32) -> StoreResult<Vec<SyncRead>> {
        let (user, cursors) = (user.to_owned(), cursors.clone());
        self.read(move |worker| {
            // One read transaction, so the conversations and their messages agree (in memory the
            // writer runs this inside its own transaction already).
            let conn = &worker.conn;
            let tx = if conn.is_autocommit() { Some(conn.unchecked_transaction()?) } else { None };
            let mut reads = Vec::new();
            for conversation in conversations_of(conn, &user)? {
                let from = sync_start(&conversation, &cursors);
                let messages = if conversation.last_seq > from {
                    messages_after(conn, &conversation.conv, from, limit)?
                } else {
                    Vec::new()
                };
                reads.push(SyncRead { conversation, from, messages });
            }
            if let Some(tx) = tx {
                tx.finish()?;
            }
            Ok(reads)
        })
        .await
    }

    async fn last_seq(&self, conv: &str) -> StoreResult<u64> {
        let conv = conv.to_owned();
        self.read(move |worker| {
            let mut statement =
                worker.conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?1")?;
            Ok(statement.query_row([conv], |row| row.get::<_, i64>(0))? as u64)
        })
        .await
    }

    async fn set_read(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        self.move_marker(
            user,
            conv,
            seq,
            "INSERT INTO read_markers (user, conv, seq, delivered_seq) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT (user, conv) DO UPDATE SET seq = MAX(seq, excluded.seq), \
             delivered_seq = MAX(delivered_seq, excluded.seq) RETURNING seq",
        )
        .await
    }

    async fn set_delivered(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        self.move_marker(
            user,
            conv,
            seq,
            "INSERT INTO read_markers (user, conv, seq, delivered_seq) VALUES (?1, ?2, 0, ?3) \
             ON CONFLICT (user, conv) DO UPDATE SET delivered_seq = MAX(delivered_seq, excluded.delivered_seq) \
             RETURNING delivered_seq",
        )
        .await
    }

    async fn close(&self) {
        let checkpoint = self.write(|worker| {
            worker.checkpoint_requested = true;
            Ok(())
        });
        if let Err(error) = checkpoint.await {
            tracing::warn!(%error, "cannot close the store cleanly");
        }
        self.writer.write().take();
        self.reader.write().take();
        // The checkpointer runs until the writer's link to it goes; the store holds the writer's
        // connection too, so the link is dropped here.
        self.worker.lock().checkpointer = None;
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
