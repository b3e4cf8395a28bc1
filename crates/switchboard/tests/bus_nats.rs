//! The NATS bus against a real nats-server: targeted routing between nodes, recovery after the
//! server is killed and started again, and the message counters.
//!
//! Absence is shown without sleeping: a later marker sent on the same path must be the first thing
//! that arrives.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_bus::{Bus, BusError, BusEvent, BusMessage, NatsBus, Topic};
use switchboard_testkit::services::{free_port, wait_for_port, ServiceProcess};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// Bound of every wait: generous, since reconnecting after a restart takes up to about a second.
const WAIT: Duration = Duration::from_secs(10);

async fn node(url: &str, id: &str, cluster: &str) -> (NatsBus, Receiver<BusEvent>) {
    let bus = NatsBus::connect(url, id, cluster).await.expect("connect to nats");
    let inbox = bus.take_incoming().expect("inbox taken once");
    (bus, inbox)
}

async fn next_event(inbox: &mut Receiver<BusEvent>) -> BusEvent {
    timeout(WAIT, inbox.recv()).await.expect("no bus event in time").expect("bus inbox closed")
}

async fn next_message(inbox: &mut Receiver<BusEvent>) -> BusMessage {
    match next_event(inbox).await {
        BusEvent::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[track_caller]
fn assert_message(message: &BusMessage, from_node: &str, topic: Topic, payload: &str) {
    assert_eq!(message.from_node, from_node);
    assert_eq!(message.topic, topic);
    assert_eq!(message.payload, payload);
}

fn room(name: &str) -> Topic {
    Topic::Room(name.into())
}

fn node_topic(id: &str) -> Topic {
    Topic::Node(id.into())
}

#[tokio::test]
async fn each_topic_reaches_exactly_its_subscribers_and_never_the_sender() {
    let nats = ServiceProcess::nats();
    let cluster = "routing-test";
    let (a, mut inbox_a) = node(&nats.url(), "a", cluster).await;
    let (b, mut inbox_b) = node(&nats.url(), "b", cluster).await;
    let (c, mut inbox_c) = node(&nats.url(), "c", cluster).await;

    // A node topic reaches that node.
    a.publish(node_topic("b"), "to-b".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", node_topic("b"), "to-b");

    // A room with a dot in its name reaches its subscribers, not the nodes of look-alike rooms.
    a.subscribe(room("team.red")).await.unwrap();
    b.subscribe(room("team.red")).await.unwrap();
    c.subscribe(room("team")).await.unwrap();
    c.subscribe(room("team_red")).await.unwrap();
    a.publish(room("team.red"), "room-1".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", room("team.red"), "room-1");

    // The cluster topic reaches every other node; c got nothing before it (not b's node message,
    // not the room).
    a.publish(Topic::Cluster, "all".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", Topic::Cluster, "all");
    assert_message(&next_message(&mut inbox_c).await, "a", Topic::Cluster, "all");

    // a is subscribed to the room and the cluster it published on, yet the first thing it gets is
    // a later message from b.
    b.publish(node_topic("a"), "marker-a".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_a).await, "b", node_topic("a"), "marker-a");

    // c subscribed to the room receives it; once unsubscribed, it does not.
    c.subscribe(room("team.red")).await.unwrap();
    a.publish(room("team.red"), "room-2".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", room("team.red"), "room-2");
    assert_message(&next_message(&mut inbox_c).await, "a", room("team.red"), "room-2");
    c.unsubscribe(room("team.red")).await.unwrap();
    a.publish(room("team.red"), "room-3".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", room("team.red"), "room-3");
    a.publish(node_topic("c"), "marker-c".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_c).await, "a", node_topic("c"), "marker-c");

    assert!(inbox_a.try_recv().is_err(), "a got more than the marker");
    assert!(inbox_b.try_recv().is_err(), "b got more than its messages");
    assert!(inbox_c.try_recv().is_err(), "c got more than its messages");
}

#[tokio::test]
async fn a_restarted_server_brings_the_link_and_earlier_subscriptions_back() {
    let mut nats = ServiceProcess::nats();
    let cluster = "restart-test";
    let (a, mut inbox_a) = node(&nats.url(), "a", cluster).await;
    let (b, mut inbox_b) = node(&nats.url(), "b", cluster).await;
    b.subscribe(room("ops.room")).await.unwrap();
    a.publish(room("ops.room"), "before".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", room("ops.room"), "before");

    nats.kill();
    assert!(matches!(next_event(&mut inbox_a).await, BusEvent::Disconnected));
    assert!(matches!(next_event(&mut inbox_b).await, BusEvent::Disconnected));
    let refused = a.publish(room("ops.room"), "during".into()).await;
    assert!(matches!(refused, Err(BusError::Unavailable(_))), "publish while down gave {refused:?}");

    nats.start();
    assert!(matches!(next_event(&mut inbox_a).await, BusEvent::Reconnected));
    assert!(matches!(next_event(&mut inbox_b).await, BusEvent::Reconnected));

    // The room subscription made before the outage, and both node inboxes, work again.
    a.publish(room("ops.room"), "after".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", room("ops.room"), "after");
    b.publish(node_topic("a"), "back".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_a).await, "b", node_topic("a"), "back");
    assert_eq!(a.counters().sent.load(Ordering::Relaxed), 2, "the refused publication was counted");
}

#[tokio::test]
async fn counters_count_publications_and_deliveries() {
    let nats = ServiceProcess::nats();
    let cluster = "counters-test";
    let (a, mut inbox_a) = node(&nats.url(), "a", cluster).await;
    let (b, mut inbox_b) = node(&nats.url(), "b", cluster).await;
    let (c, mut inbox_c) = node(&nats.url(), "c", cluster).await;

    a.publish(node_topic("b"), "1".into()).await.unwrap();
    a.publish(Topic::Cluster, "2".into()).await.unwrap();
    a.publish(room("nobody"), "3".into()).await.unwrap();
    a.publish(node_topic("c"), "4".into()).await.unwrap();
    a.publish(node_topic("b"), "5".into()).await.unwrap();
    // Order holds per topic ("1" before "5"), not across topics (the cluster's "2" may come first).
    let mut at_b = Vec::new();
    for _ in 0..3 {
        at_b.push(String::from_utf8(next_message(&mut inbox_b).await.payload.to_vec()).unwrap());
    }
    at_b.retain(|payload| payload != "2");
    assert_eq!(at_b, ["1", "5"], "b's node messages, in order, beside the cluster one");
    for _ in 0..2 {
        next_message(&mut inbox_c).await;
    }
    b.publish(node_topic("a"), "6".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_a).await, "b", node_topic("a"), "6");

    let count =
        |bus: &NatsBus| (bus.counters().sent.load(Ordering::Relaxed), bus.counters().received.load(Ordering::Relaxed));
    assert_eq!(count(&a), (5, 1), "a: sent, received (its own cluster message not counted)");
    assert_eq!(count(&b), (1, 3), "b: sent, received");
    assert_eq!(count(&c), (0, 2), "c: sent, received");
}

/// A nats-server requiring a user and password, killed when dropped.
struct ServerWithPassword(Child);

impl Drop for ServerWithPassword {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn credentials_in_the_url_are_used_and_never_shown() {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--user", "sb", "--pass", "s3cr@t"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let _server = ServerWithPassword(child);
    wait_for_port(port, WAIT);

    let (a, _inbox_a) = node(&format!("nats://sb:s3cr%40t@127.0.0.1:{port}"), "a", "auth-test").await;
    let (_b, mut inbox_b) = node(&format!("nats://sb:s3cr%40t@127.0.0.1:{port}"), "b", "auth-test").await;
    a.publish(node_topic("b"), "authenticated".into()).await.unwrap();
    assert_message(&next_message(&mut inbox_b).await, "a", node_topic("b"), "authenticated");

    let refused = NatsBus::connect(&format!("nats://sb:wrong-secret@127.0.0.1:{port}"), "c", "auth-test").await;
    let Err(BusError::Unavailable(message)) = refused else { panic!("a wrong password was accepted") };
    assert!(!message.contains("wrong-secret"), "the error shows the password: {message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "the error does not say where: {message}");
}
