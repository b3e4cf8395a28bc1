//! The native protocol over Socket.IO: each request of docs/protocol.md is an event named by its
//! `type`, answered through the event's acknowledgement; every other frame the session sends
//! is an event named by its `type`.
//!
//! The event's payload goes through the protocol crate's own parser with `type` set to the event
//! name, so every request the native protocol knows (now or later) works here unchanged.
//! Acknowledgements are matched through `ref`: the bridge sets its own `ref` on every request and
//! puts the client's back on the answer.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use switchboard_core::outbound::QueueStatus;
use switchboard_core::{ChatNode, Flow, Session};
use switchboard_protocol::ws::WireFrame;
use switchboard_store::Store;
use tokio::sync::{mpsc, Notify};

use super::identity::{self, Refusal};
use super::{dialect, seed002};

/// Packets a socket may have waiting to be sent; more means a slow client, which is cut off.
pub const MAX_QUEUED_PACKETS: usize = 1024;
/// Requests waiting for the session; more are refused with `rate_limited`.
const REQUEST_QUEUE: usize = 64;
/// Acknowledgements waiting for their answer. `typing` has no answer on success, so an ack asked
/// for it never comes; the oldest waiting ack is dropped past this bound.
const MAX_PENDING_ACKS: usize = 256;
/// Frames taken from the session's queue at once.
const DRAIN_BATCH: usize = 64;

/// Sessions opened by the handshake, waiting for the connect handler to take them.
type Opened = Arc<Mutex<HashMap<Sid, Opening>>>;

/// A handshake's session and the dialect it chose.
enum Opening {
    Native(Session),
    /// Seed 002, with the `sessionID` to announce and whether it is new.
    Seed002(Session, String, bool),
    /// No credential, with `--open-auth`: the first event picks seed 000 or 003.
    Pending(IpAddr),
}

/// A request on its way to the session.
struct Inbound {
    text: String,
    reference: u64,
    client_ref: Option<Value>,
    ack: AckSender,
}

pub fn mount(io: &SocketIo, node: ChatNode, store: Arc<dyn Store>, max_frame_bytes: usize) {
    let opened: Opened = Arc::default();
    let check = {
        let opened = opened.clone();
        let node = node.clone();
        let store = store.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let node = node.clone();
            let store = store.clone();
            let opened = opened.clone();
            async move {
                let auth = auth.ok();
                let parts = socket.req_parts();
                let peer =
                    parts.extensions.get::<SocketAddr>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip());
                if node.config().open_auth && seed002::wants(auth.as_ref()) {
                    let auth = auth.unwrap_or_default();
                    let (frame, fresh) = seed002::login_frame(&auth, store.as_ref())
                        .await
                        .map_err(|message| Refusal::Login(message.to_owned()))?;
                    let session = node
                        .login_everyone(&frame, peer)
                        .await
                        .map_err(|_| Refusal::Login(seed002::INVALID.to_owned()))?;
                    let is_new = fresh.is_some();
                    let session_id = fresh
                        .or_else(|| auth.get("sessionID").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    opened.lock().insert(socket.id, Opening::Seed002(session, session_id, is_new));
                    return Ok(());
                }
                let frame = match identity::login_frame(auth.as_ref(), parts.uri.query()) {
                    Err(Refusal::NoCredential) if node.config().open_auth => {
                        opened.lock().insert(socket.id, Opening::Pending(peer));
                        return Ok(());
                    }
                    other => other?,
                };
                match node.login_everyone(&frame, peer).await {
                    Ok(session) => {
                        opened.lock().insert(socket.id, Opening::Native(session));
                        Ok(())
                    }
                    Err(error) => Err(identity::refusal(&error.payload())),
                }
            }
        }
    };
    let connect = move |socket: SocketRef| {
        let opening = opened.lock().remove(&socket.id);
        match opening {
            Some(Opening::Native(session)) => start(socket, session, max_frame_bytes),
            Some(Opening::Seed002(session, session_id, is_new)) => {
                seed002::start(socket, session, (session_id, is_new), node.clone(), store.clone())
            }
            Some(Opening::Pending(peer)) => dialect::start_pending(socket, node.clone(), peer),
            None => {
                let _ = socket.disconnect();
            }
        }
    };
    io.ns("/", connect.with(check));
}

/// Wires the socket's events to a new bridge task that owns the session.
fn start(socket: SocketRef, session: Session, max_frame_bytes: usize) {
    let (sender, requests) = mpsc::channel::<Inbound>(REQUEST_QUEUE);
    let gone = Arc::new(Notify::new());
    let mut next_ref = 0u64;
    socket.on_fallback(move |Event(name): Event, TryData(data): TryData<Value>, ack: AckSender| {
        next_ref += 1;
        let client_ref = data.as_ref().ok().and_then(|data| data.get("ref")).cloned();
        let text = match request_text(&name, data.ok(), next_ref) {
            Some(text) if text.len() <= max_frame_bytes => text,
            Some(_) => return refuse(ack, client_ref, "frame_too_large", "request over the frame size limit"),
            None => return refuse(ack, client_ref, "bad_frame", "the payload must be one JSON object"),
        };
        let inbound = Inbound { text, reference: next_ref, client_ref, ack };
        if let Err(mpsc::error::TrySendError::Full(inbound) | mpsc::error::TrySendError::Closed(inbound)) =
            sender.try_send(inbound)
        {
            refuse(inbound.ack, inbound.client_ref, "rate_limited", "too many requests waiting");
        }
    });
    let on_gone = gone.clone();
    socket.on_disconnect(move || on_gone.notify_one());
    tokio::spawn(bridge(socket, session, requests, gone));
}

/// The native frame for an event: its payload object with `type` and the bridge's `ref`.
fn request_text(name: &str, data: Option<Value>, reference: u64) -> Option<String> {
    let mut fields = match data {
        Some(Value::Object(fields)) => fields,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return None,
    };
    fields.insert("type".to_owned(), Value::String(name.to_owned()));
    fields.insert("ref".to_owned(), Value::from(reference));
    Some(Value::Object(fields).to_string())
}

fn refuse(ack: AckSender, client_ref: Option<Value>, code: &str, message: &str) {
    let mut answer = serde_json::json!({"type": "error", "code": code, "message": message});
    if let Some(client_ref) = client_ref {
        answer["ref"] = client_ref;
    }
    let _ = ack.send(&answer);
}

async fn bridge(socket: SocketRef, mut session: Session, mut requests: mpsc::Receiver<Inbound>, gone: Arc<Notify>) {
    let connection = session.connection().clone();
    let mut pending: VecDeque<(u64, Option<Value>, AckSender)> = VecDeque::new();
    let mut batch: Vec<WireFrame> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = gone.notified() => break,
            inbound = requests.recv() => {
                let Some(inbound) = inbound else { break };
                if pending.len() >= MAX_PENDING_ACKS {
                    pending.pop_front();
                }
                pending.push_back((inbound.reference, inbound.client_ref, inbound.ack));
                if let Flow::Close(code) = Box::pin(session.handle_text(&inbound.text)).await {
                    tracing::debug!(user = %connection.user, ?code, "socket.io session closed by the server");
                    connection.close_with(code);
                }
            }
            _ = connection.ready() => {}
        }
        let status = connection.drain_into(&mut batch, DRAIN_BATCH);
        for frame in batch.drain(..) {
            if !deliver(&socket, &frame, &mut pending) {
                tracing::info!(user = %connection.user, "slow socket.io consumer cut off");
                let _ = socket.clone().disconnect();
                session.end();
                return;
            }
        }
        match status {
            QueueStatus::Open => {}
            QueueStatus::Overflowed | QueueStatus::Closed(_) => {
                let _ = socket.clone().disconnect();
                break;
            }
        }
    }
    session.end();
}

/// Sends one frame of the session: as the acknowledgement of the request it answers, or as an
/// event. False when the socket's queue is full.
fn deliver(socket: &SocketRef, frame: &WireFrame, pending: &mut VecDeque<(u64, Option<Value>, AckSender)>) -> bool {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&frame.payload()) else { return true };
    let reference = fields.get("ref").and_then(Value::as_u64);
    let kind = fields.get("type").and_then(Value::as_str).unwrap_or("message").to_owned();
    let position = reference.and_then(|reference| pending.iter().position(|(waiting, ..)| *waiting == reference));
    // Earlier frames of a multi-frame answer (`online` with `done: false`) come as events.
    let last_of_answer = fields.get("done").and_then(Value::as_bool) != Some(false);
    let client_ref = position.and_then(|index| pending[index].1.clone());
    fields.remove("ref");
    if let Some(client_ref) = client_ref {
        fields.insert("ref".to_owned(), client_ref);
    }
    let answer = Value::Object(fields);
    if let (Some(index), true) = (position, last_of_answer) {
        if let Some((_, _, ack)) = pending.remove(index) {
            return !matches!(ack.send(&answer), Err(socketioxide::SendError::Socket(_)));
        }
    }
    socket.emit(kind, &answer).is_ok()
}
