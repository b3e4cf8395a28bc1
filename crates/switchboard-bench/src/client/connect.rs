//! Opening a connection (TCP, TLS, the WebSocket upgrade, Socket.IO's handshakes), and the
//! [`Connector`] that opens and logs in many at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use tokio::net::TcpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::failure::ws_reason;
use super::stream::Socket;
use super::{login, socketio, Failure, JwtSigner, Login, Protocol, Stage, Target, WsStream};
use crate::report::{Histogram, Reasons};

/// Opens a TCP connection (from `source` when given), TLS over it for a `wss://` target, and
/// upgrades it to a WebSocket.
pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<WsStream, Failure> {
    let io = |error: std::io::Error| Failure::new(Stage::Connect, error.to_string());
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
    if let Some(source) = source {
        // Lets a port whose last connection sits in TIME_WAIT be reused by the next run.
        socket.set_reuseaddr(true).map_err(io)?;
        // The port is chosen by `connect`, unique per 4-tuple, not by `bind`, whose search for a
        // port no bound socket holds grows with the sockets already open: tens of thousands of
        // connections from one process made every new one slower.
        setsockopt(&socket, IpBindAddressNoPort, &true).map_err(|error| io(error.into()))?;
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

#[cfg(test)]
mod tests {
    use super::super::text_frame;
    use super::*;

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
