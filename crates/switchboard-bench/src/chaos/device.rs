//! One chaos client: a user with one connection that chats, logs what it sends, what is
//! acknowledged and what it receives, and comes back after whatever happened to its node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Target, WsStream};

/// Sends waiting for their acknowledgement, at most; past it a client skips its turn.
const MAX_PENDING: usize = 64;
/// How often sends refused or left unanswered are sent again (with their key).
const RETRY_PERIOD: Duration = Duration::from_millis(500);
/// How long a login or a presence question may take before the connection counts as lost.
const ANSWER_LIMIT: Duration = Duration::from_secs(15);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the clients are asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Chat,
    /// Send nothing new; get what is pending acknowledged.
    Drain,
    /// Resume once more (the final sync), then idle.
    Resync,
    Close,
}

/// Where every client is, for the orchestrator.
pub struct Placement {
    slots: Mutex<Vec<Slot>>,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    /// The node it is connected to and synced on.
    node: Option<usize>,
    /// When its oldest unacknowledged send began.
    oldest_pending: Option<Instant>,
    /// When the last acknowledged send began.
    last_acked_send: Option<Instant>,
    /// When it last finished a login's sync.
    synced_at: Option<Instant>,
    drained: bool,
    resynced: bool,
}

impl Placement {
    pub fn new(clients: usize) -> Placement {
        Placement { slots: Mutex::new(vec![Slot::default(); clients]) }
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut Slot)) {
        change(&mut self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index]);
    }

    fn slots(&self) -> Vec<Slot> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Every client connected to a running node, with a send begun since `since` acknowledged
    /// and none older pending; the `forced` ones (whose connections the fault ended) logged in
    /// again since.
    pub fn all_recovered(&self, since: Instant, down: &[bool], forced: &[bool]) -> bool {
        self.slots().iter().zip(forced).all(|(slot, forced)| {
            slot.node.is_some_and(|node| !down[node])
                && slot.oldest_pending.is_none_or(|oldest| oldest >= since)
                && slot.last_acked_send.is_some_and(|acked| acked >= since)
                && (!forced || slot.synced_at.is_some_and(|synced| synced >= since))
        })
    }

    pub fn all_drained(&self) -> bool {
        self.slots().iter().all(|slot| slot.drained)
    }

    pub fn all_resynced(&self) -> bool {
        self.slots().iter().all(|slot| slot.resynced && slot.node.is_some())
    }

    /// Each client's node, if connected.
    pub fn nodes(&self) -> Vec<Option<usize>> {
        self.slots().iter().map(|slot| slot.node).collect()
    }

    pub fn describe(&self) -> String {
        format!("{:?}", self.slots())
    }
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct DeviceLog {
    pub user: String,
    pub sent: u64,
    /// Acknowledged sends: conversation, seq, recipient's index.
    pub acked: BTreeSet<(String, u64, usize)>,
    /// Every seq received, per conversation.
    pub received: HashMap<String, BTreeSet<u64>>,
    pub doubled: u64,
    pub out_of_order: u64,
    pub reconnects: u64,
    pub examples: Vec<String>,
}

/// What a run's clients saw, added up and checked.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    /// Acknowledged messages their recipient's device never received.
    pub lost: u64,
    pub doubled: u64,
    pub out_of_order: u64,
    pub reconnects: u64,
    pub examples: Vec<String>,
}

impl Tally {
    pub fn of(logs: &[DeviceLog]) -> Tally {
        let mut tally = Tally::default();
        for log in logs {
            tally.sent += log.sent;
            tally.acked += log.acked.len() as u64;
            tally.received += log.received.values().map(|seqs| seqs.len() as u64).sum::<u64>();
            tally.doubled += log.doubled;
            tally.out_of_order += log.out_of_order;
            tally.reconnects += log.reconnects;
            tally.examples.extend(log.examples.iter().cloned());
        }
        for log in logs {
            for (conv, seq, to) in &log.acked {
                if !logs[*to].received.get(conv).is_some_and(|seqs| seqs.contains(seq)) {
                    tally.lost += 1;
                    tally.examples.push(format!("lost: {conv} seq {seq} from {} to {}", log.user, logs[*to].user));
                }
            }
        }
        tally.examples.truncate(20);
        tally
    }

    pub fn print(&self) {
        println!(
            "sent {}, acknowledged {}, received {}; lost {}, doubled {}, out of order {}; reconnects {}",
            self.sent, self.acked, self.received, self.lost, self.doubled, self.out_of_order, self.reconnects
        );
        for example in &self.examples {
            println!("  {example}");
        }
    }
}

struct Pending {
    to: usize,
    frame: String,
    began: Instant,
    /// Sent on the current connection and not refused.
    in_flight: bool,
}

enum Outcome {
    /// The connection could not be opened or logged in.
    Refused,
    /// It was up and ended.
    Lost,
    /// Closed to resume once more.
    Resync,
    Closed,
}

pub struct Device {
    index: usize,
    clients: usize,
    urls: Vec<String>,
    placement: Arc<Placement>,
    interval: Duration,
    token: Option<String>,
    /// Per conversation, the highest seq up to which this client holds every message.
    cursors: BTreeMap<String, u64>,
    /// Seqs held above the cursor.
    held: HashMap<String, BTreeSet<u64>>,
    pending: BTreeMap<String, Pending>,
    next_send: u64,
    resynced: bool,
    log: DeviceLog,
}

/// Starts `users` clients chatting at `rate` messages per second in total over `urls`; the
/// returned sender moves them through the phases.
pub fn spawn_devices(
    users: usize,
    rate: f64,
    urls: &[String],
) -> (Arc<Placement>, watch::Sender<Phase>, Vec<tokio::task::JoinHandle<DeviceLog>>) {
    let placement = Arc::new(Placement::new(users));
    let (phase, phase_watch) = watch::channel(Phase::Chat);
    let interval = Duration::from_secs_f64(users as f64 / rate);
    let devices = (0..users)
        .map(|index| {
            let device = Device::new(index, users, urls.to_vec(), placement.clone(), interval);
            tokio::spawn(device.run(phase_watch.clone()))
        })
        .collect();
    (placement, phase, devices)
}

/// Polls `done` until it holds, or fails after `limit` naming `what` and where the clients are.
pub async fn wait_until(
    what: &str,
    limit: Duration,
    placement: &Placement,
    done: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            anyhow::bail!("{what}: not within {limit:?}; clients: {}", placement.describe());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub fn user_name(index: usize) -> String {
    format!("user{index}")
}

impl Device {
    pub fn new(index: usize, clients: usize, urls: Vec<String>, placement: Arc<Placement>, interval: Duration) -> Self {
        let log = DeviceLog { user: user_name(index), ..DeviceLog::default() };
        Device {
            index,
            clients,
            urls,
            placement,
            interval,
            token: None,
            cursors: BTreeMap::new(),
            held: HashMap::new(),
            pending: BTreeMap::new(),
            next_send: 0,
            resynced: false,
            log,
        }
    }

    pub async fn run(mut self, mut phase: watch::Receiver<Phase>) -> DeviceLog {
        let mut node = self.index % self.urls.len();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let outcome = self.session(node, &mut phase).await;
            self.placement.update(self.index, |slot| slot.node = None);
            match outcome {
                Outcome::Closed => return self.log,
                Outcome::Resync => continue,
                Outcome::Lost => {
                    // Like the web client, come back on another node: the one just left may be
                    // down, and the others must then forget this client there.
                    self.log.reconnects += 1;
                    node = (node + 1) % self.urls.len();
                    backoff = BACKOFF_FIRST;
                    tokio::time::sleep(backoff).await;
                }
                Outcome::Refused => {
                    node = (node + 1) % self.urls.len();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn session(&mut self, node: usize, phase: &mut watch::Receiver<Phase>) -> Outcome {
        let Ok(target) = Target::resolve(&self.urls[node]).await else { return Outcome::Refused };
        let Ok(mut ws) = client::open(&target, None).await else { return Outcome::Refused };
        let login = match &self.token {
            None => json!({"type": "login_open", "username": self.log.user, "presence": false}),
            Some(token) => json!({"type": "resume", "token": token, "cursors": self.cursors, "presence": false}),
        };
        if ws.send(Message::text(login.to_string())).await.is_err() {
            return Outcome::Refused;
        }
        let resumed_with = self.cursors.clone();
        let mut on_connection = HashSet::new();
        loop {
            let Ok(Some(frame)) = tokio::time::timeout(ANSWER_LIMIT, next_frame(&mut ws)).await else {
                return Outcome::Refused;
            };
            match frame["type"].as_str() {
                Some("session") => self.token = frame["token"].as_str().map(str::to_owned),
                Some("message") => self.receive(&frame, &resumed_with, &mut on_connection, None),
                Some("synced") => break,
                Some("error") => return Outcome::Refused,
                _ => {}
            }
        }
        self.placement.update(self.index, |slot| {
            slot.node = Some(node);
            slot.synced_at = Some(Instant::now());
        });
        if *phase.borrow() == Phase::Resync && !self.resynced {
            self.resynced = true;
            self.placement.update(self.index, |slot| slot.resynced = true);
        }
        for pending in self.pending.values_mut() {
            pending.in_flight = false;
        }
        self.resend(&mut ws).await;
        let mut last_live = HashMap::new();
        let mut send_tick = tokio::time::interval(self.interval);
        let mut retry_tick = tokio::time::interval(RETRY_PERIOD);
        loop {
            tokio::select! {
                _ = send_tick.tick(), if *phase.borrow() == Phase::Chat => {
                    if self.pending.len() < MAX_PENDING && self.send_new(&mut ws).await.is_err() {
                        return Outcome::Lost;
                    }
                }
                _ = retry_tick.tick() => self.resend(&mut ws).await,
                frame = next_frame(&mut ws) => {
                    let Some(frame) = frame else { return Outcome::Lost };
                    match frame["type"].as_str() {
                        Some("ack") => self.acked(&frame),
                        Some("message") => self.receive(&frame, &resumed_with, &mut on_connection, Some(&mut last_live)),
                        Some("error") => {
                            if let Some(pending) = frame["ref"].as_str().and_then(|key| self.pending.get_mut(key)) {
                                pending.in_flight = false;
                            }
                        }
                        _ => {}
                    }
                    self.report_pending(*phase.borrow());
                }
                changed = phase.changed() => {
                    let next = if changed.is_ok() { *phase.borrow() } else { Phase::Close };
                    match next {
                        Phase::Resync if !self.resynced => {
                            let _ = ws.close(None).await;
                            return Outcome::Resync;
                        }
                        Phase::Close => {
                            let _ = ws.close(None).await;
                            return Outcome::Closed;
                        }
                        _ => self.report_pending(next),
                    }
                }
            }
        }
    }

    /// A private message to the next client in turn.
    async fn send_new(&mut self, ws: &mut WsStream) -> Result<(), ()> {
        self.next_send += 1;
        let to = (self.index + 1 + (self.next_send as usize % (self.clients - 1))) % self.clients;
        let key = format!("{}-{}", self.log.user, self.next_send);
        let text = format!("{key} to {}", user_name(to));
        let frame = json!({"type": "send", "ref": key, "key": key, "to": user_name(to), "text": text}).to_string();
        self.log.sent += 1;
        let sent = ws.send(Message::text(frame.clone())).await.is_ok();
        self.pending.insert(key, Pending { to, frame, began: Instant::now(), in_flight: sent });
        self.report_pending(Phase::Chat);
        if sent {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Sends again, with their keys, the sends refused or not yet sent on this connection.
    async fn resend(&mut self, ws: &mut WsStream) {
        for pending in self.pending.values_mut().filter(|pending| !pending.in_flight) {
            if ws.send(Message::text(pending.frame.clone())).await.is_err() {
                return;
            }
            pending.in_flight = true;
        }
    }

    fn acked(&mut self, frame: &Value) {
        let (Some(key), Some(conv), Some(seq)) = (frame["ref"].as_str(), frame["conv"].as_str(), frame["seq"].as_u64())
        else {
            return;
        };
        let Some(pending) = self.pending.remove(key) else { return };
        self.log.acked.insert((conv.to_owned(), seq, pending.to));
        self.hold(conv, seq);
        let began = pending.began;
        self.placement.update(self.index, |slot| {
            slot.last_acked_send = Some(slot.last_acked_send.map_or(began, |last| last.max(began)));
        });
    }

    fn report_pending(&self, phase: Phase) {
        let oldest = self.pending.values().map(|pending| pending.began).min();
        let drained = phase != Phase::Chat && self.pending.is_empty();
        self.placement.update(self.index, |slot| {
            slot.oldest_pending = oldest;
            slot.drained = drained;
        });
    }

    /// A message pushed to this connection, in its login's sync (`last_live` None) or live.
    fn receive(
        &mut self,
        frame: &Value,
        resumed_with: &BTreeMap<String, u64>,
        on_connection: &mut HashSet<(String, u64)>,
        last_live: Option<&mut HashMap<String, u64>>,
    ) {
        let (Some(conv), Some(seq)) = (frame["conv"].as_str(), frame["seq"].as_u64()) else { return };
        let cursor = resumed_with.get(conv).copied().unwrap_or(0);
        if !on_connection.insert((conv.to_owned(), seq)) || seq <= cursor {
            self.log.doubled += 1;
            self.log.examples.push(format!("doubled: {conv} seq {seq} to {} (resumed at {cursor})", self.log.user));
        }
        if let Some(last_live) = last_live {
            let last = last_live.entry(conv.to_owned()).or_insert(0);
            if seq < *last {
                self.log.out_of_order += 1;
            }
            *last = (*last).max(seq);
        }
        self.log.received.entry(conv.to_owned()).or_default().insert(seq);
        self.hold(conv, seq);
    }

    fn hold(&mut self, conv: &str, seq: u64) {
        let cursor = self.cursors.entry(conv.to_owned()).or_insert(0);
        let held = self.held.entry(conv.to_owned()).or_default();
        if seq > *cursor {
            held.insert(seq);
        }
        while held.remove(&(*cursor + 1)) {
            *cursor += 1;
        }
    }
}

/// The next JSON frame, `None` once the connection is over.
async fn next_frame(ws: &mut WsStream) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The nodes the node at `url` shows each of `clients` users on (empty: offline).
pub async fn presence_of(url: &str, clients: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let target = Target::resolve(url).await?;
    let mut ws = client::open(&target, None).await.map_err(|failure| anyhow::anyhow!("{failure:?}"))?;
    let login = json!({"type": "login_open", "ref": "login", "username": "probe", "presence": false});
    ask(&mut ws, login).await?;
    let mut shown = Vec::with_capacity(clients);
    for index in 0..clients {
        let stats = ask(&mut ws, json!({"type": "stats", "ref": "stats", "user": user_name(index)})).await?;
        let mut nodes: Vec<String> = match stats["online"].as_bool() {
            Some(true) => serde_json::from_value(stats["nodes"].clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        nodes.sort();
        shown.push(nodes);
    }
    let _ = ws.close(None).await;
    Ok(shown)
}

/// Sends `request` and returns the answer carrying its `ref`.
async fn ask(ws: &mut WsStream, request: Value) -> anyhow::Result<Value> {
    let reference = request["ref"].clone();
    ws.send(Message::text(request.to_string())).await?;
    let answer = async {
        while let Some(frame) = next_frame(ws).await {
            if frame["ref"] == reference {
                return Some(frame);
            }
        }
        None
    };
    match tokio::time::timeout(ANSWER_LIMIT, answer).await {
        Ok(Some(frame)) if frame["type"] != "error" => Ok(frame),
        Ok(Some(frame)) => anyhow::bail!("refused: {frame}"),
        Ok(None) => anyhow::bail!("connection ended"),
        Err(_) => anyhow::bail!("no answer within {ANSWER_LIMIT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_highest_seq_held_without_a_gap() {
        let placement = Arc::new(Placement::new(2));
        let mut device = Device::new(0, 2, vec!["ws://127.0.0.1:1/ws".into()], placement, Duration::from_secs(1));
        let resumed_with = BTreeMap::from([("c".to_owned(), 1)]);
        let mut on_connection = HashSet::new();
        let mut last_live = HashMap::new();
        for seq in [3, 2, 3, 1, 5] {
            let frame = json!({"type": "message", "conv": "c", "seq": seq});
            device.receive(&frame, &resumed_with, &mut on_connection, Some(&mut last_live));
        }
        assert_eq!(device.cursors["c"], 3, "4 is missing");
        assert_eq!(device.log.doubled, 2, "3 twice on one connection, 1 at the resume cursor");
        assert_eq!(device.log.out_of_order, 2, "2 after 3, 1 after 3");
    }
}
