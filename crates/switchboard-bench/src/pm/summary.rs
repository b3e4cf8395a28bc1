//! What `pm` prints for people: a progress line a second on stderr, and the summary.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{PmReport, Shared, Window};
use crate::report;

/// One line a second on stderr while sending and during the grace period.
pub(super) async fn print_progress(shared: Arc<Shared>, window: Window, done: oneshot::Receiver<()>) {
    let (mut last_sent, mut last_received) = (0, 0);
    report::each_second(done, || {
        let now = shared.clock.nanos();
        let phase = if now < window.measure_from {
            "warm-up"
        } else if now < window.measure_to {
            "measure"
        } else {
            "grace"
        };
        let (sent, received) = (shared.sent.load(Ordering::Relaxed), shared.received.load(Ordering::Relaxed));
        eprintln!(
            "[{:6.1}s] {phase:<7} sent {sent:>8} ({:>6}/s) acked {:>8} received {:>8} ({:>6}/s) errors {} drops {}",
            shared.clock.secs(),
            sent - last_sent,
            shared.acked.load(Ordering::Relaxed),
            received,
            received - last_received,
            shared.errors.total(),
            shared.drops.total(),
        );
        (last_sent, last_received) = (sent, received);
    })
    .await;
}

/// The human summary.
pub fn summary(report: &PmReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = report::two_decimals;
    let _ = writeln!(
        out,
        "pm: {} pairs at {} msg/s, {} s measured after {} s warm-up, nodes {}",
        report.pairs,
        report.rate,
        report.duration_secs,
        report.warmup_secs,
        report.urls.join(" ")
    );
    let connected = report::connect_line(report.connections, report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  connections        {connected}");
    let _ = writeln!(
        out,
        "  messages           sent {}  acked {}  received {}  lost {}  unacked {}  duplicates {}  out of order {}{}",
        report.sent,
        report.acked,
        report.received,
        report.lost,
        report.unacked,
        report.duplicates,
        report.out_of_order,
        if report.unexpected > 0 { format!("  unexpected {}", report.unexpected) } else { String::new() }
    );
    let _ = writeln!(
        out,
        "  rate               {:.1} msg/s sent, {:.1} msg/s received (target {})",
        report.achieved_rate, report.received_rate, report.rate
    );
    let _ = writeln!(out, "  send -> receive    {}", report::latency_line(report.latency.as_ref()));
    let _ = writeln!(out, "  send -> ack        {}", report::latency_line(report.ack_latency.as_ref()));
    let _ = writeln!(
        out,
        "  server CPU         {} s in the window, {} s per million messages{} (all nodes)",
        num(report.server.cpu_seconds, ""),
        num(report.server_cpu_secs_per_million_messages, ""),
        crate::floor::times(report.server_cpu_floor_multiple),
    );
    let _ = writeln!(out, "  server RSS         {}", report::rss_list(&report.server.rss_bytes));
    let _ = writeln!(
        out,
        "  bus                {} messages (sent + received) per delivery ({} sent, {} received); deliveries {}, stored {}",
        report::or_na(report.bus_messages_per_delivery, |value| format!("{value:.3}")),
        report::or_na(report.server.bus_messages_sent, |value| format!("{value:.0}")),
        report::or_na(report.server.bus_messages_received, |value| format!("{value:.0}")),
        report::or_na(report.server.deliveries, |value| format!("{value:.0}")),
        report::or_na(report.server.messages_stored, |value| format!("{value:.0}")),
    );
    let _ = writeln!(
        out,
        "  bench              CPU {} s, {} per received message; RSS {}",
        num(report.bench_cpu_secs, ""),
        num(report.bench_cpu_us_per_received_message, " µs"),
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64)),
    );
    report::write_errors_and_drops(&mut out, &report.errors, &report.drops);
    out
}
