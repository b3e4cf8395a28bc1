//! Operations: health and readiness, the Prometheus metrics, HTTP routing, graceful shutdown.

use serde_json::json;
use switchboard_testkit::{TestClient, TestServer};

const LATENCY_INF: &str = "switchboard_delivery_latency_seconds_bucket{le=\"+Inf\"}";

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let server = TestServer::start().await;
    assert_eq!(server.http_get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(server.http_get("/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(server.http_get("/").await.0, 200);
}

#[tokio::test]
async fn an_unknown_path_is_404() {
    let server = TestServer::start().await;
    assert_eq!(server.http_get("/nope").await, (404, "not found\n".to_owned()));
    assert_eq!(server.http_get("/healthz/extra").await.0, 404);
}

#[tokio::test]
async fn a_plain_get_of_ws_without_upgrade_headers_is_400() {
    let server = TestServer::start().await;
    let (status, _) = server.http_get("/ws").await;
    assert_eq!(status, 400);
    assert_eq!(server.metric("switchboard_sockets").await, 0.0, "no WebSocket was opened");
}

#[tokio::test]
async fn metrics_expose_process_and_chat_metrics() {
    let server = TestServer::start().await;
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "switchboard_connections",
        "switchboard_frames_in_total",
        "switchboard_frames_out_total",
        "switchboard_deliveries_total",
        "switchboard_queue_overflows_total",
        "switchboard_delivery_latency_seconds_count",
        LATENCY_INF,
    ] {
        let value = server.metric(name).await;
        assert!(value >= 0.0, "{name} {value}");
    }
    assert!(body.contains("# TYPE switchboard_delivery_latency_seconds histogram"), "{body}");
    assert!(body.contains("# TYPE switchboard_deliveries_total counter"), "{body}");
    assert!(server.metric("process_resident_memory_bytes").await > 1024.0 * 1024.0);
    assert_eq!(server.metric("switchboard_queue_overflows_total").await, 0.0);
    assert_eq!(server.metric("switchboard_delivery_latency_seconds_count").await, 0.0);
}

#[tokio::test]
async fn switchboard_connections_counts_the_logged_in_connections() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    assert_eq!(server.metric("switchboard_connections").await, 0.0);

    let _anonymous = TestClient::connect(&url).await;
    assert_eq!(server.metric("switchboard_connections").await, 0.0, "a socket without login is not counted");
    assert_eq!(server.metric("switchboard_sockets").await, 1.0);
    let alice_phone = TestClient::login_open_quiet(&url, "alice").await;
    let _alice_laptop = TestClient::login_open_quiet(&url, "alice").await;
    let _bob = TestClient::login_open_quiet(&url, "bob").await;
    assert_eq!(server.metric("switchboard_connections").await, 3.0);
    assert_eq!(server.metric("switchboard_online_users").await, 2.0);
    assert_eq!(server.metric("switchboard_sockets").await, 4.0);

    alice_phone.close().await;
    assert_eq!(server.metric("switchboard_connections").await, 2.0);
    assert_eq!(server.metric("switchboard_connections_total").await, 3.0);
}

#[tokio::test]
async fn frames_in_and_out_count_websocket_messages() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;
    let frames_in = server.metric("switchboard_frames_in_total").await;
    let frames_out = server.metric("switchboard_frames_out_total").await;

    for _ in 0..3 {
        alice.request(json!({"type": "ping"})).await;
    }
    assert_eq!(server.metric("switchboard_frames_in_total").await - frames_in, 3.0);
    assert!(server.metric("switchboard_frames_out_total").await - frames_out >= 3.0);
}

#[tokio::test]
async fn deliveries_grow_by_the_number_of_recipient_connections() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice_phone = TestClient::login_open_quiet(&url, "alice").await;
    let _alice_laptop = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let _bob_laptop = TestClient::login_open_quiet(&url, "bob").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    alice_phone.request(json!({"type": "create_room", "room": "lobby"})).await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    carol.request(json!({"type": "join", "room": "lobby"})).await;

    let before = server.metric("switchboard_deliveries_total").await;
    let ack = alice_phone.request(json!({"type": "send", "room": "lobby", "text": "hi all"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let after_room = server.metric("switchboard_deliveries_total").await;
    assert_eq!(after_room - before, 4.0, "alice's laptop, both of bob's devices and carol");

    let ack = alice_phone.request(json!({"type": "send", "to": "bob", "text": "hi bob"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let after_private = server.metric("switchboard_deliveries_total").await;
    assert_eq!(after_private - after_room, 3.0, "both of bob's devices and alice's laptop");

    assert_eq!(server.metric("switchboard_delivery_latency_seconds_count").await, 2.0);
    assert_eq!(server.metric(LATENCY_INF).await, 2.0);
    assert_eq!(server.metric("switchboard_messages_stored_total").await, 2.0);
}

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_1012_and_keeps_acknowledged_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("switchboard.db");
    let server = TestServer::builder().chat(|c| c.open_auth = true).sqlite_file(&file).start().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut anonymous = TestClient::connect(&url).await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "before the restart"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    server.shutdown().await;
    for client in [&mut alice, &mut bob, &mut anonymous] {
        let (code, reason) = client.expect_close().await;
        assert_eq!(code, 1012, "{reason}");
        assert_eq!(reason, "server restarting, reconnect and resume");
    }
    let at_bob: Vec<_> = bob.take_inbox().into_iter().filter(|f| f["type"] == "message").collect();
    assert_eq!(at_bob.len(), 1, "frames queued before the shutdown are flushed first: {at_bob:?}");

    let server = TestServer::builder().chat(|c| c.open_auth = true).sqlite_file(&file).start().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;
    let history = alice.request(json!({"type": "history", "to": "bob"})).await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["text"], "before the restart");
    assert_eq!(messages[0]["id"], ack["id"]);
    assert_eq!(messages[0]["seq"], ack["seq"]);
}
