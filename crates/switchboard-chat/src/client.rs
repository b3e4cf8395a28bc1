//! The interactive client: one task that owns the connection and reacts to frames, typed
//! commands, timers and signals. It reconnects with backoff and resumes with its cursors when the
//! connection drops, resends unacknowledged messages with their keys, fetches gaps, and keeps the
//! session file up to date (protocol §8 "What a client must do").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::commands::{Command, Target, HELP};
use crate::connection::{Connected, LoginError, Ws, LOGIN_REF};
use crate::cursors::Cursors;
use crate::display::{clean, message_line, now_ms, str_of, Style};
use crate::session::SessionStore;
use crate::terminal::{Current, Input, Printer, Settle};

mod answers;
mod events;
mod link;
mod moderation;
mod switching;
mod timers;
use switching::Switching;

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
    /// The switch request's generation: the room becomes current if nothing newer asked.
    Join(u64, Settle),
    Leave(String, Settle),
    /// `/chat bob`: a one-message history that says bob exists; the switch request's generation.
    Switch(Target, u64, Settle),
    /// Listings gather their pages until `next_cursor` is null, then print once.
    Rooms(Vec<Value>),
    /// The search prefix ("" for all) and the users gathered so far.
    Users(String, Vec<(String, bool)>),
    Online(Vec<String>),
    Members(String, Vec<Value>),
    Conversations(Listing),
    History(Target),
    /// Fetching missed messages of a conversation after a gap or a sync with `more`.
    Fill(String),
    Stats,
    Watch,
    Popular,
    Whoami,
    Read,
    Ping,
    Logout,
    /// `/edit`, `/delete`, `/quote` or `/react` (its command).
    Change(&'static str),
    /// A moderation request or a block: what to say once done.
    Done(String),
    Blocked,
}

impl Pending {
    /// The command to name when its answer was lost to a dropped connection.
    fn command(&self) -> Option<&'static str> {
        Some(match self {
            Pending::Join(..) => "/join",
            Pending::Leave(..) => "/leave",
            Pending::Switch(..) => "/chat",
            Pending::Rooms(_) => "/rooms",
            Pending::Users(..) => "/users",
            Pending::Online(_) => "/online",
            Pending::Members(..) => "/members",
            Pending::Conversations(_) => "/conversations",
            Pending::History(_) => "/history",
            Pending::Stats => "/stats",
            Pending::Watch => "/watch",
            Pending::Popular => "/popular",
            Pending::Whoami => "/whoami",
            Pending::Logout => "/logout",
            Pending::Change(command) => command,
            Pending::Done(_) => "the last moderation command",
            Pending::Blocked => "/blocked",
            Pending::Fill(_) | Pending::Read | Pending::Ping => return None,
        })
    }
}

/// `/conversations` being gathered, in the server's order (newest activity first).
#[derive(Debug, Default)]
struct Listing {
    entries: Vec<Value>,
    /// Conversations that got a message while the pages came: newer than every page, so the
    /// server's cursor skips those not listed yet; a last page of the newest brings them to the top.
    moved: Vec<String>,
    /// That page, once asked for.
    top: Option<Vec<Value>>,
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
    /// Makes `target` the current conversation.
    switch: Option<Switching>,
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
    /// Switch requests so far (the newest wins).
    switches: u64,
    /// Who sent private messages, newest first (for `/reply`), and who the last hint named.
    senders: Vec<String>,
    hinted: Option<String>,
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
            switches: 0,
            senders: Vec::new(),
            hinted: None,
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
            Event::Input(Some(Input::Command(command, settle))) => self.command(command, settle).await,
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
            "invited" | "removed" | "role_changed" | "mute_changed" => self.moderated(&frame),
            "rooms_created" => self.notice(&format!("{} new rooms (/rooms lists them)", frame["count"])),
            "error" => self.error(&frame),
            // hello, typing, read, room_size (a big room's counts: `/members` shows them), and
            // frame types of later protocol versions.
            _ => {}
        }
    }

    // ---- commands

    /// Runs a typed command; `settle` is dropped once the current conversation is known.
    async fn command(&mut self, command: Command, settle: Settle) {
        match command {
            Command::Send { target, text } => self.send_message(target, text, settle).await,
            Command::Switch(target) => self.switch_to(target, settle).await,
            Command::Reply { from, text } => self.reply(from, text, settle).await,
            Command::Join(room) => {
                let generation = self.next_switch();
                self.request(json!({"type": "join", "room": room}), Pending::Join(generation, settle)).await
            }
            Command::Create { room, private } => {
                let generation = self.next_switch();
                let request = json!({"type": "create_room", "room": room, "private": private});
                self.request(request, Pending::Join(generation, settle)).await
            }
            command @ (Command::Moderate { .. } | Command::Block(_) | Command::Unblock(_) | Command::Blocked) => {
                self.moderation_command(command).await
            }
            Command::Leave(room) => {
                self.request(json!({"type": "leave", "room": room.clone()}), Pending::Leave(room, settle)).await
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
                self.request(json!({"type": "conversations"}), Pending::Conversations(Listing::default())).await
            }
            Command::History { target, limit } => {
                let mut frame = json!({"type": "history", "limit": limit});
                target.apply(&mut frame);
                self.request(frame, Pending::History(target)).await;
            }
            Command::Stats(user) => self.request(json!({"type": "stats", "user": user}), Pending::Stats).await,
            Command::Watch(user) => self.request(json!({"type": "watch", "users": [user]}), Pending::Watch).await,
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
            Command::Change { target, seq, change } => {
                self.request(change.frame(&target, seq), Pending::Change(change.command())).await
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
