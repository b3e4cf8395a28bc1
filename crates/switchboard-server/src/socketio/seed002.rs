//! Seed 002's dialect (the Socket.IO private-messaging tutorial, part IV): handshake `auth`
//! `{username}` or `{sessionID}`; `session`, `users`, `user connected`, `user disconnected` and
//! `private message` events, each carried by a native session underneath.
//!
//! - `sessionID` is 8 random bytes in hex, kept in the store as a session token of the user
//!   (hashed, 24 h), so a reload on any node restores the same user and history.
//! - `userID` is 16 hex characters of SHA-256 over the user name: the same on every node, so
//!   the ids one node hands out are understood by the others.
//! - A message goes to the recipient's connections and the sender's other ones (the native
//!   rule); `user disconnected` follows the native `user_offline`, sent when the user's last
//!   connection anywhere closes.

use std::collections::HashMap;
use std::sync::Arc;

use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socketioxide::extract::{Data, SocketRef};
use switchboard_core::outbound::QueueStatus;
use switchboard_core::{ChatNode, Session};
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::ConvId;
use switchboard_store::{EntryKind, SessionRecord, Store};
use tokio::sync::{mpsc, Notify};

/// How long a `sessionID` restores its user, as in the seed.
const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;
/// Users listed in `users`, and messages per conversation in it.
const MAX_LISTED_USERS: u32 = 1000;
const MAX_LISTED_MESSAGES: u32 = 200;
/// `private message`s waiting for the session.
const REQUEST_QUEUE: usize = 64;

/// The refusal the seed's client shows (`connect_error` "invalid username").
pub const INVALID: &str = "invalid username";

/// Whether a handshake speaks this dialect: `username` or `sessionID`, and no native credential.
pub fn wants(auth: Option<&Value>) -> bool {
    auth.is_some_and(|auth| {
        (auth.get("sessionID").is_some() || auth.get("username").is_some())
            && auth.get("token").is_none()
            && auth.get("jwt").is_none()
    })
}

/// The login frame for a handshake, and the `sessionID` to announce (new for a `username`).
pub async fn login_frame(auth: &Value, store: &dyn Store) -> Result<(String, Option<String>), &'static str> {
    if let Some(session_id) = auth.get("sessionID").and_then(Value::as_str) {
        let known = store.session(&switchboard_core::auth::token_hash(session_id)).await.ok().flatten();
        if known.is_some_and(|record| record.expires_at > switchboard_core::now_millis()) {
            return Ok((json!({"type": "resume", "token": session_id}).to_string(), None));
        }
    }
    let username = auth.get("username").and_then(Value::as_str).filter(|name| !name.is_empty()).ok_or(INVALID)?;
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    let session_id = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok((json!({"type": "login_open", "username": username}).to_string(), Some(session_id)))
}

/// The seed's `userID` for a user name.
pub fn user_id(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Keeps a new `sessionID` as a session token of the user.
async fn remember(store: &dyn Store, session_id: &str, user: &str) {
    let now = switchboard_core::now_millis();
    let record = SessionRecord {
        token_hash: switchboard_core::auth::token_hash(session_id),
        user: user.to_owned(),
        created_at: now,
        expires_at: now + SESSION_TTL_MS,
    };
    if let Err(error) = store.create_session(&record).await {
        tracing::warn!(%error, "seed 002 session not stored");
    }
}

/// Runs a connection in this dialect until it closes.
/// `session_id`: the `sessionID` to announce, and whether it is new (to be stored).
pub fn start(socket: SocketRef, session: Session, session_id: (String, bool), node: ChatNode, store: Arc<dyn Store>) {
    let (sender, requests) = mpsc::channel::<(String, String)>(REQUEST_QUEUE);
    socket.on("private message", move |Data(data): Data<Value>| {
        let content = data.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
        let to = data.get("to").and_then(Value::as_str).unwrap_or_default().to_owned();
        let _ = sender.try_send((to, content));
    });
    let gone = Arc::new(Notify::new());
    let on_gone = gone.clone();
    socket.on_disconnect(move || on_gone.notify_one());
    tokio::spawn(run(socket, session, session_id, node, store, requests, gone));
}

async fn run(
    socket: SocketRef,
    mut session: Session,
    (session_id, is_new): (String, bool),
    node: ChatNode,
    store: Arc<dyn Store>,
    mut requests: mpsc::Receiver<(String, String)>,
    gone: Arc<Notify>,
) {
    let me = session.user().to_owned();
    if is_new {
        remember(store.as_ref(), &session_id, &me).await;
    }
    let mut names: HashMap<String, String> = HashMap::new();
    names.insert(user_id(&me), me.clone());
    let _ = socket.emit("session", &json!({"sessionID": session_id, "userID": user_id(&me)}));
    let users = users_list(&node, store.as_ref(), &me, &mut names).await;
    let _ = socket.emit("users", &users);
    let connection = session.connection().clone();
    let mut batch: Vec<WireFrame> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = gone.notified() => break,
            request = requests.recv() => {
                let Some((to, content)) = request else { break };
                let Some(user) = names.get(&to) else { continue };
                let text = json!({"type": "send", "to": user, "text": content}).to_string();
                if let switchboard_core::Flow::Close(code) = Box::pin(session.handle_text(&text)).await {
                    connection.close_with(code);
                }
            }
            _ = connection.ready() => {}
        }
        let status = connection.drain_into(&mut batch, 64);
        for frame in batch.drain(..) {
            let Ok(frame) = serde_json::from_slice::<Value>(&frame.payload()) else { continue };
            if super::is_change(&frame) {
                continue;
            }
            let sent = match (frame["type"].as_str(), frame["user"].as_str()) {
                (Some("message"), _) => match (frame["from"].as_str(), frame["to"].as_str()) {
                    (Some(from), Some(to)) => socket.emit(
                        "private message",
                        &json!({"content": frame["text"], "from": user_id(from), "to": user_id(to)}),
                    ),
                    _ => Ok(()),
                },
                (Some("user_online"), Some(user)) if user != me => {
                    names.insert(user_id(user), user.to_owned());
                    socket.emit(
                        "user connected",
                        &json!({"userID": user_id(user), "username": user, "connected": true, "messages": []}),
                    )
                }
                (Some("user_offline"), Some(user)) if user != me => socket.emit("user disconnected", &user_id(user)),
                _ => Ok(()),
            };
            if sent.is_err() {
                let _ = socket.clone().disconnect();
                session.end();
                return;
            }
        }
        if status != QueueStatus::Open {
            let _ = socket.clone().disconnect();
            break;
        }
    }
    session.end();
}

/// Every user (offline ones and oneself included), each with its conversation with `me`, oldest
/// message first.
async fn users_list(node: &ChatNode, store: &dyn Store, me: &str, names: &mut HashMap<String, String>) -> Vec<Value> {
    let users = store.list_users("", None, MAX_LISTED_USERS).await.unwrap_or_default();
    let mut listed = Vec::with_capacity(users.len());
    for user in users {
        let conv = ConvId::direct(me, &user).to_string();
        let mut messages = store.messages_before(&conv, None, MAX_LISTED_MESSAGES).await.unwrap_or_default();
        messages.sort_by_key(|message| message.seq);
        let messages: Vec<Value> = messages
            .iter()
            // Changes are applied to their messages already; the seed has no tombstones.
            .filter(|message| message.kind == EntryKind::Message && !message.deleted)
            .filter_map(|message| {
                let to = message.recipient.as_deref()?;
                Some(json!({"content": message.text, "from": user_id(&message.sender), "to": user_id(to)}))
            })
            .collect();
        let id = user_id(&user);
        names.insert(id.clone(), user.clone());
        listed.push(json!({"userID": id, "username": user, "connected": node.is_online(&user), "messages": messages}));
    }
    listed
}
