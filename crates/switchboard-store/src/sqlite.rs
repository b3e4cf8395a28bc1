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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::oneshot;

use crate::{
    sync_start, AppendOutcome, ConversationRecord, Millis, NewMessage, RoomSummary, SessionRecord, Store, StoreError,
    StoreResult, StoredMessage, SyncRead, UserRecord,
};

/// The schema, one entry per version; `PRAGMA user_version` holds how many are applied.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/sqlite/0001_initial.sql")];

/// Two cores' worth of concurrent reads (history, listings, login syncs).
const READER_THREADS: usize = 2;
/// How long a statement waits on a lock held by another process (a backup, the sqlite3 shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the memory of the head cache; past it the cache starts over, as heads are cheap to
/// reread from the primary key.
const MAX_CACHED_HEADS: usize = 100_000;
/// 16 MB of 4 KiB pages: once the WAL is this long and checkpointed, it starts over.
const WAL_RESTART_FRAMES: u64 = 4096;
/// The WAL length (bytes) at which the writer stops to checkpoint it itself, waiting for the
/// checkpointer and readers if need be.
const WAL_HARD_LIMIT_BYTES: u64 = 2 * WAL_RESTART_FRAMES * 4096;
/// How often the checkpointer copies the WAL into the database while writes go on: rarer
/// checkpoints write a hot page once for many commits.
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(200);
/// Bounds how long the first caller of a group commit waits for the ones behind it.
const MAX_CALLS_PER_COMMIT: usize = 512;

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

/// What a call runs with: the thread's connection and, on the writer, the head cache.
struct Worker {
    conn: Connection,
    /// Heads of committed appends, so an append does not look up each conversation's last seq.
    /// Only the writer thread touches it.
    heads: HashMap<String, ConvHead>,
    /// Conversations whose head moved in the open transaction: forgotten if the commit fails.
    moved_in_transaction: Vec<String>,
    /// Set by `close`: fold the WAL into the database file after this commit.
    checkpoint_requested: bool,
    /// On the writer of a database file: tells the checkpointer there are new frames.
    checkpointer: Option<CheckpointerLink>,
}

impl Worker {
    fn new(conn: Connection) -> Self {
        Worker {
            conn,
            heads: HashMap::new(),
            moved_in_transaction: Vec::new(),
            checkpoint_requested: false,
            checkpointer: None,
        }
    }
}

/// The writer's side of the checkpointer thread.
struct CheckpointerLink {
    /// One pending nudge is enough: a checkpoint takes every frame committed before it starts.
    nudge: mpsc::SyncSender<()>,
    /// Set when the checkpointer has copied a long WAL: the writer copies what was committed since
    /// (a few frames), which lets its next transaction start the WAL over.
    restart_due: Arc<AtomicBool>,
    /// The WAL file, whose length the writer watches: with `journal_size_limit` set, SQLite cuts it
    /// back when it starts over, so its length is the WAL's since then.
    wal_path: PathBuf,
}

/// A call queued for a store thread.
trait Call: Send {
    /// Runs the call; its answer waits for the commit.
    fn run(self: Box<Self>, worker: &mut Worker) -> Box<dyn Answer>;
    /// The call could not run at all.
    fn abandon(self: Box<Self>, error: StoreError);
}

/// A call's result, held until its transaction's fate is known.
trait Answer: Send {
    /// Whether the call failed, so its writes must be undone.
    fn failed(&self) -> bool;
    fn send(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// The answer of a call that was abandoned already.
struct Abandoned;

impl Answer for Abandoned {
    fn failed(&self) -> bool {
        true
    }

    fn send(self: Box<Self>, _commit: Result<(), &StoreError>) {}
}

struct Pending<F, R> {
    work: F,
    reply: oneshot::Sender<StoreResult<R>>,
}

struct Ran<R> {
    result: StoreResult<R>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Call for Pending<F, R>
where
    F: FnOnce(&mut Worker) -> StoreResult<R> + Send,
    R: Send + 'static,
{
    fn run(self: Box<Self>, worker: &mut Worker) -> Box<dyn Answer> {
        let result = (self.work)(worker);
        Box::new(Ran { result, reply: self.reply })
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<R: Send + 'static> Answer for Ran<R> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn send(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match (self.result, commit) {
            (Ok(_), Err(error)) => Err(error.clone()),
            (result, _) => result,
        };
        let _ = self.reply.send(result);
    }
}

type Queue = mpsc::Sender<Box<dyn Call>>;

pub struct SqliteStore {
    /// `None` once closed.
    writer: RwLock<Option<Queue>>,
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
        let mut writer = Connection::open(path).map_err(setup)?;
        configure(&writer, options).map_err(setup)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(setup)?;
        // The checkpointer thread does it, off the commit path; the writer bounds the WAL itself.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(setup)?;
        writer.pragma_update(None, "journal_size_limit", WAL_RESTART_FRAMES * 4096).map_err(setup)?;
        migrate(&mut writer)?;
        let mut threads = Vec::new();
        let checkpointer_conn = Connection::open(path).map_err(setup)?;
        configure(&checkpointer_conn, options).map_err(setup)?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let checkpointer = spawn_checkpointer(checkpointer_conn, PathBuf::from(wal_path), &mut threads)?;
        let writer_queue = spawn_writer(writer, Some(checkpointer), &mut threads)?;
        // Opened after the writer switched the file to WAL, which is persistent: readers must not
        // try to change the journal mode themselves, as that needs an exclusive lock.
        let (reader_queue, calls) = mpsc::channel::<Box<dyn Call>>();
        let calls = Arc::new(Mutex::new(calls));
        for index in 0..READER_THREADS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags).map_err(setup)?;
            configure(&conn, options).map_err(setup)?;
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
        let queue = spawn_writer(conn, None, &mut threads)?;
        Ok(SqliteStore {
            writer: RwLock::new(Some(queue.clone())),
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

    /// Runs `work` on a reader, which sees what is committed.
    async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        F: FnOnce(&mut Worker) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        Self::call(&self.reader, work).await
    }
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

fn spawn_writer(
    conn: Connection,
    checkpointer: Option<CheckpointerLink>,
    threads: &mut Vec<thread::JoinHandle<()>>,
) -> Result<Queue, StoreError> {
    let (queue, calls) = mpsc::channel::<Box<dyn Call>>();
    let mut worker = Worker::new(conn);
    worker.checkpointer = checkpointer;
    let handle = thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run_writer(worker, calls))
        .map_err(|error| StoreError::Setup(format!("cannot start a store thread: {error}")))?;
    threads.push(handle);
    Ok(queue)
}

fn run_writer(mut worker: Worker, calls: mpsc::Receiver<Box<dyn Call>>) {
    let mut batch: Vec<Box<dyn Call>> = Vec::with_capacity(MAX_CALLS_PER_COMMIT);
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(MAX_CALLS_PER_COMMIT);
    while let Ok(first) = calls.recv() {
        batch.push(first);
        while batch.len() < MAX_CALLS_PER_COMMIT {
            let Ok(next) = calls.try_recv() else { break };
            batch.push(next);
        }
        if let Err(error) = execute(&worker.conn, "BEGIN IMMEDIATE") {
            let error = StoreError::from(error);
            for call in batch.drain(..) {
                call.abandon(error.clone());
            }
            continue;
        }
        let mut failed_alone = false;
        if batch.len() == 1 {
            // Alone in its transaction, a call needs no savepoint: a failure rolls it all back.
            let answer = batch.pop().expect("one call").run(&mut worker);
            failed_alone = answer.failed();
            answers.push(answer);
        } else {
            for call in batch.drain(..) {
                answers.push(run_in_savepoint(&mut worker, call));
            }
        }
        let commit = if failed_alone {
            execute(&worker.conn, "ROLLBACK").map_err(StoreError::from)
        } else {
            execute(&worker.conn, "COMMIT").map_err(StoreError::from)
        };
        if let Err(error) = &commit {
            tracing::warn!(%error, "sqlite commit failed");
            let _ = worker.conn.execute_batch("ROLLBACK");
            for conv in worker.moved_in_transaction.drain(..) {
                worker.heads.remove(&conv);
            }
        }
        worker.moved_in_transaction.clear();
        if std::mem::take(&mut worker.checkpoint_requested) {
            // Folds the WAL back into the database file, so a copy of that file alone is complete.
            if let Err(error) = worker.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::warn!(%error, "final wal checkpoint failed");
            }
        }
        for answer in answers.drain(..) {
            answer.send(commit.as_ref().map(|_| ()));
        }
        // After the answers, so that no caller waits for it.
        if let Some(checkpointer) = &worker.checkpointer {
            let wal_bytes = std::fs::metadata(&checkpointer.wal_path).map_or(0, |meta| meta.len());
            // RESTART waits (up to the busy timeout) for the checkpointer and for readers, so that
            // the next transaction starts the WAL over.
            let mode = if wal_bytes >= WAL_HARD_LIMIT_BYTES {
                Some("RESTART")
            } else if checkpointer.restart_due.swap(false, Ordering::Relaxed) {
                Some("PASSIVE")
            } else {
                None
            };
            if let Some(mode) = mode {
                let pragma = format!("PRAGMA wal_checkpoint({mode})");
                if let Err(error) = worker.conn.query_row(&pragma, [], |_| Ok(())) {
                    tracing::warn!(%error, mode, "wal checkpoint failed");
                }
            }
            let _ = checkpointer.nudge.try_send(());
        }
    }
}

fn spawn_checkpointer(
    conn: Connection,
    wal_path: PathBuf,
    threads: &mut Vec<thread::JoinHandle<()>>,
) -> Result<CheckpointerLink, StoreError> {
    let (nudge, nudges) = mpsc::sync_channel(1);
    let restart_due = Arc::new(AtomicBool::new(false));
    let link = CheckpointerLink { nudge, restart_due: restart_due.clone(), wal_path };
    let handle = thread::Builder::new()
        .name("sqlite-checkpointer".into())
        .spawn(move || run_checkpointer(conn, &nudges, &restart_due))
        .map_err(|error| StoreError::Setup(format!("cannot start a store thread: {error}")))?;
    threads.push(handle);
    Ok(link)
}

/// Copies committed frames into the database file while nudged, at most once per period; stops
/// when the writer goes.
fn run_checkpointer(conn: Connection, nudges: &mpsc::Receiver<()>, restart_due: &AtomicBool) {
    let mut nudged = nudges.recv().is_ok();
    while nudged {
        // (busy, frames in the WAL, frames copied); busy: another checkpoint or a writer's lock.
        let outcome = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)));
        match outcome {
            Ok((0, frames)) if frames as u64 >= WAL_RESTART_FRAMES => restart_due.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "wal checkpoint failed"),
        }
        // Nudges that come meanwhile count as one, taken once the period is over.
        let period_end = Instant::now() + CHECKPOINT_PERIOD;
        nudged = false;
        loop {
            let left = period_end.saturating_duration_since(Instant::now());
            match nudges.recv_timeout(left) {
                Ok(()) => nudged = true,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if !nudged {
            nudged = nudges.recv().is_ok();
        }
    }
}

/// Runs a statement without parameters or rows, prepared once per connection.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs one call so that its failure undoes only its own writes.
fn run_in_savepoint(worker: &mut Worker, call: Box<dyn Call>) -> Box<dyn Answer> {
    if let Err(error) = execute(&worker.conn, "SAVEPOINT call") {
        call.abandon(error.into());
        return Box::new(Abandoned);
    }
    let answer = call.run(worker);
    if answer.failed() {
        let _ = execute(&worker.conn, "ROLLBACK TO call");
    }
    let _ = execute(&worker.conn, "RELEASE call");
    answer
}

fn run_reader(conn: Connection, calls: &Mutex<mpsc::Receiver<Box<dyn Call>>>) {
    let mut worker = Worker::new(conn);
    loop {
        let next = calls.lock().recv();
        let Ok(call) = next else { break };
        call.run(&mut worker).send(Ok(()));
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull | OutOfMemory
                ) =>
            {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

/// SQLite integers are signed; seqs never get near the limit, bounds given by callers might.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The two users of a `dm:<a>:<b>` conversation; user names cannot contain ':'.
fn dm_participants(conv: &str) -> Option<(&str, &str)> {
    conv.strip_prefix("dm:")?.split_once(':')
}

const MESSAGE_COLUMNS: &str = "conv, seq, id, sender, recipient, room, text, ts, idem_key";

fn message_from(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        conv: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        id: row.get(2)?,
        sender: row.get(3)?,
        recipient: row.get(4)?,
        room: row.get(5)?,
        text: row.get(6)?,
        ts: row.get(7)?,
        key: row.get(8)?,
    })
}

fn load_head(conn: &Connection, conv: &str) -> rusqlite::Result<ConvHead> {
    let mut statement =
        conn.prepare_cached("SELECT seq, ts FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT 1")?;
    let newest = statement
        .query_row([conv], |row| Ok(ConvHead { last_seq: row.get::<_, i64>(0)? as u64, last_ts: row.get(1)? }))
        .optional()?;
    Ok(newest.unwrap_or_default())
}

fn rooms_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached("SELECT room FROM room_members WHERE user = ?1 ORDER BY room")?;
    let rooms = statement.query_map([user], |row| row.get(0))?.collect();
    rooms
}

fn insert_session(conn: &Connection, session: &SessionRecord) -> rusqlite::Result<usize> {
    conn.prepare_cached("INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![session.token_hash, session.user, session.created_at, session.expires_at])
}

fn insert_user(conn: &Connection, name: &str, password_hash: Option<&str>, now: Millis) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, password_hash, now])
}

/// Writes the batch and returns its outcomes and the heads it moved; on `Err` the caller rolls
/// the batch back.
fn write_batch(
    worker: &Worker,
    batch: &[NewMessage],
) -> rusqlite::Result<(Vec<AppendOutcome>, HashMap<String, ConvHead>)> {
    let conn = &worker.conn;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut moved: HashMap<String, ConvHead> = HashMap::new();
    let mut by_key = conn.prepare_cached(
        "SELECT conv, seq, id, sender, recipient, room, text, ts, idem_key FROM messages WHERE sender = ?1 AND idem_key = ?2",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (conv, seq, id, sender, recipient, room, text, ts, idem_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for message in batch {
        if let Some(key) = &message.idempotency_key {
            // Also sees messages stored earlier in this batch: they are in the transaction.
            let original = by_key.query_row(params![message.sender, key], message_from).optional()?;
            if let Some(original) = original {
                outcomes.push(AppendOutcome::Duplicate(original));
                continue;
            }
        }
        let head = match moved.get(message.conv.as_str()).or_else(|| worker.heads.get(message.conv.as_str())) {
            Some(head) => *head,
            None => load_head(conn, &message.conv)?,
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
            key: message.idempotency_key.clone(),
        };
        insert.execute(params![
            stored.conv,
            to_sql(stored.seq),
            stored.id,
            stored.sender,
            stored.recipient,
            stored.room,
            stored.text,
            stored.ts,
            message.idempotency_key,
        ])?;
        moved.insert(message.conv.clone(), ConvHead { last_seq: stored.seq, last_ts: stored.ts });
        outcomes.push(AppendOutcome::Stored(stored));
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO conversations (conv, user_a, user_b, last_seq, last_ts) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq, last_ts = excluded.last_ts",
    )?;
    for (conv, head) in &moved {
        let (user_a, user_b) = dm_participants(conv).unzip();
        upsert.execute(params![conv, user_a, user_b, to_sql(head.last_seq), head.last_ts])?;
    }
    Ok((outcomes, moved))
}

fn messages_after(conn: &Connection, conv: &str, after: u64, limit: u32) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let messages = statement.query_map(params![conv, to_sql(after), i64::from(limit)], message_from)?.collect();
    messages
}

fn conversations_of(conn: &Connection, user: &str) -> rusqlite::Result<Vec<ConversationRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT c.conv AS conv, c.last_seq, c.last_ts, COALESCE(r.seq, 0) \
         FROM conversations c \
         LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = c.conv \
         WHERE c.user_a = ?1 OR c.user_b = ?1 \
         UNION ALL \
         SELECT 'room:' || m.room, COALESCE(c.last_seq, 0), COALESCE(c.last_ts, 0), COALESCE(r.seq, 0) \
         FROM room_members m \
         LEFT JOIN conversations c ON c.conv = 'room:' || m.room \
         LEFT JOIN read_markers r ON r.user = ?1 AND r.conv = 'room:' || m.room \
         WHERE m.user = ?1 \
         ORDER BY conv",
    )?;
    let conversations = statement
        .query_map([user], |row| {
            Ok(ConversationRecord {
                conv: row.get(0)?,
                last_seq: row.get::<_, i64>(1)? as u64,
                last_ts: row.get(2)?,
                read_seq: row.get::<_, i64>(3)? as u64,
            })
        })?
        .collect();
    conversations
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

    async fn list_users(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        let after = after.map(str::to_owned);
        self.read(move |worker| {
            let mut statement = worker
                .conn
                .prepare_cached("SELECT name FROM users WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2")?;
            let names = statement
                .query_map(params![after, i64::from(limit)], |row| row.get(0))?
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

    async fn list_rooms(&self) -> StoreResult<Vec<RoomSummary>> {
        self.read(|worker| {
            let mut statement = worker.conn.prepare_cached(
                "SELECT r.name, (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name) FROM rooms r ORDER BY r.name",
            )?;
            let rooms = statement
                .query_map([], |row| Ok(RoomSummary { name: row.get(0)?, members: row.get::<_, i64>(1)? as u64 }))?
                .collect::<rusqlite::Result<Vec<_>>>();
            Ok(rooms?)
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

    async fn members(&self, room: &str) -> StoreResult<Vec<String>> {
        let room = room.to_owned();
        self.read(move |worker| {
            let mut statement =
                worker.conn.prepare_cached("SELECT user FROM room_members WHERE room = ?1 ORDER BY user")?;
            let users = statement.query_map([room], |row| row.get(0))?.collect::<rusqlite::Result<Vec<_>>>();
            Ok(users?)
        })
        .await
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let user = user.to_owned();
        self.read(move |worker| Ok(rooms_of(&worker.conn, &user)?)).await
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
        self.write(move |worker| match write_batch(worker, &batch) {
            Ok((outcomes, moved)) => {
                if worker.heads.len() + moved.len() > MAX_CACHED_HEADS {
                    worker.heads.clear();
                }
                for (conv, head) in moved {
                    worker.moved_in_transaction.push(conv.clone());
                    worker.heads.insert(conv, head);
                }
                Ok(outcomes)
            }
            Err(error) => {
                // A failure may come from a stale head (say, another process wrote): reread the
                // heads of this batch next time.
                for message in &batch {
                    worker.heads.remove(&message.conv);
                }
                Err(error.into())
            }
        })
        .await
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

    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>> {
        let user = user.to_owned();
        self.read(move |worker| Ok(conversations_of(&worker.conn, &user)?)).await
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
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.write(move |worker| {
            let stored = worker
                .conn
                .prepare_cached(
                    "INSERT INTO read_markers (user, conv, seq) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user, conv) DO UPDATE SET seq = MAX(seq, excluded.seq) RETURNING seq",
                )
                .and_then(|mut statement| {
                    statement.query_row(params![user, conv, to_sql(seq)], |row| row.get::<_, i64>(0))
                });
            match stored {
                Ok(stored) => Ok(stored as u64),
                Err(error) => Err(error.into()),
            }
        })
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
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
