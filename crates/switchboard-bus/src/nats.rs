//! The NATS backend of the cluster bus: nodes of one cluster share a NATS server (or NATS cluster),
//! and NATS routes each publication only to the connections subscribed to its subject.
//!
//! Subjects are `{cluster}.node.{id}`, `{cluster}.room.{name}` and `{cluster}.cluster`, so several
//! Switchboard clusters can share one NATS. Every name becomes one subject token (see
//! [`subject_token`]): '.' separates NATS tokens and '*' and '>' are wildcards.
//!
//! The sender's node id travels in the `Sb-From` header, leaving the payload untouched. The
//! connection is opened with `no_echo`, so the server does not send a node its own publications;
//! messages whose header names this node are dropped all the same.
//!
//! async-nats reconnects (without limit) and resubscribes by itself; its connection events become
//! [`BusEvent::Disconnected`] and [`BusEvent::Reconnected`]. While the link is down, `publish`
//! fails with [`BusError::Unavailable`] instead of letting async-nats buffer the publication: the
//! core then knows that nothing crosses nodes, and recovers through its reconnect path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, HeaderValue, ServerAddr, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Bus, BusCounters, BusError, BusEvent, BusMessage, Topic};

/// Bound of the node's inbound queue, as for the in-process bus: a node that stops reading loses
/// messages (with a warning) instead of growing without limit.
const INBOX_CAPACITY: usize = 65_536;
/// Header carrying the publishing node's id.
const FROM_HEADER: &str = "Sb-From";
/// Bound of a round trip to the server (see [`round_trip`]); a healthy server answers in
/// milliseconds.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// A half-open link (no RST, e.g. a network partition) is noticed after two unanswered pings.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Longest pause between reconnect attempts: a restarted server is found within about a second.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// One node's link to the cluster through NATS.
pub struct NatsBus {
    client: Client,
    node_id: String,
    subjects: Subjects,
    /// The `Sb-From` header of every publication, built once.
    from_header: HeaderMap,
    /// False from a lost link until it is back with every subscription restored.
    link_up: Arc<AtomicBool>,
    /// One forwarding task per subscribed topic; held across the subscribe call so that two
    /// concurrent subscriptions to a topic do not both reach NATS (which would deliver twice).
    subscriptions: tokio::sync::Mutex<HashMap<Topic, JoinHandle<()>>>,
    events: mpsc::Sender<BusEvent>,
    incoming: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    counters: Arc<BusCounters>,
    link_watcher: JoinHandle<()>,
}

impl NatsBus {
    /// Connects to NATS at `url` (`nats://[user:password@ | token@]host:port`, or several
    /// comma-separated), as node `node_id` of cluster `cluster`, subscribed to its own node topic
    /// and to the cluster topic.
    pub async fn connect(url: &str, node_id: &str, cluster: &str) -> Result<NatsBus, BusError> {
        if node_id.is_empty() || cluster.is_empty() {
            return Err(BusError::Unavailable("node id and cluster name must not be empty".into()));
        }
        let from_value: HeaderValue = node_id
            .parse()
            .map_err(|_| BusError::Unavailable(format!("node id {node_id:?} cannot be sent in a nats header")))?;
        let mut from_header = HeaderMap::new();
        from_header.insert(FROM_HEADER, from_value);
        let (servers, options) = servers_and_credentials(url)?;
        let shown = shown_servers(&servers);

        let (link_changes, link_changes_received) = mpsc::unbounded_channel();
        let counters = Arc::new(BusCounters::default());
        let dropped_counters = counters.clone();
        let client = options
            .name(format!("switchboard-{node_id}"))
            .no_echo()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .ping_interval(PING_INTERVAL)
            .request_timeout(Some(ROUND_TRIP_TIMEOUT))
            .event_callback(move |event| {
                report_link_change(&link_changes, &dropped_counters, event);
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(|error| {
                tracing::warn!(servers = %shown, %error, "cannot connect to nats");
                BusError::Unavailable(format!("cannot connect to nats at {shown}: {error}"))
            })?;

        let subjects = Subjects::new(cluster);
        let (events, incoming) = mpsc::channel(INBOX_CAPACITY);
        let link_up = Arc::new(AtomicBool::new(true));
        let link_watcher = tokio::spawn(watch_link(
            client.clone(),
            link_changes_received,
            events.clone(),
            link_up.clone(),
            subjects.round_trip(node_id),
        ));
        let bus = NatsBus {
            client,
            node_id: node_id.to_owned(),
            subjects,
            from_header,
            link_up,
            subscriptions: tokio::sync::Mutex::new(HashMap::new()),
            events,
            incoming: Mutex::new(Some(incoming)),
            counters,
            link_watcher,
        };
        for topic in [Topic::Node(node_id.to_owned()), Topic::Cluster] {
            bus.subscribe(topic).await?;
        }
        tracing::info!(servers = %shown, node = node_id, cluster, "connected to nats");
        Ok(bus)
    }

    fn link_is_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst) && self.client.connection_state() == State::Connected
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.link_watcher.abort();
        for (_, forwarder) in self.subscriptions.get_mut().drain() {
            forwarder.abort();
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn publish(&self, topic: Topic, payload: Bytes) -> Result<(), BusError> {
        if !self.link_is_up() {
            return Err(BusError::Unavailable("nats link is down".into()));
        }
        self.client
            .publish_with_headers(self.subjects.of(&topic), self.from_header.clone(), payload)
            .await
            .map_err(|error| BusError::Unavailable(format!("nats publish failed: {error}")))?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Returns once the server has the subscription, so that a publication made afterwards by
    /// another node reaches this one. While the link is down the subscription is only recorded,
    /// and async-nats makes it on the server when the link is back (before `Reconnected`).
    async fn subscribe(&self, topic: Topic) -> Result<(), BusError> {
        {
            let mut subscriptions = self.subscriptions.lock().await;
            if subscriptions.contains_key(&topic) {
                return Ok(());
            }
            let subscriber = self
                .client
                .subscribe(self.subjects.of(&topic))
                .await
                .map_err(|error| BusError::Unavailable(format!("nats subscribe failed: {error}")))?;
            let forwarder = tokio::spawn(forward(
                subscriber,
                topic.clone(),
                self.node_id.clone(),
                self.events.clone(),
                self.counters.clone(),
            ));
            subscriptions.insert(topic, forwarder);
        }
        if self.client.connection_state() == State::Connected {
            round_trip(&self.client, &self.subjects.round_trip(&self.node_id)).await;
        }
        Ok(())
    }

    /// Once this returns, nothing more of `topic` reaches the inbox: the forwarding task is gone,
    /// and dropping its subscriber unsubscribes on the server.
    async fn unsubscribe(&self, topic: Topic) -> Result<(), BusError> {
        let forwarder = self.subscriptions.lock().await.remove(&topic);
        if let Some(forwarder) = forwarder {
            forwarder.abort();
            let _ = forwarder.await;
        }
        Ok(())
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.incoming.lock().take()
    }

    fn counters(&self) -> &BusCounters {
        &self.counters
    }
}

/// The subject of each topic of one cluster.
struct Subjects {
    /// The escaped cluster name.
    prefix: String,
}

impl Subjects {
    fn new(cluster: &str) -> Subjects {
        Subjects { prefix: subject_token(cluster) }
    }

    fn of(&self, topic: &Topic) -> String {
        let prefix = &self.prefix;
        match topic {
            Topic::Node(id) => format!("{prefix}.node.{}", subject_token(id)),
            Topic::Room(name) => format!("{prefix}.room.{}", subject_token(name)),
            Topic::User(name) => format!("{prefix}.user.{}", subject_token(name)),
            Topic::Cluster => format!("{prefix}.cluster"),
        }
    }

    /// A subject nobody subscribes to, for [`round_trip`].
    fn round_trip(&self, node_id: &str) -> String {
        format!("{}.sync.{}", self.prefix, subject_token(node_id))
    }
}

/// A name as one NATS subject token. Letters a-z, digits, '_' and '-' stay; '.' (allowed in names,
/// but the token separator) becomes '~'; any other byte (wildcards, spaces, upper case) becomes
/// `%XX`. Neither '~' nor '%' is kept as is, so distinct names give distinct tokens.
fn subject_token(name: &str) -> String {
    let mut token = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => token.push(char::from(byte)),
            b'.' => token.push('~'),
            other => {
                let _ = write!(token, "%{other:02X}");
            }
        }
    }
    token
}

/// Waits until the server has processed everything this connection sent before (a SUB). A flush
/// only proves the bytes left this process; a request to a subject nobody serves is answered "no
/// responders" by the server after it has handled the commands queued before it. Returns whether
/// the answer came.
async fn round_trip(client: &Client, subject: &str) -> bool {
    match client.request(subject.to_owned(), Bytes::new()).await {
        Ok(_) => true,
        Err(error) if error.kind() == RequestErrorKind::NoResponders => true,
        Err(error) => {
            tracing::debug!(%error, "nats round trip failed");
            false
        }
    }
}

/// Moves one subscription's messages into the node's inbox, in order, without this node's own.
async fn forward(
    mut subscriber: Subscriber,
    topic: Topic,
    own_node_id: String,
    events: mpsc::Sender<BusEvent>,
    counters: Arc<BusCounters>,
) {
    let mut dropped: u64 = 0;
    while let Some(message) = subscriber.next().await {
        let Some(from_node) = message.headers.as_ref().and_then(|headers| headers.get(FROM_HEADER)) else {
            tracing::debug!(?topic, "nats message without sender header ignored");
            continue;
        };
        if from_node.as_str() == own_node_id {
            continue;
        }
        let from_node = from_node.as_str().to_owned();
        let event = BusEvent::Message(BusMessage { from_node, topic: topic.clone(), payload: message.payload });
        match events.try_send(event) {
            Ok(()) => {
                counters.received.fetch_add(1, Ordering::Relaxed);
                if dropped > 0 {
                    tracing::warn!(?topic, dropped, "bus inbox takes messages again");
                    dropped = 0;
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                counters.dropped.record(Some(&topic));
                if dropped == 0 {
                    tracing::warn!(?topic, "bus inbox full, dropping messages");
                }
                dropped += 1;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

enum LinkChange {
    Lost,
    /// Also reported for the first connection.
    Established,
}

/// Runs in async-nats' event task: it must not block, so it only hands the change over.
fn report_link_change(link_changes: &mpsc::UnboundedSender<LinkChange>, counters: &BusCounters, event: Event) {
    let change = match event {
        Event::Disconnected => LinkChange::Lost,
        Event::Connected => LinkChange::Established,
        Event::SlowConsumer(_) => {
            tracing::warn!("nats dropped messages for a subscription that fell behind");
            counters.dropped.record(None);
            return;
        }
        _ => return,
    };
    let _ = link_changes.send(change);
}

/// Turns link changes into bus events: `Disconnected` once per outage, `Reconnected` once the
/// subscriptions are back on the server.
async fn watch_link(
    client: Client,
    mut link_changes: mpsc::UnboundedReceiver<LinkChange>,
    events: mpsc::Sender<BusEvent>,
    link_up: Arc<AtomicBool>,
    round_trip_subject: String,
) {
    let mut outage_reported = false;
    while let Some(change) = link_changes.recv().await {
        match change {
            LinkChange::Lost => {
                link_up.store(false, Ordering::SeqCst);
                if !outage_reported {
                    outage_reported = true;
                    tracing::warn!("nats link lost, publications fail until it is back");
                    let _ = events.send(BusEvent::Disconnected).await;
                }
            }
            LinkChange::Established if outage_reported => {
                // async-nats resubscribes before it sends any new command, so an answered round
                // trip means every subscription is back. If it fails while connected, the
                // subscriptions were still sent: report the link as back rather than never.
                if !round_trip(&client, &round_trip_subject).await && client.connection_state() != State::Connected {
                    continue;
                }
                outage_reported = false;
                link_up.store(true, Ordering::SeqCst);
                tracing::info!("nats link back, subscriptions restored");
                let _ = events.send(BusEvent::Reconnected).await;
            }
            LinkChange::Established => {}
        }
    }
}

/// Retries at once, then every 100 ms more up to a second: quick to find a restarted server
/// without hammering a dead one.
fn reconnect_delay(attempts: usize) -> Duration {
    let steps = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
    Duration::from_millis(100).saturating_mul(steps).min(MAX_RECONNECT_DELAY)
}

/// The servers of `url` without credentials, and the credentials as connect options: async-nats
/// does not read credentials from the URL, and its debug logs print server addresses.
fn servers_and_credentials(url: &str) -> Result<(Vec<ServerAddr>, ConnectOptions), BusError> {
    let mut options = ConnectOptions::new();
    let mut servers = Vec::new();
    for part in url.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        // The parse error quotes the URL, which may hold a password: it is not passed on.
        let address: ServerAddr =
            part.parse().map_err(|_| BusError::Unavailable(format!("invalid nats url #{}", servers.len() + 1)))?;
        let mut address = address.into_inner();
        if !address.username().is_empty() {
            let user = percent_decoded(address.username());
            options = match address.password() {
                Some(password) => options.user_and_password(user, percent_decoded(password)),
                None => options.token(user),
            };
            // Fails only for URLs that cannot hold credentials, and this one held some.
            let _ = address.set_username("");
            let _ = address.set_password(None);
        }
        let address = ServerAddr::from_url(address).map_err(|error| BusError::Unavailable(error.to_string()))?;
        servers.push(address);
    }
    if servers.is_empty() {
        return Err(BusError::Unavailable("no nats url given".into()));
    }
    Ok((servers, options))
}

/// `host:port` of each server, for logs and errors.
fn shown_servers(servers: &[ServerAddr]) -> String {
    let shown: Vec<String> = servers.iter().map(|server| format!("{}:{}", server.host(), server.port())).collect();
    shown.join(",")
}

/// Decodes the `%XX` escapes a URL's user info may hold.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                std::str::from_utf8(&[*high, *low]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok())
            }
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_distinct_tokens() {
        assert_eq!(subject_token("team.red"), "team~red");
        assert_eq!(subject_token("a_b-9"), "a_b-9");
        assert_eq!(subject_token("*"), "%2A");
        assert_eq!(subject_token(">"), "%3E");
        assert_eq!(subject_token("a b"), "a%20b");
        assert_ne!(subject_token("a.b"), subject_token("a~b"));
        assert_ne!(subject_token("a.b"), subject_token("a_b"));
        let subjects = Subjects::new("my.cluster");
        assert_eq!(subjects.of(&Topic::Room("team.red".into())), "my~cluster.room.team~red");
        assert_eq!(subjects.of(&Topic::Node("n1".into())), "my~cluster.node.n1");
        assert_eq!(subjects.of(&Topic::User("bob.smith".into())), "my~cluster.user.bob~smith");
        assert_eq!(subjects.of(&Topic::Cluster), "my~cluster.cluster");
    }

    #[test]
    fn credentials_leave_the_server_addresses() {
        let (servers, _) = servers_and_credentials("nats://sb:p%40ss@127.0.0.1:4333, nats://tok@other:4444").unwrap();
        assert_eq!(shown_servers(&servers), "127.0.0.1:4333,other:4444");
        for server in &servers {
            assert!(!server.has_user_pass());
            assert!(server.password().is_none());
            assert!(!server.as_url_str().contains("ss@"));
        }
        assert_eq!(percent_decoded("p%40ss%2"), "p@ss%2");
        assert!(matches!(servers_and_credentials(" , "), Err(BusError::Unavailable(_))));
        let Err(BusError::Unavailable(message)) = servers_and_credentials("nats://sb:secret@[bad") else {
            panic!("a bad url was accepted");
        };
        assert!(!message.contains("secret"));
    }

    #[test]
    fn reconnect_delay_starts_at_once_and_stays_under_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(1_000_000), MAX_RECONNECT_DELAY);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }
}
