//! Joins, batched into the store like messages: a `join` queues here, and one task hands
//! whatever queued up while the previous batch was in flight to [`Store::join_rooms`], one
//! transaction (two statements on PostgreSQL) for the whole batch. A room's history is read once
//! per batch for all its joiners, and its member count is taken once per batch.
//!
//! Each joiner listens to the room (and its bus subscription is in place) before its join is
//! queued, so a room message committed after the batch's history read reaches it live.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use switchboard_store::{JoinRequest, Joined, JoinedRoom};
use tokio::sync::{mpsc, oneshot};

use crate::error::ChatError;
use crate::node::NodeShared;
use crate::now_millis;

/// What a join learns from its batch.
pub(crate) struct JoinAnswer {
    pub(crate) joined: Joined,
    /// The room's newest messages, shared by the batch's joiners of the room.
    pub(crate) room: Arc<JoinedRoom>,
    /// The room is small enough for `member_joined` (only for a new member).
    pub(crate) member_event: bool,
}

pub(crate) struct PendingJoin {
    request: JoinRequest,
    answer: oneshot::Sender<Result<JoinAnswer, ChatError>>,
}

/// Where joins wait for the store; bounded like the message pipeline.
pub(crate) struct JoinQueue {
    sender: mpsc::Sender<PendingJoin>,
}

impl JoinQueue {
    pub(crate) fn new(capacity: usize) -> (JoinQueue, mpsc::Receiver<PendingJoin>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (JoinQueue { sender }, receiver)
    }

    /// Makes `user` a member of `room` (created if missing) in the next batch.
    pub(crate) async fn join(&self, shared: &NodeShared, room: &str, user: &str) -> Result<JoinAnswer, ChatError> {
        let (answer, answered) = oneshot::channel();
        let request = JoinRequest { room: room.to_owned(), user: user.to_owned() };
        // Counted before it is queued: the task may take it (and count it out) at once.
        shared.metrics.joins_waiting.fetch_add(1, Ordering::Relaxed);
        if self.sender.try_send(PendingJoin { request, answer }).is_err() {
            shared.metrics.joins_waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(ChatError::Overloaded);
        }
        answered.await.map_err(|_| ChatError::Internal("the join queue stopped".into()))?
    }
}

/// Takes the queued joins, at most `batch_max` at a time, into the store until the node goes.
pub(crate) async fn run_joins(shared: Weak<NodeShared>, mut receiver: mpsc::Receiver<PendingJoin>) {
    let Some(batch_max) = shared.upgrade().map(|shared| shared.config.batch_max.max(1)) else {
        return;
    };
    let mut batch = Vec::with_capacity(batch_max);
    while receiver.recv_many(&mut batch, batch_max).await > 0 {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.metrics.joins_waiting.fetch_sub(batch.len() as i64, Ordering::Relaxed);
        shared.join_batch(std::mem::take(&mut batch)).await;
    }
}

impl NodeShared {
    async fn join_batch(&self, batch: Vec<PendingJoin>) {
        let (requests, answers): (Vec<JoinRequest>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.request, pending.answer)).unzip();
        self.metrics.join_batches.fetch_add(1, Ordering::Relaxed);
        let stored = self.store.join_rooms(&requests, self.config.join_history, now_millis()).await;
        let outcome = match stored {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, joins = requests.len(), "join batch failed");
                for answer in answers {
                    let _ = answer.send(Err(ChatError::Store(error.clone())));
                }
                return;
            }
        };
        self.metrics.joins.fetch_add(requests.len() as u64, Ordering::Relaxed);
        let events = self.count_joins(&requests, &outcome.joins).await;
        let rooms: HashMap<String, Arc<JoinedRoom>> =
            outcome.rooms.into_iter().map(|(room, read)| (room, Arc::new(read))).collect();
        for (((request, joined), answer), member_event) in requests.iter().zip(outcome.joins).zip(answers).zip(events) {
            let Some(room) = rooms.get(&request.room) else {
                let _ = answer.send(Err(ChatError::Internal("the store left a joined room out".into())));
                continue;
            };
            let _ = answer.send(Ok(JoinAnswer { joined, room: room.clone(), member_event }));
        }
    }

    /// Adds the batch's new members to the rooms' counts (one count per room at most, when this
    /// node does not know the room yet) and tells, per join, whether the room was still small
    /// enough for a `member_joined`.
    async fn count_joins(&self, requests: &[JoinRequest], joins: &[Joined]) -> Vec<bool> {
        let mut newly: HashMap<&str, u64> = HashMap::new();
        for (request, joined) in requests.iter().zip(joins) {
            if joined.newly {
                *newly.entry(&request.room).or_default() += 1;
            }
        }
        let mut before: HashMap<&str, u64> = HashMap::new();
        for (room, count) in newly {
            match self.members_joined(room, count).await {
                Ok(members) => {
                    before.insert(room, members);
                }
                Err(error) => tracing::warn!(%room, %error, "room count failed: no member_joined for this batch"),
            }
        }
        let max = self.config.room_events_max_members;
        requests
            .iter()
            .zip(joins)
            .map(|(request, joined)| {
                if !joined.newly {
                    return false;
                }
                match before.get_mut(request.room.as_str()) {
                    Some(members) => {
                        *members += 1;
                        *members <= max
                    }
                    None => false,
                }
            })
            .collect()
    }
}
