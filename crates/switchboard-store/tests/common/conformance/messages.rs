//! The conformance checks of the message log: gap-free seqs, idempotency keys, paging, what a
//! reopened store keeps, concurrent appends, and the store's health.

use switchboard_store::{ConversationRecord, SessionRecord};

use crate::common::*;

pub async fn seqs_are_gap_free_per_conversation_across_batches(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let first = store
        .append(vec![
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
        .append(vec![
            in_room("lobby", "carol", "r3", None),
            dm("alice", "bob", "m3", None),
            in_room("lobby", "alice", "r4", None),
        ])
        .await
        .unwrap();
    assert_eq!(second.iter().map(|outcome| stored(outcome).seq).collect::<Vec<_>>(), [3, 3, 4]);
    assert!(store.append(vec![]).await.unwrap().is_empty());

    assert_eq!(seqs(&store.messages_after("dm:alice:bob", 0, 100).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.messages_after("room:lobby", 0, 100).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(texts_of(&*store, "room:lobby").await, ["r1", "r2", "r3", "r4"]);
    assert_eq!(store.last_seq("dm:alice:bob").await.unwrap(), 3);
    assert_eq!(store.last_seq("dm:alice:carol").await.unwrap(), 1);
    assert_eq!(store.last_seq("room:nowhere").await.unwrap(), 0);

    let message = &store.messages_after("dm:alice:bob", 1, 1).await.unwrap()[0];
    assert_eq!(message, stored(&first[2]));
    assert_eq!(message.sender, "bob");
    assert_eq!(message.recipient.as_deref(), Some("alice"));
    assert_eq!(message.room, None);
    let message = &store.messages_after("room:lobby", 3, 1).await.unwrap()[0];
    assert_eq!(message, stored(&second[2]));
    assert_eq!(message.room.as_deref(), Some("lobby"));
    assert_eq!(message.recipient, None);
    store.close().await;
}

pub async fn duplicate_idempotency_key_returns_the_original_and_consumes_no_seq(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let first = store.append(vec![dm("alice", "bob", "hello", Some("k1"))]).await.unwrap();
    let original = stored(&first[0]).clone();

    let second = store
        .append(vec![
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

    assert_eq!(texts_of(&*store, "dm:alice:bob").await, ["hello", "no key", "keyed", "same key, other sender"]);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 0);
    let third = store.append(vec![dm("bob", "alice", "next", None)]).await.unwrap();
    assert_eq!(stored(&third[0]).seq, 5);

    // A batch of nothing but duplicates, one of them of a message earlier in the batch.
    let fourth = store
        .append(vec![
            dm("alice", "bob", "k2 again", Some("k2")),
            in_room("lobby", "carol", "new key", Some("k3")),
            in_room("lobby", "carol", "new key again", Some("k3")),
            dm("bob", "alice", "k1 again", Some("k1")),
        ])
        .await
        .unwrap();
    assert_eq!(duplicate(&fourth[0]), stored(&second[2]));
    assert_eq!(stored(&fourth[1]).seq, 1);
    assert_eq!(duplicate(&fourth[2]), stored(&fourth[1]));
    assert_eq!(duplicate(&fourth[3]), stored(&second[4]));
    let fifth = store.append(vec![dm("alice", "bob", "k2 once more", Some("k2"))]).await.unwrap();
    assert_eq!(duplicate(&fifth[0]), stored(&second[2]));
    assert_eq!(store.last_seq("dm:alice:bob").await.unwrap(), 5);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 1);
    store.close().await;
}

pub async fn a_reopened_store_keeps_its_data_and_continues_the_seqs(fixture: &dyn Fixture) {
    if !fixture.persistent() {
        return;
    }
    let session = SessionRecord { token_hash: "abc123".into(), user: "alice".into(), created_at: 10, expires_at: 20 };
    {
        let store = fixture.open().await;
        assert!(store.create_user("alice", Some("$argon2id$hash"), 5).await.unwrap());
        store.create_session(&session).await.unwrap();
        assert!(store.create_room("lobby", "alice", 6).await.unwrap());
        assert!(store.add_member("lobby", "alice", 7).await.unwrap());
        store
            .append(vec![
                in_room("lobby", "alice", "one", Some("k1")),
                in_room("lobby", "alice", "two", None),
                dm("alice", "bob", "hi", None),
            ])
            .await
            .unwrap();
        assert_eq!(store.set_read("alice", "room:lobby", 2).await.unwrap(), 2);
        store.close().await;
    }

    let store = fixture.open().await;
    let user = store.user("alice").await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("$argon2id$hash"));
    assert_eq!(user.created_at, 5);
    assert_eq!(store.session("abc123").await.unwrap(), Some(session));
    assert_eq!(store.members("lobby", None, 10).await.unwrap().items, ["alice"]);
    assert_eq!(texts_of(&*store, "room:lobby").await, ["one", "two"]);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 2);

    let after = store
        .append(vec![
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
            ConversationRecord {
                conv: "dm:alice:bob".into(),
                last_seq: 2,
                last_ts: 1_004,
                read_seq: 1,
                peer_read_seq: 2,
                peer_delivered_seq: 2,
                unread: 1
            },
            ConversationRecord {
                conv: "room:lobby".into(),
                last_seq: 3,
                last_ts: 2_005,
                read_seq: 3,
                peer_read_seq: 0,
                peer_delivered_seq: 0,
                unread: 0
            },
        ]
    );
    store.close().await;

    // Dropped without close, as after a crash of the process: committed appends survive.
    {
        let store = fixture.open().await;
        store.append(vec![in_room("lobby", "alice", "four", None)]).await.unwrap();
    }
    let store = fixture.open().await;
    assert_eq!(texts_of(&*store, "room:lobby").await, ["one", "two", "three", "four"]);
    assert_eq!(stored(&store.append(vec![in_room("lobby", "bob", "five", None)]).await.unwrap()[0]).seq, 5);
    store.close().await;
}

pub async fn paging_stops_exactly_at_the_bounds(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let batch: Vec<NewMessage> = (1..=10).map(|n| in_room("lobby", "alice", &format!("m{n}"), None)).collect();
    store.append(batch).await.unwrap();
    store.append(vec![in_room("other", "alice", "elsewhere", None)]).await.unwrap();

    let conv = "room:lobby";
    assert_eq!(seqs(&store.messages_after(conv, 0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.messages_after(conv, 3, 3).await.unwrap()), [4, 5, 6]);
    assert_eq!(seqs(&store.messages_after(conv, 9, 5).await.unwrap()), [10]);
    assert!(store.messages_after(conv, 10, 5).await.unwrap().is_empty());
    assert!(store.messages_after(conv, 0, 0).await.unwrap().is_empty());
    assert!(store.messages_after(conv, u64::MAX, 5).await.unwrap().is_empty());
    assert_eq!(store.messages_after(conv, 0, u32::MAX).await.unwrap().len(), 10);

    assert_eq!(seqs(&store.messages_before(conv, None, 3).await.unwrap()), [8, 9, 10]);
    assert_eq!(seqs(&store.messages_before(conv, Some(8), 3).await.unwrap()), [5, 6, 7]);
    assert_eq!(seqs(&store.messages_before(conv, Some(3), 5).await.unwrap()), [1, 2]);
    assert!(store.messages_before(conv, Some(1), 5).await.unwrap().is_empty());
    assert!(store.messages_before(conv, Some(0), 5).await.unwrap().is_empty());
    assert!(store.messages_before(conv, None, 0).await.unwrap().is_empty());
    assert_eq!(store.messages_before(conv, None, 100).await.unwrap().len(), 10);
    assert_eq!(seqs(&store.messages_before(conv, Some(u64::MAX), 2).await.unwrap()), [9, 10]);
    assert_eq!(texts_of(&*store, "room:other").await, ["elsewhere"]);
    assert!(store.messages_before("room:empty", None, 10).await.unwrap().is_empty());
    store.close().await;
}

pub async fn a_nul_character_does_not_fail_the_batch(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    // Only the text and the key come from clients; the core makes the id.
    let mut nul = in_room("lobby", "mallory", "nul \0 inside", Some("key \0"));
    nul.id = "id-nul".into();
    let outcomes = store
        .append(vec![in_room("lobby", "alice", "before", None), nul, in_room("lobby", "bob", "after", None)])
        .await
        .unwrap();
    assert_eq!(outcomes.iter().map(|outcome| stored(outcome).seq).collect::<Vec<_>>(), [1, 2, 3]);
    let texts = texts_of(&*store, "room:lobby").await;
    assert_eq!(texts[0], "before");
    assert!(texts[1].starts_with("nul ") && texts[1].ends_with(" inside"), "{:?}", texts[1]);
    assert_eq!(texts[2], "after");
    assert_eq!(stored(&outcomes[1]).text, texts[1]);
    // Stored exactly by SQLite, as U+FFFD by PostgreSQL.
    assert!(texts[1] == "nul \0 inside" || texts[1] == "nul \u{FFFD} inside", "{:?}", texts[1]);

    let again = store.append(vec![in_room("lobby", "mallory", "retried", Some("key \0"))]).await.unwrap();
    assert_eq!(duplicate(&again[0]), stored(&outcomes[1]));
    store.close().await;
}

pub async fn concurrent_appends_keep_seqs_gap_free(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    append_concurrently(&[Arc::clone(&store)], 8, 20).await;
    store.close().await;
}

pub async fn health_answers_while_open(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    store.health().await.unwrap();
    store.close().await;
}
