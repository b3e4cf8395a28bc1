//! Private rooms, moderation and blocking over the protocol: who may read, join, send and act,
//! every refusal with its error code, and a removal that takes effect on every node at once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_testkit::services::{ProcessCluster, ServiceProcess};
use switchboard_testkit::{TestClient, TestServer};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

fn assert_error(answer: &Value, code: &str) {
    assert_eq!((answer["type"].as_str(), answer["code"].as_str()), (Some("error"), Some(code)), "{answer}");
}

fn assert_ok(answer: &Value, of: &str) {
    assert_eq!((answer["type"].as_str(), answer["of"].as_str()), (Some("ok"), Some(of)), "{answer}");
}

async fn act(client: &mut TestClient, kind: &str, room: &str, user: &str) -> Value {
    client.request(json!({"type": kind, "room": room, "user": user})).await
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array().expect("a list").iter().map(|entry| entry[key].as_str().expect("a name").to_owned()).collect()
}

#[tokio::test]
async fn a_private_room_is_invite_only_hidden_and_readable_by_members_only() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    let mut bob = TestClient::login_open(&url, "bob").await;
    let mut eve = TestClient::login_open(&url, "eve").await;

    let created = alice.request(json!({"type": "create_room", "room": "council", "private": true})).await;
    assert_eq!((created["type"].as_str(), created["private"].as_bool()), (Some("room"), Some(true)), "{created}");
    assert_eq!(created["role"], "owner");
    alice.request(json!({"type": "send", "room": "council", "text": "secret plans"})).await;
    assert!(eve.drain_of_type("room_created").await.is_empty(), "a private room is announced to nobody");

    // A non-member neither sees, joins, reads nor lists it.
    let rooms = eve.request(json!({"type": "rooms"})).await;
    assert!(!names(&rooms["rooms"], "name").contains(&"council".to_owned()), "{rooms}");
    assert_eq!(rooms["total"], 0, "{rooms}");
    assert_error(&eve.request(json!({"type": "join", "room": "council"})).await, "forbidden");
    assert_error(&eve.request(json!({"type": "history", "room": "council"})).await, "not_a_member");
    assert_error(&eve.request(json!({"type": "members", "room": "council"})).await, "not_a_member");
    assert_error(&eve.request(json!({"type": "send", "room": "council", "text": "let me in"})).await, "not_a_member");
    // Nor may she invite herself or anyone else.
    assert_error(&act(&mut eve, "invite", "council", "eve").await, "forbidden");

    // An invitation makes bob a member at once: told, listed, reading, and hearing the room.
    assert_ok(&act(&mut alice, "invite", "council", "bob").await, "invite");
    let invited = bob.next_of_type("invited").await;
    assert_eq!((invited["room"].as_str(), invited["by"].as_str()), (Some("council"), Some("alice")));
    let rooms = bob.request(json!({"type": "rooms"})).await;
    let council = rooms["rooms"].as_array().unwrap().iter().find(|room| room["name"] == "council").cloned();
    let council = council.unwrap_or_else(|| panic!("bob lists council: {rooms}"));
    assert_eq!((council["private"].as_bool(), council["role"].as_str()), (Some(true), Some("member")));
    let history = bob.request(json!({"type": "history", "room": "council"})).await;
    assert_eq!(history["messages"][0]["text"], "secret plans", "{history}");
    let members = bob.request(json!({"type": "members", "room": "council"})).await;
    assert_eq!(names(&members["members"], "user"), ["alice", "bob"]);
    assert_eq!(members["members"][0]["role"], "owner");
    alice.request(json!({"type": "send", "room": "council", "text": "welcome bob"})).await;
    assert_eq!(bob.next_of_type("message").await["text"], "welcome bob");
    let joined = bob.request(json!({"type": "join", "room": "council"})).await;
    assert_eq!((joined["type"].as_str(), joined["role"].as_str()), (Some("room"), Some("member")), "{joined}");
}

#[tokio::test]
async fn owners_and_moderators_remove_ban_and_mute_by_rank() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    let mut bob = TestClient::login_open(&url, "bob").await;
    let mut carol = TestClient::login_open(&url, "carol").await;
    let mut dave = TestClient::login_open(&url, "dave").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    for member in [&mut bob, &mut carol, &mut dave] {
        member.request(json!({"type": "join", "room": "lobby"})).await;
    }

    // A member moderates nobody; only the owner appoints.
    assert_error(&act(&mut bob, "remove", "lobby", "carol").await, "forbidden");
    assert_error(&act(&mut bob, "promote", "lobby", "bob").await, "forbidden");
    assert_ok(&act(&mut alice, "promote", "lobby", "bob").await, "promote");
    let changed = carol.next_of_type("role_changed").await;
    assert_eq!((changed["user"].as_str(), changed["role"].as_str()), (Some("bob"), Some("moderator")));
    assert_error(&act(&mut bob, "promote", "lobby", "carol").await, "forbidden");
    // A moderator acts on members, never on the owner.
    assert_error(&act(&mut bob, "ban", "lobby", "alice").await, "forbidden");
    assert_error(&act(&mut bob, "mute", "lobby", "alice").await, "forbidden");

    // Mute: the member reads but cannot send, even after leaving and coming back.
    assert_ok(&act(&mut bob, "mute", "lobby", "carol").await, "mute");
    assert_eq!(carol.next_of_type("mute_changed").await["muted"], true);
    assert_error(&carol.request(json!({"type": "send", "room": "lobby", "text": "hey"})).await, "muted");
    carol.request(json!({"type": "leave", "room": "lobby"})).await;
    carol.request(json!({"type": "join", "room": "lobby"})).await;
    assert_error(&carol.request(json!({"type": "send", "room": "lobby", "text": "hey"})).await, "muted");
    let members = alice.request(json!({"type": "members", "room": "lobby"})).await;
    let carol_entry = members["members"].as_array().unwrap().iter().find(|m| m["user"] == "carol").cloned().unwrap();
    assert_eq!(carol_entry["muted"], true, "{members}");
    assert_ok(&act(&mut bob, "unmute", "lobby", "carol").await, "unmute");
    let ack = carol.request(json!({"type": "send", "room": "lobby", "text": "back"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Remove: out of the room, told so, and a public room can be joined again.
    assert_ok(&act(&mut bob, "remove", "lobby", "dave").await, "remove");
    let removed = dave.next_of_type("removed").await;
    assert_eq!((removed["room"].as_str(), removed["banned"].as_bool()), (Some("lobby"), Some(false)));
    assert_eq!(alice.next_about("member_left", "dave").await["room"], "lobby");
    assert_error(&dave.request(json!({"type": "send", "room": "lobby", "text": "still here?"})).await, "not_a_member");
    assert_error(&act(&mut bob, "remove", "lobby", "dave").await, "not_a_member");
    dave.request(json!({"type": "join", "room": "lobby"})).await;

    // Ban: out, and kept out of joins and invitations until unbanned.
    assert_ok(&act(&mut bob, "ban", "lobby", "dave").await, "ban");
    assert_eq!(dave.next_of_type("removed").await["banned"], true);
    assert_error(&dave.request(json!({"type": "join", "room": "lobby"})).await, "banned");
    assert_error(&act(&mut alice, "invite", "lobby", "dave").await, "banned");
    assert_ok(&act(&mut bob, "unban", "lobby", "dave").await, "unban");
    assert_error(&act(&mut bob, "unban", "lobby", "dave").await, "invalid_field");
    let joined = dave.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(joined["type"], "room", "{joined}");

    // Demoted, bob is a member again and moderates nothing.
    assert_ok(&act(&mut alice, "demote", "lobby", "bob").await, "demote");
    assert_error(&act(&mut bob, "remove", "lobby", "dave").await, "forbidden");
    assert_error(&act(&mut alice, "remove", "nowhere", "dave").await, "room_not_found");
    assert_error(&act(&mut alice, "invite", "lobby", "nobody").await, "user_not_found");
}

#[tokio::test]
async fn a_blocked_user_cannot_send_a_private_message_until_unblocked() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    let mut mallory = TestClient::login_open(&url, "mallory").await;
    assert_eq!(mallory.request(json!({"type": "send", "to": "alice", "text": "hi"})).await["type"], "ack");
    alice.next_of_type("message").await;

    assert_ok(&alice.request(json!({"type": "block", "user": "mallory"})).await, "block");
    let blocked = alice.request(json!({"type": "blocked"})).await;
    assert_eq!((blocked["type"].as_str(), names_of(&blocked)), (Some("blocked"), vec!["mallory".to_owned()]));
    assert_error(&mallory.request(json!({"type": "send", "to": "alice", "text": "hi again"})).await, "blocked");
    // Alice may still write to mallory, and nothing of mallory's reached her.
    assert_eq!(alice.request(json!({"type": "send", "to": "mallory", "text": "stop"})).await["type"], "ack");
    assert!(alice.drain_of_type("message").await.is_empty());
    let history = alice.request(json!({"type": "history", "to": "mallory"})).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(2), "the refused message was not stored");

    assert_error(&alice.request(json!({"type": "block", "user": "alice"})).await, "invalid_field");
    assert_error(&alice.request(json!({"type": "block", "user": "nobody"})).await, "user_not_found");
    assert_ok(&alice.request(json!({"type": "unblock", "user": "mallory"})).await, "unblock");
    assert!(names_of(&alice.request(json!({"type": "blocked"})).await).is_empty());
    assert_eq!(mallory.request(json!({"type": "send", "to": "alice", "text": "sorry"})).await["type"], "ack");
    assert_eq!(alice.next_of_type("message").await["text"], "sorry");
}

fn names_of(blocked: &Value) -> Vec<String> {
    blocked["users"].as_array().expect("users").iter().map(|user| user.as_str().unwrap().to_owned()).collect()
}

/// Waits until `client`'s node sees `user` with `expected` connections across the cluster.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_on_one_node_cuts_the_users_devices_on_the_other_out_of_the_room() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 2, &[]);
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    let mut dave = TestClient::login_open(&cluster.url(1), "dave").await;
    wait_for_connections(&mut alice, "bob", 1).await;
    wait_for_connections(&mut alice, "dave", 1).await;
    alice.request(json!({"type": "create_room", "room": "council", "private": true})).await;
    assert_ok(&act(&mut alice, "invite", "council", "bob").await, "invite");
    assert_ok(&act(&mut alice, "invite", "council", "dave").await, "invite");
    bob.next_of_type("invited").await;
    dave.next_of_type("invited").await;
    alice.request(json!({"type": "send", "room": "council", "text": "before"})).await;
    assert_eq!(bob.next_of_type("message").await["text"], "before", "bob hears the room on node 2");
    assert_eq!(dave.next_of_type("message").await["text"], "before");

    assert_ok(&act(&mut alice, "remove", "council", "bob").await, "remove");
    let removed = bob.next_of_type("removed").await;
    assert_eq!((removed["room"].as_str(), removed["by"].as_str()), (Some("council"), Some("alice")));
    assert_error(&bob.request(json!({"type": "send", "room": "council", "text": "x"})).await, "not_a_member");
    assert_error(&bob.request(json!({"type": "join", "room": "council"})).await, "forbidden");

    alice.request(json!({"type": "send", "room": "council", "text": "after"})).await;
    // Dave's device on the same node got it: node 2 has handed the message to every listener there.
    assert_eq!(dave.next_of_type("message").await["text"], "after");
    let frames = bob.quiesce().await;
    assert!(
        !frames.iter().any(|frame| frame["type"] == "message"),
        "the removed user's device still hears the room: {frames:?}"
    );

    // A block and a mute made on node 1 hold on node 2, whose checks were cached before them.
    assert_eq!(bob.request(json!({"type": "send", "to": "alice", "text": "hey"})).await["type"], "ack");
    assert_eq!(dave.request(json!({"type": "send", "room": "council", "text": "hi"})).await["type"], "ack");
    assert_ok(&alice.request(json!({"type": "block", "user": "bob"})).await, "block");
    assert_ok(&act(&mut alice, "mute", "council", "dave").await, "mute");
    // Announced on the cluster topic after both changes: once bob hears it, node 2 heard them.
    alice.request(json!({"type": "create_room", "room": "fence"})).await;
    assert_eq!(bob.next_of_type("room_created").await["room"], "fence");
    assert_error(&bob.request(json!({"type": "send", "to": "alice", "text": "hey again"})).await, "blocked");
    assert_error(&dave.request(json!({"type": "send", "room": "council", "text": "hi again"})).await, "muted");
}
