//! What crosses the bus between nodes.
//!
//! A bus payload is a small JSON line, `[incarnation, header]`, then the already-encoded client
//! frame (when there is one). The receiving node wraps the frame bytes once and hands them to its
//! hub, so a frame is encoded once on the sending node and once per receiving node, never per
//! recipient.
//!
//! The incarnation tells one start of a node from the next under the same id: when a node id
//! speaks with a new incarnation, the old one is dead and everything it held goes with it, even
//! if it came back faster than the node timeout; and an incarnation that said [`BusHeader::NodeLeft`]
//! stays gone, whatever of it still arrives.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The header of a bus payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum BusHeader {
    /// A conversation message for these users' connections on the receiving node.
    UserMessage { users: Vec<String>, conv: String, seq: u64 },
    /// A room message for the room's connections on the receiving node.
    RoomMessage { room: String, conv: String, seq: u64 },
    /// An event (typing, read marker) for these users' connections.
    UserEvent { users: Vec<String> },
    /// An event (member joined or left, typing) for the room's connections, except those of
    /// `skip_user`.
    RoomEvent {
        room: String,
        skip_user: Option<String>,
        /// Only for connections logged in by then (ms): a small room's member event that
        /// reaches a node late (a login storm behind it on the bus) is no news to the members who
        /// came since, and in a room growing by a thousand a second they are most of it.
        #[serde(default)]
        for_logins_until: Option<i64>,
    },
    /// An event for every logged-in connection on the receiving node (a room was created).
    Broadcast,
    /// How many connections the sending node holds for a user now (0: none).
    Presence { user: String, connections: u32, since: i64 },
    /// Every user the sending node holds, with counts: sent to every node (on the cluster topic,
    /// in order with its presence updates) when a node joins or its link comes back.
    PresenceSnapshot { users: Vec<(String, u32)>, since: i64 },
    /// A node joined (or came back) and asks the receivers for their presence snapshots.
    NodeJoined,
    /// A node's link to the cluster was interrupted (its bus link dropped, or the node itself was
    /// stalled past the node timeout) and is back. Receivers answer with their presence snapshot;
    /// when some of the sender's publications failed meanwhile, their clients may have missed
    /// messages, so they ask them to resume: those connected by `last_lost_at` (the sender's clock,
    /// ms) at most, as a later login's sync read what the lost publications carried.
    LinkRestored {
        lost_publications: bool,
        #[serde(default)]
        last_lost_at: i64,
    },
    /// A node is alive; sent every heartbeat interval.
    Heartbeat { info: NodeInfo },
    /// A node is shutting down: forget its users now rather than at its timeout, and ignore this
    /// incarnation from now on (but answer its last fence, which tells it the others heard this).
    NodeLeft,
    /// A user joined or left a room on another node: their connections here follow. `seq` is
    /// where a join's answer ended (none: follow from the live stream on).
    Membership {
        user: String,
        room: String,
        joined: bool,
        #[serde(default)]
        seq: Option<u64>,
    },
    /// Asks every node to answer once it has handled what the sender published before it.
    Fence { round: u64 },
    /// The answer to a fence, to the node that sent it.
    FenceAnswer { round: u64 },
    /// A big room's member count (counted at `counted_at`, ms) and the sender's members online in
    /// it: see `room_size`.
    RoomSize { room: String, members: u64, counted_at: i64, online: u64 },
    /// Close this user's connections on the receiving node (the server API's disconnect).
    Disconnect { user: String },
    /// The sending node's word counts of room talk since its last batch, by second, for every
    /// node's `popular` (see [`crate::popular`]). Gossip, not chat: not counted as bus messages.
    Words { seconds: Vec<crate::popular::SecondCounts> },
    /// A room's rules (private, moderators, muted) changed in the store: forget them.
    RoomRules { room: String },
    /// Whom a user blocks changed in the store: forget it.
    Blocks { user: String },
}

/// What a node tells the cluster about itself, and what the gateway lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// Where clients reach it: its public WebSocket URL.
    pub url: String,
    /// Logged-in connections it holds; the gateway's load figure.
    pub connections: u64,
    /// When it started (ms since the Unix epoch).
    pub started_at: i64,
}

/// Incarnations remembered as gone, per node id: a few are enough, since a node's next start
/// replaces the last one.
const RETIRED_PER_NODE: usize = 4;

/// The other live nodes, as last heard from.
#[derive(Default)]
pub struct NodeDirectory {
    nodes: Mutex<Directory>,
    /// Since when this node's bus listener has had messages waiting (`None`: it is waiting for
    /// one). A node behind on its own inbound queue has not read the heartbeats queued in it: the
    /// silence it sees is its own lag, and expiring the others for it makes everything worse
    /// (their users go offline and come back, with the presence and room counts that follow).
    behind_since: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Directory {
    live: HashMap<String, KnownNode>,
    /// Incarnations that left or were replaced by a newer start: nothing of theirs counts.
    retired: HashMap<String, VecDeque<u64>>,
}

struct KnownNode {
    incarnation: u64,
    info: Option<NodeInfo>,
    last_heard: Instant,
}

/// What a message says about its sender, beyond what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// A live node, as known.
    Known,
    /// A node not known (first heard, or back after it timed out).
    New,
    /// A new start of a live node: the incarnation it replaced is dead, with what it held.
    Restarted,
    /// An incarnation that left or was replaced: ignore it.
    Retired,
}

impl Directory {
    fn retire(&mut self, node: &str, incarnation: u64) {
        let retired = self.retired.entry(node.to_owned()).or_default();
        if !retired.contains(&incarnation) {
            if retired.len() == RETIRED_PER_NODE {
                retired.pop_front();
            }
            retired.push_back(incarnation);
        }
    }
}

impl NodeDirectory {
    /// Records that incarnation `incarnation` of `node` spoke.
    pub fn heard(&self, node: &str, incarnation: u64, info: Option<NodeInfo>, now: Instant) -> Heard {
        let mut directory = self.nodes.lock();
        if directory.retired.get(node).is_some_and(|retired| retired.contains(&incarnation)) {
            return Heard::Retired;
        }
        let replaced = match directory.live.get_mut(node) {
            Some(known) if known.incarnation == incarnation => {
                known.last_heard = now;
                if info.is_some() {
                    known.info = info;
                }
                return Heard::Known;
            }
            Some(known) => Some(known.incarnation),
            None => None,
        };
        directory.live.insert(node.to_owned(), KnownNode { incarnation, info, last_heard: now });
        match replaced {
            Some(old) => {
                directory.retire(node, old);
                Heard::Restarted
            }
            None => Heard::New,
        }
    }

    /// The node said it leaves: forgets it and ignores that incarnation from now on. Returns
    /// whether it was live.
    pub fn leave(&self, node: &str, incarnation: u64) -> bool {
        let mut directory = self.nodes.lock();
        directory.retire(node, incarnation);
        let live = directory.live.get(node).is_some_and(|known| known.incarnation == incarnation);
        if live {
            directory.live.remove(node);
        }
        live
    }

    /// Removes and returns the nodes not heard from within `timeout`. They may come back (a
    /// stalled node resumes), so their incarnation is not retired.
    pub fn expire(&self, timeout: Duration, now: Instant) -> Vec<String> {
        // Everything that came in before the listener was last idle is handled: silence is
        // measured up to then.
        let now = self.behind_since.lock().map_or(now, |since| since.min(now));
        let mut directory = self.nodes.lock();
        let dead: Vec<String> = directory
            .live
            .iter()
            .filter(|(_, known)| now.saturating_duration_since(known.last_heard) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            directory.live.remove(id);
        }
        dead
    }

    /// The bus listener found its queue empty (`idle`) or took a message after waiting for one.
    pub fn inbound(&self, idle: bool, now: Instant) {
        *self.behind_since.lock() = if idle { None } else { Some(now) };
    }

    /// How long a live node has been silent; `None` for a node not live.
    pub fn silent_for(&self, node: &str, now: Instant) -> Option<Duration> {
        self.nodes.lock().live.get(node).map(|known| now.saturating_duration_since(known.last_heard))
    }

    /// Every node heard from and not expired, with or without a heartbeat yet.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.lock().live.keys().cloned().collect()
    }

    /// The live nodes that have sent a heartbeat.
    pub fn list(&self) -> Vec<NodeInfo> {
        self.nodes.lock().live.values().filter_map(|known| known.info.clone()).collect()
    }
}

/// Encodes a payload of this node's incarnation `incarnation`.
pub fn encode(incarnation: u64, header: &BusHeader, frame: Option<&Bytes>) -> Bytes {
    let header_json = serde_json::to_vec(&(incarnation, header)).unwrap_or_default();
    let frame_len = frame.map_or(0, Bytes::len);
    let mut out = BytesMut::with_capacity(header_json.len() + 1 + frame_len);
    out.put_slice(&header_json);
    out.put_u8(b'\n');
    if let Some(frame) = frame {
        out.put_slice(frame);
    }
    out.freeze()
}

/// Splits a payload into the sender's incarnation, the header and the frame bytes after it.
pub fn decode(payload: &Bytes) -> Option<(u64, BusHeader, Bytes)> {
    let newline = payload.iter().position(|byte| *byte == b'\n')?;
    let (incarnation, header) = serde_json::from_slice(&payload[..newline]).ok()?;
    Some((incarnation, header, payload.slice(newline + 1..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_nodes_expire_and_come_back_as_new() {
        let directory = NodeDirectory::default();
        let start = Instant::now();
        assert_eq!(directory.heard("n2", 7, None, start), Heard::New);
        assert_eq!(directory.heard("n2", 7, None, start + Duration::from_secs(1)), Heard::Known);
        assert_eq!(directory.silent_for("n2", start + Duration::from_secs(3)), Some(Duration::from_secs(2)));
        assert!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(5)).is_empty());
        assert_eq!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(7)), ["n2"]);
    }

    #[test]
    fn a_node_behind_on_its_inbound_queue_expires_nobody_for_its_own_lag() {
        let directory = NodeDirectory::default();
        let start = Instant::now();
        directory.heard("n2", 1, None, start);
        // The listener took a message at 1 s and has had more waiting ever since.
        directory.inbound(false, start + Duration::from_secs(1));
        assert!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(30)).is_empty());
        // Once it has caught up, the silence counts.
        directory.inbound(true, start + Duration::from_secs(31));
        assert_eq!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(31)), ["n2"]);
        assert_eq!(directory.heard("n2", 7, None, start + Duration::from_secs(8)), Heard::New, "back from a stall");
    }

    #[test]
    fn a_new_start_replaces_the_old_one_and_a_departure_is_final() {
        let directory = NodeDirectory::default();
        let now = Instant::now();
        assert_eq!(directory.heard("n2", 1, None, now), Heard::New);
        assert_eq!(directory.heard("n2", 2, None, now), Heard::Restarted, "restarted within the timeout");
        assert_eq!(directory.heard("n2", 1, None, now), Heard::Retired, "the old start is dead");
        assert_eq!(directory.heard("n2", 2, None, now), Heard::Known);
        assert!(directory.leave("n2", 2));
        assert!(directory.ids().is_empty());
        assert_eq!(directory.heard("n2", 2, None, now), Heard::Retired, "a heartbeat after the farewell");
        assert!(directory.ids().is_empty());
        assert_eq!(directory.heard("n2", 3, None, now), Heard::New, "the next start is welcome");
    }

    #[test]
    fn a_payload_round_trips_with_its_frame() {
        let header = BusHeader::RoomMessage { room: "lobby".into(), conv: "room:lobby".into(), seq: 3 };
        let frame = Bytes::from_static(b"{\"type\":\"message\",\"text\":\"a\\nb\"}");
        let payload = encode(u64::MAX, &header, Some(&frame));
        let (incarnation, decoded, rest) = decode(&payload).unwrap();
        assert_eq!((incarnation, decoded), (u64::MAX, header));
        assert_eq!(rest, frame);
        assert!(decode(&Bytes::from_static(b"garbage")).is_none());
    }
}
