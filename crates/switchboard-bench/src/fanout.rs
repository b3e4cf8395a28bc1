//! `switchboard bench fanout`: `--members` users join one room (spread over the nodes), the first
//! `--senders` of them send to it at a total rate (or at several stepped rates, each measured on
//! its own), and every member records the latency of each message it receives. A message reaches
//! every member but its sender (whose connection gets the `ack`): `members - 1` deliveries.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::frame::{self, Probe};
use crate::client::{text_frame, Clock, Connector, Failure, LoadArgs, Stage, Target, WsStream};
use crate::metrics::{self, ServerDelta};
use crate::report::{self, Histogram, Latency, Reasons};

mod life;
pub use life::{LifeArgs, LifeReport};

/// How long after the join phase the first message goes out.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long closing all connections at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the joins, the `member_joined` events have drained once none came for this long.
const JOIN_QUIET: Duration = Duration::from_secs(1);
/// A step kept up when its senders sent at least this share of the target (less one message per
/// sender for rounding), every member received at least [`KEPT_UP_DELIVERED`] of the expected
/// deliveries by the end, and at least [`KEPT_UP_ARRIVED`] of them arrived within the step.
const KEPT_UP_SENT: f64 = 0.97;
const KEPT_UP_DELIVERED: f64 = 0.999;
const KEPT_UP_ARRIVED: f64 = 0.95;

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
    pub steps: Vec<StepReport>,
    /// This machine's floor (the steps compare their server CPU with it).
    pub floor: Option<crate::floor::FloorCost>,
    pub errors: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    pub bench_rss_bytes: Option<u64>,
    /// With `--churn` or `--kill-node`: the room's whole life.
    pub life: Option<LifeReport>,
}

/// One step. Counts are of the messages sent within the step's measured window; `arrived` counts
/// deliveries by arrival time within the window instead.
#[derive(Debug, Serialize)]
pub struct StepReport {
    pub rate: f64,
    pub sent: u64,
    pub acked: u64,
    /// `sent × (members − 1)`.
    pub expected_deliveries: u64,
    /// Deliveries received by the end of the run.
    pub received: u64,
    pub missing: u64,
    /// Received again (same room seq) by the same member.
    pub duplicates: u64,
    /// Received after a message with a higher room seq (the protocol promises ascending seqs).
    pub out_of_order: u64,
    pub arrived: u64,
    pub sent_rate: f64,
    /// Deliveries received per second of the window.
    pub deliveries_per_sec: f64,
    pub delivered_ratio: Option<f64>,
    pub arrived_ratio: Option<f64>,
    pub kept_up: bool,
    /// Send to receive, over every member.
    pub latency: Option<Latency>,
    pub ack_latency: Option<Latency>,
    pub server: ServerDelta,
    pub server_cpu_secs_per_million_deliveries: Option<f64>,
    /// The same as a multiple of a delivery's socket work at the floor: one write, plus the send's
    /// read and the ack's write shared by the `members − 1` deliveries.
    pub server_cpu_floor_multiple: Option<f64>,
    pub bus_messages_per_delivery: Option<f64>,
    pub bench_cpu_secs: Option<f64>,
    pub bench_cpu_us_per_delivery: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Wait,
    /// Steps start at this [`Clock`] time.
    Run(u64),
    Stop,
}

/// The counters of one step.
#[derive(Default)]
struct StepTally {
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    duplicates: AtomicU64,
    out_of_order: AtomicU64,
    arrived: AtomicU64,
    latency: Histogram,
    ack_latency: Histogram,
}

/// The step timeline: step k runs from `start + k × (warm-up + duration)`, measured after its
/// warm-up.
#[derive(Debug, Clone)]
struct Steps {
    rates: Vec<f64>,
    warmup_nanos: u64,
    step_nanos: u64,
}

impl Steps {
    /// The step at `nanos` and whether it is in the step's measured window.
    fn locate(&self, start: u64, nanos: u64) -> Option<(usize, bool)> {
        let since = nanos.checked_sub(start)?;
        let step = (since / self.step_nanos) as usize;
        (step < self.rates.len()).then(|| (step, since % self.step_nanos >= self.warmup_nanos))
    }

    fn measure_from(&self, start: u64, step: usize) -> u64 {
        start + step as u64 * self.step_nanos + self.warmup_nanos
    }

    fn end(&self, start: u64, step: usize) -> u64 {
        start + (step as u64 + 1) * self.step_nanos
    }

    /// The `n`-th send of `sender` (of `senders`) within step `step`, or the first of a later
    /// step; `None` after the last step.
    fn next_send(
        &self,
        start: u64,
        sender: u32,
        senders: u32,
        mut step: usize,
        mut n: u64,
    ) -> Option<(usize, u64, u64)> {
        while step < self.rates.len() {
            let rate = self.rates[step];
            let offset = (f64::from(sender) / rate + n as f64 * f64::from(senders) / rate) * 1e9;
            let at = start + step as u64 * self.step_nanos + offset as u64;
            if at < self.end(start, step) {
                return Some((step, n, at));
            }
            (step, n) = (step + 1, 0);
        }
        None
    }
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
    for target in &nodes.targets {
        metrics::scrape(target).await.with_context(|| format!("scraping /metrics of {} (is it up?)", target.url))?;
    }

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
        let mut out = String::new();
        report::write_reasons(&mut out, "connection failures", &failures);
        eprint!("{out}");
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

    let duration = load.duration_secs as f64;
    let steps = windows
        .into_iter()
        .zip(&shared.tallies)
        .zip(&rates)
        .map(|(((server, bench_cpu), tally), &rate)| {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            let (sent, received, arrived) = (load(&tally.sent), load(&tally.received), load(&tally.arrived));
            let expected = sent * (members - 1);
            let delivered_ratio = report::ratio(received as f64, expected as f64);
            let arrived_ratio = report::ratio(arrived as f64, expected as f64);
            let kept_up = sent as f64 >= rate * duration * KEPT_UP_SENT - f64::from(args.senders)
                && delivered_ratio.is_some_and(|ratio| ratio >= KEPT_UP_DELIVERED)
                && arrived_ratio.is_some_and(|ratio| ratio >= KEPT_UP_ARRIVED);
            let cpu_per_million = server.cpu_per_million(server.deliveries.unwrap_or(arrived as f64));
            let share = 1.0 / (members - 1) as f64;
            StepReport {
                rate,
                sent,
                acked: load(&tally.acked),
                expected_deliveries: expected,
                received,
                missing: expected.saturating_sub(received),
                duplicates: load(&tally.duplicates),
                out_of_order: load(&tally.out_of_order),
                arrived,
                sent_rate: sent as f64 / duration,
                deliveries_per_sec: arrived as f64 / duration,
                delivered_ratio,
                arrived_ratio,
                kept_up,
                latency: tally.latency.latency(),
                ack_latency: tally.ack_latency.latency(),
                server_cpu_secs_per_million_deliveries: cpu_per_million,
                server_cpu_floor_multiple: floor.and_then(|floor| floor.multiple(cpu_per_million, share, 1.0 + share)),
                bus_messages_per_delivery: server.bus_per_delivery(),
                server,
                bench_cpu_secs: bench_cpu,
                bench_cpu_us_per_delivery: bench_cpu.and_then(|cpu| report::ratio(cpu * 1e6, arrived as f64)),
            }
        })
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

/// Every join sends `member_joined` to every member in the room, the joiner included:
/// `members × (members + 1) / 2` events in all. Waits until they have arrived, or none came for
/// [`JOIN_QUIET`] (in a cluster, a join racing another on a different node may not reach it), or
/// `limit`.
async fn drain_join_events(shared: &Shared, members: u64, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let expected = members * (members + 1) / 2;
    let (mut last, mut last_change) = (u64::MAX, started);
    loop {
        let events = shared.join_events.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if events != last {
            (last, last_change) = (events, now);
        }
        if events >= expected || now - last_change >= JOIN_QUIET || now - started >= limit {
            if events < expected {
                eprintln!("note: {events} of {expected} member_joined events arrived");
            }
            return now - started;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects, logs in and joins the room (holding a handshake slot until joined).
async fn join(shared: &Shared, target: &Target, source: Option<IpAddr>, user: &str) -> Result<WsStream, Failure> {
    let (mut ws, _permit) = shared.connector.connect(target, source, user).await?;
    let join = async {
        let request = format!(r#"{{"type":"join","room":"{}","ref":"join"}}"#, shared.room);
        ws.send(Message::text(request)).await.map_err(|error| Failure::new(Stage::Login, format!("join: {error}")))?;
        loop {
            let text = match text_frame(ws.next().await) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(reason) => return Err(Failure::new(Stage::Login, format!("join: {reason}"))),
            };
            match frame::kind(&text) {
                Some("room") => return Ok(()),
                Some("member_joined") => {
                    shared.join_events.fetch_add(1, Ordering::Relaxed);
                }
                Some("error") => {
                    let code = frame::str_field(&text, "\"code\":\"").unwrap_or("?");
                    return Err(Failure::new(Stage::Login, format!("join: server error {code}")));
                }
                _ => {}
            }
        }
    };
    let timeout = shared.connector.timeout();
    tokio::time::timeout(timeout, join).await.unwrap_or_else(|_| Err(Failure::timeout(timeout)))?;
    Ok(ws)
}

/// One member: joins, then receives (and records) the room's messages; the first `senders`
/// members also send on their schedule.
async fn member(
    shared: Arc<Shared>,
    index: u32,
    mut node: usize,
    source: Option<IpAddr>,
    mut control: watch::Receiver<Control>,
) -> Member {
    let user = format!("{}-{index:06}", shared.prefix);
    let mut ws = match join(&shared, &shared.targets[node], source, &user).await {
        Ok(ws) => ws,
        Err(failure) => {
            shared.connector.failed(&failure);
            return Member::default();
        }
    };
    shared.connector.ready();
    let clock = shared.clock;
    let sending = index < shared.senders;
    let mut start: Option<u64> = None;
    // The next send: its step, its number within the step, its time.
    let mut next: Option<(usize, u64, u64)> = None;
    // Send time of each message sent, by its ref.
    let mut sent_at: Vec<u64> = Vec::new();
    // The room seqs received lately, to tell duplicates and reordering.
    let mut seen = SeqWindow::default();
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut life = life::MemberLife::new();
    let churns = shared.life.churns(index, shared.senders);
    let churn = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(churn);
    let mut churn_pending = false;
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => {
                    let Some(start) = start else {
                        if frame::kind(&text) == Some("member_joined") {
                            shared.join_events.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    };
                    if frame::kind(&text) == Some("room") {
                        life.room_answer(&shared);
                    } else if on_frame(&shared, start, &text, &sent_at, &mut seen) {
                        life.received();
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    // A new connection starts a new stream of seqs.
                    seen = SeqWindow::default();
                    match life.reconnect(&shared, &mut node, source, &user).await {
                        Some(again) => ws = again,
                        None => return Member::default(),
                    }
                }
            },
            () = &mut churn, if churn_pending => {
                churn_pending = false;
                for request in life.rejoin_requests(&shared) {
                    if let Err(error) = ws.send(Message::text(request)).await {
                        shared.drops.add(format!("write error: {error}"));
                        return Member::default();
                    }
                }
            }
            () = &mut sleep, if next.is_some() => {
                let (Some(start), Some((step, n, _))) = (start, next) else { continue };
                let seq = sent_at.len() as u32;
                let sent_nanos = clock.nanos();
                let text = Probe { id: index, seq, sent_nanos }.text();
                let request = format!(r#"{{"type":"send","room":"{}","text":"{text}","ref":{seq}}}"#, shared.room);
                if let Err(error) = ws.send(Message::text(request)).await {
                    shared.drops.add(format!("write error: {error}"));
                    return Member::default();
                }
                sent_at.push(sent_nanos);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if let Some((step, true)) = shared.steps.locate(start, sent_nanos) {
                    shared.tallies[step].sent.fetch_add(1, Ordering::Relaxed);
                }
                next = shared.steps.next_send(start, index, shared.senders, step, n + 1);
                if let Some((_, _, at)) = next {
                    sleep.as_mut().reset(clock.instant(at));
                }
            }
            changed = control.changed() => {
                let now = *control.borrow_and_update();
                match now {
                    _ if changed.is_err() => break,
                    Control::Stop => break,
                    Control::Run(run) if start.is_none() => {
                        start = Some(run);
                        if churns {
                            churn_pending = true;
                            churn.as_mut().reset(clock.instant(run + shared.life.churn_at_secs * 1_000_000_000));
                        }
                        if sending {
                            next = shared.steps.next_send(run, index, shared.senders, 0, 0);
                            if let Some((_, _, at)) = next {
                                sleep.as_mut().reset(clock.instant(at));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    life.finish(&shared);
    Member { ws: Some(ws) }
}

/// Records a frame received during the steps; returns true for a new delivery of a message.
fn on_frame(shared: &Shared, start: u64, text: &str, sent_at: &[u64], seen: &mut SeqWindow) -> bool {
    match frame::kind(text) {
        Some("message") => {
            let now = shared.clock.nanos();
            let Some(probe) = Probe::in_message(text) else { return false };
            let seen = seen.insert(frame::u64_field(text, "\"seq\":").unwrap_or(0));
            let duplicate = seen == Seen::Duplicate;
            if !duplicate {
                shared.received.fetch_add(1, Ordering::Relaxed);
                if let Some((step, true)) = shared.steps.locate(start, now) {
                    shared.tallies[step].arrived.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some((step, true)) = shared.steps.locate(start, probe.sent_nanos) {
                let tally = &shared.tallies[step];
                if duplicate {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.received.fetch_add(1, Ordering::Relaxed);
                    tally.latency.record_nanos(probe.sent_nanos, now);
                    if seen == Seen::Late {
                        tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            !duplicate
        }
        Some("ack") => {
            let now = shared.clock.nanos();
            let Some(&at) = frame::u64_field(text, "\"ref\":").and_then(|seq| sent_at.get(seq as usize)) else {
                return false;
            };
            shared.acked.fetch_add(1, Ordering::Relaxed);
            if let Some((step, true)) = shared.steps.locate(start, at) {
                shared.tallies[step].acked.fetch_add(1, Ordering::Relaxed);
                shared.tallies[step].ack_latency.record_nanos(at, now);
            }
            false
        }
        Some("error") => {
            shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown"));
            false
        }
        _ => false,
    }
}

/// How a room seq compares with those received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Higher than any before.
    Next,
    /// New, but lower than one received before.
    Late,
    Duplicate,
}

/// The room seqs a member received lately: the highest, and which of the [`SEQ_WINDOW`] below it
/// (a ring of bits, so memory stays fixed however long the run). A seq further back than that is
/// taken as late, not as a duplicate.
struct SeqWindow {
    highest: u64,
    bits: [u64; SEQ_WINDOW as usize / 64],
}

const SEQ_WINDOW: u64 = 4096;

impl Default for SeqWindow {
    fn default() -> Self {
        SeqWindow { highest: 0, bits: [0; SEQ_WINDOW as usize / 64] }
    }
}

impl SeqWindow {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let slot = seq % SEQ_WINDOW;
        (&mut self.bits[(slot / 64) as usize], 1 << (slot % 64))
    }

    fn insert(&mut self, seq: u64) -> Seen {
        if seq > self.highest {
            if seq - self.highest >= SEQ_WINDOW {
                self.bits = [0; SEQ_WINDOW as usize / 64];
            } else {
                for skipped in self.highest + 1..seq {
                    let (word, bit) = self.bit(skipped);
                    *word &= !bit;
                }
            }
            self.highest = seq;
            let (word, bit) = self.bit(seq);
            *word |= bit;
            return Seen::Next;
        }
        if self.highest - seq >= SEQ_WINDOW {
            return Seen::Late;
        }
        let (word, bit) = self.bit(seq);
        if *word & bit != 0 {
            return Seen::Duplicate;
        }
        *word |= bit;
        Seen::Late
    }
}

/// One line a second on stderr while sending and during the grace period.
async fn print_progress(shared: Arc<Shared>, start: u64, members: u64, mut done: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let (mut last_sent, mut last_received) = (0, 0);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut done => break,
        }
        let phase = match shared.steps.locate(start, shared.clock.nanos()) {
            Some((step, measured)) => format!(
                "step {}/{} {:>6} msg/s {}",
                step + 1,
                shared.steps.rates.len(),
                shared.steps.rates[step],
                if measured { "measure" } else { "warm-up" }
            ),
            None => "grace".to_string(),
        };
        let (sent, received) = (shared.sent.load(Ordering::Relaxed), shared.received.load(Ordering::Relaxed));
        eprintln!(
            "[{:6.1}s] {phase:<30} sent {sent:>7} ({:>5}/s) acked {:>7} deliveries {received:>9} ({:>7}/s, {:.1}% of sent x {}) errors {} drops {}",
            shared.clock.secs(),
            sent - last_sent,
            shared.acked.load(Ordering::Relaxed),
            received - last_received,
            report::ratio(received as f64 * 100.0, (sent * (members - 1)) as f64).unwrap_or(0.0),
            members - 1,
            shared.errors.total(),
            shared.drops.total(),
        );
        (last_sent, last_received) = (sent, received);
    }
}

/// The human summary.
pub fn summary(report: &FanoutReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = |value: Option<f64>, unit: &str| report::or_na(value, |value| format!("{value:.2}{unit}"));
    let _ = writeln!(
        out,
        "fanout: {} members in {} ({} sending), {} s measured after {} s warm-up per step, nodes {}",
        report.members,
        report.room,
        report.senders,
        report.duration_secs,
        report.warmup_secs,
        report.urls.join(" ")
    );
    let _ = writeln!(
        out,
        "  connections        {} in {:.2} s, handshake {}",
        report.members,
        report.connect_secs,
        report::latency_line(report.handshake.as_ref())
    );
    let _ = writeln!(
        out,
        "  joins              {} member_joined events, drained in {:.2} s",
        report.join_events, report.join_secs
    );
    for (index, step) in report.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "  step {} at {} msg/s: {}",
            index + 1,
            step.rate,
            if step.kept_up { "kept up" } else { "DID NOT keep up" }
        );
        let _ =
            writeln!(out, "    messages         sent {} ({:.1}/s)  acked {}", step.sent, step.sent_rate, step.acked);
        let _ = writeln!(
            out,
            "    deliveries       {:.0}/s; received {} of {} expected ({}), {} within the window ({}), missing {}, duplicates {}, out of order {}",
            step.deliveries_per_sec,
            step.received,
            step.expected_deliveries,
            report::or_na(step.delivered_ratio, |ratio| format!("{:.2}%", ratio * 100.0)),
            step.arrived,
            report::or_na(step.arrived_ratio, |ratio| format!("{:.2}%", ratio * 100.0)),
            step.missing,
            step.duplicates,
            step.out_of_order,
        );
        let _ = writeln!(out, "    send -> receive  {}", report::latency_line(step.latency.as_ref()));
        let _ = writeln!(out, "    send -> ack      {}", report::latency_line(step.ack_latency.as_ref()));
        let _ = writeln!(
            out,
            "    server CPU       {} s, {} s per million deliveries{} (all nodes); deliveries {}",
            num(step.server.cpu_seconds, ""),
            num(step.server_cpu_secs_per_million_deliveries, ""),
            crate::floor::times(step.server_cpu_floor_multiple),
            report::or_na(step.server.deliveries, |value| format!("{value:.0}")),
        );
        let rss: Vec<String> =
            step.server.rss_bytes.iter().map(|rss| report::or_na(*rss, |rss| report::bytes(rss as f64))).collect();
        let _ = writeln!(
            out,
            "    bus              {} messages (sent + received) per delivery ({} sent, {} received); server RSS {}",
            report::or_na(step.bus_messages_per_delivery, |value| format!("{value:.4}")),
            report::or_na(step.server.bus_messages_sent, |value| format!("{value:.0}")),
            report::or_na(step.server.bus_messages_received, |value| format!("{value:.0}")),
            rss.join(", ")
        );
        let _ = writeln!(
            out,
            "    bench CPU        {} s, {} per delivery",
            num(step.bench_cpu_secs, ""),
            num(step.bench_cpu_us_per_delivery, " µs")
        );
    }
    let _ = writeln!(
        out,
        "  bench RSS          {}",
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64))
    );
    if let Some(life) = &report.life {
        life::summary(life, &mut out);
    }
    report::write_reasons(&mut out, "server errors", &report.errors);
    report::write_reasons(&mut out, "connections lost", &report.drops);
    if report.errors.contains_key("rate_limited") {
        let _ = writeln!(out, "  (rate_limited: start the server with --rate-per-sec 1000000 --rate-burst 1000000)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Steps {
        // Two steps of 1 s warm-up + 2 s measured.
        Steps { rates: vec![10.0, 20.0], warmup_nanos: 1_000_000_000, step_nanos: 3_000_000_000 }
    }

    #[test]
    fn times_are_located_in_steps() {
        let steps = steps();
        let start = 5_000;
        assert_eq!(steps.locate(start, 4_999), None);
        assert_eq!(steps.locate(start, start), Some((0, false)));
        assert_eq!(steps.locate(start, start + 1_000_000_000), Some((0, true)));
        assert_eq!(steps.locate(start, start + 3_000_000_000), Some((1, false)));
        assert_eq!(steps.locate(start, start + 5_999_999_999), Some((1, true)));
        assert_eq!(steps.locate(start, start + 6_000_000_000), None);
        assert_eq!(steps.measure_from(start, 1), start + 4_000_000_000);
        assert_eq!(steps.end(start, 1), start + 6_000_000_000);
    }

    #[test]
    fn senders_share_each_steps_rate() {
        let steps = steps();
        let count = |sender: u32, step: usize| {
            let mut at = steps.next_send(0, sender, 2, 0, 0);
            let mut count = 0;
            while let Some((in_step, n, _)) = at {
                count += usize::from(in_step == step);
                at = steps.next_send(0, sender, 2, in_step, n + 1);
            }
            count
        };
        // Step 1: 10 msg/s for 3 s over two senders; step 2: 20 msg/s.
        assert_eq!((count(0, 0), count(1, 0)), (15, 15));
        assert_eq!((count(0, 1), count(1, 1)), (30, 30));
        assert_eq!(steps.next_send(0, 1, 2, 0, 0), Some((0, 0, 100_000_000)));
        assert_eq!(steps.next_send(0, 0, 2, 0, 15), Some((1, 0, 3_000_000_000)));
        assert_eq!(steps.next_send(0, 0, 2, 1, 30), None);
    }

    #[test]
    fn seq_windows_tell_duplicates_from_late_messages() {
        let mut seen = SeqWindow::default();
        assert_eq!(seen.insert(5), Seen::Next);
        assert_eq!(seen.insert(5), Seen::Duplicate);
        assert_eq!(seen.insert(8), Seen::Next);
        assert_eq!(seen.insert(6), Seen::Late);
        assert_eq!(seen.insert(6), Seen::Duplicate);
        assert_eq!(seen.insert(7), Seen::Late);
        assert_eq!(seen.insert(8), Seen::Duplicate);
        // The slot of 5 is reused by 5 + SEQ_WINDOW: 5 is then too old to tell.
        assert_eq!(seen.insert(5 + SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(5), Seen::Late);
        assert_eq!(seen.insert(9 + SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(7 + SEQ_WINDOW), Seen::Late);
        assert_eq!(seen.insert(100 * SEQ_WINDOW), Seen::Next);
        assert_eq!(seen.insert(9 + SEQ_WINDOW), Seen::Late);
        assert_eq!(seen.insert(100 * SEQ_WINDOW), Seen::Duplicate);
    }
}
