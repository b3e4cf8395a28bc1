//! The senders: private messages to the clients in turn on an even schedule, and which of them
//! were acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::shared::{Control, Phase, Place, Shared};
use crate::client::frame::{self, Probe};
use crate::client::{text_frame, WsStream};
use crate::report::BitSet;

/// What a sender ends with.
#[derive(Default)]
pub(super) struct SenderEnd {
    /// The acknowledged seqs of its conversation with each client.
    pub(super) acked: Vec<BitSet>,
    pub(super) ws: Option<WsStream>,
}

/// A sender: sends to the clients in turn on its schedule from `Send` to `Quiet`, and records
/// which seqs were acknowledged.
pub(super) async fn sender_task(
    shared: Arc<Shared>,
    sender: u32,
    (target, source): Place,
    mut control: watch::Receiver<Control>,
) -> SenderEnd {
    let mut ws = match shared.logins.connector.connect(&target, source, &shared.sender_user(sender)).await {
        Ok((ws, _permit)) => ws,
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return SenderEnd::default();
        }
    };
    shared.logins.connector.ready();
    let mut end = SenderEnd { acked: (0..shared.clients).map(|_| BitSet::default()).collect(), ws: None };
    // The client of each message, by its ref.
    let mut recipients: Vec<u32> = Vec::new();
    let mut send_from: Option<u64> = None;
    let mut sending = false;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => on_sender_frame(&shared, sender, &text, &recipients, &mut end.acked),
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return end;
                }
            },
            () = &mut sleep, if sending => {
                let (Some(from), k) = (send_from, recipients.len() as u64) else { continue };
                let recipient = shared.recipient(sender, k);
                let text = Probe { id: sender, seq: k as u32, sent_nanos: shared.clock.nanos() }.text();
                let request =
                    format!(r#"{{"type":"send","to":"{}","text":"{text}","ref":{k}}}"#, shared.user(recipient));
                if let Err(error) = ws.send(Message::text(request)).await {
                    shared.drops.add(format!("write error: {error}"));
                    return end;
                }
                recipients.push(recipient);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                sleep.as_mut().reset(shared.clock.instant(shared.due(from, sender, k + 1)));
            }
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = control.borrow_and_update().clone();
                match now.phase {
                    Phase::Stop => break,
                    Phase::Quiet => {
                        if sending {
                            shared.quiet_senders.fetch_add(1, Ordering::Relaxed);
                        }
                        sending = false;
                    }
                    phase if phase >= Phase::Send && send_from.is_none() => {
                        send_from = Some(now.send_from);
                        sending = true;
                        sleep.as_mut().reset(shared.clock.instant(shared.due(now.send_from, sender, 0)));
                    }
                    _ => {}
                }
            }
        }
    }
    end.ws = Some(ws);
    end
}

fn on_sender_frame(shared: &Shared, sender: u32, text: &str, recipients: &[u32], acked: &mut [BitSet]) {
    match frame::kind(text) {
        Some("ack") => {
            let recipient = frame::u64_field(text, "\"ref\":").and_then(|k| recipients.get(k as usize));
            let seq = frame::u64_field(text, "\"seq\":").and_then(|seq| u32::try_from(seq).ok());
            let (Some(&recipient), Some(seq)) = (recipient, seq) else { return };
            if acked[recipient as usize].insert(seq) {
                shared.acked_high[shared.conv(recipient, sender)].fetch_max(seq, Ordering::Relaxed);
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some("error") => shared.errors.add(frame::str_field(text, "\"code\":\"").unwrap_or("unknown")),
        _ => {}
    }
}
