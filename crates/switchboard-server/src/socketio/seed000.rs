//! Seed 000's dialect (socket.io-client 1.x, multi-server chat without a database):
//! `identify "<user>"`, `im {from, to, text}` both ways, and `update_client {list}`.
//!
//! An `im` reaches every connection of `to` and of `from`, the sending socket included (the
//! seed's React client shows sent messages only from this echo): the native `message` covers the
//! others, and the native `ack` of the send becomes the sending socket's echo. `from` is the
//! session's user, never the payload's. `update_client`'s list is the union of the users online
//! on every node, the receiver included, sorted in UTF-16 code-unit order (JavaScript's default
//! sort), pushed whenever it changes.
//!
//! The seed's server keeps no history (its clients keep their own): an `im` reaches the
//! connections open when it is sent, and nothing is replayed to a connection that comes later.
//! So the messages of the login's sync (the unread ones, and seed 000's clients never mark
//! anything read) are not passed on as `im`; only live ones, which come after `synced`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::dialect::Dialect;

/// Sends waiting for their ack, for the echo; past this the oldest is forgotten.
const MAX_PENDING: usize = 256;

pub struct Seed000 {
    me: String,
    online: BTreeSet<String>,
    /// The text and recipient of each send in flight, by its `ref`.
    pending: HashMap<u64, (String, String)>,
    next_ref: u64,
    /// Whether the login's sync is over: `message` frames before it are not live.
    synced: bool,
}

impl Seed000 {
    pub fn new(me: String) -> Seed000 {
        let online = BTreeSet::from([me.clone()]);
        Seed000 { me, online, pending: HashMap::new(), next_ref: 0, synced: false }
    }

    fn update(&self) -> (&'static str, Value) {
        let mut list: Vec<&String> = self.online.iter().collect();
        list.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        ("update_client", json!({"list": list}))
    }
}

impl Dialect for Seed000 {
    fn event(&mut self, name: &str, data: Value) -> Vec<Value> {
        if name != "im" {
            return Vec::new();
        }
        let (Some(to), Some(text)) = (data["to"].as_str(), data["text"].as_str()) else { return Vec::new() };
        self.next_ref += 1;
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(self.next_ref, (to.to_owned(), text.to_owned()));
        vec![json!({"type": "send", "ref": self.next_ref, "to": to, "text": text})]
    }

    fn frame(&mut self, frame: &Value) -> Vec<(&'static str, Value)> {
        match frame["type"].as_str() {
            Some("synced") => {
                self.synced = true;
                Vec::new()
            }
            Some("message") if self.synced && frame["to"].is_string() => {
                vec![("im", json!({"from": frame["from"], "to": frame["to"], "text": frame["text"]}))]
            }
            Some("ack") => match frame["ref"].as_u64().and_then(|reference| self.pending.remove(&reference)) {
                Some((to, text)) => vec![("im", json!({"from": self.me, "to": to, "text": text}))],
                None => Vec::new(),
            },
            Some("error") => {
                frame["ref"].as_u64().map(|reference| self.pending.remove(&reference));
                Vec::new()
            }
            Some("online") => {
                let users = frame["users"].as_array().into_iter().flatten().filter_map(Value::as_str);
                self.online.extend(users.map(str::to_owned));
                if frame["done"].as_bool() == Some(false) {
                    Vec::new()
                } else {
                    vec![self.update()]
                }
            }
            Some("user_online") => match frame["user"].as_str() {
                Some(user) if self.online.insert(user.to_owned()) => vec![self.update()],
                _ => Vec::new(),
            },
            Some("user_offline") => match frame["user"].as_str() {
                Some(user) if user != self.me && self.online.remove(user) => vec![self.update()],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}
