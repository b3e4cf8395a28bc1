//! Percentiles, the bench process's own memory, and output helpers.

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
    fn bytes_are_human_readable() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(4096.0), "4.0 KiB");
        assert_eq!(bytes(-3.0 * 1024.0 * 1024.0), "-3.0 MiB");
    }

    #[test]
    fn own_rss_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(own_rss_bytes().unwrap() > 0);
        }
    }
}
