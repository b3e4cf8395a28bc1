//! Cluster fences: a new connection's sync read waits until every other live node has applied
//! what this node published before it, its presence announcement in particular.
//!
//! Without it, a node that has not yet heard that the user is here would route a private message
//! committed after the sync read nowhere: not in the sync, not over the bus. Every node answers a
//! fence once it has handled everything the sender published before it (one sender's publications
//! on one topic arrive in order), so after the answers any later commit elsewhere is routed here.
//! Logins that ask while a round is out share the next one: a storm of logins costs a few rounds.
//!
//! A round waits for each node as long as its patience (one second, or twice the time its last
//! answer took, up to the node timeout), and beyond it while the node keeps talking on the bus (a
//! busy node is slow, not dead), up to the node timeout. A node that leaves a round unanswered is
//! suspect and later rounds do not wait for it, so a dead node holds logins up for a second, not
//! for the node timeout. Dead, it delivers nothing; alive but slow, it may have fanned a private message out
//! before it applied the presence of a login that did not wait for it. So every presence
//! publication is logged in order with the fences, and when a suspect answers a round (or says its
//! link was cut), the users whose logins went on without it are asked to resume: their new logins
//! wait for it. See docs/design/liveness.md.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use switchboard_bus::Topic;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::BusHeader;
use crate::node::NodeShared;

/// Logins waiting for the next round, at most; past it a login goes on without one.
const WAITING_CAPACITY: usize = 65_536;
/// Answers and node events waiting to be applied.
const EVENT_CAPACITY: usize = 4096;
/// How often a round checks for nodes that died or ran out of patience.
const CHECK_PERIOD: Duration = Duration::from_millis(50);
/// The least a round waits for a node's answer before going on without it.
const PATIENCE_FLOOR: Duration = Duration::from_secs(1);
/// Presence publications kept for repairs; past it the oldest go, and a repair that needed them
/// asks every client to resume.
const PRESENCE_LOG_CAPACITY: usize = 16_384;
/// Rounds remembered for matching late answers.
const ROUNDS_KEPT: usize = 4096;

/// The node's side of the fence task.
pub struct Fences {
    waiting: mpsc::Sender<oneshot::Sender<()>>,
    events: mpsc::Sender<FenceEvent>,
    log: Mutex<PresenceLog>,
}

/// What the fence task reads.
pub(crate) struct FenceInbox {
    waiting: mpsc::Receiver<oneshot::Sender<()>>,
    events: mpsc::Receiver<FenceEvent>,
}

#[derive(Debug)]
enum FenceEvent {
    Answer {
        node: String,
        incarnation: u64,
        round: u64,
    },
    /// The node's bus link was cut: the fences it missed will never be answered.
    LinkRestored {
        node: String,
        incarnation: u64,
    },
    /// The node left or started anew: its old incarnation delivers nothing any more.
    Gone {
        node: String,
    },
}

/// The users of this node's presence publications (a connection count going up), in the order
/// they entered the bus outbox, numbered; a fence's mark is the number of the next one.
#[derive(Default)]
struct PresenceLog {
    /// The number of `users[0]`.
    first: u64,
    users: VecDeque<Arc<str>>,
}

impl PresenceLog {
    fn end(&self) -> u64 {
        self.first + self.users.len() as u64
    }

    /// The users logged in `[from, to)`, or `None` when some of them were dropped already.
    fn users_between(&self, from: u64, to: u64) -> Option<Vec<Arc<str>>> {
        if from < self.first {
            return None;
        }
        let skip = (from - self.first) as usize;
        let take = to.min(self.end()).saturating_sub(from) as usize;
        let mut users: Vec<Arc<str>> = self.users.iter().skip(skip).take(take).cloned().collect();
        users.sort();
        users.dedup();
        Some(users)
    }

    fn trim_below(&mut self, position: u64) {
        while self.first < position && self.users.pop_front().is_some() {
            self.first += 1;
        }
    }
}

impl Fences {
    pub(crate) fn new() -> (Fences, FenceInbox) {
        let (waiting, waiting_inbox) = mpsc::channel(WAITING_CAPACITY);
        let (events, events_inbox) = mpsc::channel(EVENT_CAPACITY);
        let fences = Fences { waiting, events, log: Mutex::new(PresenceLog::default()) };
        (fences, FenceInbox { waiting: waiting_inbox, events: events_inbox })
    }

    /// Returns once every live node has answered a fence sent after this call began, or ran out
    /// of patience.
    pub(crate) async fn pass(&self) {
        let (done, wait) = oneshot::channel();
        if self.waiting.try_send(done).is_err() {
            tracing::warn!("too many logins waiting for a cluster fence; going on without one");
            return;
        }
        let _ = wait.await;
    }

    /// Queues a presence publication of `user` with `enqueue`, in order with the fences.
    pub(crate) fn log_presence(&self, user: &str, enqueue: impl FnOnce()) {
        let mut log = self.log.lock();
        enqueue();
        if log.users.len() == PRESENCE_LOG_CAPACITY {
            log.users.pop_front();
            log.first += 1;
        }
        log.users.push_back(Arc::from(user));
    }

    /// Queues a fence with `enqueue`; returns its mark: the presence publications before it.
    fn log_fence(&self, enqueue: impl FnOnce()) -> u64 {
        let log = self.log.lock();
        enqueue();
        log.end()
    }

    /// A node answered round `round`; an answer that does not fit is as good as lost.
    pub(crate) fn answered(&self, node: &str, incarnation: u64, round: u64) {
        let _ = self.events.try_send(FenceEvent::Answer { node: node.to_owned(), incarnation, round });
    }

    pub(crate) fn link_restored(&self, node: &str, incarnation: u64) {
        let _ = self.events.try_send(FenceEvent::LinkRestored { node: node.to_owned(), incarnation });
    }

    pub(crate) fn gone(&self, node: &str) {
        let _ = self.events.try_send(FenceEvent::Gone { node: node.to_owned() });
    }
}

/// What the fence task knows of one other node.
#[derive(Debug)]
struct NodeFence {
    /// Learned from its answers; a different one is a new start.
    incarnation: Option<u64>,
    /// The presence publications before this mark are applied on that node.
    confirmed: u64,
    /// Presence publications before this mark were released to a sync read without that node's
    /// answer: they are repaired once it answers. While set, rounds do not wait for the node.
    unconfirmed_until: Option<u64>,
    /// How long a round waits for its answer.
    patience: Duration,
}

/// The presence publications a node had not applied when their logins went on: `[from, to)`.
#[derive(Debug, PartialEq, Eq)]
struct Repair {
    node: String,
    from: u64,
    to: u64,
}

/// The fence task's bookkeeping, apart from any I/O.
struct FenceBook {
    nodes: HashMap<String, NodeFence>,
    /// Recent rounds: number, mark, when sent.
    rounds: VecDeque<(u64, u64, Instant)>,
    last_mark: u64,
    node_timeout: Duration,
}

impl FenceBook {
    fn new(node_timeout: Duration) -> FenceBook {
        FenceBook { nodes: HashMap::new(), rounds: VecDeque::new(), last_mark: 0, node_timeout }
    }

    /// A node first seen now: the logins before the last round went on before it was known.
    fn new_node(&self, incarnation: Option<u64>) -> NodeFence {
        NodeFence { incarnation, confirmed: self.last_mark, unconfirmed_until: None, patience: self.patience_floor() }
    }

    fn patience_floor(&self) -> Duration {
        PATIENCE_FLOOR.min(self.node_timeout)
    }

    /// Starts a round over the `live` nodes; returns the ones to wait for, each with its deadline.
    fn begin_round(&mut self, round: u64, mark: u64, now: Instant, live: &[String]) -> HashMap<String, Instant> {
        if self.rounds.len() == ROUNDS_KEPT {
            self.rounds.pop_front();
        }
        self.rounds.push_back((round, mark, now));
        let mut waited = HashMap::new();
        for node in live {
            if !self.nodes.contains_key(node) {
                let fresh = self.new_node(None);
                self.nodes.insert(node.clone(), fresh);
            }
            let state = &self.nodes[node];
            if state.unconfirmed_until.is_none() {
                waited.insert(node.clone(), now + state.patience);
            }
        }
        self.last_mark = mark;
        waited
    }

    /// The round with `mark` let its logins go: every node that has not applied them (it did not
    /// answer, or is gone for now) owes a repair. Not so when this node's own link failed: it asks
    /// every client to resume once the link is back, which repairs more.
    fn release(&mut self, mark: u64, link_failed: bool) {
        if link_failed {
            return;
        }
        for state in self.nodes.values_mut() {
            if state.confirmed < mark {
                state.unconfirmed_until = Some(state.unconfirmed_until.map_or(mark, |until| until.max(mark)));
            }
        }
    }

    /// A node answered `round`: what it confirmed, and the repair it owes if logins went on
    /// without it.
    fn on_answer(&mut self, node: &str, incarnation: u64, round: u64, now: Instant) -> Option<Repair> {
        let &(_, mark, sent) = self.rounds.iter().find(|(number, _, _)| *number == round)?;
        let patience = (now.saturating_duration_since(sent) * 2).clamp(self.patience_floor(), self.node_timeout);
        // Untracked, or a new start of the node: nothing the old start owed is left to repair.
        let new_start =
            self.nodes.get(node).is_none_or(|state| state.incarnation.is_some_and(|known| known != incarnation));
        if new_start {
            let fresh = self.new_node(Some(incarnation));
            self.nodes.insert(node.to_owned(), fresh);
        }
        let state = self.nodes.get_mut(node)?;
        state.incarnation = Some(incarnation);
        state.patience = patience;
        if mark <= state.confirmed {
            return None;
        }
        let from = state.confirmed;
        state.confirmed = mark;
        let until = state.unconfirmed_until?;
        if mark >= until {
            state.unconfirmed_until = None;
        }
        Some(Repair { node: node.to_owned(), from, to: mark.min(until) }).filter(|repair| repair.from < repair.to)
    }

    /// The node's link was cut: it will not answer the rounds it owes; repair them all now.
    fn on_link_restored(&mut self, node: &str, incarnation: u64) -> Option<Repair> {
        let state = self.nodes.get_mut(node)?;
        if state.incarnation.is_some_and(|known| known != incarnation) {
            return None;
        }
        let until = state.unconfirmed_until.take()?;
        let repair = Repair { node: node.to_owned(), from: state.confirmed, to: until };
        state.confirmed = until;
        Some(repair)
    }

    fn on_gone(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// The oldest presence publication some node may still need repaired.
    fn oldest_needed(&self) -> u64 {
        self.nodes.values().map(|state| state.confirmed).min().unwrap_or(self.last_mark)
    }
}

/// Runs rounds while logins wait, one at a time, and applies answers between them, for as long
/// as the node lives.
pub(crate) async fn run_fences(node: Weak<NodeShared>, mut inbox: FenceInbox) {
    let mut book = match node.upgrade() {
        Some(shared) => FenceBook::new(shared.config.node_timeout),
        None => return,
    };
    let mut round: u64 = 0;
    loop {
        let first = tokio::select! {
            waiter = inbox.waiting.recv() => match waiter {
                Some(waiter) => waiter,
                None => return,
            },
            event = inbox.events.recv() => {
                let (Some(event), Some(shared)) = (event, node.upgrade()) else { return };
                apply(&shared, &mut book, event);
                continue;
            }
        };
        let mut waiters = vec![first];
        while let Ok(more) = inbox.waiting.try_recv() {
            waiters.push(more);
        }
        let Some(shared) = node.upgrade() else { return };
        round += 1;
        let live = shared.directory.ids();
        let mark = shared.fences.log_fence(|| {
            if !live.is_empty() {
                shared.publish(Topic::Cluster, &BusHeader::Fence { round }, None);
            }
        });
        let started = Instant::now();
        let mut waiting_for = book.begin_round(round, mark, started, &live);
        let mut check = tokio::time::interval(CHECK_PERIOD);
        let mut link_failed = false;
        while !waiting_for.is_empty() {
            tokio::select! {
                event = inbox.events.recv() => {
                    let Some(event) = event else { return };
                    if let FenceEvent::Answer { node: peer, round: answered, .. } = &event {
                        if *answered == round {
                            waiting_for.remove(peer);
                        }
                    }
                    apply(&shared, &mut book, event);
                }
                _ = check.tick() => {
                    let live: HashSet<String> = shared.directory.ids().into_iter().collect();
                    waiting_for.retain(|peer, _| live.contains(peer));
                    // With the link down, this node asks its clients to resume once it is back,
                    // which recovers what this fence would have protected.
                    if shared.lost_publications.load(Ordering::Relaxed) > 0 {
                        link_failed = true;
                        break;
                    }
                    let now = Instant::now();
                    let given_up = now >= started + book.node_timeout;
                    waiting_for.retain(|peer, deadline| {
                        let talking = shared
                            .directory
                            .silent_for(peer, now.into_std())
                            .is_some_and(|silent| silent < book.patience_floor());
                        let patient = *deadline > now || (talking && !given_up);
                        if !patient {
                            tracing::warn!(round, node = %peer, "no fence answer in time; logins go on without that node until it answers");
                        }
                        patient
                    });
                }
            }
        }
        book.release(mark, link_failed);
        shared.fences.log.lock().trim_below(book.oldest_needed());
        drop(shared);
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}

fn apply(shared: &NodeShared, book: &mut FenceBook, event: FenceEvent) {
    let repair = match event {
        FenceEvent::Answer { node, incarnation, round } => book.on_answer(&node, incarnation, round, Instant::now()),
        FenceEvent::LinkRestored { node, incarnation } => book.on_link_restored(&node, incarnation),
        FenceEvent::Gone { node } => {
            book.on_gone(&node);
            None
        }
    };
    let Some(repair) = repair else { return };
    let users = shared.fences.log.lock().users_between(repair.from, repair.to);
    match users {
        Some(users) => {
            tracing::info!(node = %repair.node, users = users.len(), "a node applied logins late; asking their clients to resume");
            shared.ask_users_to_resume(&users);
        }
        None => {
            tracing::warn!(node = %repair.node, "a node applied logins late, more than are remembered; asking every client to resume");
            shared.ask_clients_to_resume(i64::MAX);
        }
    }
}

#[cfg(test)]
mod tests;
