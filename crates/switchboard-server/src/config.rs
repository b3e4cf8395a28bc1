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
            socketio_origins: Vec::new(),
        }
    }
}
