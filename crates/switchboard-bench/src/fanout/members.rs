//! A member's task: connecting, logging in and joining the room, then receiving (and for a
//! sender, sending) on the steps' schedule.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::seq_window::{Seen, SeqWindow};
use super::{life, Control, Member, Shared};
use crate::client::frame::{self, Probe};
use crate::client::{text_frame, Failure, Stage, Target, WsStream};

/// After the joins, the `member_joined` events have drained once none came for this long.
const JOIN_QUIET: Duration = Duration::from_secs(1);

/// Every join sends `member_joined` to every member in the room, the joiner included:
/// `members × (members + 1) / 2` events in all. Waits until they have arrived, or none came for
/// [`JOIN_QUIET`] (in a cluster, a join racing another on a different node may not reach it), or
/// `limit`.
pub(super) async fn drain_join_events(shared: &Shared, members: u64, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let expected = members * (members + 1) / 2;
    let (mut last, mut last_change) = (u64::MAX, started);
    loop {
        let events = shared.join_events.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        if events != last {
            (last, last_change) = (events, now);
        }
        if events >= expected || now - last_change >= JOIN_QUIET || now - started >= limit {
            if events < expected {
                eprintln!("note: {events} of {expected} member_joined events arrived");
            }
            return now - started;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects, logs in and joins the room (holding a handshake slot until joined).
pub(super) async fn join(
    shared: &Shared,
    target: &Target,
    source: Option<IpAddr>,
    user: &str,
) -> Result<WsStream, Failure> {
    let (mut ws, _permit) = shared.connector.connect(target, source, user).await?;
    let join = async {
        let request = format!(r#"{{"type":"join","room":"{}","ref":"join"}}"#, shared.room);
        ws.send(Message::text(request)).await.map_err(|error| Failure::new(Stage::Login, format!("join: {error}")))?;
        loop {
            let text = match text_frame(ws.next().await) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(reason) => return Err(Failure::new(Stage::Login, format!("join: {reason}"))),
            };
            match frame::kind(&text) {
                Some("room") => return Ok(()),
                Some("member_joined") => {
                    shared.join_events.fetch_add(1, Ordering::Relaxed);
                }
                Some("error") => {
                    let code = frame::str_field(&text, "\"code\":\"").unwrap_or("?");
                    return Err(Failure::new(Stage::Login, format!("join: server error {code}")));
                }
                _ => {}
            }
        }
    };
    let timeout = shared.connector.timeout();
    tokio::time::timeout(timeout, join).await.unwrap_or_else(|_| Err(Failure::timeout(timeout)))?;
    Ok(ws)
}

/// Tries of a login and join answered with a retryable error, and the wait before the next one
/// (times the attempt's number).
const JOIN_ATTEMPTS: u32 = 5;
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// One member: joins, then receives (and records) the room's messages; the first `senders`
/// members also send on their schedule.
pub(super) async fn member(
    shared: Arc<Shared>,
    index: u32,
    mut node: usize,
    source: Option<IpAddr>,
    mut control: watch::Receiver<Control>,
) -> Member {
    let user = format!("{}-{index:06}", shared.prefix);
    let mut attempt = 0;
    let mut ws = loop {
        match join(&shared, &shared.targets[node], source, &user).await {
            Ok(ws) => break ws,
            // What a client does with a busy store or node: try again a little later.
            Err(failure) if failure.is_retryable() && attempt < JOIN_ATTEMPTS => {
                attempt += 1;
                shared.join_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_BACKOFF * attempt).await;
            }
            Err(failure) => {
                shared.connector.failed(&failure);
                return Member::default();
            }
        }
    };
    shared.connector.ready();
    let clock = shared.clock;
    let sending = index < shared.senders;
    let mut start: Option<u64> = None;
    // The next send: its step, its number within the step, its time.
    let mut next: Option<(usize, u64, u64)> = None;
    // Send time of each message sent, by its ref.
    let mut sent_at: Vec<u64> = Vec::new();
    // The room seqs received lately, to tell duplicates and reordering.
    let mut seen = SeqWindow::default();
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut life = life::MemberLife::new();
    let churns = shared.life.churns(index, shared.senders);
    let churn = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(churn);
    let mut churn_pending = false;
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => {
                    let Some(start) = start else {
                        if frame::kind(&text) == Some("member_joined") {
                            shared.join_events.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    };
                    match frame::kind(&text) {
                        Some("room") => life.room_answer(&shared),
                        Some("room_size") => {
                            shared.size_events.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            if on_frame(&shared, start, &text, &sent_at, &mut seen) {
                                life.received();
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    // A new connection starts a new stream of seqs.
                    seen = SeqWindow::default();
                    match life.reconnect(&shared, &mut node, source, &user).await {
                        Some(again) => ws = again,
                        None => return Member::default(),
                    }
                }
            },
            () = &mut churn, if churn_pending => {
                churn_pending = false;
                for request in life.rejoin_requests(&shared) {
                    if let Err(error) = ws.send(Message::text(request)).await {
                        shared.drops.add(format!("write error: {error}"));
                        return Member::default();
                    }
                }
            }
            () = &mut sleep, if next.is_some() => {
                let (Some(start), Some((step, n, _))) = (start, next) else { continue };
                let seq = sent_at.len() as u32;
                let sent_nanos = clock.nanos();
                let text = Probe { id: index, seq, sent_nanos }.text();
                let request = format!(r#"{{"type":"send","room":"{}","text":"{text}","ref":{seq}}}"#, shared.room);
                if let Err(error) = ws.send(Message::text(request)).await {
                    shared.drops.add(format!("write error: {error}"));
                    return Member::default();
                }
                sent_at.push(sent_nanos);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                if let Some((step, true)) = shared.steps.locate(start, sent_nanos) {
                    shared.tallies[step].sent.fetch_add(1, Ordering::Relaxed);
                }
                next = shared.steps.next_send(start, index, shared.senders, step, n + 1);
                if let Some((_, _, at)) = next {
                    sleep.as_mut().reset(clock.instant(at));
                }
            }
            changed = control.changed() => {
                let now = *control.borrow_and_update();
                match now {
                    _ if changed.is_err() => break,
                    Control::Stop => break,
                    Control::Run(run) if start.is_none() => {
                        start = Some(run);
                        if churns {
                            churn_pending = true;
                            churn.as_mut().reset(clock.instant(run + shared.life.churn_at_secs * 1_000_000_000));
                        }
                        if sending {
                            next = shared.steps.next_send(run, index, shared.senders, 0, 0);
                            if let Some((_, _, at)) = next {
                                sleep.as_mut().reset(clock.instant(at));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    life.finish(&shared);
    Member { ws: Some(ws) }
}

/// Records a frame received during the steps; returns true for a new delivery of a message.
fn on_frame(shared: &Shared, start: u64, text: &str, sent_at: &[u64], seen: &mut SeqWindow) -> bool {
    match frame::kind(text) {
        Some("message") => {
            let now = shared.clock.nanos();
            let Some(probe) = Probe::in_message(text) else { return false };
            let seen = seen.insert(frame::u64_field(text, "\"seq\":").unwrap_or(0));
            let duplicate = seen == Seen::Duplicate;
            if !duplicate {
                shared.received.fetch_add(1, Ordering::Relaxed);
                if let Some((step, true)) = shared.steps.locate(start, now) {
                    shared.tallies[step].arrived.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some((step, true)) = shared.steps.locate(start, probe.sent_nanos) {
                let tally = &shared.tallies[step];
                if duplicate {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.received.fetch_add(1, Ordering::Relaxed);
                    tally.latency.record_nanos(probe.sent_nanos, now);
                    if seen == Seen::Late {
                        tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            !duplicate
        }
        Some("ack") => {
            let now = shared.clock.nanos();
            let Some(&at) = frame::u64_field(text, "\"ref\":").and_then(|seq| sent_at.get(seq as usize)) else {
                return false;
            };
            shared.acked.fetch_add(1, Ordering::Relaxed);
            if let Some((step, true)) = shared.steps.locate(start, at) {
                shared.tallies[step].acked.fetch_add(1, Ordering::Relaxed);
                shared.tallies[step].ack_latency.record_nanos(at, now);
            }
            false
        }
        Some("error") => {
            shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown"));
            false
        }
        _ => false,
    }
}
