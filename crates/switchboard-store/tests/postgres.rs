//! The PostgreSQL store: the conformance suite, then what several nodes on one database need.
//! Each test gets a database of its own (see `common::TestDatabase`).

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{append_concurrently, dm, duplicate, in_room, seqs, stored, texts_of, Postgres};
use switchboard_store::{AppendOutcome, NewMessage, PostgresStore, Store, StoreError};
use tokio::sync::Barrier;

mod conformance {
    conformance_suite!(crate::common::Postgres::new().await);
}

/// Two stores on one database: two nodes, each with its own pool.
async fn two_nodes(postgres: &Postgres) -> [Arc<dyn Store>; 2] {
    [Arc::new(postgres.connect().await), Arc::new(postgres.connect().await)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_to_one_conversation_get_gap_free_unique_seqs() {
    const TASKS_PER_NODE: usize = 4;
    const MESSAGES_PER_TASK: usize = 50;
    let postgres = Postgres::new().await;
    let nodes = two_nodes(&postgres).await;
    let start = Arc::new(Barrier::new(nodes.len() * TASKS_PER_NODE));
    let mut handles = Vec::new();
    for (node_number, node) in nodes.iter().enumerate() {
        for task in 0..TASKS_PER_NODE {
            let node = Arc::clone(node);
            let start = Arc::clone(&start);
            handles.push(tokio::spawn(async move {
                start.wait().await;
                let mut seen = Vec::new();
                let mut sent = 0;
                // Batches of 1, 2 and 3 messages, so that transactions of every size interleave.
                while sent < MESSAGES_PER_TASK {
                    let size = (1 + (task + sent) % 3).min(MESSAGES_PER_TASK - sent);
                    let batch: Vec<NewMessage> = (sent..sent + size)
                        .map(|n| {
                            let mut message = dm("alice", "bob", &format!("node{node_number}-t{task}-m{n}"), None);
                            message.ts = (node_number * 1_000_000 + task * 1_000 + n) as i64;
                            message
                        })
                        .collect();
                    for outcome in node.append(batch).await.unwrap() {
                        seen.push(stored(&outcome).clone());
                    }
                    sent += size;
                }
                seen
            }));
        }
    }
    let mut all = Vec::new();
    for handle in handles {
        let seen = handle.await.unwrap();
        // One task's messages keep their order.
        assert!(seen.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        all.extend(seen);
    }
    let total = (nodes.len() * TASKS_PER_NODE * MESSAGES_PER_TASK) as u64;
    let mut assigned: Vec<u64> = all.iter().map(|message| message.seq).collect();
    assigned.sort_unstable();
    assert_eq!(assigned, (1..=total).collect::<Vec<_>>());

    for node in &nodes {
        let mut stored_messages = node.messages_after("dm:alice:bob", 0, 1_000).await.unwrap();
        assert_eq!(seqs(&stored_messages), (1..=total).collect::<Vec<_>>());
        assert_eq!(node.last_seq("dm:alice:bob").await.unwrap(), total);
        let texts: HashSet<&str> = stored_messages.iter().map(|message| message.text.as_str()).collect();
        assert_eq!(texts.len() as u64, total);
        let newest = stored_messages.pop().unwrap();
        let conversations = node.conversations_of("bob").await.unwrap();
        assert_eq!(conversations.len(), 1);
        assert_eq!((conversations[0].last_seq, conversations[0].last_ts), (total, newest.ts));
    }
    all.sort_by_key(|message| message.seq);
    assert_eq!(all, nodes[0].messages_after("dm:alice:bob", 0, 1_000).await.unwrap());
    for node in nodes {
        node.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_batches_across_conversations_do_not_deadlock() {
    let postgres = Postgres::new().await;
    let nodes = two_nodes(&postgres).await;
    // Batches touch three conversations in rotating orders: locking in batch order would
    // deadlock here.
    tokio::time::timeout(Duration::from_secs(60), append_concurrently(&nodes, 8, 25)).await.unwrap();
    for node in nodes {
        node.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_through_both_nodes_at_once_is_stored_once() {
    const ROUNDS: usize = 25;
    const SENDERS_PER_NODE: usize = 2;
    let postgres = Postgres::new().await;
    let nodes = two_nodes(&postgres).await;
    for round in 0..ROUNDS {
        let key = format!("key-{round}");
        let start = Arc::new(Barrier::new(nodes.len() * SENDERS_PER_NODE));
        let mut handles = Vec::new();
        for (node_number, node) in nodes.iter().enumerate() {
            for sender in 0..SENDERS_PER_NODE {
                let node = Arc::clone(node);
                let start = Arc::clone(&start);
                let key = key.clone();
                handles.push(tokio::spawn(async move {
                    // The keyed message shares its batch with unkeyed ones, which must be stored
                    // whichever node wins the key.
                    let batch = [
                        in_room("lobby", "bob", &format!("r{round}-n{node_number}-s{sender}-before"), None),
                        dm("alice", "bob", &format!("r{round}-n{node_number}-s{sender}"), Some(&key)),
                        in_room("lobby", "bob", &format!("r{round}-n{node_number}-s{sender}-after"), None),
                    ];
                    start.wait().await;
                    node.append(batch.to_vec()).await.unwrap()
                }));
            }
        }
        let mut keyed = Vec::new();
        for handle in handles {
            let outcomes = handle.await.unwrap();
            stored(&outcomes[0]);
            stored(&outcomes[2]);
            keyed.push(outcomes[1].clone());
        }
        let winners: Vec<_> =
            keyed.iter().filter(|outcome| matches!(outcome, AppendOutcome::Stored(_))).map(stored).collect();
        assert_eq!(winners.len(), 1, "round {round}: {keyed:?}");
        for outcome in &keyed {
            assert_eq!(outcome.message(), Some(winners[0]));
        }
        assert_eq!(winners[0].seq, round as u64 + 1);
    }
    for node in &nodes {
        let messages = node.messages_after("dm:alice:bob", 0, 1_000).await.unwrap();
        assert_eq!(seqs(&messages), (1..=ROUNDS as u64).collect::<Vec<_>>());
        let lobby = node.messages_after("room:lobby", 0, 1_000).await.unwrap();
        let lobby_total = (ROUNDS * nodes.len() * SENDERS_PER_NODE * 2) as u64;
        assert_eq!(seqs(&lobby), (1..=lobby_total).collect::<Vec<_>>());
    }
    // And later, through either node, the key stays taken.
    let again = nodes[1].append(vec![dm("alice", "bob", "late retry", Some("key-0"))]).await.unwrap();
    assert_eq!(duplicate(&again[0]).seq, 1);
    for node in nodes {
        node.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_on_a_new_database_both_migrate() {
    let postgres = Postgres::new().await;
    two_nodes_start_together_and_share(&postgres.database.url()).await;
}

/// Two nodes connect to `url` at once; what one stores, the other reads.
async fn two_nodes_start_together_and_share(url: &str) {
    let (one, two) = tokio::join!(PostgresStore::connect(url), PostgresStore::connect(url));
    let (one, two) = (one.unwrap(), two.unwrap());
    one.append(vec![in_room("lobby", "alice", "from one", None)]).await.unwrap();
    assert_eq!(texts_of(&two, "room:lobby").await, ["from one"]);
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_pointed_at_a_missing_database_create_it() {
    let database = common::TestDatabase::unborn();
    two_nodes_start_together_and_share(&database.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_stores_nothing_and_gives_its_seqs_back() {
    let postgres = Postgres::new().await;
    let store = postgres.connect().await;
    store.append(vec![in_room("lobby", "alice", "one", None)]).await.unwrap();

    // Somebody takes seq 2 behind the store's back: the batch fails on the primary key, after
    // taking seqs and inserting the attic's message.
    let other = sqlx::PgPool::connect(&postgres.database.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO messages (conv, seq, id, sender, text, ts) VALUES ('room:lobby', 2, 'x', 'eve', 'sneaky', 1)",
    )
    .execute(&other)
    .await
    .unwrap();
    let batch = [in_room("attic", "alice", "lost", Some("k")), in_room("lobby", "alice", "two", None)];
    match store.append(batch.to_vec()).await {
        Err(StoreError::Database(_)) => {}
        Err(error) => panic!("expected a database error, got {error}"),
        Ok(outcomes) => panic!("expected a database error, got {outcomes:?}"),
    }
    assert!(store.messages_after("room:attic", 0, 10).await.unwrap().is_empty());
    assert_eq!(store.last_seq("room:attic").await.unwrap(), 0);
    assert_eq!(store.last_seq("room:lobby").await.unwrap(), 1);
    assert!(store.conversations_of("alice").await.unwrap().is_empty());

    sqlx::query("DELETE FROM messages WHERE id = 'x'").execute(&other).await.unwrap();
    other.close().await;
    let retried = store.append(batch.to_vec()).await.unwrap();
    assert_eq!(stored(&retried[0]).seq, 1);
    assert_eq!(stored(&retried[1]).seq, 2);
    assert_eq!(texts_of(&store, "room:lobby").await, ["one", "two"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_stored_as_a_replacement_character() {
    let postgres = Postgres::new().await;
    let store = postgres.connect().await;
    let mut message = dm("alice", "bob", "a\0b", Some("k\0"));
    message.id = "id-nul".into();
    let outcomes = store.append(vec![message]).await.unwrap();
    assert_eq!(stored(&outcomes[0]).text, "a\u{FFFD}b");
    assert_eq!(texts_of(&store, "dm:alice:bob").await, ["a\u{FFFD}b"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_within_seconds() {
    // A port nothing listens on: the pool retries refused connections until its acquire timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let result = PostgresStore::connect(&format!("postgres://postgres:hunter2@127.0.0.1:{port}/switchboard")).await;
    let elapsed = started.elapsed();
    match result {
        Err(StoreError::Unavailable(message)) => assert!(!message.contains("hunter2"), "{message}"),
        Err(error) => panic!("expected unavailable, got {error}"),
        Ok(_) => panic!("connected to a port nothing listens on"),
    }
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_fail_setup() {
    let Err(StoreError::Setup(message)) = PostgresStore::connect("mysql://localhost/switchboard").await else {
        panic!("a URL of another database should fail setup");
    };
    assert!(message.contains("URL"), "{message}");

    // A missing database is created (`nodes_pointed_at_a_missing_database_create_it`); a role the
    // server does not know is a setup error.
    let postgres = Postgres::new().await;
    let url = postgres.database.url();
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let unknown_role = format!("{scheme}://no_such_role@{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host));
    match PostgresStore::connect(&unknown_role).await {
        Err(StoreError::Setup(_)) => {}
        Err(error) => panic!("expected a setup error, got {error}"),
        Ok(_) => panic!("connected as a role that does not exist"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_is_unavailable() {
    let postgres = Postgres::new().await;
    let store = postgres.connect().await;
    store.health().await.unwrap();
    store.close().await;
    assert!(matches!(store.health().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.append(vec![in_room("lobby", "alice", "late", None)]).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(store.last_seq("room:lobby").await, Err(StoreError::Unavailable(_))));
}

/// A database of the release before read state (its first migration only) is upgraded by the
/// first node that connects, and keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_schema_is_upgraded_with_everything_in_it() {
    use sqlx::{Connection, Executor};
    let postgres = Postgres::new().await;
    let store = postgres.connect().await;
    common::fill_before_upgrade(&store).await;
    store.close().await;
    // Back to the first migration as that release left it.
    let mut old = sqlx::PgConnection::connect(&postgres.database.url()).await.unwrap();
    old.execute(
        "ALTER TABLE read_markers DROP COLUMN delivered_seq; \
         ALTER TABLE messages DROP COLUMN kind, DROP COLUMN target, DROP COLUMN edited_at, DROP COLUMN deleted, \
         DROP COLUMN reactions, DROP COLUMN changed_seq; ALTER TABLE rooms DROP COLUMN private; \
         DROP TABLE room_moderators, room_mutes, room_bans, blocks; DELETE FROM _sqlx_migrations WHERE version > 1",
    )
    .await
    .unwrap();
    old.close().await.unwrap();

    let store = postgres.connect().await;
    common::check_after_upgrade(&store).await;
    store.close().await;
}
