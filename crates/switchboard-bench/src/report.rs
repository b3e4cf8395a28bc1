//! Percentiles, the bench process's own memory, and output helpers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Summarises samples in microseconds (sorts them); `None` without samples.
    pub fn from_micros(samples: &mut [u32]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |micros: u32| f64::from(micros) / 1000.0;
        let sum: u64 = samples.iter().map(|&micros| u64::from(micros)).sum();
        Some(Latency {
            count: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)),
            p90_ms: ms(percentile(samples, 90.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: sum as f64 / samples.len() as f64 / 1000.0,
        })
    }
}

/// A fixed-size latency histogram shared by many tasks: log-linear buckets (exact below 128 µs,
/// then 64 buckets per power of two, so at most 1.6% wide) over microseconds, counted with relaxed
/// atomics. 1,728 buckets (14 KiB) whatever the number of samples; no lock.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU32,
}

/// Values below this have a bucket each.
const EXACT_BELOW: u32 = 128;
/// Buckets per power of two above [`EXACT_BELOW`] (a power of two itself).
const SUB_BUCKETS: u32 = 64;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Exact buckets, then one group of sub-buckets for each power of two from 2^7 to 2^31.
const BUCKETS: usize = (EXACT_BELOW + (32 - 7) * SUB_BUCKETS) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU32::new(0),
        }
    }
}

impl Histogram {
    /// Records one sample in microseconds.
    pub fn record(&self, micros: u32) {
        self.buckets[Self::index(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::from(micros), Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Records the time from `from_nanos` to `to_nanos` (saturating at zero).
    pub fn record_nanos(&self, from_nanos: u64, to_nanos: u64) {
        self.record(u32::try_from(to_nanos.saturating_sub(from_nanos) / 1000).unwrap_or(u32::MAX));
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn index(micros: u32) -> usize {
        if micros < EXACT_BELOW {
            return micros as usize;
        }
        let power = 31 - micros.leading_zeros(); // 7..=31
        let shift = power - SUB_BITS;
        let sub = (micros >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
        (EXACT_BELOW + (power - 7) * SUB_BUCKETS + sub) as usize
    }

    /// The middle of a bucket's range, in microseconds.
    fn value(index: usize) -> f64 {
        let index = index as u32;
        if index < EXACT_BELOW {
            return f64::from(index);
        }
        let power = 7 + (index - EXACT_BELOW) / SUB_BUCKETS;
        let sub = (index - EXACT_BELOW) % SUB_BUCKETS;
        let shift = power - SUB_BITS;
        let low = u64::from(SUB_BUCKETS + sub) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    /// Nearest-rank percentiles (bucket middles, never above the exact maximum); `None` without
    /// samples.
    pub fn latency(&self) -> Option<Latency> {
        let counts: Vec<u64> = self.buckets.iter().map(|bucket| bucket.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return None;
        }
        let max = f64::from(self.max_micros.load(Ordering::Relaxed));
        let at = |pct: f64| {
            let rank = ((pct / 100.0) * count as f64).ceil().clamp(1.0, count as f64) as u64;
            let mut seen = 0;
            for (index, &in_bucket) in counts.iter().enumerate() {
                seen += in_bucket;
                if seen >= rank {
                    return Self::value(index).min(max) / 1000.0;
                }
            }
            max / 1000.0
        };
        Some(Latency {
            count: count as usize,
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: max / 1000.0,
            mean_ms: self.sum_micros.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0,
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
pub fn percentile<T: Copy>(sorted: &[T], pct: f64) -> T {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds, saturating at `u32::MAX` (71 minutes).
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), in bytes.
pub fn own_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (utime and stime,
/// in clock ticks of 1/100 s).
pub fn own_cpu_seconds() -> Option<f64> {
    Some(stat_cpu_ticks("/proc/self/stat")? as f64 / 100.0)
}

/// CPU time (user + system) the calling thread has used so far, in nanoseconds: the time on a CPU
/// of `/proc/thread-self/schedstat` (nanosecond resolution), else utime + stime of
/// `/proc/thread-self/stat` (10 ms resolution).
pub fn thread_cpu_nanos() -> Option<u64> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok();
    if let Some(nanos) = schedstat.and_then(|text| text.split_whitespace().next()?.parse().ok()) {
        return Some(nanos);
    }
    Some(stat_cpu_ticks("/proc/thread-self/stat")? * 10_000_000)
}

/// utime + stime, in clock ticks of 1/100 s, of a `/proc/.../stat` file.
fn stat_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Prints the human summary on stdout, or with `json` the summary on stderr and `report` as one
/// JSON line on stdout.
pub fn print<T: Serialize>(summary: &str, report: &T, json: bool) -> anyhow::Result<()> {
    if json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// `a / b` when `b` is positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A set of small integers (message seqs), one bit each.
#[derive(Debug, Default, Clone)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    /// Adds `i`; `false` if it was there already.
    pub fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }

    pub fn contains(&self, i: u32) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|word| word & (1u64 << (i % 64)) != 0)
    }

    /// Empties the set, keeping its memory.
    pub fn clear(&mut self) {
        self.0.iter_mut().for_each(|word| *word = 0);
    }

    /// How many of `from..=to` are in the set.
    pub fn count_in(&self, from: u32, to: u32) -> u64 {
        (from..=to).filter(|&i| self.contains(i)).count() as u64
    }
}

/// Reasons (failures, errors, drops) counted by their text. Rare events: a mutex is fine.
#[derive(Default)]
pub struct Reasons {
    total: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Reasons {
    pub fn add(&self, reason: impl Into<String>) {
        *self.counts.lock().unwrap().entry(reason.into()).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }
}

/// Calls `line` once a second, the first time a second from now, until `done` fires: the
/// scenarios' progress lines.
pub async fn each_second(mut done: tokio::sync::oneshot::Receiver<()>, mut line: impl FnMut()) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => line(),
            _ = &mut done => break,
        }
    }
}

/// [`write_reasons`] on stderr.
pub fn eprint_reasons(title: &str, reasons: &BTreeMap<String, u64>) {
    let mut out = String::new();
    write_reasons(&mut out, title, reasons);
    eprint!("{out}");
}

/// Appends `title:` and the most frequent reasons to a summary (nothing without reasons).
pub fn write_reasons(out: &mut String, title: &str, reasons: &BTreeMap<String, u64>) {
    use std::fmt::Write;
    const SHOWN: usize = 10;
    if reasons.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    let mut sorted: Vec<_> = reasons.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (reason, count) in sorted.iter().take(SHOWN) {
        let _ = writeln!(out, "    {count:>9}  {reason}");
    }
    if sorted.len() > SHOWN {
        let _ = writeln!(out, "    ... and {} more", sorted.len() - SHOWN);
    }
}

/// Appends the server errors and the connections lost, with a hint when the server's rate limit
/// answered.
pub fn write_errors_and_drops(out: &mut String, errors: &BTreeMap<String, u64>, drops: &BTreeMap<String, u64>) {
    write_reasons(out, "server errors", errors);
    write_reasons(out, "connections lost", drops);
    if errors.contains_key("rate_limited") {
        out.push_str("  (rate_limited: start the server with --rate-per-sec 1000000 --rate-burst 1000000)\n");
    }
}

/// `p50 1.2 ms  p90 ...` or `n/a`.
pub fn latency_line(latency: Option<&Latency>) -> String {
    match latency {
        Some(l) => format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
        ),
        None => "n/a (no samples)".to_string(),
    }
}

/// A value with two decimals and a unit (`1.25 ms`), or `n/a`.
pub fn two_decimals(value: Option<f64>, unit: &str) -> String {
    or_na(value, |value| format!("{value:.2}{unit}"))
}

/// Each node's RSS: `12.3 MiB, 11.0 MiB` (`n/a` for a node not scraped).
pub fn rss_list(rss: &[Option<u64>]) -> String {
    let each: Vec<String> = rss.iter().map(|rss| or_na(*rss, |rss| bytes(rss as f64))).collect();
    each.join(", ")
}

/// A connect phase: `18004 in 7.72 s, handshake p50 ...`.
pub fn connect_line(connections: u64, secs: f64, handshake: Option<&Latency>) -> String {
    format!("{connections} in {secs:.2} s, handshake {}", latency_line(handshake))
}

/// `12.3 MiB`, `512 B`, `-1.5 MiB`.
pub fn bytes(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", value / (1024.0 * 1024.0 * 1024.0))
    } else if magnitude >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else if magnitude >= 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

/// A value or `n/a`.
pub fn or_na<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map(show).unwrap_or_else(|| "n/a".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let latency = Latency::from_micros(&mut samples).unwrap();
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p90_ms, 90.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(latency.mean_ms, 50.5);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
        assert!(Latency::from_micros(&mut []).is_none());
    }

    #[test]
    fn the_histogram_is_within_two_percent() {
        let histogram = Histogram::default();
        assert!(histogram.latency().is_none());
        for micros in 1..=100_000u32 {
            histogram.record(micros);
        }
        let latency = histogram.latency().unwrap();
        assert_eq!(latency.count, 100_000);
        assert_eq!(latency.max_ms, 100.0);
        for (got, want) in [(latency.p50_ms, 50.0), (latency.p90_ms, 90.0), (latency.p99_ms, 99.0)] {
            assert!((got - want).abs() / want < 0.016, "{got} vs {want}");
        }
        assert!((latency.mean_ms - 50.0005).abs() < 1e-9);
        for micros in [0, 1, 127, 128, 129, 1000, 65_535, 1 << 20, u32::MAX] {
            let index = Histogram::index(micros);
            assert!(index < BUCKETS);
            let value = Histogram::value(index);
            assert!((value - f64::from(micros)).abs() <= f64::from(micros) / 64.0, "{micros}: {value}");
        }
        let single = Histogram::default();
        single.record_nanos(1_000, 3_001_000);
        let single = single.latency().unwrap();
        assert_eq!(single.max_ms, 3.0);
        assert!((single.p99_ms - 3.0).abs() < 3.0 / 64.0);
    }

    #[test]
    fn own_cpu_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(own_cpu_seconds().unwrap() >= 0.0);
            let before = thread_cpu_nanos().unwrap();
            let spin = std::time::Instant::now();
            while spin.elapsed() < Duration::from_millis(30) {}
            assert!(thread_cpu_nanos().unwrap() > before);
        }
    }

    #[test]
    fn bit_sets_tell_new_from_seen() {
        let mut set = BitSet::default();
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(set.insert(200));
        assert!(set.contains(3) && set.contains(200));
        assert!(!set.contains(4) && !set.contains(10_000));
        assert_eq!(set.count_in(0, 300), 2);
        assert_eq!(set.count_in(4, 199), 0);
        set.clear();
        assert!(!set.contains(3) && set.insert(3));
    }

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(4096.0), "4.0 KiB");
        assert_eq!(bytes(-3.0 * 1024.0 * 1024.0), "-3.0 MiB");
        assert_eq!(rss_list(&[Some(2048), None]), "2.0 KiB, n/a");
        assert_eq!(two_decimals(Some(1.0 / 3.0), " ms"), "0.33 ms");
        assert_eq!(two_decimals(None, " ms"), "n/a");
        assert_eq!(connect_line(3, 0.5, None), "3 in 0.50 s, handshake n/a (no samples)");
    }

    #[test]
    fn own_rss_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(own_rss_bytes().unwrap() > 0);
        }
    }
}
