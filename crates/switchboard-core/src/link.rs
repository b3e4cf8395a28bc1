//! This node's link to the others over the bus: what it publishes, what it hears, heartbeats and
//! dead nodes, and what a broken link costs the clients.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use switchboard_bus::{Bus, BusEvent, BusMessage, Topic};
use switchboard_protocol::ws::WireFrame;
use tokio::sync::mpsc;

use crate::cluster::{self, BusHeader, Heard};
use crate::node::NodeShared;
use crate::now_millis;
use crate::presence::PresenceChange;

/// How far apart two nodes' clocks may be, for comparing one node's times with another's.
pub(crate) const CLOCK_SKEW_MARGIN_MS: i64 = 250;

impl NodeShared {
    pub(crate) fn publish(&self, topic: Topic, header: &BusHeader, frame: Option<&WireFrame>) {
        if !self.has_peers() && !matches!(header, BusHeader::NodeJoined | BusHeader::LinkRestored { .. }) {
            return;
        }
        // After the farewell only the fence that confirms it goes out: anything else would make
        // the others see this node again.
        if self.leaving.load(Ordering::Acquire) && !matches!(header, BusHeader::Fence { .. }) {
            return;
        }
        let payload = cluster::encode(self.incarnation, header, frame.map(|f| f.payload()).as_ref());
        self.enqueue(topic, payload);
    }

    fn enqueue(&self, topic: Topic, payload: bytes::Bytes) {
        if self.bus_outbox.try_send((topic, payload)).is_err() {
            // Announced like publications lost in an outage: the others' clients resume.
            self.lost_publications.fetch_max(now_millis(), Ordering::Relaxed);
            tracing::warn!("bus outbox full, publication dropped");
            return;
        }
        self.metrics.bus_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Says goodbye: after what is queued already, tell the others this incarnation leaves, and
    /// publish nothing else. Returns once every live node answered the fence behind the farewell
    /// (so it has forgotten this node), or ran out of patience.
    pub(crate) async fn leave_cluster(&self) {
        if !self.has_peers() || self.leaving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.enqueue(Topic::Cluster, cluster::encode(self.incarnation, &BusHeader::NodeLeft, None));
        self.fences.pass().await;
    }

    /// The room got its first listener here, or lost its last: its bus subscription follows.
    pub(crate) fn room_listeners_changed(&self, room: &str) {
        self.subscriptions.touch(Topic::Room(room.to_owned()));
    }

    /// The user got a first connection here, or lost the last: the user's topic follows.
    pub(crate) fn user_connections_changed(&self, user: &str) {
        self.subscriptions.touch(Topic::User(user.to_owned()));
    }

    /// Returns once the subscriptions asked for so far are in place on the bus: whatever another
    /// node publishes afterwards to those rooms and users reaches this node.
    pub(crate) async fn subscriptions_settled(&self) {
        if !self.has_peers() {
            return;
        }
        if tokio::time::timeout(self.config.node_timeout, self.subscriptions.settled()).await.is_err() {
            tracing::warn!("bus subscriptions did not settle in time");
        }
    }

    /// After this node's bus link was down: announce it (others answer with their presence and,
    /// if publications of this node were lost, tell their own clients to resume), and tell local
    /// clients to resume, so that whatever crossed the bus meanwhile comes back from the store.
    pub(crate) fn link_restored(&self, cause: &'static str) {
        tracing::info!(node = %self.config.node_id, cause, "cluster link restored");
        self.announce_return();
        for room in self.hub.rooms_with_listeners() {
            self.room_listeners_changed(&room);
        }
        for connection in self.hub.all_connections() {
            self.user_connections_changed(&connection.user);
        }
        self.ask_clients_to_resume(i64::MAX);
    }

    /// Tells the others this node is here, with its users, and whether publications of its were
    /// lost since it last said so; forgets cached rules it may have missed changes of.
    fn announce_return(&self) {
        let last_lost_at = self.lost_publications.swap(0, Ordering::Relaxed);
        self.access.clear();
        let header = BusHeader::LinkRestored { lost_publications: last_lost_at > 0, last_lost_at };
        self.publish(Topic::Cluster, &header, None);
        self.publish_presence_snapshot();
    }

    /// After a stall with the bus link up: the others may have declared this node dead and
    /// dropped its users from presence, but no delivery depends on that (private messages and
    /// events go by the users' topics), and what the broker or the inbound queue dropped is
    /// repaired by `repair_dropped`: nothing here asks a client to resume.
    fn stalled(&self, stalled: Duration) {
        tracing::warn!(stalled_ms = stalled.as_millis() as u64, "this node was stalled; announcing it again");
        self.announce_return();
    }

    /// Asks the connections that messages dropped on their way in were meant for to resume:
    /// a user's topic, that user's connections; a room's, its listeners here; unknown, everyone.
    fn repair_dropped(&self) {
        let (topics, unknown) = self.bus.counters().dropped.take();
        if unknown {
            self.ask_clients_to_resume(i64::MAX);
            return;
        }
        let mut asked = 0;
        for topic in topics {
            let connections = match &topic {
                Topic::User(user) => self.hub.connections_of(user),
                Topic::Room(room) => self.hub.room_connections(room),
                // Rules, blocks or presence: cached rules are read again; presence heals with
                // the next snapshot.
                Topic::Cluster | Topic::Node(_) => {
                    self.access.clear();
                    continue;
                }
            };
            for connection in connections {
                connection.close_with(switchboard_protocol::CloseCode::ServiceRestart);
                asked += 1;
            }
        }
        if asked > 0 {
            tracing::warn!(
                connections = asked,
                "bus messages were dropped on their way in; asking their clients to resume"
            );
        }
    }

    /// Publications lost while the link stayed up (a full outbox, a refused batch) are announced
    /// at once, like those lost in an outage.
    fn announce_lost_publications(&self) {
        if !self.bus_link_down.load(Ordering::Relaxed) && self.lost_publications.load(Ordering::Relaxed) > 0 {
            self.announce_return();
        }
    }

    /// Messages that crossed the bus while a link was down never reached these connections: the
    /// store has them, and a resume with cursors brings them back exactly once. Connections that
    /// logged in after `missed_until` (ms) read those messages in their sync already.
    pub(crate) fn ask_clients_to_resume(&self, missed_until: i64) {
        let connections = self.hub.all_connections();
        let mut asked = 0;
        for connection in connections {
            if connection.connected_at <= missed_until {
                connection.close_with(switchboard_protocol::CloseCode::ServiceRestart);
                asked += 1;
            }
        }
        tracing::info!(connections = asked, "asking clients to resume after a cluster link outage");
    }

    /// Tells every node which users this node holds. On the cluster topic, not to the asking
    /// node's inbox: a receiver may take one topic's messages before another's (NATS forwards
    /// each subscription on its own), and a snapshot must not overtake, or be overtaken by, this
    /// node's presence updates, or a user who left meanwhile stays online there for good.
    fn publish_presence_snapshot(&self) {
        let users = self.presence.counts_of_node(&self.config.node_id);
        self.publish(Topic::Cluster, &BusHeader::PresenceSnapshot { users, since: now_millis() }, None);
    }

    /// Forgets what a node held (it left, died or started anew); its users go offline unless
    /// online elsewhere.
    pub(crate) fn forget_node(&self, node: &str) {
        let gone = self.presence.remove_node(node);
        self.room_sizes.forget_node(node);
        tracing::info!(node, users = gone.len(), "node gone");
        // One node reports the dead node's users gone: the live one with the smallest id.
        let reporter = self
            .directory
            .list()
            .iter()
            .filter(|other| other.id != node)
            .all(|other| other.id.as_str() > self.config.node_id.as_str());
        let now = crate::now_millis();
        for user in gone {
            if reporter && self.hooks.is_open() && !self.presence.is_online(&user) {
                self.hooks.emit(crate::hooks::HookEvent::UserOffline { user: user.to_string(), ts: now });
            }
            self.announce_presence(&user, PresenceChange::WentOffline);
        }
    }

    pub(crate) fn handle_bus_message(self: &Arc<Self>, message: BusMessage) {
        self.peers_seen.store(true, Ordering::Relaxed);
        let from = message.from_node.as_str();
        self.bus.counters().received.fetch_add(1, Ordering::Relaxed);
        let Some((incarnation, header, frame_bytes)) = cluster::decode(&message.payload) else {
            self.metrics.bus_received.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = %message.from_node, "undecodable bus message dropped");
            return;
        };
        // The word-count gossip has its own counter, so that this one shows what routing sends.
        let received = match header {
            BusHeader::Words { .. } => &self.metrics.bus_gossip_received,
            _ => &self.metrics.bus_received,
        };
        received.fetch_add(1, Ordering::Relaxed);
        let frame = || WireFrame::text(&frame_bytes);
        let info = match &header {
            BusHeader::Heartbeat { info } => Some(info.clone()),
            _ => None,
        };
        if matches!(
            header,
            BusHeader::UserMessage { .. }
                | BusHeader::RoomMessage { .. }
                | BusHeader::UserEvent { .. }
                | BusHeader::RoomEvent { .. }
                | BusHeader::Broadcast
                | BusHeader::Membership { .. }
        ) {
            self.metrics.bus_chat_received.fetch_add(1, Ordering::Relaxed);
        }
        let heard = self.directory.heard(from, incarnation, info, Instant::now());
        match heard {
            Heard::Retired => {
                // A node that left waits for this answer to know its farewell was heard.
                if let BusHeader::Fence { round } = header {
                    self.publish(Topic::Node(message.from_node), &BusHeader::FenceAnswer { round }, None);
                }
                return;
            }
            Heard::Restarted => {
                tracing::info!(node = from, "node restarted");
                self.forget_node(from);
            }
            Heard::New | Heard::Known => {}
        }
        if heard != Heard::Known
            && !matches!(
                header,
                BusHeader::NodeJoined
                    | BusHeader::LinkRestored { .. }
                    | BusHeader::NodeLeft
                    | BusHeader::PresenceSnapshot { .. }
            )
        {
            // A node we did not know (new to us, started anew, or back after we declared it dead):
            // ask for its users.
            tracing::info!(node = from, "node appeared");
            self.publish(Topic::Node(from.to_owned()), &BusHeader::NodeJoined, None);
        }
        match header {
            BusHeader::UserMessage { users, conv, seq } => {
                if seq == 1 {
                    if let Ok(switchboard_protocol::ConvId::Direct { low, high }) =
                        switchboard_protocol::ConvId::parse(&conv)
                    {
                        self.conversation_started(&low, &high, seq);
                    }
                }
                let frame = frame();
                let mut reached = 0;
                // One user per publication (its topic's): nothing to deduplicate.
                for user in &users {
                    reached += self.hub.deliver_to_user(user, &conv, seq, &frame, None);
                }
                self.metrics.deliveries.fetch_add(reached as u64, Ordering::Relaxed);
            }
            BusHeader::RoomMessage { room, conv, seq } => {
                let reached = self.hub.deliver_to_room(&room, &conv, seq, &frame(), None);
                self.metrics.deliveries.fetch_add(reached as u64, Ordering::Relaxed);
            }
            BusHeader::UserEvent { users } => {
                let frame = frame();
                for user in users {
                    self.hub.event_to_user(&user, &frame, None);
                }
            }
            BusHeader::RoomEvent { room, skip_user, for_logins_until } => {
                self.hub.event_to_room(&room, &frame(), skip_user.as_deref(), for_logins_until);
            }
            BusHeader::RoomSize { room, members, counted_at, online } => {
                self.room_size_heard(&room, from, members, counted_at, online);
            }
            BusHeader::Broadcast => {
                self.hub.event_to_everyone(&frame());
            }
            BusHeader::Disconnect { user } => {
                self.disconnect_local(&user);
            }
            BusHeader::Presence { user, connections, since } => {
                let change = self.presence.set(&message.from_node, &user, connections, since);
                self.announce_presence(&user, change);
            }
            BusHeader::PresenceSnapshot { users, since } => {
                for (user, change) in self.presence.replace_node(from, &users, since) {
                    self.announce_presence(&user, change);
                }
            }
            BusHeader::LinkRestored { lost_publications, last_lost_at } => {
                self.publish_presence_snapshot();
                if lost_publications {
                    self.access.clear();
                    // Unknown (0) means any time; the margin covers the nodes' clock skew.
                    let missed_until = if last_lost_at > 0 { last_lost_at + CLOCK_SKEW_MARGIN_MS } else { i64::MAX };
                    self.ask_clients_to_resume(missed_until);
                }
            }
            BusHeader::Heartbeat { .. } => {}
            BusHeader::NodeLeft => {
                self.directory.leave(from, incarnation);
                self.forget_node(from);
            }
            BusHeader::Membership { user, room, joined: true, seq } => self.joined_elsewhere(&user, &room, seq),
            BusHeader::Membership { user, room, joined: false, .. } => {
                if self.hub.leave_room(&user, &room) {
                    self.room_listeners_changed(&room);
                }
            }
            BusHeader::Fence { round } => {
                self.publish(Topic::Node(message.from_node), &BusHeader::FenceAnswer { round }, None);
            }
            BusHeader::FenceAnswer { round } => self.fences.answered(from, round),
            BusHeader::NodeJoined => self.publish_presence_snapshot(),
            BusHeader::RoomRules { .. } | BusHeader::Blocks { .. } => self.access_heard(&header),
            BusHeader::Words { seconds } => {
                let now_secs = (now_millis() / 1000) as u64;
                for (second, words) in &seconds {
                    self.popular.merge(*second, words, now_secs);
                }
            }
        }
    }

    /// Sends the others this node's word counts since the last batch: a few bus messages a second
    /// at most, whatever the message rate.
    fn publish_word_counts(&self) {
        let now_secs = (now_millis() / 1000) as u64;
        let mut batch = Vec::new();
        let mut words_in_batch = 0;
        for (second, words) in self.popular.take_unsent(now_secs) {
            for chunk in words.chunks(WORDS_PER_GOSSIP) {
                if words_in_batch + chunk.len() > WORDS_PER_GOSSIP {
                    let seconds = std::mem::take(&mut batch);
                    self.publish(Topic::Cluster, &BusHeader::Words { seconds }, None);
                    words_in_batch = 0;
                }
                words_in_batch += chunk.len();
                batch.push((second, chunk.to_vec()));
            }
        }
        if !batch.is_empty() {
            self.publish(Topic::Cluster, &BusHeader::Words { seconds: batch }, None);
        }
    }
}

/// Word counts per gossip message at most, to keep each bus payload well under the brokers'
/// limits (NATS: 1 MB) with words of up to 40 characters.
const WORDS_PER_GOSSIP: usize = 2_000;

/// How often a node sends its word counts to the others.
const GOSSIP_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn run_bus_publisher(
    bus: Arc<dyn Bus>,
    mut outbox: mpsc::Receiver<(Topic, bytes::Bytes)>,
    lost_publications: Arc<AtomicI64>,
) {
    let mut failures_in_a_row: u64 = 0;
    while let Some((topic, payload)) = outbox.recv().await {
        match bus.publish(topic, payload).await {
            Ok(()) => failures_in_a_row = 0,
            Err(error) => {
                lost_publications.fetch_max(now_millis(), Ordering::Relaxed);
                failures_in_a_row += 1;
                // One line per outage, not one per message.
                if failures_in_a_row == 1 {
                    tracing::warn!(%error, "bus publication failed; clients will be asked to resume when it is back");
                }
            }
        }
    }
}

/// Heartbeats out, dead nodes out: every node is heard from at least every heartbeat interval,
/// and one silent for `node_timeout` is forgotten with its users.
pub(crate) async fn run_cluster_upkeep(shared: Weak<NodeShared>) {
    let tick = {
        let Some(shared) = shared.upgrade() else { return };
        (shared.config.heartbeat_interval / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat: Option<Instant> = None;
    let mut last_gossip = Instant::now();
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        // The others judge this node by its last heartbeat, not by when it last ran.
        let silent_for = last_heartbeat.map_or(Duration::ZERO, |at| now.duration_since(at));
        if silent_for > shared.config.node_timeout && shared.has_peers() {
            // This node sent nothing for longer than the node timeout (stopped, swapped out,
            // frozen): the others may have declared it dead.
            shared.stalled(silent_for);
        }
        shared.repair_dropped();
        shared.announce_lost_publications();
        if last_heartbeat.is_none_or(|at| now.duration_since(at) >= shared.config.heartbeat_interval) {
            last_heartbeat = Some(now);
            shared.publish(Topic::Cluster, &BusHeader::Heartbeat { info: shared.own_info() }, None);
        }
        shared.announce_coalesced_rooms();
        if now.duration_since(last_gossip) >= GOSSIP_INTERVAL {
            last_gossip = now;
            shared.publish_word_counts();
        }
        for node in shared.directory.expire(shared.config.node_timeout, now) {
            tracing::warn!(node = %node, timeout_ms = shared.config.node_timeout.as_millis() as u64, "node timed out");
            shared.forget_node(&node);
        }
    }
}

pub(crate) async fn run_bus_listener(shared: Weak<NodeShared>, mut incoming: mpsc::Receiver<BusEvent>) {
    loop {
        let event = match incoming.try_recv() {
            Ok(event) => event,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                let Some(node) = shared.upgrade() else { return };
                node.directory.inbound(true, Instant::now());
                drop(node);
                let Some(event) = incoming.recv().await else { return };
                let Some(node) = shared.upgrade() else { return };
                node.directory.inbound(false, Instant::now());
                event
            }
        };
        let Some(shared) = shared.upgrade() else { return };
        match event {
            BusEvent::Message(message) => shared.handle_bus_message(message),
            BusEvent::Reconnected => {
                shared.bus_link_down.store(false, Ordering::Relaxed);
                shared.link_restored("bus reconnected");
            }
            BusEvent::Disconnected => {
                shared.bus_link_down.store(true, Ordering::Relaxed);
                // Publications queued inside the bus when the link broke may be gone without an
                // error to show for it: count the outage itself as lost publications.
                shared.lost_publications.fetch_max(now_millis(), Ordering::Relaxed);
                tracing::warn!(node = %shared.config.node_id, "bus link lost");
            }
        }
    }
}
