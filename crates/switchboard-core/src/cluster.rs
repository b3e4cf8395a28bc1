//! What crosses the bus between nodes.
//!
//! A bus payload is a small JSON header, a newline, then the already-encoded client frame (when
//! there is one). The receiving node wraps the frame bytes once and hands them to its hub, so a
//! frame is encoded once on the sending node and once per receiving node, never per recipient.

use bytes::{BufMut, Bytes, BytesMut};
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
    /// A node joined and asks the others for their presence snapshots.
    NodeJoined,
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
