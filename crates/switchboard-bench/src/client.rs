//! Connecting to the server and logging in, shared by every scenario.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// A client connection (plain `ws://`, no TLS).
pub type WsStream = WebSocketStream<TcpStream>;

/// The server to load: a `ws://host[:port]/path` URL, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The WebSocket URL, as given.
    pub url: String,
    /// `host:port` as written in the URL (the HTTP `Host`).
    pub authority: String,
    /// The resolved address every connection goes to.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves a `ws://` URL.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let (host, port) = split_ws_url(url)?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .min_by_key(|addr| !addr.is_ipv4()) // prefer IPv4
            .with_context(|| format!("{host} has no address"))?;
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Target { url: url.to_string(), authority, addr })
    }

    /// The source addresses to spread connections over: `127.0.0.1` .. `127.0.0.<count>`, to get
    /// past the ephemeral port limit of one (source, destination) pair. Only for a loopback
    /// target; with one source and a non-loopback target the kernel picks the source (`None`).
    pub fn sources(&self, count: u32) -> anyhow::Result<Vec<Option<IpAddr>>> {
        if !self.addr.ip().is_loopback() || !self.addr.is_ipv4() {
            if count > 1 {
                bail!("--sources > 1 needs an IPv4 loopback target, not {}", self.addr);
            }
            return Ok(vec![None]);
        }
        if !(1..=254).contains(&count) {
            bail!("--sources must be within 1..=254");
        }
        Ok((1..=count).map(|last| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last as u8)))).collect())
    }
}

/// Splits `ws://host[:port][/path]` into host and port (default 80).
fn split_ws_url(url: &str) -> anyhow::Result<(String, u16)> {
    let Some(rest) = url.strip_prefix("ws://") else {
        if url.starts_with("wss://") {
            bail!("wss:// is not supported by the load generator; use ws://");
        }
        bail!("the url must start with ws://, got {url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        bail!("no host in {url}");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').with_context(|| format!("unclosed [ in {url}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().with_context(|| format!("bad port in {url}"))?,
        None => 80,
    };
    Ok((host.to_string(), port))
}

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

fn ws_reason(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Io(error) => error.to_string(),
        tungstenite::Error::Http(response) => format!("http status {}", response.status()),
        other => other.to_string(),
    }
}

/// Opens a TCP connection (from `source` when given) and upgrades it to a WebSocket.
pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<WsStream, Failure> {
    let io = |error: std::io::Error| Failure::new(Stage::Connect, error.to_string());
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
    if let Some(source) = source {
        // Lets a port whose last connection sits in TIME_WAIT be reused by the next run.
        socket.set_reuseaddr(true).map_err(io)?;
        socket.bind(SocketAddr::new(source, 0)).map_err(io)?;
    }
    let stream = socket.connect(target.addr).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    let (ws, _response) = tokio_tungstenite::client_async(target.url.as_str(), stream)
        .await
        .map_err(|error| Failure::new(Stage::Upgrade, ws_reason(&error)))?;
    Ok(ws)
}

/// How to log in.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// `login_jwt` with a signed JWT.
    Jwt(&'a str),
    /// `resume` with the token of an earlier `session` frame.
    Resume(&'a str),
}

/// What the server said about the new session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub user: String,
    pub token: String,
    /// The `messages` count of the `synced` frame.
    pub synced_messages: u64,
}

/// Logs in (without presence) and waits for `synced`. Frames other than `session`, `synced`
/// and `error` are skipped.
pub async fn login(ws: &mut WsStream, login: Login<'_>) -> Result<Session, Failure> {
    let request = match login {
        Login::Jwt(jwt) => serde_json::json!({"type": "login_jwt", "jwt": jwt, "presence": false}),
        Login::Resume(token) => {
            serde_json::json!({"type": "resume", "token": token, "presence": false})
        }
    };
    ws.send(Message::text(request.to_string()))
        .await
        .map_err(|error| Failure::new(Stage::Login, format!("sending the login: {}", ws_reason(&error))))?;
    let mut session: Option<Session> = None;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let reason = match frame {
                    Some(frame) => format!("closed by the server ({})", u16::from(frame.code)),
                    None => "closed by the server".to_string(),
                };
                return Err(Failure::new(Stage::Login, reason));
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(Failure::new(Stage::Login, ws_reason(&error))),
            None => return Err(Failure::new(Stage::Login, "connection closed")),
        };
        let frame: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| Failure::new(Stage::Login, "the server sent a frame that is not JSON"))?;
        match frame["type"].as_str() {
            Some("session") => {
                session = Some(Session {
                    user: frame["user"].as_str().unwrap_or_default().to_string(),
                    token: frame["token"].as_str().unwrap_or_default().to_string(),
                    synced_messages: 0,
                });
            }
            Some("synced") => {
                let Some(mut session) = session else {
                    return Err(Failure::new(Stage::Login, "synced before session"));
                };
                session.synced_messages = frame["messages"].as_u64().unwrap_or(0);
                return Ok(session);
            }
            Some("error") => {
                let code = frame["code"].as_str().unwrap_or("?");
                let message: String = frame["message"].as_str().unwrap_or("").chars().take(120).collect();
                return Err(Failure::new(Stage::Login, format!("server error {code}: {message}")));
            }
            _ => {}
        }
    }
}

/// Signs HS256 JWTs for `login_jwt`.
pub struct JwtSigner {
    key: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
    ttl_secs: u64,
}

impl JwtSigner {
    /// Tokens are valid for `ttl_secs` from signing (the server only checks them at login).
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        JwtSigner {
            key: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            header: jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            ttl_secs,
        }
    }

    /// A JWT with `sub = user` and `exp` in the future.
    pub fn sign(&self, user: &str) -> Result<String, Failure> {
        let exp = jsonwebtoken::get_current_timestamp() + self.ttl_secs;
        jsonwebtoken::encode(&self.header, &serde_json::json!({"sub": user, "exp": exp}), &self.key)
            .map_err(|error| Failure::new(Stage::Local, format!("signing the jwt: {error}")))
    }
}

/// Checks that `{prefix}-{n}` user names (n zero-padded to `digits`) are valid Switchboard user
/// names: lowercase `[a-z0-9_.-]`, 1..=32 characters.
pub fn check_user_prefix(prefix: &str, digits: usize) -> anyhow::Result<()> {
    if !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
        bail!("--user-prefix may only hold lowercase a-z, 0-9, '_', '.' and '-'");
    }
    let longest = prefix.len() + 1 + digits;
    if longest > 32 {
        bail!("user names would be {longest} characters long; the limit is 32 (shorten --user-prefix)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_split_into_host_and_port() {
        assert_eq!(split_ws_url("ws://127.0.0.1:8080/ws").unwrap(), ("127.0.0.1".into(), 8080));
        assert_eq!(split_ws_url("ws://localhost/ws").unwrap(), ("localhost".into(), 80));
        assert_eq!(split_ws_url("ws://[::1]:9000/ws").unwrap(), ("::1".into(), 9000));
        assert_eq!(split_ws_url("ws://example.org:81").unwrap(), ("example.org".into(), 81));
        assert!(split_ws_url("wss://example.org/ws").is_err());
        assert!(split_ws_url("http://example.org/ws").is_err());
        assert!(split_ws_url("ws:///ws").is_err());
        assert!(split_ws_url("ws://h:notaport/ws").is_err());
    }

    #[test]
    fn user_prefixes_are_checked() {
        assert!(check_user_prefix("idle", 6).is_ok());
        assert!(check_user_prefix("Idle", 6).is_err());
        assert!(check_user_prefix("a b", 6).is_err());
        assert!(check_user_prefix(&"x".repeat(25), 6).is_ok());
        assert!(check_user_prefix(&"x".repeat(26), 6).is_err());
    }

    #[tokio::test]
    async fn sources_are_loopback_addresses() {
        let target = Target::resolve("ws://127.0.0.1:1/ws").await.unwrap();
        assert_eq!(target.authority, "127.0.0.1:1");
        let sources = target.sources(3).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[2], Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
        assert!(target.sources(0).is_err());
        assert!(target.sources(255).is_err());
    }
}
