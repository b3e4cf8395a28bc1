//! The SQLite store: the conformance suite in memory and on a file, and what only SQLite does.

#[macro_use]
mod common;

use common::{dm, in_room, stored, texts_of};
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

/// A sender's read marker moves with their message but is written later (own_markers.rs): the
/// store reports it at once, and closing writes it into the file.
#[tokio::test]
async fn a_senders_read_marker_is_reported_at_once_and_written_by_closing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    store.append(vec![dm("bob", "alice", "one", None), dm("alice", "bob", "two", None)]).await.unwrap();
    let listed = store.conversations_of("alice").await.unwrap();
    assert_eq!((listed[0].read_seq, listed[0].peer_read_seq, listed[0].peer_delivered_seq), (2, 1, 1));
    assert_eq!(listed[0].unread, 0, "her own message is not unread");
    let listed = store.conversations_of("bob").await.unwrap();
    assert_eq!((listed[0].read_seq, listed[0].peer_read_seq, listed[0].peer_delivered_seq), (1, 2, 2));
    assert_eq!(listed[0].unread, 1);
    // Reading back to 1 keeps the marker at the sender's own message.
    assert_eq!(store.set_read("alice", "dm:alice:bob", 1).await.unwrap(), 2);
    store.close().await;

    let file = rusqlite::Connection::open(&path).unwrap();
    let mut markers: Vec<(String, i64, i64)> = file
        .prepare("SELECT user, seq, delivered_seq FROM read_markers WHERE conv = 'dm:alice:bob' ORDER BY user")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    markers.sort();
    assert_eq!(markers, [("alice".to_owned(), 2, 2), ("bob".to_owned(), 1, 1)]);
}

/// The WAL index lives in the server's memory (no `-shm` file, no lock calls per commit), so
/// the database belongs to this process: another one is refused while the store is open.
#[tokio::test]
async fn the_database_is_held_by_its_process_alone_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    store.append(vec![in_room("lobby", "alice", "one", None)]).await.unwrap();
    assert_eq!(texts_of(&store, "room:lobby").await, ["one"]);
    assert!(dir.path().join("switchboard.db-wal").exists());
    assert!(!dir.path().join("switchboard.db-shm").exists(), "the WAL index went to a shared file");

    let read_from_another_process = |path: &std::path::Path| {
        std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1], timeout=0.2).execute('SELECT text FROM messages').fetchall())")
            .arg(path)
            .output()
            .expect("python3 runs")
    };
    let refused = read_from_another_process(&path);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("locked"), "{refused:?}");

    store.close().await;
    drop(store);
    let after = read_from_another_process(&path);
    assert!(after.status.success(), "{after:?}");
    assert_eq!(String::from_utf8_lossy(&after.stdout).trim(), "[('one',)]");
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

/// Checkpoints run beside the writer; the WAL must still start over instead of growing with
/// every write, as it would if no checkpoint ever caught up with the commits.
#[tokio::test]
async fn a_steady_stream_of_writes_keeps_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    let page_of_text = "x".repeat(3_500);
    // 48,000 messages of nearly a page each in 400 rooms: about 200 MB of WAL frames in all.
    for batch in 0..480 {
        let messages = (0..100)
            .map(|index| {
                let mut message = in_room(&format!("r{}", index * 4 + batch % 4), "alice", &page_of_text, None);
                message.id = format!("m-{batch}-{index}");
                message
            })
            .collect();
        store.append(messages).await.unwrap();
    }
    let wal_bytes = std::fs::metadata(dir.path().join("switchboard.db-wal")).unwrap().len();
    // The writer checkpoints itself at 16,384 frames (64 MB of pages), and a restarted WAL keeps
    // its file up to 84 MB (so it is rewritten in place, not regrown); a batch may overshoot
    // that. Far below the 200 MB written: the WAL started over.
    assert!(wal_bytes < 90 << 20, "the wal grew to {wal_bytes} bytes");
    assert_eq!(store.messages_after("room:r0", 0, 1000).await.unwrap().len(), 120);
    store.close().await;
    let wal_after_close = std::fs::metadata(dir.path().join("switchboard.db-wal")).map_or(0, |meta| meta.len());
    assert_eq!(wal_after_close, 0, "close folds the wal into the database");
}

/// A database of the release before read state (schema version 1: no delivered markers, heads
/// kept in `conversations`) opens, is upgraded in place, and keeps everything.
#[tokio::test]
async fn a_database_of_the_previous_schema_is_upgraded_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    common::fill_before_upgrade(&store).await;
    store.close().await;
    // Back to version 1 as that release left it: what migration 2 adds is not there.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "ALTER TABLE read_markers DROP COLUMN delivered_seq; \
         ALTER TABLE conversations ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0; \
         ALTER TABLE conversations ADD COLUMN last_ts INTEGER NOT NULL DEFAULT 0; \
         ALTER TABLE messages DROP COLUMN kind; ALTER TABLE messages DROP COLUMN target; \
         ALTER TABLE messages DROP COLUMN edited_at; ALTER TABLE messages DROP COLUMN deleted; \
         ALTER TABLE messages DROP COLUMN reactions; ALTER TABLE messages DROP COLUMN changed_seq; \
         ALTER TABLE rooms DROP COLUMN private; \
         DROP TABLE room_moderators; DROP TABLE room_mutes; DROP TABLE room_bans; DROP TABLE blocks; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(old);

    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    common::check_after_upgrade(&store).await;
    store.close().await;
    let upgraded = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = upgraded.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 5);
}
