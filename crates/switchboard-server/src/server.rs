//! The listener: accept loop, HTTP routing, WebSocket upgrades, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_core::ChatNode;
use switchboard_store::Store;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConnection;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::http::{self, HttpResponse};
use crate::{admin, api, seed001, socketio, tls, web, websocket};

/// What every connection task shares.
pub struct ServerContext {
    pub config: ServerConfig,
    pub node: ChatNode,
    pub store: Arc<dyn Store>,
    /// WebSocket connections open, logged in or not.
    pub open_sockets: AtomicI64,
    /// The webhook sender's counters, when a webhook is set.
    pub webhooks: Option<Arc<crate::webhooks::WebhookMetrics>>,
    /// The node's counters over the last minute, for `/admin`.
    pub counter_history: Arc<crate::admin::recent::CounterHistory>,
    /// `/socket.io/`.
    pub(crate) socketio: socketio::Endpoint,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Each connection task holds a clone; when all are gone, the drain is complete.
    pub(crate) drain: mpsc::Sender<()>,
}

impl ServerContext {
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

pub struct Server {
    config: ServerConfig,
    node: ChatNode,
    store: Arc<dyn Store>,
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    context: Arc<ServerContext>,
    shutdown: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
    accept_task: JoinHandle<()>,
}

impl Server {
    pub fn new(config: ServerConfig, node: ChatNode, store: Arc<dyn Store>) -> Self {
        Server { config, node, store }
    }

    /// Binds the listener and starts accepting.
    pub async fn start(self) -> std::io::Result<RunningServer> {
        let tls = match &self.config.tls {
            Some(files) => {
                let certificates = tls::Certificates::load(files.clone()).map_err(std::io::Error::other)?;
                Some((certificates.acceptor().map_err(std::io::Error::other)?, certificates))
            }
            None => None,
        };
        let listener = bind_listener(self.config.listen)?;
        let local_addr = listener.local_addr()?;
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let (drain_sender, drained) = mpsc::channel(1);
        let webhooks = self.config.webhook.clone().map(|webhook| crate::webhooks::start(&self.node, webhook));
        let counter_history = Arc::new(crate::admin::recent::CounterHistory::default());
        tokio::spawn(crate::admin::recent::sample(
            self.node.clone(),
            counter_history.clone(),
            shutdown_receiver.clone(),
        ));
        let socketio = socketio::Endpoint::new(&self.config, self.node.clone(), self.store.clone());
        let context = Arc::new(ServerContext {
            webhooks,
            counter_history,
            socketio,
            config: self.config,
            node: self.node,
            store: self.store,
            open_sockets: AtomicI64::new(0),
            shutdown: shutdown_receiver,
            drain: drain_sender,
        });
        let acceptor = tls.map(|(acceptor, certificates)| {
            tokio::spawn(tls::watch(certificates, context.shutdown.clone()));
            acceptor
        });
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, context.clone()));
        tracing::info!(%local_addr, node = context.node.node_id(), "switchboard listening");
        Ok(RunningServer { local_addr, context, shutdown: shutdown_sender, drained, accept_task })
    }
}

impl RunningServer {
    pub fn node(&self) -> &ChatNode {
        &self.context.node
    }

    /// Stops accepting, tells every client to reconnect (close code 1012), waits up to the grace
    /// period for connections to close, then flushes the message pipeline and closes the store.
    pub async fn shutdown(self) {
        let RunningServer { context, shutdown, mut drained, accept_task, .. } = self;
        let _ = shutdown.send(true);
        accept_task.abort();
        let grace = context.config.shutdown_grace;
        let node = context.node.clone();
        context.socketio.close().await;
        // Our own clone of the drain sender lives in the context; drop it so that only the
        // connection tasks hold one.
        drop(context);
        match tokio::time::timeout(grace, drained.recv()).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(grace_secs = grace.as_secs(), "grace period over with connections still open"),
        }
        node.shutdown().await;
    }
}

/// Binds with a deep accept backlog: the default of 128 overflows under a burst of reconnects and
/// makes clients wait a second for the kernel's retry.
fn bind_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accept backlog; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, context: Arc<ServerContext>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let context = context.clone();
        match &acceptor {
            None => {
                tokio::spawn(serve_http(stream, peer, context));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve_http(stream, peer, context).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        }
    }
}

async fn serve_http<Stream>(stream: Stream, peer: SocketAddr, context: Arc<ServerContext>)
where
    Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service_context = context.clone();
    let service = service_fn(move |request| {
        let context = service_context.clone();
        async move { Ok::<_, Infallible>(route(request, peer, context).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut shutdown = context.shutdown.clone();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "http connection ended with an error");
            }
        }
        _ = shutdown.wait_for(|stopping| *stopping) => {}
    }
}

async fn route(mut request: Request<Incoming>, peer: SocketAddr, context: Arc<ServerContext>) -> HttpResponse {
    if request.uri().path().starts_with(socketio::PATH) {
        let peer = client_address(request.headers(), peer, &context.config.trusted_proxies);
        request.extensions_mut().insert(peer);
        return context.socketio.serve(request).await;
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/ws") => upgrade(request, peer, context),
        (&Method::GET, "/") if header_has_token(&request, UPGRADE, "websocket") => {
            seed001_upgrade(request, peer, context)
        }
        (&Method::GET, "/server") => seed001::gateway(&context, request.uri().query()),
        (&Method::GET, "/healthz") => http::healthz(),
        (&Method::GET, "/readyz") => http::readyz(&context).await,
        (&Method::GET, "/metrics") => http::metrics(&context),
        (&Method::GET, "/admin") => admin::page(request.headers(), &context).await,
        (&Method::GET, "/api/nodes") => http::nodes(&context),
        (&Method::GET, "/api/connect") => http::connect(&context),
        (_, path) if path.starts_with("/api/") => api::serve(request, &context).await,
        (&Method::GET, path) => web::serve(path, request.headers()).unwrap_or_else(http::not_found),
        _ => http::not_found(),
    }
}

fn header_has_token(request: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the address the proxy
/// reports in `X-Real-IP` (or the last hop of `X-Forwarded-For`). Login throttling counts per
/// client address, so behind nginx it must not see every client as nginx.
fn client_address(headers: &hyper::HeaderMap, peer: SocketAddr, trusted: &[std::net::IpAddr]) -> SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let header_ip = |name: &str| -> Option<std::net::IpAddr> {
        let value = headers.get(name)?.to_str().ok()?;
        value.rsplit(',').next()?.trim().parse().ok()
    };
    match header_ip("x-real-ip").or_else(|| header_ip("x-forwarded-for")) {
        Some(ip) => SocketAddr::new(ip, peer.port()),
        None => peer,
    }
}

/// The socket, TLS session and already-read bytes of an upgraded connection. Taken apart outside
/// the connection task's future so that its state does not hold hyper's upgrade parts (1.2 KiB
/// for TLS) for the life of the connection: every idle connection paid for them.
fn into_socket(upgraded: Upgraded) -> Option<(TcpStream, Option<Box<ServerConnection>>, Bytes)> {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return Some((parts.io.into_inner(), None, parts.read_buf)),
        Err(upgraded) => upgraded,
    };
    let parts = upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>().ok()?;
    let (stream, session) = parts.io.into_inner().into_inner();
    Some((stream, Some(Box::new(session)), parts.read_buf))
}

fn upgrade(mut request: Request<Incoming>, peer: SocketAddr, context: Arc<ServerContext>) -> HttpResponse {
    if context.shutting_down() {
        return http::text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "shutting down\n");
    }
    let is_upgrade =
        header_has_token(&request, CONNECTION, "upgrade") && header_has_token(&request, UPGRADE, "websocket");
    let version_ok = request.headers().get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return http::text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "websocket upgrade expected\n");
    };
    if !is_upgrade || !version_ok {
        return http::text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "websocket upgrade expected (version 13)\n",
        );
    }
    let peer = client_address(request.headers(), peer, &context.config.trusted_proxies);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let connection_task = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, %peer, "websocket upgrade failed");
                return;
            }
        };
        match into_socket(upgraded) {
            Some((stream, tls, leftover)) => websocket::serve(stream, tls, leftover, peer, context).await,
            None => tracing::error!("upgraded connection is neither tcp nor tls"),
        }
    };
    tracing::trace!(bytes = std::mem::size_of_val(&connection_task), "connection task size");
    tokio::spawn(connection_task);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&switchboard_protocol::ws::accept_key(&key)) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A WebSocket upgrade at `/`: seed 001's protocol (see [`seed001`]).
fn seed001_upgrade(mut request: Request<Incoming>, peer: SocketAddr, context: Arc<ServerContext>) -> HttpResponse {
    let key = request.headers().get(SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(key), false) = (key, context.shutting_down()) else {
        return http::text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "websocket upgrade expected\n");
    };
    let peer = client_address(request.headers(), peer, &context.config.trusted_proxies);
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            seed001::serve(upgraded, peer, context).await;
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&switchboard_protocol::ws::accept_key(&key)) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7"));
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = ["127.0.0.1".parse().unwrap()];
        assert_eq!(client_address(&headers, proxy, &trusted).ip().to_string(), "198.51.100.7");
        assert_eq!(client_address(&headers, proxy, &[]), proxy, "nobody is trusted by default");
        headers.insert("x-real-ip", HeaderValue::from_static("192.0.2.1"));
        assert_eq!(client_address(&headers, proxy, &trusted).ip().to_string(), "192.0.2.1");
        let stranger: SocketAddr = "10.9.9.9:1".parse().unwrap();
        assert_eq!(client_address(&headers, stranger, &trusted), stranger);
    }
}
