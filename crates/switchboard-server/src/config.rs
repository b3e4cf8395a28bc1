use std::net::SocketAddr;
use std::time::Duration;

/// Network settings of one server process.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest WebSocket message accepted; larger ones are skipped and answered with
    /// `frame_too_large`.
    pub max_frame_bytes: usize,
    /// Time a new connection has to log in.
    pub auth_timeout: Duration,
    /// A ping goes out after this long without traffic from the client; a client silent for
    /// twice as long is closed as dead.
    pub ping_interval: Duration,
    /// A socket that accepts no bytes for this long while the server has frames for it is cut off.
    pub write_timeout: Duration,
    /// On shutdown, how long connections get to close before the server stops anyway.
    pub shutdown_grace: Duration,
    /// Frames a connection may send before logging in that fail (wrong password, bad frame).
    pub max_login_attempts: u32,
    /// Proxies (nginx) whose `X-Real-IP` / `X-Forwarded-For` is believed; nobody by default.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Certificate and key for TLS on the listener (`wss://`, `https://`); plain when absent.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Keys of the server API (`/api/`); it is off when there are none.
    pub api_keys: crate::api::ApiKeys,
    /// Where the node's hook events are POSTed; none when absent.
    pub webhook: Option<crate::webhooks::WebhookConfig>,
    /// Origins allowed on `/socket.io/` (echoed with credentials allowed); empty: any.
    pub socketio_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_frame_bytes: 64 * 1024,
            auth_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_login_attempts: 10,
            trusted_proxies: Vec::new(),
            tls: None,
            api_keys: crate::api::ApiKeys::default(),
            webhook: None,
            socketio_origins: Vec::new(),
        }
    }
}
