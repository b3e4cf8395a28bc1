//! Connecting to the server and logging in, shared by every scenario.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::metrics::{self, Scrape};
use crate::report::{Histogram, Reasons};

mod target;
pub use target::Target;

/// A client connection's socket: TCP, or TLS over TCP for a `wss://` target.
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the load generator talks to a server.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Switchboard's JSON frames, one per WebSocket text message (`ws://host:port/ws`).
    #[default]
    Native,
    /// The same JSON frames carried as one Socket.IO 4 event, `42["frame",{...}]`, over Engine.IO
    /// v4 on a WebSocket (`ws://host:port/socket.io/?EIO=4&transport=websocket`): for the
    /// Socket.IO peer server in `bench/peers`.
    #[value(name = "socketio")]
    SocketIo,
    /// Switchboard's own Socket.IO endpoint (docs/socketio.md): Engine.IO v4 on a WebSocket at
    /// `/socket.io/`, the login in the CONNECT packet's auth, each request an event named by its
    /// type with an acknowledgement carrying the answer, every other frame an event.
    #[value(name = "switchboard-socketio")]
    SwitchboardSocketIo,
}

impl Protocol {
    /// Whether connections speak Engine.IO and Socket.IO (on `/socket.io/`).
    pub fn is_socketio(self) -> bool {
        self != Protocol::Native
    }
}

/// A client connection (`ws://`, or `wss://` over TLS): a WebSocket that yields and takes the native
/// protocol's JSON frames as text messages whatever the [`Protocol`]. With [`Protocol::SocketIo`]
/// it unwraps incoming `42["frame",{...}]` packets, wraps outgoing text messages, and answers
/// Engine.IO pings (`2`) with pongs (`3`) while it is read; with [`Protocol::Native`] it passes
/// everything straight through.
pub struct WsStream {
    inner: Socket,
    protocol: Protocol,
    /// Engine.IO pongs not yet written.
    pongs_due: u32,
    /// Pongs written but not yet flushed.
    flush_due: bool,
    /// The last acknowledgement id asked for ([`Protocol::SwitchboardSocketIo`]).
    last_ack: u64,
}

impl WsStream {
    fn new(inner: Socket, protocol: Protocol) -> Self {
        WsStream { inner, protocol, pongs_due: 0, flush_due: false, last_ack: 0 }
    }

    /// Sends a close frame (the WebSocket's own, whatever the protocol) and flushes it.
    pub async fn close(&mut self, msg: Option<CloseFrame<'_>>) -> Result<(), tungstenite::Error> {
        self.inner.close(msg).await
    }

    /// The TCP socket under the WebSocket (and TLS).
    pub fn get_ref(&self) -> &TcpStream {
        match self.inner.get_ref() {
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
            MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!("only plain and rustls connections are opened"),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Writes and flushes the pongs due, as far as the socket takes them now.
    fn poll_pongs(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), tungstenite::Error>> {
        while self.pongs_due > 0 {
            ready!(Pin::new(&mut self.inner).poll_ready(cx))?;
            Pin::new(&mut self.inner).start_send(Message::text(socketio::PONG))?;
            self.pongs_due -= 1;
            self.flush_due = true;
        }
        if self.flush_due {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.flush_due = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl Stream for WsStream {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.protocol == Protocol::Native {
            return Pin::new(&mut this.inner).poll_next(cx);
        }
        loop {
            if let Poll::Ready(Err(error)) = this.poll_pongs(cx) {
                return Poll::Ready(Some(Err(error)));
            }
            let text = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => text,
                other => return Poll::Ready(other),
            };
            let packet = match this.protocol {
                Protocol::SwitchboardSocketIo => socketio::decode_switchboard(text),
                _ => socketio::decode(text),
            };
            match packet {
                socketio::Packet::Frame(frame) => return Poll::Ready(Some(Ok(Message::Text(frame)))),
                socketio::Packet::Ping => this.pongs_due += 1,
                socketio::Packet::Closed => return Poll::Ready(Some(Ok(Message::Close(None)))),
                socketio::Packet::Other => {}
            }
        }
    }
}

impl Sink<Message> for WsStream {
    type Error = tungstenite::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let item = match (this.protocol, item) {
            (Protocol::SocketIo, Message::Text(text)) => Message::Text(socketio::encode(&text)),
            (Protocol::SwitchboardSocketIo, Message::Text(text)) => {
                this.last_ack += 1;
                Message::Text(socketio::encode_switchboard(&text, this.last_ack))
            }
            (_, item) => item,
        };
        Pin::new(&mut this.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

mod socketio;

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

/// Opens a TCP connection (from `source` when given), TLS over it for a `wss://` target, and
/// upgrades it to a WebSocket.
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
    let stream = if target.tls {
        let tls = crate::tls::connect(&target.host, stream).await;
        MaybeTlsStream::Rustls(tls.map_err(|error| Failure::new(Stage::Connect, format!("tls: {error}")))?)
    } else {
        MaybeTlsStream::Plain(stream)
    };
    let (ws, _response) = tokio_tungstenite::client_async(target.url.as_str(), stream)
        .await
        .map_err(|error| Failure::new(Stage::Upgrade, ws_reason(&error)))?;
    let mut ws = WsStream::new(ws, target.protocol);
    match target.protocol {
        Protocol::SocketIo => socketio_connect(&mut ws.inner).await?,
        // The CONNECT packet carries the login: `login` sends it.
        Protocol::SwitchboardSocketIo => socketio_open(&mut ws.inner).await?,
        Protocol::Native => {}
    }
    Ok(ws)
}

/// The Socket.IO handshake on an open WebSocket: the server's Engine.IO open packet (`0{...}`),
/// our CONNECT to the default namespace (`40`), the server's (`40{"sid":...}`).
async fn socketio_connect(ws: &mut Socket) -> Result<(), Failure> {
    let failed = |reason: String| Failure::new(Stage::Upgrade, format!("socket.io: {reason}"));
    let mut opened = false;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return Err(failed("closed during the handshake".into())),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(failed(ws_reason(&error))),
        };
        let reply = if text.starts_with('0') && !opened {
            opened = true;
            socketio::CONNECT
        } else if text.starts_with(socketio::CONNECT) && opened {
            return Ok(());
        } else if text == "2" {
            socketio::PONG
        } else if text.starts_with("44") {
            let reason: String = text.chars().skip(2).take(120).collect();
            return Err(failed(format!("connect_error {reason}")));
        } else {
            continue;
        };
        ws.send(Message::text(reply)).await.map_err(|error| failed(ws_reason(&error)))?;
    }
}

/// Waits for the server's Engine.IO open packet (`0{...}`).
async fn socketio_open(ws: &mut Socket) -> Result<(), Failure> {
    let failed = |reason: String| Failure::new(Stage::Upgrade, format!("socket.io: {reason}"));
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with('0') => return Ok(()),
            Some(Ok(Message::Close(_))) | None => return Err(failed("closed during the handshake".into())),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(failed(ws_reason(&error))),
        }
    }
}

/// How to log in.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// `login_jwt` with a signed JWT.
    Jwt(&'a str),
    /// `resume` with the token of an earlier `session` frame.
    Resume(&'a str),
    /// `register` with a user name and a password.
    Register { user: &'a str, password: &'a str },
    /// `login` with a user name and a password.
    Password { user: &'a str, password: &'a str },
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
        Login::Register { user, password } => {
            serde_json::json!({"type": "register", "username": user, "password": password, "presence": false})
        }
        Login::Password { user, password } => {
            serde_json::json!({"type": "login", "username": user, "password": password, "presence": false})
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

/// Options shared by the message scenarios (`pm`, `fanout`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// WebSocket URL of a node; repeat it for the nodes of a cluster (clients are spread over them,
    /// /metrics is scraped from each).
    #[arg(long = "url", value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// HS256 secret the servers were started with (--jwt-secret); users log in with login_jwt.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Spread connections over source addresses 127.0.0.1 .. 127.0.0.K (loopback targets only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub sources: u32,
    /// How long to measure (per step for `fanout --steps`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: u64,
    /// How long to send before measuring (before every step for `fanout --steps`).
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// After sending stops, how long to wait at most for messages still on their way.
    #[arg(long, default_value_t = 5)]
    pub grace_secs: u64,
    /// Handshakes (TCP connect to `synced`) in flight at once.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// Give up on a connection that is not set up after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// User names are `{prefix}-{i:06}`. Default: the scenario's name and a tag of this run, so
    /// that every run starts with fresh users (nothing to sync at login, no old room memberships).
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Also print all figures as one JSON line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// How clients talk to the servers: `native` (Switchboard's frames on the --url path),
    /// `socketio` (the same frames as Socket.IO events, for the Socket.IO peer in bench/peers) or
    /// `switchboard-socketio` (Switchboard's own Socket.IO endpoint, docs/socketio.md); with
    /// either Socket.IO protocol the path becomes /socket.io/.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// A Redis broker (`redis://host:port`) whose CPU (`INFO`: used_cpu_sys + used_cpu_user) is
    /// read with the nodes' /metrics, so that the window's `server.broker_cpu_seconds` covers it.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
}

impl LoadArgs {
    /// The `--url` nodes for `--protocol`, with the `--broker` to scrape alongside them.
    pub async fn nodes(&self) -> anyhow::Result<Nodes> {
        let mut nodes = Nodes::resolve_as(&self.urls, self.sources, self.protocol).await?;
        if let Some(broker) = &self.broker {
            nodes.broker = Some(metrics::redis_authority(broker)?);
        }
        Ok(nodes)
    }

    /// `--user-prefix`, or `{scenario}-{tag}` with a tag that differs from run to run.
    pub fn prefix(&self, scenario: &str, connections: u64) -> anyhow::Result<String> {
        let prefix = self.user_prefix.clone().unwrap_or_else(|| format!("{scenario}-{}", run_tag()));
        check_user_prefix(&prefix, connections.saturating_sub(1).to_string().len().max(6))?;
        Ok(prefix)
    }
}

/// Six base-36 characters from the clock (milliseconds, wrapping after 25 days).
pub fn run_tag() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    let mut value = millis % 36u64.pow(6);
    let mut tag = [b'0'; 6];
    for slot in tag.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8_lossy(&tag).into_owned()
}

/// The nodes under load, one [`Target`] per `--url`, and the source addresses for each.
pub struct Nodes {
    pub targets: Vec<Target>,
    sources: Vec<Vec<Option<IpAddr>>>,
    /// `host:port` of a Redis broker scraped with the nodes by [`Nodes::scrape`].
    pub broker: Option<String>,
}

impl Nodes {
    /// The nodes of `urls`, for the native protocol.
    pub async fn resolve(urls: &[String], sources: u32) -> anyhow::Result<Self> {
        Self::resolve_as(urls, sources, Protocol::Native).await
    }

    pub async fn resolve_as(urls: &[String], sources: u32, protocol: Protocol) -> anyhow::Result<Self> {
        let mut targets: Vec<Target> = Vec::with_capacity(urls.len());
        let mut per_target = Vec::with_capacity(urls.len());
        for url in urls {
            let target = Target::resolve_as(url, protocol).await?;
            if let Some(other) = targets.iter().find(|other| other.addr == target.addr) {
                bail!("{url} and {} are the same node ({})", other.url, target.addr);
            }
            per_target.push(target.sources(sources)?);
            targets.push(target);
        }
        if targets.is_empty() {
            bail!("no --url given");
        }
        Ok(Nodes { targets, sources: per_target, broker: None })
    }

    /// Scrapes every node's /metrics and the broker's `INFO` at once: the nodes' scrapes in order,
    /// then the broker's (marked as such, so that [`metrics::ServerDelta::between`] keeps its
    /// CPU apart). A node that fails is `None`, with a warning naming `when`.
    pub async fn scrape(&self, when: &str) -> Vec<Option<Scrape>> {
        let broker = async {
            let broker = self.broker.as_deref()?;
            Some(metrics::scrape_redis(broker).await.unwrap_or_else(|error| {
                eprintln!("warning: reading INFO of the broker {broker} {when} failed: {error:#}");
                Scrape::broker_failed()
            }))
        };
        let (mut scrapes, broker) = tokio::join!(metrics::scrape_nodes(&self.targets, when), broker);
        if let Some(broker) = broker {
            scrapes.push(Some(broker));
        }
        scrapes
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The source address of the `nth` connection to `node` (round-robin).
    pub fn source(&self, node: usize, nth: usize) -> Option<IpAddr> {
        let sources = &self.sources[node];
        sources[nth % sources.len()]
    }

    /// How many source addresses each node gets.
    pub fn sources_per_node(&self) -> usize {
        self.sources[0].len()
    }

    /// For connections placed on `placement[i]`, the source address of each (round-robin per node).
    pub fn assign_sources(&self, placement: &[usize]) -> Vec<Option<IpAddr>> {
        let mut nth = vec![0usize; self.len()];
        placement
            .iter()
            .map(|&node| {
                nth[node] += 1;
                self.source(node, nth[node] - 1)
            })
            .collect()
    }

    pub fn urls(&self) -> Vec<String> {
        self.targets.iter().map(|target| target.url.clone()).collect()
    }
}

/// Opens and logs in many connections, at most `concurrency` handshakes at once, and counts how
/// that goes. Each connection's task calls [`Connector::connect`], then [`Connector::ready`] once
/// it is set up (or [`Connector::failed`]); the scenario waits with [`Connector::wait_all`].
pub struct Connector {
    signer: JwtSigner,
    timeout: Duration,
    permits: Arc<Semaphore>,
    ready: AtomicU64,
    failures: Reasons,
    /// TCP connect to `synced`.
    pub handshake: Histogram,
}

/// How long the JWTs stay valid (they are only checked at login).
const JWT_TTL_SECS: u64 = 3600;

impl Connector {
    pub fn new(jwt_secret: &str, timeout: Duration, concurrency: u32) -> Self {
        Connector {
            signer: JwtSigner::new(jwt_secret, JWT_TTL_SECS),
            timeout,
            permits: Arc::new(Semaphore::new(concurrency as usize)),
            ready: AtomicU64::new(0),
            failures: Reasons::default(),
            handshake: Histogram::default(),
        }
    }

    /// How long setting a connection up may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for a handshake slot, then connects and logs in as `user`. Keep the permit until the
    /// connection is fully set up (e.g. has joined its room), then drop it.
    pub async fn connect(
        &self,
        target: &Target,
        source: Option<IpAddr>,
        user: &str,
    ) -> Result<(WsStream, OwnedSemaphorePermit), Failure> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| Failure::new(Stage::Local, "closed"))?;
        let jwt = self.signer.sign(user)?;
        let started = Instant::now();
        let attempt = async {
            let mut ws = open(target, source).await?;
            login(&mut ws, Login::Jwt(&jwt)).await?;
            Ok::<_, Failure>(ws)
        };
        let ws = tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(Failure::timeout(self.timeout)))?;
        self.handshake.record(crate::report::micros(started.elapsed()));
        Ok((ws, permit))
    }

    pub fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, failure: &Failure) {
        self.failures.add(failure.to_string());
    }

    pub fn ready_count(&self) -> u64 {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.snapshot()
    }

    /// Waits until `total` connections are ready or failed, printing progress once a second.
    /// Returns how long it took.
    pub async fn wait_all(&self, total: u64) -> Duration {
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_line = Duration::from_secs(1);
        loop {
            ticks.tick().await;
            let (ready, failed) = (self.ready_count(), self.failures.total());
            let elapsed = started.elapsed();
            let done = ready + failed >= total;
            if done || elapsed >= next_line {
                next_line += Duration::from_secs(1);
                eprintln!(
                    "[{:6.1}s] connected {ready:>6} failed {failed:>5} of {total} ({:.0} conn/s)",
                    elapsed.as_secs_f64(),
                    ready as f64 / elapsed.as_secs_f64().max(0.001)
                );
            }
            if done {
                return elapsed;
            }
        }
    }
}

/// A frame read from a connection: its text, `None` for a frame that is not text (ping, pong),
/// or why the connection is gone (in words, for counting).
pub fn text_frame(frame: Option<Result<Message, tungstenite::Error>>) -> Result<Option<String>, String> {
    match frame {
        Some(Ok(Message::Text(text))) => Ok(Some(text)),
        Some(Ok(Message::Close(close))) => Err(match close {
            Some(close) => format!("closed by the server ({})", u16::from(close.code)),
            None => "closed by the server".to_string(),
        }),
        Some(Ok(_)) => Ok(None),
        Some(Err(error)) => Err(format!("read error: {error}")),
        None => Err("connection closed".to_string()),
    }
}

/// Sends a close frame and waits briefly for the server's; then drops the connection.
pub async fn close(mut ws: WsStream) {
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Closes many connections at once, giving up after `within`.
pub async fn close_all(connections: Vec<WsStream>, within: Duration) {
    let closing = futures_util::future::join_all(connections.into_iter().map(close));
    let _ = tokio::time::timeout(within, closing).await;
}

/// Monotonic nanoseconds since the bench started; every task reads the same clock, so a time
/// embedded in a message by one connection can be compared with the receiving connection's.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// A clock counting from `unix_ms` (in the past), so that processes on one machine agree.
    pub fn since_unix_ms(unix_ms: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or_default();
        let ago = Duration::from_millis(now_ms.saturating_sub(unix_ms));
        Clock { epoch: Instant::now().checked_sub(ago).unwrap_or_else(Instant::now) }
    }

    pub fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant at `nanos` on this clock.
    pub fn instant(&self, nanos: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(nanos))
    }

    pub fn secs(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

/// The server's frames are JSON objects with `type` first (`{"type":"message",...}`). These
/// helpers look at the raw text, without building a JSON value, for the few fields the load
/// scenarios need.
pub mod frame {
    /// The value of the first `"type"` field.
    pub fn kind(frame: &str) -> Option<&str> {
        str_field(frame, "\"type\":\"")
    }

    /// The string after `key` (which ends with the opening quote, e.g. `"code":"`), up to the next
    /// quote; escapes are not decoded.
    pub fn str_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
        let start = frame.find(key)? + key.len();
        let len = frame[start..].find('"')?;
        Some(&frame[start..start + len])
    }

    /// The unsigned integer after `key` (e.g. `"ref":`), the first occurrence.
    pub fn u64_field(frame: &str, key: &str) -> Option<u64> {
        let start = frame.find(key)? + key.len();
        leading_u64(&frame[start..])
    }

    fn leading_u64(text: &str) -> Option<u64> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        text[..digits].parse().ok()
    }

    /// The text of a load message: `sb <id> <seq> <sent nanos>`: `id` names the sender (a pair, a
    /// sender of a room), `seq` counts its messages from 0, `sent nanos` is [`super::Clock`] time.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Probe {
        pub id: u32,
        pub seq: u32,
        pub sent_nanos: u64,
    }

    const PROBE_TEXT: &str = "\"text\":\"sb ";

    impl Probe {
        pub fn text(&self) -> String {
            format!("sb {} {} {}", self.id, self.seq, self.sent_nanos)
        }

        /// The probe in a `message` frame's text, if it carries one.
        pub fn in_message(frame: &str) -> Option<Probe> {
            let start = frame.find(PROBE_TEXT)? + PROBE_TEXT.len();
            let text = &frame[start..];
            let text = &text[..text.find('"')?];
            let mut numbers = text.split(' ');
            let probe = Probe {
                id: numbers.next()?.parse().ok()?,
                seq: numbers.next()?.parse().ok()?,
                sent_nanos: numbers.next()?.parse().ok()?,
            };
            numbers.next().is_none().then_some(probe)
        }
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
    fn frames_are_read_without_parsing_json() {
        let ack = r#"{"type":"ack","ref":17,"conv":"dm:a:b","id":"x","seq":45,"ts":1,"duplicate":false}"#;
        assert_eq!(frame::kind(ack), Some("ack"));
        assert_eq!(frame::u64_field(ack, "\"ref\":"), Some(17));
        assert_eq!(frame::u64_field(ack, "\"seq\":"), Some(45));
        let error = r#"{"type":"error","ref":3,"code":"rate_limited","message":"slow down"}"#;
        assert_eq!(frame::str_field(error, "\"code\":\""), Some("rate_limited"));
        let probe = frame::Probe { id: 7, seq: 12, sent_nanos: 123_456_789 };
        let message = format!(
            r#"{{"type":"message","conv":"dm:a:b","id":"x","seq":13,"from":"a","to":"b","text":"{}","ts":1}}"#,
            probe.text()
        );
        assert_eq!(frame::kind(&message), Some("message"));
        assert_eq!(frame::Probe::in_message(&message), Some(probe));
        assert_eq!(frame::u64_field(&message, "\"seq\":"), Some(13));
        assert_eq!(frame::Probe::in_message(r#"{"type":"message","text":"sb 1 2"}"#), None);
        assert_eq!(frame::Probe::in_message(r#"{"type":"message","text":"hello"}"#), None);
    }

    #[test]
    fn run_tags_are_short_names() {
        let tag = run_tag();
        assert_eq!(tag.len(), 6);
        assert!(check_user_prefix(&format!("fanout-{tag}"), 6).is_ok());
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
    async fn sources_go_round_robin_per_node() {
        let urls = ["ws://127.0.0.1:1/ws".to_string(), "ws://127.0.0.1:2/ws".to_string()];
        let nodes = Nodes::resolve(&urls, 2).await.unwrap();
        assert_eq!(nodes.len(), 2);
        let ip = |last| Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last)));
        assert_eq!(nodes.assign_sources(&[0, 1, 0, 1, 0]), [ip(1), ip(1), ip(2), ip(2), ip(1)]);
        let twice = [urls[0].clone(), "ws://127.0.0.1:1/other".to_string()];
        assert!(Nodes::resolve(&twice, 1).await.is_err());
    }

    #[tokio::test]
    async fn load_options_take_a_protocol_and_a_broker() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["bench", "--jwt-secret", "s"], args].concat());
        let defaults = parse(&[]).unwrap().load;
        assert_eq!((defaults.protocol, defaults.broker.as_deref()), (Protocol::Native, None));
        let load =
            parse(&["--protocol", "socketio", "--broker", "redis://127.0.0.1:16391", "--url", "ws://127.0.0.1:3/x"])
                .unwrap()
                .load;
        assert_eq!(load.protocol, Protocol::SocketIo);
        let nodes = load.nodes().await.unwrap();
        assert_eq!(nodes.targets[0].url, "ws://127.0.0.1:3/socket.io/?EIO=4&transport=websocket");
        assert_eq!(nodes.broker.as_deref(), Some("127.0.0.1:16391"));
        assert!(parse(&["--protocol", "grpc"]).is_err());
    }

    /// A stand-in Socket.IO server: the Engine.IO and Socket.IO handshakes, a ping, a `frame`
    /// event each way.
    #[tokio::test]
    async fn socketio_connections_handshake_answer_pings_and_carry_frames() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            ws.send(Message::text(r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#))
                .await
                .unwrap();
            let mut texts = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else { continue };
                texts.push(text.clone());
                match text.as_str() {
                    "40" => {
                        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
                        ws.send(Message::text("2")).await.unwrap();
                        ws.send(Message::text(r#"42["frame",{"type":"hello","protocol":1}]"#)).await.unwrap();
                    }
                    "3" => {}
                    _ => break,
                }
            }
            texts
        });
        let target = Target::resolve_as(&format!("ws://127.0.0.1:{port}/ws"), Protocol::SocketIo).await.unwrap();
        let mut ws = open(&target, None).await.unwrap();
        assert_eq!(ws.protocol(), Protocol::SocketIo);
        let hello = text_frame(ws.next().await).unwrap().unwrap();
        assert_eq!(hello, r#"{"type":"hello","protocol":1}"#);
        ws.send(Message::text(r#"{"type":"ping","ref":1}"#)).await.unwrap();
        let texts = server.await.unwrap();
        assert_eq!(texts, ["40", "3", r#"42["frame",{"type":"ping","ref":1}]"#]);
    }
}
