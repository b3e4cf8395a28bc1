//! The terminal client's private rooms, moderation and blocking commands, in a real
//! pseudo-terminal (harness: `chat_support`): each command reaches the server and says what it
//! did, refusals show their error code, and what others do to the user is told.

mod chat_support;

use serde_json::json;
use switchboard_testkit::TestClient;

use chat_support::*;

#[tokio::test]
async fn create_private_invite_moderate_and_block_from_the_terminal() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let mut bob = TestClient::register(&url, "bob", PASSWORD).await;
    let mut carol = TestClient::register(&url, "carol", PASSWORD).await;
    let token = token_of(&url, "alice").await;
    let mut chat = resumed(&url, "alice", &token, config.path()).await;

    chat.command("/help").await;
    chat.expect("/create <room> [private]").await;
    chat.expect("/block <user>").await;

    chat.command("/create #council private").await;
    chat.expect("created and joined the private room:council").await;
    chat.expect("[room:council]> ").await;
    let rooms = carol.request(json!({"type": "rooms"})).await;
    assert_eq!(rooms["total"], 0, "carol does not see the private room: {rooms}");

    // The room defaults to the current one.
    chat.command("/invite bob").await;
    chat.expect("invited bob to room:council").await;
    assert_eq!(bob.next_of_type("invited").await["room"], "council");
    chat.command("/mod bob").await;
    chat.expect("bob is now moderator of room:council").await;
    chat.command("/mute bob").await;
    chat.expect("muted bob in room:council").await;
    let refused = bob.request(json!({"type": "send", "room": "council", "text": "hi"})).await;
    assert_eq!(refused["code"], "muted", "{refused}");
    chat.command("/unmute bob").await;
    chat.expect("unmuted bob in room:council").await;
    chat.command("/members").await;
    chat.expect("members of room:council (2): alice (owner, online), bob (moderator, online)").await;
    chat.command("/unmod bob").await;
    chat.expect("bob no longer moderates room:council").await;
    chat.command("/kick bob").await;
    chat.expect("removed bob from room:council").await;
    assert_eq!(bob.next_of_type("removed").await["banned"], false);
    chat.command("/ban bob #council").await;
    chat.expect("banned bob from room:council").await;
    let refused = bob.request(json!({"type": "join", "room": "council"})).await;
    assert_eq!(refused["code"], "banned", "{refused}");
    chat.command("/invite bob").await;
    chat.expect("(banned)").await;
    chat.command("/unban bob").await;
    chat.expect("unbanned bob from room:council").await;

    // What others do to alice is told; what she may not do is refused with its code.
    bob.request(json!({"type": "create_room", "room": "den", "private": true})).await;
    bob.request(json!({"type": "invite", "room": "den", "user": "alice"})).await;
    chat.expect("bob added you to room:den").await;
    chat.command("/kick bob #den").await;
    chat.expect("(forbidden)").await;
    bob.request(json!({"type": "remove", "room": "den", "user": "alice"})).await;
    chat.expect("bob removed you from room:den").await;

    chat.command("/block carol").await;
    chat.expect("blocked carol: no private messages from them").await;
    let refused = carol.request(json!({"type": "send", "to": "alice", "text": "hello?"})).await;
    assert_eq!(refused["code"], "blocked", "{refused}");
    chat.command("/blocked").await;
    chat.expect("you block (1): carol").await;
    chat.command("/unblock carol").await;
    chat.expect("unblocked carol").await;
    let ack = carol.request(json!({"type": "send", "to": "alice", "text": "hello again"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    chat.expect("carol: hello again").await;
}
