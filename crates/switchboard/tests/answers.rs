//! Every answer is bounded in bytes (1 MiB, under the 4 MiB outbound queue), and listings page
//! with a cursor, so an answer can never cut its asker off and a client can still get everything.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use switchboard_store::{EntryKind, NewMessage, SqliteStore, Store};
use switchboard_testkit::{TestClient, TestServer};

const MAX_ANSWER_BYTES: usize = 1 << 20;

fn size_of(frame: &Value) -> usize {
    frame.to_string().len()
}

async fn server_with(store: Arc<dyn Store>) -> TestServer {
    TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 100_000.0;
            c.rate_burst = 100_000.0;
        })
        .store(store)
        .start()
        .await
}

fn room_name(index: usize) -> String {
    format!("{index:05}-{}", "r".repeat(58))
}

/// Walks a listing from its first page, checking each answer's bounds; returns every entry's key.
async fn walk(client: &mut TestClient, request: Value, list: &str, key: &str, total: usize) -> Vec<String> {
    let (mut keys, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut frame = request.clone();
        if let Some(cursor) = &cursor {
            frame["cursor"] = json!(cursor);
        }
        let answer = client.request(frame).await;
        assert_eq!(answer["type"], list, "{answer}");
        assert!(size_of(&answer) <= MAX_ANSWER_BYTES, "a {list} answer of {} bytes", size_of(&answer));
        let entries = answer[list].as_array().expect("a list");
        assert!(entries.len() <= 1000, "a page holds at most 1000 entries, not {}", entries.len());
        assert_eq!(answer["total"], total, "total of {list}");
        keys.extend(entries.iter().map(|entry| entry[key].as_str().expect("a key").to_owned()));
        pages += 1;
        match answer["next_cursor"].as_str() {
            Some(next) => {
                let last = keys.last().expect("a page with a cursor has entries");
                // The conversations listing's key is its activity order's: `<last_ts>:<conv>`.
                let expected = match list {
                    "conversations" => format!("{}:{last}", entries.last().expect("an entry")["last_ts"]),
                    _ => last.clone(),
                };
                assert_eq!(next, expected, "the cursor is the last entry's key");
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(
                    answer["next_cursor"].is_null(),
                    "next_cursor is null on the last page: {}",
                    answer["next_cursor"]
                );
                break;
            }
        }
    }
    assert!(pages > 1, "{total} {list} took one page");
    keys
}

fn assert_each_once(keys: &[String], expected: &[String]) {
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "an entry came twice");
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_over_the_queue_bound_comes_in_bounded_pages_that_walk_every_message_once() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    let server = server_with(store).await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    TestClient::login_open_quiet(&url, "bob").await.close().await;
    // 4000 characters that JSON escapes to 6 bytes each: 200 of them are 4.8 MB.
    let text = "\u{1}".repeat(4000);
    for index in 0..200 {
        let ack = alice.request(json!({"type": "send", "to": "bob", "text": text, "key": format!("k{index}")})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    // Bob connects afterwards: live, those messages would fill his queue too.
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    let newest = bob.request(json!({"type": "history", "to": "alice", "limit": 200})).await;
    assert_eq!(newest["type"], "history", "{newest}");
    assert!(size_of(&newest) <= MAX_ANSWER_BYTES, "{} bytes", size_of(&newest));
    assert_eq!(newest["has_more"], true);
    let page: Vec<u64> = newest["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(page.len() < 200 && page.last() == Some(&200), "the newest messages that fit: {page:?}");

    let mut seen = page.clone();
    let mut before = page[0];
    loop {
        let answer = bob.request(json!({"type": "history", "to": "alice", "before": before, "limit": 200})).await;
        assert!(size_of(&answer) <= MAX_ANSWER_BYTES, "{} bytes", size_of(&answer));
        let messages = answer["messages"].as_array().unwrap();
        assert!(!messages.is_empty());
        let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        before = seqs[0];
        seqs.into_iter().rev().for_each(|seq| seen.insert(0, seq));
        if answer["has_more"] == false {
            break;
        }
    }
    assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "every message exactly once, in order");

    let (mut forward, mut after) = (Vec::<u64>::new(), 0);
    loop {
        let answer = bob.request(json!({"type": "history", "to": "alice", "after": after, "limit": 200})).await;
        assert!(size_of(&answer) <= MAX_ANSWER_BYTES, "{} bytes", size_of(&answer));
        let seqs: Vec<u64> =
            answer["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        forward.extend(&seqs);
        after = *seqs.last().unwrap_or(&after);
        if answer["has_more"] == false {
            break;
        }
    }
    assert_eq!(forward, (1..=200).collect::<Vec<_>>(), "walking forward too");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_conversations_and_members_of_thousands_page_within_the_bound_each_entry_once() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    let rooms: Vec<String> = (0..2500).map(room_name).collect();
    for room in &rooms {
        assert!(store.create_room(room, "alice", 1).await.unwrap());
        assert!(store.add_member(room, "alice", 1).await.unwrap());
    }
    let members: Vec<String> = (0..2200).map(|index| format!("{index:05}{}", "m".repeat(27))).collect();
    for member in &members {
        store.add_member(&rooms[0], member, 1).await.unwrap();
    }
    let peers = ["bob", "carol"];
    for peer in peers {
        let message = NewMessage {
            conv: format!("dm:alice:{peer}"),
            id: format!("id-{peer}"),
            sender: peer.to_owned(),
            recipient: Some("alice".into()),
            room: None,
            text: format!("hi {}", "é".repeat(120)),
            ts: 1,
            idempotency_key: None,
            kind: EntryKind::Message,
            target: None,
        };
        store.append(vec![message]).await.unwrap();
    }
    let server = server_with(store).await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    let listed = walk(&mut alice, json!({"type": "rooms"}), "rooms", "name", rooms.len()).await;
    assert_each_once(&listed, &rooms);

    let convs = walk(&mut alice, json!({"type": "conversations"}), "conversations", "conv", rooms.len() + 2).await;
    let mut expected: Vec<String> = peers.iter().map(|peer| format!("dm:alice:{peer}")).collect();
    expected.extend(rooms.iter().map(|room| format!("room:{room}")));
    assert_each_once(&convs, &expected);

    // Each entry with a message carries its preview: the first 100 characters, then `…`.
    let first = alice.request(json!({"type": "conversations", "limit": 3})).await;
    let preview = format!("hi {}…", "é".repeat(97));
    assert_eq!(first["conversations"][0]["last"], json!({"seq": 1, "from": "bob", "text": preview}), "{first}");
    assert_eq!(first["conversations"][1]["last"]["from"], "carol", "{first}");
    assert!(first["conversations"][2].get("last").is_none(), "a room without messages has no preview: {first}");

    let mut all_members = members.clone();
    all_members.push("alice".into());
    all_members.sort();
    let listed =
        walk(&mut alice, json!({"type": "members", "room": rooms[0]}), "members", "user", all_members.len()).await;
    assert_each_once(&listed, &all_members);

    let small = alice.request(json!({"type": "rooms", "cursor": rooms[2497], "limit": 5})).await;
    assert_eq!(small["rooms"].as_array().unwrap().len(), 2, "{small}");
    assert!(small["next_cursor"].is_null(), "{small}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_search_by_name_prefix_pages_through_the_matches_only() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    // Matches sit between names that sort just before and just after them.
    let matching: Vec<String> = (0..1200).map(|index| format!("bo{index:04}")).collect();
    for name in matching.iter().map(String::as_str).chain(["b", "bn9", "bp", "boa", "c", "alice"]) {
        assert!(store.create_user(name, None, 1).await.unwrap());
    }
    let server = server_with(store).await;
    let mut alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;

    let (mut found, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut frame = json!({"type": "users", "prefix": " BO", "limit": 500});
        if let Some(cursor) = &cursor {
            frame["cursor"] = json!(cursor);
        }
        let page = alice.request(frame).await;
        assert_eq!(page["type"], "users", "{page}");
        let users = page["users"].as_array().expect("users");
        assert!(users.len() <= 500, "{} on a page of 500", users.len());
        found.extend(users.iter().map(|user| user["user"].as_str().expect("a name").to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected = matching.clone();
    expected.push("boa".into());
    assert_each_once(&found, &expected);

    let few = alice.request(json!({"type": "users", "prefix": "bo11", "limit": 200})).await;
    assert_eq!(few["users"].as_array().unwrap().len(), 100, "{few}");
    assert!(few["next_cursor"].is_null(), "{few}");
    let online = alice.request(json!({"type": "users", "prefix": "al"})).await;
    assert_eq!(online["users"], json!([{"user": "alice", "online": true}]), "{online}");
    let none = alice.request(json!({"type": "users", "prefix": "bob"})).await;
    assert_eq!(none["users"], json!([]), "{none}");
    let bad = alice.request(json!({"type": "users", "prefix": "b o"})).await;
    assert_eq!((bad["type"].as_str(), bad["code"].as_str()), (Some("error"), Some("invalid_name")), "{bad}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_sync_summary_of_thousands_of_conversations_comes_in_bounded_frames() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    // About 150 bytes of summary each: 9000 are well over the bound.
    let rooms: Vec<String> = (0..9000).map(room_name).collect();
    let mut batch = Vec::new();
    for (index, room) in rooms.iter().enumerate() {
        assert!(store.create_room(room, "bob", 1).await.unwrap());
        assert!(store.add_member(room, "alice", 1).await.unwrap());
        batch.push(NewMessage {
            conv: format!("room:{room}"),
            id: format!("id-{index}"),
            sender: "bob".into(),
            recipient: None,
            room: Some(room.clone()),
            text: "missed".into(),
            ts: 1,
            idempotency_key: None,
            kind: EntryKind::Message,
            target: None,
        });
    }
    store.append(batch).await.unwrap();
    let server = server_with(store).await;

    let mut alice = TestClient::login_open(&server.ws_url(), "alice").await;
    let frames = alice.take_inbox();
    let summaries: Vec<&Value> = frames.iter().filter(|frame| frame["type"] == "sync").collect();
    assert!(summaries.len() > 1, "one summary frame for {} conversations", rooms.len());
    let mut synced = Vec::new();
    for summary in &summaries {
        assert!(size_of(summary) <= MAX_ANSWER_BYTES, "a sync frame of {} bytes", size_of(summary));
        synced.extend(
            summary["conversations"].as_array().unwrap().iter().map(|e| e["conv"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = rooms.iter().map(|room| format!("room:{room}")).collect();
    assert_each_once(&synced, &expected);
    let messages = frames.iter().filter(|frame| frame["type"] == "message").count();
    assert_eq!(messages, rooms.len(), "every missed message follows the summaries");
    server.shutdown().await;
}
