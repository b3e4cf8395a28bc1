//! Private messages: delivery to every device, acknowledgements, idempotency.

use serde_json::json;
use switchboard_testkit::{TestClient, TestServer};

#[tokio::test]
async fn a_message_reaches_every_device_of_both_users_and_the_sender_gets_an_ack() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice_phone = TestClient::register(&url, "alice", "password1").await;
    let mut alice_laptop = TestClient::login(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;

    let ack = alice_phone.request(json!({"type": "send", "to": "bob", "text": "hi bob", "key": "k1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["conv"], "dm:alice:bob");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);

    let at_bob = bob.next_of_type("message").await;
    assert_eq!(at_bob["from"], "alice");
    assert_eq!(at_bob["to"], "bob");
    assert_eq!(at_bob["text"], "hi bob");
    assert_eq!(at_bob["id"], ack["id"]);
    let at_laptop = alice_laptop.next_of_type("message").await;
    assert_eq!(at_laptop["seq"], 1);
    assert_eq!(at_laptop["key"], "k1", "the sender's devices can match the message to its send");
    let unkeyed = bob.request(json!({"type": "send", "to": "alice", "text": "no key"})).await;
    assert_eq!(unkeyed["type"], "ack", "{unkeyed}");
    let at_laptop = alice_laptop.next_of_type("message").await;
    assert!(at_laptop.get("key").is_none(), "a send without a key has none: {at_laptop}");
    alice_phone.next_of_type("message").await;
    let echoes = alice_phone.drain_of_type("message").await;
    assert!(echoes.is_empty(), "the sending connection gets the ack, not the message: {echoes:?}");
}

#[tokio::test]
async fn a_retried_send_with_the_same_key_is_delivered_once() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    let first = alice.request(json!({"type": "send", "to": "bob", "text": "once", "key": "same"})).await;
    let retry = alice.request(json!({"type": "send", "to": "bob", "text": "once", "key": "same"})).await;
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(retry["seq"], first["seq"]);
    let delivered = bob.drain_of_type("message").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
}

#[tokio::test]
async fn from_always_comes_from_the_session() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut mallory = TestClient::register(&url, "mallory", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    let ack = mallory.request(json!({"type": "send", "to": "bob", "from": "alice", "text": "it's alice"})).await;
    assert_eq!(ack["type"], "ack");
    let message = bob.next_of_type("message").await;
    assert_eq!(message["from"], "mallory");
    assert_eq!(message["conv"], "dm:bob:mallory");
}
