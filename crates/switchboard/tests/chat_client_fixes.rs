//! The terminal client's fixes of issue 13, in a real pseudo-terminal (harness: `chat_support`):
//! the prompt names where a plain line goes and changes only when the server accepts the switch;
//! `/reply` answers private messages; live messages show their local time; Ctrl-C clears a typed
//! line (kept in the history) and quits on an empty one; a wrong password is asked again, 3 times.

mod chat_support;

use serde_json::json;
use switchboard_testkit::TestClient;

use chat_support::*;

/// A fixed zone without daylight saving, so the expected local time is plain arithmetic.
const TZ: &str = "XST-5:30";
const TZ_OFFSET_MINUTES: u64 = 330;

/// `ts` (ms) as `HH:MM` in [`TZ`].
fn local_clock(ts: u64) -> String {
    let minutes = (ts / 60_000 + TZ_OFFSET_MINUTES) % 1440;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[tokio::test]
async fn the_prompt_moves_only_when_the_server_accepts_and_reply_answers_private_messages() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let mut bob = TestClient::register(&url, "bob", PASSWORD).await;
    let mut carol = TestClient::register(&url, "carol", PASSWORD).await;
    carol.request(json!({"type": "create_room", "room": "lobby"})).await;
    let token = token_of(&url, "alice").await;
    let args = ["--url", &url, "--user", "alice", "--token", &token];
    let mut chat = Chat::spawn_with_env(&args, config.path(), &[("TZ", TZ)]);
    chat.expect("resumed the session of alice").await;
    chat.command("/join lobby").await;
    chat.expect("joined room:lobby").await;
    chat.expect("[room:lobby]> ").await;

    // Refused by the server: the prompt stays where it was, and plain lines still go there.
    for (command, error) in [
        ("/chat nobody hi", "error: user nobody does not exist (user_not_found)"),
        ("/chat nobody", "error: user nobody does not exist (user_not_found)"),
        ("/chat room:elsewhere", "(room_not_found)"),
    ] {
        chat.command(command).await;
        chat.expect(error).await;
        let next = chat.expect("> ").await;
        assert!(next.ends_with("\n[room:lobby]> "), "the prompt moved after {command:?} was refused: {next:?}");
    }
    chat.line("still in the lobby");
    let message = carol.next_of_type("message").await;
    assert_eq!((message["room"].as_str(), message["text"].as_str()), (Some("lobby"), Some("still in the lobby")));

    // A private message arrives with its local time and says how to answer it; a plain line
    // still goes where the prompt says.
    let ack = bob.request(json!({"type": "send", "to": "alice", "text": "psst"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let at = local_clock(ack["ts"].as_u64().expect("ts"));
    chat.expect(&format!("{at} bob: psst")).await;
    chat.expect("(/reply answers bob; lines without a command still go to room:lobby)").await;
    chat.line("for the room");
    let message = carol.next_of_type("message").await;
    assert_eq!((message["room"].as_str(), message["text"].as_str()), (Some("lobby"), Some("for the room")));
    let ack = carol.request(json!({"type": "send", "room": "lobby", "text": "room news"})).await;
    let at = local_clock(ack["ts"].as_u64().expect("ts"));
    chat.expect(&format!("{at} [room:lobby] carol: room news")).await;

    // `/reply` answers the newest private message and makes its sender current.
    chat.command("/reply sure thing").await;
    let message = bob.next_of_type("message").await;
    assert_eq!((message["from"].as_str(), message["text"].as_str()), (Some("alice"), Some("sure thing")));
    chat.expect("[bob]> ").await;
    carol.request(json!({"type": "send", "to": "alice", "text": "me too"})).await;
    chat.expect("carol: me too").await;
    chat.expect("(/reply answers carol; lines without a command still go to bob)").await;
    // `/reply @bob` answers the newest one from bob, though carol's is newer.
    chat.command("/reply @bob and again").await;
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "and again", "{message}");
    chat.command("/reply @dave hi").await;
    chat.expect("no private message from dave to answer").await;
    chat.command("/reply").await;
    chat.expect("now talking to carol").await;
    chat.expect("[carol]> ").await;
    chat.line("to carol");
    let message = carol.next_of_type("message").await;
    assert_eq!((message["to"].as_str(), message["text"].as_str()), (Some("carol"), Some("to carol")), "{message}");
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0, "{}", chat.text);
}

#[tokio::test]
async fn ctrl_c_clears_a_typed_line_keeping_it_in_the_history_and_quits_on_an_empty_line() {
    let (_server, _config, mut bob, mut chat) = alice_and_bob().await;
    chat.command("/chat bob").await;
    chat.expect("now talking to bob").await;

    chat.type_text("a draft worth keeping");
    chat.wait_screen("the typed line", |rows| rows.last().is_some_and(|row| row == "[bob]> a draft worth keeping"))
        .await;
    chat.type_text("\u{3}"); // Ctrl-C
    chat.wait_screen("an empty prompt", |rows| rows.last().is_some_and(|row| row == "[bob]>")).await;
    chat.type_text("\u{1b}[A"); // Up: the cleared line is in the history
    chat.wait_screen("the line back", |rows| rows.last().is_some_and(|row| row == "[bob]> a draft worth keeping"))
        .await;
    chat.type_text("\r");
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "a draft worth keeping", "{message}");

    chat.expect("[bob]> ").await;
    chat.type_text("\u{3}");
    assert_eq!(chat.wait_exit().await, 0, "Ctrl-C on an empty line quits:\n{}", chat.text);
}

#[tokio::test]
async fn a_wrong_password_is_asked_again_up_to_three_times() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    TestClient::register(&url, "alice", PASSWORD).await.close().await;
    let args = ["--url", &url, "--user", "alice", "--no-save"];

    let mut chat = Chat::spawn(&args, config.path());
    wrong_passwords(&mut chat, 2).await;
    chat.expect("password: ").await;
    chat.line(PASSWORD);
    chat.expect("logged in as alice").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0, "{}", chat.text);
    assert!(!chat.text.contains(PASSWORD) && !chat.text.contains("not-the"), "echoed:\n{}", chat.text);

    let mut chat = Chat::spawn(&args, config.path());
    wrong_passwords(&mut chat, 3).await;
    assert_ne!(chat.wait_exit().await, 0, "{}", chat.text);
    assert_eq!(chat.text.matches("password: ").count(), 3, "{}", chat.text);
    assert!(!chat.text.contains("not-the-password"), "the password was echoed:\n{}", chat.text);
}

/// Answers `count` password prompts wrongly, each refused.
async fn wrong_passwords(chat: &mut Chat, count: usize) {
    for _ in 0..count {
        chat.expect("password: ").await;
        chat.line("not-the-password");
        chat.expect("error: wrong user name or password (auth_failed)").await;
    }
}
