//! Error codes sent in `error` frames, and the WebSocket close codes the server uses.
//!
//! Each library error in Switchboard maps to exactly one [`ErrorCode`]; this is the one place that
//! decides what a client sees.

use serde::Serialize;

/// The `code` of an `error` frame. The text form is stable: clients match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object, or not valid JSON.
    BadFrame,
    /// A binary WebSocket frame; the protocol is JSON text only.
    BinaryUnsupported,
    /// The frame is larger than the server's maximum frame size.
    FrameTooLarge,
    /// The `type` is not one this server knows.
    UnknownType,
    /// A field is missing, has the wrong JSON type, or an invalid value.
    InvalidField,
    /// The client asked for a protocol version this server does not speak.
    UnsupportedProtocol,
    /// The request needs a logged-in session.
    NotAuthenticated,
    /// A login frame on a connection that already has a session.
    AlreadyAuthenticated,
    /// Wrong user name or password.
    AuthFailed,
    /// Registration of a name that is taken.
    UserExists,
    /// A user or room name that breaks the naming rules.
    InvalidName,
    /// A password shorter than the minimum or longer than the maximum.
    InvalidPassword,
    /// A session token that is unknown, revoked or expired.
    InvalidToken,
    /// A JWT that does not verify, is expired or has no usable `sub`.
    InvalidJwt,
    /// This login method is switched off in the server's configuration.
    AuthMethodDisabled,
    /// Too many failed logins for this user name or address; see `retry_after_ms`.
    LoginThrottled,
    /// Too many frames on this connection; see `retry_after_ms`. The frame was not processed.
    RateLimited,
    /// The named user does not exist.
    UserNotFound,
    /// The named room does not exist.
    RoomNotFound,
    /// `create_room` for a room that exists.
    RoomExists,
    /// The user is not a member of the room.
    NotAMember,
    /// An empty message text.
    EmptyText,
    /// A message text over the server's limit.
    TextTooLong,
    /// The store could not make the message durable: it was not acknowledged, so send it again.
    StoreUnavailable,
    /// The server is over its bounded queues: it did not take the request; try again later.
    Overloaded,
    /// An unexpected server fault; the request may not have been processed.
    Internal,
    /// The `seq` of an `edit`, `delete`, `react` or a `send`'s `reply_to` is not a message of the
    /// conversation.
    MessageNotFound,
    /// The message was deleted: it can be neither changed nor quoted.
    MessageDeleted,
    /// The user may not change this message: editing someone else's, or deleting someone else's
    /// in a room the user does not own.
    NotAllowed,
    /// The message holds the most reactions it can.
    TooManyReactions,
    /// The caller's role in the room does not allow this (or the room is invite-only).
    Forbidden,
    /// The user is banned from the room: no join, no invitation until `unban`.
    Banned,
    /// The caller is muted in the room: they read it but cannot send to it.
    Muted,
    /// The recipient blocks the caller: the private message was not stored or delivered.
    Blocked,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidJwt => "invalid_jwt",
            ErrorCode::AuthMethodDisabled => "auth_method_disabled",
            ErrorCode::LoginThrottled => "login_throttled",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::EmptyText => "empty_text",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
            ErrorCode::MessageNotFound => "message_not_found",
            ErrorCode::MessageDeleted => "message_deleted",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::TooManyReactions => "too_many_reactions",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::Blocked => "blocked",
        }
    }
}

/// WebSocket close codes the server sends. 4000-4999 are Switchboard's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The client logged out.
    Normal,
    /// The server is shutting down for good.
    GoingAway,
    /// Broken WebSocket framing (for example an unmasked client frame).
    ProtocolError,
    /// A text message or close reason that is not valid UTF-8 (RFC 6455 section 8.1).
    InvalidPayload,
    /// A frame far over the maximum size; the stream cannot be followed any more.
    TooBig,
    /// An unexpected server fault.
    InternalError,
    /// The server is restarting or draining: reconnect (to any node) and resume.
    ServiceRestart,
    /// No login within the allowed time after connecting.
    AuthTimeout,
    /// The client did not answer pings: the connection is considered dead.
    PingTimeout,
    /// The client read too slowly and its outbound queue overflowed: reconnect with cursors and
    /// recover from the store; nothing acknowledged is lost.
    SlowConsumer,
    /// The client kept sending far above its rate limit.
    Flood,
    /// The application's backend disconnected the user through the server API.
    Disconnected,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::AuthTimeout => 4000,
            CloseCode::PingTimeout => 4001,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Flood => 4029,
            CloseCode::Disconnected => 4010,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "bye",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "websocket protocol error",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::TooBig => "frame too large",
            CloseCode::InternalError => "internal error",
            CloseCode::ServiceRestart => "server restarting, reconnect and resume",
            CloseCode::AuthTimeout => "no login in time",
            CloseCode::PingTimeout => "ping timeout",
            CloseCode::SlowConsumer => "slow consumer, reconnect and resume",
            CloseCode::Flood => "flooding",
            CloseCode::Disconnected => "disconnected by the server",
        }
    }
}
