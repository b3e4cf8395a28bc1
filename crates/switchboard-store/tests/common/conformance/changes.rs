//! The conformance checks of edits, deletions, replies and reactions.

use switchboard_store::{EntryKind, Reaction, Rejection, MAX_REACTIONS, QUOTE_CHARS, UNREAD_COUNT_SPAN};

use crate::common::*;

fn reactions(list: &[(&str, &[&str])]) -> Vec<Reaction> {
    list.iter()
        .map(|(emoji, users)| Reaction {
            emoji: (*emoji).to_owned(),
            users: users.iter().map(|user| (*user).to_owned()).collect(),
        })
        .collect()
}

pub async fn edits_deletions_and_reactions_are_entries_that_update_their_target(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let conv = "room:lobby";
    store.append(vec![in_room("lobby", "alice", "helo", None), in_room("lobby", "bob", "hi", None)]).await.unwrap();

    // In one batch with a message after it: the entries take the next seqs in batch order.
    let outcomes = store
        .append(vec![
            change(in_room("lobby", "alice", "hello", None), EntryKind::Edit, 1),
            in_room("lobby", "carol", "third", None),
            change(in_room("lobby", "bob", "👍", None), EntryKind::React, 1),
        ])
        .await
        .unwrap();
    let edit = stored(&outcomes[0]);
    assert_eq!((edit.seq, edit.kind, edit.target, edit.edited_at), (3, EntryKind::Edit, Some(1), Some(edit.ts)));
    assert_eq!(stored(&outcomes[1]).seq, 4);
    let react = stored(&outcomes[2]);
    assert_eq!((react.seq, react.kind, react.target), (5, EntryKind::React, Some(1)));
    assert_eq!(react.reactions, reactions(&[("👍", &["bob"])]));

    // History shows the target as it is now, and every entry in seq order.
    let all = store.messages_after(conv, 0, 100).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[0].text, "hello");
    assert_eq!(all[0].edited_at, Some(edit.ts));
    assert_eq!(all[0].changed_seq, 5);
    assert_eq!(all[0].reactions, reactions(&[("👍", &["bob"])]));
    assert_eq!((all[2].kind, all[2].text.as_str(), all[2].target), (EntryKind::Edit, "hello", Some(1)));
    assert_eq!(all[4].reactions, reactions(&[("👍", &["bob"])]), "a react entry keeps the reactions after it");
    assert_eq!(store.messages_before(conv, None, 100).await.unwrap(), all);

    // Deleted: the text and reactions go, a tombstone stays, and nothing more changes it.
    let deleted = store.append(vec![change(in_room("lobby", "alice", "", None), EntryKind::Delete, 1)]).await.unwrap();
    assert_eq!(stored(&deleted[0]).seq, 6);
    let tombstone = store.message(conv, 1).await.unwrap().unwrap();
    assert!(tombstone.deleted);
    assert_eq!((tombstone.text.as_str(), tombstone.reactions.len(), tombstone.changed_seq), ("", 0, 6));
    let refused = store
        .append(vec![
            change(in_room("lobby", "alice", "again", None), EntryKind::Edit, 1),
            change(in_room("lobby", "bob", "🎉", None), EntryKind::React, 1),
            change(in_room("lobby", "alice", "", None), EntryKind::Delete, 1),
            change(in_room("lobby", "alice", "nothing", None), EntryKind::Edit, 99),
            change(in_room("lobby", "alice", "a change", None), EntryKind::Edit, 3),
            change(in_room("elsewhere", "alice", "x", None), EntryKind::Edit, 1),
            in_room("lobby", "bob", "after", None),
        ])
        .await
        .unwrap();
    let rejections: Vec<Rejection> = refused[..6].iter().map(rejected).collect();
    assert_eq!(
        rejections,
        [
            Rejection::Deleted,
            Rejection::Deleted,
            Rejection::Deleted,
            Rejection::NotFound,
            Rejection::NotFound,
            Rejection::NotFound
        ]
    );
    assert_eq!(stored(&refused[6]).seq, 7, "a rejected change takes no seq");
    assert_eq!(store.last_seq(conv).await.unwrap(), 7);
    assert!(store.message(conv, 99).await.unwrap().is_none());
    store.close().await;
}

pub async fn a_reply_carries_a_current_quote_and_needs_a_live_target(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let long = "é".repeat(QUOTE_CHARS + 20);
    store.append(vec![dm("alice", "bob", &long, None), dm("bob", "alice", "short", None)]).await.unwrap();
    let outcomes = store
        .append(vec![
            reply_to(dm("bob", "alice", "to the long one", Some("r1")), 1),
            reply_to(dm("alice", "bob", "to nothing", None), 40),
            reply_to(dm("alice", "bob", "to short", None), 2),
        ])
        .await
        .unwrap();
    let reply = stored(&outcomes[0]);
    assert_eq!((reply.seq, reply.kind, reply.target), (3, EntryKind::Message, Some(1)));
    let quote = reply.quote.as_ref().unwrap();
    assert_eq!(quote.from, "alice");
    assert_eq!(quote.text, format!("{}…", "é".repeat(QUOTE_CHARS)));
    assert_eq!(rejected(&outcomes[1]), Rejection::NotFound);
    assert_eq!(stored(&outcomes[2]).seq, 4);

    // Retried with its key: the original, quote and all.
    let retried = store.append(vec![reply_to(dm("bob", "alice", "to the long one", Some("r1")), 1)]).await.unwrap();
    assert_eq!(duplicate(&retried[0]).quote.as_ref().unwrap().from, "alice");

    // The quote is read with the reply: an edit or deletion of the quoted message shows in it.
    let conv = "dm:alice:bob";
    store.append(vec![change(dm("bob", "alice", "brief", None), EntryKind::Edit, 2)]).await.unwrap();
    assert_eq!(store.message(conv, 4).await.unwrap().unwrap().quote.unwrap().text, "brief");
    store.append(vec![change(dm("alice", "bob", "", None), EntryKind::Delete, 1)]).await.unwrap();
    let history = store.messages_before(conv, None, 10).await.unwrap();
    let quote = history[2].quote.as_ref().unwrap();
    assert!(quote.deleted);
    assert_eq!(quote.text, "");
    let refused = store.append(vec![reply_to(dm("bob", "alice", "to the deleted one", None), 1)]).await.unwrap();
    assert_eq!(rejected(&refused[0]), Rejection::Deleted);
    // A change entry cannot be answered.
    let refused = store.append(vec![reply_to(dm("bob", "alice", "to an edit", None), 5)]).await.unwrap();
    assert_eq!(rejected(&refused[0]), Rejection::NotFound);
    store.close().await;
}

pub async fn reactions_are_one_per_user_and_bounded_per_message(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let conv = "room:lobby";
    store.append(vec![in_room("lobby", "alice", "react to me", None)]).await.unwrap();
    let react = |user: &str, emoji: &str| change(in_room("lobby", user, emoji, None), EntryKind::React, 1);
    store.append(vec![react("bob", "👍"), react("carol", "👍"), react("bob", "🎉")]).await.unwrap();
    let now = store.message(conv, 1).await.unwrap().unwrap().reactions;
    assert_eq!(now, reactions(&[("👍", &["carol"]), ("🎉", &["bob"])]), "another emoji replaces one's own");
    let outcomes = store.append(vec![react("carol", "")]).await.unwrap();
    assert_eq!(stored(&outcomes[0]).reactions, reactions(&[("🎉", &["bob"])]), "an empty one takes it back");

    let users: Vec<String> = (0..MAX_REACTIONS).map(|n| format!("user{n:03}")).collect();
    let outcomes = store.append(users[1..].iter().map(|user| react(user, "👀")).collect()).await.unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, AppendOutcome::Stored(_))));
    let outcomes = store.append(vec![react("dave", "👀"), react("bob", "👀"), react("bob", "")]).await.unwrap();
    assert_eq!(rejected(&outcomes[0]), Rejection::TooManyReactions);
    assert_eq!(stored(&outcomes[1]).reactions.iter().map(|r| r.users.len()).sum::<usize>(), MAX_REACTIONS);
    assert_eq!(stored(&outcomes[2]).reactions.iter().map(|r| r.users.len()).sum::<usize>(), MAX_REACTIONS - 1);
    store.close().await;
}

pub async fn changes_are_not_unread_and_not_the_last_message(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    assert!(store.create_room("lobby", "alice", 1).await.unwrap());
    store.add_member("lobby", "bob", 1).await.unwrap();
    store.append(vec![in_room("lobby", "alice", "one", None), dm("alice", "bob", "hey", None)]).await.unwrap();
    store
        .append(vec![
            change(in_room("lobby", "alice", "one!", None), EntryKind::Edit, 1),
            change(dm("alice", "bob", "😀", None), EntryKind::React, 1),
            in_room("lobby", "alice", "two", None),
            change(in_room("lobby", "alice", "🎉", None), EntryKind::React, 3),
        ])
        .await
        .unwrap();
    let unread: Vec<(String, u64, u64)> =
        store.conversations_of("bob").await.unwrap().into_iter().map(|r| (r.conv, r.last_seq, r.unread)).collect();
    assert_eq!(unread, [("dm:alice:bob".into(), 2, 1), ("room:lobby".into(), 4, 2)]);
    let page = store.conversations_page("bob", None, 10).await.unwrap();
    assert_eq!(page.items.iter().map(|r| r.unread).collect::<Vec<_>>(), [1, 2]);
    // A change says nothing of what its maker read: Alice's marker stays at her last message.
    let alice: Vec<(String, u64, u64)> =
        store.conversations_of("alice").await.unwrap().into_iter().map(|r| (r.conv, r.read_seq, r.unread)).collect();
    assert_eq!(alice, [("dm:alice:bob".into(), 1, 0)]);

    let last = last_of(&*store, &["room:lobby", "dm:alice:bob"]).await;
    assert_eq!(last, [("dm:alice:bob".into(), 1, "hey".into()), ("room:lobby".into(), 3, "two".into())]);
    store.close().await;
}

/// An unread count looks at the first [`UNREAD_COUNT_SPAN`] entries after the read marker only:
/// exact within them, a lower bound past them, in every listing.
pub async fn unread_counts_look_at_a_bounded_span_of_entries(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let span = UNREAD_COUNT_SPAN;
    let batch: Vec<NewMessage> = (0..span + 5).map(|n| dm("alice", "bob", &format!("m{n}"), None)).collect();
    store.append(batch).await.unwrap();
    let listed = store.conversations_of("bob").await.unwrap();
    assert_eq!((listed[0].last_seq, listed[0].unread), (span + 5, span));
    let page = store.conversations_by_activity("bob", None, 10).await.unwrap();
    assert_eq!(page.items[0].unread, span);
    assert_eq!(store.set_read("bob", "dm:alice:bob", 10).await.unwrap(), 10);
    let page = store.conversations_page("bob", None, 10).await.unwrap();
    assert_eq!(page.items[0].unread, span - 5, "exact within the span");
    let sync = store.sync_read("bob", &Default::default(), 1).await.unwrap();
    assert_eq!(sync[0].conversation.unread, span - 5);
}
