//! Huge rooms: nothing grows with the square of a room. Joins past `room_events_max_members` send
//! no per-join event to every member (the frames a node writes grow linearly in the joins), a big
//! room's counts come in a rate-limited `room_size`, and a slow listener is cut off while the
//! others receive everything; its member list pages within bounds, each member once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_store::{SqliteStore, Store};
use switchboard_testkit::{TestClient, TestCluster, TestServer};

/// Logs `count` users in (quietly, named after `prefix`) and joins them to `room`; they stay
/// connected and unread.
async fn join_members(url: &str, room: &str, prefix: &str, count: usize) -> Vec<TestClient> {
    let mut members = Vec::with_capacity(count);
    for index in 0..count {
        let mut member = TestClient::login_open_quiet(url, &format!("{prefix}-{index:04}")).await;
        let answer = member.request(json!({"type": "join", "room": room})).await;
        assert_eq!(answer["type"], "room", "{answer}");
        members.push(member);
    }
    members
}

#[tokio::test]
async fn frames_written_while_members_join_grow_linearly_with_the_members() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.room_events_max_members = 8;
            // No `room_size` round during the joins: what is counted is the joins' own frames.
            c.room_size_interval = Duration::from_secs(3600);
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut frames_for = Vec::new();
    for (room, count) in [("small", 40), ("large", 80)] {
        let before = server.metric("switchboard_frames_out_total").await;
        let members = join_members(&url, room, room, count).await;
        // Every member's frames were written: each answered its last request.
        let after = server.metric("switchboard_frames_out_total").await;
        frames_for.push(after - before);
        // Past the threshold nobody got a member_joined about the later joiners.
        let mut first = members.into_iter().next().expect("a member");
        let joined = first.drain_of_type("member_joined").await;
        assert!(joined.len() <= 8, "{} member_joined events in a room of {count}", joined.len());
    }
    // 80 joins against 40: twice the frames, not four times (one member_joined to every member
    // per join would make it 3.4 times here).
    let ratio = frames_for[1] / frames_for[0];
    assert!(ratio < 2.3, "frames {frames_for:?}: ratio {ratio}");
}

#[tokio::test]
async fn a_big_room_tells_its_members_its_size_and_online_count() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.room_events_max_members = 3;
            c.room_size_interval = Duration::from_millis(50);
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut members = join_members(&url, "stage", "fan", 5).await;
    let first = &mut members[0];
    loop {
        let size = first.next_of_type("room_size").await;
        assert_eq!(size["room"], "stage");
        if size["members"] == 5 && size["online"] == 5 {
            break;
        }
    }
    // A member leaving (and the user going offline) comes as a new count, not a member_left.
    let mut last = members.pop().expect("a member");
    let answer = last.request(json!({"type": "leave", "room": "stage"})).await;
    assert_eq!(answer["type"], "ok", "{answer}");
    last.close().await;
    let first = &mut members[0];
    loop {
        let size = first.next_of_type("room_size").await;
        if size["members"] == 4 && size["online"] == 4 {
            break;
        }
    }
    assert!(first.drain_of_type("member_left").await.is_empty(), "a big room sends no member_left");
}

#[tokio::test]
async fn a_slow_listener_in_a_big_room_is_cut_off_and_the_others_receive_everything() {
    const LISTENERS: usize = 6;
    const MESSAGES: u64 = 1000;
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 10_000.0;
            c.rate_burst = 10_000.0;
            c.queue_max_frames = 50;
            c.max_text_chars = 16_000;
            c.room_events_max_members = 4;
        })
        .start()
        .await;
    let url = server.ws_url();
    let mut sender = join_members(&url, "live", "sender", 1).await.pop().expect("the sender");
    // The slow listener joins and then never reads again: once the kernel's buffers are full its
    // queue fills up.
    let mut slow = join_members(&url, "live", "slow", 1).await.pop().expect("the slow listener");
    // The others read all along, each on its own task, and report how far they have read: the
    // sender stays within WINDOW messages of the slowest of them, so a reader starved of CPU on a
    // loaded machine never falls a whole queue behind, while the slow listener, which reads
    // nothing, does.
    const WINDOW: u64 = 20;
    let mut readers = Vec::new();
    let mut progress = Vec::new();
    for mut listener in join_members(&url, "live", "listener", LISTENERS).await {
        let (read_up_to, watched) = tokio::sync::watch::channel(0u64);
        progress.push(watched);
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while (seqs.len() as u64) < MESSAGES {
                let frame: Value = listener.next_of_type("message").await;
                seqs.push(frame["seq"].as_u64().expect("seq"));
                read_up_to.send_replace(seqs.len() as u64);
            }
            seqs
        }));
    }
    let text = "x".repeat(15_000);
    for n in 1..=MESSAGES {
        for watched in &mut progress {
            let caught_up = watched.wait_for(|&read| read + WINDOW >= n);
            tokio::time::timeout(Duration::from_secs(60), caught_up)
                .await
                .expect("the listeners keep up")
                .expect("a reader ended early");
        }
        sender.send(json!({"type": "send", "ref": n, "room": "live", "text": text})).await;
        if n % 50 == 0 {
            assert_eq!(sender.answer_to(n).await["type"], "ack");
        }
    }
    for reader in readers {
        let seqs = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("in time").expect("reader");
        assert_eq!(seqs, (1..=MESSAGES).collect::<Vec<_>>(), "every message, in order, to every listener");
    }
    assert!(server.metric("switchboard_queue_overflows_total").await >= 1.0, "the slow listener overflowed");
    if let Some((code, _)) = slow.expect_end().await {
        assert_eq!(code, 4008);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_of_a_room_of_twenty_thousand_page_within_bounds_each_once() {
    const MEMBERS: usize = 20_000;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    assert!(store.create_room("arena", "host", 1).await.unwrap());
    // Names of the longest kind (32 bytes).
    let mut expected: Vec<String> = (0..MEMBERS).map(|index| format!("{index:06}{}", "m".repeat(26))).collect();
    for member in &expected {
        assert!(store.add_member("arena", member, 1).await.unwrap());
    }
    expected.sort();
    let server = TestServer::builder().chat(|c| c.open_auth = true).store(store).start().await;
    let mut host = TestClient::login_open_quiet(&server.ws_url(), "host").await;
    let (mut listed, mut cursor) = (Vec::<String>::new(), None::<String>);
    loop {
        let mut request = json!({"type": "members", "room": "arena"});
        if let Some(cursor) = &cursor {
            request["cursor"] = json!(cursor);
        }
        let page = host.request(request).await;
        assert!(page.to_string().len() <= 1 << 20, "a page within 1 MiB");
        assert_eq!(page["total"], MEMBERS, "{}", page["total"]);
        let members = page["members"].as_array().expect("members");
        assert!(members.len() <= 1000);
        listed.extend(members.iter().map(|member| member["user"].as_str().expect("user").to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, expected, "every member once, in order");
}

#[tokio::test]
async fn joins_through_other_nodes_count_toward_the_threshold_at_once() {
    let cluster = TestCluster::start_with(2, |c| {
        c.room_events_max_members = 4;
        // No round to correct a node's count: what it knows comes from the joins alone.
        c.room_size_interval = Duration::from_secs(3600);
    })
    .await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    // One member through n1, then four through n2: five members, past the threshold of four.
    let mut first = join_members(&n1.ws_url(), "crowd", "early", 1).await.remove(0);
    let _others = join_members(&n2.ws_url(), "crowd", "via-n2", 4).await;
    // n1 has seen one join of its own; had it counted on that, it would take the room for small.
    let _late = join_members(&n1.ws_url(), "crowd", "late", 1).await;
    let about_late: Vec<Value> =
        first.drain_of_type("member_joined").await.into_iter().filter(|event| event["user"] == "late-0000").collect();
    assert!(about_late.is_empty(), "a sixth member of a room of four at most: {about_late:?}");
}

#[tokio::test]
async fn a_big_room_whose_counts_stay_the_same_gets_no_more_room_size() {
    let cluster = TestCluster::start_with(2, |c| {
        c.room_events_max_members = 2;
        c.room_size_interval = Duration::from_millis(50);
    })
    .await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut on_n1 = join_members(&n1.ws_url(), "arena", "one", 3).await;
    let mut on_n2 = join_members(&n2.ws_url(), "arena", "two", 3).await;
    for member in [&mut on_n1[0], &mut on_n2[0]] {
        loop {
            let size = member.next_of_type("room_size").await;
            if size["members"] == 6 && size["online"] == 6 {
                break;
            }
        }
    }
    let sent_n1 = n1.metric("switchboard_room_size_events_total").await;
    let sent_n2 = n2.metric("switchboard_room_size_events_total").await;
    // Ten more rounds on each node, with nothing changed: nodes that each answered the other's
    // counts would go on sending both, every round.
    for node in [n1, n2] {
        let start = node.metric("switchboard_room_size_rounds_total").await;
        switchboard_testkit::eventually("ten more rounds", Duration::from_secs(10), || async {
            node.metric("switchboard_room_size_rounds_total").await >= start + 10.0
        })
        .await;
    }
    assert_eq!(n1.metric("switchboard_room_size_events_total").await, sent_n1, "n1 announced unchanged counts");
    assert_eq!(n2.metric("switchboard_room_size_events_total").await, sent_n2, "n2 announced unchanged counts");
    for member in [&mut on_n1[1], &mut on_n2[1]] {
        let sizes = member.drain_of_type("room_size").await;
        let last = sizes.last().expect("a room_size");
        assert_eq!((last["members"].as_u64(), last["online"].as_u64()), (Some(6), Some(6)), "{sizes:?}");
    }
}
