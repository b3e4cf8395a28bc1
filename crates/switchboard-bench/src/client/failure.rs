//! Why a connection attempt failed, in words that can be counted.

use std::fmt;

use tokio_tungstenite::tungstenite;

/// Why a connection attempt failed, at which stage. Its `Display` is short and low-cardinality,
/// so that failures can be counted by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// TCP socket, bind or connect.
    Connect,
    /// The WebSocket upgrade.
    Upgrade,
    /// Between the upgrade and `synced`.
    Login,
    /// The whole attempt took too long.
    Timeout,
    /// On our side, before anything was sent (e.g. signing the JWT).
    Local,
}

impl Failure {
    pub fn new(stage: Stage, reason: impl Into<String>) -> Self {
        Failure { stage, reason: reason.into() }
    }

    pub fn timeout(after: std::time::Duration) -> Self {
        Failure::new(Stage::Timeout, format!("no synced within {} s", after.as_secs_f64()))
    }

    /// The server answered with an error that protocol.md says to retry (a busy store, an
    /// overloaded node).
    pub fn is_retryable(&self) -> bool {
        self.stage == Stage::Login && ["store_unavailable", "overloaded"].iter().any(|code| self.reason.contains(code))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Connect => "tcp connect",
            Stage::Upgrade => "websocket upgrade",
            Stage::Login => "login",
            Stage::Timeout => "timeout",
            Stage::Local => "local",
        };
        write!(f, "{stage}: {}", self.reason)
    }
}

impl std::error::Error for Failure {}

pub(super) fn ws_reason(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Io(error) => error.to_string(),
        tungstenite::Error::Http(response) => format!("http status {}", response.status()),
        other => other.to_string(),
    }
}
