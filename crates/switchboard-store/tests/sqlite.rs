//! The SQLite store: the conformance suite in memory and on a file, and what only SQLite does.

#[macro_use]
mod common;

use common::{in_room, stored, texts_of};
use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{SqliteStore, Store};

mod in_memory {
    conformance_suite!(crate::common::SqliteMemory);
}

mod on_a_file {
    conformance_suite!(crate::common::SqliteFile::new());
}

#[tokio::test]
async fn a_file_opened_with_synchronous_full_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions { synchronous_full: true }).await.unwrap();
    store.append(vec![in_room("lobby", "alice", "one", None)]).await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&path, SqliteOptions { synchronous_full: true }).await.unwrap();
    assert_eq!(texts_of(&store, "room:lobby").await, ["one"]);
    store.close().await;
}

#[tokio::test]
async fn a_failed_batch_stores_nothing_and_the_next_one_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    store.append(vec![in_room("lobby", "alice", "one", None)]).await.unwrap();

    // Another process takes seq 2 behind the store's back, so its cached head is stale.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute(
            "INSERT INTO messages (conv, seq, id, sender, text, ts) VALUES ('room:lobby', 2, 'x', 'eve', 'sneaky', 1)",
            [],
        )
        .unwrap();
    drop(other);

    let failed =
        store.append(vec![in_room("attic", "alice", "lost", Some("k")), in_room("lobby", "alice", "two", None)]).await;
    assert!(failed.is_err());
    assert!(store.messages_after("room:attic", 0, 10).await.unwrap().is_empty());

    let retried = store
        .append(vec![in_room("attic", "alice", "lost", Some("k")), in_room("lobby", "alice", "two", None)])
        .await
        .unwrap();
    assert_eq!(stored(&retried[0]).seq, 1);
    assert_eq!(stored(&retried[1]).seq, 3);
    assert_eq!(texts_of(&store, "room:lobby").await, ["one", "sneaky", "two"]);
    store.close().await;
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let one = SqliteStore::open_in_memory().await.unwrap();
    let two = SqliteStore::open_in_memory().await.unwrap();
    one.append(vec![in_room("lobby", "alice", "hi", None)]).await.unwrap();
    assert!(one.create_user("alice", None, 1).await.unwrap());
    assert_eq!(one.last_seq("room:lobby").await.unwrap(), 1);
    assert_eq!(two.last_seq("room:lobby").await.unwrap(), 0);
    assert!(two.create_user("alice", None, 1).await.unwrap());
    assert!(two.messages_after("room:lobby", 0, 10).await.unwrap().is_empty());
}
