//! What crosses the bus between nodes.
//!
//! A bus payload is a small JSON header, a newline, then the already-encoded client frame (when
//! there is one). The receiving node wraps the frame bytes once and hands them to its hub, so a
//! frame is encoded once on the sending node and once per receiving node, never per recipient.

use std::collections::HashMap;
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
    RoomEvent { room: String, skip_user: Option<String> },
    /// How many connections the sending node holds for a user now (0: none).
    Presence { user: String, connections: u32, since: i64 },
    /// Every user the sending node holds, with counts: sent when a node joins.
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
    /// A node is shutting down: forget its users now rather than at its timeout.
    NodeLeft,
    /// A user joined or left a room on another node: their connections here follow.
    Membership { user: String, room: String, joined: bool },
    /// Asks every node to answer once it has handled what the sender published before it.
    Fence { round: u64 },
    /// The answer to a fence, to the node that sent it.
    FenceAnswer { round: u64 },
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

/// The other live nodes, as last heard from.
#[derive(Default)]
pub struct NodeDirectory {
    nodes: Mutex<HashMap<String, KnownNode>>,
}

struct KnownNode {
    info: Option<NodeInfo>,
    last_heard: Instant,
}

impl NodeDirectory {
    /// Records that `node` spoke; returns true when it was not known (new, or back after being
    /// declared dead).
    pub fn heard(&self, node: &str, info: Option<NodeInfo>, now: Instant) -> bool {
        let mut nodes = self.nodes.lock();
        match nodes.get_mut(node) {
            Some(known) => {
                known.last_heard = now;
                if info.is_some() {
                    known.info = info;
                }
                false
            }
            None => {
                nodes.insert(node.to_owned(), KnownNode { info, last_heard: now });
                true
            }
        }
    }

    /// Removes and returns the nodes not heard from within `timeout`.
    pub fn expire(&self, timeout: Duration, now: Instant) -> Vec<String> {
        let mut nodes = self.nodes.lock();
        let dead: Vec<String> = nodes
            .iter()
            .filter(|(_, known)| now.saturating_duration_since(known.last_heard) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            nodes.remove(id);
        }
        dead
    }

    /// Every node heard from and not expired, with or without a heartbeat yet.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.lock().keys().cloned().collect()
    }

    pub fn remove(&self, node: &str) -> bool {
        self.nodes.lock().remove(node).is_some()
    }

    /// The live nodes that have sent a heartbeat.
    pub fn list(&self) -> Vec<NodeInfo> {
        self.nodes.lock().values().filter_map(|known| known.info.clone()).collect()
    }
}

pub fn encode(header: &BusHeader, frame: Option<&Bytes>) -> Bytes {
    let header_json = serde_json::to_vec(header).unwrap_or_default();
    let frame_len = frame.map_or(0, Bytes::len);
    let mut out = BytesMut::with_capacity(header_json.len() + 1 + frame_len);
    out.put_slice(&header_json);
    out.put_u8(b'\n');
    if let Some(frame) = frame {
        out.put_slice(frame);
    }
    out.freeze()
}

/// Splits a payload into its header and the frame bytes after it.
pub fn decode(payload: &Bytes) -> Option<(BusHeader, Bytes)> {
    let newline = payload.iter().position(|byte| *byte == b'\n')?;
    let header = serde_json::from_slice(&payload[..newline]).ok()?;
    Some((header, payload.slice(newline + 1..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_nodes_expire_and_come_back_as_new() {
        let directory = NodeDirectory::default();
        let start = Instant::now();
        assert!(directory.heard("n2", None, start));
        assert!(!directory.heard("n2", None, start + Duration::from_secs(1)));
        assert!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(5)).is_empty());
        assert_eq!(directory.expire(Duration::from_secs(5), start + Duration::from_secs(7)), ["n2"]);
        assert!(directory.heard("n2", None, start + Duration::from_secs(8)), "a node back from the dead is new");
    }

    #[test]
    fn a_payload_round_trips_with_its_frame() {
        let header = BusHeader::RoomMessage { room: "lobby".into(), conv: "room:lobby".into(), seq: 3 };
        let frame = Bytes::from_static(b"{\"type\":\"message\",\"text\":\"a\\nb\"}");
        let payload = encode(&header, Some(&frame));
        let (decoded, rest) = decode(&payload).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(rest, frame);
        assert!(decode(&Bytes::from_static(b"garbage")).is_none());
    }
}
