//! Seeds 000 and 003's dialects: connections that log in by their first event (`identify` or
//! `join`) rather than by their handshake, then run on a native session whose requests and
//! frames the dialect translates.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use socketioxide::extract::{Data, Event, SocketRef};
use switchboard_core::outbound::QueueStatus;
use switchboard_core::{ChatNode, Flow, Session};
use switchboard_protocol::ws::WireFrame;
use tokio::sync::{mpsc, Notify};

use super::{seed000, seed003};

/// Events waiting for the session; more are dropped, as the seeds' clients expect no answer.
const EVENT_QUEUE: usize = 64;
/// How long a connection without a session may stay silent before it is closed.
const IDENTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One seed's translation between its events and native frames.
pub trait Dialect: Send + 'static {
    /// An event of the client: the native requests to run, in order.
    fn event(&mut self, name: &str, data: Value) -> Vec<Value>;
    /// A frame of the session: the events to emit, in order.
    fn frame(&mut self, frame: &Value) -> Vec<(&'static str, Value)>;
    /// The native requests to run when the socket goes.
    fn farewell(&mut self) -> Vec<Value> {
        Vec::new()
    }
}

/// Accepts a connection without credentials (only with `--open-auth`): its first event picks
/// the dialect and names the user.
pub fn start_pending(socket: SocketRef, node: ChatNode, peer: IpAddr) {
    let (sender, mut events) = mpsc::channel::<(String, Value)>(EVENT_QUEUE);
    socket.on_fallback(move |Event(name): Event, Data(data): Data<Value>| {
        let _ = sender.try_send((name, data));
    });
    let gone = Arc::new(Notify::new());
    let on_gone = gone.clone();
    socket.on_disconnect(move || on_gone.notify_one());
    tokio::spawn(async move {
        let room = room_of(&socket);
        let first = tokio::select! {
            _ = gone.notified() => return,
            _ = tokio::time::sleep(IDENTIFY_TIMEOUT) => None,
            first = events.recv() => first,
        };
        let picked: Option<(String, Box<dyn Dialect>, Vec<Value>)> = match (first, room) {
            (Some((name, Value::String(user))), _) if name == "identify" => {
                Some((user.clone(), Box::new(seed000::Seed000::new(user)), Vec::new()))
            }
            (Some((name, data)), Some(room)) if name == "join" => data["username"].as_str().map(|user| {
                let join = json!({"type": "join", "room": room});
                (
                    user.to_owned(),
                    Box::new(seed003::Seed003::new(user.to_owned(), room)) as Box<dyn Dialect>,
                    vec![join],
                )
            }),
            _ => None,
        };
        let Some((user, dialect, opening)) = picked else {
            let _ = socket.disconnect();
            return;
        };
        let login = json!({"type": "login_open", "username": user}).to_string();
        match node.login_everyone(&login, peer).await {
            Ok(session) => run(socket, session, dialect, opening, &mut events, gone).await,
            Err(_) => {
                let _ = socket.emit("error", "invalid username");
                let _ = socket.disconnect();
            }
        }
    });
}

/// The room of seed 003's handshake query (`?roomid=`).
fn room_of(socket: &SocketRef) -> Option<String> {
    let query = socket.req_parts().uri.query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("roomid=")).filter(|room| !room.is_empty()).map(str::to_owned)
}

async fn run(
    socket: SocketRef,
    mut session: Session,
    mut dialect: Box<dyn Dialect>,
    opening: Vec<Value>,
    events: &mut mpsc::Receiver<(String, Value)>,
    gone: Arc<Notify>,
) {
    let connection = session.connection().clone();
    for request in opening {
        handle(&mut session, &request).await;
    }
    let mut batch: Vec<WireFrame> = Vec::new();
    let mut open = true;
    while open {
        tokio::select! {
            biased;
            _ = gone.notified() => open = false,
            event = events.recv() => match event {
                Some((name, data)) => {
                    for request in dialect.event(&name, data) {
                        handle(&mut session, &request).await;
                    }
                }
                None => open = false,
            },
            _ = connection.ready() => {}
        }
        let status = connection.drain_into(&mut batch, 64);
        for frame in batch.drain(..) {
            let Ok(frame) = serde_json::from_slice::<Value>(&frame.payload()) else { continue };
            if super::is_change(&frame) {
                continue;
            }
            for (name, payload) in dialect.frame(&frame) {
                if socket.emit(name, &payload).is_err() {
                    open = false;
                }
            }
        }
        if status != QueueStatus::Open {
            open = false;
        }
    }
    for request in dialect.farewell() {
        handle(&mut session, &request).await;
    }
    let _ = socket.clone().disconnect();
    session.end();
}

async fn handle(session: &mut Session, request: &Value) {
    if let Flow::Close(code) = Box::pin(session.handle_text(&request.to_string())).await {
        session.connection().close_with(code);
    }
}
