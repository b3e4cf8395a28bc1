//! Presence (the online list, user_online / user_offline, stats, whoami) with the `everyone`
//! setting (presence about every user; the default, contacts only, is in presence_scope.rs), the
//! dirty-word filter and the popular words.

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestServer};

/// A server with open login and presence about every user.
async fn everyone_server() -> TestServer {
    TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.presence_everyone = true;
        })
        .start()
        .await
}

fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}

#[tokio::test]
async fn login_sends_the_online_list_sorted_unique_and_done() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let _carol = TestClient::login_open_quiet(&url, "carol").await;
    let _alice_phone = TestClient::login_open_quiet(&url, "alice").await;
    let _alice_laptop = TestClient::login_open_quiet(&url, "alice").await;
    let _bob = TestClient::login_open_quiet(&url, "bob").await;

    let mut dave = TestClient::login_open(&url, "dave").await;
    let frames = dave.take_inbox();
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["user_online", "online", "sync"], "session, own user_online, online list, sync: {frames:?}");
    assert_eq!(frames[0], json!({"type": "user_online", "user": "dave"}));
    let online = &frames[1];
    assert_eq!(online["users"], json!(["alice", "bob", "carol", "dave"]), "{online}");
    assert_eq!(online["done"], true);
    assert!(online.get("ref").is_none(), "the automatic online list carries no ref: {online}");
}

#[tokio::test]
async fn others_get_user_online_when_a_user_logs_in() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    alice.take_inbox();

    let _bob = TestClient::login_open(&url, "bob").await;
    let event = alice.next_of_type("user_online").await;
    assert_eq!(event, json!({"type": "user_online", "user": "bob"}));

    let _bob_laptop = TestClient::login_open(&url, "bob").await;
    let again = alice.drain_of_type("user_online").await;
    assert!(again.is_empty(), "a second connection of an online user is not news: {again:?}");
}

#[tokio::test]
async fn user_offline_comes_only_when_the_last_connection_closes() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    alice.take_inbox();
    let bob_phone = TestClient::login_open(&url, "bob").await;
    let bob_laptop = TestClient::login_open(&url, "bob").await;
    assert_eq!(alice.next_of_type("user_online").await["user"], "bob");

    // `close` returns once the server answered the close, which it does after taking the
    // connection out of presence: anything it announced is queued for alice by then.
    bob_phone.close().await;
    let early = alice.drain_of_type("user_offline").await;
    assert!(early.is_empty(), "bob still has a connection: {early:?}");
    let stats = alice.request(json!({"type": "stats", "user": "bob"})).await;
    assert_eq!(stats["online"], true, "{stats}");
    assert_eq!(stats["connections"], 1);

    bob_laptop.drop_connection();
    let event = alice.next_of_type("user_offline").await;
    assert_eq!(event, json!({"type": "user_offline", "user": "bob"}));
    let stats = alice.request(json!({"type": "stats", "user": "bob"})).await;
    assert_eq!(stats["online"], false, "{stats}");
}

#[tokio::test]
async fn a_connection_without_presence_gets_no_online_list_and_no_presence_events() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open(&url, "alice").await;
    alice.take_inbox();

    let mut carol =
        TestClient::login_with(&url, json!({"type": "login_open", "username": "carol", "presence": false})).await;
    let after_login = carol.take_inbox();
    assert!(of_type(&after_login, "online").is_empty(), "{after_login:?}");
    assert!(of_type(&after_login, "user_online").is_empty(), "{after_login:?}");
    assert_eq!(alice.next_of_type("user_online").await["user"], "carol", "others still see carol come online");

    let dave = TestClient::login_open(&url, "dave").await;
    assert_eq!(alice.next_of_type("user_online").await["user"], "dave");
    dave.close().await;
    assert_eq!(alice.next_of_type("user_offline").await["user"], "dave");
    let events = carol.quiesce().await;
    assert!(events.is_empty(), "no presence events without presence: {events:?}");

    let online = carol.request(json!({"type": "online"})).await;
    assert_eq!(online["users"], json!(["alice", "carol"]), "the online request works without presence: {online}");
}

#[tokio::test]
async fn the_online_request_answers_the_list_with_its_ref() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let _zoe = TestClient::login_open_quiet(&url, "zoe").await;
    let _bob = TestClient::login_open_quiet(&url, "bob").await;
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let _alice_laptop = TestClient::login_open_quiet(&url, "alice").await;

    alice.send(json!({"type": "online", "ref": "who"})).await;
    let answer = alice.next().await;
    assert_eq!(answer, json!({"type": "online", "ref": "who", "users": ["alice", "bob", "zoe"], "done": true}));
}

#[tokio::test]
async fn stats_of_an_online_user_tells_since_when_where_and_how_many_connections() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob_phone = TestClient::login_open_quiet(&url, "bob").await;
    let _bob_laptop = TestClient::login_open_quiet(&url, "bob").await;
    let bob_connected_at = bob_phone.request(json!({"type": "whoami"})).await["connected_at"].as_i64().unwrap();

    let stats = alice.request(json!({"type": "stats", "user": "Bob"})).await;
    assert_eq!(stats["type"], "stats", "{stats}");
    assert_eq!(stats["user"], "bob");
    assert_eq!(stats["online"], true);
    let since = stats["online_since"].as_i64().expect("online_since");
    assert!(since >= bob_connected_at, "the online period began with bob's first connection: {stats}");
    let pong = alice.request(json!({"type": "ping"})).await;
    assert!(since <= pong["ts"].as_i64().unwrap(), "{stats}");
    let secs = stats["online_secs"].as_u64().expect("online_secs");
    assert!(secs < 60, "{stats}");
    assert_eq!(stats["online_for"], format!("{secs}s"));
    assert_eq!(stats["nodes"], json!(["node-1"]));
    assert_eq!(stats["connections"], 2);
}

#[tokio::test]
async fn stats_of_an_offline_user_says_offline() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    TestClient::login_open_quiet(&url, "bob").await.close().await;

    let stats = alice.request(json!({"type": "stats", "user": "bob"})).await;
    let mut expected = json!({"type": "stats", "user": "bob", "online": false, "nodes": [], "connections": 0});
    expected["ref"] = stats["ref"].clone();
    assert_eq!(stats, expected, "no online_* fields when offline");
}

#[tokio::test]
async fn stats_of_an_unknown_user_is_user_not_found() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;

    let stats = alice.request(json!({"type": "stats", "user": "nobody"})).await;
    assert_eq!(stats["type"], "error", "{stats}");
    assert_eq!(stats["code"], "user_not_found");
    let invalid = alice.request(json!({"type": "stats", "user": "no body"})).await;
    assert_eq!(invalid["code"], "invalid_name", "{invalid}");
}

#[tokio::test]
async fn whoami_names_the_user_node_and_connection() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "Alice").await;

    let pong = alice.request(json!({"type": "ping"})).await;
    let whoami = alice.request(json!({"type": "whoami"})).await;
    assert_eq!(whoami["type"], "whoami", "{whoami}");
    assert_eq!(whoami["user"], "alice");
    assert_eq!(whoami["node"], "node-1");
    assert_eq!(whoami["conn"], alice.session["conn"]);
    let connected_at = whoami["connected_at"].as_i64().expect("connected_at");
    assert!(connected_at > 0 && connected_at <= pong["ts"].as_i64().unwrap(), "{whoami}");
}

#[tokio::test]
async fn dirty_words_are_masked_for_recipients_and_in_history_and_the_sender_gets_its_ack() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.bad_words = vec!["darn".into(), "坏蛋".into()];
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;

    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "Darn it"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.next_of_type("message").await["text"], "**** it");
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "你这个坏蛋啊"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.next_of_type("message").await["text"], "你这个**啊");
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "darning socks"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(bob.next_of_type("message").await["text"], "darning socks", "latin words match whole words only");

    let history = alice.request(json!({"type": "history", "to": "bob"})).await;
    let texts: Vec<&str> =
        history["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["**** it", "你这个**啊", "darning socks"], "the store holds the masked text");
}

#[tokio::test]
async fn popular_ranks_the_words_of_room_messages_most_used_first() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    bob.request(json!({"type": "join", "room": "lobby"})).await;
    for text in ["Rust is fast", "rust is safe", "RUST rocks", "go is fine"] {
        let ack = alice.request(json!({"type": "send", "room": "lobby", "text": text})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    let popular = bob.request(json!({"type": "popular", "n": 2})).await;
    assert_eq!(popular["type"], "popular", "{popular}");
    assert_eq!(popular["seconds"], 60);
    assert_eq!(
        popular["words"],
        json!([{"word": "is", "count": 3}, {"word": "rust", "count": 3}]),
        "ties go alphabetically"
    );

    let ack = alice.request(json!({"type": "send", "room": "lobby", "text": "rust again"})).await;
    assert_eq!(ack["type"], "ack");
    let popular = bob.request(json!({"type": "popular", "n": 2})).await;
    assert_eq!(popular["words"], json!([{"word": "rust", "count": 4}, {"word": "is", "count": 3}]));
}

#[tokio::test]
async fn popular_does_not_count_private_messages() {
    let server = everyone_server().await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let _bob = TestClient::login_open_quiet(&url, "bob").await;
    alice.request(json!({"type": "create_room", "room": "lobby"})).await;
    let ack = alice.request(json!({"type": "send", "room": "lobby", "text": "public words"})).await;
    assert_eq!(ack["type"], "ack");
    for _ in 0..3 {
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": "secret secret plans"})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    let popular = alice.request(json!({"type": "popular", "n": 10})).await;
    assert_eq!(
        popular["words"],
        json!([{"word": "public", "count": 1}, {"word": "words", "count": 1}]),
        "private words must not leak through popular"
    );
}
