//! Cluster fences: a leaving node's farewell is confirmed by every other live node.
//!
//! A fence is a publication on the cluster topic that every node answers once it has handled
//! everything the sender published before it (one sender's publications on one topic arrive in
//! order). A node that stops sends its farewell, then a fence: once the others answered, they
//! have forgotten it and its users, and the node can exit without anyone routing to it.
//!
//! Logins do not use fences: a new connection's sync read waits only for its own subscriptions
//! on the broker (see `subscriptions.rs`), never for another node, so a dead or slow node holds
//! no login up and no login has to be repaired afterwards. See docs/design/liveness.md.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use switchboard_bus::Topic;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::BusHeader;
use crate::node::NodeShared;

/// Callers waiting for the next round, at most; past it a caller goes on without one.
const WAITING_CAPACITY: usize = 1024;
/// Answers waiting to be matched.
const ANSWER_CAPACITY: usize = 4096;
/// How often a round checks for nodes that died or ran out of patience.
const CHECK_PERIOD: Duration = Duration::from_millis(50);
/// How long a round waits for a node that is not heard from at all; one still talking on the bus
/// (busy, not dead) is waited for up to the node timeout.
const PATIENCE: Duration = Duration::from_secs(1);

/// The node's side of the fence task.
pub struct Fences {
    waiting: mpsc::Sender<oneshot::Sender<()>>,
    answers: mpsc::Sender<(String, u64)>,
}

/// What the fence task reads.
pub(crate) struct FenceInbox {
    waiting: mpsc::Receiver<oneshot::Sender<()>>,
    answers: mpsc::Receiver<(String, u64)>,
}

impl Fences {
    pub(crate) fn new() -> (Fences, FenceInbox) {
        let (waiting, waiting_inbox) = mpsc::channel(WAITING_CAPACITY);
        let (answers, answers_inbox) = mpsc::channel(ANSWER_CAPACITY);
        (Fences { waiting, answers }, FenceInbox { waiting: waiting_inbox, answers: answers_inbox })
    }

    /// Returns once every live node has answered a fence sent after this call began, or ran out
    /// of patience.
    pub(crate) async fn pass(&self) {
        let (done, wait) = oneshot::channel();
        if self.waiting.try_send(done).is_err() {
            tracing::warn!("too many callers waiting for a cluster fence; going on without one");
            return;
        }
        let _ = wait.await;
    }

    /// A node answered round `round`; an answer that does not fit is as good as lost.
    pub(crate) fn answered(&self, node: &str, round: u64) {
        let _ = self.answers.try_send((node.to_owned(), round));
    }
}

/// Runs rounds while callers wait, one at a time, for as long as the node lives.
pub(crate) async fn run_fences(node: Weak<NodeShared>, mut inbox: FenceInbox) {
    let mut round: u64 = 0;
    while let Some(first) = inbox.waiting.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = inbox.waiting.try_recv() {
            waiters.push(more);
        }
        let Some(shared) = node.upgrade() else { return };
        round += 1;
        let live = shared.directory.ids();
        if !live.is_empty() {
            shared.publish(Topic::Cluster, &BusHeader::Fence { round }, None);
        }
        let started = Instant::now();
        let node_timeout = shared.config.node_timeout;
        let mut waiting_for: HashSet<String> = live.into_iter().collect();
        let mut check = tokio::time::interval(CHECK_PERIOD);
        while !waiting_for.is_empty() {
            tokio::select! {
                answer = inbox.answers.recv() => {
                    let Some((peer, answered)) = answer else { return };
                    if answered == round {
                        waiting_for.remove(&peer);
                    }
                }
                _ = check.tick() => {
                    let now = Instant::now();
                    let live: HashSet<String> = shared.directory.ids().into_iter().collect();
                    let patient = now < started + PATIENCE.min(node_timeout);
                    let given_up = now >= started + node_timeout;
                    waiting_for.retain(|peer| {
                        let talking = shared
                            .directory
                            .silent_for(peer, now.into_std())
                            .is_some_and(|silent| silent < PATIENCE);
                        live.contains(peer) && (patient || (talking && !given_up))
                    });
                }
            }
        }
        drop(shared);
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}
