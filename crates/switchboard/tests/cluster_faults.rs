//! Faults in a real cluster: node processes killed (SIGKILL) or stalled (SIGSTOP), the broker
//! restarted, PostgreSQL cut off. Whatever happens, nothing acknowledged is lost, nothing is
//! delivered twice, clients recover by resuming with their cursors, and presence heals.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::http_get;
use switchboard_testkit::proxy::TcpProxy;
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess, TestDatabase};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
/// How long a node may stay silent before the others declare it dead (`--node-timeout-ms`).
const NODE_TIMEOUT: Duration = Duration::from_millis(1500);
/// The bound on "soon" for cross-node convergence and presence changes.
const CONVERGE: Duration = Duration::from_secs(10);
/// Flags that keep the rate limit out of the way of the tests' bursts.
const NO_RATE_LIMIT: [&str; 4] = ["--rate-per-sec", "100000", "--rate-burst", "100000"];

/// Three nodes over `broker`, with a short node timeout and no rate limit in the way.
fn start_cluster(broker: ServiceProcess) -> ProcessCluster {
    let node_timeout = NODE_TIMEOUT.as_millis().to_string();
    // Presence about everyone: the tests watch strangers come and go.
    let mut extra = vec!["--node-timeout-ms", node_timeout.as_str(), "--presence", "everyone"];
    extra.extend(NO_RATE_LIMIT);
    ProcessCluster::start(BINARY, broker, 3, &extra)
}

/// Polls `stats` about `user` on the client's node until `check` accepts the answer (bounded).
async fn wait_for_stats(client: &mut TestClient, user: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let stats = client.request(json!({"type": "stats", "user": user})).await;
        if check(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: never within {CONVERGE:?}; last stats {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn nodes_of(stats: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = serde_json::from_value(stats["nodes"].clone()).unwrap_or_default();
    nodes.sort();
    nodes
}

/// The `message` frames of one conversation, in arrival order.
fn messages_in(frames: &[Value], conv: &str) -> Vec<Value> {
    frames.iter().filter(|frame| frame["type"] == "message" && frame["conv"] == conv).cloned().collect()
}

fn seq_of(message: &Value) -> u64 {
    message["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {message}"))
}

/// Asserts that `messages` are exactly seqs `first..=last`, in order, each with the text
/// `expected` has for its seq.
fn assert_exactly(messages: &[Value], first: u64, last: u64, expected: &BTreeMap<u64, String>, what: &str) {
    let seqs: Vec<u64> = messages.iter().map(seq_of).collect();
    let wanted: Vec<u64> = (first..=last).collect();
    assert_eq!(seqs, wanted, "{what}: wrong seqs (gap, duplicate or disorder)");
    for message in messages {
        let seq = seq_of(message);
        assert_eq!(message["text"].as_str(), expected.get(&seq).map(String::as_str), "{what}: text of seq {seq}");
    }
}

/// The newest seq up to which `messages` (arrival order) hold every seq from `start + 1` on: the
/// cursor a careful client keeps. Asserts the messages never go back or repeat.
fn contiguous_cursor(messages: &[Value], start: u64, what: &str) -> u64 {
    let mut cursor = start;
    let mut previous = 0;
    for message in messages {
        let seq = seq_of(message);
        assert!(seq > previous, "{what}: seq {seq} after {previous} (duplicate or disorder)");
        previous = seq;
        if seq == cursor + 1 {
            cursor = seq;
        }
    }
    cursor
}

/// Test 1. A node is killed (SIGKILL) in the middle of a conversation: its clients see their
/// connections drop, resume on another node and get every acknowledged message exactly once;
/// sends it took but never answered can be retried with their keys and are stored once; the other
/// nodes forget its users within the node timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_9_of_a_node_mid_conversation_loses_and_repeats_nothing() {
    const SENDS: u64 = 100;
    /// Alice sends one by one, but pipelines `PIPELINED` sends after this many; n2 dies under them.
    const KILL_AFTER: u64 = 40;
    const PIPELINED: u64 = 20;
    /// Dan's sends whose answers never come (the connection that sent them drops), then the ones
    /// n2 is killed under: `LOST` + `IN_FLIGHT` keys in all.
    const LOST: u64 = 10;
    const IN_FLIGHT: u64 = 20;
    const BURST: u64 = LOST + IN_FLIGHT;
    let mut cluster = start_cluster(ServiceProcess::redis());
    let mut watcher = TestClient::login_open(&cluster.url(0), "watcher").await;
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let bob = TestClient::login_open(&cluster.url(1), "bob").await;
    // Dan is only ever on n2 (until after n2 is gone), on two devices: he shows the dead node's
    // users go offline, and he sends on n2 when it dies.
    let mut dan = TestClient::login_open(&cluster.url(1), "dan").await;
    let mut dan_phone = Some(TestClient::login_open(&cluster.url(1), "dan").await);
    watcher.await_presence("user_online", &["alice", "bob", "dan"]).await;

    // Bob reads on n2 until his connection ends.
    let bob_token = bob.token();
    let bob_reader = tokio::spawn(async move {
        let mut bob = bob;
        let end = bob.expect_end().await;
        (end, bob.take_inbox())
    });

    let mut alice_texts = BTreeMap::new();
    let mut dan_texts = BTreeMap::new();
    let mut dan_acks: HashMap<u64, Value> = HashMap::new();
    let mut alice_from_dan = Vec::new();
    let mut killed_at = None;
    let mut i = 0;
    while i < SENDS {
        i += 1;
        let text = format!("alice to bob {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("ab-{i}")})).await;
        // Alice's node stays up: every send of hers is acknowledged, none is left to retry.
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["seq"], i, "alice alone writes dm:alice:bob: {ack}");
        alice_texts.insert(i, text);
        if i == KILL_AFTER {
            // Dan's phone sends a burst and loses its connection before any answer: the messages
            // are stored (alice gets them) but dan never learns it.
            let mut phone = dan_phone.take().expect("dan's phone");
            for j in 0..LOST {
                let text = format!("dan to alice {j}");
                dan_texts.insert(j, text.clone());
                phone.send(json!({"type": "send", "to": "alice", "text": text, "key": format!("da-{j}")})).await;
            }
            phone.drop_connection();
            while (alice_from_dan.len() as u64) < LOST {
                alice_from_dan.push(alice.next_of_type("message").await);
            }
            // Then alice and dan both pipeline a burst, and n2 is killed under them once dan's
            // first send is answered: the rest of his burst, and alice's messages on their way to
            // bob through n2, are in flight.
            for k in i + 1..=i + PIPELINED {
                let text = format!("alice to bob {k}");
                alice_texts.insert(k, text.clone());
                alice
                    .send(json!({"type": "send", "ref": 1000 + k, "to": "bob", "text": text, "key": format!("ab-{k}")}))
                    .await;
            }
            for j in LOST..BURST {
                let text = format!("dan to alice {j}");
                dan_texts.insert(j, text.clone());
                dan.send(
                    json!({"type": "send", "ref": 1000 + j, "to": "alice", "text": text, "key": format!("da-{j}")}),
                )
                .await;
            }
            let answered = dan.answer_to(1000 + LOST).await;
            assert_eq!(answered["type"], "ack", "{answered}");
            dan_acks.insert(LOST, answered);
            cluster.nodes[1].kill();
            killed_at = Some(Instant::now());
            for k in i + 1..=i + PIPELINED {
                let ack = alice.answer_to(1000 + k).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                assert_eq!(ack["seq"], k, "{ack}");
            }
            i += PIPELINED;
        }
    }
    let killed_at = killed_at.expect("n2 was killed");

    // Bob's connection just ends: a killed node sends no close frame.
    let (end, frames) = bob_reader.await.expect("bob's reader");
    assert_eq!(end, None, "a killed node cannot send a close frame");
    let live = messages_in(&frames, "dm:alice:bob");
    let cursor = live.len() as u64;
    assert_exactly(&live, 1, cursor, &alice_texts, "bob's live messages before n2 died");
    let sent_before_kill = KILL_AFTER + PIPELINED;
    assert!(cursor <= sent_before_kill, "bob got {cursor} messages from n2, dead before the send of the next");

    // Bob resumes on n3 with the seq of the last message he got: the sync brings exactly the rest.
    let mut bob = TestClient::resume(&cluster.url(2), &bob_token, json!({"dm:alice:bob": cursor})).await;
    assert_eq!(bob.session["node"], "n3");
    let synced = bob.read_sync().await;
    assert_exactly(&messages_in(&synced, "dm:alice:bob"), cursor + 1, SENDS, &alice_texts, "bob's sync on n3");
    println!("bob got {cursor} messages live on n2 before it died and {} in his sync on n3", SENDS - cursor);

    // Live delivery follows bob to n3, once n1 knows he is there.
    wait_for_stats(&mut alice, "bob", "n1 sees bob on n3", |stats| nodes_of(stats).contains(&"n3".to_owned())).await;
    for i in SENDS + 1..=SENDS + 5 {
        let text = format!("alice to bob {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("ab-{i}")})).await;
        assert_eq!(ack["seq"], i, "{ack}");
        alice_texts.insert(i, text);
        let message = bob.next_of_type("message").await;
        assert_exactly(&[message], i, i, &alice_texts, "bob's live message on n3");
    }
    assert!(bob.drain_of_type("message").await.is_empty(), "bob got a message twice");

    // The dead node's users leave the online list of the others within the node timeout.
    let remaining = (killed_at + CONVERGE).saturating_duration_since(Instant::now());
    let offline = tokio::time::timeout(remaining, watcher.next_about("user_offline", "dan")).await;
    assert!(offline.is_ok(), "dan (only on the killed n2) still online for n1 {CONVERGE:?} after the kill");
    println!("dan went offline for n1 {:?} after the kill of n2", killed_at.elapsed());
    let stats = watcher.request(json!({"type": "stats", "user": "bob"})).await;
    assert_eq!(stats["online"], true, "bob is online on n3: {stats}");
    assert_eq!(nodes_of(&stats), ["n3"], "n2 is forgotten, bob's n3 connection is not: {stats}");
    assert!(cluster.listed_nodes(0).await == ["n1", "n3"], "the gateway still lists the dead node");

    // Dan's second burst: whatever n2 answered before dying, and the rest.
    assert_eq!(dan.expect_end().await, None, "a killed node cannot send a close frame");
    for frame in dan.take_inbox() {
        if frame["type"] == "ack" {
            dan_acks.insert(frame["ref"].as_u64().expect("numeric ref") - 1000, frame);
        }
    }
    let dan_token = dan.token();
    let mut dan = TestClient::resume(&cluster.url(2), &dan_token, json!({})).await;
    dan.read_sync().await;
    // Dan retries every send of the burst with its key, answered or not: each is stored once.
    let mut stored = BTreeMap::new();
    let (mut stored_unanswered, mut never_stored) = (0, 0);
    for j in 0..BURST {
        let text = &dan_texts[&j];
        let ack = dan.request(json!({"type": "send", "to": "alice", "text": text, "key": format!("da-{j}")})).await;
        assert_eq!(ack["type"], "ack", "retry of {j}: {ack}");
        match dan_acks.get(&j) {
            Some(before) => {
                assert_eq!(ack["duplicate"], true, "an acknowledged send retried is a duplicate: {ack}");
                assert_eq!((&ack["seq"], &ack["id"]), (&before["seq"], &before["id"]), "the original's ack");
            }
            None if ack["duplicate"] == true => stored_unanswered += 1,
            None => never_stored += 1,
        }
        if j < LOST {
            assert_eq!(ack["duplicate"], true, "a stored send whose answer was lost, retried: {ack}");
            assert_eq!(ack["seq"], j + 1, "{ack}");
        }
        let previous = stored.insert(seq_of(&ack), text.clone());
        assert_eq!(previous, None, "two keys of the burst share seq {}", seq_of(&ack));
    }
    let answered = dan_acks.len();
    println!(
        "of dan's {BURST} sends n2 answered {answered}, stored {stored_unanswered} unanswered, {never_stored} not"
    );
    assert_eq!(stored.keys().copied().collect::<Vec<_>>(), (1..=BURST).collect::<Vec<_>>());
    let history = dan.request(json!({"type": "history", "to": "alice", "after": 0, "limit": 200})).await;
    let history: Vec<Value> = serde_json::from_value(history["messages"].clone()).expect("history messages");
    assert_exactly(&history, 1, BURST, &stored, "dm:alice:dan after the retries");
    // Alice never got one of dan's messages twice, whichever way it came.
    alice_from_dan.extend(alice.quiesce().await);
    contiguous_cursor(&messages_in(&alice_from_dan, "dm:alice:dan"), 0, "alice's live messages from dan");
}

/// Tests 2 and 3. The broker dies and comes back: meanwhile sends are stored and acknowledged but
/// reach only their own node; once the bus is back every node closes its clients with 1012, they
/// resume and get what crossed the outage exactly once, and presence and the gateway heal.
async fn broker_restart_loses_nothing_and_heals(broker: ServiceProcess) {
    let mut cluster = start_cluster(broker);
    let mut watcher = TestClient::login_open(&cluster.url(0), "watcher").await;
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    let mut carol = TestClient::login_open(&cluster.url(2), "carol").await;
    watcher.await_presence("user_online", &["alice", "bob", "carol"]).await;

    let mut texts = BTreeMap::new();
    for i in 1..=3 {
        let text = format!("before {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("b-{i}")})).await;
        assert_eq!(ack["seq"], i, "{ack}");
        texts.insert(i, text);
        assert_exactly(&[bob.next_of_type("message").await], i, i, &texts, "bob's live message");
    }
    let reply = bob.request(json!({"type": "send", "to": "alice", "text": "reply", "key": "r-1"})).await;
    assert_eq!(reply["seq"], 4, "{reply}");
    assert_eq!(alice.next_of_type("message").await["text"], "reply");
    texts.insert(4, "reply".to_owned());
    let bob_cursor = 4;

    cluster.broker.kill();

    // The chosen behaviour while the bus is down: a send is stored in PostgreSQL and acknowledged
    // (it is durable, and will reach the recipient through the resume after the outage), not
    // refused. It only cannot cross to other nodes live.
    for i in 5..=9 {
        let text = format!("during the outage {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("o-{i}")})).await;
        assert_eq!(ack["type"], "ack", "a send during the outage is durable and acknowledged: {ack}");
        assert_eq!(ack["seq"], i, "{ack}");
        texts.insert(i, text);
    }
    assert!(bob.drain_of_type("message").await.is_empty(), "a message crossed nodes without a broker");
    // Without the bus n1 hears nobody: the other nodes and their users go away for it.
    switchboard_testkit::eventually("n1's gateway lists only n1", CONVERGE, || async {
        cluster.listed_nodes(0).await == ["n1"]
    })
    .await;
    watcher.await_presence("user_offline", &["bob", "carol"]).await;

    cluster.broker.start();
    // Every node, once its link is back, tells its clients to resume.
    for (name, client) in [("watcher", &mut watcher), ("alice", &mut alice), ("bob", &mut bob), ("carol", &mut carol)] {
        let end = client.expect_end().await;
        assert_eq!(end.map(|(code, _)| code), Some(1012), "{name} must be told to resume with 1012");
    }

    // Bob resumes with his cursor: exactly the messages of the outage, once, in order.
    let mut bob = TestClient::resume(&cluster.url(1), &bob.token(), json!({"dm:alice:bob": bob_cursor})).await;
    assert_exactly(&bob.read_sync().await, 5, 9, &texts, "bob's sync after the outage");
    assert!(bob.drain_of_type("message").await.is_empty(), "bob got a message twice");
    let mut alice = TestClient::resume(&cluster.url(0), &alice.token(), json!({"dm:alice:bob": 9})).await;
    assert!(alice.read_sync().await.is_empty(), "alice holds everything she sent");
    let mut carol = TestClient::resume(&cluster.url(2), &carol.token(), json!({})).await;
    carol.read_sync().await;
    let mut watcher = TestClient::resume(&cluster.url(0), &watcher.token(), json!({})).await;
    watcher.read_sync().await;

    // Presence and the gateway heal.
    wait_for_stats(&mut watcher, "bob", "n1 sees bob online on n2 again", |stats| {
        stats["online"] == true && nodes_of(stats) == ["n2"]
    })
    .await;
    wait_for_stats(&mut watcher, "carol", "n1 sees carol online on n3 again", |stats| {
        stats["online"] == true && nodes_of(stats) == ["n3"]
    })
    .await;
    wait_for_stats(&mut carol, "alice", "n3 sees alice online on n1 again", |stats| nodes_of(stats) == ["n1"]).await;
    switchboard_testkit::eventually("n1's gateway lists the three nodes again", CONVERGE, || async {
        cluster.listed_nodes(0).await == ["n1", "n2", "n3"]
    })
    .await;

    // And messages cross nodes live again, both ways.
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "after", "key": "a-10"})).await;
    assert_eq!(ack["seq"], 10, "{ack}");
    texts.insert(10, "after".to_owned());
    assert_exactly(&[bob.next_of_type("message").await], 10, 10, &texts, "bob's live message after the outage");
    let ack = carol.request(json!({"type": "send", "to": "alice", "text": "back", "key": "c-1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(alice.next_of_type("message").await["text"], "back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing_and_heals() {
    broker_restart_loses_nothing_and_heals(ServiceProcess::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_loses_nothing_and_heals() {
    broker_restart_loses_nothing_and_heals(ServiceProcess::nats()).await;
}

/// Test 4. The store becomes unreachable under a standalone node: sends are refused with
/// `store_unavailable` (never acknowledged) within a bounded time, logins fail and the node is not
/// ready; once it is back sends are acknowledged again, and the conversation holds exactly the
/// acknowledged messages, gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_refuses_sends_and_recovers() {
    let database = TestDatabase::create();
    let mut proxy = TcpProxy::forward_to(database.server_addr());
    let store = database.url_through(proxy.addr());
    let mut args = vec!["--store", store.as_str(), "--open-auth"];
    args.extend(NO_RATE_LIMIT);
    let node = NodeProcess::start(BINARY, "solo", &args);
    let mut alice = TestClient::login_open(&node.ws_url(), "alice").await;
    let mut bob = TestClient::login_open(&node.ws_url(), "bob").await;

    let mut acknowledged = BTreeMap::new();
    for i in 1..=3 {
        let text = format!("before {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("b-{i}")})).await;
        assert_eq!(ack["seq"], i, "{ack}");
        acknowledged.insert(i, text);
        assert_exactly(&[bob.next_of_type("message").await], i, i, &acknowledged, "bob's live message");
    }

    proxy.stop();
    let stopped_at = Instant::now();
    let readiness = tokio::spawn(http_get(node.addr(), "/readyz"));
    let mut newcomer = TestClient::connect(&node.ws_url()).await;
    newcomer.send(json!({"type": "login_open", "ref": 1, "username": "carol"})).await;
    for i in 1..=3u64 {
        let text = format!("refused {i}");
        alice.send(json!({"type": "send", "ref": 100 + i, "to": "bob", "text": text, "key": format!("x-{i}")})).await;
    }
    for i in 1..=3u64 {
        let answer = alice.answer_to(100 + i).await;
        assert_eq!(answer["type"], "error", "a send the store did not take is never acknowledged: {answer}");
        assert_eq!(answer["code"], "store_unavailable", "{answer}");
        assert_eq!(answer["ref"], 100 + i, "{answer}");
    }
    let refused_after = stopped_at.elapsed();
    println!("sends refused {refused_after:?} after the store went away");
    assert!(refused_after < Duration::from_secs(15), "refusals took {refused_after:?}");
    let answer = newcomer.answer_to(1).await;
    assert_eq!((&answer["type"], &answer["code"]), (&json!("error"), &json!("store_unavailable")), "login: {answer}");
    let (status, body) = readiness.await.expect("readiness probe");
    assert_eq!(status, 503, "not ready without a store: {body}");
    assert!(bob.drain_of_type("message").await.is_empty(), "a refused message was delivered");

    proxy.start();
    assert_eq!(http_get(node.addr(), "/readyz").await.0, 200, "ready again once the store answers");
    TestClient::login_open(&node.ws_url(), "carol").await;
    for i in 4..=6 {
        let text = format!("after {i}");
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("a-{i}")})).await;
        assert_eq!(ack["type"], "ack", "the store is back: {ack}");
        assert_eq!(ack["seq"], i, "refused sends took no seq: {ack}");
        acknowledged.insert(i, text);
        assert_exactly(&[bob.next_of_type("message").await], i, i, &acknowledged, "bob's live message");
    }
    let history = bob.request(json!({"type": "history", "to": "alice", "after": 0, "limit": 200})).await;
    let history: Vec<Value> = serde_json::from_value(history["messages"].clone()).expect("history messages");
    assert_exactly(&history, 1, 6, &acknowledged, "bob's history: the acknowledged messages only");
}

/// Test 5. A stopped node (SIGSTOP) holds up nobody: the other nodes keep chatting at full speed,
/// also while publishing to the stalled node's user's topic and rooms, and forget it after the node
/// timeout (for presence); once it runs again its user gets every message live, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stalled_node_does_not_stall_the_others() {
    const ROUNDS: u64 = 100;
    let cluster = start_cluster(ServiceProcess::redis());
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    let mut carol = TestClient::login_open(&cluster.url(2), "carol").await;
    alice.await_presence("user_online", &["bob", "carol"]).await;
    bob.await_presence("user_online", &["carol"]).await;
    alice.request(json!({"type": "create_room", "room": "trio"})).await;
    for member in [&mut bob, &mut carol] {
        let joined = member.request(json!({"type": "join", "room": "trio"})).await;
        assert_eq!(joined["type"], "room", "{joined}");
    }
    alice.await_presence("member_joined", &["bob", "carol"]).await;

    let mut to_carol = BTreeMap::new();
    let mut in_room = BTreeMap::new();
    let ack = alice.request(json!({"type": "send", "to": "carol", "text": "pm 0", "key": "c-0"})).await;
    to_carol.insert(seq_of(&ack), "pm 0".to_owned());
    let ack = alice.request(json!({"type": "send", "room": "trio", "text": "room 0", "key": "r-0"})).await;
    in_room.insert(seq_of(&ack), "room 0".to_owned());
    let mut carol_live = vec![carol.next_of_type("message").await, carol.next_of_type("message").await];
    assert_eq!(bob.next_of_type("message").await["text"], "room 0");

    cluster.nodes[2].pause();
    let stalled_at = Instant::now();
    let exchange = async {
        for i in 1..=ROUNDS {
            let text = format!("alice to bob {i}");
            let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("ab-{i}")})).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            let message = bob.next_of_type("message").await;
            assert_eq!((&message["text"], &message["seq"]), (&json!(text), &ack["seq"]));
            let text = format!("bob to alice {i}");
            let ack = bob.request(json!({"type": "send", "to": "alice", "text": text, "key": format!("ba-{i}")})).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            let message = alice.next_of_type("message").await;
            assert_eq!((&message["text"], &message["seq"]), (&json!(text), &ack["seq"]));
            if i % 5 == 0 {
                // Traffic for the stalled node keeps being published: carol's inbox and her room.
                let text = format!("pm {i}");
                let ack =
                    alice.request(json!({"type": "send", "to": "carol", "text": text, "key": format!("c-{i}")})).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                to_carol.insert(seq_of(&ack), text);
                let text = format!("room {i}");
                let ack =
                    alice.request(json!({"type": "send", "room": "trio", "text": text, "key": format!("r-{i}")})).await;
                assert_eq!(ack["type"], "ack", "{ack}");
                in_room.insert(seq_of(&ack), text.clone());
                assert_eq!(bob.next_of_type("message").await["text"], text.as_str());
            }
        }
    };
    let bound = Duration::from_secs(20);
    assert!(tokio::time::timeout(bound, exchange).await.is_ok(), "a stopped node slowed the others past {bound:?}");
    println!("{} messages exchanged in {:?} while n3 was stopped", 2 * ROUNDS + ROUNDS / 5 * 2, stalled_at.elapsed());

    // The stalled node is declared dead, for presence only: a message to carol now goes to her
    // user topic all the same, which n3 is still subscribed to on the broker.
    alice.next_about("user_offline", "carol").await;
    println!("n1 declared the stopped n3 dead {:?} after the stop", stalled_at.elapsed());
    assert!(cluster.listed_nodes(0).await == ["n1", "n2"], "n1's gateway still lists the dead n3");
    let stats = alice.request(json!({"type": "stats", "user": "carol"})).await;
    assert_eq!(stats["online"], false, "carol's node is dead for n1: {stats}");
    let ack = alice.request(json!({"type": "send", "to": "carol", "text": "while n3 is dead", "key": "c-dead"})).await;
    to_carol.insert(seq_of(&ack), "while n3 is dead".to_owned());

    cluster.nodes[2].resume();
    // Nothing was routed around n3: what was published to carol's topic and her room while it was
    // stopped waited in the broker and reaches her live, each message once, with no resume asked.
    while carol_live.len() < to_carol.len() + in_room.len() {
        carol_live.push(carol.next_of_type("message").await);
    }
    let last_pm = *to_carol.keys().last().expect("pms");
    let last_room = *in_room.keys().last().expect("room messages");
    assert_exactly(&messages_in(&carol_live, "dm:alice:carol"), 1, last_pm, &to_carol, "carol's private messages");
    assert_exactly(&messages_in(&carol_live, "room:trio"), 1, last_room, &in_room, "carol's room messages");
    let mut carol_again = carol;

    // The resumed node is a full member again: live delivery to it works.
    wait_for_stats(&mut alice, "carol", "n1 sees carol on n3 again", |stats| nodes_of(stats) == ["n3"]).await;
    let ack = alice.request(json!({"type": "send", "to": "carol", "text": "welcome back", "key": "c-back"})).await;
    to_carol.insert(seq_of(&ack), "welcome back".to_owned());
    let message = carol_again.next_of_type("message").await;
    assert_exactly(&[message], last_pm + 1, last_pm + 1, &to_carol, "carol's live message after the stall");
    assert!(carol_again.drain_of_type("message").await.is_empty(), "carol got a message twice");
}
