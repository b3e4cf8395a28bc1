//! The store's threads: one writer that group-commits every queued call, readers, and the
//! checkpointer; and the calls that travel to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::own_markers::{write_moves, FlushClock, Move, OwnMarkers, FLUSH_INTERVAL};
use super::queries::ConvHead;
use crate::{StoreError, StoreResult};

/// How often the final checkpoint is tried while a checkpointer pass holds it off (10 ms apart).
const FINAL_CHECKPOINT_ATTEMPTS: u32 = 500;
/// 16 MB of 4 KiB pages: once the WAL is this long and checkpointed, it starts over.
pub(super) const WAL_RESTART_FRAMES: u64 = 4096;
/// The WAL length (bytes) at which the writer stops to checkpoint it itself, waiting for the
/// checkpointer and readers if need be.
pub(super) const WAL_HARD_LIMIT_BYTES: u64 = 2 * WAL_RESTART_FRAMES * 4096;
/// What SQLite leaves of the WAL file when it starts over: kept at the length it reaches
/// between restarts (frames are 24 bytes longer than pages, and a batch may overshoot the hard
/// limit), so the file is rewritten in place rather than cut and extended again.
pub(super) const WAL_FILE_LIMIT_BYTES: u64 = WAL_HARD_LIMIT_BYTES + WAL_HARD_LIMIT_BYTES / 4;
/// How often the checkpointer copies the WAL into the database while writes go on: rarer
/// checkpoints write a hot page once for many commits.
pub(super) const CHECKPOINT_PERIOD: Duration = Duration::from_millis(200);
/// How often the writer reads the WAL file's length to keep it bounded.
const WAL_CHECK_INTERVAL: Duration = Duration::from_millis(5);
/// Bounds how long the first caller of a group commit waits for the ones behind it.
pub(super) const MAX_CALLS_PER_COMMIT: usize = 512;

/// What a call runs with: the thread's connection and, on the writer, the head cache.
pub(super) struct Worker {
    pub(super) conn: Connection,
    /// Heads of committed appends, so an append does not look up each conversation's last seq.
    /// Only the writer thread touches it.
    pub(super) heads: HashMap<String, ConvHead>,
    /// Conversations whose head moved in the open transaction: forgotten if the commit fails.
    pub(super) moved_in_transaction: Vec<String>,
    /// Set by `close`: fold the WAL into the database file after this commit.
    pub(super) checkpoint_requested: bool,
    /// On the writer of a database file: tells the checkpointer there are new frames.
    pub(super) checkpointer: Option<CheckpointerLink>,
    /// Senders' read markers moved by the open transaction's messages: pending once it commits.
    pub(super) own_in_transaction: Vec<Move>,
    pub(super) own_markers: Arc<OwnMarkers>,
    flushed_at: FlushClock,
}

impl Worker {
    fn new(conn: Connection) -> Self {
        Worker {
            conn,
            heads: HashMap::new(),
            moved_in_transaction: Vec::new(),
            checkpoint_requested: false,
            checkpointer: None,
            own_in_transaction: Vec::new(),
            own_markers: Arc::default(),
            flushed_at: FlushClock::default(),
        }
    }
}

/// The writer's side of the checkpointer thread.
pub(super) struct CheckpointerLink {
    /// One pending nudge is enough: a checkpoint takes every frame committed before it starts.
    nudge: mpsc::SyncSender<()>,
    /// Set by the writer after a commit, cleared by the checkpointer when a pass starts.
    unchecked: Arc<AtomicBool>,
    /// Set when the checkpointer has copied a long WAL: the writer copies what was committed since
    /// (a few frames), which lets its next transaction start the WAL over.
    restart_due: Arc<AtomicBool>,
    /// The WAL file, whose length the writer watches: with `journal_size_limit` set, SQLite cuts it
    /// back when it starts over, so its length is the WAL's since then.
    wal_path: PathBuf,
    /// When the writer last read the WAL's length.
    wal_checked_at: Instant,
}

/// A call queued for a store thread.
pub(super) trait Call: Send {
    /// Runs the call; its answer waits for the commit.
    fn run(self: Box<Self>, worker: &mut Worker) -> Box<dyn Answer>;
    /// The call could not run at all.
    fn abandon(self: Box<Self>, error: StoreError);
}

/// A call's result, held until its transaction's fate is known.
pub(super) trait Answer: Send {
    /// Whether the call failed, so its writes must be undone.
    fn failed(&self) -> bool;
    fn send(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// The answer of a call that was abandoned already.
pub(super) struct Abandoned;

impl Answer for Abandoned {
    fn failed(&self) -> bool {
        true
    }

    fn send(self: Box<Self>, _commit: Result<(), &StoreError>) {}
}

pub(super) struct Pending<F, R> {
    pub(super) work: F,
    pub(super) reply: oneshot::Sender<StoreResult<R>>,
}

pub(super) struct Ran<R> {
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

pub(super) type Queue = mpsc::Sender<Box<dyn Call>>;

/// The writer's connection, shared by the writer thread and by callers that commit on their own
/// thread ([`crate::InlineAppend`]); whoever holds it runs one transaction at a time.
pub(super) type SharedWorker = Arc<Mutex<Worker>>;

pub(super) fn spawn_writer(
    conn: Connection,
    checkpointer: Option<CheckpointerLink>,
    threads: &mut Vec<thread::JoinHandle<()>>,
) -> Result<(Queue, SharedWorker), StoreError> {
    let (queue, calls) = mpsc::channel::<Box<dyn Call>>();
    let mut worker = Worker::new(conn);
    worker.checkpointer = checkpointer;
    let worker = Arc::new(Mutex::new(worker));
    let shared = worker.clone();
    let handle = thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run_writer(&shared, calls))
        .map_err(|error| StoreError::Setup(format!("cannot start a store thread: {error}")))?;
    threads.push(handle);
    Ok((queue, worker))
}

fn run_writer(worker: &Mutex<Worker>, calls: mpsc::Receiver<Box<dyn Call>>) {
    let mut batch: Vec<Box<dyn Call>> = Vec::with_capacity(MAX_CALLS_PER_COMMIT);
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(MAX_CALLS_PER_COMMIT);
    loop {
        // Idle, the writer still wakes to write senders' pending read markers in time.
        let first = match calls.recv_timeout(FLUSH_INTERVAL) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                worker.lock().flush_own_markers_if_due();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < MAX_CALLS_PER_COMMIT {
            let Ok(next) = calls.try_recv() else { break };
            batch.push(next);
        }
        let mut worker = worker.lock();
        let commit = commit_calls(&mut worker, &mut batch, &mut answers);
        for answer in answers.drain(..) {
            answer.send(commit.as_ref().map(|_| ()));
        }
        // After the answers, so that no caller waits for it.
        worker.after_commit();
    }
}

/// Runs the calls in one transaction; their answers wait in `answers` for the commit's outcome.
fn commit_calls(
    worker: &mut Worker,
    batch: &mut Vec<Box<dyn Call>>,
    answers: &mut Vec<Box<dyn Answer>>,
) -> Result<(), StoreError> {
    if let Err(error) = execute(&worker.conn, "BEGIN IMMEDIATE") {
        let error = StoreError::from(error);
        for call in batch.drain(..) {
            call.abandon(error.clone());
        }
        return Err(error);
    }
    let mut failed_alone = false;
    if batch.len() == 1 {
        // Alone in its transaction, a call needs no savepoint: a failure rolls it all back.
        let answer = batch.pop().expect("one call").run(worker);
        failed_alone = answer.failed();
        answers.push(answer);
    } else {
        for call in batch.drain(..) {
            answers.push(run_in_savepoint(worker, call));
        }
    }
    worker.finish_transaction(failed_alone)
}

impl Worker {
    /// Runs `work` in a transaction of its own on the caller's thread: commits it when it succeeds,
    /// rolls it back when it fails.
    pub(super) fn transaction<R>(&mut self, work: impl FnOnce(&mut Worker) -> StoreResult<R>) -> StoreResult<R> {
        execute(&self.conn, "BEGIN IMMEDIATE")?;
        let result = work(self);
        let commit = self.finish_transaction(result.is_err());
        self.after_commit();
        let value = result?;
        commit.map(|()| value)
    }

    /// Commits (or, after a failure, rolls back) the open transaction. A failed commit forgets the
    /// heads the transaction moved.
    fn finish_transaction(&mut self, failed: bool) -> Result<(), StoreError> {
        let commit = if failed {
            execute(&self.conn, "ROLLBACK").map_err(StoreError::from)
        } else {
            execute(&self.conn, "COMMIT").map_err(StoreError::from)
        };
        if let Err(error) = &commit {
            tracing::warn!(%error, "sqlite commit failed");
            let _ = self.conn.execute_batch("ROLLBACK");
            for conv in self.moved_in_transaction.drain(..) {
                self.heads.remove(&conv);
            }
        }
        self.moved_in_transaction.clear();
        if failed || commit.is_err() {
            self.own_in_transaction.clear();
        } else {
            self.own_markers.record(self.own_in_transaction.drain(..));
        }
        if std::mem::take(&mut self.checkpoint_requested) {
            // Folds the WAL back into the database file, so a copy of that file alone is complete.
            // A pass of the checkpointer still running makes it answer busy (a row, not an
            // error) at once: it is tried again until that pass is over.
            for attempt in 1..=FINAL_CHECKPOINT_ATTEMPTS {
                match self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0)) {
                    Ok(0) => break,
                    Ok(_) if attempt < FINAL_CHECKPOINT_ATTEMPTS => std::thread::sleep(Duration::from_millis(10)),
                    Ok(_) => tracing::warn!("final wal checkpoint still busy; the wal stays beside the database"),
                    Err(error) => {
                        tracing::warn!(%error, "final wal checkpoint failed");
                        break;
                    }
                }
            }
        }
        commit
    }

    /// Writes the senders' pending read markers in a transaction of their own, once per interval.
    fn flush_own_markers_if_due(&mut self) {
        if !self.own_markers.flush_due(self.flushed_at.0.elapsed()) {
            return;
        }
        self.flushed_at = FlushClock::default();
        let moves = self.own_markers.snapshot();
        let written = execute(&self.conn, "BEGIN IMMEDIATE")
            .and_then(|()| write_moves(&self.conn, &moves))
            .and_then(|()| execute(&self.conn, "COMMIT"));
        match written {
            Ok(()) => self.own_markers.written(&moves),
            Err(error) => {
                tracing::warn!(%error, "cannot write senders' read markers; kept for the next try");
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
    }

    /// Writes every pending read marker inside the open transaction (before the store closes).
    pub(super) fn write_own_markers(&mut self) -> rusqlite::Result<()> {
        write_moves(&self.conn, &self.own_markers.snapshot())
    }

    /// Keeps the WAL bounded once a commit is answered: checkpoints it here when it is long.
    fn after_commit(&mut self) {
        self.flush_own_markers_if_due();
        let Some(checkpointer) = &mut self.checkpointer else { return };
        // The WAL's length is read at most once per interval: a `statx` per commit was a tenth of
        // a message's system calls, and the WAL grows by far less than its margin meanwhile.
        let now = Instant::now();
        let wal_bytes = if now.duration_since(checkpointer.wal_checked_at) >= WAL_CHECK_INTERVAL {
            checkpointer.wal_checked_at = now;
            std::fs::metadata(&checkpointer.wal_path).map_or(0, |meta| meta.len())
        } else {
            0
        };
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
            if let Err(error) = self.conn.query_row(&pragma, [], |_| Ok(())) {
                tracing::warn!(%error, mode, "wal checkpoint failed");
            }
        }
        // One nudge per pass of the checkpointer, not one per commit: each would wake its thread.
        if !checkpointer.unchecked.swap(true, Ordering::AcqRel) {
            let _ = checkpointer.nudge.try_send(());
        }
    }
}

pub(super) fn spawn_checkpointer(
    conn: Connection,
    wal_path: PathBuf,
    threads: &mut Vec<thread::JoinHandle<()>>,
) -> Result<CheckpointerLink, StoreError> {
    let (nudge, nudges) = mpsc::sync_channel(1);
    let restart_due = Arc::new(AtomicBool::new(false));
    let unchecked = Arc::new(AtomicBool::new(false));
    let link = CheckpointerLink {
        nudge,
        unchecked: unchecked.clone(),
        restart_due: restart_due.clone(),
        wal_path,
        wal_checked_at: Instant::now(),
    };
    let handle = thread::Builder::new()
        .name("sqlite-checkpointer".into())
        .spawn(move || run_checkpointer(conn, &nudges, &unchecked, &restart_due))
        .map_err(|error| StoreError::Setup(format!("cannot start a store thread: {error}")))?;
    threads.push(handle);
    Ok(link)
}

/// Copies committed frames into the database file while nudged, at most once per period; stops
/// when the writer goes.
pub(super) fn run_checkpointer(
    conn: Connection,
    nudges: &mpsc::Receiver<()>,
    unchecked: &AtomicBool,
    restart_due: &AtomicBool,
) {
    while nudges.recv().is_ok() {
        // Passes go on while commits do; a commit after a pass starts counts for the next one.
        while unchecked.swap(false, Ordering::AcqRel) {
            // (busy, frames in the WAL, frames copied); busy: another checkpoint or a writer's lock.
            let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            });
            match outcome {
                Ok((0, frames)) if frames as u64 >= WAL_RESTART_FRAMES => restart_due.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "wal checkpoint failed"),
            }
            // Nudges that come meanwhile (one per pass at most) are taken until the period is over.
            let period_end = Instant::now() + CHECKPOINT_PERIOD;
            loop {
                let left = period_end.saturating_duration_since(Instant::now());
                match nudges.recv_timeout(left) {
                    Ok(()) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }
}

/// Runs a statement without parameters or rows, prepared once per connection.
pub(super) fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs one call so that its failure undoes only its own writes.
pub(super) fn run_in_savepoint(worker: &mut Worker, call: Box<dyn Call>) -> Box<dyn Answer> {
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

pub(super) fn run_reader(conn: Connection, calls: &Mutex<mpsc::Receiver<Box<dyn Call>>>) {
    let mut worker = Worker::new(conn);
    loop {
        let next = calls.lock().recv();
        let Ok(call) = next else { break };
        call.run(&mut worker).send(Ok(()));
    }
}
