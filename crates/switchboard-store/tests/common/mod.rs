//! What the stores share in tests: message builders and assertions (here), the stores to test on
//! (`fixtures.rs`, with a throwaway PostgreSQL database), the conformance suite every `Store` must
//! pass (`conformance/`, one file per area), which `conformance_suite!` turns into one
//! `#[tokio::test]` per check for a given fixture, and the data an upgrade must keep
//! (`upgrade.rs`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_store::{AppendOutcome, EntryKind, NewMessage, Rejection, Store, StoredMessage};

pub mod conformance;
mod fixtures;
mod upgrade;

// Each test crate takes what it needs of these.
#[allow(unused_imports)]
pub use fixtures::{Fixture, Postgres, SqliteFile, SqliteMemory, TestDatabase};
#[allow(unused_imports)]
pub use upgrade::{check_after_upgrade, fill_before_upgrade};

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

/// `last_messages` of `convs` as (conv, seq, text), sorted, as the store may answer in any order.
pub async fn last_of(store: &dyn Store, convs: &[&str]) -> Vec<(String, u64, String)> {
    let convs: Vec<String> = convs.iter().map(|conv| (*conv).to_owned()).collect();
    let mut last: Vec<(String, u64, String)> = store
        .last_messages(&convs)
        .await
        .unwrap()
        .into_iter()
        .map(|message| (message.conv, message.seq, message.text))
        .collect();
    last.sort();
    last
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
