//! Opening a WebSocket to the server and logging in (protocol §1, §4).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long connecting and logging in may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The `ref` of login frames; requests use 1 and up.
pub const LOGIN_REF: u64 = 0;

/// A logged-in connection.
pub struct Connected {
    pub ws: Ws,
    /// The `session` answer.
    pub session: Value,
}

/// Why a login did not happen.
#[derive(Debug)]
pub enum LoginError {
    /// The server answered the login frame with an error.
    Refused { code: String, message: String, retry_after_ms: Option<u64> },
    /// No connection, a broken one, or no answer in time.
    Failed(anyhow::Error),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Refused { code, message, .. } => write!(f, "{message} ({code})"),
            LoginError::Failed(error) => write!(f, "{}", error.root_cause()),
        }
    }
}

/// Checks a server URL and returns `host:port`, which names its saved sessions.
pub fn server_of(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
    let default_port = match uri.scheme_str() {
        Some("ws") => 80,
        Some("wss") => bail!("wss:// is not supported: the server speaks ws://; reach it through a TLS tunnel"),
        _ => bail!("the URL must start with ws://, like ws://127.0.0.1:8080/ws"),
    };
    let host = uri.host().filter(|host| !host.is_empty()).ok_or_else(|| anyhow!("no host in {url}"))?;
    Ok(format!("{}:{}", host.trim_start_matches('[').trim_end_matches(']'), uri.port_u16().unwrap_or(default_port)))
}

/// Connects, sends `login` (a login frame, given `ref` [`LOGIN_REF`]) and waits for its answer.
/// Frames after `session` (presence, sync) stay unread on the socket for the caller.
pub async fn connect_and_login(url: &str, login: Value) -> Result<Connected, LoginError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, login_inner(url, login)).await {
        Ok(result) => result,
        Err(_) => Err(LoginError::Failed(anyhow!("no answer within {} s", LOGIN_TIMEOUT.as_secs()))),
    }
}

async fn login_inner(url: &str, login: Value) -> Result<Connected, LoginError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|error| LoginError::Failed(error.into()))?;
    // The login frame may go before `hello` arrives (protocol §1).
    ws.send(Message::Text(login.to_string())).await.map_err(|error| LoginError::Failed(error.into()))?;
    loop {
        let frame = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => {
                let reason = close.map(|c| format!("{} {}", u16::from(c.code), c.reason)).unwrap_or_default();
                return Err(LoginError::Failed(anyhow!("the server closed the connection: {reason}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(LoginError::Failed(error.into())),
            None => return Err(LoginError::Failed(anyhow!("the connection ended"))),
        };
        let Ok(frame) = serde_json::from_str::<Value>(&frame) else { continue };
        if frame["ref"] != LOGIN_REF {
            continue; // `hello`
        }
        return match frame["type"].as_str() {
            Some("session") => Ok(Connected { ws, session: frame }),
            _ => Err(LoginError::Refused {
                code: frame["code"].as_str().unwrap_or("unknown").to_owned(),
                message: frame["message"].as_str().unwrap_or("login refused").to_owned(),
                retry_after_ms: frame["retry_after_ms"].as_u64(),
            }),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(server_of("ws://127.0.0.1:8080/ws").unwrap(), "127.0.0.1:8080");
        assert_eq!(server_of("ws://chat.example/ws").unwrap(), "chat.example:80");
        assert_eq!(server_of("ws://[::1]:9000/ws").unwrap(), "::1:9000");
        assert!(server_of("http://127.0.0.1:8080/ws").is_err());
        assert!(server_of("wss://chat.example/ws").is_err());
        assert!(server_of("127.0.0.1:8080").is_err());
    }
}
