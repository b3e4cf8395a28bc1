//! The conformance checks of private rooms, moderators, mutes, bans and blocks.

use switchboard_store::{Page, Role, RoomRules, RoomSummary};

use crate::common::*;

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
    let rules = RoomRules { private: true, owner: "alice".into(), moderators: vec![], muted: vec![], banned: vec![] };
    assert_eq!(store.room_rules("council").await.unwrap(), Some(rules));

    // A private room is listed to its members only, and counted for them only.
    let summary =
        |name: &str, members, joined, private, role| RoomSummary { name: name.into(), members, joined, private, role };
    assert_eq!(
        store.list_rooms("carol", None, 10).await.unwrap(),
        Page { items: vec![summary("lobby", 2, true, false, Some(Role::Member))], total: 1 }
    );
    assert_eq!(
        store.list_rooms("alice", None, 10).await.unwrap(),
        Page {
            items: vec![summary("council", 2, true, true, Some(Role::Owner)), summary("lobby", 2, false, false, None)],
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
