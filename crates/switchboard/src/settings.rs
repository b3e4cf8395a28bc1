//! Settings from flags, environment (`SWITCHBOARD_*`) and an optional TOML file, in that order of
//! precedence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use switchboard_core::ChatConfig;
use switchboard_server::admin::recent::RecentErrorsLayer;
use switchboard_server::api::ApiKeys;
use switchboard_server::tls::TlsFiles;
use switchboard_server::webhooks::WebhookConfig;
use switchboard_server::ServerConfig;
use switchboard_store::sqlite::SqliteOptions;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML settings file; flags and environment override it.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for HTTP and WebSocket [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Folder of the embedded store [default: ./switchboard-data].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store: `sqlite` (a file in the data folder), `sqlite:PATH`, `memory` (lost on exit), or
    /// `postgres://user@host/db` (shared by the nodes of a cluster) [default: sqlite].
    #[arg(long, env = "SWITCHBOARD_STORE")]
    pub store: Option<String>,
    /// Cluster bus: `redis://host:port` or `nats://host:port` joins a cluster; none runs standalone.
    #[arg(long, env = "SWITCHBOARD_BUS")]
    pub bus: Option<String>,
    /// Cluster name: the prefix of the bus channels, so several clusters can share a broker
    /// [default: switchboard].
    #[arg(long, env = "SWITCHBOARD_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's WebSocket URL as clients reach it, for the gateway [default: ws://LISTEN/ws].
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Milliseconds between a node's heartbeats [default: 2000].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Milliseconds of silence after which a node counts as dead and its users go offline
    /// [default: 6000].
    #[arg(long, env = "SWITCHBOARD_NODE_TIMEOUT_MS")]
    pub node_timeout_ms: Option<u64>,
    /// Milliseconds a live message waits for an earlier one of its conversation (from another
    /// node) before that one is read from the store [default: 50].
    #[arg(long, env = "SWITCHBOARD_REORDER_WAIT_MS")]
    pub reorder_wait_ms: Option<u64>,
    /// Make every SQLite commit survive power loss (fsync), not only a process crash.
    #[arg(long, env = "SWITCHBOARD_SQLITE_SYNC_FULL", num_args = 0..=1, default_missing_value = "true")]
    pub sqlite_sync_full: Option<bool>,
    /// This node's id, unique in a cluster, shown to clients [default: node-PORT].
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Allow `register` [default: true].
    #[arg(long, env = "SWITCHBOARD_REGISTRATION", num_args = 0..=1, default_missing_value = "true")]
    pub registration: Option<bool>,
    /// Allow `login_open`: a user name and no password. For demos only [default: false].
    #[arg(long, env = "SWITCHBOARD_OPEN_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub open_auth: Option<bool>,
    /// HS256 secret that enables `login_jwt`. Never logged.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Session token lifetime in hours [default: 720].
    #[arg(long, env = "SWITCHBOARD_SESSION_TTL_HOURS")]
    pub session_ttl_hours: Option<u64>,
    /// Dirty-word list: one word per line, `#` for comments.
    #[arg(long, env = "SWITCHBOARD_BAD_WORDS")]
    pub bad_words: Option<PathBuf>,
    /// Messages replayed when a user joins a room [default: 50].
    #[arg(long, env = "SWITCHBOARD_JOIN_HISTORY")]
    pub join_history: Option<u32>,
    /// Rooms with more members get a rate-limited `room_size` event instead of `member_joined` /
    /// `member_left` per join and leave [default: 1000].
    #[arg(long, env = "SWITCHBOARD_ROOM_EVENTS_MAX_MEMBERS")]
    pub room_events_max_members: Option<u64>,
    /// Least time between two `room_size` events of a room, in milliseconds [default: 1000].
    #[arg(long, env = "SWITCHBOARD_ROOM_SIZE_INTERVAL_MS")]
    pub room_size_interval_ms: Option<u64>,
    /// Whose presence a connection hears: `contacts` (itself, its private conversations' peers and
    /// whom it watches) or `everyone` (every online user: quadratic, small servers only)
    /// [default: contacts].
    #[arg(long, env = "SWITCHBOARD_PRESENCE", value_parser = ["contacts", "everyone"])]
    pub presence: Option<String>,
    /// Most users one connection hears presence about [default: 5000].
    #[arg(long, env = "SWITCHBOARD_PRESENCE_WATCH_MAX")]
    pub presence_watch_max: Option<usize>,
    /// Largest WebSocket message accepted, in bytes [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Longest message text, in characters [default: 4000].
    #[arg(long, env = "SWITCHBOARD_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    /// Frames per second one connection may send, sustained [default: 50].
    #[arg(long, env = "SWITCHBOARD_RATE_PER_SEC")]
    pub rate_per_sec: Option<f64>,
    /// Frames one connection may send in a burst [default: 100].
    #[arg(long, env = "SWITCHBOARD_RATE_BURST")]
    pub rate_burst: Option<f64>,
    /// Frames queued for one connection before it is cut off as a slow consumer [default: 4096].
    #[arg(long, env = "SWITCHBOARD_QUEUE_MAX_FRAMES")]
    pub queue_max_frames: Option<usize>,
    /// Bytes queued for one connection before it is cut off as a slow consumer [default: 4194304].
    #[arg(long, env = "SWITCHBOARD_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<usize>,
    /// Missed messages sent per conversation on reconnect; the rest is paged [default: 1000].
    #[arg(long, env = "SWITCHBOARD_SYNC_LIMIT")]
    pub sync_limit: Option<u32>,
    /// Window of `popular`, in seconds [default: 60].
    #[arg(long, env = "SWITCHBOARD_POPULAR_WINDOW_SECS")]
    pub popular_window_secs: Option<u32>,
    /// `room_created` events a node broadcasts per second; more are coalesced [default: 20].
    #[arg(long, env = "SWITCHBOARD_ROOM_ANNOUNCEMENTS_PER_SEC")]
    pub room_announcements_per_sec: Option<u32>,
    /// Seconds without traffic before the server pings a client [default: 30].
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL_SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds a new connection has to log in [default: 10].
    #[arg(long, env = "SWITCHBOARD_AUTH_TIMEOUT_SECS")]
    pub auth_timeout_secs: Option<u64>,
    /// Seconds connections get to close on shutdown [default: 10].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Proxies whose `X-Real-IP` / `X-Forwarded-For` header names the client (comma-separated IPs,
    /// e.g. `127.0.0.1` behind a local nginx); login throttling then counts per real client.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// Password hashes and checks (argon2, 19 MiB each) run at once [default: the number of cores].
    #[arg(long, env = "SWITCHBOARD_PASSWORD_CHECKS", value_parser = clap::value_parser!(u32).range(1..))]
    pub password_checks: Option<u32>,
    /// Logins and registrations that may wait for a password check; more get `overloaded`
    /// [default: 256].
    #[arg(long, env = "SWITCHBOARD_PASSWORD_CHECKS_WAITING")]
    pub password_checks_waiting: Option<usize>,
    /// Logins in progress at once; more wait their turn, so a reconnect storm cannot starve the
    /// node's bus link and heartbeats [default: 64].
    #[arg(long, env = "SWITCHBOARD_LOGINS_IN_FLIGHT", value_parser = clap::value_parser!(u32).range(1..))]
    pub logins_in_flight: Option<u32>,
    /// Log format: `text` or `json` [default: text]. The level comes from RUST_LOG (default info).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// PEM certificate chain: serve TLS (`wss://`, `https://`) with it and `--tls-key`. Reloaded on
    /// SIGHUP and when the file changes.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Keys of the server API (`/api/`, `Authorization: Bearer KEY`), comma-separated; the API is
    /// off without one. Never logged.
    #[arg(long, env = "SWITCHBOARD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Option<Vec<String>>,
    /// URL (http or https) that hook events are POSTed to: offline private messages, users online
    /// and offline, rooms created.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_URL", requires = "webhook_secret")]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key that signs each hook POST. Never logged.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Hook events queued at most while the URL is slow or down; more are dropped [default: 10000].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_QUEUE")]
    pub webhook_queue: Option<usize>,
}

/// The TOML file: the same names as the flags, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    bus: Option<String>,
    cluster: Option<String>,
    public_url: Option<String>,
    heartbeat_ms: Option<u64>,
    node_timeout_ms: Option<u64>,
    reorder_wait_ms: Option<u64>,
    sqlite_sync_full: Option<bool>,
    node_id: Option<String>,
    registration: Option<bool>,
    open_auth: Option<bool>,
    jwt_secret: Option<String>,
    session_ttl_hours: Option<u64>,
    bad_words: Option<PathBuf>,
    join_history: Option<u32>,
    room_events_max_members: Option<u64>,
    room_size_interval_ms: Option<u64>,
    presence: Option<String>,
    presence_watch_max: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_text_chars: Option<usize>,
    rate_per_sec: Option<f64>,
    rate_burst: Option<f64>,
    queue_max_frames: Option<usize>,
    queue_max_bytes: Option<usize>,
    sync_limit: Option<u32>,
    popular_window_secs: Option<u32>,
    room_announcements_per_sec: Option<u32>,
    ping_interval_secs: Option<u64>,
    auth_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
    password_checks: Option<u32>,
    password_checks_waiting: Option<usize>,
    logins_in_flight: Option<u32>,
    log_format: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    api_keys: Option<Vec<String>>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_queue: Option<usize>,
}

pub enum StoreKind {
    Sqlite(PathBuf),
    Memory,
    Postgres(String),
}

pub enum BusKind {
    /// A cluster of one.
    InProcess,
    Redis(String),
    Nats(String),
}

pub struct Settings {
    pub chat: ChatConfig,
    pub server: ServerConfig,
    pub store: StoreKind,
    pub bus: BusKind,
    pub cluster: String,
    pub sqlite_sync_full: bool,
    pub log_format: String,
}

macro_rules! pick {
    ($args:ident, $file:ident, $field:ident) => {
        $args.$field.clone().or($file.$field.clone())
    };
}

impl Settings {
    pub fn load(args: ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileSettings>(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let mut chat = ChatConfig::default();
        let mut server = ServerConfig::default();
        if let Some(listen) = pick!(args, file, listen) {
            server.listen = listen;
        }
        let data_dir = pick!(args, file, data_dir).unwrap_or_else(|| PathBuf::from("switchboard-data"));
        let store = match pick!(args, file, store).as_deref() {
            None | Some("sqlite") => StoreKind::Sqlite(data_dir.join("switchboard.sqlite3")),
            Some("memory") => StoreKind::Memory,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                StoreKind::Postgres(url.to_owned())
            }
            Some(other) => match other.strip_prefix("sqlite:") {
                Some(path) => StoreKind::Sqlite(PathBuf::from(path)),
                None => anyhow::bail!(
                    "unknown store '{}': use sqlite, sqlite:PATH, memory or postgres://...",
                    redact(other)
                ),
            },
        };
        let bus = match pick!(args, file, bus).as_deref() {
            None | Some("") | Some("none") => BusKind::InProcess,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => BusKind::Redis(url.to_owned()),
            Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => BusKind::Nats(url.to_owned()),
            Some(other) => anyhow::bail!("unknown bus '{}': use redis://... or nats://...", redact(other)),
        };
        server.tls = match (pick!(args, file, tls_cert), pick!(args, file, tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("tls needs both tls_cert and tls_key"),
        };
        server.api_keys = ApiKeys::new(pick!(args, file, api_keys).unwrap_or_default());
        server.webhook = match (pick!(args, file, webhook_url), pick!(args, file, webhook_secret)) {
            (Some(url), Some(secret)) if !secret.is_empty() => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!("webhook_url must be an http:// or https:// url");
                }
                let queue = pick!(args, file, webhook_queue).unwrap_or(10_000);
                Some(WebhookConfig { url, secret, queue })
            }
            (None, _) => None,
            _ => anyhow::bail!("webhook_url needs webhook_secret"),
        };
        let cluster = pick!(args, file, cluster).unwrap_or_else(|| "switchboard".into());
        chat.node_id = pick!(args, file, node_id).unwrap_or_else(|| format!("node-{}", server.listen.port()));
        let scheme = if server.tls.is_some() { "wss" } else { "ws" };
        chat.public_url = pick!(args, file, public_url).unwrap_or_else(|| format!("{scheme}://{}/ws", server.listen));
        if let Some(value) = pick!(args, file, heartbeat_ms) {
            chat.heartbeat_interval = Duration::from_millis(value.max(10));
        }
        if let Some(value) = pick!(args, file, node_timeout_ms) {
            chat.node_timeout = Duration::from_millis(value.max(10));
        }
        if let Some(value) = pick!(args, file, reorder_wait_ms) {
            chat.reorder_wait = Duration::from_millis(value.max(1));
        }
        if let Some(registration) = pick!(args, file, registration) {
            chat.registration = registration;
        }
        if let Some(open_auth) = pick!(args, file, open_auth) {
            chat.open_auth = open_auth;
        }
        chat.jwt_secret = pick!(args, file, jwt_secret).filter(|secret| !secret.is_empty());
        if let Some(hours) = pick!(args, file, session_ttl_hours) {
            chat.session_ttl = Duration::from_secs(hours * 3600);
        }
        if let Some(path) = pick!(args, file, bad_words) {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading the word list {}", path.display()))?;
            chat.bad_words = text.lines().map(str::to_owned).collect();
        }
        if let Some(value) = pick!(args, file, join_history) {
            chat.join_history = value;
        }
        if let Some(value) = pick!(args, file, room_events_max_members) {
            chat.room_events_max_members = value;
        }
        if let Some(value) = pick!(args, file, room_size_interval_ms) {
            chat.room_size_interval = Duration::from_millis(value.max(10));
        }
        if let Some(value) = pick!(args, file, presence) {
            chat.presence_everyone = match value.as_str() {
                "contacts" => false,
                "everyone" => true,
                other => anyhow::bail!("presence must be 'contacts' or 'everyone', not '{other}'"),
            };
        }
        if let Some(value) = pick!(args, file, presence_watch_max) {
            chat.presence_watch_max = value.max(1);
        }
        if let Some(value) = pick!(args, file, max_frame_bytes) {
            server.max_frame_bytes = value;
        }
        if let Some(value) = pick!(args, file, max_text_chars) {
            chat.max_text_chars = value;
        }
        if let Some(value) = pick!(args, file, rate_per_sec) {
            chat.rate_per_sec = value;
        }
        if let Some(value) = pick!(args, file, rate_burst) {
            chat.rate_burst = value;
        }
        if let Some(value) = pick!(args, file, queue_max_frames) {
            chat.queue_max_frames = value;
        }
        if let Some(value) = pick!(args, file, queue_max_bytes) {
            chat.queue_max_bytes = value;
        }
        if let Some(value) = pick!(args, file, sync_limit) {
            chat.sync_limit_per_conv = value;
        }
        if let Some(value) = pick!(args, file, popular_window_secs) {
            chat.popular_window_secs = value;
        }
        if let Some(value) = pick!(args, file, room_announcements_per_sec) {
            chat.room_announcements_per_sec = value;
        }
        if let Some(value) = pick!(args, file, ping_interval_secs) {
            server.ping_interval = Duration::from_secs(value.max(1));
        }
        if let Some(value) = pick!(args, file, auth_timeout_secs) {
            server.auth_timeout = Duration::from_secs(value.max(1));
        }
        if let Some(value) = pick!(args, file, shutdown_grace_secs) {
            server.shutdown_grace = Duration::from_secs(value);
        }
        if let Some(proxies) = pick!(args, file, trusted_proxies) {
            server.trusted_proxies = proxies;
        }
        if let Some(value) = pick!(args, file, password_checks) {
            chat.password_checks = value.max(1) as usize;
        }
        if let Some(value) = pick!(args, file, logins_in_flight) {
            chat.logins_in_flight = value.max(1) as usize;
        }
        if let Some(value) = pick!(args, file, password_checks_waiting) {
            chat.password_checks_waiting = value;
        }
        let log_format = pick!(args, file, log_format).unwrap_or_else(|| "text".into());
        if !matches!(log_format.as_str(), "text" | "json") {
            anyhow::bail!("log format must be text or json, not '{log_format}'");
        }
        let sqlite_sync_full = pick!(args, file, sqlite_sync_full).unwrap_or(false);
        Ok(Settings { chat, server, store, bus, cluster, sqlite_sync_full, log_format })
    }

    pub fn sqlite_options(&self) -> SqliteOptions {
        SqliteOptions { synchronous_full: self.sqlite_sync_full }
    }

    /// A one-line summary for the log; secrets are shown only as set or not.
    pub fn describe(&self) -> String {
        let store = match &self.store {
            StoreKind::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreKind::Memory => "memory".into(),
            StoreKind::Postgres(url) => redact(url),
        };
        let bus = match &self.bus {
            BusKind::InProcess => "none".to_owned(),
            BusKind::Redis(url) | BusKind::Nats(url) => redact(url),
        };
        format!(
            "listen={} tls={} api_keys={} webhook={} node={} store={} bus={} cluster={} registration={} open_auth={} jwt={} bad_words={}",
            self.server.listen,
            if self.server.tls.is_some() { "on" } else { "off" },
            if self.server.api_keys.is_empty() { "off" } else { "set" },
            if self.server.webhook.is_some() { "set" } else { "off" },
            self.chat.node_id,
            store,
            bus,
            self.cluster,
            self.chat.registration,
            self.chat.open_auth,
            if self.chat.jwt_secret.is_some() { "set" } else { "off" },
            self.chat.bad_words.len(),
        )
    }
}

/// A URL without its user and password, for logs and errors: secrets are never logged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // The admin page shows the last warnings and errors.
    let registry = tracing_subscriber::registry().with(filter).with(RecentErrorsLayer);
    if format == "json" {
        registry.with(tracing_subscriber::fmt::layer().json().with_ansi(ansi)).init();
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi)).init();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// One test owns the process environment, so nothing races on `SWITCHBOARD_*` variables.
    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchboard.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9001\"\nnode_id = \"from-file\"\njoin_history = 7\nopen_auth = true\nbus = \"nats://127.0.0.1:4222\"\n",
        )
        .unwrap();
        std::env::set_var("SWITCHBOARD_NODE_ID", "from-env");
        std::env::set_var("SWITCHBOARD_JOIN_HISTORY", "9");
        let parsed = Cli::try_parse_from(["switchboard", "--config", file.to_str().unwrap(), "--join-history", "11"]);
        std::env::remove_var("SWITCHBOARD_NODE_ID");
        std::env::remove_var("SWITCHBOARD_JOIN_HISTORY");
        let settings = Settings::load(parsed.unwrap().serve).unwrap();
        assert_eq!(settings.server.listen.port(), 9001, "the file counts when nothing else says");
        assert_eq!(settings.chat.node_id, "from-env", "the environment beats the file");
        assert_eq!(settings.chat.join_history, 11, "a flag beats the environment");
        assert!(settings.chat.open_auth);
        assert!(matches!(settings.bus, BusKind::Nats(_)));
        assert_eq!(settings.chat.public_url, "ws://127.0.0.1:9001/ws");
    }

    #[test]
    fn defaults_are_a_standalone_server_on_8080_with_sqlite_in_the_data_folder() {
        let settings = Settings::load(Cli::try_parse_from(["switchboard"]).unwrap().serve).unwrap();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(&settings.store, StoreKind::Sqlite(path) if path.starts_with("switchboard-data")));
        assert!(matches!(settings.bus, BusKind::InProcess));
        assert!(!settings.chat.open_auth, "open login is off by default");
        assert!(settings.chat.jwt_secret.is_none());
    }

    #[test]
    fn a_mistyped_setting_in_the_file_is_an_error_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
        let args = Cli::try_parse_from(["switchboard", "--config", file.to_str().unwrap()]).unwrap().serve;
        assert!(Settings::load(args).is_err());
    }

    #[test]
    fn secrets_are_not_shown() {
        assert_eq!(redact("postgres://user:hunter2@db:5432/chat"), "postgres://***@db:5432/chat");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let settings = Settings::load(
            Cli::try_parse_from([
                "switchboard",
                "--jwt-secret",
                "hunter2",
                "--store",
                "postgres://u:hunter2@h/db",
                "--api-keys",
                "hunter2,other",
            ])
            .unwrap()
            .serve,
        )
        .unwrap();
        assert!(!settings.describe().contains("hunter2"), "{}", settings.describe());
        assert!(settings.server.api_keys.accepts("other"));
        assert!(!format!("{:?}", settings.server).contains("hunter2"), "nor in the server settings' Debug");
    }
}
