//! Two nodes in one process, joined by the in-process bus and sharing one store: the core routes
//! between nodes through the `Bus` trait, and only to the nodes that need a message. Presence is
//! about everyone here: the tests wait for strangers' `user_online` to know a login reached a node.

use serde_json::{json, Value};
use switchboard_bus::Topic;
use switchboard_testkit::{TestClient, TestCluster};

#[tokio::test]
async fn a_private_message_crosses_to_the_node_holding_the_recipient_and_the_senders_other_device() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = TestClient::login_open(&n1.ws_url(), "alice").await;
    let mut alice_on_n2 = TestClient::login_open(&n2.ws_url(), "alice").await;
    let mut bob = TestClient::login_open(&n2.ws_url(), "bob").await;
    assert_eq!(bob.session["node"], "n2");
    // Both nodes know where everyone is before the message goes.
    alice.next_about("user_online", "bob").await;
    let stats = alice.request(json!({"type": "stats", "user": "alice"})).await;
    assert_eq!(stats["connections"], 2, "{stats}");

    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "across"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let at_bob = bob.next_of_type("message").await;
    assert_eq!(at_bob["text"], "across");
    assert_eq!(at_bob["from"], "alice");
    let at_other_device = alice_on_n2.next_of_type("message").await;
    assert_eq!(at_other_device["seq"], ack["seq"]);
    assert!(alice.drain_of_type("message").await.is_empty(), "the sending connection gets only the ack");
}

#[tokio::test]
async fn presence_is_cluster_wide_and_offline_only_when_the_last_connection_anywhere_closes() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut watcher = TestClient::login_open(&n1.ws_url(), "watcher").await;
    let bob_on_n1 = TestClient::login_open(&n1.ws_url(), "bob").await;
    watcher.next_about("user_online", "bob").await;
    let bob_on_n2 = TestClient::login_open(&n2.ws_url(), "bob").await;
    let stats = watcher.request(json!({"type": "stats", "user": "bob"})).await;
    assert_eq!(stats["connections"], 2, "{stats}");
    let mut nodes: Vec<String> = serde_json::from_value(stats["nodes"].clone()).unwrap();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);

    bob_on_n1.close().await;
    let stats = watcher.request(json!({"type": "stats", "user": "bob"})).await;
    assert_eq!(stats["online"], true);
    assert!(watcher.drain_of_type("user_offline").await.is_empty(), "bob is still online on n2");
    bob_on_n2.close().await;
    watcher.next_about("user_offline", "bob").await;
}

#[tokio::test]
async fn room_messages_reach_members_on_every_node_and_nodes_without_members_get_nothing() {
    let cluster = TestCluster::start_with(3, |config| config.presence_everyone = true).await;
    let nodes = &cluster.nodes;
    let mut alice = TestClient::login_open(&nodes[0].ws_url(), "alice").await;
    let mut bob = TestClient::login_open(&nodes[1].ws_url(), "bob").await;
    let _carol = TestClient::login_open(&nodes[2].ws_url(), "carol").await;
    alice.next_about("user_online", "carol").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    let joined = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(joined["type"], "room");
    alice.next_about("member_joined", "bob").await;

    let mut carol = _carol;
    let received_before = nodes[2].metric("switchboard_bus_messages_received_total").await;
    let ack = alice.request(json!({"type": "send", "room": "lobby", "text": "hello room"})).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(bob.next_of_type("message").await["text"], "hello room");
    // A private message to carol leaves n1 after the room message, on the same ordered path: once
    // carol has it, n3 has handled everything n1 published before.
    alice.request(json!({"type": "send", "to": "carol", "text": "just you"})).await;
    assert_eq!(carol.next_of_type("message").await["text"], "just you");
    let received_after = nodes[2].metric("switchboard_bus_messages_received_total").await;
    assert_eq!(received_after - received_before, 1.0, "n3 got the private message and nothing of the room");
}

/// Both nodes have heard from each other: each holds a user the other announced.
async fn introduce(cluster: &TestCluster) -> (TestClient, TestClient) {
    let mut on_n1 = TestClient::login_open(&cluster.url(0), "watcher1").await;
    let mut on_n2 = TestClient::login_open(&cluster.url(1), "watcher2").await;
    on_n1.next_about("user_online", "watcher2").await;
    let online = on_n2.next_of_type("online").await;
    assert_eq!(online["users"], json!(["watcher1", "watcher2"]), "n2 knows of n1's user: {online}");
    (on_n1, on_n2)
}

async fn holds_connection_of(server: &switchboard_testkit::TestServer, user: &str) -> bool {
    server.node().connections().iter().any(|connection| &*connection.user == user)
}

/// A login on n2 reads its sync while n1 has not heard of it yet (n1's bus deliveries are held):
/// n1 routes a message committed after that read by bob's user topic, which n2 subscribed before
/// the read, not by what n1 knows of bob, so it reaches him once, live or in the sync.
#[tokio::test]
async fn a_login_misses_nothing_committed_on_a_node_that_has_not_heard_of_it_yet() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (_watcher1, _watcher2) = introduce(&cluster).await;
    let mut alice = TestClient::login_open_quiet(&cluster.url(0), "alice").await;
    cluster.broker.hold("n1");
    let n2_url = cluster.url(1);
    let login =
        tokio::spawn(
            async move { TestClient::login_with(&n2_url, json!({"type": "login_open", "username": "bob"})).await },
        );
    switchboard_testkit::eventually("n2 holds bob's connection", switchboard_testkit::WAIT, || {
        holds_connection_of(&cluster.nodes[1], "bob")
    })
    .await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "while n1 lagged"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    cluster.broker.release("n1");

    let mut bob = login.await.unwrap();
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "while n1 lagged");
    assert_eq!(message["seq"], ack["seq"]);
    let again = alice.request(json!({"type": "send", "to": "bob", "text": "after"})).await;
    let next = bob.next_of_type("message").await;
    assert_eq!(next["seq"], again["seq"], "the first message came once, then the live one: {next}");
}

/// bob joins a room on n1 while n2, which holds his other device, has not heard of it yet (n2's
/// bus deliveries are held): a room message committed in between went on the bus before n2 listened
/// to the room, and still reaches that device, once.
#[tokio::test]
async fn a_join_elsewhere_misses_nothing_committed_before_the_other_node_listens() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (_watcher1, _watcher2) = introduce(&cluster).await;
    let mut alice = TestClient::login_open_quiet(&cluster.url(0), "alice").await;
    let created = alice.request(json!({"type": "create_room", "room": "stage"})).await;
    assert_eq!(created["type"], "room", "{created}");
    let mut bob = TestClient::login_open_quiet(&cluster.url(0), "bob").await;
    let mut bob_tablet = TestClient::login_open_quiet(&cluster.url(1), "bob").await;
    cluster.broker.hold("n2");
    let joined = bob.request(json!({"type": "join", "room": "stage"})).await;
    assert_eq!(joined["type"], "room", "{joined}");
    let ack = alice.request(json!({"type": "send", "room": "stage", "text": "while n2 lagged"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    cluster.broker.release("n2");

    let message = bob_tablet.next_of_type("message").await;
    assert_eq!(message["text"], "while n2 lagged", "{message}");
    assert_eq!(message["seq"], ack["seq"]);
    let again = alice.request(json!({"type": "send", "room": "stage", "text": "after"})).await;
    let next = bob_tablet.next_of_type("message").await;
    assert_eq!(next["seq"], again["seq"], "the first message came once, then the live one: {next}");
}

/// A small room's `member_joined` that reaches a node late (its bus deliveries held) goes to the
/// members logged in there when it was sent, not to those who came since: in a login storm the
/// late ones are most of the room, and the event is no news to them.
#[tokio::test]
async fn a_late_member_event_reaches_only_those_logged_in_when_it_was_sent() {
    let cluster = TestCluster::start_with(2, |config| config.presence_everyone = true).await;
    let (_watcher1, _watcher2) = introduce(&cluster).await;
    let mut alice = TestClient::login_open_quiet(&cluster.url(0), "alice").await;
    let created = alice.request(json!({"type": "create_room", "room": "hall"})).await;
    assert_eq!(created["type"], "room", "{created}");
    let mut early = TestClient::login_open_quiet(&cluster.url(1), "early").await;
    assert_eq!(early.request(json!({"type": "join", "room": "hall"})).await["type"], "room");
    alice.next_about("member_joined", "early").await;
    cluster.broker.hold("n2");
    let mut bob = TestClient::login_open_quiet(&cluster.url(0), "bob").await;
    assert_eq!(bob.request(json!({"type": "join", "room": "hall"})).await["type"], "room");
    // Logged in after bob's member_joined left n1 (the margin for the nodes' clocks is 250 ms).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut late = TestClient::login_open_quiet(&cluster.url(1), "late").await;
    assert_eq!(late.request(json!({"type": "join", "room": "hall"})).await["type"], "room");
    early.next_about("member_joined", "late").await;
    cluster.broker.release("n2");

    // Bob's join reaches n2 now: early, logged in before it, hears of it.
    early.next_about("member_joined", "bob").await;
    let about_bob: Vec<Value> =
        late.drain_of_type("member_joined").await.into_iter().filter(|event| event["user"] == "bob").collect();
    assert!(about_bob.is_empty(), "late logged in after bob's join was announced: {about_bob:?}");
}

/// A node that never answers (stuck, but still heard from) delays logins elsewhere by the node
/// timeout at most, not for ever.
#[tokio::test]
async fn a_node_that_never_answers_does_not_stop_logins_elsewhere() {
    let cluster = TestCluster::start_with(2, |config| {
        config.heartbeat_interval = std::time::Duration::from_millis(200);
        config.node_timeout = std::time::Duration::from_secs(1);
        config.presence_everyone = true;
    })
    .await;
    let (_watcher1, _watcher2) = introduce(&cluster).await;
    cluster.broker.hold("n1");
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    assert_eq!(bob.session["node"], "n2");
    let sync = bob.next_of_type("sync").await;
    assert_eq!(sync["conversations"], json!([]), "{sync}");
    cluster.broker.release("n1");
}

#[tokio::test]
async fn a_new_room_is_announced_to_everyone_on_every_node_and_a_burst_is_coalesced() {
    let cluster = TestCluster::start_with(2, |c| c.room_announcements_per_sec = 1).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = TestClient::login_open(&n1.ws_url(), "alice").await;
    let mut bob = TestClient::login_open(&n2.ws_url(), "bob").await;
    // Bob's node is part of the cluster once alice's node knows him online (presence is scoped:
    // she asks about him).
    let watching = alice.request(json!({"type": "watch", "users": ["bob"]})).await;
    if watching["users"][0]["online"] != true {
        alice.next_about("user_online", "bob").await;
    }

    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    let announced = json!({"type": "room_created", "room": "lobby", "by": "alice"});
    assert_eq!(bob.next_of_type("room_created").await, announced, "bob is on the other node");
    assert_eq!(alice.next_of_type("room_created").await, announced, "the creator's connection too");

    // A burst past the limit: every room is accounted for, most of them in one `rooms_created`.
    let burst = 5;
    for index in 0..burst {
        let answer = alice.request(json!({"type": "join", "room": format!("burst-{index}")})).await;
        assert_eq!(answer["created"], true, "{answer}");
    }
    let (mut one_by_one, mut coalesced) = (0, 0);
    while one_by_one + coalesced < burst {
        let event = bob.next().await;
        match event["type"].as_str() {
            Some("room_created") => one_by_one += 1,
            Some("rooms_created") => coalesced += event["count"].as_u64().expect("count"),
            _ => {}
        }
    }
    assert_eq!(one_by_one + coalesced, burst, "no room counted twice");
    assert!(coalesced > 0, "at one announcement a second, {burst} rooms at once cannot all go one by one");
}

/// Bus messages dropped on their way into a node (its inbound queue full, or the broker cutting a
/// slow consumer off) are repaired by asking the connections they were meant for to resume, and
/// only those: a user's topic, that user's connections; a room's, its listeners; unknown, all.
#[tokio::test]
async fn dropped_inbound_messages_make_only_their_recipients_resume() {
    let cluster = TestCluster::start_with(2, |config| {
        config.presence_everyone = true;
        config.heartbeat_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let (_watcher1, _watcher2) = introduce(&cluster).await;
    let n2 = &cluster.nodes[1];
    let mut bob = TestClient::login_open_quiet(&n2.ws_url(), "bob").await;
    let mut carol = TestClient::login_open_quiet(&n2.ws_url(), "carol").await;
    let mut dave = TestClient::login_open_quiet(&n2.ws_url(), "dave").await;
    carol.request(json!({"type": "create_room", "room": "lobby"})).await;
    let joined = carol.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(joined["type"], "room", "{joined}");

    n2.node().bus_counters().dropped.record(Some(&Topic::User("bob".into())));
    assert_eq!(bob.expect_end().await.map(|(code, _)| code), Some(1012), "bob resumes");
    n2.node().bus_counters().dropped.record(Some(&Topic::Room("lobby".into())));
    assert_eq!(carol.expect_end().await.map(|(code, _)| code), Some(1012), "the room's listener resumes");
    let answer = dave.request(json!({"type": "ping"})).await;
    assert_eq!(answer["type"], "pong", "dave, whom nothing dropped was for, stays: {answer}");

    n2.node().bus_counters().dropped.record(None);
    assert_eq!(dave.expect_end().await.map(|(code, _)| code), Some(1012), "unknown drops: everyone resumes");
}
