//! What every task of `storm` shares: the phase the run is in, the counters, and what a client
//! holds of its conversation with each sender; at the end, the clients' counts summed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::clients::Client;
use super::login::Logins;
use super::sender::SenderEnd;
use super::{StormArgs, EXAMPLES};
use crate::client::{Clock, Target};
use crate::report::{BitSet, Histogram, Reasons};

/// Where the run is; each phase follows the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) enum Phase {
    #[default]
    Connect,
    /// Senders send.
    Send,
    /// Clients drop their connections.
    Down,
    /// Clients reconnect.
    Up,
    /// Senders stop sending.
    Quiet,
    Stop,
}

/// What the run tells every task.
#[derive(Debug, Clone, Default)]
pub(super) struct Control {
    pub(super) phase: Phase,
    /// [`Clock`] time of the first send.
    pub(super) send_from: u64,
    /// [`Clock`] time the reconnect began.
    pub(super) reconnect_at: u64,
    /// The highest seq of every conversation acknowledged when the reconnect began (indexed by
    /// [`Shared::conv`]): holding these is having recovered.
    pub(super) missed: Option<Arc<[u32]>>,
    /// The same once sending stopped and every ack came back: holding these is being complete.
    pub(super) last: Option<Arc<[u32]>>,
}

/// A connection's place: the node and the source address.
pub(super) type Place = (Target, Option<IpAddr>);

/// What every task shares. Counters are totals, for progress and for knowing when to move on.
pub(super) struct Shared {
    pub(super) clock: Clock,
    /// The clients' logins (first and reconnects); its connector sets the senders up and counts
    /// every first connection as ready or failed.
    pub(super) logins: Logins,
    pub(super) clients: u32,
    pub(super) senders: u32,
    /// Between two messages of one sender, and between the first messages of consecutive senders.
    period_nanos: f64,
    slot_nanos: f64,
    /// The highest acknowledged seq of every conversation.
    pub(super) acked_high: Vec<AtomicU32>,
    pub(super) sent: AtomicU64,
    /// Senders that saw the quiet phase: none sends after that, so `sent` is final.
    pub(super) quiet_senders: AtomicU32,
    pub(super) acked: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) reconnected: AtomicU64,
    pub(super) gave_up: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) recovered: AtomicU64,
    pub(super) complete: AtomicU64,
    pub(super) synced_latency: Histogram,
    pub(super) recovery_latency: Histogram,
    /// TCP connect to `synced` of the resumes, without the wait for a handshake slot.
    pub(super) resume_handshake: Histogram,
    pub(super) reconnect_failures: Reasons,
    pub(super) errors: Reasons,
    pub(super) drops: Reasons,
}

impl Shared {
    pub(super) fn new(args: &StormArgs, prefix: String) -> Self {
        Shared {
            clock: Clock::start(),
            logins: Logins::new(&args.load, prefix),
            clients: args.clients,
            senders: args.senders,
            period_nanos: f64::from(args.senders) / args.rate * 1e9,
            slot_nanos: 1e9 / args.rate,
            acked_high: (0..u64::from(args.clients) * u64::from(args.senders)).map(|_| AtomicU32::new(0)).collect(),
            sent: AtomicU64::new(0),
            quiet_senders: AtomicU32::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnected: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            synced_latency: Histogram::default(),
            recovery_latency: Histogram::default(),
            resume_handshake: Histogram::default(),
            reconnect_failures: Reasons::default(),
            errors: Reasons::default(),
            drops: Reasons::default(),
        }
    }

    pub(super) fn user(&self, client: u32) -> String {
        self.logins.user(client)
    }

    /// Senders are the users after the clients.
    pub(super) fn sender_user(&self, sender: u32) -> String {
        self.logins.user(self.clients + sender)
    }

    /// The index of the conversation between `client` and `sender`.
    pub(super) fn conv(&self, client: u32, sender: u32) -> usize {
        client as usize * self.senders as usize + sender as usize
    }

    /// Its id: `dm:` and the two names, sorted.
    pub(super) fn conv_id(&self, client: u32, sender: u32) -> String {
        let (a, b) = (self.user(client), self.sender_user(sender));
        if a <= b {
            format!("dm:{a}:{b}")
        } else {
            format!("dm:{b}:{a}")
        }
    }

    /// The client the `k`-th message of `sender` goes to: the senders take turns over the clients.
    pub(super) fn recipient(&self, sender: u32, k: u64) -> u32 {
        ((u64::from(sender) + k * u64::from(self.senders)) % u64::from(self.clients)) as u32
    }

    /// When the `k`-th message of `sender` is due.
    pub(super) fn due(&self, send_from: u64, sender: u32, k: u64) -> u64 {
        send_from + (f64::from(sender) * self.slot_nanos + k as f64 * self.period_nanos) as u64
    }

    /// The highest acknowledged seq of every conversation, now.
    pub(super) fn acked_now(&self) -> Arc<[u32]> {
        self.acked_high.iter().map(|high| high.load(Ordering::Relaxed)).collect()
    }
}

/// What a client holds of its conversation with one sender.
#[derive(Debug, Default)]
pub(super) struct Conv {
    /// Every seq held, however it came.
    got: BitSet,
    /// Seqs pushed (`message` frames) on the current connection.
    pushed: BitSet,
    /// Every seq up to this one is held: the cursor to resume with.
    pub(super) contiguous: u32,
    highest: u32,
    /// The cursor the current connection logged in with: nothing at or below it may be pushed.
    pub(super) cursor: u32,
    /// A `history` request is on its way.
    pub(super) fetching: bool,
}

impl Conv {
    /// A `message` frame: whether the seq is new to the client, and whether the server doubled it.
    pub(super) fn pushed(&mut self, seq: u32) -> (bool, bool) {
        let doubled = seq <= self.cursor || !self.pushed.insert(seq);
        (self.hold(seq), doubled)
    }

    /// Records `seq` as held; `true` if it was new.
    pub(super) fn hold(&mut self, seq: u32) -> bool {
        if !self.got.insert(seq) {
            return false;
        }
        self.highest = self.highest.max(seq);
        while self.got.contains(self.contiguous + 1) {
            self.contiguous += 1;
        }
        true
    }

    /// Some seq below the highest held is missing.
    pub(super) fn has_gap(&self) -> bool {
        self.highest > self.contiguous
    }

    /// A new connection logs in: returns its cursor.
    pub(super) fn reconnecting(&mut self) -> u32 {
        self.pushed.clear();
        self.cursor = self.contiguous;
        self.fetching = false;
        self.cursor
    }

    /// The acknowledged seqs (`acked`, none above `high`) not held.
    fn lost(&self, acked: &BitSet, high: u32) -> u64 {
        (1..=high).filter(|&seq| acked.contains(seq) && !self.got.contains(seq)).count() as u64
    }
}

/// The clients' counts, summed, and the lost messages.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) lost: u64,
    pub(super) doubled: u64,
    /// The first lost and doubled messages.
    pub(super) examples: Vec<String>,
    pub(super) via_live: u64,
    pub(super) via_sync: u64,
    pub(super) via_history: u64,
    pub(super) history_pages: u64,
    pub(super) gaps: u64,
    pub(super) unexpected: u64,
}

impl Tally {
    pub(super) fn add(&mut self, shared: &Shared, client: &Client, senders: &[SenderEnd], high: &[u32]) {
        for (sender, conv) in (0u32..).zip(&client.convs) {
            let Some(acked) = senders.get(sender as usize).and_then(|end| end.acked.get(client.index as usize)) else {
                continue;
            };
            let lost = conv.lost(acked, high[shared.conv(client.index, sender)]);
            if lost > 0 && self.examples.len() < EXAMPLES {
                let conv_id = shared.conv_id(client.index, sender);
                self.examples.push(format!("{conv_id}: {lost} lost, every seq held up to {}", conv.contiguous));
            }
            self.lost += lost;
        }
        self.doubled += client.doubled;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(client.examples.iter().take(room).cloned());
        self.via_live += client.via_live;
        self.via_sync += client.via_sync;
        self.via_history += client.via_history;
        self.history_pages += client.history_pages;
        self.gaps += client.gaps;
        self.unexpected += client.unexpected;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn a_conversation_tracks_its_cursor_and_gaps() {
        let mut conv = Conv::default();
        assert_eq!(conv.pushed(1), (true, false));
        assert_eq!(conv.pushed(2), (true, false));
        assert_eq!(conv.pushed(4), (true, false));
        assert_eq!((conv.contiguous, conv.highest), (2, 4));
        assert!(conv.has_gap());
        assert!(conv.hold(3), "the gap filled from history");
        assert!(!conv.has_gap());
        assert_eq!(conv.contiguous, 4);
        assert!(!conv.hold(3), "a history page overlapping what is held is not new");
        assert_eq!(conv.pushed(4), (false, true), "pushed twice on one connection");
    }

    #[test]
    fn after_a_resume_nothing_at_or_below_the_cursor_may_come_again() {
        let mut conv = Conv::default();
        for seq in [1, 2, 3, 5] {
            conv.pushed(seq);
        }
        assert_eq!(conv.reconnecting(), 3);
        // The sync resends 4 and 5 after the cursor: 5 is not new, but the server was asked for it.
        assert_eq!(conv.pushed(4), (true, false));
        assert_eq!(conv.pushed(5), (false, false));
        assert_eq!(conv.pushed(3), (false, true), "at or below the cursor");
        assert_eq!(conv.pushed(6), (true, false));
        assert_eq!(conv.pushed(6), (false, true));
    }

    #[test]
    fn lost_messages_are_the_acked_ones_not_held() {
        let mut conv = Conv::default();
        let mut acked = BitSet::default();
        for seq in 1..=6 {
            acked.insert(seq);
        }
        for seq in [1, 2, 4, 6, 7] {
            conv.hold(seq);
        }
        // 3 and 5 are missing; 7 was stored but never acknowledged.
        assert_eq!(conv.lost(&acked, 6), 2);
        assert_eq!(conv.lost(&acked, 2), 0);
        assert_eq!(Conv::default().lost(&BitSet::default(), 0), 0);
    }

    pub(crate) fn shared(clients: u32, senders: u32, rate: f64) -> Shared {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: StormArgs,
        }
        let (clients, senders, rate) = (clients.to_string(), senders.to_string(), rate.to_string());
        let argv = ["storm", "--jwt-secret", "s", "--clients", &clients, "--senders", &senders, "--rate", &rate];
        let Cli { args } = clap::Parser::parse_from(argv);
        Shared::new(&args, "storm".into())
    }

    #[test]
    fn senders_take_turns_over_the_clients_on_an_even_schedule() {
        let shared = shared(5, 2, 100.0);
        let first: Vec<u32> = (0..5).map(|k| shared.recipient(0, k)).collect();
        assert_eq!(first, [0, 2, 4, 1, 3]);
        assert_eq!(shared.recipient(1, 0), 1);
        assert_eq!(shared.due(1_000, 0, 0), 1_000);
        assert_eq!(shared.due(1_000, 1, 0), 10_001_000);
        assert_eq!(shared.due(1_000, 0, 3), 60_001_000);
        assert_eq!(shared.conv(3, 1), 7);
        assert_eq!(shared.conv_id(1, 0), "dm:storm-000001:storm-000005");
    }
}
