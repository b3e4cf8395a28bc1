//! How nodes of a real cluster learn of each other's death, departure and new start, and what
//! that costs the clients: a node restarted under the same id faster than the node timeout, a
//! graceful stop (SIGTERM), a killed node (SIGKILL) and a stalled one (SIGSTOP).
//!
//! The node timeout is set far beyond the tests' own deadlines (`switchboard_testkit::WAIT`,
//! 10 s for any awaited frame): whatever heals here must not be the timeout.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::services::{ProcessCluster, ServiceProcess};
use switchboard_testkit::{TestClient, WAIT};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Three nodes over `broker` that declare a silent node dead only after 30 s.
fn start_cluster(broker: ServiceProcess) -> ProcessCluster {
    // Presence about everyone: the tests watch strangers come and go.
    let extra =
        ["--node-timeout-ms", "30000", "--rate-per-sec", "100000", "--rate-burst", "100000", "--presence", "everyone"];
    ProcessCluster::start(BINARY, broker, 3, &extra)
}

/// Waits until the gateways of nodes `on` list exactly `nodes` (a node is listed from its first
/// heartbeat on).
async fn await_listed(cluster: &ProcessCluster, on: &[usize], nodes: &[&str]) {
    for &index in on {
        switchboard_testkit::eventually(&format!("node {index} lists {nodes:?}"), WAIT, || async {
            cluster.listed_nodes(index).await == nodes
        })
        .await;
    }
}

/// Alice (on n1) sends `texts` to `to`, one by one; returns the acknowledged seqs.
async fn send_all(alice: &mut TestClient, to: &str, texts: &[String]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for text in texts {
        let ack = alice.request(json!({"type": "send", "to": to, "text": text, "key": text})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        seqs.push(ack["seq"].as_u64().expect("seq"));
    }
    seqs
}

fn texts_of(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|message| message["text"].as_str().unwrap_or_default()).collect()
}

/// Issue 15, item 8. A node killed and started again under the same id well within the node
/// timeout (what a process supervisor does): the others see the new start, take the old one's
/// users offline at once, and the new start is a full member.
async fn a_fast_restart_takes_the_old_users_offline(broker: ServiceProcess) {
    let mut cluster = start_cluster(broker);
    let mut watcher = TestClient::login_open(&cluster.url(0), "watcher").await;
    let mut carol = TestClient::login_open(&cluster.url(2), "carol").await;
    let _dan = TestClient::login_open(&cluster.url(1), "dan").await;
    watcher.await_presence("user_online", &["carol", "dan"]).await;
    carol.await_presence("user_online", &["dan"]).await;

    cluster.nodes[1].kill();
    let killed_at = Instant::now();
    cluster.nodes[1].restart();
    let ready_after = killed_at.elapsed();
    // Dan's only connection died with the old n2: both other nodes say so, long before the node
    // timeout (the frame wait is bounded by the test kit).
    watcher.next_about("user_offline", "dan").await;
    carol.next_about("user_offline", "dan").await;
    println!(
        "n2 killed, ready again after {ready_after:?}; dan offline everywhere {:?} after the kill",
        killed_at.elapsed()
    );
    let stats = watcher.request(json!({"type": "stats", "user": "dan"})).await;
    assert_eq!(stats["online"], false, "{stats}");

    // The new n2 is a member like any other: dan comes back online there and gets messages.
    let mut dan = TestClient::login_open(&cluster.url(1), "dan").await;
    watcher.next_about("user_online", "dan").await;
    let ack = watcher.request(json!({"type": "send", "to": "dan", "text": "welcome back", "key": "w-1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(dan.next_of_type("message").await["text"], "welcome back");
    await_listed(&cluster, &[0, 2], &["n1", "n2", "n3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_fast_restart_takes_the_old_users_offline() {
    a_fast_restart_takes_the_old_users_offline(ServiceProcess::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_fast_restart_takes_the_old_users_offline() {
    a_fast_restart_takes_the_old_users_offline(ServiceProcess::nats()).await;
}

/// Issue 15, item 9. A node stopped with SIGTERM is gone for the others by the time its process
/// has exited, every time: its users are offline, the gateway no longer lists it, nothing of it
/// comes back, and a login on a survivor does not wait for it.
async fn sigterm_is_a_departure_every_time(broker: ServiceProcess) {
    const STOPS: usize = 5;
    let mut cluster = start_cluster(broker);
    let mut watcher = TestClient::login_open(&cluster.url(0), "watcher").await;
    for stop in 0..STOPS {
        if stop > 0 {
            cluster.nodes[1].restart();
        }
        let mut dan = TestClient::login_open(&cluster.url(1), "dan").await;
        watcher.next_about("user_online", "dan").await;
        await_listed(&cluster, &[0, 2], &["n1", "n2", "n3"]).await;

        cluster.nodes[1].terminate();
        let stopped_at = Instant::now();
        assert_eq!(dan.expect_end().await.map(|(code, _)| code), Some(1012), "dan is told to reconnect");
        // Completes the closing handshake, which the node waits for before it stops.
        dan.close().await;
        assert!(cluster.nodes[1].wait_for_exit(Duration::from_secs(20)), "n2 exits cleanly");
        let exited_after = stopped_at.elapsed();
        watcher.next_about("user_offline", "dan").await;
        // A login on a survivor holds no fence open for the departed node (which would outlast
        // the test kit's frame wait with this node timeout).
        let mut newcomer = TestClient::login_open(&cluster.url(0), &format!("newcomer{stop}")).await;
        assert_eq!(cluster.listed_nodes(0).await, ["n1", "n3"], "stop {stop}: n1 still lists n2");
        assert_eq!(cluster.listed_nodes(2).await, ["n1", "n3"], "stop {stop}: n3 still lists n2");
        let stats = newcomer.request(json!({"type": "stats", "user": "dan"})).await;
        assert_eq!(stats["online"], false, "stop {stop}: {stats}");
        assert!(watcher.drain_of_type("user_online").await.iter().all(|event| event["user"] != "dan"));
        println!("stop {stop}: n2 exited {exited_after:?} after SIGTERM, gone for n1 and n3 by then");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigterm_is_a_departure_every_time() {
    sigterm_is_a_departure_every_time(ServiceProcess::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sigterm_is_a_departure_every_time() {
    sigterm_is_a_departure_every_time(ServiceProcess::nats()).await;
}

/// Issue 15, item 10. The clients of a killed node resume on another node at once and get
/// everything they missed, without waiting for the dead node to time out.
async fn a_killed_nodes_clients_recover_before_it_times_out(broker: ServiceProcess) {
    let mut cluster = start_cluster(broker);
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    alice.await_presence("user_online", &["bob"]).await;
    let before: Vec<String> = (1..=3).map(|i| format!("before {i}")).collect();
    let seqs = send_all(&mut alice, "bob", &before).await;
    for seq in &seqs {
        assert_eq!(bob.next_of_type("message").await["seq"], *seq);
    }
    let cursor = *seqs.last().expect("seqs");

    cluster.nodes[1].kill();
    let killed_at = Instant::now();
    assert_eq!(bob.expect_end().await, None, "a killed node sends no close frame");
    // For n1 bob is still online on n2 (its timeout is far off): these go nowhere live.
    let during: Vec<String> = (1..=5).map(|i| format!("while n2 is dead {i}")).collect();
    send_all(&mut alice, "bob", &during).await;

    // Bob resumes on n3; its sync is the dead node's clients' recovery, bounded by the frame wait.
    let mut bob = TestClient::resume(&cluster.url(2), &bob.token(), json!({"dm:alice:bob": cursor})).await;
    let synced = bob.read_sync().await;
    println!("bob resumed on n3 and synced {:?} after n2 was killed", killed_at.elapsed());
    assert_eq!(texts_of(&synced), during.iter().map(String::as_str).collect::<Vec<_>>());
    // And live delivery follows him to n3.
    let after = vec!["after".to_owned()];
    send_all(&mut alice, "bob", &after).await;
    assert_eq!(bob.next_of_type("message").await["text"], "after");
    assert!(bob.drain_of_type("message").await.is_empty(), "bob got a message twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_nodes_clients_recover_before_it_times_out() {
    a_killed_nodes_clients_recover_before_it_times_out(ServiceProcess::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_killed_nodes_clients_recover_before_it_times_out() {
    a_killed_nodes_clients_recover_before_it_times_out(ServiceProcess::nats()).await;
}

/// Issue 15, item 10, the other side: a node that is only slow (stopped for a moment) does not
/// look dead, and holds no login up. A login elsewhere while it is stopped subscribes its user's
/// topic on the broker alone; what the slow node commits once it runs again reaches that login
/// live, with nothing to repair (no resume asked).
async fn a_slow_node_is_not_dead_and_holds_no_login_up(broker: ServiceProcess) {
    let cluster = start_cluster(broker);
    let mut watcher = TestClient::login_open(&cluster.url(0), "watcher").await;
    let mut carol = TestClient::login_open(&cluster.url(2), "carol").await;
    watcher.await_presence("user_online", &["carol"]).await;

    cluster.nodes[2].pause();
    // Bob's login does not wait for the stopped n3 (whose timeout is 30 s away).
    let login_at = Instant::now();
    let mut bob = TestClient::login_open(&cluster.url(0), "bob").await;
    println!("bob's login took {:?} with n3 stopped", login_at.elapsed());
    cluster.nodes[2].resume();
    let text = "carol to bob";
    let ack = carol.request(json!({"type": "send", "to": "bob", "text": text, "key": "c-1"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // n3 may not know yet that bob is on n1: the message reaches him on his user's topic.
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], text, "{message}");
    let reply = bob.request(json!({"type": "send", "to": "carol", "text": "hi carol", "key": "b-1"})).await;
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(carol.next_of_type("message").await["text"], "hi carol");
    // Answered after everything before it: bob's connection was not closed to resume.
    assert!(bob.drain_of_type("message").await.is_empty(), "bob got carol's message twice");
    let offline: Vec<Value> = watcher.drain_of_type("user_offline").await;
    assert!(offline.iter().all(|event| event["user"] != "carol"), "the stopped node looked dead: {offline:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_slow_node_is_not_dead_and_holds_no_login_up() {
    a_slow_node_is_not_dead_and_holds_no_login_up(ServiceProcess::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_slow_node_is_not_dead_and_holds_no_login_up() {
    a_slow_node_is_not_dead_and_holds_no_login_up(ServiceProcess::nats()).await;
}
