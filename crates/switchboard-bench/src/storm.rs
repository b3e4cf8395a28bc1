//! `switchboard bench storm`: `--clients` users drop at once and reconnect with their cursors
//! while messages keep flowing; how long until every one has recovered every message it missed,
//! and that none was lost or doubled.
//!
//! `--senders` connections (users of their own) send private messages to the clients round-robin
//! at `--rate` in total, from the start to the end. After `--warmup-secs` with everyone connected,
//! every client's connection is reset at once (no close frame: the TCP connection is dropped with
//! a reset, as when a network goes away); `--down-ms` later all reconnect at once, each with
//! `resume`, the token of its first `session` and a cursor per conversation (the highest seq up to
//! which it holds every message). A client behaves as `docs/protocol.md` §8 asks: it pages a sync
//! entry with `more` and fills a gap in a conversation's seqs with `history`, and retries a failed
//! reconnect with backoff. With several `--url`s client i starts on node `i mod n` and comes back on
//! node `i+1 mod n`, so every resume is on another node than the one it left.
//!
//! A client has *recovered* once it holds every message acknowledged to the senders before the
//! reconnect began; once sending stops, it is *complete* when it holds every acknowledged message.
//! A message is *lost* if it was acknowledged but never received, *doubled* if the server pushed it
//! twice on one connection or pushed one at or below the cursor the connection resumed with.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::client::frame::{self, Probe};
use crate::client::{self, text_frame, Clock, Connector, Failure, JwtSigner, LoadArgs, Stage, Target, WsStream};
use crate::metrics::ServerDelta;
use crate::report::{self, BitSet, Histogram, Latency, Reasons};

/// How long after the connect phase the first message goes out.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages per `history` page when filling a gap or paging a sync with `more`.
const HISTORY_PAGE: u32 = 200;
/// Backoff between reconnect attempts: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long the JWTs stay valid (they are only checked at login).
const JWT_TTL_SECS: u64 = 3600;
/// How many lost or doubled messages the report describes.
const EXAMPLES: usize = 10;

/// Options of `switchboard bench storm`.
#[derive(clap::Args, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Clients: users with one connection each, all dropped and reconnected together.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,
    /// Sending connections (users of their own); their private messages go to the clients in turn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub senders: u32,
    /// Messages per second over all senders, paced evenly, from the start to the end.
    #[arg(long, default_value_t = 500.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    /// How long the clients stay away before all reconnect at once.
    #[arg(long, default_value_t = 1000)]
    pub down_ms: u64,
}

/// Everything `storm` measured; the `--json` line. Times are seconds (or `Latency` milliseconds)
/// from the moment the reconnect began, unless said otherwise.
#[derive(Debug, Serialize)]
pub struct StormReport {
    pub scenario: &'static str,
    pub urls: Vec<String>,
    pub clients: u32,
    pub senders: u32,
    pub rate: f64,
    pub down_ms: u64,
    pub warmup_secs: u64,
    pub sources: usize,
    pub concurrency: u32,
    pub user_prefix: String,
    pub connect_secs: f64,
    pub handshake: Option<Latency>,
    /// Clients whose connection was reset at once.
    pub dropped: u64,
    /// Clients logged back in (`synced`), and those that gave up (`--timeout-secs` of failed
    /// attempts).
    pub reconnected: u64,
    pub gave_up: u64,
    /// Reconnect attempts after a failed one, and why attempts failed.
    pub retries: u64,
    pub reconnect_failures: BTreeMap<String, u64>,
    /// Each client's time to `synced`; the last one's; clients reconnected per second until then.
    pub synced: Option<Latency>,
    /// A resume's TCP connect to `synced`, without the wait for one of the `--concurrency` slots.
    pub resume_handshake: Option<Latency>,
    pub all_synced_secs: Option<f64>,
    pub reconnect_rate: Option<f64>,
    /// Clients holding every message acknowledged before the reconnect began (everything they
    /// missed); each one's time to get there; the last one's.
    pub recovered: u64,
    pub recovery: Option<Latency>,
    pub all_recovered_secs: Option<f64>,
    /// Once sending stopped: clients holding every acknowledged message, and how long after the
    /// stop the last of them got there.
    pub complete: u64,
    pub complete_after_stop_secs: Option<f64>,
    pub sent: u64,
    pub acked: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Acknowledged to a sender but never received by the end.
    pub lost: u64,
    /// Pushed twice on one connection, or at or below the cursor the connection resumed with.
    pub doubled: u64,
    /// The first lost and doubled messages, described.
    pub examples: Vec<String>,
    /// How the distinct messages arrived: live, in a login's sync, in `history` pages.
    pub via_live: u64,
    pub via_sync: u64,
    pub via_history: u64,
    /// `history` pages requested, and how many of them for a gap in a conversation's seqs (the
    /// rest page sync entries with `more`).
    pub history_pages: u64,
    pub gaps: u64,
    /// `message` frames the clients could not attribute.
    pub unexpected: u64,
    pub errors: BTreeMap<String, u64>,
    /// Connections lost other than by the drop.
    pub drops: BTreeMap<String, u64>,
    /// The servers from the drop to the reconnect, and from the reconnect until every client
    /// recovered (or gave up): `storm_secs`.
    pub server_drop: ServerDelta,
    pub server_storm: ServerDelta,
    pub storm_secs: f64,
    /// Server CPU seconds per second during the warm-up (everyone connected, messages flowing):
    /// the storm's CPU less `storm_secs` of this is what the reconnects cost.
    pub server_cpu_baseline_per_sec: Option<f64>,
    /// Server CPU of the storm, per reconnected client, in milliseconds.
    pub server_cpu_ms_per_reconnect: Option<f64>,
    pub bench_cpu_storm_secs: Option<f64>,
    pub bench_rss_bytes: Option<u64>,
}

/// Where the run is; each phase follows the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Phase {
    #[default]
    Connect,
    /// Senders send.
    Send,
    /// Clients drop their connections.
    Down,
    /// Clients reconnect.
    Up,
    /// Senders stop sending.
    Quiet,
    Stop,
}

/// What the run tells every task.
#[derive(Debug, Clone, Default)]
struct Control {
    phase: Phase,
    /// [`Clock`] time of the first send.
    send_from: u64,
    /// [`Clock`] time the reconnect began.
    reconnect_at: u64,
    /// The highest seq of every conversation acknowledged when the reconnect began (indexed by
    /// [`Shared::conv`]): holding these is having recovered.
    missed: Option<Arc<[u32]>>,
    /// The same once sending stopped and every ack came back: holding these is being complete.
    last: Option<Arc<[u32]>>,
}

/// A connection's place: the node and the source address.
type Place = (Target, Option<IpAddr>);

/// What every task shares. Counters are totals, for progress and for knowing when to move on.
struct Shared {
    clock: Clock,
    /// The clients' logins (first and reconnects); its connector sets the senders up and counts
    /// every first connection as ready or failed.
    logins: Logins,
    clients: u32,
    senders: u32,
    /// Between two messages of one sender, and between the first messages of consecutive senders.
    period_nanos: f64,
    slot_nanos: f64,
    /// The highest acknowledged seq of every conversation.
    acked_high: Vec<AtomicU32>,
    sent: AtomicU64,
    /// Senders that saw the quiet phase: none sends after that, so `sent` is final.
    quiet_senders: AtomicU32,
    acked: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    reconnected: AtomicU64,
    gave_up: AtomicU64,
    retries: AtomicU64,
    recovered: AtomicU64,
    complete: AtomicU64,
    synced_latency: Histogram,
    recovery_latency: Histogram,
    /// TCP connect to `synced` of the resumes, without the wait for a handshake slot.
    resume_handshake: Histogram,
    reconnect_failures: Reasons,
    errors: Reasons,
    drops: Reasons,
}

impl Shared {
    fn new(args: &StormArgs, prefix: String) -> Self {
        Shared {
            clock: Clock::start(),
            logins: Logins::new(&args.load, prefix),
            clients: args.clients,
            senders: args.senders,
            period_nanos: f64::from(args.senders) / args.rate * 1e9,
            slot_nanos: 1e9 / args.rate,
            acked_high: (0..u64::from(args.clients) * u64::from(args.senders)).map(|_| AtomicU32::new(0)).collect(),
            sent: AtomicU64::new(0),
            quiet_senders: AtomicU32::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnected: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            synced_latency: Histogram::default(),
            recovery_latency: Histogram::default(),
            resume_handshake: Histogram::default(),
            reconnect_failures: Reasons::default(),
            errors: Reasons::default(),
            drops: Reasons::default(),
        }
    }

    fn user(&self, client: u32) -> String {
        self.logins.user(client)
    }

    /// Senders are the users after the clients.
    fn sender_user(&self, sender: u32) -> String {
        self.logins.user(self.clients + sender)
    }

    /// The index of the conversation between `client` and `sender`.
    fn conv(&self, client: u32, sender: u32) -> usize {
        client as usize * self.senders as usize + sender as usize
    }

    /// Its id: `dm:` and the two names, sorted.
    fn conv_id(&self, client: u32, sender: u32) -> String {
        let (a, b) = (self.user(client), self.sender_user(sender));
        if a <= b {
            format!("dm:{a}:{b}")
        } else {
            format!("dm:{b}:{a}")
        }
    }

    /// The client the `k`-th message of `sender` goes to: the senders take turns over the clients.
    fn recipient(&self, sender: u32, k: u64) -> u32 {
        ((u64::from(sender) + k * u64::from(self.senders)) % u64::from(self.clients)) as u32
    }

    /// When the `k`-th message of `sender` is due.
    fn due(&self, send_from: u64, sender: u32, k: u64) -> u64 {
        send_from + (f64::from(sender) * self.slot_nanos + k as f64 * self.period_nanos) as u64
    }

    /// The highest acknowledged seq of every conversation, now.
    fn acked_now(&self) -> Arc<[u32]> {
        self.acked_high.iter().map(|high| high.load(Ordering::Relaxed)).collect()
    }
}

/// What a client holds of its conversation with one sender.
#[derive(Debug, Default)]
struct Conv {
    /// Every seq held, however it came.
    got: BitSet,
    /// Seqs pushed (`message` frames) on the current connection.
    pushed: BitSet,
    /// Every seq up to this one is held: the cursor to resume with.
    contiguous: u32,
    highest: u32,
    /// The cursor the current connection logged in with: nothing at or below it may be pushed.
    cursor: u32,
    /// A `history` request is on its way.
    fetching: bool,
}

impl Conv {
    /// A `message` frame: whether the seq is new to the client, and whether the server doubled it.
    fn pushed(&mut self, seq: u32) -> (bool, bool) {
        let doubled = seq <= self.cursor || !self.pushed.insert(seq);
        (self.hold(seq), doubled)
    }

    /// Records `seq` as held; `true` if it was new.
    fn hold(&mut self, seq: u32) -> bool {
        if !self.got.insert(seq) {
            return false;
        }
        self.highest = self.highest.max(seq);
        while self.got.contains(self.contiguous + 1) {
            self.contiguous += 1;
        }
        true
    }

    /// Some seq below the highest held is missing.
    fn has_gap(&self) -> bool {
        self.highest > self.contiguous
    }

    /// A new connection logs in: returns its cursor.
    fn reconnecting(&mut self) -> u32 {
        self.pushed.clear();
        self.cursor = self.contiguous;
        self.fetching = false;
        self.cursor
    }

    /// The acknowledged seqs (`acked`, none above `high`) not held.
    fn lost(&self, acked: &BitSet, high: u32) -> u64 {
        (1..=high).filter(|&seq| acked.contains(seq) && !self.got.contains(seq)).count() as u64
    }
}

/// One client: what it holds, across its connections.
struct Client {
    index: u32,
    /// By sender.
    convs: Vec<Conv>,
    token: String,
    /// The last control seen.
    control: Control,
    /// The current connection has had its `synced`.
    synced: bool,
    /// Senders whose conversation's sync entry had `more`.
    more: Vec<u32>,
    /// Requests to send on the current connection.
    outbox: Vec<String>,
    /// [`Clock`] time of the first `synced` after the reconnect.
    reconnected_at: Option<u64>,
    recovered: bool,
    complete: bool,
    doubled: u64,
    /// What the first doubled messages were.
    examples: Vec<String>,
    unexpected: u64,
    via_live: u64,
    via_sync: u64,
    via_history: u64,
    history_pages: u64,
    gaps: u64,
}

impl Client {
    fn new(shared: &Shared, index: u32) -> Self {
        Client {
            index,
            convs: (0..shared.senders).map(|_| Conv::default()).collect(),
            token: String::new(),
            control: Control::default(),
            synced: false,
            more: Vec::new(),
            outbox: Vec::new(),
            reconnected_at: None,
            recovered: false,
            complete: false,
            doubled: 0,
            examples: Vec::new(),
            unexpected: 0,
            via_live: 0,
            via_sync: 0,
            via_history: 0,
            history_pages: 0,
            gaps: 0,
        }
    }

    /// Connects and logs in with `request`; a resume's sync brings the missed messages in.
    async fn connect(
        &mut self,
        shared: &Shared,
        (target, source): &Place,
        request: String,
        handshake: &Histogram,
    ) -> Result<WsStream, Failure> {
        self.synced = false;
        self.more.clear();
        self.outbox.clear();
        let login = shared.logins.with(request, handshake);
        let (ws, token) = connect_with(target, *source, login, |text| self.on_frame(shared, text)).await?;
        self.token = token;
        Ok(ws)
    }

    /// `resume` with the session token and a cursor for every conversation with messages.
    fn resume_request(&mut self, shared: &Shared) -> String {
        let mut cursors = serde_json::Map::new();
        for (sender, conv) in (0u32..).zip(&mut self.convs) {
            let cursor = conv.reconnecting();
            if cursor > 0 {
                cursors.insert(shared.conv_id(self.index, sender), cursor.into());
            }
        }
        serde_json::json!({"type": "resume", "token": self.token, "presence": false, "cursors": cursors}).to_string()
    }

    /// Reconnects with `resume`, retrying with backoff until `--timeout-secs` after the reconnect
    /// began (or this attempt, for a connection lost later). `None`: gave up.
    async fn reconnect(
        &mut self,
        shared: &Shared,
        place: &Place,
        control: &watch::Receiver<Control>,
    ) -> Option<WsStream> {
        let clock = shared.clock;
        let began = if self.reconnected_at.is_none() { self.control.reconnect_at } else { clock.nanos() };
        let deadline = began + shared.logins.timeout.as_nanos() as u64;
        let mut backoff = RETRY_FIRST;
        loop {
            let request = self.resume_request(shared);
            match self.connect(shared, place, request, &shared.resume_handshake).await {
                Ok(ws) => {
                    if self.reconnected_at.is_none() {
                        let now = clock.nanos();
                        self.reconnected_at = Some(now);
                        shared.synced_latency.record_nanos(self.control.reconnect_at, now);
                        shared.reconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(ws);
                }
                Err(failure) => {
                    shared.reconnect_failures.add(failure.to_string());
                    let stopping = control.borrow().phase >= Phase::Stop;
                    if stopping || clock.nanos() + backoff.as_nanos() as u64 >= deadline {
                        shared.gave_up.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads frames until the control changes (`Ok`) or the connection is lost (`Err`, why).
    async fn serve(
        &mut self,
        shared: &Shared,
        ws: &mut WsStream,
        control: &mut watch::Receiver<Control>,
    ) -> Result<(), String> {
        loop {
            self.flush(ws).await?;
            self.check_targets(shared);
            tokio::select! {
                frame = ws.next() => if let Some(text) = text_frame(frame)? {
                    self.on_frame(shared, &text);
                },
                _ = control.changed() => return Ok(()),
            }
        }
    }

    async fn flush(&mut self, ws: &mut WsStream) -> Result<(), String> {
        for request in std::mem::take(&mut self.outbox) {
            ws.send(Message::text(request)).await.map_err(|error| format!("write error: {error}"))?;
        }
        Ok(())
    }

    fn on_frame(&mut self, shared: &Shared, text: &str) {
        match frame::kind(text) {
            Some("message") => self.on_message(shared, text),
            Some("sync") if text.contains("\"more\":true") => self.more = self.senders_with_more(shared, text),
            Some("synced") => {
                self.synced = true;
                for sender in std::mem::take(&mut self.more) {
                    self.fetch(shared, sender);
                }
                for sender in 0..shared.senders {
                    if self.convs[sender as usize].has_gap() {
                        self.gaps += 1;
                        self.fetch(shared, sender);
                    }
                }
            }
            Some("history") => self.on_history(shared, text),
            Some("error") if self.synced => {
                shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown"))
            }
            _ => {}
        }
    }

    fn on_message(&mut self, shared: &Shared, text: &str) {
        let seq = frame::u64_field(text, "\"seq\":").and_then(|seq| u32::try_from(seq).ok());
        let sender = Probe::in_message(text).map(|probe| probe.id).filter(|&sender| sender < shared.senders);
        let (Some(seq), Some(sender)) = (seq, sender) else {
            self.unexpected += 1;
            return;
        };
        let conv = &mut self.convs[sender as usize];
        let (new, doubled) = conv.pushed(seq);
        let gap = self.synced && conv.has_gap() && !conv.fetching;
        if doubled && self.examples.len() < EXAMPLES {
            let again = if seq <= conv.cursor { "at or below the resume cursor" } else { "again on one connection" };
            let how = if self.synced { "live" } else { "in the sync" };
            self.examples.push(format!("{} seq {seq} {again} ({how})", shared.conv_id(self.index, sender)));
        }
        self.doubled += u64::from(doubled);
        if new {
            shared.received.fetch_add(1, Ordering::Relaxed);
            *if self.synced { &mut self.via_live } else { &mut self.via_sync } += 1;
        }
        if gap {
            self.gaps += 1;
            self.fetch(shared, sender);
        }
    }

    /// Asks for the messages after the conversation's cursor.
    fn fetch(&mut self, shared: &Shared, sender: u32) {
        let conv = &mut self.convs[sender as usize];
        conv.fetching = true;
        self.history_pages += 1;
        self.outbox.push(format!(
            r#"{{"type":"history","ref":{sender},"to":"{}","after":{},"limit":{HISTORY_PAGE}}}"#,
            shared.sender_user(sender),
            conv.contiguous
        ));
    }

    /// A `history` page (its `ref` is the sender): holds its messages, asks for the next page
    /// while there is one or a gap is left.
    fn on_history(&mut self, shared: &Shared, text: &str) {
        let Ok(page) = serde_json::from_str::<serde_json::Value>(text) else { return };
        let Some(sender) = page["ref"].as_u64().and_then(|sender| u32::try_from(sender).ok()) else { return };
        let Some(conv) = self.convs.get_mut(sender as usize) else { return };
        conv.fetching = false;
        let mut added = 0;
        for message in page["messages"].as_array().into_iter().flatten() {
            if let Some(seq) = message["seq"].as_u64().and_then(|seq| u32::try_from(seq).ok()) {
                added += u64::from(conv.hold(seq));
            }
        }
        let again = added > 0 && (page["has_more"].as_bool() == Some(true) || conv.has_gap());
        shared.received.fetch_add(added, Ordering::Relaxed);
        self.via_history += added;
        if again {
            self.fetch(shared, sender);
        }
    }

    /// The senders of the sync entries with `more: true`.
    fn senders_with_more(&self, shared: &Shared, text: &str) -> Vec<u32> {
        let Ok(sync) = serde_json::from_str::<serde_json::Value>(text) else { return Vec::new() };
        let convs: Vec<String> = (0..shared.senders).map(|sender| shared.conv_id(self.index, sender)).collect();
        sync["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["more"].as_bool() == Some(true))
            .filter_map(|entry| convs.iter().position(|conv| entry["conv"].as_str() == Some(conv.as_str())))
            .map(|sender| sender as u32)
            .collect()
    }

    /// Whether it holds every conversation up to `targets`.
    fn holds(&self, shared: &Shared, targets: &[u32]) -> bool {
        (0u32..).zip(&self.convs).all(|(sender, conv)| conv.contiguous >= targets[shared.conv(self.index, sender)])
    }

    /// Marks the client recovered, or complete, once it is (after its reconnect's `synced`).
    fn check_targets(&mut self, shared: &Shared) {
        if !self.synced || self.reconnected_at.is_none() {
            return;
        }
        if !self.recovered && self.control.missed.as_ref().is_some_and(|missed| self.holds(shared, missed)) {
            self.recovered = true;
            shared.recovery_latency.record_nanos(self.control.reconnect_at, shared.clock.nanos());
            shared.recovered.fetch_add(1, Ordering::Relaxed);
        }
        if !self.complete && self.control.last.as_ref().is_some_and(|last| self.holds(shared, last)) {
            self.complete = true;
            shared.complete.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A login: the frame, at most how many handshakes at once, within how long, and where to record
/// the time from TCP connect to `synced`.
pub(crate) struct LoginWith<'a> {
    request: String,
    handshakes: &'a Semaphore,
    timeout: Duration,
    handshake: &'a Histogram,
}

/// Connects to `target` and logs in with a login frame of any kind (e.g. with cursors or presence,
/// which [`client::login`] does not send). Every frame up to `synced` goes to `on_frame`: a
/// resume's sync carries the missed messages, a presence login the online list. Returns the
/// connection and the session token.
pub(crate) async fn connect_with(
    target: &Target,
    source: Option<IpAddr>,
    login: LoginWith<'_>,
    on_frame: impl FnMut(&str),
) -> Result<(WsStream, String), Failure> {
    let _permit = login.handshakes.acquire().await.map_err(|_| Failure::new(Stage::Local, "closed"))?;
    let started = std::time::Instant::now();
    let attempt = async {
        let mut ws = client::open(target, source).await?;
        let token = log_in(&mut ws, login.request, on_frame).await?;
        Ok((ws, token))
    };
    let timeout = login.timeout;
    let connected = tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| Err(Failure::timeout(timeout)))?;
    login.handshake.record(report::micros(started.elapsed()));
    Ok(connected)
}

/// Sends a login frame and reads frames until `synced`, handing each (but an `error`, which fails
/// the login) to `on_frame`. Returns the session token.
pub(crate) async fn log_in(
    ws: &mut WsStream,
    request: String,
    mut on_frame: impl FnMut(&str),
) -> Result<String, Failure> {
    let failed = |reason: String| Failure::new(Stage::Login, reason);
    ws.send(Message::text(request)).await.map_err(|error| failed(format!("sending the login: {error}")))?;
    let mut token = None;
    loop {
        let Some(text) = text_frame(ws.next().await).map_err(failed)? else { continue };
        match frame::kind(&text) {
            Some("error") => {
                let code = frame::str_field(&text, "\"code\":\"").unwrap_or("?");
                return Err(failed(format!("server error {code}")));
            }
            Some("session") => token = frame::str_field(&text, "\"token\":\"").map(str::to_string),
            _ => {}
        }
        on_frame(&text);
        if frame::kind(&text) == Some("synced") {
            return token.ok_or_else(|| failed("synced before session".to_string()));
        }
    }
}

/// How a scenario's users log in: their names, their JWTs, the handshakes in flight and how long
/// one may take.
pub(crate) struct Logins {
    /// Counts first connections as ready or failed and times their handshakes; its own slots serve
    /// [`Connector::connect`] (plain logins) only.
    pub connector: Connector,
    signer: JwtSigner,
    /// Handshakes in flight for [`connect_with`].
    handshakes: Semaphore,
    pub timeout: Duration,
    /// Users are `{prefix}-{i:06}`.
    pub prefix: String,
}

impl Logins {
    pub fn new(load: &LoadArgs, prefix: String) -> Self {
        let timeout = Duration::from_secs(load.timeout_secs);
        Logins {
            connector: Connector::new(&load.jwt_secret, timeout, load.concurrency),
            signer: JwtSigner::new(&load.jwt_secret, JWT_TTL_SECS),
            handshakes: Semaphore::new(load.concurrency as usize),
            timeout,
            prefix,
        }
    }

    pub fn user(&self, index: u32) -> String {
        format!("{}-{index:06}", self.prefix)
    }

    /// A `login_jwt` frame for `user`.
    pub fn jwt_login(&self, user: &str, presence: bool) -> Result<String, Failure> {
        let jwt = self.signer.sign(user)?;
        Ok(serde_json::json!({"type": "login_jwt", "jwt": jwt, "presence": presence}).to_string())
    }

    /// A login with `request` for [`connect_with`], its handshake timed into `handshake`.
    pub fn with<'a>(&'a self, request: String, handshake: &'a Histogram) -> LoginWith<'a> {
        LoginWith { request, handshakes: &self.handshakes, timeout: self.timeout, handshake }
    }
}

/// One client: logs in, holds its connection until the drop, reconnects when told, then holds the
/// new one to the end (reconnecting again if it is lost).
async fn client_task(
    shared: Arc<Shared>,
    index: u32,
    first: Place,
    again: Place,
    mut control: watch::Receiver<Control>,
) -> (Client, Option<WsStream>) {
    let mut client = Client::new(&shared, index);
    let connected = match shared.logins.jwt_login(&shared.user(index), false) {
        Ok(request) => client.connect(&shared, &first, request, &shared.logins.connector.handshake).await,
        Err(failure) => Err(failure),
    };
    let mut ws = match connected {
        Ok(ws) => {
            shared.logins.connector.ready();
            Some(ws)
        }
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return (client, None);
        }
    };
    let mut dropped = false;
    loop {
        if control.has_changed().is_err() {
            return (client, ws);
        }
        client.control = control.borrow_and_update().clone();
        let phase = client.control.phase;
        if phase >= Phase::Stop {
            return (client, ws);
        }
        match ws.take() {
            Some(connection) if phase >= Phase::Down && !dropped => {
                // Abruptly: no close frame, and a reset instead of a FIN.
                let _ = connection.get_ref().set_zero_linger();
                drop(connection);
                dropped = true;
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(mut connection) => match client.serve(&shared, &mut connection, &mut control).await {
                Ok(()) => ws = Some(connection),
                Err(reason) => {
                    shared.drops.add(reason);
                    dropped = true;
                }
            },
            None if phase < Phase::Up => {
                if control.changed().await.is_err() {
                    return (client, None);
                }
            }
            None => match client.reconnect(&shared, &again, &control).await {
                Some(connection) => ws = Some(connection),
                None => return (client, None),
            },
        }
    }
}

/// What a sender ends with.
#[derive(Default)]
struct SenderEnd {
    /// The acknowledged seqs of its conversation with each client.
    acked: Vec<BitSet>,
    ws: Option<WsStream>,
}

/// A sender: sends to the clients in turn on its schedule from `Send` to `Quiet`, and records
/// which seqs were acknowledged.
async fn sender_task(
    shared: Arc<Shared>,
    sender: u32,
    (target, source): Place,
    mut control: watch::Receiver<Control>,
) -> SenderEnd {
    let mut ws = match shared.logins.connector.connect(&target, source, &shared.sender_user(sender)).await {
        Ok((ws, _permit)) => ws,
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return SenderEnd::default();
        }
    };
    shared.logins.connector.ready();
    let mut end = SenderEnd { acked: (0..shared.clients).map(|_| BitSet::default()).collect(), ws: None };
    // The client of each message, by its ref.
    let mut recipients: Vec<u32> = Vec::new();
    let mut send_from: Option<u64> = None;
    let mut sending = false;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => on_sender_frame(&shared, sender, &text, &recipients, &mut end.acked),
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return end;
                }
            },
            () = &mut sleep, if sending => {
                let (Some(from), k) = (send_from, recipients.len() as u64) else { continue };
                let recipient = shared.recipient(sender, k);
                let text = Probe { id: sender, seq: k as u32, sent_nanos: shared.clock.nanos() }.text();
                let request =
                    format!(r#"{{"type":"send","to":"{}","text":"{text}","ref":{k}}}"#, shared.user(recipient));
                if let Err(error) = ws.send(Message::text(request)).await {
                    shared.drops.add(format!("write error: {error}"));
                    return end;
                }
                recipients.push(recipient);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                sleep.as_mut().reset(shared.clock.instant(shared.due(from, sender, k + 1)));
            }
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = control.borrow_and_update().clone();
                match now.phase {
                    Phase::Stop => break,
                    Phase::Quiet => {
                        if sending {
                            shared.quiet_senders.fetch_add(1, Ordering::Relaxed);
                        }
                        sending = false;
                    }
                    phase if phase >= Phase::Send && send_from.is_none() => {
                        send_from = Some(now.send_from);
                        sending = true;
                        sleep.as_mut().reset(shared.clock.instant(shared.due(now.send_from, sender, 0)));
                    }
                    _ => {}
                }
            }
        }
    }
    end.ws = Some(ws);
    end
}

fn on_sender_frame(shared: &Shared, sender: u32, text: &str, recipients: &[u32], acked: &mut [BitSet]) {
    match frame::kind(text) {
        Some("ack") => {
            let recipient = frame::u64_field(text, "\"ref\":").and_then(|k| recipients.get(k as usize));
            let seq = frame::u64_field(text, "\"seq\":").and_then(|seq| u32::try_from(seq).ok());
            let (Some(&recipient), Some(seq)) = (recipient, seq) else { return };
            if acked[recipient as usize].insert(seq) {
                shared.acked_high[shared.conv(recipient, sender)].fetch_max(seq, Ordering::Relaxed);
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some("error") => shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown")),
        _ => {}
    }
}

pub async fn run(args: StormArgs) -> anyhow::Result<()> {
    let json = args.load.json;
    let report = measure(args).await?;
    report::print(&summary(&report), &report, json)
}

/// Runs the scenario and returns what it measured.
pub async fn measure(args: StormArgs) -> anyhow::Result<StormReport> {
    let load = &args.load;
    let nodes = load.nodes().await?;
    let connections = u64::from(args.clients) + u64::from(args.senders);
    let prefix = load.prefix("storm", connections)?;
    if let Some(limit) = crate::open_files_limit() {
        if limit < connections + 64 {
            eprintln!("warning: the open-files limit is {limit}, too low for {connections} connections");
        }
    }
    eprintln!(
        "storm: {} clients, {} senders at {} msg/s, {} s with everyone connected, then all drop for {} ms and reconnect, on {} node{}, users {prefix}-*",
        args.clients,
        args.senders,
        args.rate,
        load.warmup_secs,
        args.down_ms,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
    );
    nodes.check_up().await?;

    // Client i starts on node i and comes back on the next; sender j is on node j.
    let n = nodes.len();
    let first: Vec<usize> = (0..args.clients as usize).map(|client| client % n).collect();
    let again: Vec<usize> = (0..args.clients as usize).map(|client| (client + 1) % n).collect();
    let senders: Vec<usize> = (0..args.senders as usize).map(|sender| sender % n).collect();
    let first_sources = nodes.assign_sources(&[first.clone(), senders.clone()].concat());
    let again_sources = nodes.assign_sources(&again);
    let shared = Arc::new(Shared::new(&args, prefix.clone()));
    let (control_tx, control_rx) = watch::channel(Control::default());
    let place = |node: usize, source: Option<IpAddr>| (nodes.targets[node].clone(), source);
    let sender_tasks: Vec<_> = (0..args.senders)
        .map(|sender| {
            let at = place(senders[sender as usize], first_sources[args.clients as usize + sender as usize]);
            tokio::spawn(sender_task(shared.clone(), sender, at, control_rx.clone()))
        })
        .collect();
    let client_tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let i = client as usize;
            let (from, to) = (place(first[i], first_sources[i]), place(again[i], again_sources[i]));
            tokio::spawn(client_task(shared.clone(), client, from, to, control_rx.clone()))
        })
        .collect();
    let connect_time = shared.logins.connector.wait_all(connections).await;
    let failures = shared.logins.connector.failures();
    if !failures.is_empty() {
        control_tx.send_modify(|control| control.phase = Phase::Stop);
        report::eprint_reasons("connection failures", &failures);
        close(sender_tasks, client_tasks).await;
        bail!("{} of {connections} connections failed; nothing was sent", failures.values().sum::<u64>());
    }

    let clock = shared.clock;
    let secs = |secs: u64| secs * 1_000_000_000;
    let send_from = clock.nanos() + START_DELAY.as_nanos() as u64;
    control_tx.send_modify(|control| {
        control.phase = Phase::Send;
        control.send_from = send_from;
    });
    let (progress_done, progress_rx) = oneshot::channel();
    let progress = tokio::spawn(print_progress(shared.clone(), control_rx.clone(), progress_rx));
    tokio::time::sleep_until(clock.instant(send_from)).await;
    let sending = nodes.scrape("as sending starts").await;
    tokio::time::sleep_until(clock.instant(send_from + secs(load.warmup_secs))).await;
    let before_drop = nodes.scrape("before the drop").await;
    let baseline = ServerDelta::between(&sending, &before_drop);

    control_tx.send_modify(|control| control.phase = Phase::Down);
    let drop_at = clock.nanos();
    tokio::time::sleep_until(clock.instant(drop_at + args.down_ms * 1_000_000)).await;
    let (at_reconnect, bench_cpu_before) = (nodes.scrape("at the reconnect").await, report::own_cpu_seconds());
    let reconnect_at = clock.nanos();
    control_tx.send_modify(|control| {
        control.phase = Phase::Up;
        control.reconnect_at = reconnect_at;
        control.missed = Some(shared.acked_now());
    });

    // The storm: until every client has recovered or given up.
    let clients = u64::from(args.clients);
    let storm_limit = reconnect_at + secs(load.timeout_secs + load.grace_secs);
    wait_for(&clock, storm_limit, || {
        shared.recovered.load(Ordering::Relaxed) + shared.gave_up.load(Ordering::Relaxed) >= clients
    })
    .await;
    let storm_secs = (clock.nanos() - reconnect_at) as f64 / 1e9;
    let (after_storm, bench_cpu_after) = (nodes.scrape("after the storm").await, report::own_cpu_seconds());
    let bench_rss = report::own_rss_bytes();

    // Sending goes on for --duration-secs after the reconnect began, then every client should
    // come to hold every acknowledged message.
    tokio::time::sleep_until(clock.instant(reconnect_at + secs(load.duration_secs))).await;
    control_tx.send_modify(|control| control.phase = Phase::Quiet);
    let stopped_at = clock.nanos();
    let grace_end = stopped_at + secs(load.grace_secs);
    // A sender may still send once before it sees the quiet phase: `sent` is final only when all
    // have seen it.
    wait_for(&clock, grace_end, || {
        shared.quiet_senders.load(Ordering::Relaxed) >= shared.senders
            && shared.acked.load(Ordering::Relaxed) + shared.errors.total() >= shared.sent.load(Ordering::Relaxed)
    })
    .await;
    control_tx.send_modify(|control| control.last = Some(shared.acked_now()));
    let all_complete = wait_for(&clock, grace_end, || {
        shared.complete.load(Ordering::Relaxed) + shared.gave_up.load(Ordering::Relaxed) >= clients
    })
    .await;
    let complete_after_stop = all_complete.then(|| (clock.nanos() - stopped_at) as f64 / 1e9);
    control_tx.send_modify(|control| control.phase = Phase::Stop);
    let _ = progress_done.send(());
    let _ = progress.await;

    // Lost: acknowledged seqs a client does not hold.
    let mut open = Vec::with_capacity(connections as usize);
    let mut ends = Vec::with_capacity(sender_tasks.len());
    for task in sender_tasks {
        let mut end = task.await.unwrap_or_default();
        open.extend(end.ws.take());
        ends.push(end);
    }
    let high = shared.acked_now();
    let mut tally = Tally::default();
    for task in client_tasks {
        let Ok((client, ws)) = task.await else { continue };
        open.extend(ws);
        tally.add(&shared, &client, &ends, &high);
    }
    crate::client::close_all(open, CLOSE_TIMEOUT).await;

    let server_storm = ServerDelta::between(&at_reconnect, &after_storm);
    let reconnected = shared.reconnected.load(Ordering::Relaxed);
    let synced = shared.synced_latency.latency();
    let recovery = shared.recovery_latency.latency();
    let all_synced_secs = synced.map(|latency| latency.max_ms / 1000.0);
    Ok(StormReport {
        scenario: "storm",
        urls: nodes.urls(),
        clients: args.clients,
        senders: args.senders,
        rate: args.rate,
        down_ms: args.down_ms,
        warmup_secs: load.warmup_secs,
        sources: nodes.sources_per_node(),
        concurrency: load.concurrency,
        user_prefix: prefix,
        connect_secs: connect_time.as_secs_f64(),
        handshake: shared.logins.connector.handshake.latency(),
        dropped: shared.dropped.load(Ordering::Relaxed),
        reconnected,
        gave_up: shared.gave_up.load(Ordering::Relaxed),
        retries: shared.retries.load(Ordering::Relaxed),
        reconnect_failures: shared.reconnect_failures.snapshot(),
        synced,
        resume_handshake: shared.resume_handshake.latency(),
        all_synced_secs,
        reconnect_rate: all_synced_secs.and_then(|secs| report::ratio(reconnected as f64, secs)),
        recovered: shared.recovered.load(Ordering::Relaxed),
        recovery,
        all_recovered_secs: recovery.map(|latency| latency.max_ms / 1000.0),
        complete: shared.complete.load(Ordering::Relaxed),
        complete_after_stop_secs: complete_after_stop,
        sent: shared.sent.load(Ordering::Relaxed),
        acked: shared.acked.load(Ordering::Relaxed),
        received: shared.received.load(Ordering::Relaxed),
        lost: tally.lost,
        doubled: tally.doubled,
        examples: tally.examples,
        via_live: tally.via_live,
        via_sync: tally.via_sync,
        via_history: tally.via_history,
        history_pages: tally.history_pages,
        gaps: tally.gaps,
        unexpected: tally.unexpected,
        errors: shared.errors.snapshot(),
        drops: shared.drops.snapshot(),
        server_drop: ServerDelta::between(&before_drop, &at_reconnect),
        server_cpu_baseline_per_sec: baseline.cpu_seconds.and_then(|cpu| report::ratio(cpu, load.warmup_secs as f64)),
        server_cpu_ms_per_reconnect: server_storm
            .cpu_seconds
            .and_then(|cpu| report::ratio(cpu * 1e3, reconnected as f64)),
        server_storm,
        storm_secs,
        bench_cpu_storm_secs: bench_cpu_after.zip(bench_cpu_before).map(|(after, before)| after - before),
        bench_rss_bytes: bench_rss,
    })
}

/// Polls `done` every 20 ms until it holds (`true`) or the clock passes `limit` (`false`).
async fn wait_for(clock: &Clock, limit: u64, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if clock.nanos() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The clients' counts, summed, and the lost messages.
#[derive(Debug, Default)]
struct Tally {
    lost: u64,
    doubled: u64,
    /// The first lost and doubled messages.
    examples: Vec<String>,
    via_live: u64,
    via_sync: u64,
    via_history: u64,
    history_pages: u64,
    gaps: u64,
    unexpected: u64,
}

impl Tally {
    fn add(&mut self, shared: &Shared, client: &Client, senders: &[SenderEnd], high: &[u32]) {
        for (sender, conv) in (0u32..).zip(&client.convs) {
            let Some(acked) = senders.get(sender as usize).and_then(|end| end.acked.get(client.index as usize)) else {
                continue;
            };
            let lost = conv.lost(acked, high[shared.conv(client.index, sender)]);
            if lost > 0 && self.examples.len() < EXAMPLES {
                let conv_id = shared.conv_id(client.index, sender);
                self.examples.push(format!("{conv_id}: {lost} lost, every seq held up to {}", conv.contiguous));
            }
            self.lost += lost;
        }
        self.doubled += client.doubled;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(client.examples.iter().take(room).cloned());
        self.via_live += client.via_live;
        self.via_sync += client.via_sync;
        self.via_history += client.via_history;
        self.history_pages += client.history_pages;
        self.gaps += client.gaps;
        self.unexpected += client.unexpected;
    }
}

/// Waits for the tasks to end and closes their connections.
async fn close(
    senders: Vec<tokio::task::JoinHandle<SenderEnd>>,
    clients: Vec<tokio::task::JoinHandle<(Client, Option<WsStream>)>>,
) {
    let mut open = Vec::new();
    for task in senders {
        open.extend(task.await.ok().and_then(|end| end.ws));
    }
    for task in clients {
        open.extend(task.await.ok().and_then(|(_, ws)| ws));
    }
    crate::client::close_all(open, CLOSE_TIMEOUT).await;
}

/// One line a second on stderr from the first send to the end.
async fn print_progress(shared: Arc<Shared>, control: watch::Receiver<Control>, done: oneshot::Receiver<()>) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    report::each_second(done, || {
        let phase = match control.borrow().phase {
            Phase::Connect | Phase::Send => "sending",
            Phase::Down => "down",
            Phase::Up => "storm",
            Phase::Quiet | Phase::Stop => "settle",
        };
        eprintln!(
            "[{:6.1}s] {phase:<7} sent {:>8} acked {:>8} received {:>8} | dropped {} synced {} recovered {} complete {} of {} | retries {} gave up {} drops {}",
            shared.clock.secs(),
            load(&shared.sent),
            load(&shared.acked),
            load(&shared.received),
            load(&shared.dropped),
            load(&shared.reconnected),
            load(&shared.recovered),
            load(&shared.complete),
            shared.clients,
            load(&shared.retries),
            load(&shared.gave_up),
            shared.drops.total(),
        );
    })
    .await;
}

/// The human summary.
pub fn summary(report: &StormReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let secs = |value: Option<f64>| report::or_na(value, |value| format!("{value:.3} s"));
    let num = report::two_decimals;
    let _ = writeln!(
        out,
        "storm: {} clients dropped at once for {} ms while {} senders sent {} msg/s, nodes {}",
        report.clients,
        report.down_ms,
        report.senders,
        report.rate,
        report.urls.join(" ")
    );
    let connections = u64::from(report.clients) + u64::from(report.senders);
    let connected = report::connect_line(connections, report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  connections        {connected}");
    let _ = writeln!(
        out,
        "  reconnect          {} of {} dropped synced again, the last after {} ({} reconnects/s, {} in flight); {} gave up, {} retries",
        report.reconnected,
        report.dropped,
        secs(report.all_synced_secs),
        num(report.reconnect_rate, ""),
        report.concurrency,
        report.gave_up,
        report.retries,
    );
    let _ = writeln!(out, "  time to synced     {}", report::latency_line(report.synced.as_ref()));
    let _ = writeln!(out, "  resume handshake   {}", report::latency_line(report.resume_handshake.as_ref()));
    let _ = writeln!(
        out,
        "  recovered          {} of {} held every message acked before the reconnect, the last after {}",
        report.recovered,
        report.clients,
        secs(report.all_recovered_secs),
    );
    let _ = writeln!(out, "  time to recover    {}", report::latency_line(report.recovery.as_ref()));
    let _ = writeln!(
        out,
        "  messages           sent {}  acked {}  received {}  lost {}  doubled {}{}",
        report.sent,
        report.acked,
        report.received,
        report.lost,
        report.doubled,
        if report.unexpected > 0 { format!("  unexpected {}", report.unexpected) } else { String::new() }
    );
    let _ = writeln!(
        out,
        "  arrived            {} live, {} in syncs, {} in history pages ({} pages, {} for gaps)",
        report.via_live, report.via_sync, report.via_history, report.history_pages, report.gaps
    );
    let _ = writeln!(
        out,
        "  complete           {} of {} held every acked message {} after sending stopped",
        report.complete,
        report.clients,
        secs(report.complete_after_stop_secs),
    );
    let _ = writeln!(
        out,
        "  server CPU         {} over the storm ({:.2} s), {} per reconnect; {} over the drop; {} per second before it",
        secs(report.server_storm.cpu_seconds),
        report.storm_secs,
        num(report.server_cpu_ms_per_reconnect, " ms"),
        secs(report.server_drop.cpu_seconds),
        secs(report.server_cpu_baseline_per_sec),
    );
    let _ = writeln!(out, "  server RSS         {}", report::rss_list(&report.server_storm.rss_bytes));
    let _ = writeln!(
        out,
        "  bench              CPU {} over the storm; RSS {}",
        secs(report.bench_cpu_storm_secs),
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64)),
    );
    if !report.examples.is_empty() {
        let _ = writeln!(out, "  lost or doubled (the first):");
    }
    for example in &report.examples {
        let _ = writeln!(out, "    {example}");
    }
    report::write_reasons(&mut out, "reconnect failures", &report.reconnect_failures);
    report::write_errors_and_drops(&mut out, &report.errors, &report.drops);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_tracks_its_cursor_and_gaps() {
        let mut conv = Conv::default();
        assert_eq!(conv.pushed(1), (true, false));
        assert_eq!(conv.pushed(2), (true, false));
        assert_eq!(conv.pushed(4), (true, false));
        assert_eq!((conv.contiguous, conv.highest), (2, 4));
        assert!(conv.has_gap());
        assert!(conv.hold(3), "the gap filled from history");
        assert!(!conv.has_gap());
        assert_eq!(conv.contiguous, 4);
        assert!(!conv.hold(3), "a history page overlapping what is held is not new");
        assert_eq!(conv.pushed(4), (false, true), "pushed twice on one connection");
    }

    #[test]
    fn after_a_resume_nothing_at_or_below_the_cursor_may_come_again() {
        let mut conv = Conv::default();
        for seq in [1, 2, 3, 5] {
            conv.pushed(seq);
        }
        assert_eq!(conv.reconnecting(), 3);
        // The sync resends 4 and 5 after the cursor: 5 is not new, but the server was asked for it.
        assert_eq!(conv.pushed(4), (true, false));
        assert_eq!(conv.pushed(5), (false, false));
        assert_eq!(conv.pushed(3), (false, true), "at or below the cursor");
        assert_eq!(conv.pushed(6), (true, false));
        assert_eq!(conv.pushed(6), (false, true));
    }

    #[test]
    fn lost_messages_are_the_acked_ones_not_held() {
        let mut conv = Conv::default();
        let mut acked = BitSet::default();
        for seq in 1..=6 {
            acked.insert(seq);
        }
        for seq in [1, 2, 4, 6, 7] {
            conv.hold(seq);
        }
        // 3 and 5 are missing; 7 was stored but never acknowledged.
        assert_eq!(conv.lost(&acked, 6), 2);
        assert_eq!(conv.lost(&acked, 2), 0);
        assert_eq!(Conv::default().lost(&BitSet::default(), 0), 0);
    }

    fn shared(clients: u32, senders: u32, rate: f64) -> Shared {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: StormArgs,
        }
        let (clients, senders, rate) = (clients.to_string(), senders.to_string(), rate.to_string());
        let argv = ["storm", "--jwt-secret", "s", "--clients", &clients, "--senders", &senders, "--rate", &rate];
        let Cli { args } = clap::Parser::parse_from(argv);
        Shared::new(&args, "storm".into())
    }

    #[test]
    fn senders_take_turns_over_the_clients_on_an_even_schedule() {
        let shared = shared(5, 2, 100.0);
        let first: Vec<u32> = (0..5).map(|k| shared.recipient(0, k)).collect();
        assert_eq!(first, [0, 2, 4, 1, 3]);
        assert_eq!(shared.recipient(1, 0), 1);
        assert_eq!(shared.due(1_000, 0, 0), 1_000);
        assert_eq!(shared.due(1_000, 1, 0), 10_001_000);
        assert_eq!(shared.due(1_000, 0, 3), 60_001_000);
        assert_eq!(shared.conv(3, 1), 7);
        assert_eq!(shared.conv_id(1, 0), "dm:storm-000001:storm-000005");
    }

    #[test]
    fn a_client_counts_what_it_lost_and_what_came_twice() {
        let shared = shared(2, 2, 100.0);
        let mut client = Client::new(&shared, 1);
        client.synced = true;
        let message = |sender: u32, seq: u32| {
            let probe = Probe { id: sender, seq: 0, sent_nanos: 1 }.text();
            format!(
                r#"{{"type":"message","conv":"c","id":"x","seq":{seq},"from":"a","to":"b","text":"{probe}","ts":1}}"#
            )
        };
        client.on_frame(&shared, &message(0, 1));
        client.on_frame(&shared, &message(0, 1));
        client.on_frame(&shared, &message(1, 2));
        assert_eq!((client.doubled, client.via_live, client.gaps), (1, 2, 1));
        assert!(client.convs[1].fetching);
        assert!(client.outbox[0].contains(r#""after":0"#) && client.outbox[0].contains("storm-000003"));
        client.on_frame(
            &shared,
            r#"{"type":"history","ref":1,"conv":"c","messages":[{"seq":1},{"seq":2}],"has_more":false}"#,
        );
        assert_eq!((client.via_history, client.convs[1].contiguous, client.outbox.len()), (1, 2, 1));
        let mut acked = vec![BitSet::default(), BitSet::default()];
        for seq in 1..=3 {
            acked[1].insert(seq);
        }
        let ends = [SenderEnd::default(), SenderEnd { acked, ws: None }];
        let mut tally = Tally::default();
        tally.add(&shared, &client, &ends, &[0, 0, 0, 3]);
        assert_eq!((tally.lost, tally.doubled, tally.via_history), (1, 1, 1));
        let sync = r#"{"type":"sync","conversations":[{"conv":"dm:storm-000001:storm-000003","more":true},{"conv":"dm:storm-000001:storm-000002","more":false}]}"#;
        assert_eq!(client.senders_with_more(&shared, sync), [1]);
    }
}
