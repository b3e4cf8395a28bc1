//! Where a durable message or an event goes: local connections and the other nodes that hold a
//! recipient; presence changes and who hears of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchboard_bus::Topic;
use switchboard_protocol::event::ServerFrame;
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::ConvId;
use switchboard_store::{EntryKind, StoredMessage};

use crate::cluster::BusHeader;
use crate::hooks::HookEvent;
use crate::node::NodeShared;
use crate::now_millis;
use crate::outbound::{ConnId, Connection};
use crate::pipeline;
use crate::presence::PresenceChange;

impl NodeShared {
    /// Fans a durable message out: to local connections (but the sending one) and to the other
    /// nodes that need it. Returns the number of local connections reached.
    pub(crate) fn fan_out(&self, message: &StoredMessage, skip: Option<ConnId>) -> usize {
        let view = pipeline::view_of(message);
        let frame = ServerFrame::Message(&view).encode();
        let conv = message.conv.as_str();
        if let Some(room) = &message.room {
            let reached = self.hub.deliver_to_room(room, conv, message.seq, &frame, skip);
            if self.has_peers() {
                let header =
                    BusHeader::RoomMessage { room: room.clone(), conv: message.conv.clone(), seq: message.seq };
                self.publish(Topic::Room(room.clone()), &header, Some(&frame));
            }
            return reached;
        }
        let Some(recipient) = &message.recipient else {
            return 0;
        };
        let sender = &message.sender;
        self.conversation_started(sender, recipient, message.seq);
        // A change to a message (an edit, a reaction) is no new message to tell the backend of.
        let is_message = message.kind == EntryKind::Message;
        if is_message && recipient != sender && self.hooks.is_open() && !self.presence.is_online(recipient) {
            self.hooks.emit(HookEvent::OfflineMessage {
                user: recipient.clone(),
                from: sender.clone(),
                conv: message.conv.clone(),
                id: message.id.clone(),
                seq: message.seq,
                text: message.text.clone(),
                ts: message.ts,
            });
        }
        let mut reached = self.hub.deliver_to_user(recipient, conv, message.seq, &frame, skip);
        if recipient != sender {
            reached += self.hub.deliver_to_user(sender, conv, message.seq, &frame, skip);
        }
        if self.has_peers() {
            // Each user's topic reaches the nodes holding that user's connections, whatever the
            // presence table here says yet: a device that logged in elsewhere a moment ago is
            // subscribed before its sync read, so this message is in its sync or reaches it here.
            for user in std::iter::once(recipient).chain((sender != recipient).then_some(sender)) {
                let header =
                    BusHeader::UserMessage { users: vec![user.clone()], conv: message.conv.clone(), seq: message.seq };
                self.publish(Topic::User(user.clone()), &header, Some(&frame));
            }
        }
        reached
    }

    /// Sends an event to a user's connections here (but `skip`) and on the other nodes holding them.
    pub(crate) fn event_to_user(&self, user: &str, frame: &WireFrame, skip: Option<ConnId>) {
        self.hub.event_to_user(user, frame, skip);
        if self.has_peers() {
            let header = BusHeader::UserEvent { users: vec![user.to_owned()] };
            self.publish(Topic::User(user.to_owned()), &header, Some(frame));
        }
    }

    /// Sends an event to a room's connections here and on other nodes, except `skip_user`'s.
    pub(crate) fn event_to_room(&self, room: &str, frame: &WireFrame, skip_user: Option<&str>) {
        self.room_event(room, frame, skip_user, None);
    }

    /// [`Self::event_to_room`], and with `for_logins_until` only to the connections (here and
    /// elsewhere) logged in by then (ms).
    pub(crate) fn room_event(
        &self,
        room: &str,
        frame: &WireFrame,
        skip_user: Option<&str>,
        for_logins_until: Option<i64>,
    ) {
        self.hub.event_to_room(room, frame, skip_user, for_logins_until);
        let header =
            BusHeader::RoomEvent { room: room.to_owned(), skip_user: skip_user.map(str::to_owned), for_logins_until };
        self.publish(Topic::Room(room.to_owned()), &header, Some(frame));
    }

    /// Records this node's connection count for a user and tells everyone who cares.
    pub(crate) fn local_presence_changed(&self, user: &str) {
        let count = self.hub.connections_of(user).len() as u32;
        let now = now_millis();
        self.user_connections_changed(user);
        let change = self.presence.set(&self.config.node_id, user, count, now);
        let since = self.presence.info(user).map_or(now, |info| info.since);
        self.publish(Topic::Cluster, &BusHeader::Presence { user: user.to_owned(), connections: count, since }, None);
        match change {
            PresenceChange::CameOnline => self.hooks.emit(HookEvent::UserOnline { user: user.to_owned(), ts: now }),
            PresenceChange::WentOffline => self.hooks.emit(HookEvent::UserOffline { user: user.to_owned(), ts: now }),
            PresenceChange::Unchanged => {}
        }
        self.announce_presence(user, change);
    }

    pub(crate) fn announce_presence(&self, user: &str, change: PresenceChange) {
        let frame = match change {
            PresenceChange::CameOnline => ServerFrame::UserOnline { user }.encode(),
            PresenceChange::WentOffline => ServerFrame::UserOffline { user }.encode(),
            PresenceChange::Unchanged => return,
        };
        self.watchers.event_about(user, &frame);
    }

    /// A private conversation's first message (`seq` 1) makes its two users contacts: their
    /// connections here that hear presence start hearing about each other, and learn whether the
    /// other is online now.
    pub(crate) fn conversation_started(&self, first: &str, second: &str, seq: u64) {
        if seq != 1 || first == second {
            return;
        }
        for (watcher, watched) in [(first, second), (second, first)] {
            let online = self.presence.is_online(watched);
            for connection in self.hub.connections_of(watcher) {
                if !self.watchers.hears_presence(connection.id) || self.watchers.watches_everyone(connection.id) {
                    continue;
                }
                let max = self.config.presence_watch_max;
                let added = self.watchers.watch(&connection, [watched], max).is_ok_and(|added| !added.is_empty());
                if added && online {
                    connection.push(ServerFrame::UserOnline { user: watched }.encode());
                }
            }
        }
    }

    /// Takes a connection out of the node and updates presence.
    pub(crate) fn end_connection(&self, connection: &Arc<Connection>) {
        let registration = self.hub.unregister(connection);
        self.watchers.remove(connection.id);
        for room in &registration.rooms_changed {
            self.room_listeners_changed(room);
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        self.local_presence_changed(&connection.user);
        connection.close();
    }

    /// Publishes a membership change to the other nodes holding the user's connections; a join's
    /// answer ended at `seq`.
    pub(crate) fn publish_membership(&self, user: &str, room: &str, joined: bool, seq: Option<u64>) {
        let header = BusHeader::Membership { user: user.to_owned(), room: room.to_owned(), joined, seq };
        self.publish(Topic::User(user.to_owned()), &header, None);
    }

    /// `user` joined `room` through another node, whose answer ended at `seq`: the user's
    /// connections here follow the room from there. What was committed between that join and
    /// this node listening (and, for a room new here, subscribed) never comes live: once
    /// subscribed it is read from the store, and what also came live is dropped as a duplicate.
    pub(crate) fn joined_elsewhere(self: &Arc<Self>, user: &str, room: &str, seq: Option<u64>) {
        if self.hub.is_in_room(user, room) {
            return;
        }
        if self.hub.join_room(user, room) {
            self.room_listeners_changed(room);
        }
        let connections = self.hub.connections_of(user);
        let Some(seq) = seq.filter(|_| !connections.is_empty()) else {
            return;
        };
        let conv = ConvId::room(room).to_string();
        for connection in &connections {
            connection.caught_up(&conv, seq);
        }
        let shared = self.clone();
        tokio::spawn(async move {
            shared.subscriptions_settled().await;
            let limit = shared.config.sync_limit_per_conv;
            let missed = match shared.store.messages_after(&conv, seq, limit).await {
                Ok(missed) => missed,
                Err(error) => {
                    // A later live message shows the gap, and the gap filler reads it again.
                    tracing::warn!(%error, %conv, "could not read what a join elsewhere missed here");
                    return;
                }
            };
            for message in &missed {
                let frame = ServerFrame::Message(&pipeline::view_of(message)).encode();
                for connection in &connections {
                    if connection.push_message(&conv, message.seq, frame.clone()).started_waiting {
                        shared.hub.gaps.watch(connection);
                    }
                }
            }
        });
    }
}
