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
//! checkpoint of its own once the WAL is four times that long: the WAL file stays bounded. The
//! WAL's length is SQLite's own count of its frames (`wal_frames`), and that upkeep runs on the
//! writer thread even after a commit made on a sender's thread.
//!
//! Every connection goes through SQLite's `unix-excl` VFS: the first one locks the database file
//! for this process, and the WAL's index then lives in this process's memory instead of a shared
//! `-shm` file, so taking and releasing its locks costs no `fcntl` (three system calls per commit
//! before, a quarter of a private message's at 1k/s). No other process can open the database while
//! the server runs, which the data folder's lock forbids anyway.

mod access;
mod activity;
mod changes;
mod joins;
mod open;
mod own_markers;
mod queries;
mod threads;
mod wal_frames;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::{
    ActivityCursor, AppendOutcome, ConversationRecord, InlineAppend, JoinRequest, JoinedBatch, Millis, NewMessage,
    Page, RoomSummary, SessionRecord, Store, StoreError, StoreResult, StoredMessage, SyncRead, UserRecord,
};
use own_markers::OwnMarkers;
use queries::*;
use threads::*;

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
    /// Senders' read markers not written yet, which every read of the markers takes into account.
    markers: Arc<OwnMarkers>,
}

impl SqliteStore {
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
            let stored = statement.query_row(params![user, conv, to_sql(seq)], |row| row.get::<_, i64>(0))? as u64;
            Ok(stored.max(worker.own_markers.pending_for(&user, &conv)))
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
        let outcome = worker.transaction(|worker| append_batch(worker, &batch));
        if worker.upkeep_due() {
            if let Some(queue) = open.as_ref() {
                let _ = queue.send(Box::new(Upkeep));
            }
        }
        Ok(outcome)
    }
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

    async fn is_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.read(move |worker| {
            let mut statement = worker
                .conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM room_members WHERE room = ?1 AND user = ?2)")?;
            Ok(statement.query_row(params![room, user], |row| row.get(0))?)
        })
        .await
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
                "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = ?1 AND m.seq < ?2 \
                 ORDER BY m.seq DESC LIMIT ?3) ORDER BY seq"
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
            // The newest message, not a change to an earlier one.
            let mut statement = worker.conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} \
                 WHERE m.conv = ?1 AND m.kind = 0 ORDER BY m.seq DESC LIMIT 1"
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
        let (user, markers) = (user.to_owned(), self.markers.clone());
        self.read(move |worker| {
            Ok(markers.consistent(|| {
                let mut conversations = conversations_of(&worker.conn, &user)?;
                markers.raise(&user, &mut conversations, |conv, after| unread_after(&worker.conn, conv, after))?;
                Ok::<_, rusqlite::Error>(conversations)
            })?)
        })
        .await
    }

    async fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        let (user, after, markers) = (user.to_owned(), after.map(str::to_owned), self.markers.clone());
        self.read(move |worker| {
            Ok(markers.consistent(|| {
                let mut page =
                    read_consistent(&worker.conn, |conn| conversations_page(conn, &user, after.as_deref(), limit))?;
                markers.raise(&user, &mut page.items, |conv, after| unread_after(&worker.conn, conv, after))?;
                Ok::<_, rusqlite::Error>(page)
            })?)
        })
        .await
    }

    async fn sync_read(&self, user: &str, cursors: &HashMap<String, u64>, limit: u32) -> StoreResult<Vec<SyncRead>> {
        let (user, cursors, markers) = (user.to_owned(), cursors.clone(), self.markers.clone());
        self.read(move |worker| {
            let raise = |conversations: &mut [ConversationRecord]| {
                markers.raise(&user, conversations, |conv, after| unread_after(&worker.conn, conv, after))
            };
            Ok(markers.consistent(|| sync_reads(&worker.conn, &user, &cursors, limit, raise))?)
        })
        .await
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        let conv = conv.to_owned();
        self.read(move |worker| {
            let mut statement = worker.conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGES} WHERE m.conv = ?1 AND m.seq = ?2"
            ))?;
            Ok(statement.query_row(params![conv, to_sql(seq)], message_from).optional()?)
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
            worker.write_own_markers()?;
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

    async fn conversations_by_activity(
        &self,
        user: &str,
        after: Option<&ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        let (user, after, markers) = (user.to_owned(), after.cloned(), self.markers.clone());
        self.read(move |worker| {
            Ok(markers.consistent(|| {
                let page = |conn: &Connection| activity::conversations_by_activity(conn, &user, after.as_ref(), limit);
                let mut page = read_consistent(&worker.conn, page)?;
                markers.raise(&user, &mut page.items, |conv, after| unread_after(&worker.conn, conv, after))?;
                Ok::<_, rusqlite::Error>(page)
            })?)
        })
        .await
    }
}
