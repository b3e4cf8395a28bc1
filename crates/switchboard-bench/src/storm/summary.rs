//! What `storm` prints for people: a progress line a second on stderr, and the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::shared::{Control, Phase, Shared};
use super::StormReport;
use crate::report;

/// One line a second on stderr from the first send to the end.
pub(super) async fn print_progress(
    shared: Arc<Shared>,
    control: watch::Receiver<Control>,
    done: oneshot::Receiver<()>,
) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    report::each_second(done, || {
        let phase = match control.borrow().phase {
            Phase::Connect | Phase::Send => "sending",
            Phase::Down => "down",
            Phase::Up => "storm",
            Phase::Quiet | Phase::Stop => "settle",
        };
        eprintln!(
            "[{:6.1}s] {phase:<7} sent {:>8} acked {:>8} received {:>8} | dropped {} synced {} recovered {} complete {} of {} | retries {} gave up {} drops {}",
            shared.clock.secs(),
            load(&shared.sent),
            load(&shared.acked),
            load(&shared.received),
            load(&shared.dropped),
            load(&shared.reconnected),
            load(&shared.recovered),
            load(&shared.complete),
            shared.clients,
            load(&shared.retries),
            load(&shared.gave_up),
            shared.drops.total(),
        );
    })
    .await;
}

/// The human summary.
pub fn summary(report: &StormReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let secs = |value: Option<f64>| report::or_na(value, |value| format!("{value:.3} s"));
    let num = report::two_decimals;
    let _ = writeln!(
        out,
        "storm: {} clients dropped at once for {} ms while {} senders sent {} msg/s, nodes {}",
        report.clients,
        report.down_ms,
        report.senders,
        report.rate,
        report.urls.join(" ")
    );
    let connections = u64::from(report.clients) + u64::from(report.senders);
    let connected = report::connect_line(connections, report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  connections        {connected}");
    let _ = writeln!(
        out,
        "  reconnect          {} of {} dropped synced again, the last after {} ({} reconnects/s, {} in flight); {} gave up, {} retries",
        report.reconnected,
        report.dropped,
        secs(report.all_synced_secs),
        num(report.reconnect_rate, ""),
        report.concurrency,
        report.gave_up,
        report.retries,
    );
    let _ = writeln!(out, "  time to synced     {}", report::latency_line(report.synced.as_ref()));
    let _ = writeln!(out, "  resume handshake   {}", report::latency_line(report.resume_handshake.as_ref()));
    let _ = writeln!(
        out,
        "  recovered          {} of {} held every message acked before the reconnect, the last after {}",
        report.recovered,
        report.clients,
        secs(report.all_recovered_secs),
    );
    let _ = writeln!(out, "  time to recover    {}", report::latency_line(report.recovery.as_ref()));
    let _ = writeln!(
        out,
        "  messages           sent {}  acked {}  received {}  lost {}  doubled {}{}",
        report.sent,
        report.acked,
        report.received,
        report.lost,
        report.doubled,
        if report.unexpected > 0 { format!("  unexpected {}", report.unexpected) } else { String::new() }
    );
    let _ = writeln!(
        out,
        "  arrived            {} live, {} in syncs, {} in history pages ({} pages, {} for gaps)",
        report.via_live, report.via_sync, report.via_history, report.history_pages, report.gaps
    );
    let _ = writeln!(
        out,
        "  complete           {} of {} held every acked message {} after sending stopped",
        report.complete,
        report.clients,
        secs(report.complete_after_stop_secs),
    );
    let _ = writeln!(
        out,
        "  server CPU         {} over the storm ({:.2} s), {} per reconnect; {} over the drop; {} per second before it",
        secs(report.server_storm.cpu_seconds),
        report.storm_secs,
        num(report.server_cpu_ms_per_reconnect, " ms"),
        secs(report.server_drop.cpu_seconds),
        secs(report.server_cpu_baseline_per_sec),
    );
    let _ = writeln!(out, "  server RSS         {}", report::rss_list(&report.server_storm.rss_bytes));
    let _ = writeln!(
        out,
        "  bench              CPU {} over the storm; RSS {}",
        secs(report.bench_cpu_storm_secs),
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64)),
    );
    if !report.examples.is_empty() {
        let _ = writeln!(out, "  lost or doubled (the first):");
    }
    for example in &report.examples {
        let _ = writeln!(out, "    {example}");
    }
    report::write_reasons(&mut out, "reconnect failures", &report.reconnect_failures);
    report::write_errors_and_drops(&mut out, &report.errors, &report.drops);
    out
}
