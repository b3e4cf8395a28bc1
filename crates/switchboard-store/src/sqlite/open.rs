//! Opening the store: the database file (or memory), its connections and threads, the schema.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OpenFlags};

use super::threads::*;
use super::wal_frames::WalFrames;
use super::{SqliteOptions, SqliteStore};
use crate::StoreError;

/// The schema, one entry per version; `PRAGMA user_version` holds how many are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_delivered.sql"),
    include_str!("../../migrations/sqlite/0003_conversation_heads.sql"),
    include_str!("../../migrations/sqlite/0004_message_changes.sql"),
    include_str!("../../migrations/sqlite/0005_private_rooms.sql"),
];

/// Two cores' worth of concurrent reads (history, listings, login syncs).
const READER_THREADS: usize = 2;
/// The writer's page cache (KiB; SQLite's default is 2 MB). Every conversation that is written to
/// keeps its newest leaf of `messages` hot: with 1000 conversations at 10k messages/s the default
/// missed on 1.3 page reads per message, 16 MB on none (`scripts/pm-probe.sh`).
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// How long a statement waits on a lock held by another process (a backup, the sqlite3 shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(setup)?;
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
        let checkpointer = spawn_checkpointer(checkpointer_conn, WalFrames::watch(&writer), &mut threads)?;
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
        let markers = worker.lock().own_markers.clone();
        Ok(SqliteStore {
            writer: RwLock::new(Some(writer_queue)),
            markers,
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
        let markers = worker.lock().own_markers.clone();
        Ok(SqliteStore {
            writer: RwLock::new(Some(queue.clone())),
            markers,
            worker,
            reader: RwLock::new(Some(queue)),
            threads: Mutex::new(threads),
        })
    }
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
