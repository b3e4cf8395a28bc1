//! `switchboard bench presence`: users come online and go offline at a rate; how fast everyone
//! watching presence sees it, whether anyone misses it, and what it costs the server.
//!
//! `--watchers` connections log in with `presence: true` and stay for the whole run. Churn users
//! come online at `--rate` per second: each opens a connection, logs in with `presence: true` (so
//! it receives the online list and the events too, as a real client would), stays `--online-ms`,
//! then closes it. Every login makes the user come online (one `user_online` to every presence
//! connection) and every close makes them go offline (one `user_offline`): a user is offline once
//! their last connection anywhere closed, so each churn user has one connection at a time. Churn
//! users come from a pool large enough that a user is reused only some seconds after going
//! offline. With several `--url`s watchers and churn users are spread over the nodes, so most
//! events cross the bus. This measures the servers' `presence = "everyone"` setting (start them
//! with `--presence everyone`): with the default, contacts only, strangers hear nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::client::{LoadArgs, WsStream};
use crate::floor::{FloorCost, FloorOption};
use crate::metrics::ServerDelta;
use crate::report::{self, Latency};

mod shared;
mod summary;
mod users;
use shared::{Seen, Shared};
use summary::print_progress;
pub use summary::summary;
use users::{churn, watcher};

/// How long after the connect phase the first churn user comes online.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A churn user is reused at least this long after its last cycle began, past its time online.
const POOL_MARGIN_SECS: f64 = 2.0;

/// Options of `switchboard bench presence`.
#[derive(clap::Args, Debug)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Connections watching presence (`presence: true`) for the whole run, users of their own.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub watchers: u32,
    /// Churn users coming online per second; each connects, logs in with presence on, stays
    /// --online-ms and closes.
    #[arg(long, default_value_t = 20.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    /// How long each churn user stays online.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub online_ms: u64,
    #[command(flatten)]
    pub floor: FloorOption,
}

impl PresenceArgs {
    /// Churn users: enough that each is reused only [`POOL_MARGIN_SECS`] after its time online.
    pub fn pool(&self) -> u32 {
        (self.rate * (self.online_ms as f64 / 1000.0 + POOL_MARGIN_SECS)).ceil() as u32 + 1
    }
}

/// Everything `presence` measured; the `--json` line. Latencies and rates cover the churn cycles
/// that began within the measured window.
#[derive(Debug, Serialize)]
pub struct PresenceReport {
    pub scenario: &'static str,
    pub urls: Vec<String>,
    pub watchers: u32,
    pub rate: f64,
    pub online_ms: u64,
    /// Churn users, each reused in turn.
    pub pool: u32,
    /// Churn before the window (at least until every pool user has logged in once, so that user
    /// creation is not measured), and the window.
    pub warmup_secs: f64,
    pub duration_secs: u64,
    pub sources: usize,
    pub user_prefix: String,
    pub connect_secs: f64,
    /// The watchers' handshakes.
    pub handshake: Option<Latency>,
    /// Churn cycles begun in the window, and churn logins that succeeded / failed (whole run).
    pub cycles: u64,
    pub logins: u64,
    pub login_failures: BTreeMap<String, u64>,
    /// A churn client's login frame sent -> its `synced`.
    pub login: Option<Latency>,
    /// A churn client's login frame sent -> a watcher's `user_online` (the event goes out while
    /// the login is set up, before the client's own `synced`), and its close -> `user_offline`.
    pub online_latency: Option<Latency>,
    pub offline_latency: Option<Latency>,
    /// Over the whole run, per watcher: the events about churn users it should have seen (one
    /// `user_online` per successful login, one `user_offline` per close), those it missed, and
    /// those beyond (e.g. a login that failed after it was announced).
    pub events_expected: u64,
    pub missed: u64,
    pub extra: u64,
    /// Events about a churn user that could not be matched with a cycle (no latency recorded).
    pub unmatched: u64,
    /// `user_online` / `user_offline` frames received by every presence connection (watchers and
    /// churn users) within the window, and per second.
    pub events_in_window: u64,
    pub events_per_sec: f64,
    pub server: ServerDelta,
    pub server_cpu_secs_per_million_events: Option<f64>,
    /// Server CPU per churn cycle (login, online list, events, close), in milliseconds.
    pub server_cpu_ms_per_cycle: Option<f64>,
    pub floor: Option<FloorCost>,
    /// Server CPU per event as a multiple of the floor's one write.
    pub server_cpu_floor_multiple: Option<f64>,
    pub drops: BTreeMap<String, u64>,
    pub bench_cpu_secs: Option<f64>,
    pub bench_rss_bytes: Option<u64>,
}

pub async fn run(args: PresenceArgs) -> anyhow::Result<()> {
    let json = args.load.json;
    let report = measure(args).await?;
    report::print(&summary(&report), &report, json)
}

/// Runs the scenario and returns what it measured.
pub async fn measure(args: PresenceArgs) -> anyhow::Result<PresenceReport> {
    let load = &args.load;
    let floor = args.floor.cost().await?;
    let nodes = Arc::new(load.nodes().await?);
    let pool = args.pool();
    let prefix = load.prefix("presence", u64::from(args.watchers) + u64::from(pool))?;
    let online_at_once = (args.rate * args.online_ms as f64 / 1000.0).ceil() as u64;
    if let Some(limit) = crate::open_files_limit() {
        if limit < u64::from(args.watchers) + online_at_once + 64 {
            eprintln!("warning: the open-files limit is {limit}, too low for {} watchers", args.watchers);
        }
    }
    // The window starts once every pool user has been online once (its user row exists).
    let warmup_secs = (load.warmup_secs as f64).max(f64::from(pool) / args.rate);
    eprintln!(
        "presence: {} watchers, {} users/s coming online for {} ms each (pool of {pool}), {warmup_secs:.1} s warm-up + {} s measured, on {} node{}, users {prefix}-*",
        args.watchers,
        args.rate,
        args.online_ms,
        load.duration_secs,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
    );
    nodes.check_up().await?;

    let span_secs = warmup_secs + load.duration_secs as f64;
    let total_cycles = (span_secs * args.rate).ceil() as usize + 1;
    let shared = Arc::new(Shared::new(&args, prefix.clone(), total_cycles));
    let placement: Vec<usize> = (0..args.watchers as usize).map(|watcher| watcher % nodes.len()).collect();
    let sources = nodes.assign_sources(&placement);
    let (stop_tx, stop_rx) = watch::channel(false);
    let watchers: Vec<_> = (0..args.watchers)
        .map(|index| {
            let at = (nodes.targets[placement[index as usize]].clone(), sources[index as usize]);
            tokio::spawn(watcher(shared.clone(), index, at, stop_rx.clone()))
        })
        .collect();
    let connect_time = shared.logins.connector.wait_all(u64::from(args.watchers)).await;
    let failures = shared.logins.connector.failures();
    if !failures.is_empty() {
        let _ = stop_tx.send(true);
        report::eprint_reasons("connection failures", &failures);
        close(watchers).await;
        bail!("{} of {} watchers failed to connect", failures.values().sum::<u64>(), args.watchers);
    }

    let clock = shared.clock;
    let start = clock.nanos() + START_DELAY.as_nanos() as u64;
    let measure_from = start + (warmup_secs * 1e9) as u64;
    let measure_to = measure_from + load.duration_secs * 1_000_000_000;
    shared.measure_from.store(measure_from, Ordering::Relaxed);
    shared.measure_to.store(measure_to, Ordering::Relaxed);
    let (progress_done, progress_rx) = oneshot::channel();
    let progress = tokio::spawn(print_progress(shared.clone(), args.watchers, progress_rx));
    let window = tokio::spawn({
        let nodes = nodes.clone();
        async move {
            tokio::time::sleep_until(clock.instant(measure_from)).await;
            let before = (nodes.scrape("at the window's start").await, report::own_cpu_seconds());
            tokio::time::sleep_until(clock.instant(measure_to)).await;
            let after = (nodes.scrape("at the window's end").await, report::own_cpu_seconds());
            (before, after)
        }
    });
    let mut cycles = Vec::with_capacity(total_cycles);
    let mut cycles_in_window = 0;
    for cycle in 0..total_cycles as u32 {
        let due = start + (f64::from(cycle) * 1e9 / args.rate) as u64;
        if due >= measure_to {
            break;
        }
        cycles_in_window += u64::from(due >= measure_from);
        tokio::time::sleep_until(clock.instant(due)).await;
        let node = cycle as usize % nodes.len();
        let at = (nodes.targets[node].clone(), nodes.source(node, cycle as usize / nodes.len()));
        cycles.push(tokio::spawn(churn(shared.clone(), cycle, at)));
    }
    let ((before, cpu_before), (after, cpu_after)) = window.await.context("the window's scrapes")?;
    let bench_rss = report::own_rss_bytes();
    for cycle in cycles {
        let _ = cycle.await;
    }
    // Grace: until every watcher has seen an event for every login and every close.
    let expected = |shared: &Shared| {
        u64::from(args.watchers) * (shared.logged_in.load(Ordering::Relaxed) + shared.closes.load(Ordering::Relaxed))
    };
    let grace_end = tokio::time::Instant::now() + Duration::from_secs(load.grace_secs);
    while shared.watcher_events.load(Ordering::Relaxed) < expected(&shared) && tokio::time::Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let _ = progress_done.send(());
    let _ = progress.await;

    let per_watcher = shared.logged_in.load(Ordering::Relaxed) + shared.closes.load(Ordering::Relaxed);
    let (mut missed, mut extra, mut unmatched) = (0, 0, 0);
    let mut open = Vec::with_capacity(watchers.len());
    for task in watchers {
        let Ok((seen, ws)) = task.await else { continue };
        open.extend(ws);
        let got = seen.online + seen.offline;
        missed += per_watcher.saturating_sub(got);
        extra += got.saturating_sub(per_watcher);
        unmatched += seen.unmatched;
    }
    crate::client::close_all(open, CLOSE_TIMEOUT).await;

    let server = ServerDelta::between(&before, &after);
    let events_in_window = shared.events_in_window.load(Ordering::Relaxed);
    let cpu_per_million = server.cpu_per_million(events_in_window as f64);
    Ok(PresenceReport {
        scenario: "presence",
        urls: nodes.urls(),
        watchers: args.watchers,
        rate: args.rate,
        online_ms: args.online_ms,
        pool,
        warmup_secs,
        duration_secs: load.duration_secs,
        sources: nodes.sources_per_node(),
        user_prefix: prefix,
        connect_secs: connect_time.as_secs_f64(),
        handshake: shared.logins.connector.handshake.latency(),
        cycles: cycles_in_window,
        logins: shared.logged_in.load(Ordering::Relaxed),
        login_failures: shared.login_failures.snapshot(),
        login: shared.login_latency.latency(),
        online_latency: shared.online_latency.latency(),
        offline_latency: shared.offline_latency.latency(),
        events_expected: u64::from(args.watchers) * per_watcher,
        missed,
        extra,
        unmatched,
        events_in_window,
        events_per_sec: events_in_window as f64 / load.duration_secs as f64,
        server_cpu_ms_per_cycle: server.cpu_seconds.and_then(|cpu| report::ratio(cpu * 1e3, cycles_in_window as f64)),
        server_cpu_secs_per_million_events: cpu_per_million,
        server_cpu_floor_multiple: floor.and_then(|floor| floor.multiple(cpu_per_million, 0.0, 1.0)),
        floor,
        server,
        drops: shared.drops.snapshot(),
        bench_cpu_secs: cpu_after.zip(cpu_before).map(|(after, before)| after - before),
        bench_rss_bytes: bench_rss,
    })
}

/// Waits for the watchers to stop and closes their connections.
async fn close(watchers: Vec<tokio::task::JoinHandle<(Seen, Option<WsStream>)>>) {
    let mut open = Vec::with_capacity(watchers.len());
    for task in watchers {
        open.extend(task.await.ok().and_then(|(_, ws)| ws));
    }
    crate::client::close_all(open, CLOSE_TIMEOUT).await;
}
