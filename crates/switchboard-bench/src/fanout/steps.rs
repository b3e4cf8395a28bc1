//! The steps of a run, one rate each: when each runs and is measured, when each sender sends,
//! what each counts, and whether it kept up.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::floor::FloorCost;
use crate::metrics::ServerDelta;
use crate::report::{self, Histogram, Latency};

/// A step kept up when its senders sent at least this share of the target (less one message per
/// sender for rounding), every member received at least [`KEPT_UP_DELIVERED`] of the expected
/// deliveries by the end, and at least [`KEPT_UP_ARRIVED`] of them arrived within the step.
const KEPT_UP_SENT: f64 = 0.97;
const KEPT_UP_DELIVERED: f64 = 0.999;
const KEPT_UP_ARRIVED: f64 = 0.95;

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

/// The counters of one step.
#[derive(Default)]
pub(super) struct StepTally {
    pub(super) sent: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) out_of_order: AtomicU64,
    pub(super) arrived: AtomicU64,
    pub(super) latency: Histogram,
    pub(super) ack_latency: Histogram,
}

/// The step timeline: step k runs from `start + k × (warm-up + duration)`, measured after its
/// warm-up.
#[derive(Debug, Clone)]
pub(super) struct Steps {
    pub(super) rates: Vec<f64>,
    pub(super) warmup_nanos: u64,
    pub(super) step_nanos: u64,
}

impl Steps {
    /// The step at `nanos` and whether it is in the step's measured window.
    pub(super) fn locate(&self, start: u64, nanos: u64) -> Option<(usize, bool)> {
        let since = nanos.checked_sub(start)?;
        let step = (since / self.step_nanos) as usize;
        (step < self.rates.len()).then(|| (step, since % self.step_nanos >= self.warmup_nanos))
    }

    pub(super) fn measure_from(&self, start: u64, step: usize) -> u64 {
        start + step as u64 * self.step_nanos + self.warmup_nanos
    }

    pub(super) fn end(&self, start: u64, step: usize) -> u64 {
        start + (step as u64 + 1) * self.step_nanos
    }

    /// The `n`-th send of `sender` (of `senders`) within step `step`, or the first of a later
    /// step; `None` after the last step.
    pub(super) fn next_send(
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

    /// How long each step is measured, in seconds.
    fn measured_secs(&self) -> f64 {
        (self.step_nanos - self.warmup_nanos) as f64 / 1e9
    }

    /// Step `step`'s report: its counters, and its window's server delta and bench CPU.
    pub(super) fn report(
        &self,
        step: usize,
        tally: &StepTally,
        (server, bench_cpu): (ServerDelta, Option<f64>),
        members: u64,
        senders: u32,
        floor: Option<FloorCost>,
    ) -> StepReport {
        let (rate, duration) = (self.rates[step], self.measured_secs());
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (sent, received, arrived) = (load(&tally.sent), load(&tally.received), load(&tally.arrived));
        let expected = sent * (members - 1);
        let delivered_ratio = report::ratio(received as f64, expected as f64);
        let arrived_ratio = report::ratio(arrived as f64, expected as f64);
        let kept_up = sent as f64 >= rate * duration * KEPT_UP_SENT - f64::from(senders)
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
    }
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
        assert_eq!(steps.measured_secs(), 2.0);
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
}
