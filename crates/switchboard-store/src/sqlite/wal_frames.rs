//! How many frames the WAL holds, as SQLite counts them at each commit.
//!
//! The WAL file's length cannot say it: the file is kept at its high-water mark when the WAL
//! starts over (`journal_size_limit`, so that it is rewritten in place rather than regrown), and
//! a checkpoint asked only for the count would copy frames as well. Reading the file's length
//! made the writer checkpoint after every commit once the file had once reached the hard limit.
//! rusqlite has no safe binding for `sqlite3_wal_hook`, hence the one `unsafe` call here.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{ffi, Connection};

/// The frames in the WAL after the last commit of the connection it watches.
pub(super) struct WalFrames(Arc<AtomicU64>);

impl WalFrames {
    /// Counts `conn`'s commits from now on. Replaces SQLite's own auto-checkpoint hook, which the
    /// store turns off anyway. The count lives as long as any `WalFrames` clone or the hook: the
    /// hook holds one reference of its own, never given back (a few bytes per store opened).
    pub(super) fn watch(conn: &Connection) -> WalFrames {
        let frames = Arc::new(AtomicU64::new(0));
        let context = Arc::into_raw(frames.clone()) as *mut c_void;
        // SAFETY: `conn.handle()` is a live connection for the duration of the call, and
        // `context` points to an `AtomicU64` kept alive by the reference the hook owns (leaked by
        // `Arc::into_raw`), so the hook never sees a dangling pointer whatever the drop order.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), Some(on_commit), context);
        }
        WalFrames(frames)
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Called by SQLite on the committing thread, after each commit to a WAL database.
unsafe extern "C" fn on_commit(
    context: *mut c_void,
    _db: *mut ffi::sqlite3,
    _name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `context` is the pointer `watch` registered, whose reference is never given back.
    let count = unsafe { &*(context as *const AtomicU64) };
    count.store(u64::try_from(frames).unwrap_or(0), Ordering::Relaxed);
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count follows the WAL, not its file: it goes back down when the WAL starts over, while
    /// the file keeps its length.
    #[test]
    fn counts_the_frames_of_the_wal_since_it_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "journal_size_limit", -1).unwrap();
        let frames = WalFrames::watch(&conn);
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        for _ in 0..50 {
            conn.execute("INSERT INTO t VALUES (randomblob(3000))", []).unwrap();
        }
        let long = frames.get();
        assert!(long >= 50, "{long} frames after 50 commits of a page each");
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())).unwrap();
        let file_length = std::fs::metadata(dir.path().join("wal.db-wal")).unwrap().len();
        conn.execute("INSERT INTO t VALUES (randomblob(3000))", []).unwrap();
        assert!(frames.get() < 5, "{} frames after the WAL started over", frames.get());
        assert_eq!(std::fs::metadata(dir.path().join("wal.db-wal")).unwrap().len(), file_length);
    }
}
