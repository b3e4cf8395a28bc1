use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use switchboard_bus::InProcessBroker;
use switchboard_core::{ChatConfig, ChatNode};
use switchboard_server::{RunningServer, Server, ServerConfig};
use switchboard_store::{SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running server on 127.0.0.1 with a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    running: Option<RunningServer>,
}

#[derive(Default)]
pub struct TestServerBuilder {
    chat: ChatConfig,
    server: ServerConfig,
    sqlite_file: Option<PathBuf>,
    /// Shared with other nodes of an in-process cluster.
    broker: Option<InProcessBroker>,
    store: Option<Arc<dyn Store>>,
}

impl TestServerBuilder {
    pub fn chat(mut self, configure: impl FnOnce(&mut ChatConfig)) -> Self {
        configure(&mut self.chat);
        self
    }

    pub fn server(mut self, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        configure(&mut self.server);
        self
    }

    /// Stores in this SQLite file instead of memory, so a restart keeps the data.
    pub fn sqlite_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sqlite_file = Some(path.into());
        self
    }

    /// Joins this node to an in-process cluster: nodes built with the same broker reach each other
    /// over the bus.
    pub fn broker(mut self, broker: &InProcessBroker) -> Self {
        self.broker = Some(broker.clone());
        self
    }

    /// Uses this store, shared with other nodes.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    pub async fn start(mut self) -> TestServer {
        if self.server.listen.port() == 8080 {
            self.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let store: Arc<dyn Store> = match (self.store.take(), &self.sqlite_file) {
            (Some(store), _) => store,
            (None, Some(path)) => {
                Arc::new(SqliteStore::open(path, Default::default()).await.expect("open sqlite store"))
            }
            (None, None) => Arc::new(SqliteStore::open_in_memory().await.expect("open in-memory store")),
        };
        let broker = self.broker.take().unwrap_or_default();
        let bus = Arc::new(broker.join(&self.chat.node_id));
        let node = ChatNode::start(self.chat, store.clone(), bus).await.expect("start chat node");
        let running = Server::new(self.server, node, store).start().await.expect("start server");
        TestServer { addr: running.local_addr, running: Some(running) }
    }
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server that allows `login_open` (user name only), for tests that need many users fast.
    pub async fn with_open_auth() -> TestServer {
        Self::builder().chat(|c| c.open_auth = true).start().await
    }

    /// A server with the default settings and an in-memory store.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The `wss://` URL, for a server started with TLS.
    pub fn wss_url(&self) -> String {
        format!("wss://localhost:{}/ws", self.addr.port())
    }

    pub fn node(&self) -> &ChatNode {
        self.running.as_ref().expect("server running").node()
    }

    /// A plain HTTP GET; returns the status code and the body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    /// The value of one metric on `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        metric_value(&body, name).unwrap_or_else(|| panic!("metric {name} missing from /metrics"))
    }

    /// Graceful shutdown: clients get close code 1012, the pipeline is flushed, the store closed.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.running.is_some() {
            // Dropped without shutdown: the runtime ends the tasks with the test.
            self.running.take();
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await
}

/// Writes one whole HTTP/1.1 request (the server closes after answering) and returns the status
/// and the body.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect for http");
    stream.write_all(request.as_bytes()).await.expect("write http request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read http response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// An HTTP request with an optional bearer key and JSON body; the status and the JSON answer
/// (`Null` when the body is not JSON).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|value| value.to_string()).unwrap_or_default();
    let authorization = bearer.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = exchange(addr, &request).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// Finds `name value` in Prometheus text.
pub fn metric_value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
}

/// N nodes in this process joined by one in-process bus and sharing one in-memory store: a cluster
/// for fast tests (the fault tests use separate processes instead).
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    /// Their bus: tests hold a node's deliveries back with it.
    pub broker: InProcessBroker,
}

impl TestCluster {
    /// Nodes `n1`..`nN` with open login.
    pub async fn start(size: usize) -> TestCluster {
        Self::start_with(size, |_| {}).await
    }

    /// Like `start`, with every node's settings adjusted by `configure`.
    pub async fn start_with(size: usize, configure: impl Fn(&mut ChatConfig)) -> TestCluster {
        Self::start_with_server(size, configure, |_| {}).await
    }

    /// Like `start_with`, with every node's server settings adjusted by `configure_server`.
    pub async fn start_with_server(
        size: usize,
        configure: impl Fn(&mut ChatConfig),
        configure_server: impl Fn(&mut ServerConfig),
    ) -> TestCluster {
        let broker = InProcessBroker::new();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("open in-memory store"));
        let mut nodes = Vec::with_capacity(size);
        for index in 1..=size {
            let node = TestServer::builder()
                .chat(|c| {
                    c.node_id = format!("n{index}");
                    c.open_auth = true;
                    configure(c);
                })
                .server(&configure_server)
                .broker(&broker)
                .store(store.clone())
                .start()
                .await;
            nodes.push(node);
        }
        TestCluster { nodes, broker }
    }

    /// The WebSocket URL of node `index` (0-based).
    pub fn url(&self, index: usize) -> String {
        self.nodes[index].ws_url()
    }
}
