//! What a page of `conversations` by activity costs a user with many conversations (the figures
//! in docs/protocol.md): fills a store with `N` private conversations of one user, two messages
//! each, then times the first page and a page from the middle (limit 50), median of 20.
//!
//! `cargo run -p switchboard-store --example activity_listing_cost -- sqlite N` (a temporary file)
//! or `... -- postgres URL N` (an empty database).

use std::time::{Duration, Instant};

use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{ActivityCursor, EntryKind, NewMessage, PostgresStore, SqliteStore, Store};

fn message(peer: usize, n: usize) -> NewMessage {
    let peer = format!("u{peer:06}");
    NewMessage {
        conv: format!("dm:alice:{peer}"),
        id: format!("{peer}-{n}"),
        sender: peer,
        recipient: Some("alice".into()),
        room: None,
        text: format!("message {n}, long enough to look like one people send"),
        ts: 1_700_000_000_000 + (n as i64) * 1_000_000 + (n as i64 * 7919 % 1_000),
        idempotency_key: None,
        kind: EntryKind::Message,
        target: None,
    }
}

async fn median(store: &dyn Store, after: Option<&ActivityCursor>) -> Duration {
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let page = store.conversations_by_activity("alice", after, 50).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(page.items.len(), 50);
    }
    times.sort();
    times[times.len() / 2]
}

async fn measure(store: &dyn Store, conversations: usize) {
    for start in (0..conversations).step_by(1_000) {
        let batch: Vec<NewMessage> = (start..(start + 1_000).min(conversations))
            .flat_map(|peer| [message(peer, peer * 2), message(peer, peer * 2 + 1)])
            .collect();
        store.append(batch).await.unwrap();
    }
    let first = median(store, None).await;
    let all = store.conversations_by_activity("alice", None, 1_000).await.unwrap();
    assert_eq!(all.total as usize, conversations);
    let middle = ActivityCursor::of(&all.items[all.items.len() / 2]);
    let deep = median(store, Some(&middle)).await;
    println!(
        "{conversations} conversations: first page {first:?}, a page from the middle {deep:?} (limit 50, median of 20)"
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["sqlite", n] => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("cost.db"), SqliteOptions::default()).await.unwrap();
            measure(&store, n.parse().unwrap()).await;
            store.close().await;
        }
        ["postgres", url, n] => {
            let store = PostgresStore::connect(url).await.unwrap();
            measure(&store, n.parse().unwrap()).await;
            store.close().await;
        }
        _ => {
            eprintln!("usage: activity_listing_cost sqlite N | postgres URL N");
            std::process::exit(2);
        }
    }
}
