//! What every task of `presence` shares: the churn cycles, the counters, and matching the events
//! the watchers see with the cycles they are about.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::PresenceArgs;
use crate::client::{frame, Clock};
use crate::report::{Histogram, Reasons};
use crate::storm::Logins;

/// `slot_cycle` of a pool user that has not been used yet.
const NO_CYCLE: u32 = u32::MAX;

/// When a churn cycle's user logged in and closed ([`Clock`] nanoseconds, 0 for not yet).
#[derive(Default)]
pub(super) struct Cycle {
    pub(super) login_sent: AtomicU64,
    pub(super) closed: AtomicU64,
}

/// What every task shares.
pub(super) struct Shared {
    pub(super) clock: Clock,
    /// The users' logins; its connector counts the watchers and times their handshakes.
    pub(super) logins: Logins,
    pub(super) watchers: u32,
    pub(super) pool: u32,
    pub(super) online: Duration,
    /// The measured window, [`Clock`] nanoseconds (0 until known).
    pub(super) measure_from: AtomicU64,
    pub(super) measure_to: AtomicU64,
    pub(super) cycles: Vec<Cycle>,
    /// The cycle each pool user is in now.
    pub(super) slot_cycle: Vec<AtomicU32>,
    /// Churn logins that succeeded.
    pub(super) logged_in: AtomicU64,
    pub(super) closes: AtomicU64,
    /// Events about churn users seen by the watchers.
    pub(super) watcher_events: AtomicU64,
    /// Events received by any presence connection.
    pub(super) events: AtomicU64,
    pub(super) events_in_window: AtomicU64,
    pub(super) login_latency: Histogram,
    pub(super) online_latency: Histogram,
    pub(super) offline_latency: Histogram,
    pub(super) login_failures: Reasons,
    pub(super) drops: Reasons,
}

impl Shared {
    /// With room for `cycles` churn cycles; the window is set once the watchers are connected.
    pub(super) fn new(args: &PresenceArgs, prefix: String, cycles: usize) -> Self {
        Shared {
            clock: Clock::start(),
            logins: Logins::new(&args.load, prefix),
            watchers: args.watchers,
            pool: args.pool(),
            online: Duration::from_millis(args.online_ms),
            measure_from: AtomicU64::new(0),
            measure_to: AtomicU64::new(0),
            cycles: (0..cycles).map(|_| Cycle::default()).collect(),
            slot_cycle: (0..args.pool()).map(|_| AtomicU32::new(NO_CYCLE)).collect(),
            logged_in: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            watcher_events: AtomicU64::new(0),
            events: AtomicU64::new(0),
            events_in_window: AtomicU64::new(0),
            login_latency: Histogram::default(),
            online_latency: Histogram::default(),
            offline_latency: Histogram::default(),
            login_failures: Reasons::default(),
            drops: Reasons::default(),
        }
    }

    pub(super) fn measures(&self, nanos: u64) -> bool {
        (self.measure_from.load(Ordering::Relaxed)..self.measure_to.load(Ordering::Relaxed)).contains(&nanos)
    }

    /// The pool slot of a churn user's name.
    fn slot_of(&self, user: &str) -> Option<u32> {
        let index: u32 = user.strip_prefix(&self.logins.prefix)?.strip_prefix('-')?.parse().ok()?;
        index.checked_sub(self.watchers).filter(|&slot| slot < self.pool)
    }

    /// Counts a presence event; returns whether the user came online, and who, if it is one.
    pub(super) fn event<'a>(&self, text: &'a str) -> Option<(bool, &'a str)> {
        let online = match frame::kind(text)? {
            "user_online" => true,
            "user_offline" => false,
            _ => return None,
        };
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.measures(self.clock.nanos()) {
            self.events_in_window.fetch_add(1, Ordering::Relaxed);
        }
        Some((online, frame::str_field(text, "\"user\":\"")?))
    }
}

/// What a watcher saw of the churn users.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) online: u64,
    pub(super) offline: u64,
    pub(super) unmatched: u64,
}

impl Seen {
    /// A frame on a watcher's connection: counts and times events about churn users.
    pub(super) fn on_frame(&mut self, shared: &Shared, text: &str) {
        let Some((online, user)) = shared.event(text) else { return };
        let Some(slot) = shared.slot_of(user) else { return };
        let now = shared.clock.nanos();
        *if online { &mut self.online } else { &mut self.offline } += 1;
        shared.watcher_events.fetch_add(1, Ordering::Relaxed);
        let cycle = shared.slot_cycle[slot as usize].load(Ordering::Acquire);
        let Some(cycle) = shared.cycles.get(cycle as usize) else {
            self.unmatched += 1;
            return;
        };
        let (at, latency) = if online {
            (cycle.login_sent.load(Ordering::Acquire), &shared.online_latency)
        } else {
            (cycle.closed.load(Ordering::Acquire), &shared.offline_latency)
        };
        if at == 0 {
            self.unmatched += 1;
        } else if shared.measures(at) {
            latency.record_nanos(at, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Watchers 0..3, churn users 3 and 4 (0.4 users/s online 1 ms: a pool of 2), 4 cycles, the
    /// window from the start on.
    fn shared() -> Shared {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: PresenceArgs,
        }
        let argv = ["presence", "--jwt-secret", "s", "--watchers", "3", "--rate", "0.4", "--online-ms", "1"];
        let Cli { args } = clap::Parser::parse_from(argv);
        let shared = Shared::new(&args, "presence-x".into(), 4);
        assert_eq!(shared.pool, 2);
        shared.measure_from.store(1, Ordering::Relaxed);
        shared.measure_to.store(u64::MAX, Ordering::Relaxed);
        shared
    }

    #[test]
    fn churn_users_are_told_from_watchers_by_name() {
        let shared = shared();
        assert_eq!(shared.slot_of("presence-x-000003"), Some(0));
        assert_eq!(shared.slot_of("presence-x-000004"), Some(1));
        assert_eq!(shared.slot_of("presence-x-000002"), None, "a watcher");
        assert_eq!(shared.slot_of("presence-x-000005"), None, "beyond the pool");
        assert_eq!(shared.slot_of("other-000003"), None);
    }

    #[test]
    fn watchers_match_events_with_the_cycle_of_the_user() {
        let shared = shared();
        let mut seen = Seen::default();
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000003"}"#);
        assert_eq!((seen.online, seen.unmatched), (1, 1), "no cycle began for that user");
        shared.slot_cycle[1].store(3, Ordering::Relaxed);
        shared.cycles[3].login_sent.store(shared.clock.nanos().max(1), Ordering::Relaxed);
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000004"}"#);
        seen.on_frame(&shared, r#"{"type":"user_offline","user":"presence-x-000004"}"#);
        assert_eq!((seen.online, seen.offline, seen.unmatched), (2, 1, 2), "not closed yet");
        assert_eq!(shared.online_latency.count(), 1);
        seen.on_frame(&shared, r#"{"type":"user_online","user":"presence-x-000001"}"#);
        seen.on_frame(&shared, r#"{"type":"online","users":["presence-x-000004"],"done":true}"#);
        assert_eq!(seen.online, 2, "watchers and online lists are not churn events");
        assert_eq!(shared.events.load(Ordering::Relaxed), 4);
        assert_eq!(shared.watcher_events.load(Ordering::Relaxed), 3);
    }
}
