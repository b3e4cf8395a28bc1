//! Databases made by an earlier release (tests/fixtures, see its README) open with this build,
//! which runs the later migrations, and everything in them is found through the store API, which
//! is what keeps these checks valid when more migrations land.

// The conformance suite's macro and its re-exports are not used here.
#[allow(unused_macros, unused_imports)]
mod common;

use std::process::Command;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{AppendOutcome, EntryKind, NewMessage, SqliteStore, Store, StoredMessage};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn summary(messages: &[StoredMessage]) -> Vec<(u64, String, String, i64, Option<String>)> {
    messages.iter().map(|m| (m.seq, m.sender.clone(), m.text.clone(), m.ts, m.key.clone())).collect()
}

fn at(index: i64) -> i64 {
    1_700_000_000_000 + index * 60_000
}

fn row(
    seq: u64,
    sender: &str,
    text: &str,
    index: i64,
    key: Option<&str>,
) -> (u64, String, String, i64, Option<String>) {
    (seq, sender.into(), text.into(), at(index), key.map(str::to_owned))
}

/// Everything the fixture generator wrote, then the store carrying on after it.
async fn finds_everything(store: &dyn Store) {
    for (user, password) in [("alice", "alice-fixture-password"), ("bob", "bob-fixture-password")] {
        let record = store.user(user).await.unwrap().unwrap_or_else(|| panic!("{user} is gone"));
        let stored = record.password_hash.expect("a password hash");
        let hash = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(), "{user}'s password");
        assert!(Argon2::default().verify_password(b"wrong", &hash).is_err());
    }
    let carol = store.user("carol").await.unwrap().expect("carol");
    assert_eq!((carol.password_hash, carol.created_at), (None, 1_699_999_100_000));
    assert_eq!(store.list_users("", None, 10).await.unwrap(), ["alice", "bob", "carol"]);

    let token_hash = hex::encode(Sha256::digest(b"fixture-session-token-of-alice"));
    let session = store.session(&token_hash).await.unwrap().expect("alice's session");
    assert_eq!((session.user.as_str(), session.expires_at), ("alice", 4_102_444_800_000));

    let rooms = store.list_rooms("carol", None, 10).await.unwrap();
    let rooms: Vec<(String, u64, bool)> = rooms.items.into_iter().map(|r| (r.name, r.members, r.joined)).collect();
    assert_eq!(rooms, [("attic".into(), 1, false), ("lobby".into(), 3, true)]);
    assert_eq!(store.members("lobby", None, 10).await.unwrap().items, ["alice", "bob", "carol"]);
    assert_eq!(store.rooms_of("bob").await.unwrap(), ["attic", "lobby"]);

    let dm = store.messages_after("dm:alice:bob", 0, 100).await.unwrap();
    assert_eq!(
        summary(&dm),
        [
            row(1, "alice", "hi bob", 0, Some("alice-key-1")),
            row(2, "bob", "hi alice", 2, None),
            row(3, "alice", "see you at 8", 6, None)
        ]
    );
    assert_eq!((dm[0].recipient.as_deref(), dm[0].id.as_str()), (Some("bob"), "fixture-00"));
    let lobby = store.messages_before("room:lobby", None, 100).await.unwrap();
    assert_eq!(
        summary(&lobby),
        [
            row(1, "bob", "morning all", 1, None),
            row(2, "carol", "hello from carol", 3, None),
            row(3, "alice", "lunch at noon?", 5, Some("alice-key-2")),
            row(4, "bob", "yes", 7, None)
        ]
    );
    assert_eq!(lobby[0].room.as_deref(), Some("lobby"));
    assert_eq!(
        summary(&store.messages_after("dm:bob:carol", 0, 10).await.unwrap()),
        [row(1, "carol", "psst bob", 4, None)]
    );
    assert_eq!(store.last_seq("dm:alice:alice").await.unwrap(), 1);
    assert_eq!(store.last_seq("room:attic").await.unwrap(), 0);

    // Read and delivered markers, each user's and their peers'.
    let markers = |records: Vec<switchboard_store::ConversationRecord>| -> Vec<(String, u64, i64, u64, u64, u64)> {
        records
            .into_iter()
            .map(|r| (r.conv, r.last_seq, r.last_ts, r.read_seq, r.peer_read_seq, r.peer_delivered_seq))
            .collect()
    };
    assert_eq!(
        markers(store.conversations_of("bob").await.unwrap()),
        [
            ("dm:alice:bob".into(), 3, at(6), 2, 3, 3),
            ("dm:bob:carol".into(), 1, at(4), 0, 1, 1),
            ("room:attic".into(), 0, 0, 0, 0, 0),
            ("room:lobby".into(), 4, at(7), 4, 0, 0),
        ]
    );
    let alice = store.conversations_by_activity("alice", None, 10).await.unwrap();
    assert_eq!(
        markers(alice.items),
        [
            ("dm:alice:alice".into(), 1, at(8), 1, 1, 1),
            ("room:lobby".into(), 4, at(7), 3, 0, 0),
            ("dm:alice:bob".into(), 3, at(6), 3, 2, 3),
        ]
    );
    let sync = store.sync_read("carol", &Default::default(), 10).await.unwrap();
    let sync: Vec<(String, u64, usize)> =
        sync.into_iter().map(|s| (s.conversation.conv, s.from, s.messages.len())).collect();
    assert_eq!(sync, [("dm:bob:carol".into(), 1, 0), ("room:lobby".into(), 3, 1)]);

    // Carrying on: a retried key finds its original, new messages take the next seqs, markers move.
    let mut retried = NewMessage {
        conv: "room:lobby".into(),
        id: "after-1".into(),
        sender: "alice".into(),
        recipient: None,
        room: Some("lobby".into()),
        text: "lunch at noon? (again)".into(),
        ts: at(20),
        idempotency_key: Some("alice-key-2".into()),
        kind: EntryKind::Message,
        target: None,
    };
    let outcomes = store.append(vec![retried.clone()]).await.unwrap();
    assert!(
        matches!(&outcomes[0], AppendOutcome::Duplicate(original) if original.seq == 3 && original.text == "lunch at noon?")
    );
    retried.idempotency_key = None;
    let new_dm = NewMessage {
        conv: "dm:alice:bob".into(),
        id: "after-2".into(),
        sender: "bob".into(),
        recipient: Some("alice".into()),
        room: None,
        text: "on my way".into(),
        ts: at(21),
        idempotency_key: Some("bob-key-1".into()),
        kind: EntryKind::Message,
        target: None,
    };
    let outcomes = store.append(vec![retried, new_dm]).await.unwrap();
    let seqs: Vec<(String, u64)> =
        outcomes.iter().map(|o| (o.message().unwrap().conv.clone(), o.message().unwrap().seq)).collect();
    assert_eq!(seqs, [("room:lobby".into(), 5), ("dm:alice:bob".into(), 4)]);
    assert_eq!(store.set_read("alice", "dm:alice:bob", 4).await.unwrap(), 4);
    let top = store.conversations_by_activity("alice", None, 1).await.unwrap();
    assert_eq!((top.items[0].conv.as_str(), top.items[0].last_seq, top.total), ("dm:alice:bob", 4, 3));
}

/// The SQLite fixture, copied: a test never changes the checked-in file.
#[tokio::test]
async fn a_sqlite_database_of_the_previous_release_opens_with_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    std::fs::copy(format!("{FIXTURES}/release-0003.sqlite"), &path).unwrap();
    let old = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = old.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 3, "the fixture is at the schema it was made with");
    drop(old);

    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    finds_everything(&store).await;
    store.close().await;
    // Once more after a restart: what the upgraded store wrote is there too.
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 5);
    assert_eq!(store.messages_after("dm:alice:bob", 3, 10).await.unwrap()[0].text, "on my way");
    store.close().await;
}

/// The PostgreSQL dump (migrations 0001 and 0002 applied) loaded with psql into a fresh
/// database, then opened by the store, which runs the later migrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_of_the_previous_release_opens_with_everything_in_it() {
    let database = common::TestDatabase::create().await;
    let loaded = Command::new("psql")
        .args(["--quiet", "--no-psqlrc", "--set", "ON_ERROR_STOP=1", "--dbname", &database.url(), "--file"])
        .arg(format!("{FIXTURES}/release-0002.postgres.sql"))
        .output()
        .expect("psql runs");
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));

    let store = switchboard_store::PostgresStore::connect(&database.url()).await.unwrap();
    finds_everything(&store).await;
    store.close().await;
}
