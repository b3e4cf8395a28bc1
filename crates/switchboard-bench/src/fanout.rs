//! `switchboard bench fanout`: `--members` users join one room (spread over the nodes), the first
//! `--senders` of them send to it at a total rate (or at several stepped rates, each measured on
//! its own), and every member records the latency of each message it receives. A message reaches
//! every member but its sender (whose connection gets the `ack`): `members - 1` deliveries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::client::{Clock, Connector, LoadArgs, Target, WsStream};
use crate::metrics::ServerDelta;
use crate::report::{self, Latency, Reasons};

mod life;
mod members;
mod seq_window;
mod steps;
mod summary;
pub use life::{LifeArgs, LifeReport};
use members::{drain_join_events, member};
pub use steps::StepReport;
use steps::{StepTally, Steps};
use summary::print_progress;
pub use summary::summary;

/// How long after the join phase the first message goes out.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `switchboard bench fanout`.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Users in the room, one connection each, spread round-robin over the nodes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..))]
    pub members: u32,
    /// How many of the members send (the first ones, so they are spread over the nodes too).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub senders: u32,
    /// Messages per second sent to the room, over all senders, paced evenly.
    #[arg(long, default_value_t = 10.0, value_parser = crate::positive_rate)]
    pub rate: f64,
    /// Several rates, one after the other, each with its own warm-up and measured window
    /// (instead of --rate): `--steps 10,20,40`.
    #[arg(long, value_delimiter = ',', value_parser = crate::positive_rate)]
    pub steps: Vec<f64>,
    /// The room. Default: `fanout-{tag}` with a tag of this run (a fresh room every run).
    #[arg(long)]
    pub room: Option<String>,
    #[command(flatten)]
    pub floor: crate::floor::FloorOption,
    /// Run only this share of the members, `I/N` (members `i` with `i % N == I`): several
    /// processes with the same other options and `--start-at` hold one room's members together,
    /// past one process's open-files cap. See `bench/fanout-shards.sh`.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// With `--shard`: when the first step starts (ms since the Unix epoch), the same for every
    /// process; their clocks count from it too, so a latency measured in one process of a message
    /// sent by another is right (one machine, one clock). The joins must be done by then.
    #[arg(long, requires = "shard")]
    pub start_at: Option<u64>,
    #[command(flatten)]
    pub life: Box<LifeArgs>,
}

fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let parsed = text.split_once('/').and_then(|(index, count)| Some((index.parse().ok()?, count.parse().ok()?)));
    match parsed {
        Some((index, count)) if index < count => Ok((index, count)),
        _ => Err(format!("'{text}' is not I/N with I < N")),
    }
}

impl FanoutArgs {
    /// The rate of each step.
    pub fn rates(&self) -> Vec<f64> {
        if self.steps.is_empty() {
            vec![self.rate]
        } else {
            self.steps.clone()
        }
    }
}

/// Everything `fanout` measured; the `--json` line.
#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub urls: Vec<String>,
    pub members: u32,
    pub senders: u32,
    pub room: String,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub sources: usize,
    pub user_prefix: String,
    pub connect_secs: f64,
    pub handshake: Option<Latency>,
    /// `member_joined` events received during the join phase, and how long they took to drain.
    pub join_events: u64,
    pub join_secs: f64,
    /// `room_size` events received after the joins, by all the members together.
    pub size_events: u64,
    /// Logins or joins tried again after a retryable error (`store_unavailable`, `overloaded`).
    pub join_retries: u64,
    pub steps: Vec<StepReport>,
    /// This machine's floor (the steps compare their server CPU with it).
    pub floor: Option<crate::floor::FloorCost>,
    pub errors: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    pub bench_rss_bytes: Option<u64>,
    /// With `--churn` or `--kill-node`: the room's whole life.
    pub life: Option<LifeReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Wait,
    /// Steps start at this [`Clock`] time.
    Run(u64),
    Stop,
}

/// What every member's task shares.
struct Shared {
    clock: Clock,
    connector: Connector,
    prefix: String,
    room: String,
    senders: u32,
    steps: Steps,
    tallies: Vec<StepTally>,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    join_events: AtomicU64,
    size_events: AtomicU64,
    join_retries: AtomicU64,
    errors: Reasons,
    drops: Reasons,
    targets: Vec<Target>,
    life: LifeArgs,
    life_tally: life::LifeTally,
}

/// What a member ends with.
#[derive(Default)]
struct Member {
    ws: Option<WsStream>,
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let load = &args.load;
    if args.senders > args.members {
        bail!("--senders ({}) cannot exceed --members ({})", args.senders, args.members);
    }
    let floor = args.floor.cost().await?;
    let nodes = load.nodes().await?;
    let members = u64::from(args.members);
    let prefix = load.prefix("fanout", members)?;
    let room = args.room.clone().unwrap_or_else(|| format!("fanout-{}", crate::client::run_tag()));
    if let Some(limit) = crate::open_files_limit() {
        if limit < members + 64 {
            eprintln!("warning: the open-files limit is {limit}, too low for {members} connections");
        }
    }
    let rates = args.rates();
    args.life.check(nodes.len(), args.senders)?;
    eprintln!(
        "fanout: {members} members in room {room} ({} sending), rate{} {} msg/s, {} s warm-up + {} s measured per step, on {} node{}, users {prefix}-*",
        args.senders,
        if rates.len() == 1 { "" } else { "s" },
        rates.iter().map(f64::to_string).collect::<Vec<_>>().join(", "),
        load.warmup_secs,
        load.duration_secs,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
    );
    nodes.check_up().await?;

    let placement: Vec<usize> = (0..args.members as usize).map(|member| member % nodes.len()).collect();
    let sources = nodes.assign_sources(&placement);
    let (shard, shards) = args.shard.unwrap_or((0, 1));
    let mine: Vec<u32> = (0..args.members).filter(|member| member % shards == shard).collect();
    // Shards share a clock that starts 10 minutes before the common start.
    let (clock, common_start) = match args.start_at {
        Some(start_at) => (Clock::since_unix_ms(start_at.saturating_sub(600_000)), Some(600_000_000_000)),
        None => (Clock::start(), None),
    };
    let steps = Steps {
        rates: rates.clone(),
        warmup_nanos: load.warmup_secs * 1_000_000_000,
        step_nanos: (load.warmup_secs + load.duration_secs) * 1_000_000_000,
    };
    let shared = Arc::new(Shared {
        clock,
        connector: Connector::new(&load.jwt_secret, Duration::from_secs(load.timeout_secs), load.concurrency),
        prefix: prefix.clone(),
        room: room.clone(),
        senders: args.senders,
        tallies: rates.iter().map(|_| StepTally::default()).collect(),
        steps,
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        join_events: AtomicU64::new(0),
        size_events: AtomicU64::new(0),
        join_retries: AtomicU64::new(0),
        errors: Reasons::default(),
        drops: Reasons::default(),
        targets: nodes.targets.clone(),
        life: (*args.life).clone(),
        life_tally: Default::default(),
    });
    let (control_tx, control_rx) = watch::channel(Control::Wait);
    let tasks: Vec<_> = mine
        .iter()
        .map(|&index| {
            let node = placement[index as usize];
            tokio::spawn(member(shared.clone(), index, node, sources[index as usize], control_rx.clone()))
        })
        .collect();
    let connect_time = shared.connector.wait_all(mine.len() as u64).await;
    let failures = shared.connector.failures();
    if !failures.is_empty() {
        let _ = control_tx.send(Control::Stop);
        report::eprint_reasons("connection failures", &failures);
        close(tasks).await;
        bail!("{} of {members} members failed to connect or join; nothing was sent", failures.values().sum::<u64>());
    }
    let join_secs = drain_join_events(&shared, members, Duration::from_secs(load.timeout_secs)).await;

    let clock = shared.clock;
    let start = common_start.unwrap_or_else(|| clock.nanos() + START_DELAY.as_nanos() as u64);
    if clock.nanos() > start {
        eprintln!("warning: this shard's joins ended after --start-at: its first step started without it");
    }
    let _ = control_tx.send(Control::Run(start));
    let killer = tokio::spawn(life::kill_at(shared.clone(), start));
    let (progress_done, progress_rx) = oneshot::channel();
    let progress = tokio::spawn(print_progress(shared.clone(), start, members, progress_rx));
    let mut windows: Vec<(ServerDelta, Option<f64>)> = Vec::with_capacity(rates.len());
    for step in 0..rates.len() {
        tokio::time::sleep_until(clock.instant(shared.steps.measure_from(start, step))).await;
        let before = nodes.scrape("at a window's start").await;
        let cpu_before = report::own_cpu_seconds();
        tokio::time::sleep_until(clock.instant(shared.steps.end(start, step))).await;
        let after = nodes.scrape("at a window's end").await;
        let cpu = report::own_cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
        windows.push((ServerDelta::between(&before, &after), cpu));
    }
    let bench_rss = report::own_rss_bytes();

    // Grace: until every send has its answer and every delivery has arrived.
    let grace_end = tokio::time::Instant::now() + Duration::from_secs(load.grace_secs);
    loop {
        let sent = shared.sent.load(Ordering::Relaxed);
        let acked = shared.acked.load(Ordering::Relaxed);
        // A shard cannot tell what the others sent: it waits the whole grace.
        let settled = args.shard.is_none()
            && acked + shared.errors.total() >= sent
            && shared.received.load(Ordering::Relaxed) >= acked * (members - 1);
        if settled || tokio::time::Instant::now() >= grace_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = control_tx.send(Control::Stop);
    let _ = progress_done.send(());
    let _ = progress.await;
    killer.abort();
    close(tasks).await;
    let life = args
        .life
        .enabled()
        .then(|| life::report(&shared, start, mine.len() as u64, connect_time.as_secs_f64(), args.shard.is_none()));

    let steps = windows
        .into_iter()
        .enumerate()
        .map(|(step, window)| shared.steps.report(step, &shared.tallies[step], window, members, args.senders, floor))
        .collect();
    let report = FanoutReport {
        scenario: "fanout",
        urls: nodes.urls(),
        members: args.members,
        senders: args.senders,
        room,
        duration_secs: load.duration_secs,
        warmup_secs: load.warmup_secs,
        sources: nodes.sources_per_node(),
        user_prefix: prefix,
        connect_secs: connect_time.as_secs_f64(),
        handshake: shared.connector.handshake.latency(),
        join_events: shared.join_events.load(Ordering::Relaxed),
        size_events: shared.size_events.load(Ordering::Relaxed),
        join_retries: shared.join_retries.load(Ordering::Relaxed),
        join_secs: join_secs.as_secs_f64(),
        steps,
        floor,
        errors: shared.errors.snapshot(),
        drops: shared.drops.snapshot(),
        bench_rss_bytes: bench_rss,
        life,
    };
    report::print(&summary(&report), &report, load.json)
}

/// Waits until the tasks have stopped and closes their connections.
async fn close(tasks: Vec<tokio::task::JoinHandle<Member>>) {
    let mut open = Vec::with_capacity(tasks.len());
    for task in tasks {
        open.extend(task.await.ok().and_then(|member| member.ws));
    }
    crate::client::close_all(open, CLOSE_TIMEOUT).await;
}
