//! Writes the data of the migration fixtures (tests/fixtures/README.md) through the store API of
//! the build it is run with, so the database it leaves is what that release makes:
//!
//! `cargo run -p switchboard-store --example migration_fixture -- sqlite PATH` (a new file), or
//! `cargo run -p switchboard-store --example migration_fixture -- postgres URL` (an empty
//! database), then `pg_dump --no-owner --no-privileges` of it.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{EntryKind, NewMessage, PostgresStore, SessionRecord, SqliteStore, Store};

/// Alice's and Bob's passwords; Carol has none (she logs in by JWT or in open mode).
const PASSWORDS: [(&str, &str); 2] = [("alice", "alice-fixture-password"), ("bob", "bob-fixture-password")];
/// Alice's session token (only its SHA-256 is stored).
const TOKEN: &str = "fixture-session-token-of-alice";

fn message(conv: &str, index: usize, sender: &str, text: &str, key: Option<&str>) -> NewMessage {
    let (recipient, room) = match conv.strip_prefix("room:") {
        Some(room) => (None, Some(room.to_owned())),
        None => {
            let pair = conv.strip_prefix("dm:").expect("a dm").split_once(':').expect("two users");
            (Some(if pair.0 == sender { pair.1 } else { pair.0 }.to_owned()), None)
        }
    };
    NewMessage {
        conv: conv.to_owned(),
        id: format!("fixture-{index:02}"),
        sender: sender.to_owned(),
        recipient,
        room,
        text: text.to_owned(),
        ts: 1_700_000_000_000 + index as i64 * 60_000,
        idempotency_key: key.map(str::to_owned),
        kind: EntryKind::Message,
        target: None,
    }
}

async fn fill(store: &dyn Store) {
    for (user, password) in PASSWORDS {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default().hash_password(password.as_bytes(), &salt).unwrap().to_string();
        assert!(store.create_user(user, Some(&hash), 1_699_999_000_000).await.unwrap());
    }
    assert!(store.create_user("carol", None, 1_699_999_100_000).await.unwrap());
    let token_hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let session = SessionRecord {
        token_hash,
        user: "alice".into(),
        created_at: 1_699_999_500_000,
        expires_at: 4_102_444_800_000,
    };
    store.create_session(&session).await.unwrap();
    for (room, creator) in [("lobby", "alice"), ("attic", "bob")] {
        assert!(store.create_room(room, creator, 1_699_999_600_000).await.unwrap());
    }
    for (room, user) in [("lobby", "alice"), ("lobby", "bob"), ("lobby", "carol"), ("attic", "bob")] {
        assert!(store.add_member(room, user, 1_699_999_700_000).await.unwrap());
    }
    let script: [(&str, &str, &str, Option<&str>); 9] = [
        ("dm:alice:bob", "alice", "hi bob", Some("alice-key-1")),
        ("room:lobby", "bob", "morning all", None),
        ("dm:alice:bob", "bob", "hi alice", None),
        ("room:lobby", "carol", "hello from carol", None),
        ("dm:bob:carol", "carol", "psst bob", None),
        ("room:lobby", "alice", "lunch at noon?", Some("alice-key-2")),
        ("dm:alice:bob", "alice", "see you at 8", None),
        ("room:lobby", "bob", "yes", None),
        ("dm:alice:alice", "alice", "note to self", None),
    ];
    // One batch per message, as a quiet server writes them.
    for (index, (conv, sender, text, key)) in script.into_iter().enumerate() {
        store.append(vec![message(conv, index, sender, text, key)]).await.unwrap();
    }
    store.set_read("bob", "dm:alice:bob", 2).await.unwrap();
    store.set_delivered("bob", "dm:alice:bob", 3).await.unwrap();
    store.set_read("carol", "room:lobby", 3).await.unwrap();
    store.set_delivered("bob", "dm:bob:carol", 1).await.unwrap();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["sqlite", path] => {
            let path = std::path::Path::new(path);
            assert!(!path.exists(), "{} exists: the fixture is made in a new file", path.display());
            let store = SqliteStore::open(path, SqliteOptions::default()).await.unwrap();
            fill(&store).await;
            store.close().await;
        }
        ["postgres", url] => {
            let store = PostgresStore::connect(url).await.unwrap();
            fill(&store).await;
            store.close().await;
        }
        _ => {
            eprintln!("usage: migration_fixture sqlite PATH | postgres URL");
            std::process::exit(2);
        }
    }
}
