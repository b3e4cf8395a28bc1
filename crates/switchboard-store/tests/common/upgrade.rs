//! What a database made by an older release holds, and finding it all after the migrations.

use switchboard_store::{EntryKind, Store};

use super::{change, dm, duplicate, in_room, reply_to, stored, texts_of};

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
