//! What the client does on its timer: quits after the quit wait, pings a quiet connection and
//! gives up a dead one, resends what is due, moves read markers, saves the cursors.

use std::time::Instant;

use serde_json::json;

use super::{Client, Pending, DEAD, QUIET, SAVE_EVERY};
use crate::commands::Target;
use crate::session::Saved;

impl Client {
    pub(super) async fn tick(&mut self) {
        if self.quit_by.is_some_and(|deadline| Instant::now() >= deadline) {
            self.exit = Some(Ok(()));
            return;
        }
        if self.ws.is_some() {
            if self.last_heard.elapsed() >= DEAD {
                self.ws = None;
                self.lost(1006, "no answer from the server");
                return;
            }
            if self.last_heard.elapsed() >= QUIET && !self.pinged {
                self.pinged = true;
                self.request(json!({"type": "ping"}), Pending::Ping).await;
            }
            self.resend_due().await;
            if self.synced {
                self.flush_reads().await;
            }
        }
        if self.last_save.elapsed() >= SAVE_EVERY && self.cursors.take_dirty() {
            self.save();
        }
    }

    pub(super) async fn resend_due(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .outbox
            .iter()
            .filter(|(_, outgoing)| !outgoing.sent && outgoing.retry_at.is_some_and(|at| at <= now))
            .map(|(reference, _)| *reference)
            .collect();
        for reference in due {
            let Some(outgoing) = self.outbox.get_mut(&reference) else { continue };
            outgoing.sent = true;
            outgoing.retry_at = None;
            let frame = outgoing.frame.clone();
            if !self.send(&frame).await {
                return;
            }
        }
    }

    /// Moves the read markers up to what was shown (protocol §6 `read`), so that other devices
    /// and the next login without cursors do not see it again as unread.
    pub(super) async fn flush_reads(&mut self) {
        let changed: Vec<(String, u64)> = self
            .reads
            .iter()
            .filter(|(conv, seq)| self.reads_sent.get(*conv).is_none_or(|sent| sent < seq))
            .map(|(conv, seq)| (conv.clone(), *seq))
            .collect();
        for (conv, seq) in changed {
            let Some(target) = Target::of_conv(&conv, &self.me) else { continue };
            let mut frame = json!({"type": "read", "seq": seq});
            target.apply(&mut frame);
            self.reads_sent.insert(conv, seq);
            self.request(frame, Pending::Read).await;
        }
    }

    pub(super) fn save(&mut self) {
        self.last_save = Instant::now();
        let Some(store) = &self.store else { return };
        let saved = Saved {
            url: self.url.clone(),
            user: self.me.clone(),
            token: Some(self.token.clone()),
            expires_at: self.expires_at,
            cursors: self.cursors.snapshot(),
        };
        if let Err(error) = store.save(&saved) {
            self.print(self.style.error("", &format!("saving the session: {error:#}")));
        }
    }
}
