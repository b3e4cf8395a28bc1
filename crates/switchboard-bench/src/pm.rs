//! `switchboard bench pm`: private messages between pairs of users at a steady total rate. Each
//! pair's sender sends to its receiver; every message's text carries its send time, so the
//! receiver measures end-to-end latency (send to receive) and the sender the time to the `ack`.
//! With several `--url`s, the two ends of a pair sit on different nodes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::frame::{self, Probe};
use crate::client::{text_frame, Clock, Connector, LoadArgs, WsStream};
use crate::metrics::ServerDelta;
use crate::report::{self, BitSet, Histogram, Latency, Reasons};

mod summary;
use summary::print_progress;
pub use summary::summary;

/// How long after the connect phase the first message goes out (every task is ready by then).
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `switchboard bench pm`.
#[derive(clap::Args, Debug)]
pub struct PmArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Sender/receiver pairs: two users, two connections each.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairs: u32,
    /// Messages per second over all pairs, paced evenly (pair i sends every pairs/rate seconds,
    /// i/rate seconds after pair 0).
    #[arg(long, default_value_t = 1000.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    #[command(flatten)]
    pub floor: crate::floor::FloorOption,
}

/// Everything `pm` measured; the `--json` line. Message counts are of the messages sent within the
/// measured window (after the warm-up).
#[derive(Debug, Serialize)]
pub struct PmReport {
    pub scenario: &'static str,
    pub urls: Vec<String>,
    pub pairs: u32,
    pub rate: f64,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub sources: usize,
    pub user_prefix: String,
    pub connections: u64,
    pub connect_secs: f64,
    pub handshake: Option<Latency>,
    pub sent: u64,
    pub acked: u64,
    /// Received at least once by the end of the grace period.
    pub received: u64,
    /// Acknowledged but never received.
    pub lost: u64,
    /// Sent but never acknowledged (errors, or no answer by the end).
    pub unacked: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Received after a later message of the same pair (the protocol promises order).
    pub out_of_order: u64,
    /// Messages the receivers could not attribute (not their pair's).
    pub unexpected: u64,
    /// Sent per second of the window.
    pub achieved_rate: f64,
    /// Received per second of the window (by arrival time).
    pub received_rate: f64,
    /// Send to receive.
    pub latency: Option<Latency>,
    /// Send to `ack`.
    pub ack_latency: Option<Latency>,
    pub errors: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    /// The servers over the measured window, summed over the nodes.
    pub server: ServerDelta,
    pub server_cpu_secs_per_million_messages: Option<f64>,
    /// This machine's floor, and the server's CPU per message as a multiple of a message's socket
    /// work at the floor (one read and two writes: the send, the delivery, the ack).
    pub floor: Option<crate::floor::FloorCost>,
    pub server_cpu_floor_multiple: Option<f64>,
    pub bus_messages_per_delivery: Option<f64>,
    pub bench_cpu_secs: Option<f64>,
    pub bench_cpu_us_per_received_message: Option<f64>,
    pub bench_rss_bytes: Option<u64>,
}

/// When to send and what to measure, in [`Clock`] nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    send_from: u64,
    measure_from: u64,
    /// Sending stops here too.
    measure_to: u64,
}

impl Window {
    fn measures(&self, nanos: u64) -> bool {
        (self.measure_from..self.measure_to).contains(&nanos)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Wait,
    Run(Window),
    Stop,
}

/// What every connection task shares. Counters are totals over the whole run (for progress and
/// for knowing when everything has arrived); the window's figures come from the tasks' results.
struct Shared {
    clock: Clock,
    connector: Connector,
    prefix: String,
    /// Between two messages of one pair.
    period_nanos: f64,
    /// Between two messages of consecutive pairs.
    slot_nanos: f64,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    /// Received within the measured window (by arrival time).
    arrived_in_window: AtomicU64,
    latency: Histogram,
    ack_latency: Histogram,
    errors: Reasons,
    drops: Reasons,
}

impl Shared {
    fn user(&self, connection: u32) -> String {
        format!("{}-{connection:06}", self.prefix)
    }
}

/// What a sender ends with.
#[derive(Default)]
struct Sent {
    /// Send time of each message, by its seq.
    at: Vec<u64>,
    acked: BitSet,
    ws: Option<WsStream>,
}

/// What a receiver ends with.
#[derive(Default)]
struct Received {
    seqs: BitSet,
    /// Of messages sent within the window.
    duplicates: u64,
    out_of_order: u64,
    /// The highest seq received.
    highest: Option<u32>,
    unexpected: u64,
    ws: Option<WsStream>,
}

pub async fn run(args: PmArgs) -> anyhow::Result<()> {
    let load = &args.load;
    let floor = args.floor.cost().await?;
    let nodes = load.nodes().await?;
    let connections = 2 * u64::from(args.pairs);
    let prefix = load.prefix("pm", connections)?;
    if let Some(limit) = crate::open_files_limit() {
        if limit < connections + 64 {
            eprintln!("warning: the open-files limit is {limit}, too low for {connections} connections");
        }
    }
    eprintln!(
        "pm: {} pairs, {} msg/s in total, {} s warm-up + {} s measured, on {} node{} ({} source address{} each), users {prefix}-*",
        args.pairs,
        args.rate,
        load.warmup_secs,
        load.duration_secs,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        nodes.sources_per_node(),
        if nodes.sources_per_node() == 1 { "" } else { "es" },
    );
    nodes.check_up().await?;

    // Pair i: connection 2i (the sender) on node i, connection 2i+1 (the receiver) on the next.
    let placement: Vec<usize> =
        (0..args.pairs as usize).flat_map(|pair| [pair % nodes.len(), (pair + 1) % nodes.len()]).collect();
    let sources = nodes.assign_sources(&placement);
    let shared = Arc::new(Shared {
        clock: Clock::start(),
        connector: Connector::new(&load.jwt_secret, Duration::from_secs(load.timeout_secs), load.concurrency),
        prefix: prefix.clone(),
        period_nanos: f64::from(args.pairs) / args.rate * 1e9,
        slot_nanos: 1e9 / args.rate,
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        arrived_in_window: AtomicU64::new(0),
        latency: Histogram::default(),
        ack_latency: Histogram::default(),
        errors: Reasons::default(),
        drops: Reasons::default(),
    });
    let (control_tx, control_rx) = watch::channel(Control::Wait);
    let mut senders = Vec::with_capacity(args.pairs as usize);
    let mut receivers = Vec::with_capacity(args.pairs as usize);
    for pair in 0..args.pairs {
        let (s, r) = (2 * pair as usize, 2 * pair as usize + 1);
        let target = |c: usize| (nodes.targets[placement[c]].clone(), sources[c]);
        senders.push(tokio::spawn(sender(shared.clone(), pair, target(s), control_rx.clone())));
        receivers.push(tokio::spawn(receiver(shared.clone(), pair, target(r), control_rx.clone())));
    }
    let connect_time = shared.connector.wait_all(connections).await;
    let failures = shared.connector.failures();
    if !failures.is_empty() {
        let _ = control_tx.send(Control::Stop);
        report::eprint_reasons("connection failures", &failures);
        let mut open = Vec::new();
        for task in senders {
            open.extend(task.await.ok().and_then(|sent| sent.ws));
        }
        for task in receivers {
            open.extend(task.await.ok().and_then(|received| received.ws));
        }
        client_close(open).await;
        bail!("{} of {connections} connections failed; nothing was sent", failures.values().sum::<u64>());
    }

    let clock = shared.clock;
    let send_from = clock.nanos() + START_DELAY.as_nanos() as u64;
    let measure_from = send_from + load.warmup_secs * 1_000_000_000;
    let window = Window { send_from, measure_from, measure_to: measure_from + load.duration_secs * 1_000_000_000 };
    let _ = control_tx.send(Control::Run(window));
    let (progress_done, progress_rx) = oneshot::channel();
    let progress = tokio::spawn(print_progress(shared.clone(), window, progress_rx));

    tokio::time::sleep_until(clock.instant(window.measure_from)).await;
    let (before, cpu_before) = (nodes.scrape("at the window's start").await, report::own_cpu_seconds());
    tokio::time::sleep_until(clock.instant(window.measure_to)).await;
    let (after, cpu_after) = (nodes.scrape("at the window's end").await, report::own_cpu_seconds());
    let bench_rss = report::own_rss_bytes();

    // Grace: until every message has its answer and every acknowledged one has arrived.
    let grace_end = tokio::time::Instant::now() + Duration::from_secs(load.grace_secs);
    loop {
        let sent = shared.sent.load(Ordering::Relaxed);
        let acked = shared.acked.load(Ordering::Relaxed);
        let settled = acked + shared.errors.total() >= sent && shared.received.load(Ordering::Relaxed) >= acked;
        if settled || tokio::time::Instant::now() >= grace_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = control_tx.send(Control::Stop);
    let _ = progress_done.send(());
    let _ = progress.await;

    let mut open = Vec::with_capacity(connections as usize);
    let (mut sent, mut acked, mut received, mut lost) = (0, 0, 0, 0);
    let (mut duplicates, mut out_of_order, mut unexpected) = (0, 0, 0);
    for (sender, receiver) in senders.into_iter().zip(receivers) {
        let mut ends = sender.await.unwrap_or_default();
        let mut got = receiver.await.unwrap_or_default();
        open.extend(ends.ws.take());
        open.extend(got.ws.take());
        duplicates += got.duplicates;
        out_of_order += got.out_of_order;
        unexpected += got.unexpected;
        for (seq, &at) in ends.at.iter().enumerate() {
            if !window.measures(at) {
                continue;
            }
            let seq = seq as u32;
            let (was_acked, was_received) = (ends.acked.contains(seq), got.seqs.contains(seq));
            sent += 1;
            acked += u64::from(was_acked);
            received += u64::from(was_received);
            lost += u64::from(was_acked && !was_received);
        }
    }
    client_close(open).await;

    let server = ServerDelta::between(&before, &after);
    // A message's socket work: read the send, write the delivery, write the ack.
    let floor_multiple = floor.and_then(|floor| floor.multiple(server.cpu_per_million(sent as f64), 1.0, 2.0));
    let duration = load.duration_secs as f64;
    let bench_cpu = cpu_after.zip(cpu_before).map(|(after, before)| after - before);
    let arrived = shared.arrived_in_window.load(Ordering::Relaxed);
    let report = PmReport {
        scenario: "pm",
        urls: nodes.urls(),
        pairs: args.pairs,
        rate: args.rate,
        duration_secs: load.duration_secs,
        warmup_secs: load.warmup_secs,
        sources: nodes.sources_per_node(),
        user_prefix: prefix,
        connections,
        connect_secs: connect_time.as_secs_f64(),
        handshake: shared.connector.handshake.latency(),
        sent,
        acked,
        received,
        lost,
        unacked: sent - acked,
        duplicates,
        out_of_order,
        unexpected,
        achieved_rate: sent as f64 / duration,
        received_rate: arrived as f64 / duration,
        latency: shared.latency.latency(),
        ack_latency: shared.ack_latency.latency(),
        errors: shared.errors.snapshot(),
        drops: shared.drops.snapshot(),
        server_cpu_secs_per_million_messages: server.cpu_per_million(sent as f64),
        server_cpu_floor_multiple: floor_multiple,
        floor,
        bus_messages_per_delivery: server.bus_per_delivery(),
        server,
        bench_cpu_secs: bench_cpu,
        bench_cpu_us_per_received_message: bench_cpu.and_then(|cpu| report::ratio(cpu * 1e6, arrived as f64)),
        bench_rss_bytes: bench_rss,
    };
    report::print(&summary(&report), &report, load.json)
}

async fn client_close(open: Vec<WsStream>) {
    crate::client::close_all(open, CLOSE_TIMEOUT).await;
}

/// A pair's sender: sends on its schedule, matches `ack`s (by `ref` = seq) to send times.
async fn sender(
    shared: Arc<Shared>,
    pair: u32,
    (target, source): (crate::client::Target, Option<IpAddr>),
    mut control: watch::Receiver<Control>,
) -> Sent {
    let user = shared.user(2 * pair);
    let peer = shared.user(2 * pair + 1);
    let mut ws = match shared.connector.connect(&target, source, &user).await {
        Ok((ws, _permit)) => ws,
        Err(failure) => {
            shared.connector.failed(&failure);
            return Sent::default();
        }
    };
    shared.connector.ready();
    let clock = shared.clock;
    let mut out = Sent::default();
    let mut window: Option<Window> = None;
    let mut next_send: Option<u64> = None;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => on_sender_frame(&shared, &text, &mut out, window),
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return out;
                }
            },
            () = &mut sleep, if next_send.is_some() => {
                let (Some(window), Some(_)) = (window, next_send) else { continue };
                let seq = out.at.len() as u32;
                let sent_nanos = clock.nanos();
                let text = Probe { id: pair, seq, sent_nanos }.text();
                let request = format!(r#"{{"type":"send","to":"{peer}","text":"{text}","ref":{seq}}}"#);
                if let Err(error) = ws.send(Message::text(request)).await {
                    shared.drops.add(format!("write error: {error}"));
                    return out;
                }
                out.at.push(sent_nanos);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                next_send = scheduled(&shared, pair, window, seq + 1);
                if let Some(at) = next_send {
                    sleep.as_mut().reset(clock.instant(at));
                }
            }
            changed = control.changed() => {
                let now = *control.borrow_and_update();
                match now {
                    _ if changed.is_err() => break,
                    Control::Stop => break,
                    Control::Run(run) if window.is_none() => {
                        window = Some(run);
                        next_send = scheduled(&shared, pair, run, 0);
                        if let Some(at) = next_send {
                            sleep.as_mut().reset(clock.instant(at));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out.ws = Some(ws);
    out
}

/// When a pair's `seq`-th message is due, if before the window's end.
fn scheduled(shared: &Shared, pair: u32, window: Window, seq: u32) -> Option<u64> {
    let offset = f64::from(pair) * shared.slot_nanos + f64::from(seq) * shared.period_nanos;
    let at = window.send_from + offset as u64;
    (at < window.measure_to).then_some(at)
}

fn on_sender_frame(shared: &Shared, text: &str, out: &mut Sent, window: Option<Window>) {
    match frame::kind(text) {
        Some("ack") => {
            let now = shared.clock.nanos();
            let Some(seq) = frame::u64_field(text, "\"ref\":").and_then(|seq| u32::try_from(seq).ok()) else {
                return;
            };
            let Some(&sent_at) = out.at.get(seq as usize) else { return };
            if out.acked.insert(seq) {
                shared.acked.fetch_add(1, Ordering::Relaxed);
                if window.is_some_and(|window| window.measures(sent_at)) {
                    shared.ack_latency.record_nanos(sent_at, now);
                }
            }
        }
        Some("error") => shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown")),
        _ => {}
    }
}

/// A pair's receiver: records every message's latency and seq.
async fn receiver(
    shared: Arc<Shared>,
    pair: u32,
    (target, source): (crate::client::Target, Option<IpAddr>),
    mut control: watch::Receiver<Control>,
) -> Received {
    let user = shared.user(2 * pair + 1);
    let mut ws = match shared.connector.connect(&target, source, &user).await {
        Ok((ws, _permit)) => ws,
        Err(failure) => {
            shared.connector.failed(&failure);
            return Received::default();
        }
    };
    shared.connector.ready();
    let mut out = Received::default();
    let mut window: Option<Window> = None;
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => {
                    if frame::kind(&text) != Some("message") {
                        continue;
                    }
                    let now = shared.clock.nanos();
                    let (Some(probe), Some(window)) = (Probe::in_message(&text), window) else {
                        out.unexpected += 1;
                        continue;
                    };
                    if probe.id != pair {
                        out.unexpected += 1;
                        continue;
                    }
                    let measured = window.measures(probe.sent_nanos);
                    if out.seqs.insert(probe.seq) {
                        shared.received.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            shared.latency.record_nanos(probe.sent_nanos, now);
                            if out.highest.is_some_and(|highest| probe.seq < highest) {
                                out.out_of_order += 1;
                            }
                        }
                        out.highest = out.highest.max(Some(probe.seq));
                        if window.measures(now) {
                            shared.arrived_in_window.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if measured {
                        out.duplicates += 1;
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return out;
                }
            },
            changed = control.changed() => {
                let now = *control.borrow_and_update();
                match now {
                    _ if changed.is_err() => break,
                    Control::Stop => break,
                    Control::Run(run) => window = Some(run),
                    Control::Wait => {}
                }
            }
        }
    }
    out.ws = Some(ws);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_paced_evenly_until_the_window_ends() {
        let shared = Shared {
            clock: Clock::start(),
            connector: Connector::new("s", Duration::from_secs(1), 1),
            prefix: "pm".into(),
            period_nanos: 4.0 / 100.0 * 1e9,
            slot_nanos: 1e9 / 100.0,
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            arrived_in_window: AtomicU64::new(0),
            latency: Histogram::default(),
            ack_latency: Histogram::default(),
            errors: Reasons::default(),
            drops: Reasons::default(),
        };
        let window = Window { send_from: 1_000, measure_from: 500_000_000, measure_to: 1_000_000_000 };
        assert_eq!(scheduled(&shared, 0, window, 0), Some(1_000));
        assert_eq!(scheduled(&shared, 1, window, 0), Some(10_001_000));
        assert_eq!(scheduled(&shared, 1, window, 1), Some(50_001_000));
        // 100 msg/s over 4 pairs for 1 s: 25 messages each.
        let per_pair: Vec<u32> = (0..4)
            .map(|pair| (0..100).take_while(|&seq| scheduled(&shared, pair, window, seq).is_some()).count() as u32)
            .collect();
        assert_eq!(per_pair, [25, 25, 25, 25]);
        assert_eq!(shared.user(3), "pm-000003");
    }
}
