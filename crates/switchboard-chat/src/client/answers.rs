//! What the client does with the server's answers: to its sends (`ack`, retries, refusals) and to
//! its requests (listings gathered page by page, history, stats...).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{expires_in, strings, Client, Pending, SEND_RETRIES};
use crate::commands::Target;
use crate::display::{self, clean, message_line, name_list, now_ms, str_of};

impl Client {
    pub(super) fn send_answer(&mut self, reference: u64, frame: Value) {
        if frame["type"] == "ack" {
            let Some(outgoing) = self.outbox.remove(&reference) else { return };
            self.sent(&outgoing);
            if let (Some(conv), Some(seq)) = (frame["conv"].as_str(), frame["seq"].as_u64()) {
                self.cursors.observe(conv, seq);
                self.mark_read(conv);
            }
            if outgoing.queued {
                let text = str_of(&outgoing.frame, "text");
                self.notice(&format!("sent to {}: {}", outgoing.target, clean(text)));
            }
            return;
        }
        let code = str_of(&frame, "code");
        let passing = matches!(code, "store_unavailable" | "overloaded" | "rate_limited");
        if let Some(outgoing) = self.outbox.get_mut(&reference) {
            if passing && outgoing.retries < SEND_RETRIES {
                outgoing.retries += 1;
                outgoing.sent = false;
                outgoing.queued = true;
                let wait = frame["retry_after_ms"].as_u64().unwrap_or(1000).max(200);
                outgoing.retry_at = Some(Instant::now() + Duration::from_millis(wait));
                let note = format!("({}: retrying the message to {})", code, outgoing.target);
                self.print(self.style.dim(&note));
                return;
            }
        }
        if let Some(outgoing) = self.outbox.remove(&reference) {
            self.error(&frame);
            self.not_sent(&outgoing);
            let text = str_of(&outgoing.frame, "text");
            self.print(self.style.dim(&format!("(not sent to {}: {})", outgoing.target, clean(text))));
        }
    }

    pub(super) async fn answer(&mut self, reference: u64, pending: Pending, frame: Value) {
        if frame["type"] == "error" {
            match pending {
                Pending::Read | Pending::Ping => {}
                Pending::Fill(conv) => {
                    self.filling.remove(&conv);
                    self.cursors.skip_gap(&conv);
                }
                Pending::Logout => {
                    let (code, message) = (str_of(&frame, "code"), str_of(&frame, "message"));
                    self.exit = Some(Err(anyhow::anyhow!("logging out failed: {message} ({code})")));
                }
                _ => self.error(&frame),
            }
            return;
        }
        let style = self.style;
        match pending {
            Pending::Join(generation, _settle) => {
                if generation == self.switches {
                    self.set_current(Some(Target::Room(str_of(&frame, "room").to_owned())));
                }
                let room = clean(str_of(&frame, "room"));
                let history = frame["history"].as_array().cloned().unwrap_or_default();
                let verb = match (frame["created"] == true, frame["private"] == true) {
                    (true, true) => "created and joined the private",
                    (true, false) => "created and joined",
                    (false, true) => "joined the private",
                    (false, false) => "joined",
                };
                let shown = if history.is_empty() {
                    "no messages yet".to_owned()
                } else {
                    format!("its last {} message{}:", history.len(), if history.len() == 1 { "" } else { "s" })
                };
                self.notice(&format!("{verb} room:{room}: {shown}"));
                self.history_page(&format!("room:{}", str_of(&frame, "room")), &history);
            }
            Pending::Switch(target, generation, _settle) => self.switched(target, generation),
            Pending::Change(command) => {
                // This connection gets no `message` frame for its own change: the ack says it.
                if let (Some(conv), Some(seq)) = (frame["conv"].as_str(), frame["seq"].as_u64()) {
                    self.cursors.observe(conv, seq);
                }
                let done = match command {
                    "/edit" => "edited",
                    "/delete" => "deleted",
                    "/quote" => "sent",
                    _ => "reacted",
                };
                self.print(style.dim(&format!("({done}, #{})", frame["seq"])));
            }
            Pending::Leave(room, _settle) => {
                let conv = format!("room:{room}");
                self.cursors.forget(&conv);
                self.reads.remove(&conv);
                if self.current() == Some(Target::Room(room.clone())) {
                    self.set_current(None);
                }
                self.notice(&format!("left room:{}", clean(&room)));
            }
            Pending::Rooms(mut rooms) => {
                rooms.extend(frame["rooms"].as_array().cloned().unwrap_or_default());
                if let Some(cursor) = frame["next_cursor"].as_str() {
                    self.request(json!({"type": "rooms", "cursor": cursor}), Pending::Rooms(rooms)).await;
                    return;
                }
                if rooms.is_empty() {
                    self.print("no rooms yet: /join <room> creates one");
                }
                let mut lines = vec![style.bold(&format!("rooms ({}):", rooms.len()))];
                for room in &rooms {
                    let members = room["members"].as_u64().unwrap_or(0);
                    let joined = match room["role"].as_str() {
                        Some("member") => ", joined".to_owned(),
                        Some(role) => format!(", joined, {}", clean(role)),
                        None => String::new(),
                    };
                    let private = if room["private"] == true { ", private" } else { "" };
                    let plural = if members == 1 { "" } else { "s" };
                    let name = clean(str_of(room, "name"));
                    lines.push(format!("  room:{name} ({members} member{plural}{joined}{private})"));
                }
                if !rooms.is_empty() {
                    self.print(lines.join("\n"));
                }
            }
            Pending::Users(prefix, mut users) => {
                for user in frame["users"].as_array().into_iter().flatten() {
                    users.push((str_of(user, "user").to_owned(), user["online"] == true));
                }
                if let Some(cursor) = frame["next_cursor"].as_str() {
                    let request = json!({"type": "users", "prefix": prefix, "cursor": cursor, "limit": 1000});
                    self.request(request, Pending::Users(prefix, users)).await;
                    return;
                }
                if users.is_empty() && !prefix.is_empty() {
                    self.print(format!("no user's name starts with '{}'", clean(&prefix)));
                    return;
                }
                let online = users.iter().filter(|(_, online)| *online).count();
                let matching =
                    if prefix.is_empty() { String::new() } else { format!(" starting with '{}'", clean(&prefix)) };
                let mut lines = vec![style.bold(&format!("users{matching} ({}, {online} online):", users.len()))];
                for (user, online) in &users {
                    let user = style.user(&clean(user), &self.me);
                    lines.push(if *online { format!("  {user} (online)") } else { format!("  {user}") });
                }
                self.print(lines.join("\n"));
            }
            Pending::Online(mut users) => {
                users.extend(strings(&frame["users"]));
                if frame["done"] != true {
                    self.pending.insert(reference, Pending::Online(users));
                    return;
                }
                self.print(format!("online ({}): {}", users.len(), name_list(&users, usize::MAX)));
            }
            Pending::Members(room, mut members) => {
                members.extend(frame["members"].as_array().cloned().unwrap_or_default());
                if let Some(cursor) = frame["next_cursor"].as_str() {
                    let request = json!({"type": "members", "room": room, "cursor": cursor});
                    self.request(request, Pending::Members(room, members)).await;
                    return;
                }
                let names: Vec<String> = members
                    .iter()
                    .map(|m| {
                        let mut notes: Vec<String> = m["role"].as_str().map(clean).into_iter().collect();
                        if m["muted"] == true {
                            notes.push("muted".into());
                        }
                        if m["online"] == true {
                            notes.push("online".into());
                        }
                        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
                        format!("{}{notes}", clean(str_of(m, "user")))
                    })
                    .collect();
                self.print(format!(
                    "members of room:{} ({}): {}",
                    clean(str_of(&frame, "room")),
                    names.len(),
                    names.join(", ")
                ));
            }
            Pending::Conversations(mut listing) => {
                let page = frame["conversations"].as_array().cloned().unwrap_or_default();
                if listing.top.is_some() {
                    listing.top = Some(page);
                } else {
                    listing.entries.extend(page);
                    if let Some(cursor) = frame["next_cursor"].as_str() {
                        let request = json!({"type": "conversations", "cursor": cursor});
                        self.request(request, Pending::Conversations(listing)).await;
                        return;
                    }
                    if !listing.moved.is_empty() {
                        let request = json!({"type": "conversations", "limit": listing.moved.len()});
                        listing.top = Some(Vec::new());
                        self.request(request, Pending::Conversations(listing)).await;
                        return;
                    }
                }
                // The server's order, the newest (asked for last) on top; each conversation once.
                let mut seen = std::collections::HashSet::new();
                let conversations: Vec<Value> = listing
                    .top
                    .unwrap_or_default()
                    .into_iter()
                    .chain(listing.entries)
                    .filter(|entry| seen.insert(str_of(entry, "conv").to_owned()))
                    .collect();
                if conversations.is_empty() {
                    self.print("no conversations yet");
                    return;
                }
                let mut lines = vec![style.bold("conversations:")];
                let now = now_ms();
                let me = &self.me;
                lines
                    .extend(conversations.iter().map(|conversation| display::conversation_line(conversation, now, me)));
                self.print(lines.join("\n"));
            }
            Pending::History(target) => {
                let messages = frame["messages"].as_array().cloned().unwrap_or_default();
                if messages.is_empty() {
                    self.print(match &target {
                        Target::User(user) => format!("no messages with {} yet", clean(user)),
                        Target::Room(room) => format!("no messages in room:{} yet", clean(room)),
                    });
                    return;
                }
                let older = if frame["has_more"] == true { ", older ones exist" } else { "" };
                let plural = if messages.len() == 1 { "" } else { "s" };
                self.print(style.bold(&format!("history of {target}: {} message{plural}{older}", messages.len())));
                self.history_page(str_of(&frame, "conv"), &messages);
            }
            Pending::Fill(conv) => {
                self.filling.remove(&conv);
                let messages = frame["messages"].as_array().cloned().unwrap_or_default();
                let mut progress = false;
                for message in &messages {
                    let Some(seq) = message["seq"].as_u64() else { continue };
                    if self.cursors.observe(&conv, seq) {
                        progress = true;
                        self.print_message(message, true);
                    }
                }
                self.mark_read(&conv);
                let more = frame["has_more"] == true && !messages.is_empty();
                if more || (progress && self.cursors.gap(&conv).is_some()) {
                    self.fill(&conv).await;
                } else if self.cursors.gap(&conv).is_some() {
                    self.cursors.skip_gap(&conv);
                }
            }
            Pending::Watch => {
                for entry in frame["users"].as_array().cloned().unwrap_or_default() {
                    let user = str_of(&entry, "user");
                    let online = entry["online"] == true;
                    if online {
                        self.online.insert(user.to_owned());
                    }
                    let state = if online { "online" } else { "offline" };
                    self.print(format!("{} is {state}; you will be told when that changes", clean(user)));
                }
            }
            Pending::Stats => {
                let user = clean(str_of(&frame, "user"));
                if frame["online"] != true {
                    self.print(format!("{user} is offline"));
                    return;
                }
                let nodes = strings(&frame["nodes"]);
                let on = match nodes.len() {
                    0 => String::new(),
                    1 => format!(" on node {}", clean(&nodes[0])),
                    _ => format!(" on nodes {}", name_list(&nodes, usize::MAX)),
                };
                let connections = frame["connections"].as_u64().unwrap_or(0);
                let plural = if connections == 1 { "" } else { "s" };
                let online_for = match frame["online_for"].as_str() {
                    Some(text) => clean(text),
                    None => display::duration(frame["online_secs"].as_u64().unwrap_or(0)),
                };
                self.print(format!("{user} is online for {online_for}{on} ({connections} connection{plural})"));
            }
            Pending::Popular => {
                let seconds = frame["seconds"].as_u64().unwrap_or(60);
                let words: Vec<String> = frame["words"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| format!("{} ({})", clean(str_of(w, "word")), w["count"].as_u64().unwrap_or(0)))
                    .collect();
                if words.is_empty() {
                    self.print(format!("no words in room messages in the last {seconds}s"));
                } else {
                    self.print(format!("popular words in the last {seconds}s: {}", words.join(", ")));
                }
            }
            Pending::Whoami => {
                let connected = frame["connected_at"].as_u64().map(|ts| display::age(ts, now_ms()));
                let expires = self.expires_at.saturating_sub(now_ms()) / 1000;
                self.print(format!(
                    "{} on node {} (connection {}) at {}\n  connected {}, session expires in {}",
                    clean(str_of(&frame, "user")),
                    clean(str_of(&frame, "node")),
                    frame["conn"],
                    self.url,
                    connected.unwrap_or_default(),
                    expires_in(expires),
                ));
            }
            Pending::Logout => {
                self.logging_out = true;
                if let Some(store) = &self.store {
                    store.forget_token(&self.me);
                }
            }
            Pending::Done(done) => self.notice(&done),
            Pending::Blocked => {
                let users = strings(&frame["users"]);
                if users.is_empty() {
                    self.print("you block nobody");
                } else {
                    self.print(format!("you block ({}): {}", users.len(), name_list(&users, usize::MAX)));
                }
            }
            Pending::Read | Pending::Ping => {}
        }
    }

    /// Prints a page of messages with their ages, and takes it into the cursors.
    pub(super) fn history_page(&mut self, conv: &str, messages: &[Value]) {
        let first = messages.first().and_then(|m| m["seq"].as_u64()).unwrap_or(1);
        self.cursors.pick_up(conv, first.saturating_sub(1));
        let lines: Vec<String> =
            messages.iter().map(|m| message_line(&self.style, m, &self.me, Some(now_ms()))).collect();
        for message in messages {
            if let Some(seq) = message["seq"].as_u64() {
                self.cursors.observe(conv, seq);
            }
        }
        if !lines.is_empty() {
            self.print(lines.join("\n"));
        }
    }
}
