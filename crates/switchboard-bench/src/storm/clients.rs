//! The clients: what each holds across its connections, how it pages a sync and fills a gap with
//! `history`, and its task (log in, drop with everyone, reconnect with `resume`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::login::connect_with;
use super::shared::{Control, Conv, Phase, Place, Shared};
use super::EXAMPLES;
use crate::client::frame::{self, Probe};
use crate::client::{text_frame, Failure, WsStream};
use crate::report::Histogram;

/// Messages per `history` page when filling a gap or paging a sync with `more`.
const HISTORY_PAGE: u32 = 200;
/// Backoff between reconnect attempts: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// One client: what it holds, across its connections.
pub(super) struct Client {
    pub(super) index: u32,
    /// By sender.
    pub(super) convs: Vec<Conv>,
    token: String,
    /// The last control seen.
    control: Control,
    /// The current connection has had its `synced`.
    synced: bool,
    /// Senders whose conversation's sync entry had `more`.
    more: Vec<u32>,
    /// Requests to send on the current connection.
    outbox: Vec<String>,
    /// [`Clock`](crate::client::Clock) time of the first `synced` after the reconnect.
    reconnected_at: Option<u64>,
    recovered: bool,
    complete: bool,
    pub(super) doubled: u64,
    /// What the first doubled messages were.
    pub(super) examples: Vec<String>,
    pub(super) unexpected: u64,
    pub(super) via_live: u64,
    pub(super) via_sync: u64,
    pub(super) via_history: u64,
    pub(super) history_pages: u64,
    pub(super) gaps: u64,
}

impl Client {
    fn new(shared: &Shared, index: u32) -> Self {
        Client {
            index,
            convs: (0..shared.senders).map(|_| Conv::default()).collect(),
            token: String::new(),
            control: Control::default(),
            synced: false,
            more: Vec::new(),
            outbox: Vec::new(),
            reconnected_at: None,
            recovered: false,
            complete: false,
            doubled: 0,
            examples: Vec::new(),
            unexpected: 0,
            via_live: 0,
            via_sync: 0,
            via_history: 0,
            history_pages: 0,
            gaps: 0,
        }
    }

    /// Connects and logs in with `request`; a resume's sync brings the missed messages in.
    async fn connect(
        &mut self,
        shared: &Shared,
        (target, source): &Place,
        request: String,
        handshake: &Histogram,
    ) -> Result<WsStream, Failure> {
        self.synced = false;
        self.more.clear();
        self.outbox.clear();
        let login = shared.logins.with(request, handshake);
        let (ws, token) = connect_with(target, *source, login, |text| self.on_frame(shared, text)).await?;
        self.token = token;
        Ok(ws)
    }

    /// `resume` with the session token and a cursor for every conversation with messages.
    fn resume_request(&mut self, shared: &Shared) -> String {
        let mut cursors = serde_json::Map::new();
        for (sender, conv) in (0u32..).zip(&mut self.convs) {
            let cursor = conv.reconnecting();
            if cursor > 0 {
                cursors.insert(shared.conv_id(self.index, sender), cursor.into());
            }
        }
        serde_json::json!({"type": "resume", "token": self.token, "presence": false, "cursors": cursors}).to_string()
    }

    /// Reconnects with `resume`, retrying with backoff until `--timeout-secs` after the reconnect
    /// began (or this attempt, for a connection lost later). `None`: gave up.
    async fn reconnect(
        &mut self,
        shared: &Shared,
        place: &Place,
        control: &watch::Receiver<Control>,
    ) -> Option<WsStream> {
        let clock = shared.clock;
        let began = if self.reconnected_at.is_none() { self.control.reconnect_at } else { clock.nanos() };
        let deadline = began + shared.logins.timeout.as_nanos() as u64;
        let mut backoff = RETRY_FIRST;
        loop {
            let request = self.resume_request(shared);
            match self.connect(shared, place, request, &shared.resume_handshake).await {
                Ok(ws) => {
                    if self.reconnected_at.is_none() {
                        let now = clock.nanos();
                        self.reconnected_at = Some(now);
                        shared.synced_latency.record_nanos(self.control.reconnect_at, now);
                        shared.reconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(ws);
                }
                Err(failure) => {
                    shared.reconnect_failures.add(failure.to_string());
                    let stopping = control.borrow().phase >= Phase::Stop;
                    if stopping || clock.nanos() + backoff.as_nanos() as u64 >= deadline {
                        shared.gave_up.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads frames until the control changes (`Ok`) or the connection is lost (`Err`, why).
    async fn serve(
        &mut self,
        shared: &Shared,
        ws: &mut WsStream,
        control: &mut watch::Receiver<Control>,
    ) -> Result<(), String> {
        loop {
            self.flush(ws).await?;
            self.check_targets(shared);
            tokio::select! {
                frame = ws.next() => if let Some(text) = text_frame(frame)? {
                    self.on_frame(shared, &text);
                },
                _ = control.changed() => return Ok(()),
            }
        }
    }

    async fn flush(&mut self, ws: &mut WsStream) -> Result<(), String> {
        for request in std::mem::take(&mut self.outbox) {
            ws.send(Message::text(request)).await.map_err(|error| format!("write error: {error}"))?;
        }
        Ok(())
    }

    fn on_frame(&mut self, shared: &Shared, text: &str) {
        match frame::kind(text) {
            Some("message") => self.on_message(shared, text),
            Some("sync") if text.contains("\"more\":true") => self.more = self.senders_with_more(shared, text),
            Some("synced") => {
                self.synced = true;
                for sender in std::mem::take(&mut self.more) {
                    self.fetch(shared, sender);
                }
                for sender in 0..shared.senders {
                    if self.convs[sender as usize].has_gap() {
                        self.gaps += 1;
                        self.fetch(shared, sender);
                    }
                }
            }
            Some("history") => self.on_history(shared, text),
            Some("error") if self.synced => {
                shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown"))
            }
            _ => {}
        }
    }

    fn on_message(&mut self, shared: &Shared, text: &str) {
        let seq = frame::u64_field(text, "\"seq\":").and_then(|seq| u32::try_from(seq).ok());
        let sender = Probe::in_message(text).map(|probe| probe.id).filter(|&sender| sender < shared.senders);
        let (Some(seq), Some(sender)) = (seq, sender) else {
            self.unexpected += 1;
            return;
        };
        let conv = &mut self.convs[sender as usize];
        let (new, doubled) = conv.pushed(seq);
        let gap = self.synced && conv.has_gap() && !conv.fetching;
        if doubled && self.examples.len() < EXAMPLES {
            let again = if seq <= conv.cursor { "at or below the resume cursor" } else { "again on one connection" };
            let how = if self.synced { "live" } else { "in the sync" };
            self.examples.push(format!("{} seq {seq} {again} ({how})", shared.conv_id(self.index, sender)));
        }
        self.doubled += u64::from(doubled);
        if new {
            shared.received.fetch_add(1, Ordering::Relaxed);
            *if self.synced { &mut self.via_live } else { &mut self.via_sync } += 1;
        }
        if gap {
            self.gaps += 1;
            self.fetch(shared, sender);
        }
    }

    /// Asks for the messages after the conversation's cursor.
    fn fetch(&mut self, shared: &Shared, sender: u32) {
        let conv = &mut self.convs[sender as usize];
        conv.fetching = true;
        self.history_pages += 1;
        self.outbox.push(format!(
            r#"{{"type":"history","ref":{sender},"to":"{}","after":{},"limit":{HISTORY_PAGE}}}"#,
            shared.sender_user(sender),
            conv.contiguous
        ));
    }

    /// A `history` page (its `ref` is the sender): holds its messages, asks for the next page
    /// while there is one or a gap is left.
    fn on_history(&mut self, shared: &Shared, text: &str) {
        let Ok(page) = serde_json::from_str::<serde_json::Value>(text) else { return };
        let Some(sender) = page["ref"].as_u64().and_then(|sender| u32::try_from(sender).ok()) else { return };
        let Some(conv) = self.convs.get_mut(sender as usize) else { return };
        conv.fetching = false;
        let mut added = 0;
        for message in page["messages"].as_array().into_iter().flatten() {
            if let Some(seq) = message["seq"].as_u64().and_then(|seq| u32::try_from(seq).ok()) {
                added += u64::from(conv.hold(seq));
            }
        }
        let again = added > 0 && (page["has_more"].as_bool() == Some(true) || conv.has_gap());
        shared.received.fetch_add(added, Ordering::Relaxed);
        self.via_history += added;
        if again {
            self.fetch(shared, sender);
        }
    }

    /// The senders of the sync entries with `more: true`.
    fn senders_with_more(&self, shared: &Shared, text: &str) -> Vec<u32> {
        let Ok(sync) = serde_json::from_str::<serde_json::Value>(text) else { return Vec::new() };
        let convs: Vec<String> = (0..shared.senders).map(|sender| shared.conv_id(self.index, sender)).collect();
        sync["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["more"].as_bool() == Some(true))
            .filter_map(|entry| convs.iter().position(|conv| entry["conv"].as_str() == Some(conv.as_str())))
            .map(|sender| sender as u32)
            .collect()
    }

    /// Whether it holds every conversation up to `targets`.
    fn holds(&self, shared: &Shared, targets: &[u32]) -> bool {
        (0u32..).zip(&self.convs).all(|(sender, conv)| conv.contiguous >= targets[shared.conv(self.index, sender)])
    }

    /// Marks the client recovered, or complete, once it is (after its reconnect's `synced`).
    fn check_targets(&mut self, shared: &Shared) {
        if !self.synced || self.reconnected_at.is_none() {
            return;
        }
        if !self.recovered && self.control.missed.as_ref().is_some_and(|missed| self.holds(shared, missed)) {
            self.recovered = true;
            shared.recovery_latency.record_nanos(self.control.reconnect_at, shared.clock.nanos());
            shared.recovered.fetch_add(1, Ordering::Relaxed);
        }
        if !self.complete && self.control.last.as_ref().is_some_and(|last| self.holds(shared, last)) {
            self.complete = true;
            shared.complete.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One client: logs in, holds its connection until the drop, reconnects when told, then holds the
/// new one to the end (reconnecting again if it is lost).
pub(super) async fn client_task(
    shared: Arc<Shared>,
    index: u32,
    first: Place,
    again: Place,
    mut control: watch::Receiver<Control>,
) -> (Client, Option<WsStream>) {
    let mut client = Client::new(&shared, index);
    let connected = match shared.logins.jwt_login(&shared.user(index), false) {
        Ok(request) => client.connect(&shared, &first, request, &shared.logins.connector.handshake).await,
        Err(failure) => Err(failure),
    };
    let mut ws = match connected {
        Ok(ws) => {
            shared.logins.connector.ready();
            Some(ws)
        }
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return (client, None);
        }
    };
    let mut dropped = false;
    loop {
        if control.has_changed().is_err() {
            return (client, ws);
        }
        client.control = control.borrow_and_update().clone();
        let phase = client.control.phase;
        if phase >= Phase::Stop {
            return (client, ws);
        }
        match ws.take() {
            Some(connection) if phase >= Phase::Down && !dropped => {
                // Abruptly: no close frame, and a reset instead of a FIN.
                let _ = connection.get_ref().set_zero_linger();
                drop(connection);
                dropped = true;
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(mut connection) => match client.serve(&shared, &mut connection, &mut control).await {
                Ok(()) => ws = Some(connection),
                Err(reason) => {
                    shared.drops.add(reason);
                    dropped = true;
                }
            },
            None if phase < Phase::Up => {
                if control.changed().await.is_err() {
                    return (client, None);
                }
            }
            None => match client.reconnect(&shared, &again, &control).await {
                Some(connection) => ws = Some(connection),
                None => return (client, None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::BitSet;
    use crate::storm::sender::SenderEnd;
    use crate::storm::shared::tests::shared;
    use crate::storm::shared::Tally;

    #[test]
    fn a_client_counts_what_it_lost_and_what_came_twice() {
        let shared = shared(2, 2, 100.0);
        let mut client = Client::new(&shared, 1);
        client.synced = true;
        let message = |sender: u32, seq: u32| {
            let probe = Probe { id: sender, seq: 0, sent_nanos: 1 }.text();
            format!(
                r#"{{"type":"message","conv":"c","id":"x","seq":{seq},"from":"a","to":"b","text":"{probe}","ts":1}}"#
            )
        };
        client.on_frame(&shared, &message(0, 1));
        client.on_frame(&shared, &message(0, 1));
        client.on_frame(&shared, &message(1, 2));
        assert_eq!((client.doubled, client.via_live, client.gaps), (1, 2, 1));
        assert!(client.convs[1].fetching);
        assert!(client.outbox[0].contains(r#""after":0"#) && client.outbox[0].contains("storm-000003"));
        client.on_frame(
            &shared,
            r#"{"type":"history","ref":1,"conv":"c","messages":[{"seq":1},{"seq":2}],"has_more":false}"#,
        );
        assert_eq!((client.via_history, client.convs[1].contiguous, client.outbox.len()), (1, 2, 1));
        let mut acked = vec![BitSet::default(), BitSet::default()];
        for seq in 1..=3 {
            acked[1].insert(seq);
        }
        let ends = [SenderEnd::default(), SenderEnd { acked, ws: None }];
        let mut tally = Tally::default();
        tally.add(&shared, &client, &ends, &[0, 0, 0, 3]);
        assert_eq!((tally.lost, tally.doubled, tally.via_history), (1, 1, 1));
        let sync = r#"{"type":"sync","conversations":[{"conv":"dm:storm-000001:storm-000003","more":true},{"conv":"dm:storm-000001:storm-000002","more":false}]}"#;
        assert_eq!(client.senders_with_more(&shared, sync), [1]);
    }
}
