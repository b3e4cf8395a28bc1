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
}

impl Scrape {
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
        Scrape { samples }
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
/// (`None` unless every node was scraped both times and has the series), and each node's RSS at
/// the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerDelta {
    pub cpu_seconds: Option<f64>,
    pub deliveries: Option<f64>,
    pub messages_stored: Option<f64>,
    pub bus_messages_sent: Option<f64>,
    pub bus_messages_received: Option<f64>,
    pub bus_chat_messages_received: Option<f64>,
    /// `process_resident_memory_bytes` of each node (in `--url` order) at the end.
    pub rss_bytes: Vec<Option<u64>>,
}

impl ServerDelta {
    pub fn between(before: &[Option<Scrape>], after: &[Option<Scrape>]) -> Self {
        let sum = |series: &str| -> Option<f64> {
            before
                .iter()
                .zip(after)
                .map(|(from, to)| Some(to.as_ref()?.get(series)? - from.as_ref()?.get(series)?))
                .sum()
        };
        ServerDelta {
            cpu_seconds: sum("process_cpu_seconds_total"),
            deliveries: sum("switchboard_deliveries_total"),
            messages_stored: sum("switchboard_messages_stored_total"),
            bus_messages_sent: sum("switchboard_bus_messages_sent_total"),
            bus_messages_received: sum("switchboard_bus_messages_received_total"),
            bus_chat_messages_received: sum("switchboard_bus_chat_messages_received_total"),
            rss_bytes: after.iter().map(|scrape| scrape.as_ref().and_then(Scrape::rss_bytes)).collect(),
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

/// A minimal HTTP/1.0 GET: the server closes the connection after the response.
async fn get(target: &Target, path: &str) -> anyhow::Result<String> {
    let url = format!("http://{}{path}", target.authority);
    let mut stream = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {url}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n", target.authority);
    stream.write_all(request.as_bytes()).await.with_context(|| format!("requesting {url}"))?;
    let mut response = Vec::with_capacity(16 * 1024);
    stream.read_to_end(&mut response).await.with_context(|| format!("reading {url}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| format!("{url}: malformed response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url}: {status}");
    }
    Ok(body.to_string())
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
