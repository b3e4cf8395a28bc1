//! The admin page's counters over time and its recent errors.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchboard_core::ChatNode;

/// How often the node's counters are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: one minute.
const SAMPLES: usize = 13;
/// Warnings and errors kept.
const RECENT_ERRORS: usize = 50;
/// Longest message kept per error.
const ERROR_CHARS: usize = 400;

/// One reading of the node's counters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    messages_stored: u64,
    frames_in: u64,
    frames_out: u64,
    deliveries: u64,
}

impl Sample {
    fn take(node: &ChatNode) -> Sample {
        let metrics = node.metrics();
        Sample {
            at: Instant::now(),
            messages_stored: metrics.messages_stored.load(Ordering::Relaxed),
            frames_in: metrics.frames_in.load(Ordering::Relaxed),
            frames_out: metrics.frames_out.load(Ordering::Relaxed),
            deliveries: metrics.deliveries.load(Ordering::Relaxed),
        }
    }
}

/// Per-second rates between two samples: messages stored, frames in, frames out, deliveries.
pub type Rates = [f64; 4];

/// The last minute of samples.
#[derive(Default)]
pub struct CounterHistory {
    samples: Mutex<VecDeque<Sample>>,
}

impl CounterHistory {
    pub fn record(&self, node: &ChatNode) {
        let mut samples = self.samples.lock();
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample::take(node));
    }

    /// Rates now against the newest sample and against the oldest (about a minute ago).
    pub fn rates(&self, node: &ChatNode) -> (Option<Rates>, Option<Rates>) {
        let now = Sample::take(node);
        let samples = self.samples.lock();
        let rate = |then: &Sample| -> Rates {
            let seconds = now.at.duration_since(then.at).as_secs_f64().max(0.001);
            let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
            [
                per_second(now.messages_stored, then.messages_stored),
                per_second(now.frames_in, then.frames_in),
                per_second(now.frames_out, then.frames_out),
                per_second(now.deliveries, then.deliveries),
            ]
        };
        (samples.back().map(rate), samples.front().map(rate))
    }
}

/// Samples the counters until the node's server stops.
pub async fn sample(
    node: ChatNode,
    history: std::sync::Arc<CounterHistory>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => history.record(&node),
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// A warning or error from the log.
#[derive(Debug, Clone)]
pub struct LoggedError {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub level: &'static str,
    pub target: String,
    pub message: String,
}

static RECENT: Mutex<VecDeque<LoggedError>> = Mutex::new(VecDeque::new());

/// The last warnings and errors, newest first.
pub fn recent_errors() -> Vec<LoggedError> {
    RECENT.lock().iter().rev().cloned().collect()
}

/// A `tracing` layer that keeps the last [`RECENT_ERRORS`] warnings and errors for the admin
/// page. The binary adds it to its subscriber; log lines never carry secrets, nor does this.
pub struct RecentErrorsLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RecentErrorsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: tracing_subscriber::layer::Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let mut visitor = MessageText(String::new());
        event.record(&mut visitor);
        let mut message = visitor.0;
        if message.len() > ERROR_CHARS {
            let cut = (0..=ERROR_CHARS).rev().find(|index| message.is_char_boundary(*index)).unwrap_or(0);
            message.truncate(cut);
        }
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let entry = LoggedError {
            at,
            level: if level == tracing::Level::ERROR { "error" } else { "warn" },
            target: event.metadata().target().to_owned(),
            message,
        };
        let mut recent = RECENT.lock();
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(entry);
    }
}

/// The message and the fields of an event, as `message key=value ...`.
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }
}
