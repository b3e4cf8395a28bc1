use std::collections::HashMap;
use std::sync::Arc;

use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{
    AppendOutcome, ConversationRecord, NewMessage, RoomSummary, SessionRecord, SqliteStore, Store, StoredMessage,
};

fn dm(sender: &str, recipient: &str, text: &str, key: Option<&str>) -> NewMessage {
    let (low, high) = if sender <= recipient { (sender, recipient) } else { (recipient, sender) };
    NewMessage {
        conv: format!("dm:{low}:{high}"),
        id: format!("id-{sender}-{text}"),
        sender: sender.into(),
        recipient: Some(recipient.into()),
        room: None,
        text: text.into(),
        ts: 1_000 + text.len() as i64,
        idempotency_key: key.map(str::to_owned),
    }
}

fn in_room(room: &str, sender: &str, text: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        conv: format!("room:{room}"),
        id: format!("id-{room}-{sender}-{text}"),
        sender: sender.into(),
        recipient: None,
        room: Some(room.into()),
        text: text.into(),
        ts: 2_000 + text.len() as i64,
        idempotency_key: key.map(str::to_owned),
    }
}

fn stored(outcome: &AppendOutcome) -> &StoredMessage {
    match outcome {
        AppendOutcome::Stored(message) => message,
        AppendOutcome::Duplicate(message) => {
            panic!("expected stored, got duplicate of {message:?}")
        }
    }
}

fn duplicate(outcome: &AppendOutcome) -> &StoredMessage {
    match outcome {
        AppendOutcome::Duplicate(message) => message,
        AppendOutcome::Stored(message) => panic!("expected duplicate, got stored {message:?}"),
    }
}

fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|message| message.seq).collect()
}

async fn texts_of(store: &impl Store, conv: &str) -> Vec<String> {
    let messages = store.messages_after(conv, 0, 1_000).await.unwrap();
    messages.into_iter().map(|message| message.text).collect()
}

#[tokio::test]
async fn seqs_are_gap_free_per_conversation_across_batches() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let first = store
        .append(&[
            dm("alice", "bob", "m1", None),
            in_room("lobby", "alice", "r1", None),
            dm("bob", "alice", "m2", None),
            dm("alice", "carol", "c1", None),
            in_room("lobby", "bob", "r2", None),
        ])
        .await
        .unwrap();
    let got: Vec<(&str, u64)> =
        first.iter().map(|outcome| (stored(outcome).conv.as_str(), stored(outcome).seq)).collect();
    assert_eq!(
        got,
        [("dm:alice:bob", 1), ("room:lobby", 1), ("dm:alice:bob", 2), ("dm:alice:carol", 1), ("room:lobby", 2)]
    );

    let second = store
        .append(&[
            in_room("lobby", "carol", "r3", None),
            dm("alice", "bob", "m3", None),
            in_room("lobby", "alice", "r4", None),
        ])
        .await
        .unwrap();
    assert_eq!(second.iter().map(|outcome| stored(outcome).seq).collect::<Vec<_>>(), [3, 3, 4]);
    assert!(store.append(&[]).await.unwrap().is_empty());

    assert_eq!(seqs(&store.messages_after("dm:alice:bob", 0, 100).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.messages_after("room:lobby", 0, 100).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(texts_of(&store, "room:lobby").await, ["r1", "r2", "r3", "r4"]);
    assert_eq!(store.last_seq("dm:alice:bob").await.unwrap(), 3);
    assert_eq!(store.last_seq("dm:alice:carol").await.unwrap(), 1);
    assert_eq!(store.last_seq("room:nowhere").await.unwrap(), 0);

    let message = &store.messages_after("dm:alice:bob", 1, 1).await.unwrap()[0];
    assert_eq!(message, stored(&first[2]));
    assert_eq!(message.sender, "bob");
    assert_eq!(message.recipient.as_deref(), Some("alice"));
    assert_eq!(message.room, None);
}

#[tokio::test]
async fn duplicate_idempotency_key_returns_the_original_and_consumes_no_seq() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let first = store.append(&[dm("alice", "bob", "hello", Some("k1"))]).await.unwrap();
    let original = stored(&first[0]).clone();

    let second = store
        .append(&[
            dm("alice", "bob", "hello again", Some("k1")),
            dm("alice", "bob", "no key", None),
            dm("alice", "bob", "keyed", Some("k2")),
            dm("alice", "bob", "keyed retry", Some("k2")),
            dm("bob", "alice", "same key, other sender", Some("k1")),
            in_room("lobby", "alice", "k1 in a room", Some("k1")),
        ])
        .await
        .unwrap();
    assert_eq!(duplicate(&second[0]), &original);
    assert_eq!(stored(&second[1]).seq, 2);
    assert_eq!(stored(&second[2]).seq, 3);
    assert_eq!(duplicate(&second[3]), stored(&second[2]));
    assert_eq!(stored(&second[4]).seq, 4);
    assert_eq!(duplicate(&second[5]), &original);

    assert_eq!(texts_of(&store, "dm:alice:bob").await, ["hello", "no key", "keyed", "same key, other sender"]);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 0);
    let third = store.append(&[dm("bob", "alice", "next", None)]).await.unwrap();
    assert_eq!(stored(&third[0]).seq, 5);
}

#[tokio::test]
async fn a_reopened_store_keeps_its_data_and_continues_the_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("data").join("switchboard.db");
    let session = SessionRecord { token_hash: "abc123".into(), user: "alice".into(), created_at: 10, expires_at: 20 };
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
        assert!(store.create_user("alice", Some("$argon2id$hash"), 5).await.unwrap());
        store.create_session(&session).await.unwrap();
        assert!(store.create_room("lobby", "alice", 6).await.unwrap());
        assert!(store.add_member("lobby", "alice", 7).await.unwrap());
        store
            .append(&[
                in_room("lobby", "alice", "one", Some("k1")),
                in_room("lobby", "alice", "two", None),
                dm("alice", "bob", "hi", None),
            ])
            .await
            .unwrap();
        assert_eq!(store.set_read("alice", "room:lobby", 2).await.unwrap(), 2);
        store.close().await;
    }
    assert!(path.exists());

    let store = SqliteStore::open(&path, SqliteOptions { synchronous_full: true }).await.unwrap();
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("$argon2id$hash"));
    assert_eq!(user.created_at, 5);
    assert_eq!(store.session("abc123").await.unwrap(), Some(session));
    assert_eq!(store.members("lobby").await.unwrap(), ["alice"]);
    assert_eq!(texts_of(&store, "room:lobby").await, ["one", "two"]);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 2);

    let after = store
        .append(&[
            in_room("lobby", "alice", "three", None),
            in_room("lobby", "alice", "one retried", Some("k1")),
            dm("bob", "alice", "back", None),
        ])
        .await
        .unwrap();
    assert_eq!(stored(&after[0]).seq, 3);
    assert_eq!(duplicate(&after[1]).text, "one");
    assert_eq!(stored(&after[2]).seq, 2);
    assert_eq!(
        store.conversations_of("alice").await.unwrap(),
        [
            ConversationRecord { conv: "dm:alice:bob".into(), last_seq: 2, last_ts: 1_004, read_seq: 0 },
            ConversationRecord { conv: "room:lobby".into(), last_seq: 3, last_ts: 2_005, read_seq: 2 },
        ]
    );
    store.close().await;

    // Dropped without close, as after a crash of the process: committed appends survive.
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
        store.append(&[in_room("lobby", "alice", "four", None)]).await.unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    assert_eq!(texts_of(&store, "room:lobby").await, ["one", "two", "three", "four"]);
    store.close().await;
}

#[tokio::test]
async fn paging_stops_exactly_at_the_bounds() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let batch: Vec<NewMessage> = (1..=10).map(|n| in_room("lobby", "alice", &format!("m{n}"), None)).collect();
    store.append(&batch).await.unwrap();
    store.append(&[in_room("other", "alice", "elsewhere", None)]).await.unwrap();

    let conv = "room:lobby";
    assert_eq!(seqs(&store.messages_after(conv, 0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.messages_after(conv, 3, 3).await.unwrap()), [4, 5, 6]);
    assert_eq!(seqs(&store.messages_after(conv, 9, 5).await.unwrap()), [10]);
    assert!(store.messages_after(conv, 10, 5).await.unwrap().is_empty());
    assert!(store.messages_after(conv, 0, 0).await.unwrap().is_empty());
    assert!(store.messages_after(conv, u64::MAX, 5).await.unwrap().is_empty());

    assert_eq!(seqs(&store.messages_before(conv, None, 3).await.unwrap()), [8, 9, 10]);
    assert_eq!(seqs(&store.messages_before(conv, Some(8), 3).await.unwrap()), [5, 6, 7]);
    assert_eq!(seqs(&store.messages_before(conv, Some(3), 5).await.unwrap()), [1, 2]);
    assert!(store.messages_before(conv, Some(1), 5).await.unwrap().is_empty());
    assert_eq!(store.messages_before(conv, None, 100).await.unwrap().len(), 10);
    assert_eq!(seqs(&store.messages_before(conv, Some(u64::MAX), 2).await.unwrap()), [9, 10]);
    assert_eq!(texts_of(&store, "room:other").await, ["elsewhere"]);
    assert!(store.messages_before("room:empty", None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn conversations_of_lists_both_dm_participants_and_member_rooms() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    for room in ["lobby", "quiet"] {
        assert!(store.create_room(room, "alice", 1).await.unwrap());
    }
    store.add_member("lobby", "alice", 2).await.unwrap();
    store.add_member("lobby", "bob", 2).await.unwrap();
    store.add_member("quiet", "alice", 2).await.unwrap();
    store
        .append(&[
            dm("alice", "bob", "a", None),
            dm("bob", "alice", "bb", None),
            dm("carol", "alice", "ccc", None),
            in_room("lobby", "bob", "dddd", None),
            in_room("notjoined", "carol", "e", None),
        ])
        .await
        .unwrap();
    assert_eq!(store.set_read("alice", "dm:alice:bob", 2).await.unwrap(), 2);
    assert_eq!(store.set_read("bob", "room:lobby", 1).await.unwrap(), 1);

    let record =
        |conv: &str, last_seq, last_ts, read_seq| ConversationRecord { conv: conv.into(), last_seq, last_ts, read_seq };
    assert_eq!(
        store.conversations_of("alice").await.unwrap(),
        [
            record("dm:alice:bob", 2, 1_002, 2),
            record("dm:alice:carol", 1, 1_003, 0),
            record("room:lobby", 1, 2_004, 0),
            record("room:quiet", 0, 0, 0),
        ]
    );
    assert_eq!(
        store.conversations_of("bob").await.unwrap(),
        [record("dm:alice:bob", 2, 1_002, 0), record("room:lobby", 1, 2_004, 1)]
    );
    assert_eq!(store.conversations_of("carol").await.unwrap(), [record("dm:alice:carol", 1, 1_003, 0)]);
    assert!(store.conversations_of("dave").await.unwrap().is_empty());

    store.remove_member("lobby", "bob").await.unwrap();
    assert_eq!(store.conversations_of("bob").await.unwrap(), [record("dm:alice:bob", 2, 1_002, 0)]);
}

#[tokio::test]
async fn read_markers_never_go_backwards() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert_eq!(store.set_read("alice", "room:lobby", 5).await.unwrap(), 5);
    assert_eq!(store.set_read("alice", "room:lobby", 3).await.unwrap(), 5);
    assert_eq!(store.set_read("alice", "room:lobby", 0).await.unwrap(), 5);
    assert_eq!(store.set_read("alice", "room:lobby", 7).await.unwrap(), 7);
    assert_eq!(store.set_read("bob", "room:lobby", 1).await.unwrap(), 1);
    assert_eq!(store.set_read("alice", "dm:alice:bob", 2).await.unwrap(), 2);

    store.create_room("lobby", "alice", 1).await.unwrap();
    store.add_member("lobby", "alice", 1).await.unwrap();
    let conversations = store.conversations_of("alice").await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].read_seq, 7);
}

#[tokio::test]
async fn users_rooms_members_and_sessions() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert!(store.create_user("bob", Some("first"), 1).await.unwrap());
    assert!(!store.create_user("bob", Some("second"), 2).await.unwrap());
    assert_eq!(store.user("bob").await.unwrap().unwrap().password_hash.as_deref(), Some("first"));
    assert!(store.create_user("alice", None, 3).await.unwrap());
    assert!(store.create_user("carol", None, 3).await.unwrap());
    assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash, None);
    assert_eq!(store.user("nobody").await.unwrap(), None);
    assert_eq!(store.list_users(None, 10).await.unwrap(), ["alice", "bob", "carol"]);
    assert_eq!(store.list_users(None, 2).await.unwrap(), ["alice", "bob"]);
    assert_eq!(store.list_users(Some("bob"), 10).await.unwrap(), ["carol"]);
    assert_eq!(store.list_users(Some("b"), 1).await.unwrap(), ["bob"]);
    assert!(store.list_users(Some("carol"), 10).await.unwrap().is_empty());

    assert!(store.create_room("lobby", "alice", 1).await.unwrap());
    assert!(!store.create_room("lobby", "bob", 2).await.unwrap());
    assert!(store.create_room("attic", "bob", 2).await.unwrap());
    assert!(store.room_exists("lobby").await.unwrap());
    assert!(!store.room_exists("cellar").await.unwrap());

    assert!(store.add_member("lobby", "carol", 3).await.unwrap());
    assert!(store.add_member("lobby", "alice", 3).await.unwrap());
    assert!(!store.add_member("lobby", "alice", 4).await.unwrap());
    assert!(store.add_member("attic", "alice", 3).await.unwrap());
    assert_eq!(store.members("lobby").await.unwrap(), ["alice", "carol"]);
    assert_eq!(store.rooms_of("alice").await.unwrap(), ["attic", "lobby"]);
    assert_eq!(
        store.list_rooms().await.unwrap(),
        [RoomSummary { name: "attic".into(), members: 1 }, RoomSummary { name: "lobby".into(), members: 2 }]
    );
    assert!(store.remove_member("lobby", "alice").await.unwrap());
    assert!(!store.remove_member("lobby", "alice").await.unwrap());
    assert_eq!(store.members("lobby").await.unwrap(), ["carol"]);
    assert_eq!(store.rooms_of("alice").await.unwrap(), ["attic"]);

    let session = SessionRecord { token_hash: "t1".into(), user: "alice".into(), created_at: 1, expires_at: 2 };
    store.create_session(&session).await.unwrap();
    assert_eq!(store.session("t1").await.unwrap(), Some(session));
    store.delete_session("t1").await.unwrap();
    assert_eq!(store.session("t1").await.unwrap(), None);
    store.delete_session("t1").await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn a_failed_batch_stores_nothing_and_the_next_one_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    store.append(&[in_room("lobby", "alice", "one", None)]).await.unwrap();

    // Another process takes seq 2 behind the store's back, so its cached head is stale.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let other = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query(
        "INSERT INTO messages (conv, seq, id, sender, text, ts) VALUES ('room:lobby', 2, 'x', 'eve', 'sneaky', 1)",
    )
    .execute(&other)
    .await
    .unwrap();
    other.close().await;

    let failed =
        store.append(&[in_room("attic", "alice", "lost", Some("k")), in_room("lobby", "alice", "two", None)]).await;
    assert!(failed.is_err());
    assert!(store.messages_after("room:attic", 0, 10).await.unwrap().is_empty());

    let retried = store
        .append(&[in_room("attic", "alice", "lost", Some("k")), in_room("lobby", "alice", "two", None)])
        .await
        .unwrap();
    assert_eq!(stored(&retried[0]).seq, 1);
    assert_eq!(stored(&retried[1]).seq, 3);
    assert_eq!(texts_of(&store, "room:lobby").await, ["one", "sneaky", "two"]);
    store.close().await;
}

async fn append_concurrently(store: Arc<SqliteStore>) {
    const TASKS: usize = 8;
    const BATCHES: usize = 20;
    let convs = ["room:lobby", "room:attic", "dm:alice:bob"];
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for batch_number in 0..BATCHES {
                let batch: Vec<NewMessage> = (0..4)
                    .map(|n| {
                        let conv = convs[(task + batch_number + n) % convs.len()];
                        let text = format!("t{task}-b{batch_number}-n{n}");
                        match conv.strip_prefix("room:") {
                            Some(room) => in_room(room, "alice", &text, None),
                            None => dm("alice", "bob", &text, None),
                        }
                    })
                    .collect();
                for outcome in store.append(&batch).await.unwrap() {
                    let message = stored(&outcome);
                    seen.push((message.conv.clone(), message.seq));
                }
                store.last_seq(convs[task % convs.len()]).await.unwrap();
                store.messages_before(convs[batch_number % convs.len()], None, 5).await.unwrap();
            }
            seen
        }));
    }
    let mut by_conv: HashMap<String, Vec<u64>> = HashMap::new();
    for task in tasks {
        for (conv, seq) in task.await.unwrap() {
            by_conv.entry(conv).or_default().push(seq);
        }
    }
    let mut total = 0;
    for conv in convs {
        let mut assigned = by_conv.remove(conv).unwrap();
        assigned.sort_unstable();
        let count = assigned.len() as u64;
        total += count;
        assert_eq!(assigned, (1..=count).collect::<Vec<_>>(), "{conv}");
        assert_eq!(seqs(&store.messages_after(conv, 0, 10_000).await.unwrap()), assigned);
        assert_eq!(store.last_seq(conv).await.unwrap(), count);
    }
    assert_eq!(total, (TASKS * BATCHES * 4) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_on_a_file_keep_seqs_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("switchboard.db"), SqliteOptions::default()).await.unwrap();
    let store = Arc::new(store);
    append_concurrently(Arc::clone(&store)).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_in_memory_keep_seqs_gap_free() {
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    append_concurrently(Arc::clone(&store)).await;
    store.close().await;
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let one = SqliteStore::open_in_memory().await.unwrap();
    let two = SqliteStore::open_in_memory().await.unwrap();
    one.append(&[in_room("lobby", "alice", "hi", None)]).await.unwrap();
    assert!(one.create_user("alice", None, 1).await.unwrap());
    assert_eq!(one.last_seq("room:lobby").await.unwrap(), 1);
    assert_eq!(two.last_seq("room:lobby").await.unwrap(), 0);
    assert!(two.create_user("alice", None, 1).await.unwrap());
    assert!(two.messages_after("room:lobby", 0, 10).await.unwrap().is_empty());
}
