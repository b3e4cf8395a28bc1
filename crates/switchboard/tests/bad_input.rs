//! Bad input: malformed frames, transport errors, size and text limits, rate limits, flooding, slow
//! consumers, and impersonation. The server answers with an error and keeps the connection
//! unless the protocol says it closes.

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The connection still works: a ping gets its pong.
async fn assert_alive(client: &mut TestClient) {
    let pong = client.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the connection must survive: {pong}");
}

/// Sends a raw text message and returns the error it is answered with.
async fn error_for_text(client: &mut TestClient, text: &str) -> Value {
    client.send_raw(Message::Text(text.to_owned())).await;
    let error = client.next_of_type("error").await;
    assert!(client.quiesce().await.is_empty(), "one error per bad frame, nothing else");
    error
}

#[tokio::test]
async fn malformed_json_is_bad_frame_and_the_connection_survives() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    for text in ["{nope", r#"{"type":"ping","ref":1"#, "", r#"{"type":"ping","ref":2} trailing"#] {
        let error = error_for_text(&mut alice, text).await;
        assert_eq!(error["code"], "bad_frame", "{text:?}: {error}");
        assert!(error.get("ref").is_none(), "an unparsable frame has no ref to echo: {error}");
    }
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn a_json_array_is_bad_frame() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    for text in [r#"["ping"]"#, r#"[{"type":"ping","ref":1}]"#, "[]"] {
        let error = error_for_text(&mut alice, text).await;
        assert_eq!(error["code"], "bad_frame", "{text}: {error}");
        assert!(error.get("ref").is_none(), "{error}");
    }
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn an_unknown_type_is_unknown_type_with_its_ref() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    let error = alice.request(json!({"type": "teleport", "to": "bob"})).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unknown_type");
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_invalid_field_with_the_ref_echoed() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    alice.send(json!({"type": "send", "ref": "m-1", "to": 5, "text": "hi"})).await;
    let error = alice.next_of_type("error").await;
    assert_eq!(error["code"], "invalid_field", "{error}");
    assert_eq!(error["ref"], "m-1");

    let error = alice.request(json!({"type": "ping", "seq": "x"})).await;
    assert_eq!(error["code"], "invalid_field", "known fields are type-checked whatever the type: {error}");
    let error = alice.request(json!({"type": "history", "to": "alice", "limit": -1})).await;
    assert_eq!(error["code"], "invalid_field", "{error}");
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn a_missing_field_is_invalid_field_naming_it() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    let error = alice.request(json!({"type": "send", "to": "alice"})).await;
    assert_eq!(error["code"], "invalid_field", "{error}");
    assert!(error["message"].as_str().unwrap().contains("text"), "{error}");
    let error = alice.request(json!({"type": "read", "to": "alice"})).await;
    assert_eq!(error["code"], "invalid_field", "{error}");
    assert!(error["message"].as_str().unwrap().contains("seq"), "{error}");
    let error = alice.request(json!({"type": "send", "text": "to nobody"})).await;
    assert_eq!(error["code"], "invalid_field", "a target is required: {error}");
    let error = alice.request(json!({"type": "send", "to": "alice", "room": "lobby", "text": "both"})).await;
    assert_eq!(error["code"], "invalid_field", "both targets are refused: {error}");
    let error = alice.request(json!({"no_type": true})).await;
    assert_eq!(error["code"], "invalid_field", "{error}");
    assert!(error["message"].as_str().unwrap().contains("type"), "{error}");
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_closes_with_1007() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    // A raw text frame: tungstenite masks it like any client frame but does not check its payload.
    let frame = Frame::message(vec![0xff, 0xfe], OpCode::Data(Data::Text), true);
    alice.send_raw(Message::Frame(frame)).await;
    let (code, reason) = alice.expect_close().await;
    assert_eq!(code, 1007, "RFC 6455 fails the connection: {reason}");
    assert!(alice.take_inbox().is_empty(), "no error frame before the close");
}

#[tokio::test]
async fn a_binary_message_is_binary_unsupported_and_the_connection_survives() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    alice.send_raw(Message::Binary(br#"{"type":"ping","ref":"b"}"#.to_vec())).await;
    let error = alice.next_of_type("error").await;
    assert_eq!(error["code"], "binary_unsupported", "{error}");
    assert!(error.get("ref").is_none(), "transport errors carry no ref: {error}");
    assert_alive(&mut alice).await;
}

/// A `ping` frame padded with an unknown field to exactly `len` bytes.
fn ping_of_len(reference: &str, len: usize) -> String {
    let empty = format!(r#"{{"type":"ping","ref":"{reference}","pad":""}}"#);
    let text = format!(r#"{{"type":"ping","ref":"{reference}","pad":"{}"}}"#, "x".repeat(len - empty.len()));
    assert_eq!(text.len(), len);
    text
}

#[tokio::test]
async fn a_message_over_max_frame_bytes_is_skipped_with_frame_too_large() {
    let server = TestServer::builder().chat(|c| c.open_auth = true).server(|s| s.max_frame_bytes = 1024).start().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;
    assert_eq!(alice.hello["max_frame_bytes"], 1024);

    alice.send_raw(Message::Text(ping_of_len("too-big", 2000))).await;
    let error = alice.next_of_type("error").await;
    assert_eq!(error["code"], "frame_too_large", "{error}");
    assert!(error.get("ref").is_none(), "the skipped frame was not read, so no ref: {error}");
    let skipped = alice.drain_of_type("pong").await;
    assert!(skipped.is_empty(), "the oversized ping was not processed: {skipped:?}");

    alice.send_raw(Message::Text(ping_of_len("at-limit", 1024))).await;
    let pong = alice.next().await;
    assert_eq!(pong["type"], "pong", "exactly the limit is accepted: {pong}");
    assert_eq!(pong["ref"], "at-limit");
    assert_alive(&mut alice).await;
}

#[tokio::test]
async fn a_message_far_over_max_frame_bytes_closes_with_1009() {
    let server = TestServer::builder().chat(|c| c.open_auth = true).server(|s| s.max_frame_bytes = 1024).start().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    alice.send_raw(Message::Text(ping_of_len("huge", 16 * 1024 + 1))).await;
    let (code, reason) = alice.expect_close().await;
    assert_eq!(code, 1009, "{reason}");
    assert_eq!(reason, "frame too large");
}

#[tokio::test]
async fn text_over_max_text_chars_is_text_too_long() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.max_text_chars = 10;
        })
        .start()
        .await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;
    assert_eq!(alice.hello["max_text_chars"], 10);

    let error = alice.request(json!({"type": "send", "to": "alice", "text": "abcdefghijk"})).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "text_too_long");
    let ack = alice.request(json!({"type": "send", "to": "alice", "text": "ééééééééé😀"})).await;
    assert_eq!(ack["type"], "ack", "the limit counts characters, not bytes: {ack}");
    let history = alice.request(json!({"type": "history", "to": "alice"})).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1, "the long text was not stored");
}

#[tokio::test]
async fn empty_or_blank_text_is_empty_text() {
    let server = TestServer::with_open_auth().await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    for text in ["", "   ", "\n\t "] {
        let error = alice.request(json!({"type": "send", "to": "alice", "text": text})).await;
        assert_eq!(error["type"], "error", "{text:?}: {error}");
        assert_eq!(error["code"], "empty_text");
    }
    let history = alice.request(json!({"type": "history", "to": "alice"})).await;
    assert_eq!(history["messages"], json!([]));
}

#[tokio::test]
async fn frames_over_the_rate_limit_are_rate_limited_with_their_ref() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 1.0;
            c.rate_burst = 3.0;
        })
        .start()
        .await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    for n in 1..=4 {
        alice.send(json!({"type": "ping", "ref": format!("p{n}")})).await;
    }
    for n in 1..=3 {
        let pong = alice.next().await;
        assert_eq!(pong["type"], "pong", "the burst passes: {pong}");
        assert_eq!(pong["ref"], format!("p{n}"));
    }
    let limited = alice.next().await;
    assert_eq!(limited["type"], "error", "{limited}");
    assert_eq!(limited["code"], "rate_limited");
    assert_eq!(limited["ref"], "p4");
    let retry = limited["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry > 0 && retry <= 1001, "{limited}");
    assert_eq!(server.metric("switchboard_rate_limited_total").await, 1.0);
}

#[tokio::test]
async fn a_client_that_keeps_flooding_is_closed_with_4029() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 1.0;
            c.rate_burst = 3.0;
            c.flood_strikes = 5;
        })
        .start()
        .await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    for n in 1..=8 {
        alice.send(json!({"type": "ping", "ref": n})).await;
    }
    let (code, reason) = alice.expect_close().await;
    assert_eq!(code, 4029, "{reason}");
    assert_eq!(reason, "flooding");
    let frames = alice.take_inbox();
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| format!("{}:{}", f["type"].as_str().unwrap(), f["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kinds, ["pong:", "pong:", "pong:"].into_iter().chain(["error:rate_limited"; 5]).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_off_and_recovers_everything_by_resuming() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 10_000.0;
            c.rate_burst = 10_000.0;
            c.queue_max_frames = 20;
            c.max_text_chars = 16_000;
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    // Bob stops reading: nothing polls his socket until `expect_close` below, so once the kernel
    // buffers are full his outbound queue fills up.
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let token = bob.token();

    const BATCH: u64 = 10;
    const MAX_MESSAGES: u64 = 3_000;
    let text_of = |n: u64| format!("{n:05} {}", "x".repeat(15_000));
    let mut sent = 0;
    let mut overflowed_at = None;
    while sent < MAX_MESSAGES {
        let delivered_before = server.metric("switchboard_deliveries_total").await;
        for n in sent + 1..=sent + BATCH {
            alice
                .send(json!({"type": "send", "ref": n, "to": "bob", "text": text_of(n), "key": format!("k{n}")}))
                .await;
        }
        for n in sent + 1..=sent + BATCH {
            let ack = alice.answer_to(n).await;
            assert_eq!(ack["type"], "ack", "the sender is not held up by a slow recipient: {ack}");
            assert_eq!(ack["seq"], n);
        }
        sent += BATCH;
        let delivered = server.metric("switchboard_deliveries_total").await - delivered_before;
        if overflowed_at.is_some() {
            assert_eq!(delivered, 0.0, "an overflowed queue takes nothing more");
            break;
        }
        if delivered < BATCH as f64 {
            // Bob's queue refused a message: it overflowed. One more batch, still acknowledged.
            overflowed_at = Some(sent);
        }
    }
    assert!(overflowed_at.is_some(), "bob's queue never overflowed after {sent} messages");

    // Bob still reads nothing, yet the server notices the overflow and cuts him off: it does not
    // wait for a write to a full socket to time out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.metric("switchboard_queue_overflows_total").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the overflow was not noticed while bob read nothing");
    }

    // Bob reads what made it into his socket, then the end: a 4008 close frame when it fitted, else
    // just the end of the connection.
    if let Some((code, reason)) = bob.expect_end().await {
        assert_eq!(code, 4008, "{reason}");
        assert_eq!(reason, "slow consumer, reconnect and resume");
    }

    // What bob got before the cut is a gap-free start of the conversation.
    let mut received: Vec<Value> = bob.take_inbox().into_iter().filter(|f| f["type"] == "message").collect();
    let cursor = received.len() as u64;
    assert!(cursor < sent, "bob cannot have received everything");
    for (index, message) in received.iter().enumerate() {
        assert_eq!(message["seq"], index as u64 + 1, "live messages arrive in order without gaps");
    }

    let mut bob = TestClient::resume(&url, &token, json!({"dm:alice:bob": cursor})).await;
    loop {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("message") => received.push(frame),
            Some("synced") => break,
            _ => {}
        }
    }
    let seqs: Vec<u64> = received.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=sent).collect::<Vec<u64>>(), "every acknowledged message comes back exactly once");
    for message in &received {
        assert_eq!(message["text"], text_of(message["seq"].as_u64().unwrap()));
    }
}

#[tokio::test]
async fn nobody_can_send_as_someone_else() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut mallory = TestClient::login_open_quiet(&url, "mallory").await;
    bob.request(json!({"type": "create_room", "room": "lobby"})).await;
    mallory.request(json!({"type": "join", "room": "lobby"})).await;

    let ack = mallory.request(json!({"type": "send", "room": "lobby", "from": "bob", "text": "it's bob"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let message = bob.next_of_type("message").await;
    assert_eq!(message["from"], "mallory");
    let history = bob.request(json!({"type": "history", "room": "lobby"})).await;
    assert_eq!(history["messages"][0]["from"], "mallory", "the store has the real sender too");
}

#[tokio::test]
async fn a_nul_character_in_a_message_is_refused_on_every_store() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    TestClient::login_open_quiet(&url, "bob").await;
    let error = alice.request(json!({"type": "send", "to": "bob", "text": "a\u{0}b"})).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "invalid_field");
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "fine"})).await;
    assert_eq!(ack["seq"], 1, "the refused message took no seq");
}
