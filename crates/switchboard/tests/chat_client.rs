//! `switchboard chat`, the terminal client, driven through a real pseudo-terminal: the tests type at
//! its prompt and read what it prints (ANSI sequences stripped), and render the screen with a
//! terminal emulator to check where things land (an incoming message above a half-typed line).
//! The other side of a conversation is a `TestClient` speaking the protocol directly, or, on a
//! cluster (`TestCluster`: two nodes on an in-process bus sharing a store), another terminal client
//! on the other node. The fixes of issue 13 are tested in `chat_client_fixes.rs`.

mod chat_support;

use serde_json::json;
use switchboard_testkit::proxy::TcpProxy;
use switchboard_testkit::{TestClient, TestCluster, TestServer};

use chat_support::*;

#[tokio::test]
async fn registering_asks_for_a_hidden_password_saves_the_session_and_quit_exits_0() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");

    let mut chat = Chat::spawn(&["--url", &url, "--user", "alice", "--register"], config.path());
    chat.expect("password: ").await;
    chat.line(PASSWORD);
    chat.expect("password (again): ").await;
    chat.line(PASSWORD);
    chat.expect("registered alice, connected to node n1").await;
    chat.expect("> ").await;
    assert!(!chat.text.contains(PASSWORD), "the password was echoed:\n{}", chat.text);

    chat.command("/whoami").await;
    chat.expect("alice on node n1 (connection").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0, "{}", chat.text);
    assert!(!chat.text.contains(PASSWORD), "the password was echoed:\n{}", chat.text);

    // The session was saved, readable by the owner only: the next start resumes it, no password.
    let saved = std::fs::read_dir(config.path().join("switchboard"))
        .expect("the session directory")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().ends_with("-alice")))
        .expect("a saved session of alice");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).expect("metadata").permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());
    let mut again = Chat::spawn(&["--url", &url, "--user", "alice"], config.path());
    again.expect("resumed the session of alice, connected to node n1").await;
    again.expect("> ").await;
    assert!(!again.text.contains("password"), "{}", again.text);
    again.type_text("\u{4}"); // Ctrl-D
    assert_eq!(again.wait_exit().await, 0, "{}", again.text);
}

#[tokio::test]
async fn an_incoming_message_is_printed_above_a_half_typed_line_which_stays_intact() {
    let (_server, _config, mut bob, mut chat) = alice_and_bob().await;

    chat.command("/chat bob hi bob").await;
    let message = bob.next_of_type("message").await;
    assert_eq!((message["from"].as_str(), message["text"].as_str()), (Some("alice"), Some("hi bob")));

    chat.type_text("half typ");
    chat.wait_screen("the half-typed line", |rows| rows.last().is_some_and(|row| row == "[bob]> half typ")).await;
    let ack = bob.request(json!({"type": "send", "to": "alice", "text": "are you there?"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let rows = chat
        .wait_screen("bob's message and the prompt below it", |rows| {
            rows.iter().any(|row| row.ends_with(" bob: are you there?"))
                && rows.last().is_some_and(|row| row.starts_with("[bob]> "))
        })
        .await;
    let message_row = rows.iter().position(|row| row.ends_with(" bob: are you there?")).expect("message row");
    assert_eq!(rows.last().map(String::as_str), Some("[bob]> half typ"), "the line being typed is redrawn intact");
    assert_eq!(message_row, rows.len() - 2, "the message lands right above the prompt:\n{}", rows.join("\n"));

    chat.line("ed line");
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "half typed line", "the whole line was sent: {message}");
    // A room someone else creates is announced.
    bob.request(json!({"type": "create_room", "room": "garden"})).await;
    chat.expect("room:garden created by bob").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

#[tokio::test]
async fn join_prints_the_replayed_history_and_plain_lines_go_to_the_room() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let mut carol = TestClient::register(&url, "carol", PASSWORD).await;
    carol.request(json!({"type": "create_room", "room": "lobby"})).await;
    for text in ["first words", "second words"] {
        let ack = carol.request(json!({"type": "send", "room": "lobby", "text": text})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let token = token_of(&url, "alice").await;
    let mut chat = resumed(&url, "alice", &token, config.path()).await;

    chat.command("/join lobby").await;
    chat.expect("joined room:lobby: its last 2 messages:").await;
    chat.expect("[room:lobby] carol (just now): first words").await;
    chat.expect("[room:lobby] carol (just now): second words").await;
    assert!(
        !String::from_utf8_lossy(&chat.raw).contains("[room:lobby] carol (just now): first words"),
        "on a terminal the line is coloured"
    );
    chat.expect("[room:lobby]> ").await;

    chat.line("hello room");
    let message = carol.next_of_type("message").await;
    assert_eq!((message["from"].as_str(), message["room"].as_str()), (Some("alice"), Some("lobby")));
    assert_eq!(message["text"], "hello room");

    carol.request(json!({"type": "send", "room": "lobby", "text": "welcome alice"})).await;
    chat.expect("[room:lobby] carol: welcome alice").await;
    chat.command("/rooms").await;
    chat.expect("room:lobby (2 members, joined)").await;
    chat.command("/leave").await;
    chat.expect("left room:lobby").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

#[tokio::test]
async fn rooms_members_and_conversations_gather_every_page() {
    let store: std::sync::Arc<dyn switchboard_store::Store> =
        std::sync::Arc::new(switchboard_store::SqliteStore::open_in_memory().await.expect("store"));
    for index in 0..1100 {
        let room = format!("r{index:04}");
        assert!(store.create_room(&room, "alice", 1).await.unwrap());
        assert!(store.add_member(&room, "alice", 1).await.unwrap());
        assert!(store.add_member("r0000", &format!("m{index:04}"), 1).await.unwrap());
    }
    let server = TestServer::builder().chat(|c| c.node_id = "n1".into()).store(store).start().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let token = token_of(&url, "alice").await;
    let mut chat = resumed(&url, "alice", &token, config.path()).await;

    chat.command("/rooms").await;
    chat.expect("rooms (1100):").await;
    chat.expect("room:r1099 (1 member, joined, owner)").await;
    chat.command("/members r0000").await;
    let members = chat.expect("m1099").await;
    assert!(members.contains("members of room:r0000 (1101):"), "{members}");
    chat.command("/conversations").await;
    chat.expect("room:r1099 (0 unread)").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

#[tokio::test]
async fn stats_history_users_whoami_and_help() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let _bob = TestClient::register(&url, "bob", PASSWORD).await;
    let mut alice = TestClient::register(&url, "alice", PASSWORD).await;
    for text in ["one", "two", "three"] {
        alice.request(json!({"type": "send", "to": "bob", "text": text})).await;
    }
    let token = alice.token();
    let mut chat = Chat::spawn_with_env(
        &["--url", &url, "--user", "alice", "--token", &token],
        config.path(),
        &[("NO_COLOR", "1")],
    );
    chat.expect("resumed the session of alice, connected to node n1").await;

    chat.command("/stats bob").await;
    let stats = chat.expect("(1 connection)").await;
    assert!(stats.contains("bob is online for ") && stats.contains("s on node n1"), "{stats}");

    chat.command("/history bob 2").await;
    chat.expect("history of bob: 2 messages, older ones exist").await;
    chat.expect("alice → bob (just now): two").await;
    chat.expect("alice → bob (just now): three").await;

    chat.command("/users").await;
    chat.expect("users (2, 2 online):").await;
    chat.expect("alice (online)").await;
    chat.expect("bob (online)").await;
    chat.command("/users B").await;
    chat.expect("users starting with 'b' (1, 1 online):").await;
    chat.expect("bob (online)").await;
    chat.command("/users zz").await;
    chat.expect("no user's name starts with 'zz'").await;

    chat.command("/conversations").await;
    chat.expect("bob (0 unread, last message just now): you: three").await;

    chat.command("/whoami").await;
    chat.expect("alice on node n1 (connection ").await;
    chat.expect(&format!(") at {url}\n  connected just now, session expires in 29d")).await;

    chat.command("/stats nobody").await;
    chat.expect("error: user nobody does not exist (user_not_found)").await;

    chat.command("/frobnicate now").await;
    chat.expect("error: unknown command /frobnicate").await;
    chat.expect("commands:").await;
    chat.expect("/join <room>").await;
    chat.expect("/quit").await;

    // NO_COLOR: lines reach the terminal as plain text.
    assert!(String::from_utf8_lossy(&chat.raw).contains("alice → bob (just now): two"), "{:?}", chat.raw);
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

#[tokio::test]
async fn the_client_reconnects_and_resumes_with_its_cursors_after_the_connection_drops() {
    let server = server().await;
    let mut proxy = TcpProxy::forward_to(server.addr);
    let proxied = format!("ws://{}/ws", proxy.addr());
    let config = tempfile::tempdir().expect("temp dir");
    let mut bob = TestClient::register(&server.ws_url(), "bob", PASSWORD).await;
    let token = token_of(&server.ws_url(), "alice").await;
    let mut chat = resumed(&proxied, "alice", &token, config.path()).await;
    bob.request(json!({"type": "send", "to": "alice", "text": "before the cut"})).await;
    chat.expect("bob: before the cut").await;

    proxy.stop();
    chat.expect("connection lost (1006").await;
    chat.expect("reconnecting in").await;
    let ack = bob.request(json!({"type": "send", "to": "alice", "text": "while you were away"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");

    proxy.start();
    chat.expect("reconnected to node n1").await;
    let caught_up = chat.expect("bob (just now): while you were away").await;
    assert!(caught_up.contains("catching up: 1 missed message"), "{caught_up}");
    assert!(!caught_up.contains("before the cut"), "the cursor kept what was already shown: {caught_up}");

    chat.command("/chat bob back again").await;
    let message = bob.next_of_type("message").await;
    assert_eq!(message["text"], "back again", "{message}");
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

#[tokio::test]
async fn send_mode_sends_one_message_prints_its_seq_and_exits_0() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let mut bob = TestClient::register(&url, "bob", PASSWORD).await;
    let token = token_of(&url, "alice").await;

    let (status, stdout, stderr) = script(
        &["--url", &url, "--user", "alice", "--token", &token, "--send", "from a script", "--to", "bob"],
        "",
        config.path(),
    )
    .await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 1 in dm:alice:bob");
    let message = bob.next_of_type("message").await;
    assert_eq!((message["from"].as_str(), message["text"].as_str()), (Some("alice"), Some("from a script")));

    // The password from stdin; a room as the target.
    bob.request(json!({"type": "create_room", "room": "ops"})).await;
    assert_eq!(bob.next_of_type("member_joined").await["user"], "bob", "bob's own join");
    let stdin = format!("{PASSWORD}\n");
    let args = ["--url", &url, "--user", "alice", "--password-stdin", "--send", "deploy done", "--to", "room:ops"];
    let (status, stdout, stderr) = script(&args, &stdin, config.path()).await;
    assert_eq!(status, 0, "alice was not in room ops: the send joins it: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 1 in room:ops");
    let joined = bob.next_of_type("member_joined").await;
    assert_eq!((joined["room"].as_str(), joined["user"].as_str()), (Some("ops"), Some("alice")), "{joined}");
    let args = ["--url", &url, "--user", "alice", "--password-stdin", "--send", "deploy done", "--to", "bob"];
    let (status, stdout, stderr) = script(&args, &stdin, config.path()).await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 2 in dm:alice:bob");

    // Failures: an unknown recipient, a wrong password.
    let args = ["--url", &url, "--user", "alice", "--send", "hello?", "--to", "nobody"];
    let (status, stdout, stderr) = script(&args, "", config.path()).await;
    assert_ne!(status, 0, "{stdout}");
    assert!(stderr.contains("error: user nobody does not exist (user_not_found)"), "{stderr}");
    let args = ["--url", &url, "--user", "alice", "--password-stdin", "--no-save", "--send", "x", "--to", "bob"];
    let (status, _, stderr) = script(&args, "wrong-password\n", config.path()).await;
    assert_ne!(status, 0);
    assert!(stderr.contains("error: wrong user name or password (auth_failed)"), "{stderr}");

    let delivered: Vec<_> =
        bob.drain_of_type("message").await.into_iter().map(|m| (m["conv"].clone(), m["text"].clone())).collect();
    let expected = [(json!("room:ops"), json!("deploy done")), (json!("dm:alice:bob"), json!("deploy done"))];
    assert_eq!(delivered, expected, "nothing else reached bob");
}

/// The README's script example on a fresh server: a new account sends to a room that does not
/// exist yet, and a later run resumes the saved session and sends again without a password.
#[tokio::test]
async fn the_readme_send_example_works_on_a_fresh_server() {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let stdin = format!("{PASSWORD}\n");
    let first = ["--url", &url, "--user", "alice", "--register", "--password-stdin", "--send", "deploy done", "--to"];
    let (status, stdout, stderr) = script(&[&first[..], &["room:ops"]].concat(), &stdin, config.path()).await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 1 in room:ops");
    let again = ["--url", &url, "--user", "alice", "--send", "deploy done", "--to", "room:ops"];
    let (status, stdout, stderr) = script(&again, "", config.path()).await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 2 in room:ops");

    let mut bob = TestClient::register(&url, "bob", PASSWORD).await;
    let room = bob.request(json!({"type": "join", "room": "ops"})).await;
    let texts: Vec<_> = room["history"].as_array().expect("history").iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, [json!("deploy done"), json!("deploy done")], "{room}");
}

#[tokio::test]
async fn two_clients_on_different_nodes_of_a_cluster_see_each_other_and_talk_in_private_and_in_a_room() {
    let cluster = TestCluster::start(2).await;
    let (on_n1, on_n2) = (cluster.url(0), cluster.url(1));
    let alice_config = tempfile::tempdir().expect("temp dir");
    let bob_config = tempfile::tempdir().expect("temp dir");
    let alice_token = token_of(&on_n1, "alice").await;
    let bob_token = token_of(&on_n2, "bob").await;

    let mut alice = resumed_on(&on_n1, "n1", "alice", &alice_token, alice_config.path()).await;
    // Strangers so far (no conversation): alice asks to hear about bob.
    alice.command("/watch bob").await;
    alice.expect("bob is offline; you will be told when that changes").await;
    let mut bob = Chat::spawn(&["--url", &on_n2, "--user", "bob", "--token", &bob_token], bob_config.path());
    bob.expect("resumed the session of bob, connected to node n2").await;
    bob.expect("none of your contacts is online").await;
    bob.expect("> ").await;
    // Bob's coming online reaches alice as an event from n2.
    alice.expect("bob is online").await;

    alice.command("/users").await;
    alice.expect("users (2, 2 online):").await;
    alice.expect("alice (online)").await;
    alice.expect("bob (online)").await;
    alice.command("/stats bob").await;
    let stats = alice.expect("(1 connection)").await;
    assert!(stats.contains("bob is online for ") && stats.contains(" on node n2 "), "{stats}");
    bob.command("/users").await;
    bob.expect("users (2, 2 online):").await;
    bob.expect("alice (online)").await;

    // Private messages across the bus, both ways.
    alice.command("/msg bob hello from n1").await;
    bob.expect("alice: hello from n1").await;
    bob.command("/msg alice hello back from n2").await;
    alice.expect("bob: hello back from n2").await;

    // A room created on n1 and joined on n2; plain lines go to it.
    alice.command("/join crossing").await;
    alice.expect("created and joined room:crossing: no messages yet").await;
    bob.command("/join crossing").await;
    bob.expect("joined room:crossing: no messages yet").await;
    alice.expect("bob joined room:crossing").await;
    bob.line("hello room, from n2");
    alice.expect("[room:crossing] bob: hello room, from n2").await;
    alice.line("hello bob, from n1");
    bob.expect("[room:crossing] alice: hello bob, from n1").await;

    // The send mode on n2 reaches alice's terminal on n1: a private message from a third user, and
    // a room message from bob (who is also logged in interactively).
    let carol_token = token_of(&on_n2, "carol").await;
    let scripts = tempfile::tempdir().expect("temp dir");
    let args = ["--url", &on_n2, "--user", "carol", "--token", &carol_token, "--send", "deploy done", "--to", "alice"];
    let (status, stdout, stderr) = script(&args, "", scripts.path()).await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 1 in dm:alice:carol");
    alice.expect("carol: deploy done").await;
    let args =
        ["--url", &on_n2, "--user", "bob", "--token", &bob_token, "--send", "from a script", "--to", "room:crossing"];
    let (status, stdout, stderr) = script(&args, "", scripts.path()).await;
    assert_eq!(status, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "sent: seq 3 in room:crossing");
    alice.expect("[room:crossing] bob: from a script").await;
    bob.expect("[room:crossing] bob: from a script").await;

    alice.command("/quit").await;
    assert_eq!(alice.wait_exit().await, 0, "{}", alice.text);
    // Alice's client is gone from n1: n2 tells bob.
    bob.expect("alice is offline").await;
    bob.command("/quit").await;
    assert_eq!(bob.wait_exit().await, 0, "{}", bob.text);
}

#[tokio::test]
async fn conversations_say_whether_the_peer_received_and_read_the_newest_message() {
    let (_server, _config, mut bob, mut chat) = alice_and_bob().await;

    chat.command("/chat bob are you there?").await;
    let message = bob.next_of_type("message").await;
    chat.command("/conversations").await;
    chat.expect("bob (0 unread, last message").await;
    assert!(!chat.expect("\n").await.contains("has "), "neither received nor read yet");

    let seq = message["seq"].clone();
    let ok = bob.request(json!({"type": "delivered", "to": "alice", "seq": seq})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    chat.command("/conversations").await;
    chat.expect("bob has received it all)").await;
    let ok = bob.request(json!({"type": "read", "to": "alice", "seq": seq})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    chat.command("/conversations").await;
    chat.expect("bob has read it all)").await;
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}

/// Sends from `client`, then lets the clock pass the stored message's millisecond, so the next
/// message is newer (the server and the test read the same clock): bounded, a few 1 ms sleeps.
async fn send_then_tick(client: &mut TestClient, frame: serde_json::Value) {
    let ack = client.request(frame).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let ts = ack["ts"].as_u64().expect("ts") as u128;
    for _ in 0..100 {
        if std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() > ts {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the clock stayed at {ts}");
}

#[tokio::test]
async fn conversations_come_in_the_servers_order_and_a_new_message_moves_one_to_the_top() {
    let (server, _config, mut bob, mut chat) = alice_and_bob().await;
    let mut carol = TestClient::register(&server.ws_url(), "carol", PASSWORD).await;
    send_then_tick(&mut bob, json!({"type": "send", "to": "alice", "text": "bob first"})).await;
    send_then_tick(&mut carol, json!({"type": "send", "to": "alice", "text": "then carol"})).await;
    chat.expect("then carol").await;
    chat.command("/conversations").await;
    let listed = chat.expect("bob (").await;
    let listed = &listed[listed.rfind("conversations:").expect("the listing")..];
    assert!(listed.contains("carol ("), "carol's is the newest, bob's after it:\n{listed}");

    send_then_tick(&mut bob, json!({"type": "send", "to": "alice", "text": "bob again"})).await;
    chat.expect("bob again").await;
    chat.command("/conversations").await;
    let listed = chat.expect("carol (").await;
    let listed = &listed[listed.rfind("conversations:").expect("the listing")..];
    assert!(listed.contains("bob ("), "bob's moved to the top:\n{listed}");
    chat.command("/quit").await;
    assert_eq!(chat.wait_exit().await, 0);
}
