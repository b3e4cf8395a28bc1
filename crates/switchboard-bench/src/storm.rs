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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::client::{Clock, LoadArgs, WsStream};
use crate::metrics::ServerDelta;
use crate::report::{self, Latency};

mod clients;
mod login;
mod sender;
mod shared;
mod summary;
use clients::{client_task, Client};
pub(crate) use login::{connect_with, log_in, Logins};
use sender::{sender_task, SenderEnd};
use shared::{Control, Phase, Shared, Tally};
use summary::print_progress;
pub use summary::summary;

/// How long after the connect phase the first message goes out.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
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
