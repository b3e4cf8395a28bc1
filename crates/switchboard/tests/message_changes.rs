//! Editing, deleting, replies and reactions: every request and the `message` entries it makes,
//! the permission failures, the recovery of a change made while a device was offline, on a
//! standalone server (SQLite) and across the nodes of a cluster (PostgreSQL, over Redis).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess};
use switchboard_testkit::TestClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// Waits until `client`'s node counts `user` online (bounded: fails the test after 10 s), so
/// that frames for them are routed to their node.
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

async fn ack(client: &mut TestClient, frame: Value) -> u64 {
    let answer = client.request(frame).await;
    assert_eq!(answer["type"], "ack", "{answer}");
    assert_eq!(answer["duplicate"], false);
    answer["seq"].as_u64().unwrap()
}

async fn refused(client: &mut TestClient, frame: Value, code: &str) {
    let answer = client.request(frame.clone()).await;
    assert_eq!(answer["type"], "error", "{frame} -> {answer}");
    assert_eq!(answer["code"], code, "{frame} -> {answer}");
}

async fn history(client: &mut TestClient, target: Value) -> Vec<Value> {
    let mut frame = json!({"type": "history", "limit": 200});
    frame.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
    let page = client.request(frame).await;
    assert_eq!(page["type"], "history", "{page}");
    page["messages"].as_array().unwrap().clone()
}

/// Alice owns the room and writes from `alice_url` (where her second device also is); Bob and
/// Carol are on `others_url`.
async fn changes_reach_every_device_in_order(alice_url: &str, others_url: &str) {
    let mut alice = TestClient::register(alice_url, "alice", "password1").await;
    let mut bob = TestClient::register(others_url, "bob", "password2").await;
    let mut carol = TestClient::register(others_url, "carol", "password3").await;
    let mut alice_tablet = TestClient::login(alice_url, "alice", "password1").await;
    assert_eq!(alice.request(json!({"type": "create_room", "room": "lobby"})).await["type"], "room");
    for member in [&mut bob, &mut carol] {
        assert_eq!(member.request(json!({"type": "join", "room": "lobby"})).await["type"], "room");
    }
    wait_until_online(&mut alice, "bob").await;
    wait_until_online(&mut alice, "carol").await;
    wait_until_online(&mut bob, "alice").await;
    let room = json!({"room": "lobby"});
    let with = |extra: Value| {
        let mut frame = room.clone();
        frame.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        frame
    };

    let first = ack(&mut alice, with(json!({"type": "send", "text": "helo all"}))).await;
    assert_eq!(bob.next_of_type("message").await["text"], "helo all");

    // Edit: a change entry of its own, to every device but the editing one.
    let edit = ack(&mut alice, with(json!({"type": "edit", "seq": first, "text": "hello all"}))).await;
    assert_eq!(edit, first + 1);
    for device in [&mut bob, &mut carol, &mut alice_tablet] {
        let mut entry = device.next_of_type("message").await;
        if entry["seq"] == first {
            entry = device.next_of_type("message").await;
        }
        assert_eq!((entry["seq"].as_u64(), entry["kind"].as_str()), (Some(edit), Some("edit")), "{entry}");
        assert_eq!((entry["target"].as_u64(), entry["text"].as_str()), (Some(first), Some("hello all")));
        assert_eq!(entry["from"], "alice");
        assert_eq!(entry["edited_at"], entry["ts"]);
    }
    refused(&mut bob, with(json!({"type": "edit", "seq": first, "text": "mine now"})), "not_allowed").await;
    refused(&mut alice, with(json!({"type": "edit", "seq": 999, "text": "x"})), "message_not_found").await;
    refused(&mut alice, with(json!({"type": "edit", "seq": edit, "text": "x"})), "message_not_found").await;
    refused(&mut alice, with(json!({"type": "edit", "seq": first, "text": "  "})), "empty_text").await;
    refused(&mut alice, json!({"type": "edit", "room": "nowhere", "seq": first, "text": "x"}), "room_not_found").await;

    // Reply: the quote travels with the message.
    let reply = ack(&mut bob, with(json!({"type": "send", "text": "hi!", "reply_to": first}))).await;
    let live = alice.next_of_type("message").await;
    assert_eq!((live["seq"].as_u64(), live["reply_to"].as_u64()), (Some(reply), Some(first)), "{live}");
    assert_eq!(live["reply"], json!({"from": "alice", "text": "hello all"}));
    assert!(live.get("kind").is_none(), "a reply is a message: {live}");
    refused(&mut bob, with(json!({"type": "send", "text": "to nothing", "reply_to": 999})), "message_not_found").await;

    // Reactions: one per user, replaced, taken back; the list travels with each entry.
    let react = ack(&mut bob, with(json!({"type": "react", "seq": first, "emoji": "👍"}))).await;
    let entry = alice.next_of_type("message").await;
    assert_eq!((entry["seq"].as_u64(), entry["kind"].as_str()), (Some(react), Some("react")), "{entry}");
    assert_eq!(entry["reactions"], json!([{"emoji": "👍", "users": ["bob"]}]));
    ack(&mut carol, with(json!({"type": "react", "seq": first, "emoji": "👍"}))).await;
    ack(&mut bob, with(json!({"type": "react", "seq": first, "emoji": "🎉"}))).await;
    let last_react = ack(&mut carol, with(json!({"type": "react", "seq": first, "emoji": ""}))).await;
    let mut seen = Vec::new();
    while seen.last() != Some(&last_react) {
        let entry = alice.next_of_type("message").await;
        seen.push(entry["seq"].as_u64().unwrap());
        if entry["seq"] == last_react {
            assert_eq!(entry["reactions"], json!([{"emoji": "🎉", "users": ["bob"]}]), "{entry}");
        }
    }
    assert_eq!(seen, [react + 1, react + 2, react + 3], "in seq order, none missed");
    refused(&mut bob, with(json!({"type": "react", "seq": first, "emoji": "a b"})), "invalid_field").await;
    refused(&mut bob, with(json!({"type": "react", "seq": first, "emoji": "👍".repeat(9)})), "invalid_field").await;

    // History shows the message as it is now, and every entry.
    let page = history(&mut carol, room.clone()).await;
    let original = page.iter().find(|m| m["seq"] == first).unwrap();
    assert_eq!(original["text"], "hello all");
    assert_eq!(original["reactions"], json!([{"emoji": "🎉", "users": ["bob"]}]));
    assert_eq!(original["changed_seq"].as_u64(), Some(last_react));
    assert!(original["edited_at"].is_i64());
    let seqs: Vec<u64> = page.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=last_react).collect::<Vec<_>>());

    // Deleting: one's own, or anyone's in a room one owns; a tombstone stays.
    refused(&mut bob, with(json!({"type": "delete", "seq": first})), "not_allowed").await;
    let gone = ack(&mut bob, with(json!({"type": "delete", "seq": reply}))).await;
    let entry = alice.next_of_type("message").await;
    assert_eq!(
        (entry["seq"].as_u64(), entry["kind"].as_str(), entry["target"].as_u64()),
        (Some(gone), Some("delete"), Some(reply))
    );
    let carols = ack(&mut carol, with(json!({"type": "send", "text": "something rude"}))).await;
    let moderated = ack(&mut alice, with(json!({"type": "delete", "seq": carols}))).await;
    assert_eq!(moderated, carols + 1);
    refused(&mut carol, with(json!({"type": "edit", "seq": carols, "text": "sorry"})), "message_deleted").await;
    refused(&mut bob, with(json!({"type": "react", "seq": carols, "emoji": "👀"})), "message_deleted").await;
    refused(&mut alice, with(json!({"type": "delete", "seq": carols})), "message_deleted").await;
    refused(&mut bob, with(json!({"type": "send", "text": "re", "reply_to": carols})), "message_deleted").await;
    let page = history(&mut bob, room.clone()).await;
    let tombstone = page.iter().find(|m| m["seq"] == carols).unwrap();
    assert_eq!((tombstone["deleted"].clone(), tombstone["text"].clone()), (json!(true), json!("")), "{tombstone}");
    let quoted_gone = page.iter().find(|m| m["seq"] == reply).unwrap();
    assert_eq!(quoted_gone["deleted"], true);

    // Private conversations have no owner: only one's own messages are deleted there.
    let dm = ack(&mut alice, json!({"type": "send", "to": "bob", "text": "psst"})).await;
    refused(&mut bob, json!({"type": "delete", "to": "alice", "seq": dm}), "not_allowed").await;
    let reacted = ack(&mut bob, json!({"type": "react", "to": "alice", "seq": dm, "emoji": "🤫"})).await;
    assert_eq!(reacted, dm + 1);
    ack(&mut alice, json!({"type": "delete", "to": "bob", "seq": dm})).await;

    // Changes are not unread: Carol has read nothing, and the room holds three messages of
    // others (hers moved her marker); a reaction to an old message does not move her marker.
    let listed = carol.request(json!({"type": "conversations"})).await;
    let lobby = listed["conversations"].as_array().unwrap().iter().find(|c| c["conv"] == "room:lobby").unwrap().clone();
    assert_eq!(lobby["read_seq"].as_u64(), Some(carols), "{lobby}");
    assert_eq!(lobby["unread"], 0, "only changes came after her message: {lobby}");
    assert_eq!(lobby["last"]["seq"].as_u64(), Some(carols), "the preview is the newest message, not a change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_device_in_order_on_a_standalone_server() {
    let node = NodeProcess::start(BINARY, "n1", &[]);
    changes_reach_every_device_in_order(&node.ws_url(), &node.ws_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_device_in_order_across_two_nodes() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 2, &["--node-timeout-ms", "1500"]);
    changes_reach_every_device_in_order(&cluster.url(0), &cluster.url(1)).await;
}

/// Bob's phone is offline while Alice edits, reacts to and deletes messages: its next login with
/// cursors receives the change entries in order, and its history shows the current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_a_device_was_offline_are_recovered_by_its_cursor() {
    let node = NodeProcess::start(BINARY, "n1", &[]);
    let url = node.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut phone = TestClient::register(&url, "bob", "password2").await;
    let token = phone.token();
    wait_until_online(&mut alice, "bob").await;
    for text in ["one", "two", "three"] {
        ack(&mut alice, json!({"type": "send", "to": "bob", "text": text})).await;
    }
    for _ in 0..3 {
        phone.next_of_type("message").await;
    }
    phone.close().await;

    ack(&mut alice, json!({"type": "edit", "to": "bob", "seq": 1, "text": "one, edited"})).await;
    ack(&mut alice, json!({"type": "react", "to": "bob", "seq": 2, "emoji": "😀"})).await;
    ack(&mut alice, json!({"type": "delete", "to": "bob", "seq": 3})).await;
    ack(&mut alice, json!({"type": "send", "to": "bob", "text": "four"})).await;

    let mut phone = TestClient::resume(&url, &token, json!({"dm:alice:bob": 3})).await;
    let summary = phone.next_of_type("sync").await;
    let entry = &summary["conversations"][0];
    assert_eq!((entry["from_seq"].as_u64(), entry["count"].as_u64()), (Some(3), Some(4)), "{summary}");
    // Bob read nothing: four messages are unread; the three changes are not.
    assert_eq!(entry["unread"], 4, "{summary}");
    let mut recovered = Vec::new();
    loop {
        let frame = phone.next().await;
        match frame["type"].as_str() {
            Some("message") => recovered.push(frame),
            Some("synced") => break,
            _ => {}
        }
    }
    let kinds: Vec<(u64, Value, Value)> =
        recovered.iter().map(|m| (m["seq"].as_u64().unwrap(), m["kind"].clone(), m["target"].clone())).collect();
    assert_eq!(
        kinds,
        [
            (4, json!("edit"), json!(1)),
            (5, json!("react"), json!(2)),
            (6, json!("delete"), json!(3)),
            (7, Value::Null, Value::Null)
        ]
    );
    assert_eq!(recovered[0]["text"], "one, edited");
    assert_eq!(recovered[1]["reactions"], json!([{"emoji": "😀", "users": ["alice"]}]));

    let page = history(&mut phone, json!({"to": "alice"})).await;
    assert_eq!(page[0]["text"], "one, edited");
    assert_eq!(page[0]["changed_seq"], 4);
    assert_eq!(page[1]["reactions"][0]["emoji"], "😀");
    assert_eq!((page[2]["deleted"].clone(), page[2]["text"].clone()), (json!(true), json!("")));
}
