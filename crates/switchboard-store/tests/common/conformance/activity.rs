//! The conversation list by latest activity, as every store must page it.

use switchboard_store::{ActivityCursor, ConversationRecord, NewMessage, Store};

use crate::common::{dm, in_room, Fixture};

fn at(mut message: NewMessage, ts: i64) -> NewMessage {
    message.ts = ts;
    message
}

async fn walk(store: &dyn Store, user: &str, limit: u32) -> Vec<String> {
    let (mut listed, mut after) = (Vec::new(), None::<ActivityCursor>);
    loop {
        let page = store.conversations_by_activity(user, after.as_ref(), limit).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        listed.extend(page.items.iter().map(|record| record.conv.clone()));
        match page.items.last() {
            Some(last) if page.items.len() == limit as usize => after = Some(ActivityCursor::of(last)),
            _ => return listed,
        }
    }
}

fn convs(records: &[ConversationRecord]) -> Vec<&str> {
    records.iter().map(|record| record.conv.as_str()).collect()
}

/// Newest activity first, ties and empty rooms by id; each page's markers; a cursor that a
/// message arriving meanwhile does not make list anything twice.
pub async fn conversations_by_activity_page_newest_first_while_messages_arrive(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    for room in ["lobby", "attic", "zoo", "quiet"] {
        assert!(store.create_room(room, "carol", 1).await.unwrap());
    }
    for room in ["lobby", "attic", "zoo"] {
        store.add_member(room, "alice", 2).await.unwrap();
    }
    store
        .append(vec![
            at(dm("bob", "alice", "hi", None), 300),
            at(dm("carol", "alice", "yo", None), 100),
            at(in_room("lobby", "carol", "morning", None), 200),
            at(dm("alice", "alice", "note", None), 200),
            at(dm("dave", "alice", "ping", None), 50),
            at(dm("erin", "alice", "old", None), 40),
            // Not alice's: a room she is not in, a conversation of others.
            at(in_room("quiet", "carol", "shh", None), 900),
            at(dm("bob", "carol", "psst", None), 950),
        ])
        .await
        .unwrap();
    store.append(vec![at(dm("bob", "alice", "again", None), 400)]).await.unwrap();
    assert_eq!(store.set_read("alice", "dm:alice:bob", 1).await.unwrap(), 1);
    assert_eq!(store.set_delivered("bob", "dm:alice:bob", 2).await.unwrap(), 2);

    let all = store.conversations_by_activity("alice", None, 100).await.unwrap();
    let expected = [
        "dm:alice:bob",
        "dm:alice:alice",
        "room:lobby",
        "dm:alice:carol",
        "dm:alice:dave",
        "dm:alice:erin",
        "room:attic",
        "room:zoo",
    ];
    assert_eq!(convs(&all.items), expected, "by last_ts, ties by id, empty rooms last");
    assert_eq!(all.total, 8);
    let bob = &all.items[0];
    assert_eq!((bob.last_seq, bob.last_ts, bob.read_seq), (2, 400, 1));
    assert_eq!((bob.peer_read_seq, bob.peer_delivered_seq), (2, 2), "bob sent the newest, so read it");
    let own = &all.items[1];
    assert_eq!((own.last_seq, own.read_seq, own.peer_read_seq), (1, 1, 1), "the peer of dm:alice:alice is alice");
    let lobby = &all.items[2];
    assert_eq!((lobby.last_seq, lobby.last_ts, lobby.read_seq, lobby.peer_read_seq), (1, 200, 0, 0));
    assert_eq!((all.items[6].last_seq, all.items[6].last_ts), (0, 0));

    for limit in [1, 2, 3, 8] {
        assert_eq!(walk(&*store, "alice", limit).await, expected, "pages of {limit}");
    }

    // Two pages in, one conversation already listed and one not yet get a message each: both
    // move above the cursor, so the rest of the walk lists neither, and nothing twice.
    let first = store.conversations_by_activity("alice", None, 3).await.unwrap();
    assert_eq!(convs(&first.items), &expected[..3]);
    let cursor = ActivityCursor::of(first.items.last().unwrap());
    store
        .append(vec![at(in_room("lobby", "carol", "news", None), 500), at(dm("dave", "alice", "back", None), 600)])
        .await
        .unwrap();
    let rest = store.conversations_by_activity("alice", Some(&cursor), 100).await.unwrap();
    assert_eq!(convs(&rest.items), ["dm:alice:carol", "dm:alice:erin", "room:attic", "room:zoo"]);
    let top = store.conversations_by_activity("alice", None, 2).await.unwrap();
    assert_eq!(convs(&top.items), ["dm:alice:dave", "room:lobby"], "the new messages' conversations lead");
    assert_eq!(top.items[1].last_seq, 2);

    // A cursor past the end, a user with nothing.
    let end = ActivityCursor { last_ts: 0, conv: "room:zzz".into() };
    assert!(store.conversations_by_activity("alice", Some(&end), 10).await.unwrap().items.is_empty());
    let nobody = store.conversations_by_activity("nobody", None, 10).await.unwrap();
    assert_eq!((nobody.items.len(), nobody.total), (0, 0));
    store.close().await;
}
