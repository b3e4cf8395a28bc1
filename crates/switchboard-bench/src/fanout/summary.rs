//! What `fanout` prints for people: a progress line a second on stderr, and the summary.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{life, FanoutReport, Shared};
use crate::report;

/// One line a second on stderr while sending and during the grace period.
pub(super) async fn print_progress(shared: Arc<Shared>, start: u64, members: u64, done: oneshot::Receiver<()>) {
    let (mut last_sent, mut last_received) = (0, 0);
    report::each_second(done, || {
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
    })
    .await;
}

/// The human summary.
pub fn summary(report: &FanoutReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = report::two_decimals;
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
    let connected = report::connect_line(report.members.into(), report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  connections        {connected}");
    let _ = writeln!(
        out,
        "  joins              {} member_joined events, drained in {:.2} s; {} room_size events after; {} retried",
        report.join_events, report.join_secs, report.size_events, report.join_retries
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
        let _ = writeln!(
            out,
            "    bus              {} messages (sent + received) per delivery ({} sent, {} received); server RSS {}",
            report::or_na(step.bus_messages_per_delivery, |value| format!("{value:.4}")),
            report::or_na(step.server.bus_messages_sent, |value| format!("{value:.0}")),
            report::or_na(step.server.bus_messages_received, |value| format!("{value:.0}")),
            report::rss_list(&step.server.rss_bytes)
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
    report::write_errors_and_drops(&mut out, &report.errors, &report.drops);
    out
}
