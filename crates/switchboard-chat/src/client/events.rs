//! What the client does with the server's events: live messages (cursors, `/reply`, read
//! markers, gaps), the login's sync, presence and the online list.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{strings, Client, Pending, LIST_NAMES};
use crate::commands::Target;
use crate::display::{clean, name_list, str_of};

impl Client {
    pub(super) async fn message(&mut self, message: &Value) {
        let (Some(conv), Some(seq)) = (message["conv"].as_str(), message["seq"].as_u64()) else { return };
        if !self.cursors.observe(conv, seq) {
            return;
        }
        for pending in self.pending.values_mut() {
            if let Pending::Conversations(listing) = pending {
                if !listing.moved.iter().any(|moved| moved == conv) {
                    listing.moved.push(conv.to_owned());
                }
            }
        }
        self.print_message(message, !self.synced);
        let from = str_of(message, "from");
        if from != self.me {
            // A change to a message is no private message to `/reply` to.
            if message["room"].is_null() && message.get("kind").is_none() {
                self.private_from(from, self.synced);
            }
            self.mark_read(conv);
        }
        if self.synced && self.cursors.gap(conv).is_some() {
            self.fill(conv).await;
        }
    }

    pub(super) fn mark_read(&mut self, conv: &str) {
        if let Some(cursor) = self.cursors.get(conv) {
            self.reads.insert(conv.to_owned(), cursor);
        }
    }

    pub(super) fn sync(&mut self, frame: &Value) {
        let entries = frame["conversations"].as_array().cloned().unwrap_or_default();
        let mut total = 0;
        for entry in &entries {
            let Some(conv) = entry["conv"].as_str() else { continue };
            self.cursors.sync_start(conv, entry["from_seq"].as_u64().unwrap_or(0));
            total += entry["count"].as_u64().unwrap_or(0);
            if entry["more"] == true {
                self.more.push(conv.to_owned());
            }
        }
        if total > 0 {
            let plural = if total == 1 { "" } else { "s" };
            self.notice(&format!("catching up: {total} missed message{plural}"));
        }
    }

    /// Fetches the messages of `conv` after its cursor (a gap, or the rest of a sync).
    pub(super) async fn fill(&mut self, conv: &str) {
        if self.filling.contains(conv) {
            return;
        }
        let (Some(target), Some(after)) = (Target::of_conv(conv, &self.me), self.cursors.get(conv)) else { return };
        let mut frame = json!({"type": "history", "after": after, "limit": 200});
        target.apply(&mut frame);
        self.filling.insert(conv.to_owned());
        self.request(frame, Pending::Fill(conv.to_owned())).await;
    }

    pub(super) fn presence(&mut self, frame: &Value) {
        let Some(user) = frame["user"].as_str() else { return };
        let online = frame["type"] == "user_online";
        if let Some(list) = self.online_list.as_mut() {
            if online {
                list.insert(user.to_owned());
            } else {
                list.remove(user);
            }
        }
        let changed = if online { self.online.insert(user.to_owned()) } else { self.online.remove(user) };
        if changed && user != self.me {
            self.notice(&format!("{} is {}", clean(user), if online { "online" } else { "offline" }));
        }
    }

    /// The online list sent after a login (no `ref`): a new set once complete (protocol §7).
    pub(super) fn online_list(&mut self, frame: &Value) {
        let list = self.online_list.get_or_insert_with(BTreeSet::new);
        list.extend(strings(&frame["users"]));
        if frame["done"] == true {
            self.online = self.online_list.take().unwrap_or_default();
            let others: Vec<String> = self.online.iter().filter(|user| **user != self.me).cloned().collect();
            if others.is_empty() {
                self.notice("none of your contacts is online");
            } else {
                self.notice(&format!("contacts online ({}): {}", others.len(), name_list(&others, LIST_NAMES)));
            }
        }
    }
}
