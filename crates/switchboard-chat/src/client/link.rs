//! The connection: sending frames and requests, losing the connection, reconnecting with backoff
//! and resuming (resending what was not acknowledged).

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{seconds, Client, Pending, BACKOFF_MAX, BACKOFF_START, STABLE};
use crate::connection::{connect_and_login, Connected, LoginError, LOGIN_REF};
use crate::display::{clean, str_of};

impl Client {
    /// The connection is gone: drop what was waiting on it and schedule a reconnect.
    pub(super) fn lost(&mut self, code: u16, reason: &str) {
        self.ws = None;
        self.synced = false;
        self.more.clear();
        self.filling.clear();
        self.online_list = None;
        let mut lost: Vec<&str> = self.pending.values().filter_map(Pending::command).collect();
        lost.sort_unstable();
        lost.dedup();
        self.pending.clear();
        for outgoing in self.outbox.values_mut() {
            outgoing.sent = false;
            outgoing.queued = true;
        }
        if self.logging_out {
            self.notice("logged out");
            self.exit = Some(Ok(()));
            return;
        }
        if self.logout_sent {
            self.exit = Some(Err(anyhow::anyhow!("the connection dropped before the logout was confirmed")));
            return;
        }
        if self.quit_by.is_some() {
            self.exit = Some(Ok(()));
            return;
        }
        if self.connected_at.elapsed() >= STABLE {
            self.backoff = BACKOFF_START;
        }
        let delay = self.schedule_retry(Duration::ZERO);
        let reason = if reason.is_empty() { String::new() } else { format!(" {}", clean(reason)) };
        self.notice(&format!("connection lost ({code}{reason}); reconnecting in {}", seconds(delay)));
        if !lost.is_empty() {
            self.print(self.style.dim(&format!("(no answer to {}: try again once reconnected)", lost.join(", "))));
        }
    }

    /// Sets the next reconnect attempt after the backoff (at least `at_least`); returns the delay.
    pub(super) fn schedule_retry(&mut self, at_least: Duration) -> Duration {
        let jitter = rand::random::<f64>() * 0.4 + 0.8;
        let delay = self.backoff.mul_f64(jitter).max(at_least);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    pub(super) fn reconnect(&mut self) {
        self.retry_at = None;
        let frame = json!({"type": "resume", "ref": LOGIN_REF, "token": self.token, "presence": true,
                           "cursors": self.cursors.snapshot()});
        let url = self.url.clone();
        self.connecting = Some(tokio::spawn(async move { connect_and_login(&url, frame).await }));
    }

    pub(super) async fn connected(&mut self, result: Result<Connected, LoginError>) {
        match result {
            Ok(connected) => {
                self.node = str_of(&connected.session, "node").to_owned();
                self.ws = Some(connected.ws);
                self.connected_at = Instant::now();
                self.last_heard = Instant::now();
                self.pinged = false;
                self.notice(&format!("reconnected to node {} ({}), session resumed", self.node, self.url));
                let resend: Vec<Value> = self.outbox.values().map(|outgoing| outgoing.frame.clone()).collect();
                for frame in resend {
                    if !self.send(&frame).await {
                        return;
                    }
                }
                for outgoing in self.outbox.values_mut() {
                    outgoing.sent = true;
                }
            }
            Err(LoginError::Refused { code, message, .. }) if code == "invalid_token" => {
                if let Some(store) = &self.store {
                    store.forget_token(&self.me);
                }
                self.exit = Some(Err(anyhow::anyhow!(
                    "the session is no longer valid: {message} ({code}); run switchboard chat again to log in"
                )));
            }
            Err(LoginError::Refused { code, message, retry_after_ms }) => {
                let delay = self.schedule_retry(Duration::from_millis(retry_after_ms.unwrap_or(0)));
                self.print(self.style.error(&code, &message));
                self.notice(&format!("retrying in {}", seconds(delay)));
            }
            Err(LoginError::Failed(error)) => {
                let delay = self.schedule_retry(Duration::ZERO);
                let error = clean(&error.root_cause().to_string());
                self.notice(&format!("reconnect failed: {error}; retrying in {}", seconds(delay)));
            }
        }
    }

    /// Sends a frame on the current connection; false (and the connection counted lost) if that fails.
    pub(super) async fn send(&mut self, frame: &Value) -> bool {
        let Some(ws) = self.ws.as_mut() else { return false };
        match ws.send(Message::Text(frame.to_string())).await {
            Ok(()) => true,
            Err(error) => {
                self.lost(1006, &error.to_string());
                false
            }
        }
    }

    /// Sends a request with a fresh `ref`, remembering what to do with the answer.
    pub(super) async fn request(&mut self, mut frame: Value, pending: Pending) {
        if self.ws.is_none() {
            self.notice("not connected (reconnecting): try again in a moment");
            return;
        }
        let reference = self.next_ref();
        frame["ref"] = reference.into();
        self.pending.insert(reference, pending);
        self.send(&frame).await;
    }

    pub(super) fn next_ref(&mut self) -> u64 {
        let reference = self.next_ref;
        self.next_ref += 1;
        reference
    }
}
