//! Read state that survives: the peer's read ("seen") and delivered markers, told live and found
//! again in `conversations` and the login's `sync`, on a standalone server (SQLite) and across
//! the nodes of a cluster (PostgreSQL, over Redis).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Waits until `client`'s node counts `user` online (bounded: fails the test after 10 s), so
/// events for them are routed to their node.
async fn wait_until_online(client: &mut TestClient, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = client.request(json!({"type": "stats", "user": user})).await;
        if stats["online"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never came online: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ok(client: &mut TestClient, frame: Value, of: &str) {
    let answer = client.request(frame).await;
    assert_eq!(answer["type"], "ok", "{answer}");
    assert_eq!(answer["of"], of);
}

fn dm_entry(listed: &Value) -> Value {
    listed["conversations"].as_array().unwrap().iter().find(|c| c["conv"] == "dm:alice:bob").unwrap().clone()
}

/// Alice writes from `alice_url`, Bob's phone and laptop are on `bob_url`.
async fn delivered_and_seen_survive_a_reload(alice_url: &str, bob_url: &str, same_node: bool) {
    let mut alice = TestClient::register(alice_url, "alice", "password1").await;
    let mut phone = TestClient::register(bob_url, "bob", "password2").await;
    let mut laptop = TestClient::login(bob_url, "bob", "password2").await;
    wait_until_online(&mut alice, "bob").await;
    wait_until_online(&mut phone, "alice").await;
    for n in 1..=3 {
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": format!("m{n}")})).await;
        assert_eq!(ack["seq"], n, "{ack}");
    }
    for _ in 1..=3 {
        phone.next_of_type("message").await;
    }

    // Delivered: told to the sender, capped at the newest message, never moved back.
    ok(&mut phone, json!({"type": "delivered", "to": "alice", "seq": 99}), "delivered").await;
    let told = alice.next_of_type("delivered").await;
    assert_eq!(told, json!({"type": "delivered", "conv": "dm:alice:bob", "user": "bob", "seq": 3}));
    ok(&mut laptop, json!({"type": "delivered", "to": "alice", "seq": 1}), "delivered").await;
    assert_eq!(alice.next_of_type("delivered").await["seq"], 3);
    if same_node {
        assert!(laptop.drain_of_type("delivered").await.is_empty(), "the receiver's own devices are not told");
    }

    // Seen: Bob reads two of three.
    ok(&mut phone, json!({"type": "read", "to": "alice", "seq": 2}), "read").await;
    assert_eq!(
        alice.next_of_type("read").await,
        json!({"type": "read", "conv": "dm:alice:bob", "user": "bob", "seq": 2})
    );

    // A reload of Alice's page, on Bob's node this time: both markers are in her sync and listing.
    let mut reloaded = TestClient::resume(bob_url, &alice.token(), json!({"dm:alice:bob": 1})).await;
    let summary = reloaded.next_of_type("sync").await;
    let entry = &summary["conversations"][0];
    assert_eq!(entry["conv"], "dm:alice:bob");
    assert_eq!(
        (entry["peer_read_seq"].clone(), entry["peer_delivered_seq"].clone()),
        (json!(2), json!(3)),
        "{summary}"
    );
    reloaded.next_of_type("synced").await;
    let listed = reloaded.request(json!({"type": "conversations"})).await;
    let entry = dm_entry(&listed);
    // Her own messages are read by her: nothing unread.
    assert_eq!((entry["read_seq"].clone(), entry["unread"].clone()), (json!(3), json!(0)), "{listed}");
    assert_eq!((entry["peer_read_seq"].clone(), entry["peer_delivered_seq"].clone()), (json!(2), json!(3)));
    let listed = laptop.request(json!({"type": "conversations"})).await;
    let entry = dm_entry(&listed);
    assert_eq!((entry["read_seq"].clone(), entry["unread"].clone()), (json!(2), json!(1)));
    assert_eq!((entry["peer_read_seq"].clone(), entry["peer_delivered_seq"].clone()), (json!(3), json!(3)));

    // Bob answers from his laptop: his phone counts neither it nor what it answered as unread.
    let ack = laptop.request(json!({"type": "send", "to": "alice", "text": "answer"})).await;
    assert_eq!(ack["seq"], 4, "{ack}");
    phone.next_of_type("message").await;
    let entry = dm_entry(&phone.request(json!({"type": "conversations"})).await);
    assert_eq!((entry["read_seq"].clone(), entry["unread"].clone()), (json!(4), json!(0)), "{entry}");
    assert_eq!(entry["peer_delivered_seq"], 3);

    // Alice's reload reads it: delivered moves along with seen.
    ok(&mut reloaded, json!({"type": "read", "to": "bob", "seq": 4}), "read").await;
    let entry = dm_entry(&phone.request(json!({"type": "conversations"})).await);
    assert_eq!((entry["peer_read_seq"].clone(), entry["peer_delivered_seq"].clone()), (json!(4), json!(4)));

    // Rooms have no single peer: no peer markers; the marker needs membership.
    ok(&mut alice, json!({"type": "read", "to": "alice", "seq": 0}), "read").await;
    let made = alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    assert_eq!(made["type"], "room", "{made}");
    ok(&mut alice, json!({"type": "delivered", "room": "lobby", "seq": 0}), "delivered").await;
    let listed = alice.request(json!({"type": "conversations"})).await;
    let room = listed["conversations"].as_array().unwrap().iter().find(|c| c["conv"] == "room:lobby").unwrap().clone();
    assert!(room.get("peer_read_seq").is_none() && room.get("peer_delivered_seq").is_none(), "{room}");
    let refused = phone.request(json!({"type": "delivered", "room": "lobby", "seq": 1})).await;
    assert_eq!(refused["code"], "not_a_member", "{refused}");
    let refused = phone.request(json!({"type": "delivered", "to": "nobody", "seq": 1})).await;
    assert_eq!(refused["code"], "user_not_found", "{refused}");
    let refused = phone.request(json!({"type": "delivered", "to": "alice"})).await;
    assert_eq!(refused["code"], "invalid_field", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_seen_survive_a_reload_on_a_standalone_server() {
    let node = NodeProcess::start(BINARY, "n1", &[]);
    delivered_and_seen_survive_a_reload(&node.ws_url(), &node.ws_url(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_seen_cross_the_nodes_of_a_cluster() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 2, &["--node-timeout-ms", "1500"]);
    delivered_and_seen_survive_a_reload(&cluster.url(0), &cluster.url(1), false).await;
}
