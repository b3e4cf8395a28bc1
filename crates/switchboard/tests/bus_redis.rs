//! The Redis bus against a real `redis-server`: targeted routing between nodes, recovery after the
//! broker restarts, and the message counters.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_bus::{Bus, BusError, BusEvent, BusMessage, RedisBus, Topic};
use switchboard_testkit::services::ServiceProcess;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

/// Bound of every wait for an event: long enough for a reconnect with backoff, short enough that a
/// missing event fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(15);

/// A cluster name no other test uses, so tests sharing a Redis could not hear each other.
fn unique_cluster(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("test-{test}-{}-{nanos}", std::process::id())
}

async fn connect(redis: &ServiceProcess, node: &str, cluster: &str) -> (RedisBus, Receiver<BusEvent>) {
    let bus = RedisBus::connect(&redis.url(), node, cluster).await.expect("connect to redis");
    let inbox = bus.take_incoming().expect("incoming taken once");
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

/// Asserts the next event is a message with this sender, topic and payload.
async fn expect_message(inbox: &mut Receiver<BusEvent>, from: &str, topic: Topic, payload: &str) {
    let message = next_message(inbox).await;
    assert_eq!(
        (message.from_node.as_str(), &message.topic, &message.payload[..]),
        (from, &topic, payload.as_bytes()),
        "unexpected message"
    );
}

fn room(name: &str) -> Topic {
    Topic::Room(name.to_owned())
}

fn node(id: &str) -> Topic {
    Topic::Node(id.to_owned())
}

async fn publish(bus: &RedisBus, topic: Topic, payload: &'static str) {
    bus.publish(topic, Bytes::from_static(payload.as_bytes())).await.expect("publish");
}

#[tokio::test]
async fn messages_reach_only_the_nodes_subscribed_to_their_topic() {
    let redis = ServiceProcess::redis();
    let cluster = unique_cluster("targeted");
    let (a, mut inbox_a) = connect(&redis, "a", &cluster).await;
    let (b, mut inbox_b) = connect(&redis, "b", &cluster).await;
    let (_c, mut inbox_c) = connect(&redis, "c", &cluster).await;
    a.subscribe(room("lobby")).await.unwrap();
    b.subscribe(room("lobby")).await.unwrap();

    publish(&a, node("c"), "pm for c").await;
    publish(&a, room("lobby"), "room 1").await;
    publish(&a, Topic::Cluster, "all 1").await;
    // Markers published after the rest: each is the next thing its node gets only if nothing
    // meant for others slipped in before it.
    publish(&a, node("b"), "marker b").await;
    publish(&a, node("c"), "marker c").await;
    publish(&b, node("a"), "marker a").await;

    expect_message(&mut inbox_b, "a", room("lobby"), "room 1").await;
    expect_message(&mut inbox_b, "a", Topic::Cluster, "all 1").await;
    expect_message(&mut inbox_b, "a", node("b"), "marker b").await;

    expect_message(&mut inbox_c, "a", node("c"), "pm for c").await;
    expect_message(&mut inbox_c, "a", Topic::Cluster, "all 1").await;
    expect_message(&mut inbox_c, "a", node("c"), "marker c").await;

    // a is subscribed to the room and the cluster it published to, yet hears none of its own.
    expect_message(&mut inbox_a, "b", node("a"), "marker a").await;

    b.unsubscribe(room("lobby")).await.unwrap();
    publish(&a, room("lobby"), "room 2").await;
    publish(&a, node("b"), "marker b 2").await;
    expect_message(&mut inbox_b, "a", node("b"), "marker b 2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_reported_and_subscriptions_come_back() {
    let mut redis = ServiceProcess::redis();
    let cluster = unique_cluster("restart");
    let (a, mut inbox_a) = connect(&redis, "a", &cluster).await;
    let (b, mut inbox_b) = connect(&redis, "b", &cluster).await;
    b.subscribe(room("lobby")).await.unwrap();
    publish(&a, room("lobby"), "before").await;
    expect_message(&mut inbox_b, "a", room("lobby"), "before").await;

    redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    assert!(matches!(next_event(&mut inbox_a).await, BusEvent::Disconnected));
    assert!(matches!(next_event(&mut inbox_b).await, BusEvent::Disconnected));

    let started = Instant::now();
    let refused = timeout(Duration::from_secs(1), a.publish(room("lobby"), Bytes::from_static(b"during")))
        .await
        .expect("publish hangs while redis is down");
    assert!(matches!(refused, Err(BusError::Unavailable(_))), "publish while down: {refused:?}");
    assert!(started.elapsed() < Duration::from_millis(200), "publish took {:?} to fail", started.elapsed());

    let _redis = tokio::task::spawn_blocking(move || {
        redis.start();
        redis
    })
    .await
    .unwrap();
    // Reported once: the next event after the outage is the recovery, not another loss.
    let after_a = next_event(&mut inbox_a).await;
    assert!(matches!(after_a, BusEvent::Reconnected), "a got {after_a:?}");
    let after_b = next_event(&mut inbox_b).await;
    assert!(matches!(after_b, BusEvent::Reconnected), "b got {after_b:?}");

    // The room b joined before the outage is subscribed again on the new connection.
    publish(&a, room("lobby"), "after").await;
    expect_message(&mut inbox_b, "a", room("lobby"), "after").await;
    publish(&b, node("a"), "inbox back").await;
    expect_message(&mut inbox_a, "b", node("a"), "inbox back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_sent_and_received_messages() {
    const COUNT: u64 = 20_000;
    let redis = ServiceProcess::redis();
    let cluster = unique_cluster("counters");
    let (a, mut inbox_a) = connect(&redis, "a", &cluster).await;
    let (b, mut inbox_b) = connect(&redis, "b", &cluster).await;

    let started = Instant::now();
    for index in 0..COUNT {
        a.publish(node("b"), Bytes::from(index.to_string())).await.expect("publish");
    }
    let published_in = started.elapsed();
    for index in 0..COUNT {
        let message = next_message(&mut inbox_b).await;
        assert_eq!(&message.payload[..], index.to_string().as_bytes(), "messages arrive in order");
    }
    let delivered_in = started.elapsed();
    // `sent` counts publications Redis acknowledged, which can trail their delivery a little.
    timeout(WAIT, async {
        while a.counters().sent.load(Ordering::Relaxed) < COUNT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("sent counter reaches the number of publications");
    eprintln!(
        "redis bus, one publishing task: {COUNT} publishes queued in {published_in:?} ({:.0}/s), \
         delivered in {delivered_in:?} ({:.0}/s)",
        COUNT as f64 / published_in.as_secs_f64(),
        COUNT as f64 / delivered_in.as_secs_f64(),
    );

    assert_eq!(a.counters().sent.load(Ordering::Relaxed), COUNT);
    assert_eq!(b.counters().received.load(Ordering::Relaxed), COUNT);
    assert_eq!(b.counters().sent.load(Ordering::Relaxed), 0);
    // a hears its own cluster publication echoed by Redis, drops it and counts only what b sends.
    publish(&a, Topic::Cluster, "to everyone").await;
    expect_message(&mut inbox_b, "a", Topic::Cluster, "to everyone").await;
    publish(&b, node("a"), "marker a").await;
    expect_message(&mut inbox_a, "b", node("a"), "marker a").await;
    assert_eq!(a.counters().received.load(Ordering::Relaxed), 1);
}
