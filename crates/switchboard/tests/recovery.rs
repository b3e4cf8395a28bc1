//! Recovery: offline delivery, reconnects with cursors, several devices, history paging, read
//! markers and typing.

use serde_json::{json, Value};
use switchboard_testkit::{TestClient, TestServer};

/// What a login sent to bring a connection up to date.
struct Sync {
    /// The `sync` frame.
    summary: Value,
    /// The `message` frames between `sync` and `synced`, in arrival order.
    messages: Vec<Value>,
    /// The `synced` frame.
    synced: Value,
}

/// Reads the frames of a login up to `synced`, checking that `sync` comes first and every
/// message between the two. Events (presence, typing, read) may be interleaved and are skipped.
async fn read_sync(client: &mut TestClient) -> Sync {
    let mut summary: Option<Value> = None;
    let mut messages = Vec::new();
    loop {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("sync") => {
                assert!(summary.is_none(), "a second sync frame: {frame}");
                summary = Some(frame);
            }
            Some("message") => {
                assert!(summary.is_some(), "a message before the sync frame: {frame}");
                messages.push(frame);
            }
            Some("synced") => {
                let summary = summary.expect("synced without a sync frame");
                return Sync { summary, messages, synced: frame };
            }
            _ => {}
        }
    }
}

/// Connects, sends a login frame and reads its sync.
async fn login_reading_sync(url: &str, frame: Value) -> (TestClient, Sync) {
    let mut client = TestClient::connect(url).await;
    let session = client.request(frame).await;
    assert_eq!(session["type"], "session", "login failed: {session}");
    client.session = session;
    let sync = read_sync(&mut client).await;
    (client, sync)
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}"))).collect()
}

async fn send(client: &mut TestClient, to: &str, text: &str) -> Value {
    let ack = client.request(json!({"type": "send", "to": to, "text": text})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack
}

#[tokio::test]
async fn messages_sent_while_offline_arrive_in_the_sync_of_the_next_login() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let bob = TestClient::register(&url, "bob", "password2").await;
    bob.close().await;
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    for i in 1..=3 {
        let ack = send(&mut alice, "bob", &format!("while you were out {i}")).await;
        assert_eq!(ack["seq"], i);
    }

    let login = json!({"type": "login", "username": "bob", "password": "password2"});
    let (mut bob, sync) = login_reading_sync(&url, login).await;
    assert_eq!(
        sync.summary["conversations"],
        json!([{"conv": "dm:alice:bob", "last_seq": 3, "read_seq": 0, "peer_read_seq": 3, "peer_delivered_seq": 3,
              "unread": 3, "from_seq": 0, "count": 3, "more": false}])
    );
    assert_eq!(seqs(&sync.messages), [1, 2, 3]);
    for (message, i) in sync.messages.iter().zip(1..) {
        assert_eq!(message["conv"], "dm:alice:bob");
        assert_eq!(message["from"], "alice");
        assert_eq!(message["to"], "bob");
        assert_eq!(message["text"], format!("while you were out {i}"));
    }
    assert_eq!(sync.synced["messages"], 3);
    let again = bob.drain_of_type("message").await;
    assert!(again.is_empty(), "the sync is not followed by copies: {again:?}");
}

#[tokio::test]
async fn a_login_without_cursors_syncs_only_what_is_after_the_read_marker() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    for i in 1..=3 {
        send(&mut alice, "bob", &format!("note {i}")).await;
    }
    let ok = bob.request(json!({"type": "read", "to": "alice", "seq": 2})).await;
    assert_eq!(ok["type"], "ok", "{ok}");

    let login = json!({"type": "login", "username": "bob", "password": "password2"});
    let (_new_device, sync) = login_reading_sync(&url, login).await;
    assert_eq!(
        sync.summary["conversations"],
        json!([{"conv": "dm:alice:bob", "last_seq": 3, "read_seq": 2, "peer_read_seq": 3, "peer_delivered_seq": 3,
              "unread": 1, "from_seq": 2, "count": 1, "more": false}])
    );
    assert_eq!(seqs(&sync.messages), [3], "only the unread message");
}

#[tokio::test]
async fn a_sync_over_the_limit_says_more_and_the_rest_pages_in_with_history() {
    let server = TestServer::builder().chat(|c| c.sync_limit_per_conv = 5).start().await;
    let url = server.ws_url();
    let bob = TestClient::register(&url, "bob", "password2").await;
    let token = bob.token();
    bob.close().await;
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    for i in 1..=8 {
        send(&mut alice, "bob", &format!("message {i}")).await;
    }

    let mut bob = TestClient::resume(&url, &token, json!({"dm:alice:bob": 1})).await;
    let sync = read_sync(&mut bob).await;
    assert_eq!(
        sync.summary["conversations"],
        json!([{"conv": "dm:alice:bob", "last_seq": 8, "read_seq": 0, "peer_read_seq": 8, "peer_delivered_seq": 8,
              "unread": 8, "from_seq": 1, "count": 5, "more": true}])
    );
    assert_eq!(seqs(&sync.messages), [2, 3, 4, 5, 6], "the oldest missed messages first");
    let (rest, has_more) = history_page(&mut bob, json!({"after": 6})).await;
    assert_eq!(rest, [7, 8]);
    assert!(!has_more);
}

#[tokio::test]
async fn a_reconnect_with_cursors_gets_every_missed_message_once_in_order() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    for i in 1..=3 {
        send(&mut alice, "bob", &format!("live {i}")).await;
        assert_eq!(bob.next_of_type("message").await["seq"], i);
    }
    let cursor = 3;
    let token = bob.token();
    bob.drop_connection();

    for i in 4..=7 {
        let ack = send(&mut alice, "bob", &format!("missed {i}")).await;
        assert_eq!(ack["seq"], i);
    }
    let mut bob = TestClient::resume(&url, &token, json!({"dm:alice:bob": cursor})).await;
    let sync = read_sync(&mut bob).await;
    assert_eq!(
        sync.summary["conversations"],
        json!([{"conv": "dm:alice:bob", "last_seq": 7, "read_seq": 0, "peer_read_seq": 7, "peer_delivered_seq": 7,
              "unread": 7, "from_seq": 3, "count": 4, "more": false}])
    );
    assert_eq!(seqs(&sync.messages), [4, 5, 6, 7], "exactly the missed messages, in order");
    let texts: Vec<&str> = sync.messages.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["missed 4", "missed 5", "missed 6", "missed 7"]);
    assert_eq!(sync.synced["messages"], 4);

    // The live stream continues after the sync, without repeats.
    send(&mut alice, "bob", "live again").await;
    let live = bob.next_of_type("message").await;
    assert_eq!(live["seq"], 8);
    let extra = bob.drain_of_type("message").await;
    assert!(extra.is_empty(), "{extra:?}");
}

#[tokio::test]
async fn a_cursor_at_or_past_the_newest_seq_replays_nothing() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let bob = TestClient::register(&url, "bob", "password2").await;
    let token = bob.token();
    bob.close().await;
    send(&mut alice, "bob", "one").await;
    send(&mut alice, "bob", "two").await;

    // Without a cursor bob would get both (his read marker is 0); the cursor says he has them.
    // Conversation ids in cursors are normalised like names.
    for cursors in [json!({"dm:alice:bob": 2}), json!({"dm:Bob:Alice": 99})] {
        let mut bob = TestClient::resume(&url, &token, cursors.clone()).await;
        let sync = read_sync(&mut bob).await;
        assert_eq!(sync.summary["conversations"], json!([]), "cursors {cursors}");
        assert!(sync.messages.is_empty(), "cursors {cursors}: {:?}", sync.messages);
        assert_eq!(sync.synced["messages"], 0);
        let late = bob.drain_of_type("message").await;
        assert!(late.is_empty(), "cursors {cursors}: {late:?}");
    }
}

#[tokio::test]
async fn messages_sent_from_one_device_reach_the_others_and_an_offline_device_catches_up() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut phone = TestClient::register(&url, "bob", "password2").await;
    let mut laptop = TestClient::login(&url, "bob", "password2").await;

    let ack = send(&mut phone, "alice", "from my phone").await;
    assert_eq!(ack["seq"], 1);
    let on_laptop = laptop.next_of_type("message").await;
    assert_eq!(on_laptop["from"], "bob");
    assert_eq!(on_laptop["to"], "alice", "a copy of bob's own message names the peer");
    assert_eq!(on_laptop["text"], "from my phone");
    assert_eq!(on_laptop["id"], ack["id"]);
    assert_eq!(alice.next_of_type("message").await["id"], ack["id"]);
    let echo = phone.drain_of_type("message").await;
    assert!(echo.is_empty(), "the sending device gets only the ack: {echo:?}");

    let laptop_cursor = on_laptop["seq"].as_u64().unwrap();
    let laptop_token = laptop.token();
    laptop.drop_connection();
    send(&mut phone, "alice", "still on the phone").await;
    send(&mut phone, "alice", "and again").await;
    send(&mut alice, "bob", "got them").await;

    let mut laptop = TestClient::resume(&url, &laptop_token, json!({"dm:alice:bob": laptop_cursor})).await;
    let sync = read_sync(&mut laptop).await;
    assert_eq!(seqs(&sync.messages), [2, 3, 4]);
    let senders: Vec<&str> = sync.messages.iter().map(|m| m["from"].as_str().unwrap()).collect();
    assert_eq!(senders, ["bob", "bob", "alice"]);
    assert_eq!(sync.messages[0]["text"], "still on the phone");
    assert_eq!(sync.messages[2]["text"], "got them");
}

/// One `history` page as bob sees the conversation with alice: its seqs and `has_more`. Also
/// checks that every message carries its own text.
async fn history_page(client: &mut TestClient, fields: Value) -> (Vec<u64>, bool) {
    let mut request = json!({"type": "history", "to": "alice"});
    for (name, value) in fields.as_object().expect("fields object") {
        request[name] = value.clone();
    }
    let page = client.request(request).await;
    assert_eq!(page["type"], "history", "{page}");
    assert_eq!(page["conv"], "dm:alice:bob");
    let messages = page["messages"].as_array().expect("messages array");
    for message in messages {
        assert_eq!(message["text"], format!("message {}", message["seq"]), "{message}");
        assert!(message.get("type").is_none(), "history messages carry no type: {message}");
    }
    (seqs(messages), page["has_more"].as_bool().expect("has_more"))
}

#[tokio::test]
async fn history_pages_backwards_and_forwards_through_the_whole_conversation() {
    let server = TestServer::builder()
        .chat(|c| {
            c.rate_per_sec = 10_000.0;
            c.rate_burst = 10_000.0;
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut bob = TestClient::register(&url, "bob", "password2").await;
    for i in 1..=120 {
        alice.send(json!({"type": "send", "ref": format!("m-{i}"), "to": "bob", "text": format!("message {i}")})).await;
    }
    for i in 1..=120 {
        let ack = alice.next_of_type("ack").await;
        assert_eq!(ack["ref"], format!("m-{i}"), "acks come in the order of the sends");
        assert_eq!(ack["seq"], i);
    }

    let (newest, has_more) = history_page(&mut bob, json!({"limit": 50})).await;
    assert_eq!(newest, (71..=120).collect::<Vec<u64>>(), "the newest 50, oldest first");
    assert!(has_more);
    let (older, has_more) = history_page(&mut bob, json!({"before": 71, "limit": 50})).await;
    assert_eq!(older, (21..=70).collect::<Vec<u64>>());
    assert!(has_more);
    let (oldest, has_more) = history_page(&mut bob, json!({"before": 21, "limit": 50})).await;
    assert_eq!(oldest, (1..=20).collect::<Vec<u64>>());
    assert!(!has_more, "seq 1 reached");

    let (first, has_more) = history_page(&mut bob, json!({"after": 0, "limit": 50})).await;
    assert_eq!(first, (1..=50).collect::<Vec<u64>>());
    assert!(has_more);
    let (second, has_more) = history_page(&mut bob, json!({"after": 50, "limit": 50})).await;
    assert_eq!(second, (51..=100).collect::<Vec<u64>>());
    assert!(has_more);
    let (last, has_more) = history_page(&mut bob, json!({"after": 100, "limit": 50})).await;
    assert_eq!(last, (101..=120).collect::<Vec<u64>>());
    assert!(!has_more, "a short page is the last");

    // `after` takes precedence over `before`; without a limit a page holds 50.
    let (both, _) = history_page(&mut bob, json!({"after": 10, "before": 5, "limit": 3})).await;
    assert_eq!(both, [11, 12, 13]);
    let (default_page, _) = history_page(&mut bob, json!({})).await;
    assert_eq!(default_page, (71..=120).collect::<Vec<u64>>());
}

#[tokio::test]
async fn reading_moves_the_marker_lowers_unread_and_tells_the_peer() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut phone = TestClient::register(&url, "bob", "password2").await;
    let mut laptop = TestClient::login(&url, "bob", "password2").await;
    let mut last_ack = Value::Null;
    for i in 1..=3 {
        last_ack = send(&mut alice, "bob", &format!("unread {i}")).await;
    }

    let listed = phone.request(json!({"type": "conversations"})).await;
    assert_eq!(
        listed["conversations"],
        json!([{"conv": "dm:alice:bob", "peer": "alice", "last_seq": 3, "read_seq": 0, "peer_read_seq": 3,
                "peer_delivered_seq": 3, "unread": 3, "last_ts": last_ack["ts"],
                "last": {"seq": 3, "from": "alice", "text": "unread 3"}}])
    );

    let ok = phone.request(json!({"type": "read", "to": "alice", "seq": 2})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["of"], "read");
    let expected = json!({"type": "read", "conv": "dm:alice:bob", "user": "bob", "seq": 2});
    assert_eq!(alice.next_of_type("read").await, expected, "the peer is told");
    assert_eq!(laptop.next_of_type("read").await, expected, "the reader's other devices are told");
    let own = phone.drain_of_type("read").await;
    assert!(own.is_empty(), "the reading connection gets only the ok: {own:?}");
    let listed = phone.request(json!({"type": "conversations"})).await;
    assert_eq!(listed["conversations"][0]["read_seq"], 2);
    assert_eq!(listed["conversations"][0]["unread"], 1);

    // The marker never moves back, and is capped at the newest seq.
    phone.request(json!({"type": "read", "to": "alice", "seq": 1})).await;
    assert_eq!(alice.next_of_type("read").await["seq"], 2);
    phone.request(json!({"type": "read", "to": "alice", "seq": 99})).await;
    assert_eq!(alice.next_of_type("read").await["seq"], 3);
    let listed = laptop.request(json!({"type": "conversations"})).await;
    assert_eq!(listed["conversations"][0]["read_seq"], 3);
    assert_eq!(listed["conversations"][0]["unread"], 0);
}

#[tokio::test]
async fn typing_reaches_the_peers_connections_and_is_not_answered() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = TestClient::register(&url, "alice", "password1").await;
    let mut phone = TestClient::register(&url, "bob", "password2").await;
    let mut laptop = TestClient::login(&url, "bob", "password2").await;

    alice.send(json!({"type": "typing", "ref": "t-1", "to": "bob"})).await;
    let expected = json!({"type": "typing", "conv": "dm:alice:bob", "from": "alice"});
    assert_eq!(phone.next_of_type("typing").await, expected);
    assert_eq!(laptop.next_of_type("typing").await, expected);
    let answered = alice.quiesce().await;
    assert!(
        answered.iter().all(|frame| frame["ref"] != "t-1" && frame["type"] != "typing"),
        "a successful typing has no answer: {answered:?}"
    );

    let failed = alice.request(json!({"type": "typing", "to": "nobody"})).await;
    assert_eq!(failed["type"], "error", "{failed}");
    assert_eq!(failed["code"], "user_not_found");
}
