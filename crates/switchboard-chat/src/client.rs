//! The interactive client: one task that owns the connection and reacts to frames, typed
//! commands, timers and signals. It reconnects with backoff and resumes with its cursors when the
//! connection drops, resends unacknowledged messages with their keys, fetches gaps, and keeps the
//! session file up to date (protocol §8 "What a client must do").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::commands::{Command, Target, HELP};
use crate::connection::{connect_and_login, Connected, LoginError, Ws, LOGIN_REF};
use crate::cursors::Cursors;
use crate::display::{self, clean, message_line, name_list, now_ms, str_of, Style};
use crate::session::{Saved, SessionStore};
use crate::terminal::{Current, Input, Printer};

/// The first reconnect delay, doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Silence after which the client pings, and after which it gives the connection up. The server
/// pings a client it has not heard from for 30 s, and answers every request, so a healthy
/// connection is never silent this long.
const QUIET: Duration = Duration::from_secs(40);
const DEAD: Duration = Duration::from_secs(75);
/// How long `/quit` waits for unacknowledged messages.
const QUIT_WAIT: Duration = Duration::from_secs(5);
/// How often the cursors are written to the session file at most.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Retries of a send refused for a passing reason (`store_unavailable`, `overloaded`, `rate_limited`).
const SEND_RETRIES: u32 = 5;
/// Names shown in an online list before "and N more".
const LIST_NAMES: usize = 30;

/// A request waiting for its answer, and what to do with it.
#[derive(Debug)]
enum Pending {
    Join,
    Leave(String),
    /// Listings gather their pages until `next_cursor` is null, then print once.
    Rooms(Vec<Value>),
    /// The search prefix ("" for all) and the users gathered so far.
    Users(String, Vec<(String, bool)>),
    Online(Vec<String>),
    Members(String, Vec<Value>),
    Conversations(Vec<Value>),
    History(Target),
    /// Fetching missed messages of a conversation after a gap or a sync with `more`.
    Fill(String),
    Stats,
    Popular,
    Whoami,
    Read,
    Ping,
    Logout,
}

impl Pending {
    /// The command to name when its answer was lost to a dropped connection.
    fn command(&self) -> Option<&'static str> {
        Some(match self {
            Pending::Join => "/join",
            Pending::Leave(_) => "/leave",
            Pending::Rooms(_) => "/rooms",
            Pending::Users(..) => "/users",
            Pending::Online(_) => "/online",
            Pending::Members(..) => "/members",
            Pending::Conversations(_) => "/conversations",
            Pending::History(_) => "/history",
            Pending::Stats => "/stats",
            Pending::Popular => "/popular",
            Pending::Whoami => "/whoami",
            Pending::Logout => "/logout",
            Pending::Fill(_) | Pending::Read | Pending::Ping => return None,
        })
    }
}

/// A message sent and not acknowledged yet.
#[derive(Debug)]
struct Outgoing {
    /// The `send` frame, with its `ref` and `key`.
    frame: Value,
    target: Target,
    /// Sent on the current connection.
    sent: bool,
    /// Queued while disconnected, or resent after a reconnect: say when it gets through.
    queued: bool,
    retries: u32,
    retry_at: Option<Instant>,
}

enum Event {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Connected(Box<Result<Connected, LoginError>>),
    Retry,
    Input(Option<Input>),
    Tick,
    Signal,
}

/// How the first login happened, for the first line printed.
pub enum Login {
    Registered,
    LoggedIn,
    Resumed,
}

pub struct Client {
    url: String,
    me: String,
    token: String,
    expires_at: u64,
    style: Style,
    out: Printer,
    inputs: UnboundedReceiver<Input>,
    inputs_open: bool,
    current: Current,
    store: Option<SessionStore>,
    cursors: Cursors,
    last_save: Instant,

    ws: Option<Ws>,
    node: String,
    connected_at: Instant,
    connecting: Option<JoinHandle<Result<Connected, LoginError>>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_heard: Instant,
    pinged: bool,

    /// The current connection has received `synced`: messages now are live.
    synced: bool,
    /// Conversations whose sync said `more`: paged with `history` after `synced`.
    more: Vec<String>,
    /// Conversations being filled.
    filling: HashSet<String>,
    pending: HashMap<u64, Pending>,
    outbox: BTreeMap<u64, Outgoing>,
    next_ref: u64,
    /// Read markers to set (the newest seq shown per conversation) and those set.
    reads: BTreeMap<String, u64>,
    reads_sent: HashMap<String, u64>,

    online: BTreeSet<String>,
    /// The online list being received after a login.
    online_list: Option<BTreeSet<String>>,

    quit_by: Option<Instant>,
    /// `/logout` was sent: the editor has stopped, the client waits for the answer and the close.
    logout_sent: bool,
    /// The logout was confirmed.
    logging_out: bool,
    exit: Option<anyhow::Result<()>>,
    tick: tokio::time::Interval,
    terminate: Option<Signal>,
    hangup: Option<Signal>,
    /// SIGINT from elsewhere (Ctrl-C at the prompt is a key the editor reads, not a signal).
    interrupt: Option<Signal>,
}

/// Everything the client starts with.
pub struct Start {
    pub url: String,
    pub connected: Connected,
    pub login: Login,
    pub style: Style,
    pub out: Printer,
    pub inputs: UnboundedReceiver<Input>,
    pub current: Current,
    pub store: Option<SessionStore>,
    pub cursors: Cursors,
}

impl Client {
    pub fn new(start: Start) -> Client {
        let Start { url, connected, login, style, out, inputs, current, store, cursors } = start;
        let session = &connected.session;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client = Client {
            url,
            me: str_of(session, "user").to_owned(),
            token: str_of(session, "token").to_owned(),
            expires_at: session["expires_at"].as_u64().unwrap_or(0),
            style,
            out,
            inputs,
            inputs_open: true,
            current,
            store,
            cursors,
            last_save: Instant::now(),
            ws: None,
            node: str_of(session, "node").to_owned(),
            connected_at: Instant::now(),
            connecting: None,
            retry_at: None,
            backoff: BACKOFF_START,
            last_heard: Instant::now(),
            pinged: false,
            synced: false,
            more: Vec::new(),
            filling: HashSet::new(),
            pending: HashMap::new(),
            outbox: BTreeMap::new(),
            next_ref: LOGIN_REF + 1,
            reads: BTreeMap::new(),
            reads_sent: HashMap::new(),
            online: BTreeSet::new(),
            online_list: None,
            quit_by: None,
            logout_sent: false,
            logging_out: false,
            exit: None,
            tick,
            terminate: signal(SignalKind::terminate()).ok(),
            hangup: signal(SignalKind::hangup()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        };
        let how = match login {
            Login::Registered => format!("registered {}", client.me),
            Login::LoggedIn => format!("logged in as {}", client.me),
            Login::Resumed => format!("resumed the session of {}", client.me),
        };
        client.notice(&format!("{how}, connected to node {} ({})", client.node, client.url));
        client.print(client.style.dim("/help lists the commands; /quit or Ctrl-D quits"));
        client.ws = Some(connected.ws);
        client
    }

    /// Runs until `/quit`, Ctrl-D, a signal or a fatal error; saves the session on the way out.
    pub async fn run(mut self) -> anyhow::Result<()> {
        while self.exit.is_none() {
            let event = self.next_event().await;
            self.handle(event).await;
            if self.quit_by.is_some() && !self.unanswered() {
                self.exit.get_or_insert(Ok(()));
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        if !self.logging_out {
            self.save();
        }
        self.out.finish();
        self.exit.take().unwrap_or(Ok(()))
    }

    async fn next_event(&mut self) -> Event {
        let retry_at = self.retry_at.map(tokio::time::Instant::from_std);
        tokio::select! {
            frame = next_frame(&mut self.ws), if self.ws.is_some() => Event::Frame(frame),
            done = join(&mut self.connecting), if self.connecting.is_some() => Event::Connected(Box::new(done)),
            _ = sleep_until(retry_at), if retry_at.is_some() => Event::Retry,
            input = self.inputs.recv(), if self.inputs_open => Event::Input(input),
            _ = self.tick.tick() => Event::Tick,
            _ = next_signal(&mut self.terminate) => Event::Signal,
            _ = next_signal(&mut self.hangup) => Event::Signal,
            _ = next_signal(&mut self.interrupt) => Event::Signal,
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Frame(Some(Ok(message))) => {
                self.last_heard = Instant::now();
                self.pinged = false;
                match message {
                    Message::Text(text) => match serde_json::from_str::<Value>(&text) {
                        Ok(frame) => self.frame(frame).await,
                        Err(_) => self.print(self.style.error("", "the server sent a frame that is not JSON")),
                    },
                    Message::Close(close) => {
                        let (code, reason) =
                            close.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                        self.lost(code, &reason);
                    }
                    _ => {}
                }
            }
            Event::Frame(Some(Err(error))) => self.lost(1006, &error.to_string()),
            Event::Frame(None) => self.lost(1006, "the connection ended"),
            Event::Connected(result) => {
                self.connecting = None;
                self.connected(*result).await;
            }
            Event::Retry => self.reconnect(),
            Event::Input(None) => {
                self.inputs_open = false;
                if !self.logout_sent {
                    self.begin_quit();
                }
            }
            Event::Input(Some(Input::Quit)) => {
                self.inputs_open = false;
                self.begin_quit();
            }
            Event::Input(Some(Input::Command(command))) => self.command(command).await,
            Event::Tick => self.tick().await,
            Event::Signal => {
                self.notice("terminated");
                self.exit = Some(Ok(()));
            }
        }
    }

    // ---- output

    fn print(&self, line: impl Into<String>) {
        self.out.print(line);
    }

    fn notice(&self, text: &str) {
        self.print(self.style.notice(text));
    }

    fn error(&self, frame: &Value) {
        self.print(self.style.error_frame(frame));
    }

    fn print_message(&self, message: &Value, replayed: bool) {
        let now = replayed.then(now_ms);
        self.print(message_line(&self.style, message, &self.me, now));
    }

    // ---- connection

    /// The connection is gone: drop what was waiting on it and schedule a reconnect.
    fn lost(&mut self, code: u16, reason: &str) {
        self.ws = None;
        self.synced = false;
        self.more.clear();
        self.filling.clear();
        self.online_list = None;
        let mut lost: Vec<&str> = self.pending.values().filter_map(Pending::command).collect();
        lost.sort_unstable();
        lost.dedup();
        self.pending.clear();
        for outgoing in self.outbox.values_mut() {
            outgoing.sent = false;
            outgoing.queued = true;
        }
        if self.logging_out {
            self.notice("logged out");
            self.exit = Some(Ok(()));
            return;
        }
        if self.logout_sent {
            self.exit = Some(Err(anyhow::anyhow!("the connection dropped before the logout was confirmed")));
            return;
        }
        if self.quit_by.is_some() {
            self.exit = Some(Ok(()));
            return;
        }
        if self.connected_at.elapsed() >= STABLE {
            self.backoff = BACKOFF_START;
        }
        let delay = self.schedule_retry(Duration::ZERO);
        let reason = if reason.is_empty() { String::new() } else { format!(" {}", clean(reason)) };
        self.notice(&format!("connection lost ({code}{reason}); reconnecting in {}", seconds(delay)));
        if !lost.is_empty() {
            self.print(self.style.dim(&format!("(no answer to {}: try again once reconnected)", lost.join(", "))));
        }
    }

    /// Sets the next reconnect attempt after the backoff (at least `at_least`); returns the delay.
    fn schedule_retry(&mut self, at_least: Duration) -> Duration {
        let jitter = rand::random::<f64>() * 0.4 + 0.8;
        let delay = self.backoff.mul_f64(jitter).max(at_least);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    fn reconnect(&mut self) {
        self.retry_at = None;
        let frame = json!({"type": "resume", "ref": LOGIN_REF, "token": self.token, "presence": true,
                           "cursors": self.cursors.snapshot()});
        let url = self.url.clone();
        self.connecting = Some(tokio::spawn(async move { connect_and_login(&url, frame).await }));
    }

    async fn connected(&mut self, result: Result<Connected, LoginError>) {
        match result {
            Ok(connected) => {
                self.node = str_of(&connected.session, "node").to_owned();
                self.ws = Some(connected.ws);
                self.connected_at = Instant::now();
                self.last_heard = Instant::now();
                self.pinged = false;
                self.notice(&format!("reconnected to node {} ({}), session resumed", self.node, self.url));
                let resend: Vec<Value> = self.outbox.values().map(|outgoing| outgoing.frame.clone()).collect();
                for frame in resend {
                    if !self.send(&frame).await {
                        return;
                    }
                }
                for outgoing in self.outbox.values_mut() {
                    outgoing.sent = true;
                }
            }
            Err(LoginError::Refused { code, message, .. }) if code == "invalid_token" => {
                if let Some(store) = &self.store {
                    store.forget_token(&self.me);
                }
                self.exit = Some(Err(anyhow::anyhow!(
                    "the session is no longer valid: {message} ({code}); run switchboard chat again to log in"
                )));
            }
            Err(LoginError::Refused { code, message, retry_after_ms }) => {
                let delay = self.schedule_retry(Duration::from_millis(retry_after_ms.unwrap_or(0)));
                self.print(self.style.error(&code, &message));
                self.notice(&format!("retrying in {}", seconds(delay)));
            }
            Err(LoginError::Failed(error)) => {
                let delay = self.schedule_retry(Duration::ZERO);
                let error = clean(&error.root_cause().to_string());
                self.notice(&format!("reconnect failed: {error}; retrying in {}", seconds(delay)));
            }
        }
    }

    /// Sends a frame on the current connection; false (and the connection counted lost) if that fails.
    async fn send(&mut self, frame: &Value) -> bool {
        let Some(ws) = self.ws.as_mut() else { return false };
        match ws.send(Message::Text(frame.to_string())).await {
            Ok(()) => true,
            Err(error) => {
                self.lost(1006, &error.to_string());
                false
            }
        }
    }

    /// Sends a request with a fresh `ref`, remembering what to do with the answer.
    async fn request(&mut self, mut frame: Value, pending: Pending) {
        if self.ws.is_none() {
            self.notice("not connected (reconnecting): try again in a moment");
            return;
        }
        let reference = self.next_ref();
        frame["ref"] = reference.into();
        self.pending.insert(reference, pending);
        self.send(&frame).await;
    }

    fn next_ref(&mut self) -> u64 {
        let reference = self.next_ref;
        self.next_ref += 1;
        reference
    }

    // ---- frames

    async fn frame(&mut self, frame: Value) {
        if let Some(reference) = frame["ref"].as_u64() {
            if self.outbox.contains_key(&reference) {
                self.send_answer(reference, frame);
            } else if let Some(pending) = self.pending.remove(&reference) {
                self.answer(reference, pending, frame).await;
            } else if frame["type"] == "error" {
                self.error(&frame);
            }
            return;
        }
        match frame["type"].as_str().unwrap_or_default() {
            "message" => self.message(&frame).await,
            "sync" => self.sync(&frame),
            "synced" => {
                self.synced = true;
                for conv in std::mem::take(&mut self.more) {
                    self.fill(&conv).await;
                }
            }
            "user_online" | "user_offline" => self.presence(&frame),
            "online" => self.online_list(&frame),
            "member_joined" | "member_left" => {
                let user = str_of(&frame, "user");
                if user != self.me {
                    let verb = if frame["type"] == "member_joined" { "joined" } else { "left" };
                    self.notice(&format!("{} {verb} room:{}", clean(user), clean(str_of(&frame, "room"))));
                }
            }
            "room_created" if str_of(&frame, "by") != self.me => self.notice(&format!(
                "room:{} created by {}",
                clean(str_of(&frame, "room")),
                clean(str_of(&frame, "by"))
            )),
            "rooms_created" => self.notice(&format!("{} new rooms (/rooms lists them)", frame["count"])),
            "error" => self.error(&frame),
            // hello, typing, read, and frame types of later protocol versions.
            _ => {}
        }
    }

    async fn message(&mut self, message: &Value) {
        let (Some(conv), Some(seq)) = (message["conv"].as_str(), message["seq"].as_u64()) else { return };
        if !self.cursors.observe(conv, seq) {
            return;
        }
        self.print_message(message, !self.synced);
        if message["from"] != self.me.as_str() {
            self.mark_read(conv);
        }
        if self.synced && self.cursors.gap(conv).is_some() {
            self.fill(conv).await;
        }
    }

    fn mark_read(&mut self, conv: &str) {
        if let Some(cursor) = self.cursors.get(conv) {
            self.reads.insert(conv.to_owned(), cursor);
        }
    }

    fn sync(&mut self, frame: &Value) {
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
    async fn fill(&mut self, conv: &str) {
        if self.filling.contains(conv) {
            return;
        }
        let (Some(target), Some(after)) = (Target::of_conv(conv, &self.me), self.cursors.get(conv)) else { return };
        let mut frame = json!({"type": "history", "after": after, "limit": 200});
        target.apply(&mut frame);
        self.filling.insert(conv.to_owned());
        self.request(frame, Pending::Fill(conv.to_owned())).await;
    }

    fn presence(&mut self, frame: &Value) {
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
    fn online_list(&mut self, frame: &Value) {
        let list = self.online_list.get_or_insert_with(BTreeSet::new);
        list.extend(strings(&frame["users"]));
        if frame["done"] == true {
            self.online = self.online_list.take().unwrap_or_default();
            let others: Vec<String> = self.online.iter().filter(|user| **user != self.me).cloned().collect();
            if others.is_empty() {
                self.notice("nobody else is online");
            } else {
                self.notice(&format!("online ({}): {}", others.len(), name_list(&others, LIST_NAMES)));
            }
        }
    }

    // ---- answers

    fn send_answer(&mut self, reference: u64, frame: Value) {
        if frame["type"] == "ack" {
            let Some(outgoing) = self.outbox.remove(&reference) else { return };
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
            let text = str_of(&outgoing.frame, "text");
            self.print(self.style.dim(&format!("(not sent to {}: {})", outgoing.target, clean(text))));
        }
    }

    async fn answer(&mut self, reference: u64, pending: Pending, frame: Value) {
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
            Pending::Join => {
                let room = clean(str_of(&frame, "room"));
                let history = frame["history"].as_array().cloned().unwrap_or_default();
                let verb = if frame["created"] == true { "created and joined" } else { "joined" };
                let shown = if history.is_empty() {
                    "no messages yet".to_owned()
                } else {
                    format!("its last {} message{}:", history.len(), if history.len() == 1 { "" } else { "s" })
                };
                self.notice(&format!("{verb} room:{room}: {shown}"));
                self.history_page(&format!("room:{}", str_of(&frame, "room")), &history);
            }
            Pending::Leave(room) => {
                let conv = format!("room:{room}");
                self.cursors.forget(&conv);
                self.reads.remove(&conv);
                let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *current == Some(Target::Room(room.clone())) {
                    *current = None;
                }
                drop(current);
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
                    let joined = if room["joined"] == true { ", joined" } else { "" };
                    let plural = if members == 1 { "" } else { "s" };
                    lines.push(format!("  room:{} ({members} member{plural}{joined})", clean(str_of(room, "name"))));
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
                        let online = if m["online"] == true { " (online)" } else { "" };
                        format!("{}{online}", clean(str_of(m, "user")))
                    })
                    .collect();
                self.print(format!(
                    "members of room:{} ({}): {}",
                    clean(str_of(&frame, "room")),
                    names.len(),
                    names.join(", ")
                ));
            }
            Pending::Conversations(mut conversations) => {
                conversations.extend(frame["conversations"].as_array().cloned().unwrap_or_default());
                if let Some(cursor) = frame["next_cursor"].as_str() {
                    let request = json!({"type": "conversations", "cursor": cursor});
                    self.request(request, Pending::Conversations(conversations)).await;
                    return;
                }
                if conversations.is_empty() {
                    self.print("no conversations yet");
                    return;
                }
                // Most recent first (the server pages them by id); rooms without messages last.
                conversations.sort_by_key(|conversation| std::cmp::Reverse(conversation["last_ts"].as_u64()));
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
            Pending::Read | Pending::Ping => {}
        }
    }

    /// Prints a page of messages with their ages, and takes it into the cursors.
    fn history_page(&mut self, conv: &str, messages: &[Value]) {
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

    // ---- commands

    async fn command(&mut self, command: Command) {
        match command {
            Command::Send { target, text } => self.send_message(target, text).await,
            Command::Switch(target) => {
                self.print(self.style.dim(&format!("now talking to {target}: lines without a command go there")))
            }
            Command::Join(room) => self.request(json!({"type": "join", "room": room}), Pending::Join).await,
            Command::Leave(room) => {
                self.request(json!({"type": "leave", "room": room.clone()}), Pending::Leave(room)).await
            }
            Command::Rooms => self.request(json!({"type": "rooms"}), Pending::Rooms(Vec::new())).await,
            Command::Users(prefix) => {
                let request = json!({"type": "users", "prefix": prefix, "limit": 1000});
                self.request(request, Pending::Users(prefix, Vec::new())).await
            }
            Command::Online => self.request(json!({"type": "online"}), Pending::Online(Vec::new())).await,
            Command::Members(room) => {
                self.request(json!({"type": "members", "room": room.clone()}), Pending::Members(room, Vec::new())).await
            }
            Command::Conversations => {
                self.request(json!({"type": "conversations"}), Pending::Conversations(Vec::new())).await
            }
            Command::History { target, limit } => {
                let mut frame = json!({"type": "history", "limit": limit});
                target.apply(&mut frame);
                self.request(frame, Pending::History(target)).await;
            }
            Command::Stats(user) => self.request(json!({"type": "stats", "user": user}), Pending::Stats).await,
            Command::Popular(n) => self.request(json!({"type": "popular", "n": n}), Pending::Popular).await,
            Command::Whoami => self.request(json!({"type": "whoami"}), Pending::Whoami).await,
            Command::Logout => {
                self.logout_sent = true;
                if self.ws.is_none() {
                    self.exit =
                        Some(Err(anyhow::anyhow!("not connected: could not log out (the session stays saved)")));
                    return;
                }
                self.request(json!({"type": "logout"}), Pending::Logout).await;
            }
            Command::Help => self.help(),
            Command::Quit => self.begin_quit(),
            Command::Nothing => {}
            Command::NoConversation => self
                .print("no current conversation: start one with /chat <user> text, /say <room> text or /join <room>"),
            Command::Usage(usage) => self.print(format!("usage: {usage}")),
            Command::Unknown(word) => {
                self.print(self.style.error("", &format!("unknown command {word}")));
                self.help();
            }
        }
    }

    fn help(&self) {
        let width = HELP.iter().map(|(usage, _)| usage.len()).max().unwrap_or(0);
        let mut lines = vec![self.style.bold("commands:")];
        lines.extend(HELP.iter().map(|(usage, what)| format!("  {usage:<width$}  {}", self.style.dim(what))));
        self.print(lines.join("\n"));
    }

    async fn send_message(&mut self, target: Target, text: String) {
        let reference = self.next_ref();
        let key = format!("{:032x}", rand::random::<u128>());
        let mut frame = json!({"type": "send", "ref": reference, "text": text, "key": key});
        target.apply(&mut frame);
        let connected = self.ws.is_some();
        let outgoing =
            Outgoing { frame: frame.clone(), target, sent: connected, queued: !connected, retries: 0, retry_at: None };
        self.outbox.insert(reference, outgoing);
        if connected {
            self.send(&frame).await;
        } else {
            self.notice("not connected: the message goes out once reconnected");
        }
    }

    /// Quits once the messages sent are acknowledged and the requests made are answered (within
    /// [`QUIT_WAIT`]), so that `/history` then `/quit`, or a script piped in, loses nothing.
    fn begin_quit(&mut self) {
        if self.quit_by.is_some() {
            return;
        }
        if !self.unanswered() || self.ws.is_none() {
            if !self.outbox.is_empty() {
                let count = self.outbox.len();
                self.notice(&format!("{count} message(s) not sent: the connection is down"));
            }
            self.exit = Some(Ok(()));
            return;
        }
        if !self.outbox.is_empty() {
            self.notice(&format!("waiting for {} message(s) to be acknowledged", self.outbox.len()));
        }
        self.quit_by = Some(Instant::now() + QUIT_WAIT);
    }

    fn unanswered(&self) -> bool {
        !self.outbox.is_empty() || self.pending.values().any(|pending| pending.command().is_some())
    }

    // ---- timers

    async fn tick(&mut self) {
        if self.quit_by.is_some_and(|deadline| Instant::now() >= deadline) {
            self.exit = Some(Ok(()));
            return;
        }
        if self.ws.is_some() {
            if self.last_heard.elapsed() >= DEAD {
                self.ws = None;
                self.lost(1006, "no answer from the server");
                return;
            }
            if self.last_heard.elapsed() >= QUIET && !self.pinged {
                self.pinged = true;
                self.request(json!({"type": "ping"}), Pending::Ping).await;
            }
            self.resend_due().await;
            if self.synced {
                self.flush_reads().await;
            }
        }
        if self.last_save.elapsed() >= SAVE_EVERY && self.cursors.take_dirty() {
            self.save();
        }
    }

    async fn resend_due(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .outbox
            .iter()
            .filter(|(_, outgoing)| !outgoing.sent && outgoing.retry_at.is_some_and(|at| at <= now))
            .map(|(reference, _)| *reference)
            .collect();
        for reference in due {
            let Some(outgoing) = self.outbox.get_mut(&reference) else { continue };
            outgoing.sent = true;
            outgoing.retry_at = None;
            let frame = outgoing.frame.clone();
            if !self.send(&frame).await {
                return;
            }
        }
    }

    /// Moves the read markers up to what was shown (protocol §6 `read`), so that other devices
    /// and the next login without cursors do not see it again as unread.
    async fn flush_reads(&mut self) {
        let changed: Vec<(String, u64)> = self
            .reads
            .iter()
            .filter(|(conv, seq)| self.reads_sent.get(*conv).is_none_or(|sent| sent < seq))
            .map(|(conv, seq)| (conv.clone(), *seq))
            .collect();
        for (conv, seq) in changed {
            let Some(target) = Target::of_conv(&conv, &self.me) else { continue };
            let mut frame = json!({"type": "read", "seq": seq});
            target.apply(&mut frame);
            self.reads_sent.insert(conv, seq);
            self.request(frame, Pending::Read).await;
        }
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        let Some(store) = &self.store else { return };
        let saved = Saved {
            url: self.url.clone(),
            user: self.me.clone(),
            token: Some(self.token.clone()),
            expires_at: self.expires_at,
            cursors: self.cursors.snapshot(),
        };
        if let Err(error) = store.save(&saved) {
            self.print(self.style.error("", &format!("saving the session: {error:#}")));
        }
    }
}

async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn join(connecting: &mut Option<JoinHandle<Result<Connected, LoginError>>>) -> Result<Connected, LoginError> {
    match connecting {
        Some(handle) => handle.await.unwrap_or_else(|error| Err(LoginError::Failed(error.into()))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_signal(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

fn seconds(delay: Duration) -> String {
    format!("{:.1}s", delay.as_secs_f64())
}

fn expires_in(secs: u64) -> String {
    match secs {
        0..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
