//! What the stores share in tests: message builders, assertions, a throwaway PostgreSQL
//! database, and the conformance suite every `Store` must pass, which `conformance_suite!` turns
//! into one `#[tokio::test]` per check for a given fixture.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Connection, Executor, PgConnection};
use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{
    AppendOutcome, EntryKind, NewMessage, PostgresStore, Rejection, SqliteStore, Store, StoredMessage,
};

pub mod activity;

pub fn dm(sender: &str, recipient: &str, text: &str, key: Option<&str>) -> NewMessage {
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
        kind: EntryKind::Message,
        target: None,
    }
}

pub fn in_room(room: &str, sender: &str, text: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        conv: format!("room:{room}"),
        id: format!("id-{room}-{sender}-{text}"),
        sender: sender.into(),
        recipient: None,
        room: Some(room.into()),
        text: text.into(),
        ts: 2_000 + text.len() as i64,
        idempotency_key: key.map(str::to_owned),
        kind: EntryKind::Message,
        target: None,
    }
}

/// `base` as a change of `kind` to the entry `target` (its text is the new text or the emoji).
pub fn change(base: NewMessage, kind: EntryKind, target: u64) -> NewMessage {
    NewMessage { kind, target: Some(target), id: format!("{}-{}-{target}", base.id, kind.as_str()), ..base }
}

/// `base` as a reply to the entry `target`.
pub fn reply_to(base: NewMessage, target: u64) -> NewMessage {
    NewMessage { target: Some(target), ..base }
}

pub fn rejected(outcome: &AppendOutcome) -> Rejection {
    match outcome {
        AppendOutcome::Rejected(rejection) => *rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

pub fn stored(outcome: &AppendOutcome) -> &StoredMessage {
    match outcome {
        AppendOutcome::Stored(message) => message,
        AppendOutcome::Duplicate(message) => {
            panic!("expected stored, got duplicate of {message:?}")
        }
        AppendOutcome::Rejected(rejection) => panic!("expected stored, got {rejection:?}"),
    }
}

pub fn duplicate(outcome: &AppendOutcome) -> &StoredMessage {
    match outcome {
        AppendOutcome::Duplicate(message) => message,
        AppendOutcome::Stored(message) => panic!("expected duplicate, got stored {message:?}"),
        AppendOutcome::Rejected(rejection) => panic!("expected duplicate, got {rejection:?}"),
    }
}

pub fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|message| message.seq).collect()
}

pub async fn texts_of(store: &dyn Store, conv: &str) -> Vec<String> {
    let messages = store.messages_after(conv, 0, 1_000).await.unwrap();
    messages.into_iter().map(|message| message.text).collect()
}

/// Where a conformance check gets its stores.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A new store; on a persistent fixture every store opened sees the same data.
    async fn open(&self) -> Arc<dyn Store>;
    /// Whether a store opened later sees what an earlier one wrote (false in memory).
    fn persistent(&self) -> bool;
}

pub struct SqliteMemory;

#[async_trait]
impl Fixture for SqliteMemory {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_in_memory().await.unwrap())
    }

    fn persistent(&self) -> bool {
        false
    }
}

pub struct SqliteFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new() -> SqliteFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("data").join("switchboard.db");
        SqliteFile { _dir: dir, path }
    }
}

#[async_trait]
impl Fixture for SqliteFile {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path, SqliteOptions::default()).await.unwrap())
    }

    fn persistent(&self) -> bool {
        true
    }
}

pub struct Postgres {
    pub database: TestDatabase,
}

impl Postgres {
    pub async fn new() -> Postgres {
        Postgres { database: TestDatabase::create().await }
    }

    pub async fn connect(&self) -> PostgresStore {
        PostgresStore::connect(&self.database.url()).await.unwrap()
    }
}

#[async_trait]
impl Fixture for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.connect().await)
    }

    fn persistent(&self) -> bool {
        true
    }
}

/// A database of the test's own on the machine's PostgreSQL (trust auth), dropped with this
/// value, even when the test panics. `SWITCHBOARD_TEST_POSTGRES` overrides the server URL
/// (without a database name; default `postgres://postgres@127.0.0.1:5432`).
pub struct TestDatabase {
    pub name: String,
    server: String,
}

impl TestDatabase {
    /// A name for a database that does not exist yet (dropped at the end all the same, if
    /// something made it meanwhile).
    pub fn unborn() -> TestDatabase {
        TestDatabase { name: unique_name(), server: test_server() }
    }

    pub async fn create() -> TestDatabase {
        let server = test_server();
        let name = unique_name();
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL for tests (SWITCHBOARD_TEST_POSTGRES): {error}"));
        // An ICU locale sorts '_', '-' and '.' apart from byte order: a query that does not ask
        // for the "C" collation lists names in another order than SQLite, and a check notices.
        // template0, as a template somebody is connected to cannot be copied.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        );
        if admin.execute(icu.as_str()).await.is_err() {
            admin.execute(format!("CREATE DATABASE {name} TEMPLATE template0").as_str()).await.unwrap();
        }
        admin.close().await.unwrap();
        TestDatabase { name, server }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

fn test_server() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: a thread of its own runs the query.
        let admin = format!("{}/postgres", self.server);
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin).await?;
                admin.execute(sql.as_str()).await?;
                admin.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("cannot drop test database {}: {error}", self.name),
            Err(_) => eprintln!("cannot drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

/// Unique across the tests of a process (the counter) and across processes (pid and a random
/// part, as pids get reused).
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!(
        "switchboard_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hasher.finish() % 1_000_000_000
    )
}

/// Appends from `tasks` tasks spread over `stores` (one store, or several "nodes" on one
/// database), batches of 4 across three conversations in rotating orders, with reads between
/// them; then checks every conversation got exactly 1..=n.
pub async fn append_concurrently(stores: &[Arc<dyn Store>], tasks: usize, batches: usize) {
    let convs = ["room:lobby", "room:attic", "dm:alice:bob"];
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(&stores[task % stores.len()]);
        handles.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for batch_number in 0..batches {
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
                for outcome in store.append(batch).await.unwrap() {
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
    for handle in handles {
        for (conv, seq) in handle.await.unwrap() {
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
        for store in stores {
            assert_eq!(seqs(&store.messages_after(conv, 0, 10_000).await.unwrap()), assigned);
            assert_eq!(store.last_seq(conv).await.unwrap(), count);
        }
    }
    assert_eq!(total, (tasks * batches * 4) as u64);
}

/// One `#[tokio::test]` per conformance check, each on a fresh fixture made by `$fixture`.
macro_rules! conformance_suite {
    ($fixture:expr) => {
        conformance_suite!(@tests $fixture;
            seqs_are_gap_free_per_conversation_across_batches,
            duplicate_idempotency_key_returns_the_original_and_consumes_no_seq,
            a_reopened_store_keeps_its_data_and_continues_the_seqs,
            paging_stops_exactly_at_the_bounds,
            conversations_of_lists_both_dm_participants_and_member_rooms,
            read_markers_never_go_backwards,
            users_rooms_members_and_sessions,
            names_are_listed_in_byte_order,
            a_nul_character_does_not_fail_the_batch,
            concurrent_appends_keep_seqs_gap_free,
            health_answers_while_open,
            open_session_creates_the_user_once_stores_the_token_and_lists_rooms,
            sync_read_starts_after_the_cursor_else_the_read_marker,
            listings_page_from_their_cursor_each_entry_once,
            the_peers_read_and_delivered_markers_are_listed_and_synced,
            edits_deletions_and_reactions_are_entries_that_update_their_target,
            a_reply_carries_a_current_quote_and_needs_a_live_target,
            reactions_are_one_per_user_and_bounded_per_message,
            changes_are_not_unread_and_not_the_last_message,
            unread_counts_look_at_a_bounded_span_of_entries,
            conversations_by_activity_page_newest_first_while_messages_arrive,
            private_rooms_moderators_mutes_bans_and_blocks,
            a_batch_of_joins_creates_each_room_once_and_reads_each_history_once,
        );
    };
    (@tests $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let fixture = $fixture;
                crate::common::conformance::$check(&fixture).await;
            }
        )*
    };
}

/// What a database made before the newest migrations holds, written through the store: a user
/// with a session, a room with a member, messages of both kinds and read markers.
pub async fn fill_before_upgrade(store: &dyn Store) {
    use switchboard_store::SessionRecord;
    assert!(store.create_user("alice", Some("hash"), 1).await.unwrap());
    let session = SessionRecord { token_hash: "t".into(), user: "alice".into(), created_at: 1, expires_at: i64::MAX };
    store.create_session(&session).await.unwrap();
    assert!(store.create_room("lobby", "alice", 1).await.unwrap());
    store.add_member("lobby", "alice", 1).await.unwrap();
    store.append(vec![dm("alice", "bob", "one", Some("k1")), dm("bob", "alice", "two", None)]).await.unwrap();
    store.append(vec![in_room("lobby", "alice", "hello", None)]).await.unwrap();
    store.set_read("bob", "dm:alice:bob", 1).await.unwrap();
    store.set_read("alice", "room:lobby", 1).await.unwrap();
}

/// Finds everything [`fill_before_upgrade`] wrote in the upgraded database, the read markers as
/// delivered as far as they were read, and the store working on from there.
pub async fn check_after_upgrade(store: &dyn Store) {
    assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash.as_deref(), Some("hash"));
    assert_eq!(store.session("t").await.unwrap().unwrap().user, "alice");
    assert_eq!(store.rooms_of("alice").await.unwrap(), ["lobby"]);
    assert_eq!(texts_of(store, "dm:alice:bob").await, ["one", "two"]);
    assert_eq!(texts_of(store, "room:lobby").await, ["hello"]);
    let listed: Vec<(String, u64, u64, u64, u64)> = store
        .conversations_of("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.conv, r.last_seq, r.read_seq, r.peer_read_seq, r.peer_delivered_seq))
        .collect();
    // Each sender has read up to their own message.
    assert_eq!(listed, [("dm:alice:bob".into(), 2, 1, 2, 2), ("room:lobby".into(), 1, 1, 0, 0)]);
    let retried = store.append(vec![dm("alice", "bob", "one again", Some("k1"))]).await.unwrap();
    assert_eq!(duplicate(&retried[0]).text, "one");
    assert_eq!(stored(&store.append(vec![dm("bob", "alice", "three", None)]).await.unwrap()[0]).seq, 3);
    assert_eq!(store.set_delivered("alice", "dm:alice:bob", 3).await.unwrap(), 3);
    // A message of the old schema is a plain message, and can be edited and answered.
    let old = store.message("room:lobby", 1).await.unwrap().unwrap();
    assert_eq!((old.kind, old.deleted, old.changed_seq, old.reactions.len()), (EntryKind::Message, false, 0, 0));
    let edit = change(in_room("lobby", "alice", "hello!", None), EntryKind::Edit, 1);
    let reply = reply_to(in_room("lobby", "alice", "and more", None), 1);
    let outcomes = store.append(vec![edit, reply]).await.unwrap();
    assert_eq!(stored(&outcomes[1]).quote.as_ref().unwrap().text, "hello!");
    assert_eq!(texts_of(store, "room:lobby").await, ["hello!", "hello!", "and more"]);
    // Rooms made before private rooms are public, owned by their creator.
    let rules = store.room_rules("lobby").await.unwrap().unwrap();
    assert_eq!((rules.private, rules.owner.as_str()), (false, "alice"));
    let listed = store.list_rooms("alice", None, 10).await.unwrap().items;
    assert_eq!((listed[0].private, listed[0].role), (false, Some(switchboard_store::Role::Owner)));
    assert!(store.blocks_of("alice").await.unwrap().is_empty());
}

mod changes;

pub mod conformance {
    pub use super::activity::conversations_by_activity_page_newest_first_while_messages_arrive;
    use switchboard_store::{ConversationRecord, Page, Role, RoomRules, RoomSummary, SessionRecord};

    pub use super::changes::*;
    use super::*;

    pub async fn private_rooms_moderators_mutes_bans_and_blocks(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        assert!(store.create_room_with("council", "alice", true, 1).await.unwrap());
        assert!(!store.create_room_with("council", "bob", false, 2).await.unwrap(), "the name is taken");
        assert!(store.create_room("lobby", "bob", 1).await.unwrap());
        for (room, user) in [("council", "alice"), ("council", "bob"), ("lobby", "bob"), ("lobby", "carol")] {
            store.add_member(room, user, 3).await.unwrap();
        }
        assert_eq!(store.room_rules("cellar").await.unwrap(), None);
        assert!(store.is_member("council", "bob").await.unwrap());
        assert!(!store.is_member("council", "carol").await.unwrap(), "a member elsewhere only");
        assert!(!store.is_member("cellar", "bob").await.unwrap(), "no such room");
        let rules =
            RoomRules { private: true, owner: "alice".into(), moderators: vec![], muted: vec![], banned: vec![] };
        assert_eq!(store.room_rules("council").await.unwrap(), Some(rules));

        // A private room is listed to its members only, and counted for them only.
        let summary = |name: &str, members, joined, private, role| RoomSummary {
            name: name.into(),
            members,
            joined,
            private,
            role,
        };
        assert_eq!(
            store.list_rooms("carol", None, 10).await.unwrap(),
            Page { items: vec![summary("lobby", 2, true, false, Some(Role::Member))], total: 1 }
        );
        assert_eq!(
            store.list_rooms("alice", None, 10).await.unwrap(),
            Page {
                items: vec![
                    summary("council", 2, true, true, Some(Role::Owner)),
                    summary("lobby", 2, false, false, None)
                ],
                total: 2
            }
        );

        // Moderators are members; a mute outlives membership.
        assert!(!store.set_moderator("council", "carol", true).await.unwrap(), "not a member");
        assert!(store.set_moderator("council", "bob", true).await.unwrap());
        assert!(!store.set_moderator("council", "bob", true).await.unwrap(), "already");
        assert_eq!(store.list_rooms("bob", None, 10).await.unwrap().items[0].role, Some(Role::Moderator));
        assert!(store.set_muted("lobby", "carol", true).await.unwrap());
        assert!(!store.set_muted("lobby", "carol", true).await.unwrap());
        store.remove_member("lobby", "carol").await.unwrap();
        assert_eq!(store.room_rules("lobby").await.unwrap().unwrap().muted, ["carol"]);
        assert!(store.set_muted("lobby", "carol", false).await.unwrap());
        assert!(store.room_rules("lobby").await.unwrap().unwrap().muted.is_empty());

        // A ban takes the member and their moderation out, and holds until lifted.
        assert!(store.ban("council", "bob", "alice", 4).await.unwrap(), "bob was a member");
        assert!(!store.ban("council", "dave", "alice", 4).await.unwrap(), "dave was not");
        assert!(store.is_banned("council", "bob").await.unwrap());
        assert!(!store.is_banned("lobby", "bob").await.unwrap());
        assert_eq!(store.members("council", None, 10).await.unwrap().items, ["alice"]);
        assert!(!store.is_member("council", "bob").await.unwrap(), "banned, so out");
        assert!(store.room_rules("council").await.unwrap().unwrap().moderators.is_empty());
        assert_eq!(store.room_rules("council").await.unwrap().unwrap().banned, ["bob", "dave"]);
        assert!(store.unban("council", "bob").await.unwrap());
        assert!(!store.unban("council", "bob").await.unwrap());
        assert!(!store.is_banned("council", "bob").await.unwrap());
        assert_eq!(store.room_rules("council").await.unwrap().unwrap().banned, ["dave"]);

        // Blocks are one way.
        assert!(store.block("alice", "mallory", 5).await.unwrap());
        assert!(!store.block("alice", "mallory", 6).await.unwrap());
        assert!(store.block("alice", "eve", 6).await.unwrap());
        assert_eq!(store.blocks_of("alice").await.unwrap(), ["eve", "mallory"]);
        assert!(store.blocks_of("mallory").await.unwrap().is_empty());
        assert!(store.unblock("alice", "eve").await.unwrap());
        assert!(!store.unblock("alice", "eve").await.unwrap());
        assert_eq!(store.blocks_of("alice").await.unwrap(), ["mallory"]);
        store.close().await;
    }

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
        let session =
            SessionRecord { token_hash: "abc123".into(), user: "alice".into(), created_at: 10, expires_at: 20 };
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

    pub async fn conversations_of_lists_both_dm_participants_and_member_rooms(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        for room in ["lobby", "quiet"] {
            assert!(store.create_room(room, "alice", 1).await.unwrap());
        }
        store.add_member("lobby", "alice", 2).await.unwrap();
        store.add_member("lobby", "bob", 2).await.unwrap();
        store.add_member("quiet", "alice", 2).await.unwrap();
        store
            .append(vec![
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

        let record = |conv: &str, last_seq: u64, last_ts, read_seq: u64| ConversationRecord {
            conv: conv.into(),
            last_seq,
            last_ts,
            read_seq,
            peer_read_seq: 0,
            peer_delivered_seq: 0,
            unread: last_seq - read_seq,
        };
        let with_peer = |record: ConversationRecord, peer_seq| ConversationRecord {
            peer_read_seq: peer_seq,
            peer_delivered_seq: peer_seq,
            ..record
        };
        // Each sender has read up to their own message; Bob sees Alice's read marker on their
        // conversation, and her delivered marker with it.
        let seen_by_alice = with_peer(record("dm:alice:bob", 2, 1_002, 2), 2);
        assert_eq!(
            store.conversations_of("alice").await.unwrap(),
            [
                with_peer(record("dm:alice:bob", 2, 1_002, 2), 2),
                with_peer(record("dm:alice:carol", 1, 1_003, 0), 1),
                record("room:lobby", 1, 2_004, 0),
                record("room:quiet", 0, 0, 0),
            ]
        );
        assert_eq!(store.conversations_of("bob").await.unwrap(), [seen_by_alice, record("room:lobby", 1, 2_004, 1)]);
        assert_eq!(store.conversations_of("carol").await.unwrap(), [record("dm:alice:carol", 1, 1_003, 1)]);
        assert!(store.conversations_of("dave").await.unwrap().is_empty());

        // The newest message sets last_ts, also when it is older than the one before.
        let mut late = dm("bob", "alice", "late", None);
        late.ts = 500;
        store.append(vec![dm("alice", "bob", "on time", None), late]).await.unwrap();
        store.remove_member("lobby", "bob").await.unwrap();
        assert_eq!(store.conversations_of("bob").await.unwrap(), [with_peer(record("dm:alice:bob", 4, 500, 4), 3)]);

        // Byte order: '.', '-' and digits before '_', then letters.
        store.append(vec![dm("alice", "bo_b", "x", None), dm("alice", "bo.b", "y", None)]).await.unwrap();
        store.add_member("quiet", "bo_b", 3).await.unwrap();
        let convs: Vec<String> =
            store.conversations_of("alice").await.unwrap().into_iter().map(|record| record.conv).collect();
        assert_eq!(
            convs,
            ["dm:alice:bo.b", "dm:alice:bo_b", "dm:alice:bob", "dm:alice:carol", "room:lobby", "room:quiet"]
        );

        // The newest message of each conversation asked for: none for an empty or unknown one.
        let mut last: Vec<(String, u64, String)> = store
            .last_messages(&["dm:alice:bob".into(), "room:lobby".into(), "room:quiet".into(), "dm:x:y".into()])
            .await
            .unwrap()
            .into_iter()
            .map(|message| (message.conv, message.seq, message.text))
            .collect();
        last.sort();
        assert_eq!(last, [("dm:alice:bob".into(), 4, "late".into()), ("room:lobby".into(), 1, "dddd".into())]);
        assert!(store.last_messages(&[]).await.unwrap().is_empty());
        store.close().await;
    }

    pub async fn read_markers_never_go_backwards(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        assert_eq!(store.set_read("alice", "room:lobby", 5).await.unwrap(), 5);
        assert_eq!(store.set_read("alice", "room:lobby", 3).await.unwrap(), 5);
        assert_eq!(store.set_read("alice", "room:lobby", 0).await.unwrap(), 5);
        assert_eq!(store.set_read("alice", "room:lobby", 7).await.unwrap(), 7);
        assert_eq!(store.set_read("bob", "room:lobby", 1).await.unwrap(), 1);
        assert_eq!(store.set_read("alice", "dm:alice:bob", 2).await.unwrap(), 2);
        assert_eq!(store.set_read("carol", "room:lobby", 0).await.unwrap(), 0);

        store.create_room("lobby", "alice", 1).await.unwrap();
        store.add_member("lobby", "alice", 1).await.unwrap();
        let conversations = store.conversations_of("alice").await.unwrap();
        assert_eq!(conversations.len(), 1);
        assert_eq!(conversations[0].read_seq, 7);
        store.close().await;
    }

    pub async fn users_rooms_members_and_sessions(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        assert!(store.create_user("bob", Some("first"), 1).await.unwrap());
        assert!(!store.create_user("bob", Some("second"), 2).await.unwrap());
        assert_eq!(store.user("bob").await.unwrap().unwrap().password_hash.as_deref(), Some("first"));
        assert_eq!(store.user("bob").await.unwrap().unwrap().created_at, 1);
        assert!(store.create_user("alice", None, 3).await.unwrap());
        assert!(store.create_user("carol", None, 3).await.unwrap());
        assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash, None);
        assert_eq!(store.user("nobody").await.unwrap(), None);
        assert_eq!(store.list_users("", None, 10).await.unwrap(), ["alice", "bob", "carol"]);
        assert_eq!(store.list_users("", None, 2).await.unwrap(), ["alice", "bob"]);
        assert!(store.list_users("", None, 0).await.unwrap().is_empty());
        assert_eq!(store.list_users("", Some("bob"), 10).await.unwrap(), ["carol"]);
        assert_eq!(store.list_users("", Some("b"), 1).await.unwrap(), ["bob"]);
        assert_eq!(store.list_users("", Some(""), 1).await.unwrap(), ["alice"]);
        assert!(store.list_users("", Some("carol"), 10).await.unwrap().is_empty());
        // A name prefix: the matching names only, paged by the same cursor.
        assert!(store.create_user("bobby", None, 3).await.unwrap());
        assert!(store.create_user("bo", None, 3).await.unwrap());
        assert_eq!(store.list_users("bo", None, 10).await.unwrap(), ["bo", "bob", "bobby"]);
        assert_eq!(store.list_users("bob", None, 10).await.unwrap(), ["bob", "bobby"]);
        assert_eq!(store.list_users("bob", Some("bob"), 10).await.unwrap(), ["bobby"]);
        assert_eq!(store.list_users("b", Some("a"), 1).await.unwrap(), ["bo"]);
        assert_eq!(store.list_users("c", None, 10).await.unwrap(), ["carol"]);
        assert!(store.list_users("carl", None, 10).await.unwrap().is_empty());
        assert!(store.list_users("z", None, 10).await.unwrap().is_empty());

        assert!(store.create_room("lobby", "alice", 1).await.unwrap());
        assert!(!store.create_room("lobby", "bob", 2).await.unwrap());
        assert!(store.create_room("attic", "bob", 2).await.unwrap());
        assert!(store.room_exists("lobby").await.unwrap());
        assert!(!store.room_exists("cellar").await.unwrap());

        assert!(store.add_member("lobby", "carol", 3).await.unwrap());
        assert!(store.add_member("lobby", "alice", 3).await.unwrap());
        assert!(!store.add_member("lobby", "alice", 4).await.unwrap());
        assert!(store.add_member("attic", "alice", 3).await.unwrap());
        assert_eq!(
            store.members("lobby", None, 10).await.unwrap(),
            Page { items: vec!["alice".to_owned(), "carol".into()], total: 2 }
        );
        assert_eq!(store.members("cellar", None, 10).await.unwrap(), Page { items: vec![], total: 0 });
        assert_eq!(store.rooms_of("alice").await.unwrap(), ["attic", "lobby"]);
        assert!(store.rooms_of("nobody").await.unwrap().is_empty());
        assert_eq!(
            store.list_rooms("alice", None, 10).await.unwrap().items,
            [
                RoomSummary {
                    name: "attic".into(),
                    members: 1,
                    joined: true,
                    private: false,
                    role: Some(Role::Member)
                },
                RoomSummary { name: "lobby".into(), members: 2, joined: true, private: false, role: Some(Role::Owner) }
            ]
        );
        assert!(store.remove_member("lobby", "alice").await.unwrap());
        assert!(!store.remove_member("lobby", "alice").await.unwrap());
        assert!(!store.remove_member("cellar", "alice").await.unwrap());
        assert_eq!(store.members("lobby", None, 10).await.unwrap().items, ["carol"]);
        assert_eq!(store.rooms_of("alice").await.unwrap(), ["attic"]);
        assert!(store.remove_member("attic", "alice").await.unwrap());
        assert_eq!(
            store.list_rooms("carol", None, 10).await.unwrap(),
            Page {
                items: vec![
                    RoomSummary { name: "attic".into(), members: 0, joined: false, private: false, role: None },
                    RoomSummary {
                        name: "lobby".into(),
                        members: 1,
                        joined: true,
                        private: false,
                        role: Some(Role::Member)
                    }
                ],
                total: 2
            }
        );

        let session = SessionRecord { token_hash: "t1".into(), user: "alice".into(), created_at: 1, expires_at: 2 };
        store.create_session(&session).await.unwrap();
        assert_eq!(store.session("t1").await.unwrap(), Some(session));
        assert_eq!(store.session("t2").await.unwrap(), None);
        store.delete_session("t1").await.unwrap();
        assert_eq!(store.session("t1").await.unwrap(), None);
        store.delete_session("t1").await.unwrap();
        store.close().await;
    }

    pub async fn listings_page_from_their_cursor_each_entry_once(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        let peers = ["bob", "carol", "zed"];
        let rooms = ["a-room", "lobby", "m", "zz"];
        for peer in peers {
            store.append(vec![dm("alice", peer, "hi", None)]).await.unwrap();
        }
        for room in rooms {
            assert!(store.create_room(room, "alice", 1).await.unwrap());
            assert!(store.add_member(room, "alice", 1).await.unwrap());
        }
        assert!(store.create_room("other", "bob", 1).await.unwrap());
        for member in ["ann", "ben", "cy"] {
            assert!(store.add_member("lobby", member, 1).await.unwrap());
        }
        store.append(vec![in_room("m", "alice", "hello", None)]).await.unwrap();

        let everything: Vec<String> =
            store.conversations_of("alice").await.unwrap().into_iter().map(|record| record.conv).collect();
        for size in 1..=everything.len() as u32 + 1 {
            let (mut walked, mut after) = (Vec::new(), None::<String>);
            loop {
                let page = store.conversations_page("alice", after.as_deref(), size).await.unwrap();
                assert_eq!(page.total, everything.len() as u64);
                assert!(page.items.len() <= size as usize);
                let Some(last) = page.items.last() else { break };
                after = Some(last.conv.clone());
                walked.extend(page.items.into_iter().map(|record| record.conv));
            }
            assert_eq!(walked, everything, "pages of {size}");
        }
        let page = store.conversations_page("alice", Some("room:m"), 1).await.unwrap();
        assert_eq!(page.items[0].conv, "room:zz");
        let page = store.conversations_page("alice", Some("dm:alice:zed"), 10).await.unwrap();
        assert_eq!(page.items.len(), rooms.len(), "every room id sorts after every private one");

        let page = store.list_rooms("alice", Some("lobby"), 2).await.unwrap();
        let names: Vec<&str> = page.items.iter().map(|room| room.name.as_str()).collect();
        assert_eq!((names, page.total), (vec!["m", "other"], 5));
        assert!(page.items[0].joined && !page.items[1].joined);
        let page = store.members("lobby", Some("ann"), 2).await.unwrap();
        assert_eq!((page.items, page.total), (vec!["ben".to_owned(), "cy".into()], 4));
        assert!(store.members("lobby", Some("cy"), 2).await.unwrap().items.is_empty());
        store.close().await;
    }

    pub async fn names_are_listed_in_byte_order(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        // A locale's collation would put these as a_c, a-d, a.b, a9, ab.
        let names = ["ab", "a_c", "a-d", "a.b", "a9"];
        let sorted = ["a-d", "a.b", "a9", "a_c", "ab"];
        for name in names {
            assert!(store.create_user(name, None, 1).await.unwrap());
            assert!(store.create_room(name, name, 1).await.unwrap());
            assert!(store.add_member("lobby", name, 1).await.unwrap());
            assert!(store.add_member(name, "alice", 1).await.unwrap());
        }
        assert_eq!(store.list_users("", None, 10).await.unwrap(), sorted);
        assert_eq!(store.list_users("", Some("a.b"), 10).await.unwrap(), ["a9", "a_c", "ab"]);
        assert_eq!(store.list_users("", Some("a9"), 1).await.unwrap(), ["a_c"]);
        assert_eq!(store.list_users("a.", None, 10).await.unwrap(), ["a.b"]);
        assert_eq!(store.list_users("a", Some("a9"), 10).await.unwrap(), ["a_c", "ab"]);
        assert_eq!(store.members("lobby", None, 10).await.unwrap().items, sorted);
        assert_eq!(store.rooms_of("alice").await.unwrap(), sorted);
        let rooms: Vec<String> =
            store.list_rooms("alice", None, 10).await.unwrap().items.into_iter().map(|room| room.name).collect();
        assert_eq!(rooms, sorted);
        let convs: Vec<String> =
            store.conversations_of("alice").await.unwrap().into_iter().map(|record| record.conv).collect();
        assert_eq!(convs, sorted.map(|room| format!("room:{room}")));
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

    pub async fn open_session_creates_the_user_once_stores_the_token_and_lists_rooms(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        let session =
            |hash: &str| SessionRecord { token_hash: hash.into(), user: "zoe".into(), created_at: 1, expires_at: 9 };
        assert!(store.open_session("zoe", true, Some(&session("t1")), 5).await.unwrap().is_empty());
        assert_eq!(store.user("zoe").await.unwrap().unwrap().created_at, 5);
        assert_eq!(store.session("t1").await.unwrap(), Some(session("t1")));
        store.create_room("attic", "zoe", 6).await.unwrap();
        store.add_member("attic", "zoe", 6).await.unwrap();
        // A second login neither fails on the existing user nor changes it.
        let rooms = store.open_session("zoe", true, Some(&session("t2")), 7).await.unwrap();
        assert_eq!(rooms, ["attic"]);
        assert_eq!(store.user("zoe").await.unwrap().unwrap().created_at, 5);
        // A resume stores nothing new; a reused token fails and leaves no user behind.
        assert_eq!(store.open_session("zoe", false, None, 8).await.unwrap(), ["attic"]);
        assert!(store.open_session("yan", true, Some(&session("t2")), 8).await.is_err());
        assert!(store.user("yan").await.unwrap().is_none());
        store.close().await;
    }

    pub async fn sync_read_starts_after_the_cursor_else_the_read_marker(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        store
            .append(vec![dm("amy", "bob", "1", None), dm("bob", "amy", "2", None), dm("amy", "bob", "3", None)])
            .await
            .unwrap();
        store.add_member("lobby", "bob", 1).await.unwrap();
        store.append(vec![in_room("lobby", "amy", "r1", None), in_room("lobby", "amy", "r2", None)]).await.unwrap();
        store.set_read("bob", "dm:amy:bob", 1).await.unwrap();
        let cursors = HashMap::from([("room:lobby".to_string(), 1), ("dm:amy:bob".to_string(), 99)]);
        let reads = store.sync_read("bob", &cursors, 10).await.unwrap();
        let summary: Vec<(String, u64, Vec<u64>)> =
            reads.iter().map(|read| (read.conversation.conv.clone(), read.from, seqs(&read.messages))).collect();
        // The cursor beyond the newest message is capped at it.
        assert_eq!(summary, [("dm:amy:bob".into(), 3, vec![]), ("room:lobby".into(), 1, vec![2])]);
        // Without cursors, after the read marker, which Bob's own message 2 moved past his read 1.
        let reads = store.sync_read("bob", &HashMap::new(), 1).await.unwrap();
        let summary: Vec<(u64, Vec<u64>)> = reads.iter().map(|read| (read.from, seqs(&read.messages))).collect();
        assert_eq!(summary, [(2, vec![3]), (0, vec![1])]);
        store.close().await;
    }

    pub async fn the_peers_read_and_delivered_markers_are_listed_and_synced(fixture: &dyn Fixture) {
        let store = fixture.open().await;
        let three: Vec<NewMessage> = (1..=3).map(|n| dm("alice", "bob", &format!("m{n}"), None)).collect();
        store.append(three).await.unwrap();
        store.append(vec![dm("bob", "bob", "note to self", None)]).await.unwrap();
        store.add_member("lobby", "alice", 1).await.unwrap();
        store.append(vec![in_room("lobby", "bob", "hi", None)]).await.unwrap();

        // Delivered moves forward only, and apart from the read marker.
        assert_eq!(store.set_delivered("bob", "dm:alice:bob", 3).await.unwrap(), 3);
        assert_eq!(store.set_delivered("bob", "dm:alice:bob", 2).await.unwrap(), 3);
        assert_eq!(store.set_read("bob", "dm:alice:bob", 1).await.unwrap(), 1);
        let peer_state = |records: Vec<ConversationRecord>| -> Vec<(String, u64, u64, u64)> {
            records
                .into_iter()
                .map(|record| (record.conv, record.read_seq, record.peer_read_seq, record.peer_delivered_seq))
                .collect()
        };
        // Alice has read what she sent herself.
        assert_eq!(
            peer_state(store.conversations_of("alice").await.unwrap()),
            [("dm:alice:bob".into(), 3, 1, 3), ("room:lobby".into(), 0, 0, 0)]
        );

        // A read moves delivered along; a later, lower delivered leaves both where they are.
        assert_eq!(store.set_read("alice", "dm:alice:bob", 3).await.unwrap(), 3);
        assert_eq!(store.set_delivered("alice", "dm:alice:bob", 1).await.unwrap(), 3);
        // In a conversation with oneself, the peer is oneself.
        assert_eq!(store.set_read("bob", "dm:bob:bob", 1).await.unwrap(), 1);
        let bobs = peer_state(store.conversations_of("bob").await.unwrap());
        assert_eq!(bobs, [("dm:alice:bob".into(), 1, 3, 3), ("dm:bob:bob".into(), 1, 1, 1)]);

        // The paged listing and the login's sync read carry the same state.
        assert_eq!(peer_state(store.conversations_page("bob", None, 10).await.unwrap().items), bobs);
        let synced: Vec<ConversationRecord> = store
            .sync_read("bob", &HashMap::new(), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|read| read.conversation)
            .collect();
        assert_eq!(peer_state(synced), bobs);
        store.close().await;
    }

    pub async fn a_batch_of_joins_creates_each_room_once_and_reads_each_history_once(fixture: &dyn Fixture) {
        use switchboard_store::{JoinRequest, Joined};
        let store = fixture.open().await;
        assert!(store.create_room("hall", "amy", 1).await.unwrap());
        store.add_member("hall", "amy", 1).await.unwrap();
        let three: Vec<NewMessage> = (1..=3).map(|n| in_room("hall", "amy", &format!("h{n}"), None)).collect();
        store.append(three).await.unwrap();
        let join = |room: &str, user: &str| JoinRequest { room: room.into(), user: user.into() };
        let requests =
            [join("hall", "bob"), join("new", "dan"), join("hall", "cat"), join("new", "eve"), join("hall", "bob")];
        let batch = store.join_rooms(&requests, 2, 5).await.unwrap();
        let joined = |created, newly| Joined { created, newly };
        assert_eq!(
            batch.joins,
            [joined(false, true), joined(true, true), joined(false, true), joined(false, true), joined(false, false)]
        );
        assert_eq!(batch.rooms.len(), 2);
        assert_eq!(seqs(&batch.rooms["hall"].history), [2, 3]);
        assert_eq!(batch.rooms["hall"].last_seq, 3);
        assert!(batch.rooms["new"].history.is_empty());
        assert_eq!(batch.rooms["new"].last_seq, 0);
        assert_eq!(store.members("hall", None, 10).await.unwrap().items, ["amy", "bob", "cat"]);
        assert_eq!(store.members("new", None, 10).await.unwrap().items, ["dan", "eve"]);
        assert!(!store.create_room("new", "zed", 6).await.unwrap(), "the batch created the room");
        // A new member reads from the room's newest message on, as after a single join.
        let hall = store.conversations_of("cat").await.unwrap();
        assert_eq!((hall[0].conv.as_str(), hall[0].read_seq), ("room:hall", 3));
        // Joining again changes nothing and moves no marker back.
        store.set_read("bob", "room:hall", 3).await.unwrap();
        let again = store.join_rooms(&[join("hall", "bob")], 0, 7).await.unwrap();
        assert_eq!(again.joins, [joined(false, false)]);
        assert!(again.rooms["hall"].history.is_empty());
        assert_eq!(store.conversations_of("bob").await.unwrap()[0].read_seq, 3);
        store.close().await;
    }
}
