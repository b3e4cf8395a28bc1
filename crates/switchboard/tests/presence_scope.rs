//! Presence scoped to what a user looks at: a connection hears about itself, the users it has
//! private conversations with and those it watches, nobody else; a first private message makes
//! both sides contacts, on one node and across nodes.

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestCluster, TestServer};

/// The names of the online list that followed a login.
async fn login_online_list(client: &mut TestClient) -> Vec<String> {
    let list = client.next_of_type("online").await;
    assert_eq!(list["done"], true, "{list}");
    list["users"].as_array().expect("users").iter().map(|user| user.as_str().expect("name").to_owned()).collect()
}

/// Presence events about `user` that arrived by the time the server answered a ping.
async fn presence_about(client: &mut TestClient, user: &str) -> Vec<Value> {
    let mut events = client.drain_of_type("user_online").await;
    events.extend(client.drain_of_type("user_offline").await);
    events.retain(|event| event["user"] == user);
    events
}

#[tokio::test]
async fn a_user_hears_about_contacts_and_watched_users_only() {
    let server = TestServer::with_open_auth().await;
    let url = server.ws_url();
    let mut bob = TestClient::login_open(&url, "bob").await;
    let carol = TestClient::login_open(&url, "carol").await;
    let mut alice = TestClient::login_open(&url, "alice").await;
    assert_eq!(login_online_list(&mut alice).await, ["alice"], "no conversation yet: only herself");

    // Dave, a stranger, comes and goes: alice hears nothing of it.
    let dave = TestClient::login_open(&url, "dave").await;
    dave.close().await;
    assert!(presence_about(&mut alice, "dave").await.is_empty());
    assert!(presence_about(&mut bob, "carol").await.is_empty(), "bob and carol are strangers too");

    // Alice's first message to bob makes them contacts: each learns the other is online.
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "hi"})).await;
    assert_eq!(ack["seq"], 1, "{ack}");
    alice.next_about("user_online", "bob").await;
    bob.next_about("user_online", "alice").await;

    // A new connection of alice's finds bob in its online list.
    let mut phone = TestClient::login_open(&url, "alice").await;
    assert_eq!(login_online_list(&mut phone).await, ["alice", "bob"]);

    // Asked about, carol is watched: her state now, then her changes.
    let answer = alice.request(json!({"type": "watch", "users": ["carol", "erin"]})).await;
    assert_eq!(
        answer["users"],
        json!([{"user": "carol", "online": true}, {"user": "erin", "online": false}]),
        "{answer}"
    );
    carol.close().await;
    alice.next_about("user_offline", "carol").await;
    assert!(presence_about(&mut phone, "carol").await.is_empty(), "the other device did not watch carol");

    // Bob's going offline reaches both of alice's connections; unwatched, erin's arrival does not.
    bob.close().await;
    alice.next_about("user_offline", "bob").await;
    phone.next_about("user_offline", "bob").await;
    let answer = alice.request(json!({"type": "unwatch", "users": ["erin"]})).await;
    assert_eq!(answer["of"], "unwatch", "{answer}");
    let _erin = TestClient::login_open(&url, "erin").await;
    assert!(presence_about(&mut alice, "erin").await.is_empty());
}

#[tokio::test]
async fn a_watch_is_bounded_and_checked() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.presence_watch_max = 3;
        })
        .start()
        .await;
    let mut alice = TestClient::login_open(&server.ws_url(), "alice").await;
    let answer = alice.request(json!({"type": "watch", "users": ["a1", "a2"]})).await;
    assert_eq!(answer["type"], "watching", "alice and two more fit: {answer}");
    let answer = alice.request(json!({"type": "watch", "users": ["a3"]})).await;
    assert_eq!(answer["code"], "invalid_field", "past the bound: {answer}");
    let answer = alice.request(json!({"type": "watch", "users": []})).await;
    assert_eq!(answer["code"], "invalid_field", "{answer}");
    let answer = alice.request(json!({"type": "watch", "users": ["not a name!"]})).await;
    assert_eq!(answer["code"], "invalid_name", "{answer}");
    let online = alice.request(json!({"type": "online"})).await;
    assert_eq!(online["users"], json!(["alice"]), "the online answer lists the watched users online: {online}");
}

#[tokio::test]
async fn a_first_message_across_nodes_starts_presence_for_both_sides() {
    let cluster = TestCluster::start(2).await;
    let mut alice = TestClient::login_open(&cluster.url(0), "alice").await;
    let mut bob = TestClient::login_open(&cluster.url(1), "bob").await;
    // Carol, on alice's node, is nobody to bob.
    let mut carol = TestClient::login_open(&cluster.url(0), "carol").await;
    let ack = carol.request(json!({"type": "send", "to": "carol", "text": "note to self"})).await;
    assert_eq!(ack["type"], "ack");

    // Bob's first message reaches alice's node: both start hearing about each other.
    let ack = bob.request(json!({"type": "send", "to": "alice", "text": "hello from n2"})).await;
    assert_eq!(ack["seq"], 1, "{ack}");
    alice.next_of_type("message").await;
    alice.next_about("user_online", "bob").await;
    bob.next_about("user_online", "alice").await;

    alice.close().await;
    bob.next_about("user_offline", "alice").await;
    carol.close().await;
    assert!(presence_about(&mut bob, "carol").await.is_empty(), "bob never heard of carol");
}
