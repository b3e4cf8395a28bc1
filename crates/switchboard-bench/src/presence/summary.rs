//! What `presence` prints for people: a progress line a second on stderr, and the summary.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::shared::Shared;
use super::PresenceReport;
use crate::floor;
use crate::report;

/// One line a second on stderr while users come and go.
pub(super) async fn print_progress(shared: Arc<Shared>, watchers: u32, done: oneshot::Receiver<()>) {
    let mut last_events = 0;
    report::each_second(done, || {
        let now = shared.clock.nanos();
        let phase = if now < shared.measure_from.load(Ordering::Relaxed) {
            "warm-up"
        } else if shared.measures(now) {
            "measure"
        } else {
            "grace"
        };
        let (logins, closes) = (shared.logged_in.load(Ordering::Relaxed), shared.closes.load(Ordering::Relaxed));
        let events = shared.events.load(Ordering::Relaxed);
        eprintln!(
            "[{:6.1}s] {phase:<7} logins {logins:>6} (failed {}) closes {closes:>6} online {:>5} | events {events:>9} ({:>7}/s), watchers saw {} of {} | drops {}",
            shared.clock.secs(),
            shared.login_failures.total(),
            logins.saturating_sub(closes),
            events - last_events,
            shared.watcher_events.load(Ordering::Relaxed),
            u64::from(watchers) * (logins + closes),
            shared.drops.total(),
        );
        last_events = events;
    })
    .await;
}

/// The human summary.
pub fn summary(report: &PresenceReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = report::two_decimals;
    let _ = writeln!(
        out,
        "presence: {} watchers, {} users/s online for {} ms each (pool {}), {} s measured after {:.1} s warm-up, nodes {}",
        report.watchers,
        report.rate,
        report.online_ms,
        report.pool,
        report.duration_secs,
        report.warmup_secs,
        report.urls.join(" ")
    );
    let connected = report::connect_line(report.watchers.into(), report.connect_secs, report.handshake.as_ref());
    let _ = writeln!(out, "  watchers           {connected}");
    let _ = writeln!(
        out,
        "  churn              {} cycles in the window; {} logins, {} failed",
        report.cycles,
        report.logins,
        report.login_failures.values().sum::<u64>()
    );
    let _ = writeln!(out, "  churn login        {}", report::latency_line(report.login.as_ref()));
    let _ = writeln!(out, "  login -> online    {}", report::latency_line(report.online_latency.as_ref()));
    let _ = writeln!(out, "  close -> offline   {}", report::latency_line(report.offline_latency.as_ref()));
    let _ = writeln!(
        out,
        "  events             {} expected by the watchers, missed {}, extra {}, unmatched {}; {:.0} events/s delivered in the window ({})",
        report.events_expected, report.missed, report.extra, report.unmatched, report.events_per_sec, report.events_in_window
    );
    let _ = writeln!(
        out,
        "  server CPU         {} s in the window, {} s per million events{}, {} per churn cycle",
        num(report.server.cpu_seconds, ""),
        num(report.server_cpu_secs_per_million_events, ""),
        floor::times(report.server_cpu_floor_multiple),
        num(report.server_cpu_ms_per_cycle, " ms"),
    );
    let _ = writeln!(out, "  server RSS         {}", report::rss_list(&report.server.rss_bytes));
    let _ = writeln!(
        out,
        "  bench              CPU {} s in the window; RSS {}",
        num(report.bench_cpu_secs, ""),
        report::or_na(report.bench_rss_bytes, |rss| report::bytes(rss as f64)),
    );
    report::write_reasons(&mut out, "churn login failures", &report.login_failures);
    report::write_reasons(&mut out, "connections lost", &report.drops);
    out
}
