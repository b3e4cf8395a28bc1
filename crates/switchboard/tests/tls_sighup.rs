//! SIGHUP reloads the TLS certificate. Its own test binary: the signal reaches the whole process,
//! and would reload the servers of other tests too, hiding whether their file check works.

use serde_json::json;
use switchboard_testkit::tls::TestCa;
use switchboard_testkit::{eventually, TestClient, TestServer};

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let folder = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (files, _) = ca.issue(folder.path(), "first");
    let server = TestServer::builder().chat(|c| c.open_auth = true).server(|s| s.tls = Some(files)).start().await;
    let url = server.wss_url();
    let mut alice = TestClient::login_open_quiet_tls(&url, ca.client_config(), "alice").await;

    // Same modification times: the change check sees nothing, only the signal loads them.
    let (_, second_certificate) = ca.issue_keeping_times(folder.path(), "after-sighup");
    let status =
        std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().expect("run kill");
    assert!(status.success());
    eventually("a new handshake gets the certificate loaded on SIGHUP", std::time::Duration::from_secs(20), || async {
        let probe = TestClient::connect_tls(&url, ca.client_config()).await;
        probe.peer_certificate() == Some(second_certificate.clone())
    })
    .await;
    let mut bob = TestClient::login_open_quiet_tls(&url, ca.client_config(), "bob").await;
    for client in [&mut alice, &mut bob] {
        let joined = client.request(json!({"type": "join", "room": "hup"})).await;
        assert_eq!(joined["type"], "room", "{joined}");
    }
    let ack = alice.request(json!({"type": "send", "room": "hup", "text": "still here"})).await;
    assert_eq!(ack["type"], "ack", "the connection from before the reload still works: {ack}");
    assert_eq!(bob.next_of_type("message").await["text"], "still here");
}
