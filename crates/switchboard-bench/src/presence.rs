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
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::client::{self, frame, text_frame, Clock, LoadArgs, Target, WsStream};
use crate::floor::{self, FloorCost, FloorOption};
use crate::metrics::{self, ServerDelta};
use crate::report::{self, Histogram, Latency, Reasons};
use crate::storm::{connect_with, log_in, Logins};

/// How long after the connect phase the first churn user comes online.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A churn user is reused at least this long after its last cycle began, past its time online.
const POOL_MARGIN_SECS: f64 = 2.0;
/// `slot_cycle` of a pool user that has not been used yet.
const NO_CYCLE: u32 = u32::MAX;

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

/// When a churn cycle's user logged in and closed ([`Clock`] nanoseconds, 0 for not yet).
#[derive(Default)]
struct Cycle {
    login_sent: AtomicU64,
    closed: AtomicU64,
}

/// What every task shares.
struct Shared {
    clock: Clock,
    /// The users' logins; its connector counts the watchers and times their handshakes.
    logins: Logins,
    watchers: u32,
    pool: u32,
    online: Duration,
    /// The measured window, [`Clock`] nanoseconds (0 until known).
    measure_from: AtomicU64,
    measure_to: AtomicU64,
    cycles: Vec<Cycle>,
    /// The cycle each pool user is in now.
    slot_cycle: Vec<AtomicU32>,
    /// Churn logins that succeeded.
    logged_in: AtomicU64,
    closes: AtomicU64,
    /// Events about churn users seen by the watchers.
    watcher_events: AtomicU64,
    /// Events received by any presence connection.
    events: AtomicU64,
    events_in_window: AtomicU64,
    login_latency: Histogram,
    online_latency: Histogram,
    offline_latency: Histogram,
    login_failures: Reasons,
    drops: Reasons,
}

impl Shared {
    /// With room for `cycles` churn cycles; the window is set once the watchers are connected.
    fn new(args: &PresenceArgs, prefix: String, cycles: usize) -> Self {
        Shared {
            clock: Clock::start(),
            logins: Logins::new(&args.load, prefix),
            watchers: args.watchers,
            pool: args.pool(),
            online: Duration::from_millis(args.online_ms),
            measure_from: AtomicU64::new(0),
            measure_to: AtomicU64::new(0),
            cycles: (0..cycles).map(|_| Cycle::default()).collect(),
            slot_cycle: (0..args.pool()).map(|_| AtomicU32::new(NO_CYCLE)).collect(),
            logged_in: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            watcher_events: AtomicU64::new(0),
            events: AtomicU64::new(0),
            events_in_window: AtomicU64::new(0),
            login_latency: Histogram::default(),
            online_latency: Histogram::default(),
            offline_latency: Histogram::default(),
            login_failures: Reasons::default(),
            drops: Reasons::default(),
        }
    }

    fn measures(&self, nanos: u64) -> bool {
        (self.measure_from.load(Ordering::Relaxed)..self.measure_to.load(Ordering::Relaxed)).contains(&nanos)
    }

    /// The pool slot of a churn user's name.
    fn slot_of(&self, user: &str) -> Option<u32> {
        let index: u32 = user.strip_prefix(&self.logins.prefix)?.strip_prefix('-')?.parse().ok()?;
        index.checked_sub(self.watchers).filter(|&slot| slot < self.pool)
    }

    /// Counts a presence event; returns whether the user came online, and who, if it is one.
    fn event<'a>(&self, text: &'a str) -> Option<(bool, &'a str)> {
        let online = match frame::kind(text)? {
            "user_online" => true,
            "user_offline" => false,
            _ => return None,
        };
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.measures(self.clock.nanos()) {
            self.events_in_window.fetch_add(1, Ordering::Relaxed);
        }
        Some((online, frame::str_field(text, "\"user\":\"")?))
    }
}

/// What a watcher saw of the churn users.
#[derive(Debug, Default)]
struct Seen {
    online: u64,
    offline: u64,
    unmatched: u64,
}

impl Seen {
    /// A frame on a watcher's connection: counts and times events about churn users.
    fn on_frame(&mut self, shared: &Shared, text: &str) {
        let Some((online, user)) = shared.event(text) else { return };
        let Some(slot) = shared.slot_of(user) else { return };
        let now = shared.clock.nanos();
        *if online { &mut self.online } else { &mut self.offline } += 1;
        shared.watcher_events.fetch_add(1, Ordering::Relaxed);
        let cycle = shared.slot_cycle[slot as usize].load(Ordering::Acquire);
        let Some(cycle) = shared.cycles.get(cycle as usize) else {
            self.unmatched += 1;
            return;
        };
        let (at, latency) = if online {
            (cycle.login_sent.load(Ordering::Acquire), &shared.online_latency)
        } else {
            (cycle.closed.load(Ordering::Acquire), &shared.offline_latency)
        };
        if at == 0 {
            self.unmatched += 1;
        } else if shared.measures(at) {
            latency.record_nanos(at, now);
        }
    }
}

/// A watcher: logs in with presence on and counts the events until told to stop.
async fn watcher(
    shared: Arc<Shared>,
    index: u32,
    (target, source): (Target, Option<IpAddr>),
    mut stop: watch::Receiver<bool>,
) -> (Seen, Option<WsStream>) {
    let mut seen = Seen::default();
    let logins = &shared.logins;
    let login = match logins.jwt_login(&logins.user(index), true) {
        Ok(request) => {
            let login = logins.with(request, &logins.connector.handshake);
            connect_with(&target, source, login, |text| seen.on_frame(&shared, text)).await
        }
        Err(failure) => Err(failure),
    };
    let mut ws = match login {
        Ok((ws, _token)) => ws,
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return (seen, None);
        }
    };
    shared.logins.connector.ready();
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => seen.on_frame(&shared, &text),
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return (seen, None);
                }
            },
            _ = stop.changed() => break,
        }
    }
    (seen, Some(ws))
}

/// One churn cycle: a pool user connects, logs in with presence on, stays online, closes.
async fn churn(shared: Arc<Shared>, cycle: u32, (target, source): (Target, Option<IpAddr>)) {
    let clock = shared.clock;
    let slot = cycle % shared.pool;
    let request = match shared.logins.jwt_login(&shared.logins.user(shared.watchers + slot), true) {
        Ok(request) => request,
        Err(failure) => return shared.login_failures.add(failure.to_string()),
    };
    let mut ws = match client::open(&target, source).await {
        Ok(ws) => ws,
        Err(failure) => return shared.login_failures.add(failure.to_string()),
    };
    shared.slot_cycle[slot as usize].store(cycle, Ordering::Release);
    let sent = clock.nanos();
    shared.cycles[cycle as usize].login_sent.store(sent, Ordering::Release);
    let login = tokio::time::timeout(
        shared.logins.timeout,
        log_in(&mut ws, request, |text| {
            shared.event(text);
        }),
    )
    .await;
    match login {
        Ok(Ok(_token)) => {}
        Ok(Err(failure)) => return shared.login_failures.add(failure.to_string()),
        Err(_) => return shared.login_failures.add(client::Failure::timeout(shared.logins.timeout).to_string()),
    }
    let now = clock.nanos();
    if shared.measures(sent) {
        shared.login_latency.record_nanos(sent, now);
    }
    shared.logged_in.fetch_add(1, Ordering::Relaxed);
    let online = tokio::time::sleep(shared.online);
    tokio::pin!(online);
    let lost = loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => {
                    shared.event(&text);
                }
                Ok(None) => {}
                Err(reason) => break Some(reason),
            },
            () = &mut online => break None,
        }
    };
    shared.cycles[cycle as usize].closed.store(clock.nanos(), Ordering::Release);
    shared.closes.fetch_add(1, Ordering::Relaxed);
    match lost {
        Some(reason) => shared.drops.add(reason),
        None => client::close(ws).await,
    }
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
    for target in &nodes.targets {
        metrics::scrape(target).await.with_context(|| format!("scraping /metrics of {} (is it up?)", target.url))?;
    }

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
        let mut out = String::new();
        report::write_reasons(&mut out, "connection failures", &failures);
        eprint!("{out}");
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

/// One line a second on stderr while users come and go.
async fn print_progress(shared: Arc<Shared>, watchers: u32, mut done: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_events = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut done => break,
        }
        let now = shared.clock.nanos();
        let phase = if now < shared.measure_from.load(Ordering::Relaxed) {
            "warm-up"
        } else if shared.measures(now) {
            "measure"
        } else {
            "grace"
        };
        let (logins, closes) = (shared.logged_in.load(Ordering::Relaxed), shared.closes.load(Ordering::Relaxed));
        let events = shared.events.load(Ordering::Relaxed);
        eprintln!(
            "[{:6.1}s] {phase:<7} logins {logins:>6} (failed {}) closes {closes:>6} online {:>5} | events {events:>9} ({:>7}/s), watchers saw {} of {} | drops {}",
            shared.clock.secs(),
            shared.login_failures.total(),
            logins.saturating_sub(closes),
            events - last_events,
            shared.watcher_events.load(Ordering::Relaxed),
            u64::from(watchers) * (logins + closes),
            shared.drops.total(),
        );
        last_events = events;
    }
}

/// The human summary.
pub fn summary(report: &PresenceReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = report::two_decimals;
    let _ = writeln!(
        out,
        "presence: {} watchers, {} users/s online for {} ms each (pool {}), {} s measured after {:.1} s warm-up, nodes {}",
        report.watchers,
        report.rate,
        report.online_ms,
        report.pool,
        report.duration_secs,
        report.warmup_secs,
        report.urls.join(" ")
    );
    let connected = report::connect_line(report.watchers.into(), report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  watchers           {connected}");
    let _ = writeln!(
        out,
        "  churn              {} cycles in the window; {} logins, {} failed",
        report.cycles,
        report.logins,
        report.login_failures.values().sum::<u64>()
    );
    let _ = writeln!(out, "  churn login        {}", report::latency_line(report.login.as_ref()));
    let _ = writeln!(out, "  login -> online    {}", report::latency_line(report.online_latency.as_ref()));
    let _ = writeln!(out, "  close -> offline   {}", report::latency_line(report.offline_latency.as_ref()));
    let _ = writeln!(
        out,
        "  events             {} expected by the watchers, missed {}, extra {}, unmatched {}; {:.0} events/s delivered in the window ({})",
        report.events_expected, report.missed, report.extra, report.unmatched, report.events_per_sec, report.events_in_window
    );
    let _ = writeln!(
        out,
        "  server CPU         {} s in the window, {} s per million events{}, {} per churn cycle",
        num(report.server.cpu_seconds, ""),
        num(report.server_cpu_secs_per_million_events, ""),
        floor::times(report.server_cpu_floor_multiple),
        num(report.server_cpu_ms_per_cycle, " ms"),
    );
    let _ = writeln!(out, "  server RSS         {}", report::rss_list(&report.server.rss_bytes));
    let _ = writeln!(
        out,
        "  bench              CPU {} s in the window; RSS {}",
        num(report.bench_cpu_secs, ""),
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64)),
    );
    report::write_reasons(&mut out, "churn login failures", &report.login_failures);
    report::write_reasons(&mut out, "connections lost", &report.drops);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Watchers 0..3, churn users 3 and 4 (0.4 users/s online 1 ms: a pool of 2), 4 cycles, the
    /// window from the start on.
    fn shared() -> Shared {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: PresenceArgs,
        }
        let argv = ["presence", "--jwt-secret", "s", "--watchers", "3", "--rate", "0.4", "--online-ms", "1"];
        let Cli { args } = clap::Parser::parse_from(argv);
        let shared = Shared::new(&args, "presence-x".into(), 4);
        assert_eq!(shared.pool, 2);
        shared.measure_from.store(1, Ordering::Relaxed);
        shared.measure_to.store(u64::MAX, Ordering::Relaxed);
        shared
    }

    #[test]
    fn churn_users_are_told_from_watchers_by_name() {
        let shared = shared();
        assert_eq!(shared.slot_of("presence-x-000003"), Some(0));
        assert_eq!(shared.slot_of("presence-x-000004"), Some(1));
        assert_eq!(shared.slot_of("presence-x-000002"), None, "a watcher");
        assert_eq!(shared.slot_of("presence-x-000005"), None, "beyond the pool");
        assert_eq!(shared.slot_of("other-000003"), None);
    }

    #[test]
    fn watchers_match_events_with_the_cycle_of_the_user() {
        let shared = shared();
        let mut seen = Seen::default();
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000003"}"#);
        assert_eq!((seen.online, seen.unmatched), (1, 1), "no cycle began for that user");
        shared.slot_cycle[1].store(3, Ordering::Relaxed);
        shared.cycles[3].login_sent.store(shared.clock.nanos().max(1), Ordering::Relaxed);
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000004"}"#);
        seen.on_frame(&shared, r#"{"type":"user_offline","user":"presence-x-000004"}"#);
        assert_eq!((seen.online, seen.offline, seen.unmatched), (2, 1, 2), "not closed yet");
        assert_eq!(shared.online_latency.count(), 1);
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000001"}"#);
        seen.on_frame(&shared, r#"{"type":"online","users":["presence-x-000004"],"done":true}"#);
        assert_eq!(seen.online, 2, "watchers and online lists are not churn events");
        assert_eq!(shared.events.load(Ordering::Relaxed), 4);
        assert_eq!(shared.watcher_events.load(Ordering::Relaxed), 3);
    }
}
