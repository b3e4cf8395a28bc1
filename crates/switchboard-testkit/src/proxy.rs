//! A TCP proxy the test controls, for making a backing service unreachable without touching it:
//! it forwards a fixed local port to a target, and can be stopped (the listener closed and every
//! forwarded connection dropped, so the client sees its connections die and new ones refused) and
//! started again on the same port.
//!
//! The proxy runs on a runtime of its own, so it keeps forwarding whatever the test's runtime is
//! doing (a test thread blocked waiting for a process, for example), and its methods are plain
//! blocking calls that return once the change is in effect.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// How long `stop` waits for the forwarding tasks to be gone, and `start` for the port to be free.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Forwards `127.0.0.1:port` to a target while running.
pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    runtime: Option<Runtime>,
    running: Option<Running>,
}

/// The tasks of one running period: the accept loop, and one task per forwarded connection.
struct Running {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Listens on a free local port and forwards every connection to `target`.
    pub fn forward_to(target: SocketAddr) -> TcpProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-tcp-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let mut proxy = TcpProxy { port, target, runtime: Some(runtime), running: None };
        proxy.listen(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Closes the listener and drops every forwarded connection (both sides); returns once they
    /// are closed, so that a connection attempt made afterwards is refused.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else { return };
        running.accept.abort();
        let connections: Vec<JoinHandle<()>> =
            running.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..).collect();
        for connection in &connections {
            connection.abort();
        }
        // An aborted task has dropped its future (and with it its sockets) once it is finished.
        let deadline = Instant::now() + SETTLE_LIMIT;
        while !running.accept.is_finished() || connections.iter().any(|connection| !connection.is_finished()) {
            assert!(Instant::now() < deadline, "proxy tasks still running {SETTLE_LIMIT:?} after stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Listens again on the same port (after `stop`).
    pub fn start(&mut self) {
        assert!(self.running.is_none(), "proxy already running");
        let address = self.addr();
        let deadline = Instant::now() + SETTLE_LIMIT;
        let listener = loop {
            match StdListener::bind(address) {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot listen on {address} again: {error}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        self.listen(listener);
    }

    fn listen(&mut self, listener: StdListener) {
        listener.set_nonblocking(true).expect("nonblocking proxy listener");
        let runtime = self.runtime.as_ref().expect("proxy runtime");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = runtime.spawn(accept_loop(listener, self.target, connections.clone()));
        self.running = Some(Running { accept, connections });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.accept.abort();
            for connection in running.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
                connection.abort();
            }
        }
        // Dropping a runtime blocks, which is not allowed inside the test's runtime; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: StdListener, target: SocketAddr, connections: Arc<Mutex<Vec<JoinHandle<()>>>>) {
    let listener = TcpListener::from_std(listener).expect("proxy listener");
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let task = tokio::spawn(forward(inbound, target));
        let mut connections = connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connections.retain(|connection| !connection.is_finished());
        connections.push(task);
    }
}

/// Copies both ways until either side closes; a target that cannot be reached closes the client.
async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
