//! The store's threads: one writer that group-commits every queued call, readers, and the
//! checkpointer; and the calls that travel to them.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::own_markers::{write_moves, FlushClock, Move, OwnMarkers, FLUSH_INTERVAL};
use super::queries::ConvHead;
use super::wal_frames::WalFrames;
use crate::{StoreError, StoreResult};

/// The most extra passes the checkpointer makes to catch up before the WAL starts over, and the
/// frames committed meanwhile under which it stops.
const CATCH_UP_PASSES: usize = 4;
const CATCH_UP_FRAMES: i64 = 32;
/// How often the final checkpoint is tried while a checkpointer pass holds it off (10 ms apart).
const FINAL_CHECKPOINT_ATTEMPTS: u32 = 500;
/// 16 MB of 4 KiB pages: once the WAL is this long and checkpointed, it starts over.
pub(super) const WAL_RESTART_FRAMES: u64 = 4096;
/// The WAL length (frames) at which the writer thread stops to checkpoint it itself, waiting for
/// the checkpointer and readers if need be. Far enough above the restart length that a WAL which
/// starts over a pass late does not reach it: at twice that length the writer stalled up to 28 ms
/// at 10k messages/s, every second or so.
pub(super) const WAL_HARD_LIMIT_FRAMES: u64 = 4 * WAL_RESTART_FRAMES;
/// What SQLite leaves of the WAL file when it starts over: kept at the length it reaches
/// between restarts (a frame is a page and its 24-byte header, and a batch may overshoot the
/// hard limit), so the file is rewritten in place rather than cut and extended again.
pub(super) const WAL_FILE_LIMIT_BYTES: u64 = WAL_HARD_LIMIT_FRAMES * (4096 + 24) * 5 / 4;
/// How often the checkpointer copies the WAL into the database while writes go on, between
/// passes of about `PASS_FRAMES` each: rarer passes write a hot page once for many commits and
/// pay their two `fsync`s less often (a 50 ms period cost 20 µs more per message at 1k/s than
/// 200 ms), but a long pass delays the commits beside it (p99 at 10k/s 5.7 ms with 200 ms
/// passes, 4.1 ms with 50 ms; `scripts/pm-probe.sh`).
const CHECKPOINT_PERIOD: RangeInclusive<Duration> = Duration::from_millis(25)..=Duration::from_millis(200);
const PASS_FRAMES: u32 = 1024;
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
    /// Set when an inline commit left the writer thread upkeep to do, until it has done it.
    pub(super) upkeep_queued: bool,
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
            upkeep_queued: false,
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
    /// The WAL's length, as the writer's last commit left it.
    wal_frames: WalFrames,
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

/// Asks the writer thread for the upkeep an inline commit left: see [`Worker::upkeep_due`].
pub(super) struct Upkeep;

impl Call for Upkeep {
    fn run(self: Box<Self>, _worker: &mut Worker) -> Box<dyn Answer> {
        Box::new(Done)
    }

    fn abandon(self: Box<Self>, _error: StoreError) {}
}

/// The answer of a call that returns nothing to anyone.
struct Done;

impl Answer for Done {
    fn failed(&self) -> bool {
        false
    }

    fn send(self: Box<Self>, _commit: Result<(), &StoreError>) {}
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
    /// rolls it back when it fails. The upkeep a commit may call for (checkpoints, the senders'
    /// markers) is left to the writer thread: the caller asks [`Worker::upkeep_due`].
    pub(super) fn transaction<R>(&mut self, work: impl FnOnce(&mut Worker) -> StoreResult<R>) -> StoreResult<R> {
        execute(&self.conn, "BEGIN IMMEDIATE")?;
        let result = work(self);
        let commit = self.finish_transaction(result.is_err());
        self.nudge_checkpointer();
        let value = result?;
        commit.map(|()| value)
    }

    /// Whether upkeep is due that the writer thread should do (once: this marks it queued).
    /// Done on a sender's thread, a checkpoint's two `fsync`s held its ack and its delivery
    /// (1.4 to 8 ms at 10k messages/s).
    pub(super) fn upkeep_due(&mut self) -> bool {
        let due = self.own_markers.flush_due(self.flushed_at.0.elapsed())
            || self.checkpointer.as_ref().is_some_and(|link| {
                link.wal_frames.get() >= WAL_HARD_LIMIT_FRAMES || link.restart_due.load(Ordering::Relaxed)
            });
        due && !std::mem::replace(&mut self.upkeep_queued, true)
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

    /// The writer thread's upkeep once a commit is answered: the senders' markers when due, and
    /// a checkpoint here when the WAL is long.
    fn after_commit(&mut self) {
        self.upkeep_queued = false;
        self.flush_own_markers_if_due();
        let Some(checkpointer) = &self.checkpointer else { return };
        // RESTART waits (up to the busy timeout) for the checkpointer and for readers, so that
        // the next transaction starts the WAL over.
        let mode = if checkpointer.wal_frames.get() >= WAL_HARD_LIMIT_FRAMES {
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
        self.nudge_checkpointer();
    }

    /// Tells the checkpointer there are new frames: once per pass of it, not once per commit,
    /// since each nudge would wake its thread.
    fn nudge_checkpointer(&self) {
        let Some(checkpointer) = &self.checkpointer else { return };
        if !checkpointer.unchecked.swap(true, Ordering::AcqRel) {
            let _ = checkpointer.nudge.try_send(());
        }
    }
}

pub(super) fn spawn_checkpointer(
    conn: Connection,
    wal_frames: WalFrames,
    threads: &mut Vec<thread::JoinHandle<()>>,
) -> Result<CheckpointerLink, StoreError> {
    let (nudge, nudges) = mpsc::sync_channel(1);
    let restart_due = Arc::new(AtomicBool::new(false));
    let unchecked = Arc::new(AtomicBool::new(false));
    let link = CheckpointerLink { nudge, unchecked: unchecked.clone(), restart_due: restart_due.clone(), wal_frames };
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
    let (mut last_pass, mut last_frames) = (Instant::now(), 0);
    while nudges.recv().is_ok() {
        // Passes go on while commits do; a commit after a pass starts counts for the next one.
        while unchecked.swap(false, Ordering::AcqRel) {
            let since_last_pass = last_pass.elapsed();
            last_pass = Instant::now();
            // (busy, frames in the WAL, frames copied); busy: another checkpoint or a writer's lock.
            let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            });
            let mut grew = 0;
            match outcome {
                Ok((0, frames)) => {
                    // A WAL that started over since the last pass holds only new frames.
                    grew = if frames >= last_frames { frames - last_frames } else { frames };
                    last_frames = frames;
                    if frames as u64 >= WAL_RESTART_FRAMES {
                        catch_up(&conn, frames);
                        restart_due.store(true, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "wal checkpoint failed"),
            }
            // The next pass when about `PASS_FRAMES` will have come at the rate of the last period.
            let period = match u32::try_from(grew) {
                Ok(grew) if grew > 0 => {
                    (since_last_pass * PASS_FRAMES / grew).clamp(*CHECKPOINT_PERIOD.start(), *CHECKPOINT_PERIOD.end())
                }
                _ => *CHECKPOINT_PERIOD.end(),
            };
            // Nudges that come meanwhile (one per pass at most) are taken until the period is over.
            let period_end = Instant::now() + period;
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

/// Copies what was committed during a long pass, pass after pass while that is more than a few
/// frames, so that the writer's own last pass (which holds its commits) has little left to copy:
/// 200 to 300 frames and up to 8 ms at 10k messages/s before this.
fn catch_up(conn: &Connection, mut frames: i64) {
    for _ in 0..CATCH_UP_PASSES {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
            Ok(now) if now - frames > CATCH_UP_FRAMES => frames = now,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "wal checkpoint failed");
                return;
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
