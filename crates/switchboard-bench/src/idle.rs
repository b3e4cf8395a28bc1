//! `switchboard bench idle`: open many authenticated connections, hold them idle, and measure what
//! they cost the server (resident memory per connection, CPU of the connect phase) and how long
//! each took to get from TCP connect to `synced`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::client::{self, Failure, JwtSigner, Login, Target};
use crate::metrics::{self, Scrape};
use crate::report::{self, Latency};

/// How long the JWTs stay valid (they are only checked at login).
const JWT_TTL_SECS: u64 = 3600;
/// How long closing all connections at the end may take before they are just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many distinct failure reasons the summary lists.
const MAX_REASONS_SHOWN: usize = 10;

/// Options of `switchboard bench idle`.
#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    /// WebSocket URL of the server; /metrics is scraped from the same host and port.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// How many connections to open and hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// HS256 secret the server was started with (--jwt-secret); users log in with login_jwt.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// User names are `{prefix}-{i:06}`.
    #[arg(long, default_value = "idle")]
    pub user_prefix: String,
    /// Spread connections over source addresses 127.0.0.1 .. 127.0.0.K (loopback targets only),
    /// to get past the ephemeral port limit of one source address.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub sources: u32,
    /// Handshakes (TCP connect to `synced`) in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// How long to hold all connections idle before measuring.
    #[arg(long, default_value_t = 5)]
    pub hold_secs: u64,
    /// Give up on a connection that is not `synced` after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Also print all figures as one JSON line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// How clients talk to the server: `native`, `socketio` for the Socket.IO peer in bench/peers,
    /// or `switchboard-socketio` for Switchboard's own Socket.IO endpoint.
    #[arg(long, value_enum, default_value_t = client::Protocol::Native)]
    pub protocol: client::Protocol,
}

/// Everything `idle` measured; the `--json` line.
#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub url: String,
    pub connections: u32,
    pub sources: u32,
    pub concurrency: u32,
    pub hold_secs: u64,
    pub opened: u64,
    pub failed: u64,
    /// Connections that closed or failed while held.
    pub dropped: u64,
    /// Failure (and drop) reasons with their counts.
    pub failures: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    /// From the first connect to the last handshake's end.
    pub connect_secs: f64,
    /// Opened connections per second of the connect phase.
    pub connect_rate: f64,
    /// TCP connect to `synced`, successful connections only.
    pub handshake: Option<Latency>,
    pub server_rss_before_bytes: Option<u64>,
    /// Right after the connect phase.
    pub server_rss_connected_bytes: Option<u64>,
    /// After the hold.
    pub server_rss_after_bytes: Option<u64>,
    /// (after - before) / opened.
    pub server_rss_per_connection_bytes: Option<f64>,
    pub server_rss_per_connection_kib: Option<f64>,
    pub server_connections_before: Option<u64>,
    pub server_connections_after: Option<u64>,
    pub server_cpu_connect_secs: Option<f64>,
    pub server_cpu_hold_secs: Option<f64>,
    pub bench_rss_bytes: Option<u64>,
}

/// Shared by the connection tasks and the progress line.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Handshake latencies in microseconds.
    latencies: Mutex<Vec<u32>>,
    failures: Mutex<BTreeMap<String, u64>>,
    drops: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn opened(&self, latency: Duration) {
        self.latencies.lock().unwrap().push(report::micros(latency));
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, failure: &Failure) {
        *self.failures.lock().unwrap().entry(failure.to_string()).or_default() += 1;
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&self, reason: String) {
        *self.drops.lock().unwrap().entry(reason).or_default() += 1;
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection task shares.
struct Shared {
    target: Target,
    signer: JwtSigner,
    prefix: String,
    timeout: Duration,
    tally: Tally,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    client::check_user_prefix(&args.user_prefix, args.connections.saturating_sub(1).to_string().len().max(6))?;
    let target = Target::resolve_as(&args.url, args.protocol).await?;
    let sources = target.sources(args.sources)?;
    if let Some(limit) = crate::open_files_limit() {
        if limit < u64::from(args.connections) + 64 {
            eprintln!("warning: the open-files limit is {limit}, too low for {} connections", args.connections);
        }
    }
    let n = args.connections;
    eprintln!(
        "idle: {n} connections to {} ({} source address{}, {} handshakes in flight)",
        target.url,
        sources.len(),
        if sources.len() == 1 { "" } else { "es" },
        args.concurrency
    );

    let before = metrics::scrape(&target).await.context("scraping /metrics before connecting (is the server up?)")?;

    let shared = Arc::new(Shared {
        target,
        signer: JwtSigner::new(&args.jwt_secret, JWT_TTL_SECS),
        prefix: args.user_prefix.clone(),
        timeout: Duration::from_secs(args.timeout_secs),
        tally: Tally { latencies: Mutex::new(Vec::with_capacity(n as usize)), ..Tally::default() },
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let in_flight = Arc::new(Semaphore::new(args.concurrency as usize));

    let started = Instant::now();
    let (progress_done, progress_rx) = oneshot::channel();
    let progress = tokio::spawn(print_progress(shared.clone(), n, started, progress_rx));
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let permit = in_flight.clone().acquire_owned().await.context("the handshake semaphore closed")?;
        let source = sources[i as usize % sources.len()];
        tasks.push(tokio::spawn(connection(shared.clone(), i, source, permit, stop_rx.clone())));
    }
    // Every handshake has ended (and been tallied) once all permits are back.
    let all = in_flight.acquire_many(args.concurrency).await.context("the handshake semaphore closed")?;
    drop(all);
    let connect_time = started.elapsed();
    let _ = progress_done.send(());
    let _ = progress.await;

    let tally = &shared.tally;
    let opened = tally.opened.load(Ordering::Relaxed);
    let connected = scrape_or_warn(&shared.target, "after connecting").await;
    eprintln!("holding {opened} connections idle for {} s", args.hold_secs);
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let after = scrape_or_warn(&shared.target, "after the hold").await;
    let bench_rss = report::own_rss_bytes();

    // Close everything: each task sends a close frame and waits (briefly) for the server's.
    let closing = Instant::now();
    let _ = stop_tx.send(true);
    let all_closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
        for task in tasks.iter_mut() {
            let _ = task.await;
        }
    })
    .await
    .is_ok();
    if !all_closed {
        tasks.iter().for_each(|task| task.abort());
    }
    eprintln!(
        "closed the connections in {:.1} s{}",
        closing.elapsed().as_secs_f64(),
        if all_closed { "" } else { " (dropped the slow ones)" }
    );

    let mut latencies = std::mem::take(&mut *tally.latencies.lock().unwrap());
    let rss_before = before.rss_bytes();
    let rss_after = after.as_ref().and_then(Scrape::rss_bytes);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => Some((after as f64 - before as f64) / opened as f64),
        _ => None,
    };
    let cpu_delta = |from: Option<&Scrape>, to: Option<&Scrape>| Some(to?.cpu_seconds()? - from?.cpu_seconds()?);
    let connect_secs = connect_time.as_secs_f64();
    let report = IdleReport {
        scenario: "idle",
        url: shared.target.url.clone(),
        connections: n,
        sources: sources.len() as u32,
        concurrency: args.concurrency,
        hold_secs: args.hold_secs,
        opened,
        failed: tally.failed.load(Ordering::Relaxed),
        dropped: tally.dropped.load(Ordering::Relaxed),
        failures: tally.failures.lock().unwrap().clone(),
        drops: tally.drops.lock().unwrap().clone(),
        connect_secs,
        connect_rate: if connect_secs > 0.0 { opened as f64 / connect_secs } else { 0.0 },
        handshake: Latency::from_micros(&mut latencies),
        server_rss_before_bytes: rss_before,
        server_rss_connected_bytes: connected.as_ref().and_then(Scrape::rss_bytes),
        server_rss_after_bytes: rss_after,
        server_rss_per_connection_bytes: per_connection,
        server_rss_per_connection_kib: per_connection.map(|bytes| bytes / 1024.0),
        server_connections_before: before.connections(),
        server_connections_after: after.as_ref().and_then(Scrape::connections),
        server_cpu_connect_secs: cpu_delta(Some(&before), connected.as_ref()),
        server_cpu_hold_secs: cpu_delta(connected.as_ref(), after.as_ref()),
        bench_rss_bytes: bench_rss,
    };
    let summary = summary(&report);
    if args.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// One connection: handshake (at most `concurrency` at once, via `permit`), then hold it open,
/// reading and dropping whatever arrives (which also answers the server's pings), until `stop`.
async fn connection(
    shared: Arc<Shared>,
    index: u32,
    source: Option<IpAddr>,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let user = format!("{}-{index:06}", shared.prefix);
    let jwt = match shared.signer.sign(&user) {
        Ok(jwt) => jwt,
        Err(failure) => {
            shared.tally.failed(&failure);
            return;
        }
    };
    let started = Instant::now();
    let attempt = async {
        let mut ws = client::open(&shared.target, source).await?;
        client::login(&mut ws, Login::Jwt(&jwt)).await?;
        Ok::<_, Failure>(ws)
    };
    let result =
        tokio::time::timeout(shared.timeout, attempt).await.unwrap_or_else(|_| Err(Failure::timeout(shared.timeout)));
    let latency = started.elapsed();
    drop(jwt);
    drop(user);
    let mut ws = match result {
        Ok(ws) => {
            shared.tally.opened(latency);
            drop(permit);
            ws
        }
        Err(failure) => {
            shared.tally.failed(&failure);
            drop(permit);
            return;
        }
    };
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                Some(Err(error)) => return shared.tally.dropped(format!("read error: {error}")),
                None => return shared.tally.dropped("closed by the server".to_string()),
            },
            _ = stop.changed() => break,
        }
    }
    client::close(ws).await;
}

/// One line a second on stderr while connecting.
async fn print_progress(shared: Arc<Shared>, total: u32, started: Instant, done: oneshot::Receiver<()>) {
    let line = |shared: &Shared| {
        let opened = shared.tally.opened.load(Ordering::Relaxed);
        let failed = shared.tally.failed.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "[{secs:6.1}s] opened {opened:>6} failed {failed:>5} of {total} ({:.0} conn/s)",
            opened as f64 / secs.max(0.001)
        );
    };
    report::each_second(done, || line(&shared)).await;
    line(&shared);
}

async fn scrape_or_warn(target: &Target, when: &str) -> Option<Scrape> {
    match metrics::scrape(target).await {
        Ok(scrape) => Some(scrape),
        Err(error) => {
            eprintln!("warning: scraping /metrics {when} failed: {error:#}");
            None
        }
    }
}

/// The human summary.
pub fn summary(report: &IdleReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let bytes = |value: Option<u64>| report::or_na(value, |value| report::bytes(value as f64));
    let _ = writeln!(out, "idle: {} connections to {}", report.connections, report.url);
    let _ = writeln!(
        out,
        "  opened             {} ({} failed, {} dropped while held)",
        report.opened, report.failed, report.dropped
    );
    let _ = writeln!(
        out,
        "  connect phase      {:.2} s, {:.0} conn/s ({} sources, {} in flight)",
        report.connect_secs, report.connect_rate, report.sources, report.concurrency
    );
    match &report.handshake {
        Some(l) => {
            let _ = writeln!(
                out,
                "  handshake          p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
        None => {
            let _ = writeln!(out, "  handshake          n/a (no connection opened)");
        }
    }
    let delta = match (report.server_rss_before_bytes, report.server_rss_after_bytes) {
        (Some(before), Some(after)) => {
            let change = after as f64 - before as f64;
            format!(" ({}{})", if change >= 0.0 { "+" } else { "" }, report::bytes(change))
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "  server RSS         before {}, connected {}, after {}s hold {}{delta}",
        bytes(report.server_rss_before_bytes),
        bytes(report.server_rss_connected_bytes),
        report.hold_secs,
        bytes(report.server_rss_after_bytes),
    );
    let _ = writeln!(
        out,
        "  RSS per connection {}",
        report::or_na(report.server_rss_per_connection_bytes, |b| format!("{b:.0} B ({:.2} KiB)", b / 1024.0))
    );
    let _ = writeln!(
        out,
        "  server connections {} logged in after the hold (before: {})",
        report::or_na(report.server_connections_after, |c| c.to_string()),
        report::or_na(report.server_connections_before, |c| c.to_string()),
    );
    let _ = writeln!(
        out,
        "  server CPU         {} during the connect phase, {} during the hold",
        report::or_na(report.server_cpu_connect_secs, |s| format!("{s:.2} s")),
        report::or_na(report.server_cpu_hold_secs, |s| format!("{s:.2} s")),
    );
    let _ = writeln!(out, "  bench RSS          {}", bytes(report.bench_rss_bytes));
    for (title, reasons) in [("failures", &report.failures), ("dropped while held", &report.drops)] {
        if reasons.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        let mut sorted: Vec<_> = reasons.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, count) in sorted.iter().take(MAX_REASONS_SHOWN) {
            let _ = writeln!(out, "    {count:>7}  {reason}");
        }
        if sorted.len() > MAX_REASONS_SHOWN {
            let _ = writeln!(out, "    ... and {} more reasons", sorted.len() - MAX_REASONS_SHOWN);
        }
    }
    out
}
