//! Scraping the server's Prometheus `/metrics` over a plain HTTP/1.0 GET.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Target;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One scrape: every sample by its series (name plus labels, as written).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: HashMap<String, f64>,
    /// A broker's (read by [`scrape_redis`]), not a node's.
    broker: bool,
}

impl Scrape {
    /// A broker that could not be read: no samples, but still told apart from the nodes.
    pub fn broker_failed() -> Self {
        Scrape { samples: HashMap::new(), broker: true }
    }

    pub fn is_broker(&self) -> bool {
        self.broker
    }

    /// The value of a series, e.g. `process_cpu_seconds_total` or `foo{kind="bar"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// `process_resident_memory_bytes`.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.get("process_resident_memory_bytes").map(|value| value as u64)
    }

    /// `process_cpu_seconds_total`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.get("process_cpu_seconds_total")
    }

    /// `switchboard_connections`: logged-in connections.
    pub fn connections(&self) -> Option<u64> {
        self.get("switchboard_connections").map(|value| value as u64)
    }

    /// Parses the Prometheus text format; comments and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut samples = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The series ends at the closing brace of the labels, if any, else at whitespace.
            let series_end = match (line.find('{'), line.find(char::is_whitespace)) {
                (Some(brace), Some(space)) if brace < space => match line[brace..].find('}') {
                    Some(close) => brace + close + 1,
                    None => continue,
                },
                (_, Some(space)) => space,
                (_, None) => continue,
            };
            let (series, rest) = line.split_at(series_end);
            let Some(value) = rest.split_whitespace().next() else {
                continue;
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => match other.parse::<f64>() {
                    Ok(value) => value,
                    Err(_) => continue,
                },
            };
            samples.insert(series.to_string(), value);
        }
        Scrape { samples, broker: false }
    }

    /// A Redis `INFO` reply as a broker's scrape: `used_cpu_sys + used_cpu_user` as
    /// `process_cpu_seconds_total`, `used_memory_rss` as `process_resident_memory_bytes`.
    pub fn from_redis_info(info: &str) -> anyhow::Result<Self> {
        let field = |name: &str| -> Option<f64> {
            info.lines().find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
        };
        let (Some(sys), Some(user)) = (field("used_cpu_sys"), field("used_cpu_user")) else {
            bail!("INFO has no used_cpu_sys and used_cpu_user");
        };
        let mut samples = HashMap::from([("process_cpu_seconds_total".to_string(), sys + user)]);
        if let Some(rss) = field("used_memory_rss") {
            samples.insert("process_resident_memory_bytes".to_string(), rss);
        }
        Ok(Scrape { samples, broker: true })
    }
}

/// `GET /metrics` from the server behind `target` (same host and port as the WebSocket).
pub async fn scrape(target: &Target) -> anyhow::Result<Scrape> {
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, get(target, "/metrics"))
        .await
        .with_context(|| format!("GET http://{}/metrics timed out", target.authority))??;
    Ok(Scrape::parse(&body))
}

/// Scrapes every node at once; a node that fails is `None` (with a warning naming `when`).
pub async fn scrape_nodes(nodes: &[Target], when: &str) -> Vec<Option<Scrape>> {
    let scrapes = nodes.iter().map(|node| async move {
        match scrape(node).await {
            Ok(scrape) => Some(scrape),
            Err(error) => {
                eprintln!("warning: scraping /metrics of {} {when} failed: {error:#}", node.authority);
                None
            }
        }
    });
    futures_util::future::join_all(scrapes).await
}

/// What the servers did between two scrapes of every node: counter deltas summed over the nodes
/// (`None` unless every node was scraped both times and has the series: a server without
/// Switchboard's own counters, such as a peer in `bench/peers`, just has `None` there), each
/// node's RSS at the end, and the broker's CPU and memory if one was scraped too
/// ([`crate::client::Nodes::scrape`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerDelta {
    /// The nodes' CPU (the broker's is apart, in `broker_cpu_seconds`).
    pub cpu_seconds: Option<f64>,
    pub deliveries: Option<f64>,
    pub messages_stored: Option<f64>,
    pub bus_messages_sent: Option<f64>,
    pub bus_messages_received: Option<f64>,
    pub bus_chat_messages_received: Option<f64>,
    /// `process_resident_memory_bytes` of each node (in `--url` order) at the end.
    pub rss_bytes: Vec<Option<u64>>,
    /// The `--broker`'s CPU seconds over the window (`None` without one, or if unreadable).
    pub broker_cpu_seconds: Option<f64>,
    /// The `--broker`'s RSS at the end.
    pub broker_rss_bytes: Option<u64>,
}

impl ServerDelta {
    pub fn between(before: &[Option<Scrape>], after: &[Option<Scrape>]) -> Self {
        let is_broker = |from: &Option<Scrape>, to: &Option<Scrape>| {
            from.as_ref().is_some_and(Scrape::is_broker) || to.as_ref().is_some_and(Scrape::is_broker)
        };
        let sum_of = |brokers: bool, series: &str| -> Option<f64> {
            before
                .iter()
                .zip(after)
                .filter(|(from, to)| is_broker(from, to) == brokers)
                .map(|(from, to)| Some(to.as_ref()?.get(series)? - from.as_ref()?.get(series)?))
                .sum()
        };
        let sum = |series: &str| sum_of(false, series);
        let has_broker = before.iter().zip(after).any(|(from, to)| is_broker(from, to));
        let nodes_after = || after.iter().zip(before).filter(|(to, from)| !is_broker(from, to)).map(|(to, _)| to);
        ServerDelta {
            cpu_seconds: sum("process_cpu_seconds_total"),
            deliveries: sum("switchboard_deliveries_total"),
            messages_stored: sum("switchboard_messages_stored_total"),
            bus_messages_sent: sum("switchboard_bus_messages_sent_total"),
            bus_messages_received: sum("switchboard_bus_messages_received_total"),
            bus_chat_messages_received: sum("switchboard_bus_chat_messages_received_total"),
            rss_bytes: nodes_after().map(|scrape| scrape.as_ref().and_then(Scrape::rss_bytes)).collect(),
            broker_cpu_seconds: if has_broker { sum_of(true, "process_cpu_seconds_total") } else { None },
            broker_rss_bytes: after.iter().flatten().find(|scrape| scrape.is_broker()).and_then(Scrape::rss_bytes),
        }
    }

    /// Server CPU seconds (all nodes) per million of `units`.
    pub fn cpu_per_million(&self, units: f64) -> Option<f64> {
        crate::report::ratio(self.cpu_seconds?, units / 1e6)
    }

    /// Bus messages sent plus received (all nodes) per delivery (all nodes).
    pub fn bus_per_delivery(&self) -> Option<f64> {
        crate::report::ratio(self.bus_messages_sent? + self.bus_messages_received?, self.deliveries?)
    }
}

/// `host:port` of a `redis://[user:password@]host[:port][/db]` URL (port 6379 by default).
/// Credentials are not supported (the bench sends `INFO` without `AUTH`).
pub fn redis_authority(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        bail!("the broker must be a redis://host:port URL, got {url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        bail!("the broker URL needs a host and no credentials: {url}");
    }
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !host.ends_with(':') && !port.contains(']'),
        None => false,
    };
    Ok(if has_port { authority.to_string() } else { format!("{authority}:6379") })
}

/// Reads a Redis server's `INFO` (one command in RESP, one bulk string back) as a broker's
/// [`Scrape`].
pub async fn scrape_redis(authority: &str) -> anyhow::Result<Scrape> {
    let info = tokio::time::timeout(SCRAPE_TIMEOUT, redis_info(authority))
        .await
        .with_context(|| format!("INFO from redis://{authority} timed out"))??;
    Scrape::from_redis_info(&info)
}

async fn redis_info(authority: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect(authority).await.with_context(|| format!("connecting to redis://{authority}"))?;
    stream.write_all(b"*1\r\n$4\r\nINFO\r\n").await.with_context(|| format!("writing to redis://{authority}"))?;
    let mut reply = Vec::with_capacity(8 * 1024);
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.with_context(|| format!("reading redis://{authority}"))?;
        if read == 0 {
            bail!("redis://{authority} closed the connection before answering INFO");
        }
        reply.extend_from_slice(&chunk[..read]);
        if let Some(body) = resp_bulk_string(&reply)? {
            return Ok(body);
        }
    }
}

/// A complete RESP bulk string (`$<len>\r\n<bytes>\r\n`), `None` while incomplete.
fn resp_bulk_string(reply: &[u8]) -> anyhow::Result<Option<String>> {
    let Some(header_end) = reply.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&reply[..header_end]);
    let Some(len) = header.strip_prefix('$') else {
        bail!("unexpected answer to INFO: {}", header.chars().take(120).collect::<String>());
    };
    let len: usize = len.parse().with_context(|| format!("bad bulk string length {len:?}"))?;
    let body = &reply[header_end + 2..];
    Ok((body.len() >= len).then(|| String::from_utf8_lossy(&body[..len]).into_owned()))
}

/// A minimal HTTP/1.0 GET (over TLS for a `wss://` target): the server closes the connection
/// after the response.
async fn get(target: &Target, path: &str) -> anyhow::Result<String> {
    let scheme = if target.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", target.authority);
    let stream = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {url}"))?;
    let response = if target.tls {
        let stream = crate::tls::connect(&target.host, stream).await.with_context(|| format!("tls to {url}"))?;
        exchange(stream, target, path).await
    } else {
        exchange(stream, target, path).await
    }
    .with_context(|| format!("requesting {url}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| format!("{url}: malformed response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url}: {status}");
    }
    Ok(body.to_string())
}

/// Writes the request and reads the answer until the server closes. A TLS server that closes
/// without a close_notify has still sent the whole answer (HTTP/1.0 ends it by closing).
async fn exchange<S>(mut stream: S, target: &Target, path: &str) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n", target.authority);
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::with_capacity(16 * 1024);
    match stream.read_to_end(&mut response).await {
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        other => other.map(|_| response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_summed_over_nodes() {
        let scrape = |cpu: f64, deliveries: f64, bus: f64| {
            Some(Scrape::parse(&format!(
                "process_cpu_seconds_total {cpu}\nswitchboard_deliveries_total {deliveries}\n\
                 switchboard_bus_messages_sent_total {bus}\nswitchboard_bus_messages_received_total {bus}\n\
                 process_resident_memory_bytes 1000\n"
            )))
        };
        let before = [scrape(1.0, 10.0, 5.0), scrape(2.0, 0.0, 5.0)];
        let after = [scrape(2.0, 110.0, 55.0), scrape(4.0, 100.0, 105.0)];
        let delta = ServerDelta::between(&before, &after);
        assert_eq!(delta.cpu_seconds, Some(3.0));
        assert_eq!(delta.deliveries, Some(200.0));
        assert_eq!(delta.bus_per_delivery(), Some(1.5));
        assert_eq!(delta.cpu_per_million(200.0), Some(15_000.0));
        assert_eq!(delta.messages_stored, None);
        assert_eq!(delta.rss_bytes, vec![Some(1000), Some(1000)]);
        let missing = ServerDelta::between(&before, &[after[0].clone(), None]);
        assert_eq!(missing.cpu_seconds, None);
        assert_eq!(delta.broker_cpu_seconds, None);
    }

    #[test]
    fn a_peer_without_switchboard_counters_has_cpu_and_memory_only() {
        let scrape = |cpu: f64| {
            Some(Scrape::parse(&format!("process_cpu_seconds_total {cpu}\nprocess_resident_memory_bytes 7\n")))
        };
        let delta = ServerDelta::between(&[scrape(1.0)], &[scrape(1.5)]);
        assert_eq!(delta.cpu_seconds, Some(0.5));
        assert_eq!((delta.deliveries, delta.bus_per_delivery()), (None, None));
        assert_eq!(delta.rss_bytes, vec![Some(7)]);
    }

    #[test]
    fn the_broker_is_kept_apart_from_the_nodes() {
        let node = |cpu: f64| {
            Some(Scrape::parse(&format!("process_cpu_seconds_total {cpu}\nprocess_resident_memory_bytes 100\n")))
        };
        let broker = |sys: f64| {
            Some(
                Scrape::from_redis_info(&format!(
                    "# CPU\r\nused_cpu_sys:{sys}\r\nused_cpu_user:1.5\r\nused_cpu_sys_children:9\r\nused_memory_rss:4096\r\n"
                ))
                .unwrap(),
            )
        };
        let before = [node(1.0), node(2.0), broker(0.25)];
        let after = [node(2.0), node(4.0), broker(1.0)];
        let delta = ServerDelta::between(&before, &after);
        assert_eq!(delta.cpu_seconds, Some(3.0));
        assert_eq!(delta.broker_cpu_seconds, Some(0.75));
        assert_eq!(delta.rss_bytes, vec![Some(100), Some(100)]);
        assert_eq!(delta.broker_rss_bytes, Some(4096));
        // A broker that could not be read leaves the nodes' figures alone.
        let delta = ServerDelta::between(&before, &[node(2.0), node(4.0), Some(Scrape::broker_failed())]);
        assert_eq!((delta.cpu_seconds, delta.broker_cpu_seconds), (Some(3.0), None));
        assert!(Scrape::from_redis_info("used_cpu_user:1\r\n").is_err());
    }

    #[test]
    fn redis_urls_and_replies_are_read() {
        assert_eq!(redis_authority("redis://127.0.0.1:16391").unwrap(), "127.0.0.1:16391");
        assert_eq!(redis_authority("redis://localhost/0").unwrap(), "localhost:6379");
        assert!(redis_authority("nats://127.0.0.1:4222").is_err());
        assert!(redis_authority("redis://user:pw@host:1").is_err());
        assert_eq!(resp_bulk_string(b"$5\r\nhel").unwrap(), None);
        assert_eq!(resp_bulk_string(b"$5\r\nhello\r\n").unwrap().as_deref(), Some("hello"));
        assert!(resp_bulk_string(b"-ERR nope\r\n").is_err());
    }

    #[test]
    fn prometheus_text_is_parsed() {
        let scrape = Scrape::parse(
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 12345678\n\
             process_cpu_seconds_total 1.25\n\
             switchboard_connections 17\n\
             switchboard_frames{dir=\"in\", kind=\"a b\"} 3 1700000000\n\
             broken\n",
        );
        assert_eq!(scrape.rss_bytes(), Some(12_345_678));
        assert_eq!(scrape.cpu_seconds(), Some(1.25));
        assert_eq!(scrape.connections(), Some(17));
        assert_eq!(scrape.get("switchboard_frames{dir=\"in\", kind=\"a b\"}"), Some(3.0));
        assert_eq!(scrape.get("broken"), None);
    }
}
