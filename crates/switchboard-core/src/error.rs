use switchboard_protocol::ErrorCode;
use switchboard_store::{Rejection, StoreError};

/// Why a request failed. [`ChatError::code`] is the one place that decides what a client sees.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("log in first")]
    NotAuthenticated,
    #[error("this connection is already logged in")]
    AlreadyAuthenticated,
    #[error("wrong user name or password")]
    AuthFailed,
    #[error("user name is taken")]
    UserExists,
    #[error("password must be {min} to 1024 characters")]
    InvalidPassword { min: usize },
    #[error("session token is unknown or expired")]
    InvalidToken,
    #[error("jwt rejected: {0}")]
    InvalidJwt(String),
    #[error("{0} is disabled on this server")]
    AuthMethodDisabled(&'static str),
    #[error("too many failed logins, try again later")]
    LoginThrottled { retry_after_ms: u64 },
    #[error("too many frames, slow down")]
    RateLimited { retry_after_ms: u64 },
    #[error("user {0} does not exist")]
    UserNotFound(String),
    #[error("room {0} does not exist")]
    RoomNotFound(String),
    #[error("room {0} exists")]
    RoomExists(String),
    #[error("not a member of room {0}")]
    NotAMember(String),
    #[error("message text is empty")]
    EmptyText,
    #[error("message text is longer than {max} characters")]
    TextTooLong { max: usize },
    #[error("invalid value: {0}")]
    InvalidField(String),
    #[error("message not stored, send it again: {0}")]
    Store(#[from] StoreError),
    #[error("server busy, try again")]
    Overloaded,
    #[error("too many logins at once, try again")]
    PasswordChecksBusy,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("no such message in this conversation")]
    MessageNotFound,
    #[error("the message was deleted")]
    MessageDeleted,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("this message has the most reactions it can hold ({max})")]
    TooManyReactions { max: usize },
    #[error("{0}")]
    Forbidden(String),
    #[error("banned from room {0}")]
    Banned(String),
    #[error("muted in room {0}")]
    Muted(String),
    #[error("{0} blocks you: the message was not delivered")]
    Blocked(String),
}

impl From<Rejection> for ChatError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound => ChatError::MessageNotFound,
            Rejection::Deleted => ChatError::MessageDeleted,
            Rejection::TooManyReactions => ChatError::TooManyReactions { max: switchboard_store::MAX_REACTIONS },
        }
    }
}

impl ChatError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::NotAuthenticated => ErrorCode::NotAuthenticated,
            ChatError::AlreadyAuthenticated => ErrorCode::AlreadyAuthenticated,
            ChatError::AuthFailed => ErrorCode::AuthFailed,
            ChatError::UserExists => ErrorCode::UserExists,
            ChatError::InvalidPassword { .. } => ErrorCode::InvalidPassword,
            ChatError::InvalidToken => ErrorCode::InvalidToken,
            ChatError::InvalidJwt(_) => ErrorCode::InvalidJwt,
            ChatError::AuthMethodDisabled(_) => ErrorCode::AuthMethodDisabled,
            ChatError::LoginThrottled { .. } => ErrorCode::LoginThrottled,
            ChatError::RateLimited { .. } => ErrorCode::RateLimited,
            ChatError::UserNotFound(_) => ErrorCode::UserNotFound,
            ChatError::RoomNotFound(_) => ErrorCode::RoomNotFound,
            ChatError::RoomExists(_) => ErrorCode::RoomExists,
            ChatError::NotAMember(_) => ErrorCode::NotAMember,
            ChatError::EmptyText => ErrorCode::EmptyText,
            ChatError::TextTooLong { .. } => ErrorCode::TextTooLong,
            ChatError::InvalidField(_) => ErrorCode::InvalidField,
            ChatError::Store(_) => ErrorCode::StoreUnavailable,
            ChatError::Overloaded | ChatError::PasswordChecksBusy => ErrorCode::Overloaded,
            ChatError::Internal(_) => ErrorCode::Internal,
            ChatError::MessageNotFound => ErrorCode::MessageNotFound,
            ChatError::MessageDeleted => ErrorCode::MessageDeleted,
            ChatError::NotAllowed(_) => ErrorCode::NotAllowed,
            ChatError::TooManyReactions { .. } => ErrorCode::TooManyReactions,
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::Banned(_) => ErrorCode::Banned,
            ChatError::Muted(_) => ErrorCode::Muted,
            ChatError::Blocked(_) => ErrorCode::Blocked,
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ChatError::LoginThrottled { retry_after_ms } | ChatError::RateLimited { retry_after_ms } => {
                Some(*retry_after_ms)
            }
            _ => None,
        }
    }
}
