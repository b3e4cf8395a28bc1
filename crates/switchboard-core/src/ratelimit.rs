//! Token buckets for frames per connection, and failed-login throttling.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket { rate, burst, tokens: burst, refilled_at: Instant::now() }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(missing / self.rate.max(f64::MIN_POSITIVE)))
    }
}

/// The client address that login throttling counts by: an IPv4 address, or the /64 prefix of an
/// IPv6 address (one host usually has a whole /64, so counting single IPv6 addresses would let it
/// make up a fresh one per guess).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let prefix = Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

/// Counts failed logins per key (a user name from one client address, or a client address) in a
/// fixed window.
pub struct LoginThrottle {
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Past this many keys, expired entries are swept, so memory stays bounded under a spray.
const SWEEP_ABOVE: usize = 10_000;

impl LoginThrottle {
    pub fn new(window: Duration) -> Self {
        LoginThrottle { window, failures: Mutex::new(HashMap::new()) }
    }

    /// Err with the time to wait when `key` has `limit` failures in the current window.
    pub fn check(&self, key: &str, limit: u32, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock();
        match failures.get(key) {
            Some((count, started)) if *count >= limit && now.saturating_duration_since(*started) < self.window => {
                Err(self.window - now.saturating_duration_since(*started))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() > SWEEP_ABOVE {
            let window = self.window;
            failures.retain(|_, (_, started)| now.saturating_duration_since(*started) < window);
        }
        let entry = failures.entry(key.to_owned()).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn clear(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0);
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let key = |ip: &str| client_key(ip.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn logins_are_throttled_after_the_limit_until_the_window_passes() {
        let start = Instant::now();
        let throttle = LoginThrottle::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.check("user:a", 3, start).is_ok());
            throttle.record_failure("user:a", start);
        }
        assert!(throttle.check("user:a", 3, start).is_err());
        assert!(throttle.check("user:b", 3, start).is_ok());
        assert!(throttle.check("user:a", 3, start + Duration::from_secs(61)).is_ok());
    }
}
