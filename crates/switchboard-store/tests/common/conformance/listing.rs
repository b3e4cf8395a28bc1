//! The conformance checks of listings: a user's conversations, pages of rooms and members, and
//! the order of names.

use switchboard_store::ConversationRecord;

use crate::common::*;

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
    assert_eq!(convs, ["dm:alice:bo.b", "dm:alice:bo_b", "dm:alice:bob", "dm:alice:carol", "room:lobby", "room:quiet"]);

    // The newest message of each conversation asked for: none for an empty or unknown one.
    let last = last_of(&*store, &["dm:alice:bob", "room:lobby", "room:quiet", "dm:x:y"]).await;
    assert_eq!(last, [("dm:alice:bob".into(), 4, "late".into()), ("room:lobby".into(), 1, "dddd".into())]);
    assert!(store.last_messages(&[]).await.unwrap().is_empty());
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
