//! The moderation and blocking commands (`/invite`, `/kick`, `/ban`, `/mute`, `/mod`, `/block`...)
//! and the events that tell the user what others did to them.

use serde_json::{json, Value};

use super::{Client, Pending};
use crate::commands::{Command, Target};
use crate::display::{clean, str_of};

impl Client {
    /// Sends a moderation or blocking request; the answer prints what was done.
    pub(super) async fn moderation_command(&mut self, command: Command) {
        match command {
            Command::Moderate { action, user, room } => {
                let done = moderation_done(action, &user, &room);
                self.request(json!({"type": action, "room": room, "user": user}), Pending::Done(done)).await
            }
            Command::Block(user) => {
                let done = format!("blocked {}: no private messages from them", clean(&user));
                self.request(json!({"type": "block", "user": user}), Pending::Done(done)).await
            }
            Command::Unblock(user) => {
                let done = format!("unblocked {}", clean(&user));
                self.request(json!({"type": "unblock", "user": user}), Pending::Done(done)).await
            }
            Command::Blocked => self.request(json!({"type": "blocked"}), Pending::Blocked).await,
            _ => {}
        }
    }

    /// `invited`, `removed`, `role_changed` and `mute_changed`.
    pub(super) fn moderated(&mut self, frame: &Value) {
        let room = str_of(frame, "room").to_owned();
        let (shown, by, user) = (clean(&room), clean(str_of(frame, "by")), str_of(frame, "user"));
        let line = match str_of(frame, "type") {
            "invited" => format!("{by} added you to room:{shown} (/say {shown} to write there)"),
            "removed" => {
                let conv = format!("room:{room}");
                self.cursors.forget(&conv);
                self.reads.remove(&conv);
                if self.current() == Some(Target::Room(room.clone())) {
                    self.set_current(None);
                }
                let verb = if frame["banned"] == true { "banned" } else { "removed" };
                format!("{by} {verb} you from room:{shown}")
            }
            "role_changed" => format!("{} is now {} of room:{shown}", clean(user), clean(str_of(frame, "role"))),
            _ if user == self.me => {
                let state = if frame["muted"] == true { "muted: you cannot write there" } else { "unmuted" };
                format!("you are {state} in room:{shown}")
            }
            _ => {
                let state = if frame["muted"] == true { "muted" } else { "unmuted" };
                format!("{} is {state} in room:{shown}", clean(user))
            }
        };
        self.notice(&line);
    }
}

/// What to print once a moderation request is done.
fn moderation_done(action: &str, user: &str, room: &str) -> String {
    let (user, room) = (clean(user), clean(room));
    match action {
        "invite" => format!("invited {user} to room:{room}"),
        "remove" => format!("removed {user} from room:{room}"),
        "ban" => format!("banned {user} from room:{room}"),
        "unban" => format!("unbanned {user} from room:{room}"),
        "mute" => format!("muted {user} in room:{room}"),
        "unmute" => format!("unmuted {user} in room:{room}"),
        "promote" => format!("{user} moderates room:{room}"),
        _ => format!("{user} no longer moderates room:{room}"),
    }
}
