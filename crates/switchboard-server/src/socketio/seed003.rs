//! Seed 003's dialect (socket.io-client 1.x, multi-room chat): `?roomid=` on the handshake,
//! `join {username}`, `say {text}`, and one `message {event, data}` event carrying `join`,
//! `broadcast_say` and `broadcast_quit` to the whole room, the sender included.
//!
//! Room membership follows the connection, as in the seed: `join` is a native `join` of the
//! room, and the socket's end a native `leave`, whose `member_left` is the others'
//! `broadcast_quit`. The sender's own `broadcast_say` comes from the native `ack` of its send.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::dialect::Dialect;

/// Sends waiting for their ack, for the echo; past this the oldest are forgotten.
const MAX_PENDING: usize = 256;

pub struct Seed003 {
    me: String,
    room: String,
    pending: HashMap<u64, String>,
    next_ref: u64,
}

impl Seed003 {
    pub fn new(me: String, room: String) -> Seed003 {
        Seed003 { me, room, pending: HashMap::new(), next_ref: 0 }
    }

    fn in_room(&self, frame: &Value) -> bool {
        frame["room"].as_str() == Some(self.room.as_str())
    }
}

impl Dialect for Seed003 {
    fn event(&mut self, name: &str, data: Value) -> Vec<Value> {
        let Some(text) = data["text"].as_str().filter(|_| name == "say") else { return Vec::new() };
        self.next_ref += 1;
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(self.next_ref, text.to_owned());
        vec![json!({"type": "send", "ref": self.next_ref, "room": self.room, "text": text})]
    }

    fn frame(&mut self, frame: &Value) -> Vec<(&'static str, Value)> {
        let said = |user: &Value, text: &Value| {
            ("message", json!({"event": "broadcast_say", "data": {"username": user, "text": text}}))
        };
        match frame["type"].as_str() {
            Some("member_joined") if self.in_room(frame) => {
                vec![("message", json!({"event": "join", "data": {"username": frame["user"]}}))]
            }
            Some("member_left") if self.in_room(frame) && frame["user"].as_str() != Some(self.me.as_str()) => {
                vec![("message", json!({"event": "broadcast_quit", "data": {"username": frame["user"]}}))]
            }
            Some("message") if self.in_room(frame) => vec![said(&frame["from"], &frame["text"])],
            Some("ack") => match frame["ref"].as_u64().and_then(|reference| self.pending.remove(&reference)) {
                Some(text) => vec![said(&Value::String(self.me.clone()), &Value::String(text))],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn farewell(&mut self) -> Vec<Value> {
        vec![json!({"type": "leave", "room": self.room})]
    }
}
