//! `switchboard bench soak`: a long run of mixed load on a node or a cluster this command starts
//! itself, sampling every node's resident memory and open files, to show that nothing grows once
//! warmed up.
//!
//! The load: `--users` clients (one connection each) send private messages to each other at
//! `--rate` in total, acknowledged, resuming with their cursors if their connection drops (the
//! chaos checker's clients); beside them, `--churn` short visits per second, each a connection
//! that logs in as one of 1,000 visitors, joins the room `soak`, sends into it, reads its history
//! and closes. One node runs on SQLite; three run on PostgreSQL over Redis. Every `--sample-secs`
//! one JSON line per node (`"scenario":"soak-sample"`) goes to standard output; at the end, the
//! checker's tally (no acknowledged message lost or doubled) and, per node, the growth of RSS and
//! open files from the end of the warm-up (the first sixth of the run) to the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::chaos::device::{self, Phase, Tally};
use crate::client::{self, Target};

/// How long the clients may take to drain and resume at the end.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Options of `switchboard bench soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Nodes to start: 1 (SQLite) or 3 (PostgreSQL and Redis).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    pub nodes: u32,
    /// Long-lived clients sending private messages.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=5000))]
    pub users: u32,
    /// Private messages per second over all clients.
    #[arg(long, default_value_t = 100.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    /// Short visits (connect, log in, join, send, history, close) per second.
    #[arg(long, default_value_t = 5.0, value_parser = crate::positive_rate)]
    pub churn: f64,
    #[arg(long, default_value_t = 3600)]
    pub duration_secs: u64,
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
}

/// One node's resources at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub scenario: &'static str,
    pub nodes: u32,
    pub node: String,
    pub secs: f64,
    pub rss_kib: u64,
    pub open_files: u64,
    pub visits: u64,
}

/// How much a node grew after the warm-up.
#[derive(Debug, Serialize)]
pub struct Growth {
    pub node: String,
    pub rss_kib_after_warmup: u64,
    pub rss_kib_at_end: u64,
    pub rss_kib_max: u64,
    pub open_files_after_warmup: u64,
    pub open_files_at_end: u64,
    pub open_files_max: u64,
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub scenario: &'static str,
    pub nodes: u32,
    pub users: u32,
    pub rate: f64,
    pub churn: f64,
    pub duration_secs: u64,
    pub visits: u64,
    pub failed_visits: u64,
    pub growth: Vec<Growth>,
    #[serde(flatten)]
    pub tally: Tally,
}

/// The nodes under test, started here and stopped when dropped.
enum Nodes {
    One(NodeProcess),
    Cluster(ProcessCluster),
}

impl Nodes {
    fn all(&self) -> Vec<&NodeProcess> {
        match self {
            Nodes::One(node) => vec![node],
            Nodes::Cluster(cluster) => cluster.nodes.iter().collect(),
        }
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("the path of this binary")?;
    let binary = binary.to_str().context("a binary path in UTF-8")?.to_owned();
    let extra = ["--open-auth", "--rate-per-sec", "100000", "--rate-burst", "100000"];
    let nodes = tokio::task::block_in_place(|| match args.nodes {
        1 => Nodes::One(NodeProcess::start(&binary, "n1", &extra)),
        size => Nodes::Cluster(ProcessCluster::start(&binary, ServiceProcess::redis(), size as usize, &extra[1..])),
    });
    let urls: Vec<String> = nodes.all().iter().map(|node| node.ws_url()).collect();
    eprintln!(
        "soak: {} node(s), {} users at {} msg/s, {} visits/s, {} s",
        urls.len(),
        args.users,
        args.rate,
        args.churn,
        args.duration_secs
    );

    let (placement, phase, devices) = device::spawn_devices(args.users as usize, args.rate, &urls);
    let visits = Arc::new(Visits::default());
    let churn = tokio::spawn(churn(urls.clone(), args.churn, visits.clone(), phase.subscribe()));

    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration_secs);
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_secs.max(1)));
    loop {
        tick.tick().await;
        for node in nodes.all() {
            let pid = node.pid().context("a node exited during the soak")?;
            let sample = Sample {
                scenario: "soak-sample",
                nodes: args.nodes,
                node: node.id.clone(),
                secs: started.elapsed().as_secs_f64(),
                rss_kib: rss_kib(pid)?,
                open_files: open_files(pid)?,
                visits: visits.done.load(Ordering::Relaxed),
            };
            println!("{}", serde_json::to_string(&sample)?);
            samples.push(sample);
        }
        if Instant::now() >= end {
            break;
        }
    }

    phase.send_replace(Phase::Drain);
    device::wait_until("every send acknowledged", WAIT_LIMIT, &placement, || placement.all_drained()).await?;
    phase.send_replace(Phase::Resync);
    device::wait_until("every client resumed once more", WAIT_LIMIT, &placement, || placement.all_resynced()).await?;
    phase.send_replace(Phase::Close);
    churn.await.context("the visits")?;
    let mut logs = Vec::new();
    for device in devices {
        logs.push(device.await.context("a client task")?);
    }
    let report = SoakReport {
        scenario: "soak",
        nodes: args.nodes,
        users: args.users,
        rate: args.rate,
        churn: args.churn,
        duration_secs: args.duration_secs,
        visits: visits.done.load(Ordering::Relaxed),
        failed_visits: visits.failed.load(Ordering::Relaxed),
        growth: growth(&samples, args.duration_secs as f64 / 6.0),
        tally: Tally::of(&logs),
    };
    report.tally.print();
    for growth in &report.growth {
        eprintln!(
            "{}: RSS {} -> {} KiB (max {}), open files {} -> {} (max {})",
            growth.node,
            growth.rss_kib_after_warmup,
            growth.rss_kib_at_end,
            growth.rss_kib_max,
            growth.open_files_after_warmup,
            growth.open_files_at_end,
            growth.open_files_max
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    drop(nodes);
    if report.tally.lost + report.tally.doubled > 0 {
        bail!("the checker found lost or doubled messages");
    }
    Ok(())
}

/// Per node: the first sample after `warmup_secs`, the last one and the highest.
pub fn growth(samples: &[Sample], warmup_secs: f64) -> Vec<Growth> {
    let mut nodes: Vec<&str> = samples.iter().map(|sample| sample.node.as_str()).collect();
    nodes.dedup();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .filter_map(|node| {
            let of_node: Vec<&Sample> = samples.iter().filter(|sample| sample.node == node).collect();
            let warm = of_node.iter().find(|sample| sample.secs >= warmup_secs).or(of_node.last())?;
            let last = of_node.last()?;
            Some(Growth {
                node: node.to_owned(),
                rss_kib_after_warmup: warm.rss_kib,
                rss_kib_at_end: last.rss_kib,
                rss_kib_max: of_node.iter().map(|sample| sample.rss_kib).max()?,
                open_files_after_warmup: warm.open_files,
                open_files_at_end: last.open_files,
                open_files_max: of_node.iter().map(|sample| sample.open_files).max()?,
            })
        })
        .collect()
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("/proc/PID/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

fn open_files(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).context("/proc/PID/fd")?.count() as u64)
}

#[derive(Default)]
struct Visits {
    done: AtomicU64,
    failed: AtomicU64,
}

/// Starts `rate` visits per second, round-robin over the nodes, until the phase leaves `Chat`.
async fn churn(urls: Vec<String>, rate: f64, visits: Arc<Visits>, phase: watch::Receiver<Phase>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut running = tokio::task::JoinSet::new();
    let mut number = 0u64;
    while *phase.borrow() == Phase::Chat {
        tick.tick().await;
        let url = urls[number as usize % urls.len()].clone();
        let visitor = format!("visitor{}", number % 1000);
        let visits = visits.clone();
        running.spawn(async move {
            let counter = match tokio::time::timeout(Duration::from_secs(30), visit(&url, &visitor, number)).await {
                Ok(Ok(())) => &visits.done,
                _ => &visits.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
        number += 1;
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// One visit: log in, join `soak`, send into it, read its history, close.
async fn visit(url: &str, user: &str, number: u64) -> anyhow::Result<()> {
    let target = Target::resolve(url).await?;
    let mut ws = client::open(&target, None).await.map_err(|failure| anyhow::anyhow!("{failure}"))?;
    let requests = [
        json!({"type": "login_open", "ref": 1, "username": user, "presence": false}),
        json!({"type": "join", "ref": 2, "room": "soak"}),
        json!({"type": "send", "ref": 3, "room": "soak", "text": format!("visit {number}")}),
        json!({"type": "history", "ref": 4, "room": "soak", "limit": 20}),
    ];
    for request in requests {
        let reference = request["ref"].clone();
        ws.send(Message::text(request.to_string())).await?;
        loop {
            let frame: Value = match ws.next().await.context("closed")?? {
                Message::Text(text) => serde_json::from_str(&text)?,
                _ => continue,
            };
            if frame["ref"] == reference {
                if frame["type"] == "error" {
                    bail!("{frame}");
                }
                break;
            }
        }
    }
    ws.close(None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, secs: f64, rss_kib: u64, open_files: u64) -> Sample {
        Sample { scenario: "soak-sample", nodes: 2, node: node.into(), secs, rss_kib, open_files, visits: 0 }
    }

    #[test]
    fn growth_compares_the_end_with_the_first_sample_after_the_warmup() {
        let samples = [
            sample("n1", 0.0, 10, 5),
            sample("n2", 0.0, 20, 6),
            sample("n1", 10.0, 30, 9),
            sample("n2", 10.0, 40, 9),
            sample("n1", 20.0, 35, 8),
            sample("n2", 20.0, 38, 9),
        ];
        let growth = growth(&samples, 10.0);
        assert_eq!(growth.len(), 2);
        assert_eq!(growth[0].node, "n1");
        assert_eq!((growth[0].rss_kib_after_warmup, growth[0].rss_kib_at_end, growth[0].rss_kib_max), (30, 35, 35));
        assert_eq!(
            (growth[1].open_files_after_warmup, growth[1].open_files_at_end, growth[1].open_files_max),
            (9, 9, 9)
        );
    }
}
