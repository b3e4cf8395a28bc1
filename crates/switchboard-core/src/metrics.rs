//! The node's counters, rendered as Prometheus text by the server.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the delivery latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
pub struct ChatMetrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub deliveries: AtomicU64,
    pub messages_stored: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub store_batches: AtomicU64,
    pub store_failures: AtomicU64,
    pub queue_overflows: AtomicU64,
    pub rate_limited: AtomicU64,
    pub errors_sent: AtomicU64,
    pub auth_failures: AtomicU64,
    pub bus_sent: AtomicU64,
    pub bus_received: AtomicU64,
    /// Bus messages carrying chat traffic (messages, events, membership): what targeted routing
    /// keeps away from nodes with no interested user. Heartbeats and presence are not counted.
    pub bus_chat_received: AtomicU64,
    /// Word-count gossip for `popular`, kept out of `bus_received`.
    pub bus_gossip_received: AtomicU64,
    /// Messages read from the store to close a gap in a connection's live stream.
    pub gap_messages_filled: AtomicU64,
    /// Seqs given up on (not in the store, or the read failed): a client sees a jump.
    pub gap_seqs_skipped: AtomicU64,
    /// Joins made durable, and the store transactions that carried them.
    pub joins: AtomicU64,
    pub join_batches: AtomicU64,
    /// Joins queued for the next batch.
    pub joins_waiting: AtomicI64,
    /// Logins admitted and in progress, and the most there were at once (`logins_in_flight`).
    pub logins_in_flight: AtomicI64,
    pub logins_in_flight_max: AtomicI64,
    /// Rounds of the big rooms' counts, and the `room_size` events they sent (one per room).
    pub room_size_rounds: AtomicU64,
    pub room_size_announced: AtomicU64,
    /// `member_joined` / `member_left` events of small rooms sent from this node (one per join
    /// or leave, each to every member).
    pub member_events: AtomicU64,
    pub delivery_latency: Histogram,
    /// Shared with the node's [`crate::auth::PasswordChecks`], which runs on the blocking pool.
    pub password_checks: std::sync::Arc<crate::auth::PasswordCheckMetrics>,
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

impl ChatMetrics {
    /// Appends the chat counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        gauge(
            out,
            "switchboard_connections",
            "Logged-in WebSocket connections.",
            self.connections.load(Ordering::Relaxed),
        );
        counter(out, "switchboard_connections_total", "Connections logged in since start.", &self.connections_total);
        counter(out, "switchboard_frames_in_total", "WebSocket frames received.", &self.frames_in);
        counter(out, "switchboard_frames_out_total", "WebSocket frames written.", &self.frames_out);
        counter(out, "switchboard_bytes_out_total", "Bytes written to WebSocket connections.", &self.bytes_out);
        counter(out, "switchboard_deliveries_total", "Messages queued to recipient connections.", &self.deliveries);
        counter(out, "switchboard_messages_stored_total", "Messages made durable.", &self.messages_stored);
        counter(
            out,
            "switchboard_gap_messages_filled_total",
            "Messages read from the store to deliver a live stream in seq order.",
            &self.gap_messages_filled,
        );
        counter(
            out,
            "switchboard_gap_seqs_skipped_total",
            "Seqs a live stream stopped waiting for without finding them.",
            &self.gap_seqs_skipped,
        );
        counter(
            out,
            "switchboard_messages_duplicate_total",
            "Sends answered from an idempotency key.",
            &self.messages_duplicate,
        );
        counter(out, "switchboard_store_batches_total", "Store transactions for message batches.", &self.store_batches);
        counter(
            out,
            "switchboard_store_failures_total",
            "Message batches the store failed to write.",
            &self.store_failures,
        );
        counter(
            out,
            "switchboard_queue_overflows_total",
            "Connections cut off as slow consumers.",
            &self.queue_overflows,
        );
        counter(out, "switchboard_rate_limited_total", "Frames rejected by rate limits.", &self.rate_limited);
        counter(out, "switchboard_errors_sent_total", "Error frames sent.", &self.errors_sent);
        counter(out, "switchboard_auth_failures_total", "Failed logins.", &self.auth_failures);
        counter(
            out,
            "switchboard_bus_messages_sent_total",
            "Messages this node published on the cluster bus.",
            &self.bus_sent,
        );
        counter(
            out,
            "switchboard_bus_chat_messages_received_total",
            "Bus messages received carrying chat traffic (messages, typing, read markers, membership); not heartbeats or presence.",
            &self.bus_chat_received,
        );
        counter(
            out,
            "switchboard_bus_messages_received_total",
            "Messages this node received from the cluster bus, except the word-count gossip.",
            &self.bus_received,
        );
        counter(
            out,
            "switchboard_bus_gossip_received_total",
            "Word-count gossip (popular) received from the cluster bus.",
            &self.bus_gossip_received,
        );
        counter(out, "switchboard_joins_total", "Joins made durable.", &self.joins);
        counter(out, "switchboard_join_batches_total", "Store transactions for join batches.", &self.join_batches);
        counter(out, "switchboard_room_size_rounds_total", "Rounds of the big rooms' counts.", &self.room_size_rounds);
        counter(
            out,
            "switchboard_member_events_total",
            "member_joined / member_left events of small rooms sent from this node (each to every member).",
            &self.member_events,
        );
        counter(
            out,
            "switchboard_room_size_events_total",
            "room_size events sent to a big room's listeners on this node (one per room and round).",
            &self.room_size_announced,
        );
        gauge(
            out,
            "switchboard_joins_waiting",
            "Joins queued for the next store batch.",
            self.joins_waiting.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "switchboard_logins_in_flight",
            "Logins admitted and in progress (at most logins_in_flight; the rest wait).",
            self.logins_in_flight.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "switchboard_logins_in_flight_max",
            "The most logins in progress at once since the start.",
            self.logins_in_flight_max.load(Ordering::Relaxed),
        );
        self.password_checks.render(out);
        self.delivery_latency.render(
            "switchboard_delivery_latency_seconds",
            "From a message frame's arrival to its queueing for the recipients (store write included).",
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = ChatMetrics::default();
        metrics.delivery_latency.observe(Duration::from_micros(50));
        metrics.delivery_latency.observe(Duration::from_millis(3));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("switchboard_delivery_latency_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(out.contains("switchboard_delivery_latency_seconds_bucket{le=\"0.005\"} 2"));
        assert!(out.contains("switchboard_delivery_latency_seconds_count 2"));
    }
}
