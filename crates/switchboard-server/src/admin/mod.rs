//! `/admin`: a plain HTML page for operators, behind an API key (HTTP Basic with the key as the
//! password, so a browser asks for it, or `Authorization: Bearer <key>`). It shows the cluster's
//! nodes and their load, this node's connections, the largest rooms, message rates from the
//! node's own counters (sampled every [`recent::SAMPLE_INTERVAL`]) and the recent warnings and
//! errors of the log. It refreshes itself every 10 seconds.

pub mod recent;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use base64::Engine;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};

use crate::http::{self, HttpResponse};
use crate::server::ServerContext;

/// Rooms read to find the largest, and how many are shown.
const ROOMS_READ: u32 = 5000;
const ROOMS_SHOWN: usize = 20;

pub async fn page(headers: &HeaderMap, context: &ServerContext) -> HttpResponse {
    if !authorized(headers, context) {
        let mut response = http::text(StatusCode::UNAUTHORIZED, "text/plain; charset=utf-8", "api key needed\n");
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"switchboard admin\""));
        return response;
    }
    let mut html = String::with_capacity(16 * 1024);
    let node = &context.node;
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Switchboard admin: {id}</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:60em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}td.n{{text-align:right}}</style></head><body>\
         <h1>Switchboard admin: node {id}</h1>",
        id = escape(node.node_id())
    );
    html.push_str(
        "<h2>Nodes</h2><table id=\"nodes\"><tr><th>Node</th><th>URL</th><th>Connections</th><th>Up since</th></tr>",
    );
    for info in node.cluster_nodes() {
        let _ = write!(
            html,
            "<tr><td>{}{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&info.id),
            if info.id == node.node_id() { " (this one)" } else { "" },
            escape(&info.url),
            info.connections,
            info.started_at / 1000,
        );
    }
    html.push_str("</table>");
    let metrics = node.metrics();
    let _ = write!(
        html,
        "<h2>Connections on this node</h2><table id=\"connections\"><tr><th>WebSocket connections</th><td class=\"n\">{}</td></tr>\
         <tr><th>Logged in</th><td class=\"n\">{}</td></tr><tr><th>Users online in the cluster</th><td class=\"n\">{}</td></tr>\
         <tr><th>Connections since start</th><td class=\"n\">{}</td></tr></table>",
        context.open_sockets.load(Ordering::Relaxed),
        node.connection_count(),
        node.online_count(),
        metrics.connections_total.load(Ordering::Relaxed),
    );
    html.push_str("<h2>Rates (per second)</h2><table id=\"rates\"><tr><th></th><th>Messages stored</th><th>Frames in</th><th>Frames out</th><th>Deliveries</th></tr>");
    let (recent, minute) = context.counter_history.rates(node);
    for (label, rates) in [("last 5 seconds", recent), ("last minute", minute)] {
        let _ = write!(html, "<tr><th>{label}</th>");
        match rates {
            Some(rates) => rates.iter().for_each(|rate| {
                let _ = write!(html, "<td class=\"n\">{rate:.1}</td>");
            }),
            None => html.push_str("<td colspan=\"4\">no sample yet</td>"),
        }
        html.push_str("</tr>");
    }
    let _ = write!(
        html,
        "</table><p>Totals: {} messages stored, {} deliveries, {} errors sent to clients.</p>",
        metrics.messages_stored.load(Ordering::Relaxed),
        metrics.deliveries.load(Ordering::Relaxed),
        metrics.errors_sent.load(Ordering::Relaxed),
    );
    html.push_str("<h2>Largest rooms</h2><table id=\"rooms\"><tr><th>Room</th><th>Members</th></tr>");
    match context.store.list_rooms("", None, ROOMS_READ).await {
        Ok(page) => {
            let mut rooms = page.items;
            rooms.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
            for room in rooms.iter().take(ROOMS_SHOWN) {
                let _ = write!(html, "<tr><td>{}</td><td class=\"n\">{}</td></tr>", escape(&room.name), room.members);
            }
            let _ = write!(html, "</table><p>{} rooms in all.</p>", page.total);
        }
        Err(error) => {
            let _ = write!(html, "</table><p>rooms unavailable: {}</p>", escape(&error.to_string()));
        }
    }
    html.push_str("<h2>Recent warnings and errors</h2><table id=\"errors\"><tr><th>Time (Unix s)</th><th>Level</th><th>Where</th><th>Message</th></tr>");
    for entry in recent::recent_errors() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            entry.at,
            entry.level,
            escape(&entry.target),
            escape(&entry.message)
        );
    }
    html.push_str("</table></body></html>\n");
    let mut response = http::text(StatusCode::OK, "text/html; charset=utf-8", html);
    response.headers_mut().insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Bearer, or Basic with the key as the password (any user name).
fn authorized(headers: &HeaderMap, context: &ServerContext) -> bool {
    let keys = &context.config.api_keys;
    let Some(value) = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    if let Some(key) = value.strip_prefix("Bearer ") {
        return keys.accepts(key.trim());
    }
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    decoded.split_once(':').is_some_and(|(_, key)| keys.accepts(key))
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}
