//! `switchboard bench chaos`: a fault checker. It starts a cluster of its own (three nodes of this
//! binary over a Redis or NATS it starts, on a fresh PostgreSQL database reached through a proxy it
//! can cut), puts `--users` clients on the nodes, each sending private messages to the others and
//! logging every send, acknowledgement and delivery, and while they chat it applies, one at a time:
//! a node killed (-9; started again once the others have forgotten it), the broker restarted, a
//! node stopped (SIGSTOP, then SIGCONT), PostgreSQL cut off, and a node killed and started again at
//! once under the same id. After each it measures, from the fault, how long until every client is
//! connected, synced and has every earlier send acknowledged (*recovery*), and until every running
//! node shows exactly the connected users, on the nodes they are on (*presence heal*).
//!
//! Clients behave as `docs/protocol.md` asks: they resume with their cursors (the highest seq up
//! to which they hold every message of a conversation) on their node, or on the next one when it is
//! down, and resend what was not acknowledged with its key. At the end every client resumes once
//! more, and the checker proves: no acknowledged message missing from its recipient, none pushed
//! twice on one connection or at or below the cursor it resumed with, each conversation's live
//! messages in `seq` order on each connection, no user shown online without a connection.

pub(crate) mod device;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use switchboard_testkit::services::{ProcessCluster, ServiceProcess};

use self::device::{DeviceLog, Phase, Placement, Tally};

/// How long a fault's effects may take to heal before the run fails.
const HEAL_LIMIT: Duration = Duration::from_secs(60);
/// How often recovery and presence are checked while healing.
const POLL: Duration = Duration::from_millis(100);

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Redis,
    Nats,
}

/// Options of `switchboard bench chaos`.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    #[arg(long, value_enum, default_value_t = Broker::Redis)]
    pub broker: Broker,
    /// Clients (users with one connection each), spread over the three nodes.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub users: u32,
    /// Messages per second over all clients.
    #[arg(long, default_value_t = 40.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    /// How long the broker, a stopped node or PostgreSQL stay away.
    #[arg(long, default_value_t = 2000)]
    pub fault_ms: u64,
    /// The cluster's node timeout (`--node-timeout-ms` of its nodes).
    #[arg(long, default_value_t = 3000)]
    pub node_timeout_ms: u64,
    /// Print the report as one JSON line as well.
    #[arg(long)]
    pub json: bool,
}

/// One fault and what it cost.
#[derive(Debug, Serialize)]
pub struct FaultReport {
    pub fault: &'static str,
    /// From the fault until every client was back, synced, with every earlier send acknowledged.
    pub recovery_secs: f64,
    /// From the fault until every running node showed exactly the connected users.
    pub presence_heal_secs: f64,
}

/// The `--json` line.
#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub scenario: &'static str,
    pub broker: String,
    pub users: u32,
    pub rate: f64,
    pub fault_ms: u64,
    pub node_timeout_ms: u64,
    pub faults: Vec<FaultReport>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Users shown online somewhere after every client had closed and the cluster settled.
    pub online_without_connection: u64,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("the path of this binary")?;
    let binary = binary.to_str().context("a binary path in UTF-8")?.to_owned();
    let node_timeout = args.node_timeout_ms.to_string();
    let extra = ["--node-timeout-ms", node_timeout.as_str(), "--rate-per-sec", "100000", "--rate-burst", "100000"];
    let broker = match args.broker {
        Broker::Redis => ServiceProcess::redis(),
        Broker::Nats => ServiceProcess::nats(),
    };
    let mut cluster = tokio::task::block_in_place(|| ProcessCluster::start_behind_proxy(&binary, broker, 3, &extra));
    let urls: Vec<String> = (0..3).map(|index| cluster.url(index)).collect();
    let ids: Vec<String> = cluster.nodes.iter().map(|node| node.id.clone()).collect();
    eprintln!("cluster up: {} over {}", ids.join(", "), cluster.broker.url());

    let (placement, phase, devices) = device::spawn_devices(args.users as usize, args.rate, &urls);
    let mut chaos = Chaos { urls: urls.clone(), ids, placement: placement.clone(), down: vec![false; 3] };
    chaos.settle("start", Instant::now(), &chaos.on(None)).await?;

    let fault = Duration::from_millis(args.fault_ms);
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let forced = chaos.on(Some(1));
    tokio::task::block_in_place(|| cluster.nodes[1].kill());
    chaos.down[1] = true;
    faults.push(chaos.settle("node n2 killed (-9)", started, &forced).await?);
    tokio::task::block_in_place(|| cluster.nodes[1].restart());
    chaos.down[1] = false;
    chaos.settle("n2 started again", Instant::now(), &chaos.on(None)).await?;

    let started = Instant::now();
    tokio::task::block_in_place(|| cluster.broker.kill());
    tokio::time::sleep(fault).await;
    tokio::task::block_in_place(|| cluster.broker.start());
    faults.push(chaos.settle("broker restarted", started, &vec![true; args.users as usize]).await?);

    let started = Instant::now();
    cluster.nodes[2].pause();
    chaos.down[2] = true;
    tokio::time::sleep(fault).await;
    cluster.nodes[2].resume();
    chaos.down[2] = false;
    faults.push(chaos.settle("node n3 stopped (SIGSTOP)", started, &chaos.on(None)).await?);

    let started = Instant::now();
    let proxy = cluster.store_proxy.as_mut().context("the store proxy")?;
    tokio::task::block_in_place(|| proxy.stop());
    tokio::time::sleep(fault).await;
    tokio::task::block_in_place(|| proxy.start());
    faults.push(chaos.settle("PostgreSQL cut off", started, &chaos.on(None)).await?);

    let started = Instant::now();
    let forced = chaos.on(Some(0));
    tokio::task::block_in_place(|| {
        cluster.nodes[0].kill();
        cluster.nodes[0].restart();
    });
    faults.push(chaos.settle("node n1 killed and started again at once", started, &forced).await?);

    // Every send acknowledged, then one last resume each, then everyone closes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    phase.send_replace(Phase::Drain);
    chaos.wait_for("every send acknowledged", || placement.all_drained()).await?;
    phase.send_replace(Phase::Resync);
    chaos.wait_for("every client resumed once more", || placement.all_resynced()).await?;
    chaos.heal_presence("final resume").await?;
    phase.send_replace(Phase::Close);
    let mut logs = Vec::new();
    for device in devices {
        logs.push(device.await.context("a client task")?);
    }
    let online = chaos.online_anywhere(&logs).await;
    let report = check(&args, faults, &logs, online);
    print(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if report.tally.lost + report.tally.doubled + report.online_without_connection > 0 {
        bail!("the checker found faults");
    }
    Ok(())
}

/// The cluster as the orchestrator sees it.
struct Chaos {
    urls: Vec<String>,
    ids: Vec<String>,
    placement: Arc<Placement>,
    /// Nodes killed or stopped right now: not asked about presence.
    down: Vec<bool>,
}

impl Chaos {
    /// Which clients are on `node` now (`None`: none).
    fn on(&self, node: Option<usize>) -> Vec<bool> {
        self.placement.nodes().iter().map(|on| node.is_some() && *on == node).collect()
    }

    /// Waits for recovery (the `forced` clients logged in again), then for presence to heal;
    /// both timed from `started`.
    async fn settle(&self, fault: &'static str, started: Instant, forced: &[bool]) -> anyhow::Result<FaultReport> {
        self.wait_for(fault, || self.placement.all_recovered(started, &self.down, forced)).await?;
        let recovery = started.elapsed();
        self.heal_presence(fault).await?;
        let report = FaultReport {
            fault,
            recovery_secs: recovery.as_secs_f64(),
            presence_heal_secs: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "{fault}: recovered in {:.2} s, presence healed in {:.2} s",
            report.recovery_secs, report.presence_heal_secs
        );
        Ok(report)
    }

    /// Waits until every running node shows exactly the connected users.
    async fn heal_presence(&self, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEAL_LIMIT;
        loop {
            match self.presence_mismatch().await {
                None => return Ok(()),
                Some(mismatch) if Instant::now() > deadline => bail!("{what}: presence never healed: {mismatch}"),
                Some(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn wait_for(&self, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
        device::wait_until(what, HEAL_LIMIT, &self.placement, done).await
    }

    /// The first difference between where the clients are and what a running node shows.
    async fn presence_mismatch(&self) -> Option<String> {
        let expected = self.placement.nodes();
        for (index, url) in self.urls.iter().enumerate() {
            if self.down[index] {
                continue;
            }
            let shown = match device::presence_of(url, expected.len()).await {
                Ok(shown) => shown,
                Err(error) => return Some(format!("{}: {error}", self.ids[index])),
            };
            for (user, (expected_node, shown_nodes)) in expected.iter().zip(&shown).enumerate() {
                let expected_nodes: Vec<&str> = expected_node.iter().map(|node| self.ids[*node].as_str()).collect();
                if *shown_nodes != expected_nodes {
                    return Some(format!(
                        "{} shows user {user} on {shown_nodes:?}, connected on {expected_nodes:?}",
                        self.ids[index]
                    ));
                }
            }
        }
        None
    }

    /// After every client closed: users still shown online by some node once it settled.
    async fn online_anywhere(&self, logs: &[DeviceLog]) -> u64 {
        let deadline = Instant::now() + HEAL_LIMIT;
        loop {
            let mut online = 0;
            for url in &self.urls {
                if let Ok(shown) = device::presence_of(url, logs.len()).await {
                    online = online.max(shown.iter().filter(|nodes| !nodes.is_empty()).count() as u64);
                }
            }
            if online == 0 || Instant::now() > deadline {
                return online;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn check(args: &ChaosArgs, faults: Vec<FaultReport>, logs: &[DeviceLog], online: u64) -> ChaosReport {
    ChaosReport {
        scenario: "chaos",
        broker: format!("{:?}", args.broker).to_lowercase(),
        users: args.users,
        rate: args.rate,
        fault_ms: args.fault_ms,
        node_timeout_ms: args.node_timeout_ms,
        faults,
        tally: Tally::of(logs),
        online_without_connection: online,
    }
}

fn print(report: &ChaosReport) {
    println!(
        "chaos over {}: {} clients, {} msg/s, faults of {} ms, node timeout {} ms",
        report.broker, report.users, report.rate, report.fault_ms, report.node_timeout_ms
    );
    println!("| fault | recovery | presence heal |");
    println!("|---|---|---|");
    for fault in &report.faults {
        println!("| {} | {:.2} s | {:.2} s |", fault.fault, fault.recovery_secs, fault.presence_heal_secs);
    }
    report.tally.print();
    println!("online without a connection: {}", report.online_without_connection);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ChaosArgs {
        ChaosArgs { broker: Broker::Nats, users: 2, rate: 1.0, fault_ms: 1, node_timeout_ms: 1, json: false }
    }

    #[test]
    fn an_acknowledged_message_its_recipient_lacks_is_lost() {
        let mut alice = DeviceLog { user: "user0".into(), ..DeviceLog::default() };
        let mut bob = DeviceLog { user: "user1".into(), ..DeviceLog::default() };
        alice.acked.insert(("dm:user0:user1".into(), 1, 1));
        alice.acked.insert(("dm:user0:user1".into(), 2, 1));
        bob.received.entry("dm:user0:user1".into()).or_default().insert(2);
        bob.doubled = 1;
        let report = check(&args(), Vec::new(), &[alice, bob], 0);
        let tally = &report.tally;
        assert_eq!((tally.acked, tally.received, tally.lost, tally.doubled), (2, 1, 1, 1));
        assert_eq!(tally.examples, ["lost: dm:user0:user1 seq 1 from user0 to user1"]);
    }
}
