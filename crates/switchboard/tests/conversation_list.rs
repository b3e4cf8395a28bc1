//! `conversations` lists newest activity first, pages with a cursor that holds while messages
//! arrive (a conversation that gets one moves to the top, above the cursor, and is listed once),
//! on a standalone server (SQLite) and on a cluster (PostgreSQL, over Redis), where both nodes
//! give the same order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Sends and returns the stored message's time, once the clock has moved past it: the next
/// message is then newer, so the expected order does not rest on ties (the server and the test
/// read the same clock). Bounded: a millisecond, a few sleeps of one.
async fn send(client: &mut TestClient, frame: Value) -> i64 {
    let ack = client.request(frame).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ts = ack["ts"].as_i64().expect("ts");
    for _ in 0..100 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        if now > ts {
            return ts;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the clock stayed at {ts}");
}

/// Every page from the start, each at most `limit` long; returns the entries.
async fn walk(client: &mut TestClient, limit: u32) -> Vec<Value> {
    let (mut listed, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut frame = json!({"type": "conversations", "limit": limit});
        if let Some(cursor) = &cursor {
            frame["cursor"] = json!(cursor);
        }
        let page = client.request(frame).await;
        assert_eq!(page["type"], "conversations", "{page}");
        let entries = page["conversations"].as_array().unwrap().clone();
        assert!(entries.len() <= limit as usize, "{page}");
        match page["next_cursor"].as_str() {
            Some(next) => {
                let last = entries.last().expect("a page with a next cursor has entries");
                assert_eq!(next, format!("{}:{}", last["last_ts"], last["conv"].as_str().unwrap()));
                cursor = Some(next.to_owned());
                listed.extend(entries);
            }
            None => {
                listed.extend(entries);
                return listed;
            }
        }
    }
}

fn convs(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|entry| entry["conv"].as_str().unwrap()).collect()
}

fn entry<'a>(entries: &'a [Value], conv: &str) -> &'a Value {
    entries.iter().find(|entry| entry["conv"] == conv).unwrap_or_else(|| panic!("no {conv} in {entries:?}"))
}

/// Alice is on `alice_url`, the people who write to her on `others_url`.
async fn newest_activity_first_and_paged_while_messages_arrive(alice_url: &str, others_url: &str) {
    let mut alice = TestClient::login_open(alice_url, "alice").await;
    let mut bob = TestClient::login_open(others_url, "bob").await;
    let mut carol = TestClient::login_open(others_url, "carol").await;
    let mut dave = TestClient::login_open(others_url, "dave").await;
    for room in ["attic", "lobby"] {
        let made = alice.request(json!({"type": "create_room", "room": room})).await;
        assert_eq!(made["type"], "room", "{made}");
    }
    assert_eq!(bob.request(json!({"type": "join", "room": "lobby"})).await["type"], "room");

    let one = send(&mut bob, json!({"type": "send", "to": "alice", "text": "one"})).await;
    send(&mut carol, json!({"type": "send", "to": "alice", "text": "two"})).await;
    let three = send(&mut bob, json!({"type": "send", "room": "lobby", "text": "three"})).await;
    let four = send(&mut dave, json!({"type": "send", "to": "alice", "text": "four"})).await;
    let five = send(&mut alice, json!({"type": "send", "to": "carol", "text": "five"})).await;

    let expected = ["dm:alice:carol", "dm:alice:dave", "room:lobby", "dm:alice:bob", "room:attic"];
    let all = walk(&mut alice, 100).await;
    assert_eq!(convs(&all), expected, "newest activity first, a room without messages last");
    let times: Vec<i64> = all.iter().map(|entry| entry["last_ts"].as_i64().unwrap()).collect();
    assert_eq!(times, [five, four, three, one, 0]);
    let carol_entry = entry(&all, "dm:alice:carol");
    assert_eq!(carol_entry["last"], json!({"seq": 2, "from": "alice", "text": "five"}));
    assert_eq!(carol_entry["unread"], 0, "her own message read the conversation");
    assert_eq!(entry(&all, "dm:alice:dave")["unread"], 1);
    assert_eq!(entry(&all, "room:lobby")["last"]["from"], "bob");
    for limit in [1, 2, 3] {
        assert_eq!(convs(&walk(&mut alice, limit).await), expected, "pages of {limit}");
    }

    // One page in, Dave (listed already) and then Bob (not listed yet) write: both move to the
    // top, above the cursor, so the rest of the walk lists neither, and the messages come live.
    let first = alice.request(json!({"type": "conversations", "limit": 2})).await;
    assert_eq!(convs(first["conversations"].as_array().unwrap()), &expected[..2]);
    assert_eq!(first["total"], 5);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(cursor, format!("{four}:dm:alice:dave"));
    let seven = send(&mut dave, json!({"type": "send", "to": "alice", "text": "seven"})).await;
    let six = send(&mut bob, json!({"type": "send", "to": "alice", "text": "six"})).await;
    let rest = alice.request(json!({"type": "conversations", "limit": 10, "cursor": cursor})).await;
    assert_eq!(convs(rest["conversations"].as_array().unwrap()), ["room:lobby", "room:attic"], "{rest}");
    assert!(rest["next_cursor"].is_null());
    let mut live = Vec::new();
    while live.len() < 2 {
        let message = alice.next_of_type("message").await;
        if message["text"] == "six" || message["text"] == "seven" {
            live.push(message["conv"].as_str().unwrap().to_owned());
        }
    }
    live.sort();
    assert_eq!(live, ["dm:alice:bob", "dm:alice:dave"], "no order across conversations is promised");

    let now = walk(&mut alice, 2).await;
    assert_eq!(convs(&now), ["dm:alice:bob", "dm:alice:dave", "dm:alice:carol", "room:lobby", "room:attic"]);
    assert_eq!((now[0]["last_ts"].as_i64(), now[1]["last_ts"].as_i64()), (Some(six), Some(seven)));
    assert_eq!((now[0]["unread"].clone(), now[0]["last"]["text"].clone()), (json!(2), json!("six")));

    // A bare conversation id says nothing about where in this order to go on.
    let refused = alice.request(json!({"type": "conversations", "cursor": "dm:alice:bob"})).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("invalid_field")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_lists_conversations_newest_activity_first() {
    let node = NodeProcess::start(BINARY, "n1", &["--open-auth"]);
    newest_activity_first_and_paged_while_messages_arrive(&node.ws_url(), &node.ws_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_of_a_cluster_list_conversations_in_one_order() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 2, &["--node-timeout-ms", "1500"]);
    newest_activity_first_and_paged_while_messages_arrive(&cluster.url(0), &cluster.url(1)).await;
    // Alice asks on the other node too: the same entries, in the same order.
    let mut here = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut there = TestClient::login_open(&cluster.url(1), "alice").await;
    for limit in [2, 100] {
        let (here, there) = (walk(&mut here, limit).await, walk(&mut there, limit).await);
        assert_eq!(convs(&here).len(), 5);
        assert_eq!(here, there, "pages of {limit}");
    }
}
