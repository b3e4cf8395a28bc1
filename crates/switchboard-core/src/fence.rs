//! Cluster fences: a new connection's sync read waits until every other live node has applied
//! what this node published before it, its presence announcement in particular.
//!
//! Without it, a node that has not yet heard that the user is here would route a private message
//! committed after the sync read nowhere: not in the sync, not over the bus. Every node answers a
//! fence once it has handled everything the sender published before it (one sender's publications
//! on one topic arrive in order), so after the answers any later commit elsewhere is routed here.
//! Logins that ask while a round is out share the next one: a storm of logins costs a few rounds.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use switchboard_bus::Topic;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::BusHeader;
use crate::node::NodeShared;

/// Logins waiting for the next round, at most; past it a login goes on without one.
const WAITING_CAPACITY: usize = 65_536;
/// Answers waiting to be matched with their round.
const ANSWER_CAPACITY: usize = 4096;
/// How often a round checks for nodes that died without answering.
const CHECK_PERIOD: Duration = Duration::from_millis(100);

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

    /// Returns once every live node has answered a fence sent after this call began, or gave up.
    pub(crate) async fn pass(&self) {
        let (done, wait) = oneshot::channel();
        if self.waiting.try_send(done).is_err() {
            tracing::warn!("too many logins waiting for a cluster fence; going on without one");
            return;
        }
        let _ = wait.await;
    }

    /// A node answered round `round`; an answer that does not fit is as good as lost.
    pub(crate) fn answered(&self, node: &str, round: u64) {
        let _ = self.answers.try_send((node.to_owned(), round));
    }
}

/// Runs rounds while logins wait, one at a time, for as long as the node lives.
pub(crate) async fn run_fences(node: Weak<NodeShared>, mut inbox: FenceInbox) {
    let mut round: u64 = 0;
    while let Some(first) = inbox.waiting.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = inbox.waiting.try_recv() {
            waiters.push(more);
        }
        let Some(shared) = node.upgrade() else { return };
        round += 1;
        let mut unanswered: HashSet<String> = shared.directory.ids().into_iter().collect();
        if !unanswered.is_empty() {
            shared.publish(Topic::Cluster, &BusHeader::Fence { round }, None);
            let deadline = Instant::now() + shared.config.node_timeout;
            let mut check = tokio::time::interval(CHECK_PERIOD);
            while !unanswered.is_empty() {
                tokio::select! {
                    answer = inbox.answers.recv() => match answer {
                        Some((node, answered)) if answered == round => {
                            unanswered.remove(&node);
                        }
                        Some(_) => {}
                        None => return,
                    },
                    _ = check.tick() => {
                        let live: HashSet<String> = shared.directory.ids().into_iter().collect();
                        unanswered.retain(|node| live.contains(node));
                        // With the link down, the nodes ask their clients to resume once it is
                        // back, which recovers what this fence would have protected.
                        if shared.lost_publications.load(Ordering::Relaxed) > 0 {
                            break;
                        }
                        if Instant::now() >= deadline {
                            tracing::warn!(round, nodes = ?unanswered, "cluster fence unanswered; going on");
                            break;
                        }
                    }
                }
            }
        }
        drop(shared);
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}
