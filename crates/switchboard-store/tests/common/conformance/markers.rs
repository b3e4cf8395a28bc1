//! The conformance checks of read and delivered markers.

use switchboard_store::ConversationRecord;

use crate::common::*;

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
    let synced: Vec<ConversationRecord> =
        store.sync_read("bob", &HashMap::new(), 10).await.unwrap().into_iter().map(|read| read.conversation).collect();
    assert_eq!(peer_state(synced), bobs);
    store.close().await;
}
