//! Durability: acknowledged messages survive a graceful restart and a crash of the process.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::{http_get, TestClient, TestServer};

/// How long a spawned server may take to become ready.
const STARTUP: Duration = Duration::from_secs(30);

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}"))).collect()
}

/// Sends `count` messages from `client` to `to` without waiting, then collects the acks (they come
/// in send order). Returns the acknowledged texts by seq.
async fn send_all(client: &mut TestClient, to: &str, count: usize, label: &str) -> BTreeMap<u64, String> {
    for i in 1..=count {
        let frame = json!({"type": "send", "ref": format!("m-{i}"), "to": to, "text": format!("{label} {i}"),
                           "key": format!("{label}-{i}")});
        client.send(frame).await;
    }
    let mut acked = BTreeMap::new();
    for i in 1..=count {
        let ack = client.next_of_type("ack").await;
        assert_eq!(ack["ref"], format!("m-{i}"), "{ack}");
        assert_eq!(ack["duplicate"], false, "{ack}");
        let seq = ack["seq"].as_u64().unwrap_or_else(|| panic!("ack without seq: {ack}"));
        assert!(acked.insert(seq, format!("{label} {i}")).is_none(), "seq {seq} acknowledged twice");
    }
    acked
}

/// Reads a login's frames up to `synced` and returns the messages between `sync` and `synced`.
async fn synced_messages(client: &mut TestClient) -> Vec<Value> {
    let mut seen_sync = false;
    let mut messages = Vec::new();
    loop {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("sync") => seen_sync = true,
            Some("message") => {
                assert!(seen_sync, "a message before the sync frame: {frame}");
                messages.push(frame);
            }
            Some("synced") => {
                assert!(seen_sync, "synced without a sync frame");
                assert_eq!(frame["messages"], messages.len(), "{frame}");
                return messages;
            }
            _ => {}
        }
    }
}

async fn login_reading_sync(url: &str, user: &str, password: &str) -> (TestClient, Vec<Value>) {
    let mut client = TestClient::connect(url).await;
    let session = client.request(json!({"type": "login", "username": user, "password": password})).await;
    assert_eq!(session["type"], "session", "login failed: {session}");
    client.session = session;
    let messages = synced_messages(&mut client).await;
    (client, messages)
}

/// Asserts that the whole conversation, read with `history`, is exactly the acknowledged messages.
async fn assert_history_is(client: &mut TestClient, peer: &str, acked: &BTreeMap<u64, String>) {
    let page = client.request(json!({"type": "history", "to": peer, "limit": 200})).await;
    assert_eq!(page["type"], "history", "{page}");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), acked.keys().copied().collect::<Vec<u64>>(), "none missing, none duplicated");
    for message in messages {
        let seq = message["seq"].as_u64().unwrap();
        assert_eq!(message["text"], acked[&seq], "text of seq {seq}");
    }
    assert_eq!(page["has_more"], false, "nothing before seq 1: {}", page["has_more"]);
}

#[tokio::test]
async fn a_graceful_restart_keeps_every_acknowledged_message_and_seq_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.sqlite3");
    let server = TestServer::builder().sqlite_file(&file).start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    let mut not_logged_in = TestClient::connect(&url).await;
    let acked = send_all(&mut alice, "bob", 50, "before restart").await;
    assert_eq!(acked.keys().copied().collect::<Vec<u64>>(), (1..=50).collect::<Vec<u64>>());

    server.shutdown().await;
    let (code, reason) = bob.expect_close().await;
    assert_eq!(code, 1012, "{reason}");
    assert_eq!(reason, "server restarting, reconnect and resume");
    let live: Vec<Value> = bob.take_inbox().into_iter().filter(|f| f["type"] == "message").collect();
    assert_eq!(seqs(&live), (1..=50).collect::<Vec<u64>>(), "queued frames are flushed before the close");
    assert_eq!(alice.expect_close().await.0, 1012);
    assert_eq!(not_logged_in.expect_close().await.0, 1012, "also before login");

    let server = TestServer::builder().sqlite_file(&file).start().await;
    let url = server.ws_url();
    let (mut bob, synced) = login_reading_sync(&url, "bob", "password2").await;
    assert_eq!(seqs(&synced), (1..=50).collect::<Vec<u64>>(), "all 50 come back in the sync");
    for message in &synced {
        assert_eq!(message["text"], acked[&message["seq"].as_u64().unwrap()]);
    }
    assert_history_is(&mut bob, "alice", &acked).await;

    let mut alice = TestClient::login(&url, "alice", "password1").await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "after restart"})).await;
    assert_eq!(ack["seq"], 51, "seq continues after the restart: {ack}");
    assert_eq!(bob.next_of_type("message").await["seq"], 51);
    let retried = alice.request(json!({"type": "send", "to": "bob", "text": "again", "key": "before restart-7"})).await;
    assert_eq!(retried["duplicate"], true, "idempotency keys survive the restart: {retried}");
    assert_eq!(retried["seq"], 7);
}

/// A `switchboard` process on a data folder; killed (SIGKILL) when dropped, so a failing test
/// leaves nothing running.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the binary on a free port and waits until `/readyz` answers 200.
    async fn start(data_dir: &Path, log: PathBuf) -> ServerProcess {
        let addr = free_addr();
        let output = std::fs::File::create(&log).expect("create log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--rate-per-sec", "100000", "--rate-burst", "100000"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone log file"))
            .stderr(output);
        // Only the flags above configure it, whatever the environment of the test run.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().expect("spawn switchboard");
        let mut process = ServerProcess { child, addr, log };
        process.wait_until_ready().await;
        process
    }

    /// Polls `/readyz` (bounded) until the process answers 200.
    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                panic!("switchboard exited before it was ready ({status}):\n{}", self.log_text());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() && http_get(self.addr, "/readyz").await.0 == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "switchboard not ready within {STARTUP:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush, no checkpoint.
    fn crash(&mut self) {
        self.child.kill().expect("kill switchboard");
        let status = self.child.wait().expect("reap switchboard");
        assert!(!status.success(), "the process was killed, not stopped: {status}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

#[tokio::test]
async fn every_acknowledged_message_survives_a_crash_of_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut process = ServerProcess::start(&data, dir.path().join("first.log")).await;
    let url = process.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let alice_token = alice.token();
    TestClient::register(&url, "bob", "password2").await.close().await;
    let acked = send_all(&mut alice, "bob", 200, "crash test").await;
    process.crash();
    alice.drop_connection();

    let restarted = ServerProcess::start(&data, dir.path().join("second.log")).await;
    let url = restarted.ws_url();
    let (mut bob, synced) = login_reading_sync(&url, "bob", "password2").await;
    assert_eq!(acked.keys().copied().collect::<Vec<u64>>(), (1..=200).collect::<Vec<u64>>());
    assert_eq!(seqs(&synced), (1..=200).collect::<Vec<u64>>(), "the sync carries every acknowledged message");
    assert_history_is(&mut bob, "alice", &acked).await;
    let listed = bob.request(json!({"type": "conversations"})).await;
    assert_eq!(listed["conversations"][0]["last_seq"], 200, "{listed}");

    // The session made before the crash is durable too.
    let mut alice = TestClient::resume(&url, &alice_token, json!({"dm:alice:bob": 200})).await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "back again"})).await;
    assert_eq!(ack["seq"], 201, "seq continues after the crash: {ack}");
}
