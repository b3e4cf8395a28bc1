//! Plain HTTP endpoints.
//!
//! `/metrics` is rendered by hand from the node's atomic counters, not by a metrics crate (issue
//! 14 asked to switch if output and memory stayed the same). prometheus-client encodes OpenMetrics
//! text (`# EOF` line, its own `_total` and unit handling, another content type), so scrapers and
//! the tests that read these names would see different output; `metrics` with
//! metrics-exporter-prometheus renders Prometheus text but orders and describes series its own way
//! and puts a registry lookup (or a kept handle per series) on the message path. Neither costs
//! memory per connection (the counters are per node), but neither keeps the output as it is.
//! The comparison, with figures: docs/design/metrics.md.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::process;
use crate::server::ServerContext;

pub type HttpResponse = Response<Full<Bytes>>;

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

pub fn healthz() -> HttpResponse {
    text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
}

/// Ready when the server accepts connections and its store answers.
pub async fn readyz(context: &ServerContext) -> HttpResponse {
    if context.shutting_down() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "shutting down\n");
    }
    match context.store.health().await {
        Ok(()) => text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n"),
        Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("{error}\n")),
    }
}

/// Prometheus text exposition.
pub fn metrics(context: &ServerContext) -> HttpResponse {
    let mut out = String::with_capacity(8 * 1024);
    if let Some(cpu) = process::cpu_seconds() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
    }
    if let Some(rss) = process::resident_memory_bytes() {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP switchboard_sockets Open WebSocket connections, logged in or not.\n# TYPE switchboard_sockets gauge\nswitchboard_sockets {}",
        context.open_sockets.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP switchboard_online_users Users online anywhere in the cluster.\n# TYPE switchboard_online_users gauge\nswitchboard_online_users {}",
        context.node.online_count()
    );
    context.node.metrics().render(&mut out);
    if let Some(webhooks) = &context.webhooks {
        webhooks.render(&context.node, &mut out);
    }
    text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", out)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    text(status, "application/json", value.to_string())
}

/// `GET /api/nodes`: every live node with its public URL and load (seed 001's gateway, `?all=1`).
pub fn nodes(context: &ServerContext) -> HttpResponse {
    let nodes: Vec<serde_json::Value> = context
        .node
        .cluster_nodes()
        .into_iter()
        .map(|node| {
            serde_json::json!({
                "id": node.id,
                "url": node.url,
                "connections": node.connections,
                "load": node.connections,
                "started_at": node.started_at,
                "self": node.id == context.node.node_id(),
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "nodes": nodes }))
}

/// `GET /api/connect`: the least-loaded live node, for a client choosing where to connect.
pub fn connect(context: &ServerContext) -> HttpResponse {
    let nodes = context.node.cluster_nodes();
    let Some(best) = nodes.iter().min_by(|a, b| a.connections.cmp(&b.connections).then_with(|| a.id.cmp(&b.id))) else {
        return json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": "no live node"}));
    };
    json(StatusCode::OK, &serde_json::json!({ "node": best.id, "url": best.url, "connections": best.connections }))
}

pub fn not_found() -> HttpResponse {
    text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n")
}
