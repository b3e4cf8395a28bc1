//! A chat node: the store, the bus, the local hub, presence, and the tasks that keep them going.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use switchboard_bus::{Bus, BusEvent, BusMessage, Topic};
use switchboard_protocol::event::{ServerFrame, SyncEntry};
use switchboard_protocol::request::{self, AuthOptions, ClientFrame};
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::{ConvId, RefValue, Request};
use switchboard_store::{SessionRecord, Store, StoredMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth;
use crate::cluster::{self, BusHeader, NodeDirectory, NodeInfo};
use crate::config::ChatConfig;
use crate::error::ChatError;
use crate::fence::{self, Fences};
use crate::filter::WordFilter;
use crate::hub::LocalHub;
use crate::metrics::ChatMetrics;
use crate::now_millis;
use crate::outbound::{ConnId, Connection};
use crate::pipeline::{self, PendingMessage};
use crate::popular::PopularWords;
use crate::presence::{PresenceChange, PresenceTable};
use crate::ratelimit::{LoginThrottle, TokenBucket};
use crate::session::Session;
use crate::subscriptions::RoomSubscriptions;

/// Bus publications waiting to go out; past this the oldest work is refused, not buffered.
const BUS_OUTBOX_CAPACITY: usize = 65_536;
/// Names per `online` frame.
const ONLINE_CHUNK: usize = 1000;
/// How far apart two nodes' clocks may be, for comparing one node's times with another's.
const CLOCK_SKEW_MARGIN_MS: i64 = 250;

/// A chat node. Cheap to clone: every clone is a handle on the same node.
#[derive(Clone)]
pub struct ChatNode {
    pub(crate) shared: Arc<NodeShared>,
}

/// Everything the node's connections and tasks share.
pub struct NodeShared {
    pub config: ChatConfig,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub hub: LocalHub,
    pub presence: PresenceTable,
    pub filter: WordFilter,
    pub popular: PopularWords,
    pub login_throttle: LoginThrottle,
    pub metrics: ChatMetrics,
    /// The other live nodes.
    pub directory: NodeDirectory,
    /// When this node started (ms since the Unix epoch).
    started_at: i64,
    /// Users known to exist, so that a send does not read the store to check its recipient.
    known_users: RwLock<HashSet<Arc<str>>>,
    next_conn_id: AtomicU64,
    /// Random per start, so message ids from different nodes or runs never collide.
    id_salt: u32,
    id_counter: AtomicU64,
    /// Taken on shutdown, which closes the pipeline once its last batch is written.
    pipeline: RwLock<Option<mpsc::Sender<PendingMessage>>>,
    bus_outbox: mpsc::Sender<(Topic, bytes::Bytes)>,
    /// Set when a publication failed (bus down): after the link is back, the other nodes' clients
    /// are asked to resume, since they may have missed what this node could not publish.
    /// When a bus publication last failed (ms), 0 if none since the link was last restored.
    pub(crate) lost_publications: Arc<AtomicI64>,
    /// Rooms this node listens to on the bus.
    pub(crate) room_subscriptions: Arc<RoomSubscriptions>,
    pub(crate) fences: Fences,
    /// Whether another node has ever been heard from. Until then this node is a cluster of one and
    /// publishes nothing but its arrival: a standalone server pays nothing for the bus.
    peers_seen: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    writer_task: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
}

impl ChatNode {
    /// Starts the node's tasks: the message pipeline, the bus publisher and the bus listener.
    pub async fn start(config: ChatConfig, store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Result<ChatNode, ChatError> {
        let (pipeline_sender, pipeline_receiver) = mpsc::channel(config.pipeline_capacity.max(1));
        let (bus_sender, bus_receiver) = mpsc::channel(BUS_OUTBOX_CAPACITY);
        let incoming = bus.take_incoming().ok_or_else(|| ChatError::Internal("bus already in use".into()))?;
        let (fences, fence_inbox) = Fences::new();
        let shared = Arc::new(NodeShared {
            filter: WordFilter::new(&config.bad_words),
            popular: PopularWords::new(config.popular_window_secs),
            login_throttle: LoginThrottle::new(config.login_window),
            config,
            store,
            bus,
            hub: LocalHub::default(),
            presence: PresenceTable::default(),
            metrics: ChatMetrics::default(),
            directory: NodeDirectory::default(),
            started_at: now_millis(),
            known_users: RwLock::new(HashSet::new()),
            next_conn_id: AtomicU64::new(1),
            id_salt: rand::random(),
            id_counter: AtomicU64::new(0),
            pipeline: RwLock::new(Some(pipeline_sender)),
            bus_outbox: bus_sender,
            peers_seen: AtomicBool::new(false),
            lost_publications: Arc::new(AtomicI64::new(0)),
            room_subscriptions: Arc::new(RoomSubscriptions::default()),
            fences,
            tasks: Mutex::new(Vec::new()),
            writer_task: Mutex::new(None),
            started: Instant::now(),
        });
        *shared.writer_task.lock() = Some(tokio::spawn(pipeline::run_writer(shared.clone(), pipeline_receiver)));
        let publisher =
            tokio::spawn(run_bus_publisher(shared.bus.clone(), bus_receiver, shared.lost_publications.clone()));
        let listener = tokio::spawn(run_bus_listener(Arc::downgrade(&shared), incoming));
        let upkeep = tokio::spawn(run_cluster_upkeep(Arc::downgrade(&shared)));
        let subscriptions = tokio::spawn(RoomSubscriptions::run(Arc::downgrade(&shared)));
        let fences = tokio::spawn(fence::run_fences(Arc::downgrade(&shared), fence_inbox));
        shared.tasks.lock().extend([publisher, listener, upkeep, subscriptions, fences]);
        shared.publish(Topic::Cluster, &BusHeader::NodeJoined, None);
        Ok(ChatNode { shared })
    }

    pub fn node_id(&self) -> &str {
        &self.shared.config.node_id
    }

    pub fn config(&self) -> &ChatConfig {
        &self.shared.config
    }

    pub fn metrics(&self) -> &ChatMetrics {
        &self.shared.metrics
    }

    pub fn connection_count(&self) -> usize {
        self.shared.hub.connection_count()
    }

    pub fn online_count(&self) -> usize {
        self.shared.presence.online_count()
    }

    /// The first frame of every connection.
    pub fn hello_frame(&self, max_frame_bytes: usize) -> WireFrame {
        let config = &self.shared.config;
        let mut methods = vec!["resume"];
        if config.registration {
            methods.push("register");
        }
        methods.push("login");
        if config.jwt_secret.is_some() {
            methods.push("login_jwt");
        }
        if config.open_auth {
            methods.push("login_open");
        }
        ServerFrame::Hello {
            protocol: switchboard_protocol::PROTOCOL_VERSION,
            server: concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            node: &config.node_id,
            max_frame_bytes,
            max_text_chars: config.max_text_chars,
            auth: &methods,
        }
        .encode()
    }

    /// Handles a frame of a connection that has no session yet. Only login frames are accepted;
    /// anything else is answered with an error frame, which the transport writes.
    pub async fn login(&self, text: &str, peer: IpAddr) -> Result<Session, WireFrame> {
        let frame = match request::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                return Err(error_frame(error.reference.as_ref(), error.code, &error.message, None));
            }
        };
        let reference = frame.reference.clone();
        match self.try_login(frame, peer).await {
            Ok(session) => Ok(session),
            Err(error) => {
                self.shared.metrics.errors_sent.fetch_add(1, Ordering::Relaxed);
                if matches!(error, ChatError::AuthFailed | ChatError::InvalidToken | ChatError::InvalidJwt(_)) {
                    self.shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(error_frame(reference.as_ref(), error.code(), &error.to_string(), error.retry_after_ms()))
            }
        }
    }

    async fn try_login(&self, frame: ClientFrame, peer: IpAddr) -> Result<Session, ChatError> {
        let shared = &self.shared;
        let config = &shared.config;
        let reference = frame.reference;
        let ip_key = format!("ip:{peer}");
        let now = Instant::now();
        match frame.request {
            Request::Register { username, password, options } => {
                if !config.registration {
                    return Err(ChatError::AuthMethodDisabled("registration"));
                }
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let chars = password.chars().count();
                if chars < config.min_password_chars || chars > auth::MAX_PASSWORD_CHARS {
                    return Err(ChatError::InvalidPassword { min: config.min_password_chars });
                }
                let hash = auth::hash_password(password).await?;
                if !shared.store.create_user(&username, Some(&hash), now_millis()).await? {
                    return Err(ChatError::UserExists);
                }
                shared.remember_user(&username);
                tracing::info!(user = %username, "user registered");
                self.start_session(username, None, false, false, options, reference).await
            }
            Request::Login { username, password, options } => {
                let user_key = format!("user:{username}");
                shared.check_throttle(&user_key, config.login_failures_per_user, now)?;
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let stored_hash = shared.store.user(&username).await?.and_then(|user| user.password_hash);
                let password_chars = password.chars().count();
                let matches =
                    password_chars <= auth::MAX_PASSWORD_CHARS && auth::verify_password(password, stored_hash).await?;
                if !matches {
                    shared.login_throttle.record_failure(&user_key, now);
                    shared.login_throttle.record_failure(&ip_key, now);
                    tracing::info!(user = %username, %peer, "login failed");
                    return Err(ChatError::AuthFailed);
                }
                shared.login_throttle.clear(&user_key);
                shared.remember_user(&username);
                self.start_session(username, None, false, false, options, reference).await
            }
            Request::Resume { token, options } => {
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let token_hash = auth::token_hash(&token);
                let session = shared.store.session(&token_hash).await?;
                let Some(session) = session.filter(|s| s.expires_at > now_millis()) else {
                    shared.login_throttle.record_failure(&ip_key, now);
                    return Err(ChatError::InvalidToken);
                };
                shared.remember_user(&session.user);
                self.start_session(session.user.clone(), Some((token, session)), true, false, options, reference).await
            }
            Request::LoginJwt { jwt, options } => {
                let Some(secret) = config.jwt_secret.as_deref() else {
                    return Err(ChatError::AuthMethodDisabled("jwt login"));
                };
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let username = match auth::verify_jwt(&jwt, secret) {
                    Ok(username) => username,
                    Err(error) => {
                        shared.login_throttle.record_failure(&ip_key, now);
                        return Err(error);
                    }
                };
                self.start_new_user_session(username, options, reference).await
            }
            Request::LoginOpen { username, options } => {
                if !config.open_auth {
                    return Err(ChatError::AuthMethodDisabled("open login"));
                }
                self.start_new_user_session(username, options, reference).await
            }
            _ => Err(ChatError::NotAuthenticated),
        }
    }

    /// Opens a session for a JWT or open login, which create the user on first login.
    async fn start_new_user_session(
        &self,
        user: String,
        options: AuthOptions,
        reference: Option<RefValue>,
    ) -> Result<Session, ChatError> {
        self.start_session(user, None, false, true, options, reference).await
    }

    /// Opens a session: issues (or keeps) the token, registers the connection, and queues the
    /// `session` answer, the online list and everything the user missed. `create_user` makes a
    /// user without a password when the name is free (JWT and open logins).
    async fn start_session(
        &self,
        user: String,
        existing: Option<(String, SessionRecord)>,
        resumed: bool,
        create_user: bool,
        options: AuthOptions,
        reference: Option<RefValue>,
    ) -> Result<Session, ChatError> {
        let shared = &self.shared;
        let now = now_millis();
        let create_user = existing.is_none() && create_user && !shared.known_users.read().contains(user.as_str());
        let (token, record, new_record) = match existing {
            Some((token, record)) => (token, record, false),
            None => {
                let (token, token_hash) = auth::new_session_token();
                let ttl = shared.config.session_ttl.as_millis() as i64;
                let record = SessionRecord { token_hash, user: user.clone(), created_at: now, expires_at: now + ttl };
                (token, record, true)
            }
        };
        // One store round trip: the user (JWT and open logins create it), the token, the rooms.
        // Register first (holding live messages back), then read what to sync: a message committed
        // in between is then either in the sync or held, never neither.
        let rooms = shared.store.open_session(&user, create_user, new_record.then_some(&record), now).await?;
        if create_user {
            shared.remember_user(&user);
        }
        let user: Arc<str> = Arc::from(user.as_str());
        let conn_id: ConnId = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(
            conn_id,
            user.clone(),
            now,
            shared.config.queue_max_frames,
            shared.config.queue_max_bytes,
        ));
        connection.push(
            ServerFrame::Session {
                reference: reference.as_ref(),
                user: &user,
                token: &token,
                expires_at: record.expires_at,
                resumed,
                node: &shared.config.node_id,
                conn: conn_id,
            }
            .encode(),
        );
        connection.begin_sync();
        let registration = shared.hub.register(&connection, &rooms, options.presence);
        for room in &registration.rooms_changed {
            shared.room_listeners_changed(room);
        }
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        shared.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        // Every count change is shared (other nodes' `stats` count this connection too); events
        // go out only when the user comes online anywhere.
        shared.local_presence_changed(&user);
        if options.presence {
            shared.push_online_list(&connection, None);
        }
        shared.catch_up_with_cluster().await;
        let sync = shared.collect_sync(&user, &options.cursors).await;
        let (missed, sent) = match sync {
            Ok(sync) => sync,
            Err(error) => {
                // Registered already: undo it, so a failed sync leaves nothing behind.
                shared.end_connection(&connection);
                return Err(error);
            }
        };
        connection.finish_sync(missed, sent);
        tracing::debug!(user = %user, conn = conn_id, resumed, "session started");
        Ok(Session::new(self.clone(), connection, record.token_hash))
    }

    /// Every live node of the cluster, this one included, by id: what the gateway lists.
    pub fn cluster_nodes(&self) -> Vec<NodeInfo> {
        let shared = &self.shared;
        let mut nodes = shared.directory.list();
        nodes.push(shared.own_info());
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// Stops the node: tells the cluster it leaves, closes the pipeline once what is queued is
    /// written, and closes the store.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.has_peers() {
            let farewell = cluster::encode(&BusHeader::NodeLeft, None);
            let sent = tokio::time::timeout(Duration::from_secs(1), shared.bus.publish(Topic::Cluster, farewell)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!("could not tell the cluster this node leaves");
            }
        }
        shared.pipeline.write().take();
        let writer = shared.writer_task.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        for task in shared.tasks.lock().drain(..) {
            task.abort();
        }
        shared.store.close().await;
        tracing::info!(node = %shared.config.node_id, uptime_secs = shared.started.elapsed().as_secs(), "chat node stopped");
    }

    /// Every connection, so the transport can tell them to reconnect on shutdown.
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.shared.hub.all_connections()
    }
}

pub(crate) fn error_frame(
    reference: Option<&RefValue>,
    code: switchboard_protocol::ErrorCode,
    message: &str,
    retry_after_ms: Option<u64>,
) -> WireFrame {
    ServerFrame::Error { reference, code, message, retry_after_ms }.encode()
}

impl NodeShared {
    pub(crate) fn push_error(&self, connection: &Connection, reference: Option<&RefValue>, error: &ChatError) {
        self.metrics.errors_sent.fetch_add(1, Ordering::Relaxed);
        if matches!(error, ChatError::RateLimited { .. }) {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        connection.push(error_frame(reference, error.code(), &error.to_string(), error.retry_after_ms()));
    }

    fn check_throttle(&self, key: &str, limit: u32, now: Instant) -> Result<(), ChatError> {
        self.login_throttle
            .check(key, limit, now)
            .map_err(|wait| ChatError::LoginThrottled { retry_after_ms: wait.as_millis() as u64 + 1 })
    }

    pub(crate) fn new_bucket(&self) -> TokenBucket {
        TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst)
    }

    pub(crate) fn remember_user(&self, user: &str) {
        if !self.known_users.read().contains(user) {
            self.known_users.write().insert(Arc::from(user));
        }
    }

    /// Whether a user exists; positive answers are cached, so a chat between known users never
    /// reads the store for this.
    pub(crate) async fn user_exists(&self, user: &str) -> Result<bool, ChatError> {
        if self.known_users.read().contains(user) {
            return Ok(true);
        }
        let exists = self.store.user(user).await?.is_some();
        if exists {
            self.remember_user(user);
        }
        Ok(exists)
    }

    /// A new message id: time first, so ids sort by time; then this node's salt and a counter.
    pub(crate) fn new_message_id(&self, ts: i64) -> String {
        let counter = self.id_counter.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff;
        format!("{:012x}{:08x}{:012x}", ts as u64 & 0xffff_ffff_ffff, self.id_salt, counter)
    }

    pub(crate) fn submit(&self, pending: PendingMessage) -> Result<(), ChatError> {
        let pipeline = self.pipeline.read();
        let Some(sender) = pipeline.as_ref() else {
            return Err(ChatError::Overloaded);
        };
        sender.try_send(pending).map_err(|_| ChatError::Overloaded)
    }

    fn own_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.config.node_id.clone(),
            url: self.config.public_url.clone(),
            connections: self.hub.connection_count() as u64,
            started_at: self.started_at,
        }
    }

    fn has_peers(&self) -> bool {
        self.peers_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn publish(&self, topic: Topic, header: &BusHeader, frame: Option<&WireFrame>) {
        if !self.has_peers() && !matches!(header, BusHeader::NodeJoined | BusHeader::LinkRestored { .. }) {
            return;
        }
        let payload = cluster::encode(header, frame.map(|f| f.payload()).as_ref());
        if self.bus_outbox.try_send((topic, payload)).is_err() {
            tracing::warn!("bus outbox full, publication dropped");
            return;
        }
        self.metrics.bus_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The room got its first listener here, or lost its last: its bus subscription follows.
    pub(crate) fn room_listeners_changed(&self, room: &str) {
        self.room_subscriptions.touch(room);
    }

    /// Returns once the room subscriptions asked for so far are in place on the bus.
    pub(crate) async fn room_subscriptions_settled(&self) {
        if !self.has_peers() {
            return;
        }
        if tokio::time::timeout(self.config.node_timeout, self.room_subscriptions.settled()).await.is_err() {
            tracing::warn!("room subscriptions did not settle in time");
        }
    }

    /// Before a new connection's sync read: once this returns, whatever another node commits
    /// reaches this connection over the bus (its rooms are subscribed, and every live node has
    /// applied its presence), so the sync and the live stream leave no gap between them.
    async fn catch_up_with_cluster(&self) {
        if !self.has_peers() {
            return;
        }
        let wait = async {
            tokio::join!(self.room_subscriptions.settled(), self.fences.pass());
        };
        if tokio::time::timeout(self.config.node_timeout, wait).await.is_err() {
            tracing::warn!("the cluster did not catch up with a new connection in time; syncing anyway");
        }
    }

    /// Fans a durable message out: to local connections (but the sending one) and to the other
    /// nodes that need it. Returns the number of local connections reached.
    pub(crate) fn fan_out(&self, message: &StoredMessage, skip: Option<ConnId>) -> usize {
        let view = pipeline::view_of(message);
        let frame = ServerFrame::Message(&view).encode();
        let conv = message.conv.as_str();
        let me = self.config.node_id.as_str();
        if let Some(room) = &message.room {
            let reached = self.hub.deliver_to_room(room, conv, message.seq, &frame, skip);
            if self.has_peers() {
                let header =
                    BusHeader::RoomMessage { room: room.clone(), conv: message.conv.clone(), seq: message.seq };
                self.publish(Topic::Room(room.clone()), &header, Some(&frame));
            }
            return reached;
        }
        let Some(recipient) = &message.recipient else {
            return 0;
        };
        let sender = &message.sender;
        let mut reached = self.hub.deliver_to_user(recipient, conv, message.seq, &frame, skip);
        if recipient != sender {
            reached += self.hub.deliver_to_user(sender, conv, message.seq, &frame, skip);
        }
        let mut nodes = self.presence.remote_nodes_of(recipient, me);
        nodes.extend(self.presence.remote_nodes_of(sender, me));
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            let header = BusHeader::UserMessage {
                users: vec![recipient.clone(), sender.clone()],
                conv: message.conv.clone(),
                seq: message.seq,
            };
            self.publish(Topic::Node(node.to_string()), &header, Some(&frame));
        }
        reached
    }

    /// Sends an event to a user's connections here (but `skip`) and on the other nodes holding them.
    pub(crate) fn event_to_user(&self, user: &str, frame: &WireFrame, skip: Option<ConnId>) {
        self.hub.event_to_user(user, frame, skip);
        for node in self.presence.remote_nodes_of(user, &self.config.node_id) {
            let header = BusHeader::UserEvent { users: vec![user.to_owned()] };
            self.publish(Topic::Node(node.to_string()), &header, Some(frame));
        }
    }

    /// Sends an event to a room's connections here and on other nodes, except `skip_user`'s.
    pub(crate) fn event_to_room(&self, room: &str, frame: &WireFrame, skip_user: Option<&str>) {
        self.hub.event_to_room(room, frame, skip_user);
        let header = BusHeader::RoomEvent { room: room.to_owned(), skip_user: skip_user.map(str::to_owned) };
        self.publish(Topic::Room(room.to_owned()), &header, Some(frame));
    }

    /// Records this node's connection count for a user and tells everyone who cares.
    pub(crate) fn local_presence_changed(&self, user: &str) {
        let count = self.hub.connections_of(user).len() as u32;
        let now = now_millis();
        let change = self.presence.set(&self.config.node_id, user, count, now);
        let since = self.presence.info(user).map_or(now, |info| info.since);
        self.publish(Topic::Cluster, &BusHeader::Presence { user: user.to_owned(), connections: count, since }, None);
        self.announce_presence(user, change);
    }

    fn announce_presence(&self, user: &str, change: PresenceChange) {
        let frame = match change {
            PresenceChange::CameOnline => ServerFrame::UserOnline { user }.encode(),
            PresenceChange::WentOffline => ServerFrame::UserOffline { user }.encode(),
            PresenceChange::Unchanged => return,
        };
        self.hub.event_to_presence_watchers(&frame);
    }

    /// Queues the online list, sorted, in chunks.
    pub(crate) fn push_online_list(&self, connection: &Connection, reference: Option<&RefValue>) {
        let online = self.presence.online();
        let names: Vec<&str> = online.iter().map(|user| &**user).collect();
        if names.is_empty() {
            connection.push(ServerFrame::Online { reference, users: &[], done: true }.encode());
            return;
        }
        let chunks = names.chunks(ONLINE_CHUNK);
        let last = chunks.len() - 1;
        for (index, chunk) in chunks.enumerate() {
            connection.push(ServerFrame::Online { reference, users: chunk, done: index == last }.encode());
        }
    }

    /// Builds the frames that bring a connection up to date: a `sync` summary, every message after
    /// the client's cursor (or, without one, after the user's read marker), then `synced`.
    async fn collect_sync(
        &self,
        user: &str,
        cursors: &BTreeMap<ConvId, u64>,
    ) -> Result<(Vec<WireFrame>, std::collections::HashMap<String, u64>), ChatError> {
        let limit = self.config.sync_limit_per_conv;
        let cursors: std::collections::HashMap<String, u64> =
            cursors.iter().map(|(conv, seq)| (conv.to_string(), *seq)).collect();
        let reads = self.store.sync_read(user, &cursors, limit).await?;
        let mut entries = Vec::new();
        let mut frames = Vec::new();
        let mut sent = std::collections::HashMap::with_capacity(reads.len());
        for read in reads {
            let conversation = read.conversation;
            let newest = read.messages.last().map_or(read.from, |m| m.seq);
            if conversation.last_seq > read.from {
                entries.push(SyncEntry {
                    conv: conversation.conv.clone(),
                    last_seq: conversation.last_seq,
                    read_seq: conversation.read_seq,
                    from_seq: read.from,
                    count: read.messages.len(),
                    more: newest < conversation.last_seq,
                });
            }
            for message in &read.messages {
                frames.push(ServerFrame::Message(&pipeline::view_of(message)).encode());
            }
            sent.insert(conversation.conv, newest);
        }
        let total = frames.len();
        let mut out = Vec::with_capacity(total + 2);
        out.push(ServerFrame::Sync { conversations: &entries }.encode());
        out.extend(frames);
        out.push(ServerFrame::Synced { messages: total }.encode());
        tracing::trace!(user, messages = total, "sync collected");
        Ok((out, sent))
    }

    /// Takes a connection out of the node and updates presence.
    pub(crate) fn end_connection(&self, connection: &Arc<Connection>) {
        let registration = self.hub.unregister(connection);
        for room in &registration.rooms_changed {
            self.room_listeners_changed(room);
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        self.local_presence_changed(&connection.user);
        connection.close();
    }

    /// After this node's link to the cluster was interrupted (bus outage, or the node stalled):
    /// announce it (others answer with their presence and tell their own clients to resume), and
    /// tell local clients to resume, so that whatever crossed the bus meanwhile comes back to them
    /// from the store.
    fn link_restored(&self, cause: &'static str) {
        tracing::info!(node = %self.config.node_id, cause, "cluster link restored");
        let last_lost_at = self.lost_publications.swap(0, Ordering::Relaxed);
        let header = BusHeader::LinkRestored { lost_publications: last_lost_at > 0, last_lost_at };
        self.publish(Topic::Cluster, &header, None);
        let users = self.presence.counts_of_node(&self.config.node_id);
        self.publish(Topic::Cluster, &BusHeader::PresenceSnapshot { users, since: now_millis() }, None);
        for room in self.hub.rooms_with_listeners() {
            self.room_listeners_changed(&room);
        }
        self.ask_clients_to_resume(i64::MAX);
    }

    /// Messages that crossed the bus while a link was down never reached these connections: the
    /// store has them, and a resume with cursors brings them back exactly once. Connections that
    /// logged in after `missed_until` (ms) read those messages in their sync already.
    fn ask_clients_to_resume(&self, missed_until: i64) {
        let connections = self.hub.all_connections();
        let mut asked = 0;
        for connection in connections {
            if connection.connected_at <= missed_until {
                connection.close_with(switchboard_protocol::CloseCode::ServiceRestart);
                asked += 1;
            }
        }
        tracing::info!(connections = asked, "asking clients to resume after a cluster link outage");
    }

    /// Forgets a node and everything it held; its users go offline unless online elsewhere.
    fn forget_node(&self, node: &str) {
        self.directory.remove(node);
        let gone = self.presence.remove_node(node);
        tracing::info!(node, users = gone.len(), "node gone");
        for user in gone {
            self.announce_presence(&user, PresenceChange::WentOffline);
        }
    }

    /// Publishes a membership change to the other nodes holding the user's connections.
    pub(crate) fn publish_membership(&self, user: &str, room: &str, joined: bool) {
        for node in self.presence.remote_nodes_of(user, &self.config.node_id) {
            let header = BusHeader::Membership { user: user.to_owned(), room: room.to_owned(), joined };
            self.publish(Topic::Node(node.to_string()), &header, None);
        }
    }

    fn handle_bus_message(&self, message: BusMessage) {
        self.metrics.bus_received.fetch_add(1, Ordering::Relaxed);
        self.peers_seen.store(true, Ordering::Relaxed);
        let from = message.from_node.as_str();
        self.bus.counters().received.fetch_add(1, Ordering::Relaxed);
        let Some((header, frame_bytes)) = cluster::decode(&message.payload) else {
            tracing::warn!(from = %message.from_node, "undecodable bus message dropped");
            return;
        };
        let frame = || WireFrame::text(&frame_bytes);
        let info = match &header {
            BusHeader::Heartbeat { info } => Some(info.clone()),
            _ => None,
        };
        if matches!(
            header,
            BusHeader::UserMessage { .. }
                | BusHeader::RoomMessage { .. }
                | BusHeader::UserEvent { .. }
                | BusHeader::RoomEvent { .. }
                | BusHeader::Membership { .. }
        ) {
            self.metrics.bus_chat_received.fetch_add(1, Ordering::Relaxed);
        }
        let is_new = self.directory.heard(from, info, Instant::now());
        if is_new
            && !matches!(
                header,
                BusHeader::NodeJoined
                    | BusHeader::LinkRestored { .. }
                    | BusHeader::NodeLeft
                    | BusHeader::PresenceSnapshot { .. }
            )
        {
            // A node we did not know (new to us, or back after we declared it dead): ask for its
            // users.
            tracing::info!(node = from, "node appeared");
            self.publish(Topic::Node(from.to_owned()), &BusHeader::NodeJoined, None);
        }
        match header {
            BusHeader::UserMessage { users, conv, seq } => {
                let frame = frame();
                let mut reached = 0;
                for user in users.iter().collect::<std::collections::BTreeSet<_>>() {
                    reached += self.hub.deliver_to_user(user, &conv, seq, &frame, None);
                }
                self.metrics.deliveries.fetch_add(reached as u64, Ordering::Relaxed);
            }
            BusHeader::RoomMessage { room, conv, seq } => {
                let reached = self.hub.deliver_to_room(&room, &conv, seq, &frame(), None);
                self.metrics.deliveries.fetch_add(reached as u64, Ordering::Relaxed);
            }
            BusHeader::UserEvent { users } => {
                let frame = frame();
                for user in users {
                    self.hub.event_to_user(&user, &frame, None);
                }
            }
            BusHeader::RoomEvent { room, skip_user } => {
                self.hub.event_to_room(&room, &frame(), skip_user.as_deref());
            }
            BusHeader::Presence { user, connections, since } => {
                let change = self.presence.set(&message.from_node, &user, connections, since);
                self.announce_presence(&user, change);
            }
            BusHeader::PresenceSnapshot { users, since } => {
                for (user, change) in self.presence.replace_node(from, &users, since) {
                    self.announce_presence(&user, change);
                }
            }
            BusHeader::LinkRestored { lost_publications, last_lost_at } => {
                let users = self.presence.counts_of_node(&self.config.node_id);
                let header = BusHeader::PresenceSnapshot { users, since: now_millis() };
                self.publish(Topic::Node(message.from_node.clone()), &header, None);
                if lost_publications {
                    // Unknown (0) means any time; the margin covers the nodes' clock skew.
                    let missed_until = if last_lost_at > 0 { last_lost_at + CLOCK_SKEW_MARGIN_MS } else { i64::MAX };
                    self.ask_clients_to_resume(missed_until);
                }
            }
            BusHeader::Heartbeat { .. } => {}
            BusHeader::NodeLeft => self.forget_node(from),
            BusHeader::Membership { user, room, joined } => {
                let changed = if joined { self.hub.join_room(&user, &room) } else { self.hub.leave_room(&user, &room) };
                if changed {
                    self.room_listeners_changed(&room);
                }
            }
            BusHeader::Fence { round } => {
                self.publish(Topic::Node(message.from_node), &BusHeader::FenceAnswer { round }, None);
            }
            BusHeader::FenceAnswer { round } => self.fences.answered(from, round),
            BusHeader::NodeJoined => {
                let users = self.presence.counts_of_node(&self.config.node_id);
                let header = BusHeader::PresenceSnapshot { users, since: now_millis() };
                self.publish(Topic::Node(message.from_node), &header, None);
            }
        }
    }
}

async fn run_bus_publisher(
    bus: Arc<dyn Bus>,
    mut outbox: mpsc::Receiver<(Topic, bytes::Bytes)>,
    lost_publications: Arc<AtomicI64>,
) {
    let mut failures_in_a_row: u64 = 0;
    while let Some((topic, payload)) = outbox.recv().await {
        match bus.publish(topic, payload).await {
            Ok(()) => failures_in_a_row = 0,
            Err(error) => {
                lost_publications.fetch_max(now_millis(), Ordering::Relaxed);
                failures_in_a_row += 1;
                // One line per outage, not one per message.
                if failures_in_a_row == 1 {
                    tracing::warn!(%error, "bus publication failed; clients will be asked to resume when it is back");
                }
            }
        }
    }
}

/// Heartbeats out, dead nodes out: every node is heard from at least every heartbeat interval,
/// and one silent for `node_timeout` is forgotten with its users.
async fn run_cluster_upkeep(shared: std::sync::Weak<NodeShared>) {
    let tick = {
        let Some(shared) = shared.upgrade() else { return };
        (shared.config.heartbeat_interval / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat: Option<Instant> = None;
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        // The others judge this node by its last heartbeat, not by when it last ran.
        let silent_for = last_heartbeat.map_or(Duration::ZERO, |at| now.duration_since(at));
        if silent_for > shared.config.node_timeout && shared.has_peers() {
            // This node sent nothing for longer than the node timeout (stopped, swapped out,
            // frozen): the others may have declared it dead and routed around it.
            tracing::warn!(stalled_ms = silent_for.as_millis() as u64, "this node was stalled");
            shared.link_restored("node stalled");
        }
        if last_heartbeat.is_none_or(|at| now.duration_since(at) >= shared.config.heartbeat_interval) {
            last_heartbeat = Some(now);
            shared.publish(Topic::Cluster, &BusHeader::Heartbeat { info: shared.own_info() }, None);
        }
        for node in shared.directory.expire(shared.config.node_timeout, now) {
            tracing::warn!(node = %node, timeout_ms = shared.config.node_timeout.as_millis() as u64, "node timed out");
            shared.forget_node(&node);
        }
    }
}

async fn run_bus_listener(shared: std::sync::Weak<NodeShared>, mut incoming: mpsc::Receiver<BusEvent>) {
    while let Some(event) = incoming.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        match event {
            BusEvent::Message(message) => shared.handle_bus_message(message),
            BusEvent::Reconnected => shared.link_restored("bus reconnected"),
            BusEvent::Disconnected => {
                // Publications queued inside the bus when the link broke may be gone without an
                // error to show for it: count the outage itself as lost publications.
                shared.lost_publications.fetch_max(now_millis(), Ordering::Relaxed);
                tracing::warn!(node = %shared.config.node_id, "bus link lost");
            }
        }
    }
}
