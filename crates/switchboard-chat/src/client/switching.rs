//! Where plain lines go: the current conversation, which the prompt names. It changes only by a
//! command (`/chat`, `/msg`, `/say`, `/reply`, `/join`, `/leave`), and only once the server has
//! accepted it: a send or a switch to a user who does not exist leaves it where it was. Incoming
//! messages never move it; a private message from someone else says how to answer (`/reply`).

use serde_json::json;

use super::{Client, Outgoing, Pending};
use crate::commands::Target;
use crate::display::clean;
use crate::terminal::Settle;

/// The private senders `/reply @user` remembers.
const SENDERS: usize = 64;

/// A send that also makes its target current: once acknowledged, or at once while offline (then
/// undone if the server refuses it later).
#[derive(Debug)]
pub(super) struct Switching {
    /// Which switch request this is: a later one wins.
    generation: u64,
    /// The current conversation before, when switched at once.
    undo: Option<Option<Target>>,
    _settle: Option<Settle>,
}

impl Client {
    pub(super) fn current(&self) -> Option<Target> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(super) fn set_current(&self, target: Option<Target>) {
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
    }

    /// A new switch request: earlier ones still waiting for the server no longer apply.
    pub(super) fn next_switch(&mut self) -> u64 {
        self.switches += 1;
        self.switches
    }

    pub(super) async fn send_message(&mut self, target: Target, text: String, settle: Settle) {
        let reference = self.next_ref();
        let key = format!("{:032x}", rand::random::<u128>());
        let mut frame = json!({"type": "send", "ref": reference, "text": text, "key": key});
        target.apply(&mut frame);
        let connected = self.ws.is_some();
        let switch = (self.current().as_ref() != Some(&target)).then(|| {
            let generation = self.next_switch();
            if connected {
                Switching { generation, undo: None, _settle: Some(settle) }
            } else {
                let before = self.current();
                self.set_current(Some(target.clone()));
                Switching { generation, undo: Some(before), _settle: None }
            }
        });
        let outgoing = Outgoing {
            frame: frame.clone(),
            target,
            sent: connected,
            queued: !connected,
            retries: 0,
            retry_at: None,
            switch,
        };
        self.outbox.insert(reference, outgoing);
        if connected {
            self.send(&frame).await;
        } else {
            self.notice("not connected: the message goes out once reconnected");
        }
    }

    /// The send was acknowledged: its target becomes current if it was to (and nothing newer asked).
    pub(super) fn sent(&mut self, outgoing: &Outgoing) {
        if let Some(switch) = &outgoing.switch {
            if switch.undo.is_none() && switch.generation == self.switches {
                self.set_current(Some(outgoing.target.clone()));
            }
        }
    }

    /// The send was refused for good: a switch made while offline is undone.
    pub(super) fn not_sent(&mut self, outgoing: &Outgoing) {
        let Some(Switching { generation, undo: Some(before), .. }) = &outgoing.switch else { return };
        if *generation == self.switches && self.current().as_ref() == Some(&outgoing.target) {
            self.set_current(before.clone());
            let back = before.as_ref().map_or("no conversation".to_owned(), |target| target.to_string());
            self.notice(&format!("lines without a command go to {back} again"));
        }
    }

    /// `/chat bob`: the server says whether bob exists (a room: whether you are in it) by answering
    /// a one-message `history`; the prompt changes only then.
    pub(super) async fn switch_to(&mut self, target: Target, settle: Settle) {
        let generation = self.next_switch();
        if self.current().as_ref() == Some(&target) {
            self.talking_to(&target);
        } else if self.ws.is_none() {
            self.set_current(Some(target.clone()));
            self.talking_to(&target);
        } else {
            let mut frame = json!({"type": "history", "limit": 1});
            target.apply(&mut frame);
            self.request(frame, Pending::Switch(target, generation, settle)).await;
        }
    }

    /// The server accepted a switch.
    pub(super) fn switched(&mut self, target: Target, generation: u64) {
        if generation == self.switches {
            self.set_current(Some(target.clone()));
            self.talking_to(&target);
        }
    }

    fn talking_to(&self, target: &Target) {
        self.print(self.style.dim(&format!("now talking to {target}: lines without a command go there")));
    }

    /// `/reply [@user] [text]`.
    pub(super) async fn reply(&mut self, from: Option<String>, text: String, settle: Settle) {
        let user = match from {
            Some(user) if self.senders.contains(&user) => user,
            Some(user) => {
                self.print(format!("no private message from {} to answer", clean(&user)));
                return;
            }
            None => match self.senders.first() {
                Some(user) => user.clone(),
                None => {
                    self.print("no private message to answer yet");
                    return;
                }
            },
        };
        let target = Target::User(user);
        if text.trim().is_empty() {
            self.switch_to(target, settle).await;
        } else {
            self.send_message(target, text, settle).await;
        }
    }

    /// A private message from someone else arrived: remember who, for `/reply`, and say how to
    /// answer when plain lines go elsewhere (once per sender in a row).
    pub(super) fn private_from(&mut self, from: &str, live: bool) {
        self.senders.retain(|sender| sender != from);
        self.senders.insert(0, from.to_owned());
        self.senders.truncate(SENDERS);
        let current = self.current();
        if !live || current == Some(Target::User(from.to_owned())) || self.hinted.as_deref() == Some(from) {
            return;
        }
        self.hinted = Some(from.to_owned());
        let from = clean(from);
        let hint = match current {
            Some(target) => format!("(/reply answers {from}; lines without a command still go to {target})"),
            None => format!("(/reply answers {from})"),
        };
        self.print(self.style.dim(&hint));
    }
}
