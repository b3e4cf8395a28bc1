//! The connections on this node, by user and by room, and local delivery to them.
//!
//! Locks here are held only for synchronous pushes into outbound queues, never across an await.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::ConvId;

use crate::gaps::GapWatch;
use crate::outbound::{ConnId, Connection};

/// The connections listening to one room on this node.
type RoomListeners = HashMap<ConnId, Arc<Connection>>;

/// A user's rooms here, sorted. Most users are in a few rooms: a sorted `Vec` costs one small
/// allocation where a hash set took about 100 bytes more per member of a huge room.
#[derive(Default)]
struct RoomSet(Vec<Arc<str>>);

impl RoomSet {
    fn contains(&self, room: &str) -> bool {
        self.0.binary_search_by(|name| (**name).cmp(room)).is_ok()
    }

    fn insert(&mut self, room: Arc<str>) {
        if let Err(index) = self.0.binary_search_by(|name| (**name).cmp(&*room)) {
            self.0.insert(index, room);
        }
    }

    fn remove(&mut self, room: &str) {
        if let Ok(index) = self.0.binary_search_by(|name| (**name).cmp(room)) {
            self.0.remove(index);
        }
    }
}

#[derive(Default)]
pub struct LocalHub {
    /// Every logged-in connection, by user.
    users: RwLock<HashMap<Arc<str>, Vec<Arc<Connection>>>>,
    /// Rooms with at least one member online here: their connections.
    rooms: RwLock<HashMap<Arc<str>, RoomListeners>>,
    /// Rooms of each user online here, so that a new connection or a departure touches only them.
    user_rooms: RwLock<HashMap<Arc<str>, RoomSet>>,
    /// Connections whose live stream waits for a missing seq.
    pub gaps: Arc<GapWatch>,
}

/// What changed in the node's view when a connection came or went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Registration {
    /// The user's first (or last) connection on this node.
    pub user_changed: bool,
    /// Rooms that got their first (or lost their last) connection on this node.
    pub rooms_changed: Vec<Arc<str>>,
}

impl LocalHub {
    /// Adds a connection, into the rooms its user is a member of.
    pub fn register(&self, connection: &Arc<Connection>, rooms: &[String]) -> Registration {
        let user = connection.user.clone();
        let mut registration = Registration::default();
        {
            let mut users = self.users.write();
            let connections = users.entry(user.clone()).or_default();
            registration.user_changed = connections.is_empty();
            connections.push(connection.clone());
        }
        // Users in no room get no entry: most idle connections cost nothing here.
        let user_rooms: Vec<Arc<str>> = {
            let mut all_user_rooms = self.user_rooms.write();
            if rooms.is_empty() && !all_user_rooms.contains_key(&user) {
                Vec::new()
            } else {
                let set = all_user_rooms.entry(user).or_default();
                let known = self.rooms.read();
                for room in rooms {
                    if !set.contains(room) {
                        set.insert(
                            known
                                .get_key_value(room.as_str())
                                .map_or_else(|| Arc::from(room.as_str()), |(name, _)| name.clone()),
                        );
                    }
                }
                set.0.clone()
            }
        };
        {
            let mut all_rooms = self.rooms.write();
            for room in user_rooms {
                let listeners = all_rooms.entry(room.clone()).or_default();
                if listeners.is_empty() {
                    registration.rooms_changed.push(room);
                }
                listeners.insert(connection.id, connection.clone());
            }
        }
        registration
    }

    /// Removes a connection.
    pub fn unregister(&self, connection: &Arc<Connection>) -> Registration {
        let user = &connection.user;
        let mut registration = Registration::default();
        {
            let mut users = self.users.write();
            if let Some(connections) = users.get_mut(user) {
                connections.retain(|other| other.id != connection.id);
                if connections.is_empty() {
                    users.remove(user);
                    registration.user_changed = true;
                }
            }
        }
        let user_rooms: Vec<Arc<str>> = {
            let mut all_user_rooms = self.user_rooms.write();
            let rooms = all_user_rooms.get(user).map(|set| set.0.clone()).unwrap_or_default();
            if registration.user_changed {
                all_user_rooms.remove(user);
            }
            rooms
        };
        {
            let mut all_rooms = self.rooms.write();
            for room in user_rooms {
                if let Some(listeners) = all_rooms.get_mut(&room) {
                    listeners.remove(&connection.id);
                    if listeners.is_empty() {
                        all_rooms.remove(&room);
                        registration.rooms_changed.push(room);
                    }
                }
            }
        }
        registration
    }

    /// Puts every local connection of `user` into `room`. Returns true when the room had no
    /// listener here before.
    pub fn join_room(&self, user: &str, room: &str) -> bool {
        let connections = self.connections_of(user);
        if connections.is_empty() {
            return false;
        }
        // One copy of the room's name and of the user's for all, not one per join: in a room of
        // 100k that is two allocations per member less.
        let shared = self.rooms.read().get_key_value(room).map(|(name, _)| name.clone());
        let room = shared.unwrap_or_else(|| Arc::from(room));
        let user = connections[0].user.clone();
        self.user_rooms.write().entry(user).or_default().insert(room.clone());
        let mut all_rooms = self.rooms.write();
        let listeners = all_rooms.entry(room).or_default();
        let first = listeners.is_empty();
        for connection in connections {
            listeners.insert(connection.id, connection);
        }
        first
    }

    /// Whether `user`'s connections here listen to `room`.
    pub fn is_in_room(&self, user: &str, room: &str) -> bool {
        self.user_rooms.read().get(user).is_some_and(|rooms| rooms.contains(room))
    }

    /// Takes every local connection of `user` out of `room`. Returns true when the room has no
    /// listener here any more.
    pub fn leave_room(&self, user: &str, room: &str) -> bool {
        if let Some(set) = self.user_rooms.write().get_mut(user) {
            set.remove(room);
        }
        let connections = self.connections_of(user);
        let mut all_rooms = self.rooms.write();
        let Some(listeners) = all_rooms.get_mut(room) else {
            return false;
        };
        let conv = ConvId::room(room).to_string();
        for connection in connections {
            listeners.remove(&connection.id);
            connection.forget_conversation(&conv);
        }
        if listeners.is_empty() {
            all_rooms.remove(room);
            return true;
        }
        false
    }

    pub fn connections_of(&self, user: &str) -> Vec<Arc<Connection>> {
        self.users.read().get(user).cloned().unwrap_or_default()
    }

    pub fn is_local(&self, user: &str) -> bool {
        self.users.read().contains_key(user)
    }

    pub fn is_member_here(&self, user: &str, room: &str) -> bool {
        self.user_rooms.read().get(user).is_some_and(|rooms| rooms.contains(room))
    }

    pub fn local_rooms_of(&self, user: &str) -> Vec<Arc<str>> {
        self.user_rooms.read().get(user).map(|rooms| rooms.0.clone()).unwrap_or_default()
    }

    /// Delivers a conversation message to every connection of `user` but `skip`. Returns the
    /// number of connections reached.
    pub fn deliver_to_user(&self, user: &str, conv: &str, seq: u64, frame: &WireFrame, skip: Option<ConnId>) -> usize {
        let users = self.users.read();
        let Some(connections) = users.get(user) else {
            return 0;
        };
        let mut reached = 0;
        for connection in connections.iter().filter(|c| Some(c.id) != skip) {
            let pushed = connection.push_message(conv, seq, frame.clone());
            if pushed.started_waiting {
                self.gaps.watch(connection);
            }
            if pushed.accepted {
                reached += 1;
            }
        }
        reached
    }

    /// Delivers a conversation message to every connection in `room` but `skip`.
    pub fn deliver_to_room(&self, room: &str, conv: &str, seq: u64, frame: &WireFrame, skip: Option<ConnId>) -> usize {
        let rooms = self.rooms.read();
        let Some(listeners) = rooms.get(room) else {
            return 0;
        };
        let mut reached = 0;
        for connection in listeners.values().filter(|c| Some(c.id) != skip) {
            let pushed = connection.push_message(conv, seq, frame.clone());
            if pushed.started_waiting {
                self.gaps.watch(connection);
            }
            if pushed.accepted {
                reached += 1;
            }
        }
        reached
    }

    /// Sends an event (not part of any conversation) to a user's connections but `skip`.
    pub fn event_to_user(&self, user: &str, frame: &WireFrame, skip: Option<ConnId>) -> usize {
        let users = self.users.read();
        let Some(connections) = users.get(user) else {
            return 0;
        };
        connections.iter().filter(|c| Some(c.id) != skip).filter(|c| c.push(frame.clone())).count()
    }

    /// Sends an event to a room's connections, except those of `skip_user` and, with
    /// `logged_in_by`, those that logged in after that time (ms).
    pub fn event_to_room(
        &self,
        room: &str,
        frame: &WireFrame,
        skip_user: Option<&str>,
        logged_in_by: Option<i64>,
    ) -> usize {
        let rooms = self.rooms.read();
        let Some(listeners) = rooms.get(room) else {
            return 0;
        };
        listeners
            .values()
            .filter(|c| Some(&*c.user) != skip_user && logged_in_by.is_none_or(|until| c.connected_at <= until))
            .filter(|c| c.push(frame.clone()))
            .count()
    }

    /// How many users have a connection in `room` here.
    pub fn room_online_users(&self, room: &str) -> usize {
        let rooms = self.rooms.read();
        let Some(listeners) = rooms.get(room) else {
            return 0;
        };
        listeners.values().map(|connection| &*connection.user).collect::<HashSet<&str>>().len()
    }

    /// The connections listening to `room` here.
    pub fn room_connections(&self, room: &str) -> Vec<Arc<Connection>> {
        self.rooms.read().get(room).map(|listeners| listeners.values().cloned().collect()).unwrap_or_default()
    }

    /// Sends an event to every logged-in connection here.
    pub fn event_to_everyone(&self, frame: &WireFrame) -> usize {
        self.users.read().values().flatten().filter(|c| c.push(frame.clone())).count()
    }

    /// Every connection, for shutdown.
    pub fn all_connections(&self) -> Vec<Arc<Connection>> {
        self.users.read().values().flatten().cloned().collect()
    }

    pub fn connection_count(&self) -> usize {
        self.users.read().values().map(Vec::len).sum()
    }

    /// Rooms with a listener here, for resubscribing after a bus reconnect.
    pub fn has_listeners(&self, room: &str) -> bool {
        self.rooms.read().get(room).is_some_and(|listeners| !listeners.is_empty())
    }

    pub fn rooms_with_listeners(&self) -> Vec<Arc<str>> {
        self.rooms.read().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: ConnId, user: &str) -> Arc<Connection> {
        Arc::new(Connection::new(id, user.into(), 0, 100, 1 << 20))
    }

    #[test]
    fn rooms_report_their_first_and_last_local_listener() {
        let hub = LocalHub::default();
        let first = connection(1, "a");
        let second = connection(2, "a");
        let registration = hub.register(&first, &["lobby".into()]);
        assert!(registration.user_changed);
        assert_eq!(registration.rooms_changed, vec![Arc::<str>::from("lobby")]);
        let registration = hub.register(&second, &["lobby".into()]);
        assert!(!registration.user_changed);
        assert!(registration.rooms_changed.is_empty());
        assert!(hub.unregister(&first).rooms_changed.is_empty());
        let registration = hub.unregister(&second);
        assert!(registration.user_changed);
        assert_eq!(registration.rooms_changed.len(), 1);
        assert_eq!(hub.connection_count(), 0);
    }

    #[test]
    fn room_delivery_skips_the_origin_and_reaches_joined_devices() {
        let hub = LocalHub::default();
        let a1 = connection(1, "a");
        let a2 = connection(2, "a");
        let b1 = connection(3, "b");
        hub.register(&a1, &[]);
        hub.register(&a2, &[]);
        hub.register(&b1, &["lobby".into()]);
        assert!(!hub.join_room("a", "lobby"), "b already listens here");
        let reached = hub.deliver_to_room("lobby", "room:lobby", 1, &WireFrame::text(b"x"), Some(1));
        assert_eq!(reached, 2);
        assert_eq!(a1.queued_frames(), 0);
        assert_eq!(a2.queued_frames(), 1);
        assert!(!hub.leave_room("a", "lobby"));
        assert!(hub.leave_room("b", "lobby"));
    }
}
