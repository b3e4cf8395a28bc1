//! Each conversation's live messages reach every connection in `seq` order, across nodes: a
//! message that overtook an earlier one (committed on another node, still crossing the bus) waits
//! for it, and one that does not come in time is read from the store. Presence is about everyone
//! here: `user_online` tells a test that a login reached the other node.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestCluster};

/// alice on n1 and n2, bob on n2; both nodes know where everyone is.
async fn alice_on_both_and_bob(cluster: &TestCluster) -> (TestClient, TestClient, TestClient) {
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let alice_on_n2 = TestClient::login_open(&cluster.url(1), "alice").await;
    let bob = TestClient::login_open(&cluster.url(1), "bob").await;
    alice.next_about("user_online", "bob").await;
    let stats = alice.request(json!({"type": "stats", "user": "alice"})).await;
    assert_eq!(stats["connections"], 2, "n1 knows alice is on n2 too: {stats}");
    (alice, alice_on_n2, bob)
}

async fn send(client: &mut TestClient, to: &str, text: &str) -> Value {
    let ack = client.request(json!({"type": "send", "to": to, "text": text})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack
}

/// The text and seq of a connection's next message.
async fn next_message(client: &mut TestClient) -> (String, u64) {
    let message = client.next_of_type("message").await;
    (message["text"].as_str().unwrap().to_owned(), message["seq"].as_u64().unwrap())
}

#[tokio::test]
async fn a_local_message_waits_for_the_earlier_one_still_crossing_the_bus() {
    // A wait longer than the test: only the late message itself can let the local one through.
    let cluster = TestCluster::start_with(2, |config| {
        config.reorder_wait = Duration::from_secs(60);
        config.presence_everyone = true;
    })
    .await;
    let (mut alice, mut alice_on_n2, mut bob) = alice_on_both_and_bob(&cluster).await;

    cluster.broker.hold("n2");
    let one = send(&mut alice, "bob", "one").await;
    // Committed on n2 and delivered there at once, while "one" waits in n2's inbox.
    let two = send(&mut bob, "alice", "two").await;
    assert_eq!(two["seq"].as_u64(), one["seq"].as_u64().map(|seq| seq + 1));
    cluster.broker.release("n2");

    assert_eq!(next_message(&mut alice_on_n2).await, ("one".into(), 1));
    assert_eq!(next_message(&mut alice_on_n2).await, ("two".into(), 2));
    assert_eq!(next_message(&mut bob).await, ("one".into(), 1));
    let three = send(&mut alice, "bob", "three").await;
    assert_eq!(next_message(&mut bob).await, ("three".into(), 3), "bob's own send took its place: {three}");
    assert_eq!(next_message(&mut alice_on_n2).await, ("three".into(), 3));
}

#[tokio::test]
async fn a_message_that_does_not_come_in_time_is_read_from_the_store_and_its_late_copy_dropped() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (mut alice, mut alice_on_n2, mut bob) = alice_on_both_and_bob(&cluster).await;
    let filled_before = cluster.nodes[1].metric("switchboard_gap_messages_filled_total").await;

    // n2 hears nothing from n1 for as long as the test needs: "one" comes from the store.
    cluster.broker.hold("n2");
    send(&mut alice, "bob", "one").await;
    send(&mut bob, "alice", "two").await;
    assert_eq!(next_message(&mut alice_on_n2).await, ("one".into(), 1));
    assert_eq!(next_message(&mut alice_on_n2).await, ("two".into(), 2));
    assert_eq!(next_message(&mut bob).await, ("one".into(), 1));
    let filled = cluster.nodes[1].metric("switchboard_gap_messages_filled_total").await - filled_before;
    assert_eq!(filled, 2.0, "one message read from the store for each of n2's two connections");

    // The bus copy of "one" arrives now, and must not be delivered a second time.
    cluster.broker.release("n2");
    send(&mut alice, "bob", "three").await;
    assert_eq!(next_message(&mut alice_on_n2).await, ("three".into(), 3));
    assert_eq!(next_message(&mut bob).await, ("three".into(), 3));
    send(&mut alice_on_n2, "bob", "four").await;
    assert_eq!(next_message(&mut bob).await, ("four".into(), 4));
    assert!(alice_on_n2.drain_of_type("message").await.is_empty(), "the sending connection gets only the ack");
}

#[tokio::test]
async fn room_messages_from_several_nodes_arrive_in_seq_order() {
    let cluster = TestCluster::start_with(2, |config| {
        config.reorder_wait = Duration::from_secs(60);
        config.presence_everyone = true;
    })
    .await;
    let (mut alice, _alice_on_n2, mut bob) = alice_on_both_and_bob(&cluster).await;
    let mut carol = TestClient::login_open(&cluster.url(1), "carol").await;
    alice.next_about("user_online", "carol").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    for client in [&mut bob, &mut carol] {
        let joined = client.request(json!({"type": "join", "room": "lobby"})).await;
        assert_eq!(joined["type"], "room", "{joined}");
    }
    alice.next_about("member_joined", "carol").await;

    cluster.broker.hold("n2");
    let first = alice.request(json!({"type": "send", "room": "lobby", "text": "first"})).await;
    let second = bob.request(json!({"type": "send", "room": "lobby", "text": "second"})).await;
    assert_eq!(second["seq"].as_u64(), first["seq"].as_u64().map(|seq| seq + 1), "{first} {second}");
    cluster.broker.release("n2");

    let seq = first["seq"].as_u64().unwrap();
    assert_eq!(next_message(&mut carol).await, ("first".into(), seq));
    assert_eq!(next_message(&mut carol).await, ("second".into(), seq + 1));
    assert_eq!(next_message(&mut bob).await, ("first".into(), seq));
}
