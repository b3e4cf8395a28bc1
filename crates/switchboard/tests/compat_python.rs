//! python-socketio's client (from PyPI, `tests/compat/requirements.txt`, installed in a
//! virtualenv under the target folder by [`compat_support::python`]) logs in with a session token and uses native requests
//! with acknowledgements, while a native user on another node answers it.

mod compat_support;

use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use switchboard_testkit::services::{ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_uses_native_requests_with_acks() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 2, &["--node-timeout-ms", "1500"]);
    let account = TestClient::login_open(&cluster.url(0), "pyuser").await;
    let mut peer = TestClient::login_open(&cluster.url(1), "pypeer").await;
    let python = compat_support::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/python_client.py");
    let peer_side = tokio::spawn(async move {
        let ping = peer.next_of_type("message").await;
        let pong = peer.request(json!({"type": "send", "to": "pyuser", "text": "pong"})).await;
        (ping, pong)
    });
    let child = tokio::process::Command::new(python)
        .arg(script)
        .env("SB_URL", compat_support::http_url(cluster.addr(0)))
        .env("SB_TOKEN", account.token())
        .env("SB_USER", "pyuser")
        .env("SB_PEER", "pypeer")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python");
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python client hung")
        .expect("python client");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python client failed:\n{report}");
    assert!(report.contains("python-socketio: ok"), "{report}");
    let (ping, pong) = peer_side.await.expect("native peer");
    assert_eq!(ping["from"], "pyuser");
    assert_eq!(ping["text"], "ping");
    assert_eq!(pong["type"], "ack", "{pong}");
}
