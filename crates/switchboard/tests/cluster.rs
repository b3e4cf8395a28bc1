//! Three real node processes over a real broker (Redis, then NATS) sharing a real PostgreSQL
//! database behave as one server, and route only where a message is needed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::http_get;
use switchboard_testkit::services::{ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Waits until the client's node counts `expected` connections of `user` across the cluster
/// (bounded: it fails the test after 10 s).
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

async fn three_nodes_act_as_one_server(cluster: ProcessCluster) {
    // Accounts live in the shared store: register on one node, log in on another.
    let registered = TestClient::register(&cluster.url(0), "zoe", "password1").await;
    drop(registered);
    let zoe = TestClient::login(&cluster.url(1), "zoe", "password1").await;
    assert_eq!(zoe.session["node"], "n2");

    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    let mut bob_tablet = TestClient::login_open(&cluster.url(2), "bob").await;
    let mut carol = TestClient::login_open(&cluster.url(2), "carol").await;
    alice.next_about("user_online", "bob").await;
    alice.next_about("user_online", "carol").await;
    wait_for_connections(&mut alice, "bob", 2).await;
    let stats = alice.request(json!({"type": "stats", "user": "bob"})).await;
    let mut nodes: Vec<String> = serde_json::from_value(stats["nodes"].clone()).unwrap();
    nodes.sort();
    assert_eq!(nodes, ["n2", "n3"]);

    // A private message reaches every device of the recipient, wherever they are.
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "hello from n1", "key": "m1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["seq"], 1);
    assert_eq!(bob.next_of_type("message").await["text"], "hello from n1");
    assert_eq!(bob_tablet.next_of_type("message").await["text"], "hello from n1");
    let reply = bob_tablet.request(json!({"type": "send", "to": "alice", "text": "hi back"})).await;
    assert_eq!(reply["seq"], 2, "one gap-free sequence per conversation across nodes");
    assert_eq!(alice.next_of_type("message").await["text"], "hi back");
    assert_eq!(bob.next_of_type("message").await["text"], "hi back", "bob's other device follows");

    // Rooms span nodes; a join on one node reaches the member's devices on the others.
    carol.request(json!({"type": "create_room", "room": "lobby"})).await;
    let joined = alice.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(joined["type"], "room", "{joined}");
    carol.next_about("member_joined", "alice").await;
    let said = carol.request(json!({"type": "send", "room": "lobby", "text": "welcome"})).await;
    assert_eq!(said["type"], "ack");
    assert_eq!(alice.next_of_type("message").await["text"], "welcome");
    let bob_joins = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(bob_joins["history"][0]["text"], "welcome", "the join replays the room from the shared store");
    carol.request(json!({"type": "send", "room": "lobby", "text": "second"})).await;
    assert_eq!(bob.next_of_type("message").await["text"], "second");
    assert_eq!(bob_tablet.next_of_type("message").await["text"], "second", "the join on n2 moved bob's n3 device in");

    // The gateway lists every live node and picks the least loaded.
    switchboard_testkit::eventually("the gateway lists three nodes", Duration::from_secs(10), || async {
        let (_, body) = http_get(cluster.nodes[0].addr(), "/api/nodes").await;
        let listed: Value = serde_json::from_str(&body).unwrap_or_default();
        listed["nodes"].as_array().map_or(0, Vec::len) == 3
    })
    .await;
    let (status, body) = http_get(cluster.nodes[0].addr(), "/api/connect").await;
    assert_eq!(status, 200);
    let pick: Value = serde_json::from_str(&body).unwrap();
    assert!(pick["url"].as_str().unwrap().starts_with("ws://127.0.0.1:"), "{pick}");

    // Offline only when bob's last connection anywhere closes.
    bob.close().await;
    wait_for_connections(&mut alice, "bob", 1).await;
    assert!(alice.drain_of_type("user_offline").await.is_empty(), "bob is still online on n3");
    bob_tablet.close().await;
    alice.next_about("user_offline", "bob").await;
    drop(zoe);
}

async fn routing_is_targeted(cluster: ProcessCluster) {
    let mut dave = TestClient::login_open(&cluster.url(0), "dave").await;
    let mut erin = TestClient::login_open(&cluster.url(1), "erin").await;
    let mut frank = TestClient::login_open(&cluster.url(2), "frank").await;
    dave.next_about("user_online", "erin").await;
    dave.next_about("user_online", "frank").await;
    dave.request(json!({"type": "create_room", "room": "pair"})).await;
    erin.request(json!({"type": "join", "room": "pair"})).await;
    dave.next_about("member_joined", "erin").await;

    let chat_at_n3 = cluster.metric(2, "switchboard_bus_chat_messages_received_total").await;
    let chat_at_n2 = cluster.metric(1, "switchboard_bus_chat_messages_received_total").await;
    for n in 0..10 {
        dave.request(json!({"type": "send", "to": "erin", "text": format!("pm {n}")})).await;
        dave.request(json!({"type": "send", "room": "pair", "text": format!("room {n}")})).await;
    }
    for _ in 0..20 {
        erin.next_of_type("message").await;
    }
    // Frank on n3 gets a message after everything else, on the path from n1: once he has it, n3
    // has handled all n1 published before it.
    dave.request(json!({"type": "send", "to": "frank", "text": "marker"})).await;
    assert_eq!(frank.next_of_type("message").await["text"], "marker");
    let received_by_n3 = cluster.metric(2, "switchboard_bus_chat_messages_received_total").await - chat_at_n3;
    assert_eq!(received_by_n3, 1.0, "n3 has no user in the pair or the room: only the marker reached it");
    let received_by_n2 = cluster.metric(1, "switchboard_bus_chat_messages_received_total").await - chat_at_n2;
    assert_eq!(received_by_n2, 20.0, "n2 got each private and room message exactly once");
    let sent_by_n1 = cluster.metric(0, "switchboard_bus_messages_sent_total").await;
    assert!(sent_by_n1 >= 21.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_redis_and_postgres_act_as_one_server() {
    three_nodes_act_as_one_server(ProcessCluster::start(
        BINARY,
        ServiceProcess::redis(),
        3,
        &["--node-timeout-ms", "1500", "--presence", "everyone"],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_nats_and_postgres_act_as_one_server() {
    three_nodes_act_as_one_server(ProcessCluster::start(
        BINARY,
        ServiceProcess::nats(),
        3,
        &["--node-timeout-ms", "1500", "--presence", "everyone"],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_routing_sends_nothing_to_a_node_without_interested_users() {
    routing_is_targeted(ProcessCluster::start(
        BINARY,
        ServiceProcess::redis(),
        3,
        &["--node-timeout-ms", "1500", "--presence", "everyone"],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_routing_sends_nothing_to_a_node_without_interested_users() {
    routing_is_targeted(ProcessCluster::start(
        BINARY,
        ServiceProcess::nats(),
        3,
        &["--node-timeout-ms", "1500", "--presence", "everyone"],
    ))
    .await;
}
