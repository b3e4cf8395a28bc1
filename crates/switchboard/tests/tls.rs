//! TLS on the listener: real rustls clients (the test kit's WebSocket client and a raw HTTPS
//! request) against a certificate from a CA made in the test; the certificate reloads, on a file
//! change and on SIGHUP, while connections stay up.

use std::sync::Arc;

use serde_json::json;
use switchboard_testkit::tls::TestCa;
use switchboard_testkit::{eventually, TestClient, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_server(ca: &TestCa, folder: &std::path::Path) -> TestServer {
    let (files, _) = ca.issue(folder, "first");
    TestServer::builder().chat(|c| c.open_auth = true).server(|s| s.tls = Some(files)).start().await
}

/// A GET over HTTPS trusting `tls`; the status line and the body.
async fn https_get(server: &TestServer, tls: Arc<rustls::ClientConfig>, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(server.addr).await.expect("tcp connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls).connect(name, stream).await.expect("tls handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Two TLS clients chat in a room; each sends one message and gets the other's.
async fn chat_both_ways(first: &mut TestClient, second: &mut TestClient, room: &str) {
    for client in [&mut *first, &mut *second] {
        let joined = client.request(json!({"type": "join", "room": room})).await;
        assert_eq!(joined["type"], "room", "{joined}");
    }
    let ack = first.request(json!({"type": "send", "room": room, "text": "over tls"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let message = second.next_of_type("message").await;
    assert_eq!(message["text"], "over tls");
    let ack = second.request(json!({"type": "send", "room": room, "text": "and back"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    loop {
        let message = first.next_of_type("message").await;
        if message["text"] == "and back" {
            break;
        }
    }
}

#[tokio::test]
async fn clients_chat_over_wss_and_http_endpoints_answer_over_https() {
    let folder = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, folder.path()).await;
    let url = server.wss_url();
    let mut alice = TestClient::login_open_quiet_tls(&url, ca.client_config(), "alice").await;
    let mut bob = TestClient::login_open_quiet_tls(&url, ca.client_config(), "bob").await;
    chat_both_ways(&mut alice, &mut bob, "secure").await;

    let health = https_get(&server, ca.client_config(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    let page = https_get(&server, ca.client_config(), "/").await;
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "the web client over https: {page}");

    let plain = tokio_tungstenite::connect_async(server.ws_url()).await;
    assert!(plain.is_err(), "a plain ws:// client gets no WebSocket from a TLS port");
    let untrusted = tokio_tungstenite::connect_async_tls_with_config(
        &url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(TestCa::new().client_config())),
    )
    .await;
    assert!(untrusted.is_err(), "a client that trusts another CA refuses the certificate");
}

#[tokio::test]
async fn a_changed_certificate_file_is_used_for_new_handshakes_while_old_connections_stay() {
    let folder = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, folder.path()).await;
    let url = server.wss_url();
    let mut alice = TestClient::login_open_quiet_tls(&url, ca.client_config(), "alice").await;
    let first_certificate = alice.peer_certificate().expect("a tls connection");

    let (_, second_certificate) = ca.issue(folder.path(), "second");
    assert_ne!(first_certificate, second_certificate);
    eventually("a new handshake gets the new certificate", std::time::Duration::from_secs(20), || async {
        let probe = TestClient::connect_tls(&url, ca.client_config()).await;
        probe.peer_certificate() == Some(second_certificate.clone())
    })
    .await;

    let mut bob = TestClient::login_open_quiet_tls(&url, ca.client_config(), "bob").await;
    assert_eq!(bob.peer_certificate(), Some(second_certificate));
    assert_eq!(alice.peer_certificate(), Some(first_certificate), "alice's connection is the same one");
    chat_both_ways(&mut alice, &mut bob, "reloaded").await;
    assert!(alice.closed.is_none());
}

/// The web client in chromium over https: the page, its script modules and its WebSocket (wss)
/// all come over TLS. Chromium trusts the server's key through
/// `--ignore-certificate-errors-spki-list` (a pin of this one key; adding the test CA to a
/// headless chromium would need an NSS database and `certutil`, which the machine lacks).
#[tokio::test]
async fn the_web_client_works_in_chromium_over_https() {
    let folder = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (files, spki) = ca.issue_pinned(folder.path(), "browser");
    let server = TestServer::builder().server(|s| s.tls = Some(files)).start().await;
    let result = switchboard_testkit::browser::run_ops_script(&[
        ("OPS_MODE", "https-client".to_owned()),
        ("OPS_URL", format!("https://localhost:{}", server.addr.port())),
        ("OPS_SPKI", spki),
    ])
    .await;
    assert_eq!(result["pageUrl"].as_str().map(|url| url.starts_with("https://localhost:")), Some(true), "{result}");
    assert_eq!(result["socketUrl"].as_str().map(|url| url.starts_with("wss://localhost:")), Some(true), "{result}");
    assert_eq!(result["problems"], serde_json::json!([]), "{result}");
}

/// Over TLS, frames larger than the session's 64 KiB record buffer arrive whole, and a reader who
/// stops reading is cut off as a slow consumer like over plain TCP (the writes wait on the socket
/// through the TLS session).
#[tokio::test]
async fn large_answers_arrive_whole_and_a_stalled_reader_is_cut_off_over_tls() {
    let folder = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (files, _) = ca.issue(folder.path(), "bulk");
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 10_000.0;
            c.rate_burst = 10_000.0;
            c.queue_max_bytes = 512 * 1024;
        })
        .server(|s| s.tls = Some(files))
        .start()
        .await;
    let url = server.wss_url();
    let mut alice = TestClient::login_open_quiet_tls(&url, ca.client_config(), "alice").await;
    alice.request(json!({"type": "join", "room": "bulk"})).await;
    let text_of = |n: usize| format!("{n:03} {}", "y".repeat(3_900));
    for n in 0..40 {
        let ack = alice.request(json!({"type": "send", "room": "bulk", "text": text_of(n)})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let mut bob = TestClient::login_open_quiet_tls(&url, ca.client_config(), "bob").await;
    let joined = bob.request(json!({"type": "join", "room": "bulk"})).await;
    let history = joined["history"].as_array().expect("history");
    assert_eq!(history.len(), 40, "one answer of about 160 KB");
    assert!(history.iter().enumerate().all(|(n, message)| message["text"] == text_of(n)));

    // Bob reads nothing more; alice's messages pile up in his queue until it overflows.
    let mut n = 0;
    // The port speaks TLS only: the counter is read from the node, not from a plain GET /metrics.
    let overflows = || server.node().metrics().queue_overflows.load(std::sync::atomic::Ordering::Relaxed);
    while overflows() < 1 {
        for _ in 0..20 {
            alice.send(json!({"type": "send", "to": "bob", "text": text_of(n % 1000)})).await;
            n += 1;
        }
        alice.request(json!({"type": "ping"})).await;
        assert!(n < 20_000, "bob's queue never overflowed");
    }
    if let Some((code, _)) = bob.expect_end().await {
        assert_eq!(code, 4008);
    }
    let pong = alice.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the sender is not held up");
}
