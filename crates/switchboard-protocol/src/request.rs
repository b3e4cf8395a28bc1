//! Client frames.
//!
//! A frame is parsed in one pass into [`RawFrame`] (every field any request may carry, all
//! optional), then checked into a typed [`Request`]. A wrong JSON type names the field; a missing
//! field names the field; nothing panics.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::ErrorCode;
use crate::names::{self, ConvId};

/// A client's request id, echoed in the answer as `ref`: a string or a non-negative integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefValue {
    Number(u64),
    Text(String),
}

impl Serialize for RefValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RefValue::Number(number) => serializer.serialize_u64(*number),
            RefValue::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for RefValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl Visitor<'_> for RefVisitor {
            type Value = RefValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string of at most 64 bytes or a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RefValue, E> {
                Ok(RefValue::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RefValue, E> {
                if v.len() > 64 {
                    return Err(E::custom("ref is longer than 64 bytes"));
                }
                Ok(RefValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

/// Every field a client frame may carry. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<RefValue>,
    protocol: Option<u32>,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    jwt: Option<String>,
    presence: Option<bool>,
    cursors: Option<BTreeMap<String, u64>>,
    to: Option<String>,
    room: Option<String>,
    conv: Option<String>,
    text: Option<String>,
    key: Option<String>,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
    seq: Option<u64>,
    user: Option<String>,
    n: Option<u32>,
    seconds: Option<u32>,
    cursor: Option<String>,
    prefix: Option<String>,
    users: Option<Vec<String>>,
    reply_to: Option<u64>,
    emoji: Option<String>,
    private: Option<bool>,
}

/// Longest `emoji` of a `react`, in bytes: one emoji with its modifiers and joiners (a family is
/// 25 bytes), and a message's reactions stay small.
pub const MAX_EMOJI_BYTES: usize = 32;

/// Most names one `watch` or `unwatch` request carries.
pub const MAX_WATCH_NAMES: usize = 100;

/// Where a message, typing notice, read marker or history request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The private conversation with this user.
    User(String),
    Room(String),
}

/// Options every login frame may carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthOptions {
    /// Receive the online list and `user_online` / `user_offline` events (default true).
    pub presence: bool,
    /// The last `seq` the client holds per conversation id: the server sends everything after it.
    pub cursors: BTreeMap<ConvId, u64>,
    /// Presence about every online user instead of the connection's contacts: never set from the
    /// wire, only by the compatibility dialects whose protocols show the whole online list.
    pub presence_everyone: bool,
}

/// A checked client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Register {
        username: String,
        password: String,
        options: AuthOptions,
    },
    Login {
        username: String,
        password: String,
        options: AuthOptions,
    },
    Resume {
        token: String,
        options: AuthOptions,
    },
    LoginJwt {
        jwt: String,
        options: AuthOptions,
    },
    LoginOpen {
        username: String,
        options: AuthOptions,
    },
    Logout,
    Send {
        target: Target,
        text: String,
        key: Option<String>,
        /// The seq of the message (in the same conversation) this one answers.
        reply_to: Option<u64>,
    },
    History {
        target: Target,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    },
    Typing {
        target: Target,
    },
    Read {
        target: Target,
        seq: u64,
    },
    /// The user's devices hold the conversation up to `seq` (seen or not).
    Delivered {
        target: Target,
        seq: u64,
    },
    /// Listings take `cursor` (the last key of the previous page) and `limit`; this one's key is
    /// an [`crate::ActivityCursor`], in its text form.
    Conversations {
        after: Option<String>,
        limit: Option<u32>,
    },
    /// A `private` room is invite-only and hidden from non-members.
    CreateRoom {
        room: String,
        private: bool,
    },
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    Members {
        room: String,
        after: Option<String>,
        limit: Option<u32>,
    },
    Rooms {
        after: Option<String>,
        limit: Option<u32>,
    },
    /// Users whose name starts with `prefix` ("" for all).
    Users {
        prefix: String,
        after: Option<String>,
        limit: Option<u32>,
    },
    Online,
    /// Also tell this connection when these users come online or go offline.
    Watch {
        users: Vec<String>,
    },
    Unwatch {
        users: Vec<String>,
    },
    Popular {
        n: Option<u32>,
        seconds: Option<u32>,
    },
    Stats {
        user: String,
    },
    Whoami,
    Ping,
    /// Replaces the text of one's own message `seq`.
    Edit {
        target: Target,
        seq: u64,
        text: String,
    },
    /// Deletes message `seq`: one's own, or any in a room one owns.
    Delete {
        target: Target,
        seq: u64,
    },
    /// Sets one's reaction to message `seq` (an empty `emoji` takes it back).
    React {
        target: Target,
        seq: u64,
        emoji: String,
    },
    /// Moderation of a room by its owner or a moderator: see [`ModAction`].
    Moderate {
        action: ModAction,
        room: String,
        user: String,
    },
    /// No private messages from `user` any more.
    Block {
        user: String,
    },
    Unblock {
        user: String,
    },
    /// The users the caller blocks.
    Blocked,
}

/// What an owner or moderator does to a user in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModAction {
    /// Makes the user a member (of a private room, the only way in).
    Invite,
    /// Takes a member out of the room; they may come back (a public room) or be invited again.
    Remove,
    /// Takes the user out and keeps them out until `unban`.
    Ban,
    Unban,
    /// The member may read but not send.
    Mute,
    Unmute,
    /// Owner only: makes a member a moderator.
    Promote,
    Demote,
}

impl ModAction {
    /// The request `type`, also the `of` of its `ok` answer.
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Invite => "invite",
            ModAction::Remove => "remove",
            ModAction::Ban => "ban",
            ModAction::Unban => "unban",
            ModAction::Mute => "mute",
            ModAction::Unmute => "unmute",
            ModAction::Promote => "promote",
            ModAction::Demote => "demote",
        }
    }

    fn parse(kind: &str) -> Option<ModAction> {
        Some(match kind {
            "invite" => ModAction::Invite,
            "remove" => ModAction::Remove,
            "ban" => ModAction::Ban,
            "unban" => ModAction::Unban,
            "mute" => ModAction::Mute,
            "unmute" => ModAction::Unmute,
            "promote" => ModAction::Promote,
            "demote" => ModAction::Demote,
            _ => return None,
        })
    }
}

impl Request {
    /// A login request's options.
    pub fn options_mut(&mut self) -> Option<&mut AuthOptions> {
        match self {
            Request::Register { options, .. }
            | Request::Login { options, .. }
            | Request::Resume { options, .. }
            | Request::LoginJwt { options, .. }
            | Request::LoginOpen { options, .. } => Some(options),
            _ => None,
        }
    }

    /// Whether this request logs in, and so is allowed before a session exists.
    pub fn is_login(&self) -> bool {
        matches!(
            self,
            Request::Register { .. }
                | Request::Login { .. }
                | Request::Resume { .. }
                | Request::LoginJwt { .. }
                | Request::LoginOpen { .. }
        )
    }

    /// The `type` string, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Login { .. } => "login",
            Request::Resume { .. } => "resume",
            Request::LoginJwt { .. } => "login_jwt",
            Request::LoginOpen { .. } => "login_open",
            Request::Logout => "logout",
            Request::Send { .. } => "send",
            Request::History { .. } => "history",
            Request::Typing { .. } => "typing",
            Request::Read { .. } => "read",
            Request::Delivered { .. } => "delivered",
            Request::Conversations { .. } => "conversations",
            Request::CreateRoom { .. } => "create_room",
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Members { .. } => "members",
            Request::Rooms { .. } => "rooms",
            Request::Users { .. } => "users",
            Request::Online => "online",
            Request::Watch { .. } => "watch",
            Request::Unwatch { .. } => "unwatch",
            Request::Popular { .. } => "popular",
            Request::Stats { .. } => "stats",
            Request::Whoami => "whoami",
            Request::Ping => "ping",
            Request::Edit { .. } => "edit",
            Request::Delete { .. } => "delete",
            Request::React { .. } => "react",
            Request::Moderate { action, .. } => action.as_str(),
            Request::Block { .. } => "block",
            Request::Unblock { .. } => "unblock",
            Request::Blocked => "blocked",
        }
    }
}

/// Why a frame could not become a [`Request`]. `reference` is the frame's `ref` when it could be
/// read, so the error answer can still be matched to its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: ErrorCode,
    pub message: String,
    pub reference: Option<RefValue>,
}

impl ParseError {
    fn new(code: ErrorCode, message: impl Into<String>, reference: Option<RefValue>) -> Self {
        ParseError { code, message: message.into(), reference }
    }
}

/// A parsed frame: its `ref` (if any) and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub reference: Option<RefValue>,
    pub request: Request,
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, ParseError> {
    if !text.trim_start().starts_with('{') {
        return Err(ParseError::new(ErrorCode::BadFrame, "a frame must be a JSON object", None));
    }
    let raw: RawFrame = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(error) if error.is_data() => {
            // The frame is JSON but a field has the wrong type; recover the ref if we can so the
            // client can match the error to its request.
            let reference = serde_json::from_str::<RefOnly>(text).ok().and_then(|r| r.reference);
            return Err(ParseError::new(ErrorCode::InvalidField, error.to_string(), reference));
        }
        Err(error) => return Err(ParseError::new(ErrorCode::BadFrame, format!("not a JSON object: {error}"), None)),
    };
    let reference = raw.reference.clone();
    let request = check(raw).map_err(|(code, message)| ParseError::new(code, message, reference.clone()))?;
    Ok(ClientFrame { reference, request })
}

/// The `ref` of a frame, read without checking the rest: for answering a frame that will not be
/// processed (for example one over the rate limit).
pub fn reference_of(text: &str) -> Option<RefValue> {
    serde_json::from_str::<RefOnly>(text).ok().and_then(|r| r.reference)
}

#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref", default)]
    reference: Option<RefValue>,
}

type Check<T> = Result<T, (ErrorCode, String)>;

fn required<T>(value: Option<T>, field: &str) -> Check<T> {
    value.ok_or_else(|| (ErrorCode::InvalidField, format!("missing field '{field}'")))
}

fn user_field(value: Option<String>, field: &str) -> Check<String> {
    let raw = required(value, field)?;
    names::user_name(&raw).map_err(|error| (ErrorCode::InvalidName, format!("{field}: {error}")))
}

fn room_field(value: Option<String>) -> Check<String> {
    let raw = required(value, "room")?;
    names::room_name(&raw).map_err(|error| (ErrorCode::InvalidName, format!("room: {error}")))
}

fn target(to: Option<String>, room: Option<String>) -> Check<Target> {
    match (to, room) {
        (Some(_), Some(_)) => Err((ErrorCode::InvalidField, "give either 'to' or 'room', not both".into())),
        (Some(to), None) => user_field(Some(to), "to").map(Target::User),
        (None, Some(room)) => room_field(Some(room)).map(Target::Room),
        (None, None) => Err((ErrorCode::InvalidField, "missing field 'to' or 'room'".into())),
    }
}

/// A user search's `prefix`: normalised as a name is, and a name's start ("" searches nothing out).
/// Every non-empty start of a valid name is a valid name itself, so the name rules check it.
fn name_prefix(prefix: Option<String>) -> Check<String> {
    match prefix {
        Some(prefix) if !prefix.trim().is_empty() => user_field(Some(prefix), "prefix"),
        _ => Ok(String::new()),
    }
}

/// A `conversations` cursor is `<last_ts>:<conv>`, as the previous page's `next_cursor` gave it.
fn conv_cursor(cursor: Option<String>) -> Check<Option<String>> {
    cursor
        .map(|cursor| match crate::ActivityCursor::parse(&cursor) {
            Ok(cursor) => Ok(cursor.to_string()),
            Err(_) => Err((ErrorCode::InvalidField, "cursor: not a conversations cursor (<last_ts>:<conv>)".into())),
        })
        .transpose()
}

/// A reaction: empty (to take one back), or one short symbol without spaces or control characters.
fn emoji_field(emoji: Option<String>) -> Check<String> {
    let emoji = required(emoji, "emoji")?;
    if emoji.len() > MAX_EMOJI_BYTES {
        return Err((ErrorCode::InvalidField, format!("emoji: at most {MAX_EMOJI_BYTES} bytes")));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((ErrorCode::InvalidField, "emoji: no spaces or control characters".into()));
    }
    Ok(emoji)
}

/// The names of a `watch` or `unwatch`: 1 to [`MAX_WATCH_NAMES`] valid user names.
fn watch_names(users: Option<Vec<String>>) -> Check<Vec<String>> {
    let users = required(users, "users")?;
    if users.is_empty() || users.len() > MAX_WATCH_NAMES {
        return Err((ErrorCode::InvalidField, format!("users: give 1 to {MAX_WATCH_NAMES} names")));
    }
    users.into_iter().map(|user| user_field(Some(user), "users")).collect()
}

fn auth_options(presence: Option<bool>, cursors: Option<BTreeMap<String, u64>>) -> Check<AuthOptions> {
    let mut checked = BTreeMap::new();
    for (conv, seq) in cursors.unwrap_or_default() {
        let conv_id =
            ConvId::parse(&conv).map_err(|error| (ErrorCode::InvalidField, format!("cursors: '{conv}': {error}")))?;
        checked.insert(conv_id, seq);
    }
    Ok(AuthOptions { presence: presence.unwrap_or(true), cursors: checked, presence_everyone: false })
}

fn check(raw: RawFrame) -> Check<Request> {
    let kind = required(raw.kind, "type")?;
    if let Some(version) = raw.protocol {
        if version != crate::PROTOCOL_VERSION {
            return Err((
                ErrorCode::UnsupportedProtocol,
                format!("protocol {version} is not supported; this server speaks {}", crate::PROTOCOL_VERSION),
            ));
        }
    }
    let request = match kind.as_str() {
        "register" => Request::Register {
            username: user_field(raw.username, "username")?,
            password: required(raw.password, "password")?,
            options: auth_options(raw.presence, raw.cursors)?,
        },
        "login" => Request::Login {
            username: user_field(raw.username, "username")?,
            password: required(raw.password, "password")?,
            options: auth_options(raw.presence, raw.cursors)?,
        },
        "resume" => {
            Request::Resume { token: required(raw.token, "token")?, options: auth_options(raw.presence, raw.cursors)? }
        }
        "login_jwt" => {
            Request::LoginJwt { jwt: required(raw.jwt, "jwt")?, options: auth_options(raw.presence, raw.cursors)? }
        }
        "login_open" => Request::LoginOpen {
            username: user_field(raw.username, "username")?,
            options: auth_options(raw.presence, raw.cursors)?,
        },
        "logout" => Request::Logout,
        "send" => Request::Send {
            target: target(raw.to, raw.room)?,
            text: required(raw.text, "text")?,
            key: match raw.key {
                Some(key) if key.is_empty() || key.len() > 64 => {
                    return Err((ErrorCode::InvalidField, "key must be 1 to 64 bytes".into()))
                }
                other => other,
            },
            reply_to: raw.reply_to,
        },
        "history" => Request::History {
            target: target(raw.to, raw.room)?,
            before: raw.before,
            after: raw.after,
            limit: raw.limit,
        },
        "typing" => Request::Typing { target: target(raw.to, raw.room)? },
        "read" => Request::Read { target: target(raw.to, raw.room)?, seq: required(raw.seq, "seq")? },
        "delivered" => Request::Delivered { target: target(raw.to, raw.room)?, seq: required(raw.seq, "seq")? },
        "conversations" => Request::Conversations { after: conv_cursor(raw.cursor)?, limit: raw.limit },
        "create_room" => Request::CreateRoom { room: room_field(raw.room)?, private: raw.private.unwrap_or(false) },
        "join" => Request::Join { room: room_field(raw.room)? },
        "leave" => Request::Leave { room: room_field(raw.room)? },
        "members" => Request::Members {
            room: room_field(raw.room)?,
            after: raw.cursor.map(|cursor| user_field(Some(cursor), "cursor")).transpose()?,
            limit: raw.limit,
        },
        "rooms" => {
            Request::Rooms { after: raw.cursor.map(|cursor| room_field(Some(cursor))).transpose()?, limit: raw.limit }
        }
        "users" => Request::Users {
            prefix: name_prefix(raw.prefix)?,
            after: raw.cursor.map(|cursor| user_field(Some(cursor), "cursor")).transpose()?,
            limit: raw.limit,
        },
        "online" => Request::Online,
        "watch" => Request::Watch { users: watch_names(raw.users)? },
        "unwatch" => Request::Unwatch { users: watch_names(raw.users)? },
        "popular" => Request::Popular { n: raw.n, seconds: raw.seconds },
        "stats" => Request::Stats { user: user_field(raw.user, "user")? },
        "whoami" => Request::Whoami,
        "ping" => Request::Ping,
        "edit" => Request::Edit {
            target: target(raw.to, raw.room)?,
            seq: required(raw.seq, "seq")?,
            text: required(raw.text, "text")?,
        },
        "delete" => Request::Delete { target: target(raw.to, raw.room)?, seq: required(raw.seq, "seq")? },
        "react" => Request::React {
            target: target(raw.to, raw.room)?,
            seq: required(raw.seq, "seq")?,
            emoji: emoji_field(raw.emoji)?,
        },
        "block" => Request::Block { user: user_field(raw.user, "user")? },
        "unblock" => Request::Unblock { user: user_field(raw.user, "user")? },
        "blocked" => Request::Blocked,
        other if ModAction::parse(other).is_some() => Request::Moderate {
            action: ModAction::parse(other).unwrap_or(ModAction::Invite),
            room: room_field(raw.room)?,
            user: user_field(raw.user, "user")?,
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err((ErrorCode::UnknownType, format!("unknown type '{shown}'")));
        }
    };
    Ok(request)
}

#[cfg(test)]
mod tests;
