use std::time::Duration;

/// Everything the chat core can be tuned by. The server fills it from flags, environment and
/// the TOML file; tests build it directly.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// This node's id, shown to clients and used on the bus.
    pub node_id: String,
    /// Allow `register`.
    pub registration: bool,
    /// Allow `login_open` (user name only, no password): for demos, off by default.
    pub open_auth: bool,
    /// HS256 secret for `login_jwt`; JWT login is off without it.
    pub jwt_secret: Option<String>,
    /// How long a session token stays valid.
    pub session_ttl: Duration,
    /// Shortest accepted password, in characters.
    pub min_password_chars: usize,
    /// Messages replayed to a user who joins a room.
    pub join_history: u32,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Frames per second a connection may send, sustained.
    pub rate_per_sec: f64,
    /// Frames a connection may send in a burst.
    pub rate_burst: f64,
    /// Rejected frames in a row after which a connection is closed for flooding.
    pub flood_strikes: u32,
    /// Frames an outbound queue holds before its reader counts as too slow.
    pub queue_max_frames: usize,
    /// Bytes an outbound queue holds before its reader counts as too slow.
    pub queue_max_bytes: usize,
    /// Missed messages sent per conversation when a connection syncs; the rest is paged.
    pub sync_limit_per_conv: u32,
    /// The window of `popular`, in seconds.
    pub popular_window_secs: u32,
    /// `room_created` events this node broadcasts to every online user per second; the rooms
    /// created beyond it are announced together by one `rooms_created` (see `announce.rs`).
    pub room_announcements_per_sec: u32,
    /// Failed logins for one user name from one client address within `login_window` before that
    /// address's logins to that name are throttled (the name's owner elsewhere is not).
    pub login_failures_per_user: u32,
    /// Failed logins per client address within `login_window` before logins are throttled.
    pub login_failures_per_ip: u32,
    pub login_window: Duration,
    /// Password hashes and checks (argon2, 19 MiB each) run at once; see
    /// [`crate::auth::PasswordChecks`]. Default: the number of cores.
    pub password_checks: usize,
    /// Logins and registrations that may wait for a password check; more are refused with
    /// `overloaded`.
    pub password_checks_waiting: usize,
    /// Logins in progress on this node at once; more wait their turn (parked, costing nothing).
    /// A storm of thousands (a dead node's clients coming back) would otherwise fill the
    /// runtime's run queue, and the bus link's and heartbeats' tasks would wait behind it long
    /// enough for the node to look dead or its broker link lost.
    pub logins_in_flight: usize,
    /// Most messages written to the store in one transaction.
    pub batch_max: usize,
    /// Messages waiting for the store before senders get `overloaded`.
    pub pipeline_capacity: usize,
    /// Words the dirty-word filter masks.
    pub bad_words: Vec<String>,
    /// This node's WebSocket URL as clients reach it, announced to the cluster for the gateway.
    pub public_url: String,
    /// How often a node tells the cluster it is alive.
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is dead: its users go offline everywhere.
    pub node_timeout: Duration,
    /// How long a live message waits for the ones before it in its conversation before they are
    /// read from the store (see `ordering.rs`).
    pub reorder_wait: Duration,
    /// Rooms with more members than this get no `member_joined` / `member_left` (one event per
    /// join to every member would cost the square of the room) but a `room_size` event instead.
    pub room_events_max_members: u64,
    /// Least time between two `room_size` events of one room.
    pub room_size_interval: Duration,
    /// Most users one connection hears presence about (its contacts plus those it watches).
    pub presence_watch_max: usize,
    /// Every connection with `presence` on hears about every online user, as before contacts:
    /// quadratic in the users online, for small servers (and the tests written for it).
    pub presence_everyone: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            node_id: "node-1".into(),
            registration: true,
            open_auth: false,
            jwt_secret: None,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            min_password_chars: 6,
            join_history: 50,
            max_text_chars: 4000,
            rate_per_sec: 50.0,
            rate_burst: 100.0,
            flood_strikes: 200,
            queue_max_frames: 4096,
            queue_max_bytes: 4 << 20,
            sync_limit_per_conv: 1000,
            popular_window_secs: 60,
            room_announcements_per_sec: 20,
            login_failures_per_user: 5,
            login_failures_per_ip: 50,
            login_window: Duration::from_secs(60),
            password_checks: std::thread::available_parallelism().map_or(2, |cores| cores.get()),
            password_checks_waiting: 256,
            logins_in_flight: 64,
            batch_max: 512,
            pipeline_capacity: 16_384,
            bad_words: Vec::new(),
            public_url: "ws://127.0.0.1:8080/ws".into(),
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(6),
            reorder_wait: Duration::from_millis(50),
            room_events_max_members: 1000,
            room_size_interval: Duration::from_secs(1),
            presence_watch_max: 5000,
            presence_everyone: false,
        }
    }
}
