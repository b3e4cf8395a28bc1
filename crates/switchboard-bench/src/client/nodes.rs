//! The nodes under load and the options of the message scenarios: which servers, from which
//! source addresses, as which users.

use std::net::IpAddr;

use anyhow::{bail, Context};

use super::{Protocol, Target};
use crate::metrics::{self, Scrape};

/// Options shared by the message scenarios (`pm`, `fanout`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// WebSocket URL of a node; repeat it for the nodes of a cluster (clients are spread over them,
    /// /metrics is scraped from each).
    #[arg(long = "url", value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// HS256 secret the servers were started with (--jwt-secret); users log in with login_jwt.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Spread connections over source addresses 127.0.0.1 .. 127.0.0.K (loopback targets only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254))]
    pub sources: u32,
    /// How long to measure (per step for `fanout --steps`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: u64,
    /// How long to send before measuring (before every step for `fanout --steps`).
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// After sending stops, how long to wait at most for messages still on their way.
    #[arg(long, default_value_t = 5)]
    pub grace_secs: u64,
    /// Handshakes (TCP connect to `synced`) in flight at once.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// Give up on a connection that is not set up after this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// User names are `{prefix}-{i:06}`. Default: the scenario's name and a tag of this run, so
    /// that every run starts with fresh users (nothing to sync at login, no old room memberships).
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Also print all figures as one JSON line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// How clients talk to the servers: `native` (Switchboard's frames on the --url path),
    /// `socketio` (the same frames as Socket.IO events, for the Socket.IO peer in bench/peers) or
    /// `switchboard-socketio` (Switchboard's own Socket.IO endpoint, docs/socketio.md); with
    /// either Socket.IO protocol the path becomes /socket.io/.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// A Redis broker (`redis://host:port`) whose CPU (`INFO`: used_cpu_sys + used_cpu_user) is
    /// read with the nodes' /metrics, so that the window's `server.broker_cpu_seconds` covers it.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
}

impl LoadArgs {
    /// The `--url` nodes for `--protocol`, with the `--broker` to scrape alongside them.
    pub async fn nodes(&self) -> anyhow::Result<Nodes> {
        let mut nodes = Nodes::resolve_as(&self.urls, self.sources, self.protocol).await?;
        if let Some(broker) = &self.broker {
            nodes.broker = Some(metrics::redis_authority(broker)?);
        }
        Ok(nodes)
    }

    /// `--user-prefix`, or `{scenario}-{tag}` with a tag that differs from run to run.
    pub fn prefix(&self, scenario: &str, connections: u64) -> anyhow::Result<String> {
        let prefix = self.user_prefix.clone().unwrap_or_else(|| format!("{scenario}-{}", run_tag()));
        check_user_prefix(&prefix, connections.saturating_sub(1).to_string().len().max(6))?;
        Ok(prefix)
    }
}

/// Six base-36 characters from the clock (milliseconds, wrapping after 25 days).
pub fn run_tag() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    let mut value = millis % 36u64.pow(6);
    let mut tag = [b'0'; 6];
    for slot in tag.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8_lossy(&tag).into_owned()
}

/// The nodes under load, one [`Target`] per `--url`, and the source addresses for each.
pub struct Nodes {
    pub targets: Vec<Target>,
    sources: Vec<Vec<Option<IpAddr>>>,
    /// `host:port` of a Redis broker scraped with the nodes by [`Nodes::scrape`].
    pub broker: Option<String>,
}

impl Nodes {
    /// The nodes of `urls`, for the native protocol.
    pub async fn resolve(urls: &[String], sources: u32) -> anyhow::Result<Self> {
        Self::resolve_as(urls, sources, Protocol::Native).await
    }

    pub async fn resolve_as(urls: &[String], sources: u32, protocol: Protocol) -> anyhow::Result<Self> {
        let mut targets: Vec<Target> = Vec::with_capacity(urls.len());
        let mut per_target = Vec::with_capacity(urls.len());
        for url in urls {
            let target = Target::resolve_as(url, protocol).await?;
            if let Some(other) = targets.iter().find(|other| other.addr == target.addr) {
                bail!("{url} and {} are the same node ({})", other.url, target.addr);
            }
            per_target.push(target.sources(sources)?);
            targets.push(target);
        }
        if targets.is_empty() {
            bail!("no --url given");
        }
        Ok(Nodes { targets, sources: per_target, broker: None })
    }

    /// Scrapes every node's /metrics and the broker's `INFO` at once: the nodes' scrapes in order,
    /// then the broker's (marked as such, so that [`metrics::ServerDelta::between`] keeps its
    /// CPU apart). A node that fails is `None`, with a warning naming `when`.
    pub async fn scrape(&self, when: &str) -> Vec<Option<Scrape>> {
        let broker = async {
            let broker = self.broker.as_deref()?;
            Some(metrics::scrape_redis(broker).await.unwrap_or_else(|error| {
                eprintln!("warning: reading INFO of the broker {broker} {when} failed: {error:#}");
                Scrape::broker_failed()
            }))
        };
        let (mut scrapes, broker) = tokio::join!(metrics::scrape_nodes(&self.targets, when), broker);
        if let Some(broker) = broker {
            scrapes.push(Some(broker));
        }
        scrapes
    }

    /// Scrapes every node's /metrics once: an error names the first that does not answer.
    pub async fn check_up(&self) -> anyhow::Result<()> {
        for target in &self.targets {
            metrics::scrape(target)
                .await
                .with_context(|| format!("scraping /metrics of {} (is it up?)", target.url))?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The source address of the `nth` connection to `node` (round-robin).
    pub fn source(&self, node: usize, nth: usize) -> Option<IpAddr> {
        let sources = &self.sources[node];
        sources[nth % sources.len()]
    }

    /// How many source addresses each node gets.
    pub fn sources_per_node(&self) -> usize {
        self.sources[0].len()
    }

    /// For connections placed on `placement[i]`, the source address of each (round-robin per node).
    pub fn assign_sources(&self, placement: &[usize]) -> Vec<Option<IpAddr>> {
        let mut nth = vec![0usize; self.len()];
        placement
            .iter()
            .map(|&node| {
                nth[node] += 1;
                self.source(node, nth[node] - 1)
            })
            .collect()
    }

    pub fn urls(&self) -> Vec<String> {
        self.targets.iter().map(|target| target.url.clone()).collect()
    }
}

/// Checks that `{prefix}-{n}` user names (n zero-padded to `digits`) are valid Switchboard user
/// names: lowercase `[a-z0-9_.-]`, 1..=32 characters.
pub fn check_user_prefix(prefix: &str, digits: usize) -> anyhow::Result<()> {
    if !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
        bail!("--user-prefix may only hold lowercase a-z, 0-9, '_', '.' and '-'");
    }
    let longest = prefix.len() + 1 + digits;
    if longest > 32 {
        bail!("user names would be {longest} characters long; the limit is 32 (shorten --user-prefix)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tags_are_short_names() {
        let tag = run_tag();
        assert_eq!(tag.len(), 6);
        assert!(check_user_prefix(&format!("fanout-{tag}"), 6).is_ok());
    }

    #[test]
    fn user_prefixes_are_checked() {
        assert!(check_user_prefix("idle", 6).is_ok());
        assert!(check_user_prefix("Idle", 6).is_err());
        assert!(check_user_prefix("a b", 6).is_err());
        assert!(check_user_prefix(&"x".repeat(25), 6).is_ok());
        assert!(check_user_prefix(&"x".repeat(26), 6).is_err());
    }

    #[tokio::test]
    async fn sources_go_round_robin_per_node() {
        let urls = ["ws://127.0.0.1:1/ws".to_string(), "ws://127.0.0.1:2/ws".to_string()];
        let nodes = Nodes::resolve(&urls, 2).await.unwrap();
        assert_eq!(nodes.len(), 2);
        let ip = |last| Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last)));
        assert_eq!(nodes.assign_sources(&[0, 1, 0, 1, 0]), [ip(1), ip(1), ip(2), ip(2), ip(1)]);
        let twice = [urls[0].clone(), "ws://127.0.0.1:1/other".to_string()];
        assert!(Nodes::resolve(&twice, 1).await.is_err());
    }

    #[tokio::test]
    async fn load_options_take_a_protocol_and_a_broker() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["bench", "--jwt-secret", "s"], args].concat());
        let defaults = parse(&[]).unwrap().load;
        assert_eq!((defaults.protocol, defaults.broker.as_deref()), (Protocol::Native, None));
        let load =
            parse(&["--protocol", "socketio", "--broker", "redis://127.0.0.1:16391", "--url", "ws://127.0.0.1:3/x"])
                .unwrap()
                .load;
        assert_eq!(load.protocol, Protocol::SocketIo);
        let nodes = load.nodes().await.unwrap();
        assert_eq!(nodes.targets[0].url, "ws://127.0.0.1:3/socket.io/?EIO=4&transport=websocket");
        assert_eq!(nodes.broker.as_deref(), Some("127.0.0.1:16391"));
        assert!(parse(&["--protocol", "grpc"]).is_err());
    }
}
