//! Real backing services for tests: `redis-server` and `nats-server` processes started from the
//! binaries on PATH on free ports (so tests can kill and restart them), and a database of its own
//! on the machine's PostgreSQL (created for the test, dropped after).

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port nobody listens on right now, and never handed out before in this process: tests run
/// side by side, and one that kills its broker leaves the port free until it starts it again, when
/// another test's new broker must not have taken it.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("free port");
        if HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `port` (bounded: a service that does not come
/// up fails the test).
pub fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port} after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A broker process the test owns: it can be stopped (SIGKILL) and started again on the same port.
pub struct ServiceProcess {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    pub port: u16,
    child: Option<Child>,
    /// Holds the service's files (NATS JetStream store); removed with the process.
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// A redis-server on a free port, persisting nothing.
    pub fn redis() -> ServiceProcess {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let args = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        Self::start_new("redis", "redis-server", args, port, dir)
    }

    /// A nats-server on a free port.
    pub fn nats() -> ServiceProcess {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let args = vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        Self::start_new("nats", "nats-server", args, port, dir)
    }

    fn start_new(
        name: &'static str,
        program: &'static str,
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
    ) -> Self {
        let mut service = ServiceProcess { name, program, args, port, child: None, _dir: dir };
        service.start();
        service
    }

    /// `redis://127.0.0.1:PORT` or `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.name, self.port)
    }

    /// Starts the process (again) on its port and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let child = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {} (is it on PATH?): {error}", self.program));
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
        let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
        assert!(exited.is_none(), "{} on port {} exited ({exited:?}): is the port taken?", self.name, self.port);
    }

    /// Kills the process (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A database of its own on the machine's PostgreSQL (127.0.0.1:5432, trust auth), dropped when
/// this value is dropped. `SWITCHBOARD_TEST_POSTGRES` overrides the server URL (without database).
pub struct TestDatabase {
    pub name: String,
    server: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let server =
            std::env::var("SWITCHBOARD_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("switchboard_test_{}_{}", std::process::id(), rand_suffix());
        psql(&server, "postgres", &format!("CREATE DATABASE {name}"));
        TestDatabase { name, server }
    }

    /// The URL of the database, for `--store`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// The address of the PostgreSQL server.
    pub fn server_addr(&self) -> SocketAddr {
        let (_, host) = self.split_server();
        let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
        use std::net::ToSocketAddrs;
        host.to_socket_addrs().expect("postgres address").next().expect("a postgres address")
    }

    /// The URL of the database reached through `via` (a [`crate::proxy::TcpProxy`] in front of
    /// the server), for `--store`.
    pub fn url_through(&self, via: SocketAddr) -> String {
        let (scheme_and_user, _) = self.split_server();
        format!("{scheme_and_user}{via}/{}", self.name)
    }

    /// `postgres://user@` and `host[:port]` of the server URL.
    fn split_server(&self) -> (String, &str) {
        let (scheme, rest) = self.server.split_once("://").expect("a postgres:// URL");
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once('@') {
            Some((user, host)) => (format!("{scheme}://{user}@"), host),
            None => (format!("{scheme}://"), rest),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        psql(&self.server, "postgres", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(server: &str, database: &str, sql: &str) {
    let status = Command::new("psql")
        .arg(format!("{server}/{database}"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("run psql (is the postgresql client on PATH?)");
    assert!(status.success(), "psql failed: {sql}");
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish() % 1_000_000_000
}

/// The path of a binary the test builds (for tests that spawn the server as a process).
pub fn binary_path(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join(name)
}

/// A `switchboard serve` process: for tests that kill (SIGKILL), pause (SIGSTOP) or restart a node.
pub struct NodeProcess {
    pub id: String,
    pub port: u16,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts `binary serve --listen 127.0.0.1:PORT --node-id ID --data-dir TMP ARGS...` on a free
    /// port and waits until `/readyz` answers 200. Pass `env!("CARGO_BIN_EXE_switchboard")`.
    pub fn start(binary: &str, id: &str, args: &[&str]) -> NodeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut all_args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--node-id".into(),
            id.into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ];
        all_args.extend(args.iter().map(|arg| arg.to_string()));
        let log = dir.path().join("node.log");
        let mut node =
            NodeProcess { id: id.into(), port, binary: binary.into(), args: all_args, child: None, log, _dir: dir };
        node.restart();
        node
    }

    /// The running process's id; `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the process (again, on the same port and data) and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("node log file");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .envs(std::env::vars().filter(|(name, _)| !name.starts_with("SWITCHBOARD_")).collect::<Vec<_>>())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the switchboard binary");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20));
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("node {} exited during start ({status}); log:\n{}", self.id, self.log_text());
                }
            }
            if http_status(self.addr(), "/readyz") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "node {} not ready after {limit:?}; log:\n{}", self.id, self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the node dies without a word to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the node starts its graceful shutdown; `wait_for_exit` sees it end.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits (bounded) until the process has exited; returns whether it exited successfully.
    pub fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut child = self.child.take().expect("node running");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the node") {
                return status.success();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {} still running {limit:?} after being asked to stop; log:\n{}", self.id, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the node stalls, sockets open, answering nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("node running").id();
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// What the node logged, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking `GET path` on a node, for readiness polling: the status code, or None.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A real cluster for tests: `switchboard serve` processes `n1`..`nN` over one broker, sharing one
/// fresh database, with open login and fast heartbeats. A failed test prints every node's log.
pub struct ProcessCluster {
    pub nodes: Vec<NodeProcess>,
    pub broker: ServiceProcess,
    /// Between the nodes and PostgreSQL, when started with [`ProcessCluster::start_behind_proxy`]:
    /// stopping it cuts the store off.
    pub store_proxy: Option<crate::proxy::TcpProxy>,
    _database: TestDatabase,
}

impl ProcessCluster {
    /// Starts `size` nodes of `binary` (pass `env!("CARGO_BIN_EXE_switchboard")`) over `broker`,
    /// each with `extra` flags added.
    pub fn start(binary: &str, broker: ServiceProcess, size: usize, extra: &[&str]) -> ProcessCluster {
        let database = TestDatabase::create();
        let store = database.url();
        Self::start_on(binary, broker, database, &store, None, size, extra)
    }

    /// Like [`ProcessCluster::start`], with the nodes reaching PostgreSQL through `store_proxy`.
    pub fn start_behind_proxy(binary: &str, broker: ServiceProcess, size: usize, extra: &[&str]) -> ProcessCluster {
        let database = TestDatabase::create();
        let proxy = crate::proxy::TcpProxy::forward_to(database.server_addr());
        let store = database.url_through(proxy.addr());
        Self::start_on(binary, broker, database, &store, Some(proxy), size, extra)
    }

    fn start_on(
        binary: &str,
        broker: ServiceProcess,
        database: TestDatabase,
        store: &str,
        store_proxy: Option<crate::proxy::TcpProxy>,
        size: usize,
        extra: &[&str],
    ) -> ProcessCluster {
        let bus = broker.url();
        let cluster_name = format!("c{}", free_port());
        let mut args = vec![
            "--bus",
            bus.as_str(),
            "--store",
            store,
            "--cluster",
            cluster_name.as_str(),
            "--open-auth",
            "--heartbeat-ms",
            "200",
        ];
        args.extend_from_slice(extra);
        let nodes = (1..=size).map(|index| NodeProcess::start(binary, &format!("n{index}"), &args)).collect();
        ProcessCluster { nodes, broker, store_proxy, _database: database }
    }

    /// The WebSocket URL of node `index` (0-based).
    pub fn url(&self, index: usize) -> String {
        self.nodes[index].ws_url()
    }

    pub fn addr(&self, index: usize) -> SocketAddr {
        self.nodes[index].addr()
    }

    /// The ids of the nodes the gateway of node `index` lists, sorted.
    pub async fn listed_nodes(&self, index: usize) -> Vec<String> {
        let (_, body) = crate::server::http_get(self.addr(index), "/api/nodes").await;
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut ids: Vec<String> = listed["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().filter_map(|node| node["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// One metric of node `index`'s `/metrics`.
    pub async fn metric(&self, index: usize, name: &str) -> f64 {
        let (_, body) = crate::server::http_get(self.addr(index), "/metrics").await;
        crate::server::metric_value(&body, name).unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("----- log of node {} -----\n{}", node.id, node.log_text());
            }
        }
    }
}
