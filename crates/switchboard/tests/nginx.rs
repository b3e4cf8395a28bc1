//! deploy/nginx.conf in front of three real node processes (Redis bus, PostgreSQL store): a real
//! nginx runs the shipped configuration with only its ports changed, and clients that know nothing
//! but nginx's address are spread over the nodes and chat across them.

mod compat_support;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::http_get;
use switchboard_testkit::services::{free_port, ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
const SHIPPED_CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nginx.conf"));

/// The `nginx` binary on PATH. Missing nginx fails the test (CI installs it): a skipped test would
/// leave the shipped configuration unchecked without anyone noticing.
fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("nginx")).find(|candidate| candidate.is_file()).unwrap_or_else(
        || {
            panic!(
                "nginx is not on PATH: this test runs deploy/nginx.conf in a real nginx. Install it \
                 (Debian: apt-get install nginx-light, as .ci/run does; the binary is /usr/sbin/nginx, \
                 so /usr/sbin must be on PATH)"
            )
        },
    )
}

/// The shipped configuration with the nodes' and the listener's ports replaced; everything else
/// stays as shipped. Each replaced line must be there as often as expected, so a change to the shipped
/// file that this rendering no longer fits fails here rather than testing something else.
fn render_config(node_ports: &[u16], listen_port: u16) -> String {
    let mut config = SHIPPED_CONFIG.to_owned();
    let mut replacements: Vec<(String, String)> = [8081, 8082, 8083]
        .iter()
        .zip(node_ports)
        .map(|(shipped, port)| (format!("server 127.0.0.1:{shipped} "), format!("server 127.0.0.1:{port} ")))
        .collect();
    replacements.push(("listen 8080;".into(), format!("listen 127.0.0.1:{listen_port};")));
    for (from, to) in replacements {
        // Node lines appear in the native upstream and in the sticky Socket.IO one.
        let expected = if from.starts_with("server ") { 2 } else { 1 };
        assert_eq!(
            config.matches(&from).count(),
            expected,
            "deploy/nginx.conf should contain `{from}` {expected} times"
        );
        config = config.replace(&from, &to);
    }
    config
}

/// A running nginx with its own prefix (configuration, logs, temp files), stopped when dropped:
/// also when the test panics, so no nginx outlives the test.
struct Nginx {
    child: Option<Child>,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Nginx {
    /// Writes `config` into a fresh prefix, checks it with `nginx -t` and starts nginx in the
    /// foreground; returns once its port accepts connections.
    fn start(config: &str, port: u16) -> Nginx {
        let binary = nginx_binary();
        let prefix = tempfile::tempdir().expect("tempdir");
        // Run as root, nginx's workers run as `nobody`: they must be able to reach temp/ (the
        // tempdir is private by default).
        std::fs::set_permissions(prefix.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod prefix");
        for dir in ["logs", "temp"] {
            std::fs::create_dir(prefix.path().join(dir)).expect("create nginx folder");
        }
        let config_path = prefix.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");

        let check = nginx_command(&binary, prefix.path(), &config_path).arg("-t").output().expect("run nginx -t");
        assert!(check.status.success(), "nginx -t rejects the rendered deploy/nginx.conf:\n{}", output_text(&check));

        let output = std::fs::File::create(prefix.path().join("logs/stderr.log")).expect("nginx output file");
        let child = nginx_command(&binary, prefix.path(), &config_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output handle"))
            .stderr(output)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx { child: Some(child), port, prefix };
        nginx.wait_listening(Duration::from_secs(10));
        nginx
    }

    fn wait_listening(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().expect("nginx status")) {
                panic!("nginx exited during start ({status}):\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "nginx does not listen after {limit:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// nginx's output and error log, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.prefix.path().join("logs").join(name)).unwrap_or_default();
        format!("--- output\n{}--- logs/error.log\n{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SIGTERM: the master stops its workers and exits. A SIGKILLed master would leave its
        // workers serving the port, so SIGKILL is only the fallback.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn nginx_command(binary: &Path, prefix: &Path, config: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("-p").arg(prefix).arg("-c").arg(config);
    command
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Waits until the client's node counts `expected` connections of `user` across the cluster, so
/// that a message to them is routed to their node (bounded: it fails the test after 10 s).
async fn wait_for_connections(client: &mut TestClient, user: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = client.request(json!({"type": "stats", "user": user})).await;
        if stats["connections"].as_u64() == Some(expected) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never had {expected} connections: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_spreads_websocket_clients_over_three_nodes_that_act_as_one_server() {
    // Fail before starting anything when nginx is missing.
    nginx_binary();
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &[]);
    let nodes = &cluster.nodes;
    let node_ports: Vec<u16> = nodes.iter().map(|node| node.port).collect();
    let nginx_port = free_port();
    let nginx = Nginx::start(&render_config(&node_ports, nginx_port), nginx_port);

    // Clients that know only nginx's address land on more than one node (least_conn: each new
    // connection goes to the node with the fewest open ones). They stay open meanwhile.
    let mut clients = Vec::new();
    for n in 0..6 {
        let client =
            TestClient::login_with(&nginx.ws_url(), json!({"type": "login_open", "username": format!("user{n}")}))
                .await;
        assert_eq!(client.hello["type"], "hello");
        clients.push(client);
    }
    let node_of = |client: &TestClient| client.session["node"].as_str().expect("session names its node").to_owned();
    let mut used: Vec<String> = clients.iter().map(node_of).collect();
    let placement = used.clone();
    used.sort();
    used.dedup();
    assert!(used.len() > 1, "every client went to the same node through nginx: {placement:?}\n{}", nginx.logs());

    // Two of them on different nodes chat privately and in a room, through nginx.
    let first_node = node_of(&clients[0]);
    let other = clients.iter().position(|client| node_of(client) != first_node).expect("a client on another node");
    let mut bob = clients.remove(other);
    let mut alice = clients.remove(0);
    let (alice_name, bob_name) = (alice.user(), bob.user());
    wait_for_connections(&mut alice, &bob_name, 1).await;
    wait_for_connections(&mut bob, &alice_name, 1).await;

    let ack = alice.request(json!({"type": "send", "to": bob_name, "text": "hello across nodes"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let received = bob.next_of_type("message").await;
    assert_eq!(received["text"], "hello across nodes");
    assert_eq!(received["from"], alice_name.as_str(), "{received}");
    let reply = bob.request(json!({"type": "send", "to": alice_name, "text": "hi back"})).await;
    assert_eq!(reply["seq"], 2, "one conversation across nodes: {reply}");
    assert_eq!(alice.next_of_type("message").await["text"], "hi back");

    let created = alice.request(json!({"type": "create_room", "room": "proxied"})).await;
    assert_eq!(created["type"], "room", "{created}");
    let joined = bob.request(json!({"type": "join", "room": "proxied"})).await;
    assert_eq!(joined["type"], "room", "{joined}");
    alice.next_about("member_joined", &bob_name).await;
    let said = alice.request(json!({"type": "send", "room": "proxied", "text": "welcome"})).await;
    assert_eq!(said["type"], "ack", "{said}");
    assert_eq!(bob.next_of_type("message").await["text"], "welcome");
    let answered = bob.request(json!({"type": "send", "room": "proxied", "text": "thanks"})).await;
    assert_eq!(answered["type"], "ack", "{answered}");
    assert_eq!(alice.next_of_type("message").await["text"], "thanks");

    // The plain HTTP endpoints go through location / to any node: the gateway lists all three
    // once their heartbeats have gone round.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(nginx.addr(), "/api/nodes").await;
        assert_eq!(status, 200, "/api/nodes through nginx: {body}\n{}", nginx.logs());
        let listed: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("/api/nodes is not JSON: {body}"));
        let mut ids: Vec<&str> =
            listed["nodes"].as_array().into_iter().flatten().filter_map(|n| n["id"].as_str()).collect();
        ids.sort_unstable();
        if ids == ["n1", "n2", "n3"] {
            break;
        }
        assert!(Instant::now() < deadline, "/api/nodes through nginx never listed n1, n2 and n3: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(nginx.addr(), "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    drop((alice, bob, clients));
    drop(nginx);
    drop(cluster);
}

/// Socket.IO through nginx to three nodes: long-polling sessions (a series of requests) and their
/// upgrades reach the node that holds them, by the sticky `/socket.io/` upstream. The whole
/// Socket.IO suite (tests/compat/socketio.test.mjs) runs with nginx as its only address.
#[test]
fn nginx_routes_socketio_polling_and_upgrades_to_the_node_holding_the_session() {
    nginx_binary();
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &[]);
    let node_ports: Vec<u16> = cluster.nodes.iter().map(|node| node.port).collect();
    let nginx_port = free_port();
    let nginx = Nginx::start(&render_config(&node_ports, nginx_port), nginx_port);
    compat_support::run_node_tests("socketio.test.mjs", &[compat_support::http_url(nginx.addr())], true, &[]);
}
