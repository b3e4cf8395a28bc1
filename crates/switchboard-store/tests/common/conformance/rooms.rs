//! The conformance checks of users, rooms, members and sessions.

use switchboard_store::{Page, Role, RoomSummary, SessionRecord};

use crate::common::*;

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
            RoomSummary { name: "attic".into(), members: 1, joined: true, private: false, role: Some(Role::Member) },
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
