//! Rooms: creating, joining, leaving, membership, fan-out to every member device, listings.

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestServer};

fn seqs(messages: &Value) -> Vec<u64> {
    messages.as_array().expect("an array of messages").iter().map(|m| m["seq"].as_u64().expect("seq")).collect()
}

#[tokio::test]
async fn create_room_creates_and_joins_and_creating_it_again_is_room_exists() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;

    let answer = alice.request(json!({"type": "create_room", "room": "Rust-Fans"})).await;
    assert_eq!(answer["type"], "room", "{answer}");
    assert_eq!(answer["room"], "rust-fans", "room names are normalised");
    assert_eq!(answer["created"], true);
    assert_eq!(answer["joined"], true);
    assert_eq!(answer["history"], json!([]));

    let again = bob.request(json!({"type": "create_room", "room": "rust-fans"})).await;
    assert_eq!(again["type"], "error", "{again}");
    assert_eq!(again["code"], "room_exists");
    let members = bob.request(json!({"type": "members", "room": "rust-fans"})).await;
    assert_eq!(
        members["members"],
        json!([{"user": "alice", "online": true, "role": "owner"}]),
        "a failed create joins nobody"
    );
}

#[tokio::test]
async fn join_creates_a_missing_room_and_joins_an_existing_one() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;

    let first = alice.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(first["type"], "room", "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["joined"], true);
    let second = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(second["created"], false, "{second}");
    assert_eq!(second["joined"], true);
    let again = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(again["type"], "room", "joining a room twice is not an error: {again}");
    assert_eq!(again["created"], false);

    let members = alice.request(json!({"type": "members", "room": "lobby"})).await;
    assert_eq!(
        members["members"],
        json!([{"user": "alice", "online": true, "role": "owner"}, {"user": "bob", "online": true}])
    );
}

#[tokio::test]
async fn a_new_member_gets_the_last_50_messages_oldest_first_in_the_join_answer() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 10_000.0;
            c.rate_burst = 10_000.0;
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    for n in 1..=60 {
        let ack = alice.request(json!({"type": "send", "room": "lobby", "text": format!("message {n}")})).await;
        assert_eq!(ack["seq"], n, "{ack}");
    }

    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let answer = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(answer["type"], "room", "{answer}");
    assert_eq!(seqs(&answer["history"]), (11..=60).collect::<Vec<u64>>());
    let first = &answer["history"][0];
    assert_eq!(first["text"], "message 11");
    assert_eq!(first["from"], "alice");
    assert_eq!(first["room"], "lobby");
    assert_eq!(first["conv"], "room:lobby");
    assert_eq!(answer["history"][49]["text"], "message 60");
}

#[tokio::test]
async fn join_history_sets_how_many_messages_a_join_replays() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.join_history = 5;
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    for n in 1..=12 {
        let ack = alice.request(json!({"type": "send", "room": "lobby", "text": format!("message {n}")})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let answer = bob.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(seqs(&answer["history"]), vec![8, 9, 10, 11, 12], "{answer}");
}

#[tokio::test]
async fn members_are_told_when_someone_joins_and_when_someone_leaves() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    let own = alice.next_of_type("member_joined").await;
    assert_eq!(own["user"], "alice", "the creator joins, and is told so: {own}");
    // Everyone online hears that the room exists, members or not.
    let created = json!({"type": "room_created", "room": "lobby", "by": "alice"});
    assert_eq!(bob.next_of_type("room_created").await, created);
    assert_eq!(carol.next_of_type("room_created").await, created);

    bob.send(json!({"type": "join", "ref": "j", "room": "lobby"})).await;
    let own_event = bob.next().await;
    assert_eq!(own_event, json!({"type": "member_joined", "room": "lobby", "user": "bob"}));
    let answer = bob.next().await;
    assert_eq!(answer["type"], "room", "the event comes before the answer on the joining connection: {answer}");
    assert_eq!(answer["ref"], "j");
    let at_alice = alice.next_of_type("member_joined").await;
    assert_eq!(at_alice, json!({"type": "member_joined", "room": "lobby", "user": "bob"}));

    bob.send(json!({"type": "leave", "ref": "l", "room": "lobby"})).await;
    let own_event = bob.next().await;
    assert_eq!(own_event, json!({"type": "member_left", "room": "lobby", "user": "bob"}));
    let answer = bob.next().await;
    assert_eq!(answer, json!({"type": "ok", "ref": "l", "of": "leave"}));
    let at_alice = alice.next_of_type("member_left").await;
    assert_eq!(at_alice, json!({"type": "member_left", "room": "lobby", "user": "bob"}));

    let outsider = carol.quiesce().await;
    assert!(outsider.is_empty(), "a non-member hears nothing about the room: {outsider:?}");
}

#[tokio::test]
async fn a_room_message_reaches_every_member_device_but_not_the_sending_connection() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice_phone = TestClient::login_open_quiet(&url, "alice").await;
    let mut alice_laptop = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob_phone = TestClient::login_open_quiet(&url, "bob").await;
    let mut bob_laptop = TestClient::login_open_quiet(&url, "bob").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    alice_phone.request(json!({"type": "create_room", "room": "lobby"})).await;
    bob_phone.request(json!({"type": "join", "room": "lobby"})).await;

    let ack = alice_phone.request(json!({"type": "send", "room": "lobby", "text": "hello room"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["conv"], "room:lobby");
    assert_eq!(ack["seq"], 1);

    for device in [&mut alice_laptop, &mut bob_phone, &mut bob_laptop] {
        let message = device.next_of_type("message").await;
        assert_eq!(message["conv"], "room:lobby");
        assert_eq!(message["room"], "lobby");
        assert_eq!(message["from"], "alice");
        assert_eq!(message["text"], "hello room");
        assert_eq!(message["id"], ack["id"]);
        assert!(message.get("to").is_none(), "room messages have no 'to': {message}");
    }
    let echoes = alice_phone.drain_of_type("message").await;
    assert!(echoes.is_empty(), "the sending connection gets only the ack: {echoes:?}");
    let outsider = carol.drain_of_type("message").await;
    assert!(outsider.is_empty(), "a non-member gets no room messages: {outsider:?}");
}

#[tokio::test]
async fn a_non_member_cannot_send_to_a_room() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;

    let refused = carol.request(json!({"type": "send", "room": "lobby", "text": "let me in"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "not_a_member");
    let missing = carol.request(json!({"type": "send", "room": "nowhere", "text": "anyone?"})).await;
    assert_eq!(missing["code"], "room_not_found", "{missing}");

    let delivered = alice.drain_of_type("message").await;
    assert!(delivered.is_empty(), "{delivered:?}");
    let history = alice.request(json!({"type": "history", "room": "lobby"})).await;
    assert_eq!(history["messages"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_user_who_left_no_longer_receives_room_messages() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut bob_laptop = TestClient::login_open_quiet(&url, "bob").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    alice.request(json!({"type": "send", "room": "lobby", "text": "before"})).await;
    assert_eq!(bob.next_of_type("message").await["text"], "before");
    assert_eq!(bob_laptop.next_of_type("message").await["text"], "before");

    let left = bob.request(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(left["type"], "ok", "{left}");
    let ack = alice.request(json!({"type": "send", "room": "lobby", "text": "after"})).await;
    assert_eq!(ack["type"], "ack");

    for device in [&mut bob, &mut bob_laptop] {
        let delivered = device.drain_of_type("message").await;
        assert!(delivered.is_empty(), "no device of a user who left gets room messages: {delivered:?}");
    }
    let refused = bob.request(json!({"type": "send", "room": "lobby", "text": "still here?"})).await;
    assert_eq!(refused["code"], "not_a_member", "{refused}");
    let again = bob.request(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(again["code"], "not_a_member", "{again}");
}

#[tokio::test]
async fn members_lists_the_members_sorted_with_their_online_flags() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut watcher = TestClient::login_with(&url, json!({"type": "login_open", "username": "watcher"})).await;
    assert_eq!(watcher.request(json!({"type": "watch", "users": ["bob"]})).await["type"], "watching");
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    carol.request(json!({"type": "join", "room": "lobby"})).await;
    alice.request(json!({"type": "join", "room": "lobby"})).await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    bob.close().await;
    assert_eq!(watcher.next_of_type("user_offline").await["user"], "bob");

    let members = watcher.request(json!({"type": "members", "room": "Lobby"})).await;
    assert_eq!(members["type"], "members", "membership is not needed to list members: {members}");
    assert_eq!(members["room"], "lobby");
    assert_eq!(
        members["members"],
        json!([
            {"user": "alice", "online": true},
            {"user": "bob", "online": false},
            {"user": "carol", "online": true, "role": "owner"},
        ])
    );
}

#[tokio::test]
async fn rooms_lists_every_room_with_its_member_count_and_whether_you_joined() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    bob.request(json!({"type": "create_room", "room": "beta"})).await;
    alice.request(json!({"type": "create_room", "room": "alpha"})).await;
    bob.request(json!({"type": "join", "room": "alpha"})).await;
    carol.request(json!({"type": "join", "room": "alpha"})).await;
    carol.request(json!({"type": "leave", "room": "alpha"})).await;

    let rooms = alice.request(json!({"type": "rooms"})).await;
    assert_eq!(rooms["type"], "rooms", "{rooms}");
    assert_eq!(
        rooms["rooms"],
        json!([
            {"name": "alpha", "members": 2, "joined": true, "private": false, "role": "owner"},
            {"name": "beta", "members": 1, "joined": false, "private": false},
        ])
    );
    let rooms = carol.request(json!({"type": "rooms"})).await;
    assert_eq!(rooms["rooms"][0], json!({"name": "alpha", "members": 2, "joined": false, "private": false}), "{rooms}");
}

#[tokio::test]
async fn membership_persists_across_reconnects_without_joining_again() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    bob.close().await;

    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let ack = alice.request(json!({"type": "send", "room": "lobby", "text": "welcome back"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "welcome back");
    assert_eq!(message["seq"], ack["seq"]);
    let reply = bob.request(json!({"type": "send", "room": "lobby", "text": "thanks"})).await;
    assert_eq!(reply["type"], "ack", "a member may still send after reconnecting: {reply}");
}

#[tokio::test]
async fn room_history_is_for_members_only() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut carol = TestClient::login_open_quiet(&url, "carol").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    alice.request(json!({"type": "send", "room": "lobby", "text": "members only"})).await;

    let refused = carol.request(json!({"type": "history", "room": "lobby"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "not_a_member");
    let history = alice.request(json!({"type": "history", "room": "lobby"})).await;
    assert_eq!(history["conv"], "room:lobby");
    assert_eq!(history["messages"][0]["text"], "members only");
    assert_eq!(history["has_more"], false);
    let missing = carol.request(json!({"type": "history", "room": "nowhere"})).await;
    assert_eq!(missing["code"], "room_not_found", "{missing}");
}

#[tokio::test]
async fn leave_and_members_of_an_unknown_room_are_room_not_found() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;

    let leave = alice.request(json!({"type": "leave", "room": "nowhere"})).await;
    assert_eq!(leave["type"], "error", "{leave}");
    assert_eq!(leave["code"], "room_not_found");
    let members = alice.request(json!({"type": "members", "room": "nowhere"})).await;
    assert_eq!(members["type"], "error", "{members}");
    assert_eq!(members["code"], "room_not_found");
    let rooms = alice.request(json!({"type": "rooms"})).await;
    assert_eq!(rooms["rooms"], json!([]), "asking about a room does not create it");
}
