//! Seed 001's protocol: `{id, action, data}` JSON frames over a plain WebSocket opened at `/`
//! (its CLI connects to `ws://host:port`), and its gateway `GET /server`, on native sessions.
//!
//! Actions: `login {username, password?}` (no password: a native `login_open`, so only with
//! `--open-auth`; failures answer 401), `chat` to a user (404 "user X is not on line" when the
//! user is offline) or to a room (`roomName`), `joinRoom` (the room's last 50 messages replayed as
//! `chat` frames, oldest first), `userInfo`, `popular`. A room chat reaches every online member,
//! the sender included (its own copy comes from the native `ack`); non-members and unknown rooms
//! get nothing. Every `chat` frame carries a string `roomName` (`""` for a private one): the CLI
//! crashes on one without.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use switchboard_core::outbound::QueueStatus;
use switchboard_core::{ChatNode, Flow, Session};
use switchboard_protocol::ws::WireFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::server::ServerContext;

/// Messages `joinRoom` replays.
const REPLAY: usize = 50;
/// Requests waiting for their answer; past this the oldest are forgotten.
const MAX_PENDING: usize = 256;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// `GET /server`: `{host, port}` of the least-loaded live node; `?all=1`: all of them.
pub fn gateway(context: &ServerContext, query: Option<&str>) -> crate::http::HttpResponse {
    let mut nodes = context.node.cluster_nodes();
    nodes.sort_by(|a, b| a.connections.cmp(&b.connections).then_with(|| a.id.cmp(&b.id)));
    let addresses: Vec<Value> = nodes.iter().filter_map(|node| host_port(&node.url)).collect();
    let all = query.is_some_and(|query| query.split('&').any(|pair| pair == "all=1"));
    match (all, addresses.first()) {
        (true, _) => crate::http::json(hyper::StatusCode::OK, &Value::Array(addresses)),
        (false, Some(best)) => crate::http::json(hyper::StatusCode::OK, best),
        (false, None) => crate::http::json(hyper::StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "no live node"})),
    }
}

/// `{host, port}` of a node's public WebSocket URL.
fn host_port(url: &str) -> Option<Value> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some(json!({"host": host.trim_start_matches('[').trim_end_matches(']'), "port": port.parse::<u16>().ok()?}))
}

/// Serves one upgraded connection.
pub async fn serve(upgraded: Upgraded, peer: SocketAddr, context: Arc<ServerContext>) {
    let _drain_guard = context.drain.clone();
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(context.config.max_frame_bytes);
    config.max_frame_size = Some(context.config.max_frame_bytes);
    let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let Some(mut session) = login(&mut socket, &context.node, peer.ip()).await else { return };
    run(&mut socket, &mut session, &context).await;
    session.end();
    let _ = socket.close(None).await;
}

fn error(id: &Value, code: u16, message: &str) -> Message {
    let frame = json!({"id": id, "action": "error", "data": {"code": code, "message": message, "ext": null}});
    Message::text(frame.to_string())
}

async fn login(socket: &mut Socket, node: &ChatNode, peer: IpAddr) -> Option<Session> {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        let id = frame["id"].clone();
        if frame["action"] != "login" {
            let _ = socket.send(error(&id, 401, "not logged in")).await;
            continue;
        }
        let username = frame["data"]["username"].as_str().unwrap_or_default();
        let login = match frame["data"]["password"].as_str() {
            Some(password) => json!({"type": "login", "username": username, "password": password}),
            None => json!({"type": "login_open", "username": username, "presence": false}),
        };
        match node.login(&login.to_string(), peer).await {
            Ok(session) => {
                let data = json!({"username": session.user(), "sessionId": session.connection().id.to_string()});
                let answer = json!({"id": id, "action": "login", "data": data});
                socket.send(Message::text(answer.to_string())).await.ok()?;
                return Some(session);
            }
            Err(_) => socket.send(error(&id, 401, "login failed")).await.ok()?,
        }
    }
    None
}

/// What woke the connection's task.
enum Wake {
    Gone,
    Message(Message),
    Queued,
}

/// What a native answer completes.
enum Waiting {
    /// A private chat: its echo to the sender has already gone; an error is a 404.
    Direct {
        id: Value,
        to: String,
    },
    /// A room chat: the sender's copy comes with the ack; an error means nothing.
    Room {
        chat: Value,
    },
    Join {
        id: Value,
    },
    UserInfo {
        id: Value,
    },
    Popular {
        id: Value,
    },
}

async fn run(socket: &mut Socket, session: &mut Session, context: &ServerContext) {
    let connection = session.connection().clone();
    let mut pending: HashMap<u64, Waiting> = HashMap::new();
    let mut next_ref = 0u64;
    let mut batch: Vec<WireFrame> = Vec::new();
    let mut shutdown = context.shutdown.clone();
    loop {
        let wake = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => Wake::Gone,
            message = socket.next() => match message {
                Some(Ok(message)) => Wake::Message(message),
                _ => Wake::Gone,
            },
            _ = connection.ready() => Wake::Queued,
        };
        match wake {
            Wake::Gone | Wake::Message(Message::Close(_)) => return,
            Wake::Queued => {}
            Wake::Message(Message::Text(text)) => {
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                next_ref += 1;
                if pending.len() >= MAX_PENDING {
                    pending.clear();
                }
                let (request, waiting) = match translate(&frame, session.user(), next_ref, &context.node) {
                    Ok(translated) => translated,
                    Err(reply) => {
                        let _ = socket.send(reply).await;
                        continue;
                    }
                };
                pending.insert(next_ref, waiting);
                if let Flow::Close(_) = Box::pin(session.handle_text(&request.to_string())).await {
                    return;
                }
            }
            Wake::Message(_) => continue,
        }
        let status = connection.drain_into(&mut batch, 64);
        for frame in batch.drain(..) {
            let Ok(frame) = serde_json::from_slice::<Value>(&frame.payload()) else { continue };
            for out in answer(&frame, &mut pending) {
                if socket.send(Message::text(out.to_string())).await.is_err() {
                    return;
                }
            }
        }
        if status != QueueStatus::Open {
            return;
        }
    }
}

fn chat_frame(id: &Value, from: &Value, to: &Value, room: &Value, ts: &Value, text: &Value) -> Value {
    let room = if room.is_string() { room.clone() } else { Value::String(String::new()) };
    let data = json!({"from": from, "to": to, "roomName": room, "ts": ts, "format": "text", "message": text});
    json!({"id": id, "action": "chat", "data": data})
}

/// The native request for an action, and what its answer completes.
fn translate(frame: &Value, me: &str, reference: u64, node: &ChatNode) -> Result<(Value, Waiting), Message> {
    let id = frame["id"].clone();
    let data = &frame["data"];
    let unknown = || error(&frame["id"], 400, "unknown action or bad data");
    let translated = match frame["action"].as_str().ok_or_else(unknown)? {
        "chat" => {
            let text = data["message"].clone();
            match data["roomName"].as_str().filter(|room| !room.is_empty()) {
                Some(room) => {
                    let chat = chat_frame(&id, &json!(me), &data["to"], &json!(room), &data["ts"], &text);
                    Some((
                        json!({"type": "send", "ref": reference, "room": room, "text": text}),
                        Waiting::Room { chat },
                    ))
                }
                None => {
                    let to = data["to"].as_str().ok_or_else(unknown)?.to_owned();
                    if !node.is_online(&to) {
                        return Err(error(&id, 404, &format!("user {to} is not on line")));
                    }
                    let waiting = Waiting::Direct { id, to: to.clone() };
                    Some((json!({"type": "send", "ref": reference, "to": to, "text": text}), waiting))
                }
            }
        }
        "joinRoom" => Some((json!({"type": "join", "ref": reference, "room": data["roomName"]}), Waiting::Join { id })),
        "userInfo" => {
            Some((json!({"type": "stats", "ref": reference, "user": data["username"]}), Waiting::UserInfo { id }))
        }
        "popular" => {
            let n = data["n"].as_i64().unwrap_or(1).max(1);
            Some((json!({"type": "popular", "ref": reference, "n": n}), Waiting::Popular { id }))
        }
        _ => None,
    };
    translated.ok_or_else(unknown)
}

/// The seed's frames for a native frame.
fn answer(frame: &Value, pending: &mut HashMap<u64, Waiting>) -> Vec<Value> {
    let kind = frame["type"].as_str().unwrap_or_default();
    if crate::socketio::is_change(frame) {
        return Vec::new();
    }
    if kind == "message" {
        let to = if frame["room"].is_string() { Value::Null } else { frame["to"].clone() };
        return vec![chat_frame(&Value::Null, &frame["from"], &to, &frame["room"], &frame["ts"], &frame["text"])];
    }
    let Some(waiting) = frame["ref"].as_u64().and_then(|reference| pending.remove(&reference)) else {
        return Vec::new();
    };
    match (waiting, kind) {
        (Waiting::Direct { id, to }, "error") => {
            vec![
                json!({"id": id, "action": "error", "data": {"code": 404, "message": format!("user {to} is not on line"), "ext": null}}),
            ]
        }
        (Waiting::Direct { .. }, _) => Vec::new(),
        (Waiting::Room { mut chat }, "ack") => {
            chat["data"]["ts"] = frame["ts"].clone();
            vec![chat]
        }
        (Waiting::Join { id }, "room") => {
            let history = frame["history"].as_array().cloned().unwrap_or_default();
            let start = history.len().saturating_sub(REPLAY);
            history[start..]
                .iter()
                .filter(|message| !crate::socketio::is_change_view(message))
                .map(|message| {
                    chat_frame(&id, &message["from"], &Value::Null, &frame["room"], &message["ts"], &message["text"])
                })
                .collect()
        }
        (Waiting::UserInfo { id }, "stats") => {
            let node = frame["nodes"].as_array().and_then(|nodes| nodes.first()).cloned().unwrap_or(Value::Null);
            let data = json!({"username": frame["user"], "loginTime": frame["online_since"], "nodeId": node});
            vec![json!({"id": id, "action": "userInfo", "data": data})]
        }
        (Waiting::Popular { id }, "popular") => {
            let words = frame["words"].as_array().cloned().unwrap_or_default();
            let flat: Vec<Value> = words
                .iter()
                .flat_map(|word| [word["word"].clone(), Value::String(word["count"].to_string())])
                .collect();
            vec![json!({"id": id, "action": "popular", "data": flat})]
        }
        (Waiting::UserInfo { id } | Waiting::Popular { id } | Waiting::Join { id }, _) => {
            let message = frame["message"].as_str().unwrap_or("not found");
            vec![json!({"id": id, "action": "error", "data": {"code": 404, "message": message, "ext": null}})]
        }
        (Waiting::Room { .. }, _) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_to_messages_never_reach_the_seed_as_chats() {
        let mut pending = HashMap::new();
        let message =
            json!({"type": "message", "conv": "room:r", "seq": 1, "from": "a", "room": "r", "text": "hi", "ts": 1});
        assert_eq!(answer(&message, &mut pending).len(), 1);
        let edit = json!({"type": "message", "conv": "room:r", "seq": 2, "from": "a", "room": "r", "text": "hi!",
            "ts": 2, "kind": "edit", "target": 1});
        assert!(answer(&edit, &mut pending).is_empty(), "an edit is no new chat");
        let tombstone =
            json!({"type": "message", "seq": 1, "from": "a", "room": "r", "text": "", "ts": 1, "deleted": true});
        assert!(answer(&tombstone, &mut pending).is_empty());

        // A join's replayed history: the messages as they are now, without changes or tombstones.
        pending.insert(7, Waiting::Join { id: json!(3) });
        let joined = json!({"type": "room", "ref": 7, "room": "r", "history": [
            {"seq": 1, "from": "a", "text": "", "ts": 1, "deleted": true},
            {"seq": 2, "from": "a", "text": "edited", "ts": 2, "edited_at": 3},
            {"seq": 3, "from": "a", "text": "edited", "ts": 3, "kind": "edit", "target": 2},
            {"seq": 4, "from": "b", "text": "👍", "ts": 4, "kind": "react", "target": 2}]});
        let chats = answer(&joined, &mut pending);
        assert_eq!(chats.len(), 1, "{chats:?}");
        assert_eq!(chats[0]["data"]["message"], "edited");
    }
}
