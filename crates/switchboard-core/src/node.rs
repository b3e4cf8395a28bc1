//! A chat node: the store, the bus, the local hub, presence, and the tasks that keep them going.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use switchboard_bus::{Bus, Topic};
use switchboard_protocol::event::ServerFrame;
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::RefValue;
use switchboard_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::PasswordChecks;
use crate::cluster::{BusHeader, NodeDirectory, NodeInfo};
use crate::config::ChatConfig;
use crate::error::ChatError;
use crate::fence::{self, Fences};
use crate::filter::WordFilter;
use crate::gaps;
use crate::hub::LocalHub;
use crate::link;
use crate::metrics::ChatMetrics;
use crate::now_millis;
use crate::outbound::Connection;
use crate::pipeline::{self, Pipeline};
use crate::popular::PopularWords;
use crate::presence::PresenceTable;
use crate::ratelimit::{LoginThrottle, TokenBucket};
use crate::subscriptions::Subscriptions;

/// Bus publications waiting to go out; past this the oldest work is refused, not buffered.
const BUS_OUTBOX_CAPACITY: usize = 65_536;

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
    /// Who hears about whose presence here.
    pub(crate) watchers: crate::watchers::Watchers,
    /// Big rooms' member and online counts.
    pub(crate) room_sizes: crate::room_size::RoomSizes,
    pub filter: WordFilter,
    pub popular: PopularWords,
    pub login_throttle: LoginThrottle,
    pub password_checks: Arc<PasswordChecks>,
    pub metrics: ChatMetrics,
    /// The other live nodes.
    pub directory: NodeDirectory,
    /// Events for the application's webhook (see [`crate::hooks`]).
    pub hooks: crate::hooks::HookQueue,
    /// When this node started (ms since the Unix epoch).
    pub(crate) started_at: i64,
    /// Random per start, on every bus payload: the others tell this start from the next one
    /// under the same node id.
    pub(crate) incarnation: u64,
    /// Set once the farewell is queued: nothing else is published after it.
    pub(crate) leaving: AtomicBool,
    /// Users known to exist, so that a send does not read the store to check its recipient.
    pub(crate) known_users: RwLock<HashSet<Arc<str>>>,
    pub(crate) next_conn_id: AtomicU64,
    /// Random per start, so message ids from different nodes or runs never collide.
    pub(crate) id_salt: u32,
    pub(crate) id_counter: AtomicU64,
    /// Where sends wait for the store.
    pub(crate) pipeline: Pipeline,
    /// Where joins wait for the store.
    pub(crate) joins: crate::joins::JoinQueue,
    pub(crate) bus_outbox: mpsc::Sender<(Topic, bytes::Bytes)>,
    /// Set when a publication failed (bus down): after the link is back, the other nodes' clients
    /// are asked to resume, since they may have missed what this node could not publish.
    /// When a bus publication last failed (ms), 0 if none since the link was last restored.
    pub(crate) lost_publications: Arc<AtomicI64>,
    /// Between the bus's `Disconnected` and `Reconnected`.
    pub(crate) bus_link_down: AtomicBool,
    /// Admission of logins: see `ChatConfig::logins_in_flight`.
    pub(crate) login_permits: tokio::sync::Semaphore,
    /// Rooms this node listens to on the bus.
    pub(crate) subscriptions: Arc<Subscriptions>,
    pub(crate) fences: Fences,
    /// How many `room_created` went out this second, and the rooms waiting to be coalesced.
    pub(crate) room_announcements: crate::announce::RoomAnnouncements,
    /// Room rules and blocks, for the checks of a send.
    pub(crate) access: crate::access::AccessCache,
    /// Whether another node has ever been heard from. Until then this node is a cluster of one and
    /// publishes nothing but its arrival: a standalone server pays nothing for the bus.
    pub(crate) peers_seen: AtomicBool,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) writer_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) started: Instant,
}

impl ChatNode {
    /// Starts the node's tasks: the message pipeline, the bus publisher and the bus listener.
    pub async fn start(config: ChatConfig, store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Result<ChatNode, ChatError> {
        let inline = store.inline_append().is_some();
        let (pipeline, pipeline_receiver) = Pipeline::new(inline, config.pipeline_capacity, config.batch_max);
        let (bus_sender, bus_receiver) = mpsc::channel(BUS_OUTBOX_CAPACITY);
        let (joins, join_receiver) = crate::joins::JoinQueue::new(config.pipeline_capacity);
        let login_permits = tokio::sync::Semaphore::new(config.logins_in_flight.max(1));
        let incoming = bus.take_incoming().ok_or_else(|| ChatError::Internal("bus already in use".into()))?;
        let (fences, fence_inbox) = Fences::new();
        let metrics = ChatMetrics::default();
        let shared = Arc::new(NodeShared {
            password_checks: PasswordChecks::new(
                config.password_checks,
                config.password_checks_waiting,
                metrics.password_checks.clone(),
            ),
            filter: WordFilter::new(&config.bad_words),
            popular: PopularWords::new(config.popular_window_secs),
            login_throttle: LoginThrottle::new(config.login_window),
            config,
            store,
            bus,
            hub: LocalHub::default(),
            presence: PresenceTable::default(),
            watchers: Default::default(),
            room_sizes: Default::default(),
            metrics,
            directory: NodeDirectory::default(),
            started_at: now_millis(),
            incarnation: rand::random(),
            leaving: AtomicBool::new(false),
            known_users: RwLock::new(HashSet::new()),
            next_conn_id: AtomicU64::new(1),
            hooks: Default::default(),
            id_salt: rand::random(),
            id_counter: AtomicU64::new(0),
            pipeline,
            joins,
            bus_outbox: bus_sender,
            peers_seen: AtomicBool::new(false),
            lost_publications: Arc::new(AtomicI64::new(0)),
            bus_link_down: AtomicBool::new(false),
            login_permits,
            subscriptions: Arc::new(Subscriptions::default()),
            fences,
            room_announcements: Default::default(),
            access: Default::default(),
            tasks: Mutex::new(Vec::new()),
            writer_task: Mutex::new(None),
            started: Instant::now(),
        });
        if let Some(receiver) = pipeline_receiver {
            *shared.writer_task.lock() = Some(tokio::spawn(pipeline::run_writer(shared.clone(), receiver)));
        }
        let publisher =
            tokio::spawn(link::run_bus_publisher(shared.bus.clone(), bus_receiver, shared.lost_publications.clone()));
        let listener = tokio::spawn(link::run_bus_listener(Arc::downgrade(&shared), incoming));
        let upkeep = tokio::spawn(link::run_cluster_upkeep(Arc::downgrade(&shared)));
        let subscriptions = tokio::spawn(Subscriptions::run(Arc::downgrade(&shared)));
        let fences = tokio::spawn(fence::run_fences(Arc::downgrade(&shared), fence_inbox));
        let gaps = tokio::spawn(gaps::run_gap_filler(Arc::downgrade(&shared), shared.hub.gaps.clone()));
        let sizes = tokio::spawn(crate::room_size::run_room_sizes(Arc::downgrade(&shared)));
        let joins = tokio::spawn(crate::joins::run_joins(Arc::downgrade(&shared), join_receiver));
        shared.tasks.lock().extend([publisher, listener, upkeep, subscriptions, fences, gaps, sizes, joins]);
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

    /// The bus's counters, drops included.
    pub fn bus_counters(&self) -> &switchboard_bus::BusCounters {
        self.shared.bus.counters()
    }

    /// Whether `user` has a connection on any live node (for the Socket.IO dialects' user lists).
    pub fn is_online(&self, user: &str) -> bool {
        self.shared.presence.is_online(user)
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

    /// Every live node of the cluster, this one included, by id: what the gateway lists.
    pub fn cluster_nodes(&self) -> Vec<NodeInfo> {
        let shared = &self.shared;
        let mut nodes = shared.directory.list();
        nodes.push(shared.own_info());
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// Stops the node: writes what is queued (and publishes it), tells the cluster it leaves
    /// after that, and closes the store.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.pipeline.close().await;
        let writer = shared.writer_task.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        if tokio::time::timeout(shared.config.node_timeout, shared.leave_cluster()).await.is_err() {
            tracing::warn!("could not tell the cluster this node leaves");
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

    pub(crate) fn own_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.config.node_id.clone(),
            url: self.config.public_url.clone(),
            connections: self.hub.connection_count() as u64,
            started_at: self.started_at,
        }
    }

    pub(crate) fn has_peers(&self) -> bool {
        self.peers_seen.load(Ordering::Relaxed)
    }
}
