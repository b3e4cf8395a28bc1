//! The Redis backend of the bus: nodes of one cluster meet on Redis pub/sub channels named
//! `{cluster}:node:{id}`, `{cluster}:room:{name}` and `{cluster}:cluster`, so several clusters can
//! share one Redis.
//!
//! One background task owns the link: a multiplexed connection that publishes in pipelined
//! batches, and a dedicated pub/sub connection for the subscriptions. When either drops, the task
//! reports [`BusEvent::Disconnected`], reconnects with backoff, restores every subscription and
//! reports [`BusEvent::Reconnected`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ::redis::{AsyncConnectionConfig, Client, Msg, RedisError};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use crate::{Bus, BusCounters, BusError, BusEvent, BusMessage, Topic};

/// Bound of the inbound queue: the core reads it promptly, so a full queue means a stalled node,
/// whose messages are dropped rather than buffered without limit.
const INCOMING_CAPACITY: usize = 65_536;
/// Publications waiting for the link task; when full, `publish` waits a little (backpressure).
const OUTGOING_CAPACITY: usize = 16_384;
/// Most publications sent in one pipeline: one round trip carries a whole batch.
const PUBLISH_BATCH: usize = 1_024;
/// How long `publish` waits for room in a full outgoing queue before giving up.
const OUTGOING_WAIT: Duration = Duration::from_millis(500);
/// Bound of every connect attempt, so a dead broker is noticed instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of every request and ping on a connected link. Longer than a connect: a node starved of
/// CPU by a login storm answers late, and taking that for a lost link would discard what is
/// queued and make every client resume, the worst answer to overload. A closed connection is
/// noticed at once whatever this is.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `subscribe` waits for the link task; longer than one connect attempt plus one request.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// How often an idle pub/sub connection is pinged: a link that died silently is noticed.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// A node's handle on a Redis-backed cluster bus.
pub struct RedisBus {
    node_id: String,
    channels: ChannelNames,
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Publication>,
    /// Asks the link task to make the pub/sub connection match the subscription set.
    sync_requests: mpsc::UnboundedSender<oneshot::Sender<()>>,
    incoming: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    /// Dropped with the bus, which ends the link task.
    _shutdown: oneshot::Sender<()>,
}

/// State shared by the handle and the link task.
struct Shared {
    subscriptions: Mutex<Wanted>,
    /// False from the moment a lost link is noticed until it is back: `publish` fails fast.
    link_up: AtomicBool,
    counters: BusCounters,
}

/// The topics this node wants, and which of them changed since the link task last looked.
#[derive(Default)]
struct Wanted {
    /// All of them; the link task restores them all after a reconnect.
    topics: HashSet<Topic>,
    /// Added or removed since the last sync: a sync looks at these only, so its cost follows the
    /// changes, not the set (a topic per online user: comparing the whole set on every sync of a
    /// login storm made joining 100k members quadratic).
    changed: HashSet<Topic>,
}

impl Wanted {
    fn change(&mut self, topic: Topic, wanted: bool) -> bool {
        let changed = if wanted { self.topics.insert(topic.clone()) } else { self.topics.remove(&topic) };
        if changed {
            self.changed.insert(topic);
        }
        changed
    }
}

struct Publication {
    channel: String,
    frame: Vec<u8>,
}

impl RedisBus {
    /// Connects node `node_id` of cluster `cluster` to the Redis at `url`, subscribed to its own
    /// inbox and to the cluster topic. Fails if Redis cannot be reached now; later outages are
    /// reported as events and repaired in the background.
    pub async fn connect(url: &str, node_id: &str, cluster: &str) -> Result<RedisBus, BusError> {
        if node_id.is_empty() || node_id.len() > usize::from(u8::MAX) {
            return Err(BusError::Unavailable(format!("node id must be 1 to 255 bytes, got {}", node_id.len())));
        }
        // The error of a URL that does not parse never repeats the URL, which may hold a password.
        let client = Client::open(url).map_err(|error| BusError::Unavailable(format!("invalid redis url: {error}")))?;
        let address = client.get_connection_info().addr().to_string();
        let channels = ChannelNames::new(cluster);
        let shared = Arc::new(Shared {
            subscriptions: Mutex::new(Wanted {
                topics: HashSet::from([Topic::Node(node_id.to_owned()), Topic::Cluster]),
                changed: HashSet::new(),
            }),
            link_up: AtomicBool::new(false),
            counters: BusCounters::default(),
        });
        let (incoming_sender, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let (outgoing, outgoing_receiver) = mpsc::channel(OUTGOING_CAPACITY);
        let (sync_requests, sync_receiver) = mpsc::unbounded_channel();
        let (shutdown, shutdown_receiver) = oneshot::channel();
        let connections = Connections::open(&client, &shared, &channels)
            .await
            .map_err(|error| BusError::Unavailable(format!("cannot connect to redis at {address}: {error}")))?;
        shared.link_up.store(true, Ordering::Release);
        tracing::info!(address = %address, node = node_id, cluster, "redis bus connected");
        let link = Link {
            client,
            address,
            node_id: node_id.to_owned(),
            channels: channels.clone(),
            shared: shared.clone(),
            incoming: incoming_sender,
            outgoing: outgoing_receiver,
            sync_requests: sync_receiver,
            shutdown: shutdown_receiver,
        };
        tokio::spawn(link.run(connections));
        Ok(RedisBus {
            node_id: node_id.to_owned(),
            channels,
            shared,
            outgoing,
            sync_requests,
            incoming: Mutex::new(Some(incoming)),
            _shutdown: shutdown,
        })
    }

    /// Waits until the link task has applied the subscription set (or recorded it for the next
    /// reconnect while the link is down).
    async fn sync_subscriptions(&self) -> Result<(), BusError> {
        let (reply, done) = oneshot::channel();
        self.sync_requests.send(reply).map_err(|_| link_stopped())?;
        match timeout(SUBSCRIBE_WAIT, done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(link_stopped()),
            Err(_) => Err(BusError::Unavailable(
                "redis did not confirm the subscription in time; it is restored on reconnect".into(),
            )),
        }
    }
}

fn link_stopped() -> BusError {
    BusError::Unavailable("redis link task has stopped".into())
}

#[async_trait]
impl Bus for RedisBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Queues the publication for the link task and returns without waiting for Redis, so one
    /// publishing task is not held to one message per round trip. Fails fast while the link is down.
    async fn publish(&self, topic: Topic, payload: Bytes) -> Result<(), BusError> {
        if !self.shared.link_up.load(Ordering::Acquire) {
            return Err(BusError::Unavailable("redis link is down".into()));
        }
        let publication =
            Publication { channel: self.channels.of(&topic), frame: encode_frame(&self.node_id, &payload) };
        match self.outgoing.try_send(publication) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(publication)) => {
                match timeout(OUTGOING_WAIT, self.outgoing.send(publication)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(link_stopped()),
                    Err(_) => Err(BusError::Unavailable("redis publish queue is full".into())),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(link_stopped()),
        }
    }

    /// Records the topic (kept across reconnects) and returns once Redis confirmed it, or at once
    /// while the link is down.
    async fn subscribe(&self, topic: Topic) -> Result<(), BusError> {
        if !self.shared.subscriptions.lock().change(topic, true) {
            return Ok(());
        }
        self.sync_subscriptions().await
    }

    async fn unsubscribe(&self, topic: Topic) -> Result<(), BusError> {
        if !self.shared.subscriptions.lock().change(topic, false) {
            return Ok(());
        }
        self.sync_subscriptions().await
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.incoming.lock().take()
    }

    fn counters(&self) -> &BusCounters {
        &self.shared.counters
    }
}

/// Maps topics to the channel names of one cluster and back.
#[derive(Clone)]
struct ChannelNames {
    /// `{cluster}:`
    prefix: String,
}

impl ChannelNames {
    fn new(cluster: &str) -> Self {
        ChannelNames { prefix: format!("{cluster}:") }
    }

    fn of(&self, topic: &Topic) -> String {
        match topic {
            Topic::Node(id) => format!("{}node:{id}", self.prefix),
            Topic::Room(name) => format!("{}room:{name}", self.prefix),
            Topic::User(name) => format!("{}user:{name}", self.prefix),
            Topic::Cluster => format!("{}cluster", self.prefix),
        }
    }

    fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?;
        if rest == "cluster" {
            Some(Topic::Cluster)
        } else if let Some(id) = rest.strip_prefix("node:") {
            Some(Topic::Node(id.to_owned()))
        } else if let Some(name) = rest.strip_prefix("user:") {
            Some(Topic::User(name.to_owned()))
        } else {
            rest.strip_prefix("room:").map(|name| Topic::Room(name.to_owned()))
        }
    }
}

/// The wire frame: the sender's node id (length byte, then bytes) before the payload, because
/// Redis does not say who published, and echoes a publication to the publisher's own subscriptions.
fn encode_frame(node_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + node_id.len() + payload.len());
    // `connect` refused node ids longer than 255 bytes.
    frame.push(node_id.len() as u8);
    frame.extend_from_slice(node_id.as_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The sender's node id and the payload, or `None` for a frame that is not ours.
fn decode_frame(frame: &[u8]) -> Option<(&str, &[u8])> {
    let (&id_length, rest) = frame.split_first()?;
    if rest.len() < usize::from(id_length) || id_length == 0 {
        return None;
    }
    let (id, payload) = rest.split_at(usize::from(id_length));
    Some((std::str::from_utf8(id).ok()?, payload))
}

/// The two connections of one link session.
struct Connections {
    publisher: MultiplexedConnection,
    subscriber: PubSubSink,
    messages: PubSubStream,
    /// Topics subscribed on this pub/sub connection.
    subscribed: HashSet<Topic>,
}

impl Connections {
    /// Opens both connections and subscribes the whole subscription set.
    async fn open(client: &Client, shared: &Shared, channels: &ChannelNames) -> Result<Connections, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let publisher = client.get_multiplexed_async_connection_with_config(&config).await?;
        let pubsub = timeout(IO_TIMEOUT, client.get_async_pubsub()).await.map_err(timed_out)??;
        let (subscriber, messages) = pubsub.split();
        let mut connections = Connections { publisher, subscriber, messages, subscribed: HashSet::new() };
        connections.sync(shared, channels).await?;
        Ok(connections)
    }

    /// Makes the pub/sub connection's subscriptions match the subscription set.
    async fn sync(&mut self, shared: &Shared, channels: &ChannelNames) -> Result<(), RedisError> {
        // Compared as topics, named only when they change: with a topic per online user the set
        // is large, and a login storm syncs often.
        let (to_add, to_remove): (Vec<Topic>, Vec<Topic>) = {
            let mut wanted = shared.subscriptions.lock();
            let changed = std::mem::take(&mut wanted.changed);
            if self.subscribed.is_empty() {
                // A new connection (or a link's first sync): everything.
                (wanted.topics.iter().cloned().collect(), Vec::new())
            } else {
                let (added, removed): (Vec<Topic>, Vec<Topic>) =
                    changed.into_iter().partition(|topic| wanted.topics.contains(topic));
                (
                    added.into_iter().filter(|topic| !self.subscribed.contains(topic)).collect(),
                    removed.into_iter().filter(|topic| self.subscribed.contains(topic)).collect(),
                )
            }
        };
        if !to_add.is_empty() {
            let names: Vec<String> = to_add.iter().map(|topic| channels.of(topic)).collect();
            timeout(RESPONSE_TIMEOUT, self.subscriber.subscribe(&names)).await.map_err(timed_out)??;
            self.subscribed.extend(to_add);
        }
        if !to_remove.is_empty() {
            let names: Vec<String> = to_remove.iter().map(|topic| channels.of(topic)).collect();
            timeout(RESPONSE_TIMEOUT, self.subscriber.unsubscribe(&names)).await.map_err(timed_out)??;
            for topic in &to_remove {
                self.subscribed.remove(topic);
            }
        }
        Ok(())
    }
}

type PipelineResult = (usize, Result<(), RedisError>);

/// Why a link session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// The background task that owns the Redis connections.
struct Link {
    client: Client,
    /// `host:port`, never the URL: it may hold a password.
    address: String,
    node_id: String,
    channels: ChannelNames,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<BusEvent>,
    outgoing: mpsc::Receiver<Publication>,
    sync_requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    shutdown: oneshot::Receiver<()>,
}

impl Link {
    async fn run(mut self, mut connections: Connections) {
        loop {
            let reason = match self.serve(&mut connections).await {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason) => reason,
            };
            self.shared.link_up.store(false, Ordering::Release);
            tracing::warn!(address = %self.address, node = %self.node_id, reason = %reason, "redis link lost");
            self.emit(BusEvent::Disconnected);
            let Some(restored) = self.reconnect().await else { return };
            connections = restored;
            self.shared.link_up.store(true, Ordering::Release);
            tracing::info!(address = %self.address, node = %self.node_id, "redis link restored");
            self.emit(BusEvent::Reconnected);
        }
    }

    /// Serves one link session: delivers messages, applies subscription changes and publishes in
    /// batches, until the link is lost or the bus is dropped.
    async fn serve(&mut self, connections: &mut Connections) -> SessionEnd {
        let mut in_flight: Option<Pin<Box<dyn Future<Output = PipelineResult> + Send>>> = None;
        let mut health_check = tokio::time::interval_at(Instant::now() + HEALTH_CHECK_INTERVAL, HEALTH_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = &mut self.shutdown => return SessionEnd::Shutdown,
                message = connections.messages.next() => match message {
                    Some(message) => self.deliver(&message),
                    None => return SessionEnd::Lost("pub/sub connection closed".into()),
                },
                Some(reply) = self.sync_requests.recv() => {
                    // One sync answers every request queued so far: a login storm's subscriptions
                    // cost one diff of the set and one SUBSCRIBE, not one each.
                    let mut replies = vec![reply];
                    while let Ok(more) = self.sync_requests.try_recv() {
                        replies.push(more);
                    }
                    let result = connections.sync(&self.shared, &self.channels).await;
                    // The set is recorded either way: a failed sync is repaired by the reconnect.
                    for reply in replies {
                        let _ = reply.send(());
                    }
                    if let Err(error) = result {
                        return SessionEnd::Lost(format!("subscribing failed: {error}"));
                    }
                }
                (count, result) = pipeline_result(&mut in_flight), if in_flight.is_some() => {
                    in_flight = None;
                    match result {
                        Ok(()) => {
                            self.shared.counters.sent.fetch_add(count as u64, Ordering::Relaxed);
                        }
                        Err(error) if is_link_failure(&error) => {
                            return SessionEnd::Lost(format!("publishing failed: {error}"));
                        }
                        Err(error) => {
                            let node = &self.node_id;
                            tracing::warn!(node = %node, count, error = %error, "redis refused a publish batch");
                        }
                    }
                }
                Some(first) = self.outgoing.recv(), if in_flight.is_none() => {
                    in_flight = Some(self.publish_batch(first, &connections.publisher));
                }
                _ = health_check.tick() => {
                    let ping = timeout(RESPONSE_TIMEOUT, connections.subscriber.ping::<::redis::Value>()).await;
                    match ping {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return SessionEnd::Lost(format!("ping failed: {error}")),
                        Err(_) => return SessionEnd::Lost("ping timed out".into()),
                    }
                }
            }
        }
    }

    /// Sends `first` and whatever else is queued (up to a batch) as one pipeline.
    fn publish_batch(
        &mut self,
        first: Publication,
        publisher: &MultiplexedConnection,
    ) -> Pin<Box<dyn Future<Output = PipelineResult> + Send>> {
        let mut pipeline = ::redis::pipe();
        let mut count = 0;
        let mut next = Some(first);
        while let Some(publication) = next {
            pipeline.cmd("PUBLISH").arg(publication.channel).arg(publication.frame).ignore();
            count += 1;
            next = if count < PUBLISH_BATCH { self.outgoing.try_recv().ok() } else { None };
        }
        let mut publisher = publisher.clone();
        Box::pin(async move { (count, pipeline.exec_async(&mut publisher).await) })
    }

    /// Retries with backoff until both connections are back with every subscription, or the bus
    /// is dropped (`None`). Publications queued before the loss was noticed are discarded.
    async fn reconnect(&mut self) -> Option<Connections> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt: u32 = 0;
        loop {
            let wake_at = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = &mut self.shutdown => return None,
                    _ = sleep_until(wake_at) => break,
                    // Recorded in the set, which the next attempt subscribes.
                    Some(reply) = self.sync_requests.recv() => { let _ = reply.send(()); }
                }
            }
            let discarded = self.discard_outgoing();
            if discarded > 0 {
                tracing::warn!(node = %self.node_id, discarded, "redis link is down, discarding queued publications");
            }
            attempt += 1;
            let result = tokio::select! {
                _ = &mut self.shutdown => return None,
                result = Connections::open(&self.client, &self.shared, &self.channels) => result,
            };
            match result {
                Ok(connections) => return Some(connections),
                Err(error) => {
                    tracing::debug!(address = %self.address, attempt, error = %error, "redis reconnect failed");
                }
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    fn discard_outgoing(&mut self) -> usize {
        let mut discarded = 0;
        while self.outgoing.try_recv().is_ok() {
            discarded += 1;
        }
        discarded
    }

    fn deliver(&self, message: &Msg) {
        let channel = message.get_channel_name();
        let Some(topic) = self.channels.topic(channel) else {
            tracing::warn!(node = %self.node_id, channel, "dropping a redis message on an unknown channel");
            return;
        };
        let frame = message.get_payload_bytes();
        let Some((from_node, payload)) = decode_frame(frame) else {
            tracing::warn!(node = %self.node_id, channel, length = frame.len(), "dropping a malformed bus frame");
            return;
        };
        if from_node == self.node_id {
            return;
        }
        let Some(slot) = self.reserve_incoming() else {
            self.shared.counters.dropped.record(Some(&topic));
            return;
        };
        // Counted before the node can see the message, so a reader never finds the counter behind.
        self.shared.counters.received.fetch_add(1, Ordering::Relaxed);
        slot.send(BusEvent::Message(BusMessage {
            from_node: from_node.to_owned(),
            topic,
            payload: Bytes::copy_from_slice(payload),
        }));
    }

    fn emit(&self, event: BusEvent) {
        if let Some(slot) = self.reserve_incoming() {
            slot.send(event);
        }
    }

    /// A slot in the node's inbound queue, or `None` when the event must be dropped.
    fn reserve_incoming(&self) -> Option<mpsc::Permit<'_, BusEvent>> {
        match self.incoming.try_reserve() {
            Ok(slot) => Some(slot),
            Err(mpsc::error::TrySendError::Full(())) => {
                tracing::warn!(
                    node = %self.node_id,
                    capacity = INCOMING_CAPACITY,
                    "bus incoming queue is full, dropping an event"
                );
                None
            }
            // Nobody reads any more: the node is shutting down.
            Err(mpsc::error::TrySendError::Closed(())) => None,
        }
    }
}

/// Waits for the pipeline in flight; only polled while there is one.
async fn pipeline_result(
    in_flight: &mut Option<Pin<Box<dyn Future<Output = PipelineResult> + Send>>>,
) -> PipelineResult {
    match in_flight {
        Some(pipeline) => pipeline.await,
        None => std::future::pending().await,
    }
}

/// Errors after which the connection cannot be trusted any more (as opposed to a command Redis
/// refused, such as an ACL denial).
fn is_link_failure(error: &RedisError) -> bool {
    error.is_unrecoverable_error() || error.is_io_error() || error.is_timeout() || error.is_connection_dropped()
}

fn timed_out(_: tokio::time::error::Elapsed) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let names = ChannelNames::new("switchboard");
        for topic in [
            Topic::Node("n-1".into()),
            Topic::Room("general.chat".into()),
            Topic::User("bob.smith".into()),
            Topic::Cluster,
        ] {
            assert_eq!(names.topic(&names.of(&topic)), Some(topic));
        }
        assert_eq!(names.of(&Topic::Room("lobby".into())), "switchboard:room:lobby");
        assert_eq!(names.topic("other:room:lobby"), None);
        assert_eq!(names.topic("switchboard:queue:x"), None);
    }

    #[test]
    fn frames_round_trip_and_malformed_ones_are_refused() {
        let frame = encode_frame("node-a", b"hello");
        assert_eq!(decode_frame(&frame), Some(("node-a", &b"hello"[..])));
        assert_eq!(decode_frame(&encode_frame("b", b"")), Some(("b", &b""[..])));
        assert_eq!(decode_frame(b""), None);
        assert_eq!(decode_frame(b"\x05abc"), None);
        assert_eq!(decode_frame(b"\x00payload"), None);
        assert_eq!(decode_frame(b"\x02\xff\xfe"), None);
    }
}
