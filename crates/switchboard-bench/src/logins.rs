//! `switchboard bench logins`: a burst of password registrations, then a burst of password logins
//! (some with a wrong password), each sent on all connections at once, and what they do to the
//! server's resident memory: before, at its peak during the burst, and once the burst has settled.
//! Every password check is an argon2 hash that needs 19 MiB of its own, so this is where a node's
//! memory goes when many logins arrive together.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::client::{self, Failure, Login, Target, WsStream};
use crate::metrics::{self, Scrape};
use crate::report::{self, Latency};

/// How often the server's RSS is read during a burst.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long closing a burst's connections may take before they are just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The gauge of the most password checks the server ran at once (servers that bound them).
const CHECKS_MAX_SERIES: &str = "switchboard_password_checks_in_flight_max";

/// Options of `switchboard bench logins`.
#[derive(clap::Args, Debug)]
pub struct LoginsArgs {
    /// WebSocket URL of the server; /metrics is scraped from the same host and port.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Connections in each burst: this many registrations at once, then this many logins.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,
    /// Percent of the logins that give a wrong password.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub bad_percent: u32,
    /// Spread connections over source addresses 127.0.0.1 .. 127.0.0.K (loopback targets only),
    /// so that the wrong passwords stay under the server's failed-logins limit per address.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub sources: u32,
    /// How long after each burst to wait before reading the settled RSS.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
    /// Give up on an answer after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// User names are `{prefix}-{i:06}`. Default: `logins-` and a tag of this run.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Also print all figures as one JSON line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// One burst: what the server answered and its memory around it.
#[derive(Debug, Serialize)]
pub struct BurstReport {
    pub clients: u32,
    /// Answered with `session`.
    pub accepted: u64,
    /// Refused, by reason (`login: server error auth_failed: ...` for the wrong passwords).
    pub refused: BTreeMap<String, u64>,
    /// From sending the first frame to the last answer.
    pub secs: f64,
    /// Sending the frame to its answer (`synced` or the error).
    pub latency: Option<Latency>,
    pub server_rss_before_bytes: Option<u64>,
    /// The highest RSS read during the burst.
    pub server_rss_peak_bytes: Option<u64>,
    /// After `settle_secs` without load.
    pub server_rss_settled_bytes: Option<u64>,
}

/// Everything `logins` measured; the `--json` line.
#[derive(Debug, Serialize)]
pub struct LoginsReport {
    pub scenario: &'static str,
    pub url: String,
    pub clients: u32,
    pub bad_percent: u32,
    pub sources: u32,
    pub settle_secs: u64,
    pub registrations: BurstReport,
    pub logins: BurstReport,
    /// The most password checks the server ran at once, if it says (`None` for servers that do
    /// not bound them).
    pub server_password_checks_max: Option<f64>,
}

/// One connection's part in a burst.
struct Attempt {
    user: String,
    password: String,
    source: Option<IpAddr>,
}

pub async fn run(args: LoginsArgs) -> anyhow::Result<()> {
    let prefix = args.user_prefix.clone().unwrap_or_else(|| format!("logins-{}", client::run_tag()));
    client::check_user_prefix(&prefix, 6)?;
    let target = Target::resolve(&args.url).await?;
    let sources = target.sources(args.sources)?;
    metrics::scrape(&target).await.context("scraping /metrics before the bursts (is the server up?)")?;
    let settle = Duration::from_secs(args.settle_secs);
    let timeout = Duration::from_secs(args.timeout_secs);
    eprintln!(
        "logins: {} registrations, then {} logins ({}% wrong), at once, to {} from {} source address(es)",
        args.clients,
        args.clients,
        args.bad_percent,
        target.url,
        sources.len()
    );

    let password = |i: u32| format!("password-{i:06}");
    let registrations: Vec<Attempt> = (0..args.clients)
        .map(|i| Attempt {
            user: format!("{prefix}-{i:06}"),
            password: password(i),
            source: sources[i as usize % sources.len()],
        })
        .collect();
    // Every `100 / bad_percent`-th login is wrong, so the wrong ones spread over the sources.
    let bad = |i: u32| (i * args.bad_percent) / 100 != ((i + 1) * args.bad_percent) / 100;
    let logins: Vec<Attempt> = (0..args.clients)
        .map(|i| Attempt {
            user: format!("{prefix}-{i:06}"),
            password: if bad(i) { format!("wrong-{i:06}") } else { password(i) },
            source: sources[i as usize % sources.len()],
        })
        .collect();

    let registrations = burst(&target, "registrations", &registrations, true, timeout, settle).await?;
    let logins = burst(&target, "logins", &logins, false, timeout, settle).await?;
    let last = metrics::scrape(&target).await.ok();
    let report = LoginsReport {
        scenario: "logins",
        url: target.url.clone(),
        clients: args.clients,
        bad_percent: args.bad_percent,
        sources: sources.len() as u32,
        settle_secs: args.settle_secs,
        registrations,
        logins,
        server_password_checks_max: last.and_then(|scrape| scrape.get(CHECKS_MAX_SERIES)),
    };
    report::print(&summary(&report), &report, args.json)
}

/// Opens a connection per attempt, sends all their frames at once, waits for every answer while
/// sampling the server's RSS, closes them, and reads the RSS again after `settle`.
async fn burst(
    target: &Target,
    name: &str,
    attempts: &[Attempt],
    register: bool,
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<BurstReport> {
    let opening = attempts.iter().map(|attempt| client::open(target, attempt.source));
    let opened: Vec<Result<WsStream, Failure>> = futures_util::future::join_all(opening).await;
    let before = rss(target, "before the burst").await;
    let sampling = RssSampler::start(target.clone());
    eprintln!("{name}: {} sent at once", attempts.len());
    let started = Instant::now();
    let answers = opened.into_iter().zip(attempts).map(|(ws, attempt)| async move {
        let mut ws = ws?;
        let login = match register {
            true => Login::Register { user: &attempt.user, password: &attempt.password },
            false => Login::Password { user: &attempt.user, password: &attempt.password },
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout, client::login(&mut ws, login))
            .await
            .unwrap_or_else(|_| Err(Failure::timeout(timeout)));
        Ok::<_, Failure>((answer.map(|_| ()), sent.elapsed(), ws))
    });
    let answers = futures_util::future::join_all(answers).await;
    let secs = started.elapsed().as_secs_f64();
    let peak = sampling.stop().await;

    let mut accepted = 0;
    let mut refused = BTreeMap::new();
    let mut latencies = Vec::with_capacity(answers.len());
    let mut connections = Vec::with_capacity(answers.len());
    for answer in answers {
        let outcome = match answer {
            Ok((outcome, elapsed, ws)) => {
                latencies.push(report::micros(elapsed));
                connections.push(ws);
                outcome
            }
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(()) => accepted += 1,
            Err(failure) => *refused.entry(failure.to_string()).or_insert(0) += 1,
        }
    }
    client::close_all(connections, CLOSE_TIMEOUT).await;
    eprintln!("{name}: answered in {secs:.2} s; waiting {} s for the server to settle", settle.as_secs());
    tokio::time::sleep(settle).await;
    Ok(BurstReport {
        clients: attempts.len() as u32,
        accepted,
        refused,
        secs,
        latency: Latency::from_micros(&mut latencies),
        server_rss_before_bytes: before,
        server_rss_peak_bytes: peak.max(before),
        server_rss_settled_bytes: rss(target, "after the burst settled").await,
    })
}

async fn rss(target: &Target, when: &str) -> Option<u64> {
    metrics::scrape_nodes(std::slice::from_ref(target), when).await.pop().flatten().as_ref().and_then(Scrape::rss_bytes)
}

/// Reads the server's RSS every [`SAMPLE_EVERY`] until stopped, keeping the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Option<u64>>,
}

impl RssSampler {
    fn start(target: Target) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = AtomicU64::new(0);
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            while !stopped.load(Ordering::Relaxed) {
                ticks.tick().await;
                if let Some(rss) = metrics::scrape(&target).await.ok().and_then(|scrape| scrape.rss_bytes()) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
            }
            Some(peak.load(Ordering::Relaxed)).filter(|&peak| peak > 0)
        });
        RssSampler { stop, task }
    }

    /// Stops sampling (after one last read) and returns the highest RSS read.
    async fn stop(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok().flatten()
    }
}

fn summary(report: &LoginsReport) -> String {
    let mut out = String::new();
    for (name, burst) in [("registrations", &report.registrations), ("logins", &report.logins)] {
        let rss = |value: Option<u64>| report::or_na(value, |value| report::bytes(value as f64));
        out.push_str(&format!(
            "{name}: {} of {} accepted in {:.2} s, answer {}\n  server RSS: before {}, peak {}, {} s after {}\n",
            burst.accepted,
            burst.clients,
            burst.secs,
            report::latency_line(burst.latency.as_ref()),
            rss(burst.server_rss_before_bytes),
            rss(burst.server_rss_peak_bytes),
            report.settle_secs,
            rss(burst.server_rss_settled_bytes),
        ));
        report::write_reasons(&mut out, &format!("{name} refused"), &burst.refused);
    }
    let checks = report::or_na(report.server_password_checks_max, |max| format!("{max:.0}"));
    out.push_str(&format!("most password checks at once on the server: {checks}\n"));
    out
}
