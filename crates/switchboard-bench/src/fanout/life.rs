//! The whole life of a huge room on top of `fanout`'s joins and stepped rates: a share of the
//! members leave the room and join it again (`--churn`), and a node is killed (`--kill-node`,
//! `--kill-pid`) while its members come back on the others. Members connected throughout must
//! receive every message sent: `steady_lost` is what they missed, and must be 0.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::Shared;
use crate::client::{Target, WsStream};
use crate::report::{Histogram, Latency};

/// Between two attempts of a member to come back after its node went.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Options of the life scenario (all off by default: plain `fanout`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LifeArgs {
    /// This share of the members (never a sender), spread evenly, leave the room and join it
    /// again `--churn-at-secs` after the first step starts.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub churn: f64,
    #[arg(long, default_value_t = 0)]
    pub churn_at_secs: u64,
    /// Kill this node (its index in the `--url` list; it must hold no sender) `--kill-at-secs`
    /// after the first step starts, with SIGKILL to `--kill-pid`. Its members reconnect to the
    /// live nodes (spread by user name), log in and join again.
    #[arg(long, requires = "kill_pid")]
    pub kill_node: Option<usize>,
    #[arg(long, requires = "kill_node")]
    pub kill_pid: Option<u32>,
    #[arg(long, default_value_t = 0)]
    pub kill_at_secs: u64,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("'{text}' is not a share between 0 and 1")),
    }
}

impl LifeArgs {
    pub fn enabled(&self) -> bool {
        self.churn > 0.0 || self.kill_node.is_some()
    }

    /// Whether member `index` leaves and rejoins: one in every `1 / churn`, senders excepted.
    pub fn churns(&self, index: u32, senders: u32) -> bool {
        let index = f64::from(index);
        index >= f64::from(senders) && ((index + 1.0) * self.churn).floor() > (index * self.churn).floor()
    }

    /// Refuses a plan whose killed node holds a sender (members go round-robin over `nodes`).
    pub fn check(&self, nodes: usize, senders: u32) -> anyhow::Result<()> {
        if let Some(node) = self.kill_node {
            if node >= nodes {
                anyhow::bail!("--kill-node {node}: there are {nodes} nodes");
            }
            if nodes < 2 {
                anyhow::bail!("--kill-node needs another node for its members to come back on");
            }
            if (0..senders).any(|sender| sender as usize % nodes == node) {
                anyhow::bail!("--kill-node {node} holds a sender: use fewer senders or another node");
            }
        }
        Ok(())
    }
}

/// The life scenario's counters, shared by every member.
#[derive(Default)]
pub(super) struct LifeTally {
    churned: AtomicU64,
    rejoined: AtomicU64,
    /// From the `leave` sent to the answer of the `join` that follows it.
    rejoin: Histogram,
    last_rejoin_nanos: AtomicU64,
    reconnected: AtomicU64,
    reconnect_failures: AtomicU64,
    /// From the connection's loss to its member's join on another node.
    reconnect: Histogram,
    last_reconnect_nanos: AtomicU64,
    killed_at_nanos: AtomicU64,
    steady_members: AtomicU64,
    steady_received: AtomicU64,
}

/// What the life scenario measured; `null` in the report of a plain `fanout`.
#[derive(Debug, Serialize)]
pub struct LifeReport {
    /// Members joined per second from the first connection to the last join.
    pub joins_per_sec: f64,
    pub churn_members: u64,
    pub rejoined: u64,
    pub rejoin_latency: Option<Latency>,
    /// Rejoins per second, from the churn's start to the last rejoin answered.
    pub rejoins_per_sec: Option<f64>,
    pub killed_node: Option<usize>,
    pub reconnected: u64,
    pub reconnect_failures: u64,
    pub reconnect_latency: Option<Latency>,
    /// From the kill to the last member back.
    pub reconnect_secs: Option<f64>,
    /// Messages this process's senders sent over the whole run.
    pub sent_all: u64,
    /// Members connected throughout (neither churned nor cut off) and what they received.
    pub steady_members: u64,
    pub steady_received: u64,
    /// `sent_all × (steady_members − 1) − steady_received` (every sender is steady); only for a
    /// single process with steady members, as the shards' counts add up in `bench/fanout-shards.sh`.
    pub steady_lost: Option<i64>,
}

/// One member's part in the life scenario.
#[derive(Default)]
pub(super) struct MemberLife {
    /// Connected and in the room throughout so far.
    steady: bool,
    /// Deliveries received while steady.
    received: u64,
    /// When the pending rejoin's `leave` went out.
    leave_sent: Option<u64>,
}

impl MemberLife {
    pub(super) fn new() -> Self {
        MemberLife { steady: true, ..Default::default() }
    }

    pub(super) fn received(&mut self) {
        self.received += 1;
    }

    /// The `leave` and `join` requests of a rejoin, sent now.
    pub(super) fn rejoin_requests(&mut self, shared: &Shared) -> [String; 2] {
        self.steady = false;
        self.leave_sent = Some(shared.clock.nanos());
        shared.life_tally.churned.fetch_add(1, Ordering::Relaxed);
        [
            format!(r#"{{"type":"leave","room":"{}","ref":"leave"}}"#, shared.room),
            format!(r#"{{"type":"join","room":"{}","ref":"rejoin"}}"#, shared.room),
        ]
    }

    /// A `room` frame arrived: the rejoin's answer, if one is pending.
    pub(super) fn room_answer(&mut self, shared: &Shared) {
        if let Some(sent) = self.leave_sent.take() {
            let now = shared.clock.nanos();
            shared.life_tally.rejoin.record_nanos(sent, now);
            shared.life_tally.rejoined.fetch_add(1, Ordering::Relaxed);
            shared.life_tally.last_rejoin_nanos.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The connection is gone: with a node to kill, come back on a live node (`None`
    /// when that failed too, or this run kills no node).
    pub(super) async fn reconnect(
        &mut self,
        shared: &Shared,
        node: &mut usize,
        source: Option<IpAddr>,
        user: &str,
    ) -> Option<WsStream> {
        let killed = shared.life.kill_node?;
        self.steady = false;
        self.leave_sent = None;
        let lost_at = shared.clock.nanos();
        let deadline = tokio::time::Instant::now() + shared.connector.timeout();
        let count = shared.targets.len();
        // Spread over the live nodes, as clients behind a load balancer would, not all onto one.
        let spread = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            user.hash(&mut hasher);
            hasher.finish() as usize % count.saturating_sub(1).max(1)
        };
        *node = (*node + spread) % count;
        while tokio::time::Instant::now() < deadline {
            *node = (*node + 1) % count;
            if *node == killed {
                continue;
            }
            let target: &Target = &shared.targets[*node];
            if let Ok(ws) = super::members::join(shared, target, source, user).await {
                let now = shared.clock.nanos();
                shared.life_tally.reconnect.record_nanos(lost_at, now);
                shared.life_tally.reconnected.fetch_add(1, Ordering::Relaxed);
                shared.life_tally.last_reconnect_nanos.fetch_max(now, Ordering::Relaxed);
                return Some(ws);
            }
            tokio::time::sleep(RECONNECT_BACKOFF).await;
        }
        shared.life_tally.reconnect_failures.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The member's run is over: a steady member's deliveries count.
    pub(super) fn finish(self, shared: &Shared) {
        if self.steady {
            shared.life_tally.steady_members.fetch_add(1, Ordering::Relaxed);
            shared.life_tally.steady_received.fetch_add(self.received, Ordering::Relaxed);
        }
    }
}

/// Kills the node at its time (`start` on the scenario's clock), once.
pub(super) async fn kill_at(shared: std::sync::Arc<Shared>, start: u64) {
    let (Some(node), Some(pid)) = (shared.life.kill_node, shared.life.kill_pid) else {
        return;
    };
    tokio::time::sleep_until(shared.clock.instant(start + shared.life.kill_at_secs * 1_000_000_000)).await;
    let killed = tokio::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().await;
    shared.life_tally.killed_at_nanos.store(shared.clock.nanos(), Ordering::Relaxed);
    match killed {
        Ok(status) if status.success() => eprintln!("killed node {node} (pid {pid})"),
        Ok(status) => eprintln!("kill {pid} (node {node}) failed: {status}"),
        Err(error) => eprintln!("kill {pid} (node {node}) failed: {error}"),
    }
}

/// The report's life section, after every member finished.
pub(super) fn report(shared: &Shared, start: u64, members: u64, connect_secs: f64, single: bool) -> LifeReport {
    let tally = &shared.life_tally;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let secs = |from: u64, to: u64| (to > from && from > 0).then(|| (to - from) as f64 / 1e9);
    let churn_start = start + shared.life.churn_at_secs * 1_000_000_000;
    let rejoined = load(&tally.rejoined);
    let rejoin_secs = secs(churn_start, load(&tally.last_rejoin_nanos));
    let sent_all = load(&shared.sent);
    let steady_members = load(&tally.steady_members);
    let steady_received = load(&tally.steady_received);
    let expected = sent_all * steady_members.saturating_sub(1);
    LifeReport {
        joins_per_sec: members as f64 / connect_secs.max(1e-3),
        churn_members: load(&tally.churned),
        rejoined,
        rejoin_latency: tally.rejoin.latency(),
        rejoins_per_sec: rejoin_secs.map(|secs| rejoined as f64 / secs),
        killed_node: shared.life.kill_node,
        reconnected: load(&tally.reconnected),
        reconnect_failures: load(&tally.reconnect_failures),
        reconnect_latency: tally.reconnect.latency(),
        reconnect_secs: secs(load(&tally.killed_at_nanos), load(&tally.last_reconnect_nanos)),
        sent_all,
        steady_members,
        steady_received,
        steady_lost: (single && steady_members > 0).then(|| expected as i64 - steady_received as i64),
    }
}

/// The human summary's life lines.
pub fn summary(life: &LifeReport, out: &mut String) {
    use std::fmt::Write;
    let line = |latency: Option<&Latency>| crate::report::latency_line(latency);
    let _ = writeln!(out, "  join rate          {:.0} members/s (connect, login and join)", life.joins_per_sec);
    if life.churn_members > 0 {
        let _ = writeln!(
            out,
            "  churn              {} left and rejoined ({} answered, {}/s): {}",
            life.churn_members,
            life.rejoined,
            crate::report::or_na(life.rejoins_per_sec, |rate| format!("{rate:.0}")),
            line(life.rejoin_latency.as_ref())
        );
    }
    if let Some(node) = life.killed_node {
        let _ = writeln!(
            out,
            "  node {node} killed      {} members back on the others ({} failed) within {} s: {}",
            life.reconnected,
            life.reconnect_failures,
            crate::report::or_na(life.reconnect_secs, |secs| format!("{secs:.2}")),
            line(life.reconnect_latency.as_ref())
        );
    }
    let _ = writeln!(
        out,
        "  connected through  {} members received {} deliveries of {} messages sent; lost {}",
        life.steady_members,
        life.steady_received,
        life.sent_all,
        crate::report::or_na(life.steady_lost, |lost| lost.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_takes_an_even_share_of_the_non_senders() {
        let life = LifeArgs { churn: 0.1, ..Default::default() };
        let churned: Vec<u32> = (0..100).filter(|&index| life.churns(index, 2)).collect();
        assert_eq!(churned.len(), 10);
        assert!(churned.iter().all(|&index| index >= 2));
        assert_eq!(churned[1] - churned[0], 10);
        assert!(!(0..100).any(|index| LifeArgs::default().churns(index, 0)));
    }

    #[test]
    fn a_killed_node_must_hold_no_sender() {
        let kill = |node| LifeArgs { kill_node: Some(node), kill_pid: Some(1), ..Default::default() };
        assert!(kill(5).check(6, 2).is_ok());
        assert!(kill(1).check(6, 2).is_err(), "sender 1 is on node 1");
        assert!(kill(6).check(6, 1).is_err());
        assert!(kill(0).check(1, 0).is_err());
    }
}
