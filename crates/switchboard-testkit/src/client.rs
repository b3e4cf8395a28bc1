use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;

/// A real WebSocket client speaking the native protocol.
pub struct TestClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames received but not yet consumed by the test.
    inbox: VecDeque<Value>,
    next_ref: u64,
    /// The `hello` frame.
    pub hello: Value,
    /// The `session` answer, once logged in.
    pub session: Value,
    /// Close code and reason, once the server closed.
    pub closed: Option<(u16, String)>,
}

impl TestClient {
    /// Connects and reads `hello`.
    pub async fn connect(url: &str) -> TestClient {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        Self::greeted(ws).await
    }

    /// Connects over TLS (`wss://`) trusting what `tls` trusts, and reads `hello`.
    pub async fn connect_tls(url: &str, tls: std::sync::Arc<rustls::ClientConfig>) -> TestClient {
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .expect("websocket connect over tls");
        Self::greeted(ws).await
    }

    /// The server's certificate (DER) when connected over TLS.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.ws.get_ref() {
            MaybeTlsStream::Rustls(stream) => {
                stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|der| der.to_vec())
            }
            _ => None,
        }
    }

    /// Connects from the local address `source` (on Linux any of 127.0.0.0/8 reaches a loopback
    /// server), as a client at another address would, and reads `hello`.
    pub async fn connect_from(url: &str, source: std::net::IpAddr) -> TestClient {
        let authority = url.trim_start_matches("ws://").split('/').next().expect("host in the url");
        let server: std::net::SocketAddr = authority.parse().expect("an ip:port url");
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket.bind(std::net::SocketAddr::new(source, 0)).expect("bind the source address");
        let stream = socket.connect(server).await.expect("tcp connect");
        let (ws, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.expect("websocket connect");
        Self::greeted(ws).await
    }

    async fn greeted(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> TestClient {
        let mut client = TestClient {
            ws,
            inbox: VecDeque::new(),
            next_ref: 1,
            hello: Value::Null,
            session: Value::Null,
            closed: None,
        };
        client.hello = client.next().await;
        assert_eq!(client.hello["type"], "hello", "first frame must be hello");
        client
    }

    /// Connects and registers a new user; returns once the login sync is complete.
    pub async fn register(url: &str, user: &str, password: &str) -> TestClient {
        Self::login_with(url, json!({"type": "register", "username": user, "password": password})).await
    }

    /// Connects and logs in with a password; returns once the login sync is complete.
    pub async fn login(url: &str, user: &str, password: &str) -> TestClient {
        Self::login_with(url, json!({"type": "login", "username": user, "password": password})).await
    }

    /// Logs a user in by name only (the server must allow `login_open`), with presence events on.
    pub async fn login_open(url: &str, user: &str) -> TestClient {
        Self::login_with(url, json!({"type": "login_open", "username": user})).await
    }

    /// Logs a user in by name only, without presence events, and drops the login sync: the inbox
    /// then holds only what the test looks at.
    pub async fn login_open_quiet(url: &str, user: &str) -> TestClient {
        let mut client =
            Self::login_with(url, json!({"type": "login_open", "username": user, "presence": false})).await;
        client.take_inbox();
        client
    }

    /// Connects and resumes a session token with cursors; returns once `session` arrived (the
    /// sync frames stay in the inbox for the test to read).
    pub async fn resume(url: &str, token: &str, cursors: Value) -> TestClient {
        let mut client = Self::connect(url).await;
        let answer = client.request(json!({"type": "resume", "token": token, "cursors": cursors})).await;
        assert_eq!(answer["type"], "session", "resume failed: {answer}");
        client.session = answer;
        client
    }

    /// Connects, sends a login frame, waits for `session` and then `synced`.
    pub async fn login_with(url: &str, frame: Value) -> TestClient {
        Self::connect(url).await.logged_in(frame).await
    }

    /// Over TLS: connects trusting what `tls` trusts and logs in by name only, quietly (see
    /// [`TestClient::login_open_quiet`]).
    pub async fn login_open_quiet_tls(url: &str, tls: std::sync::Arc<rustls::ClientConfig>, user: &str) -> TestClient {
        let client = Self::connect_tls(url, tls).await;
        let mut client = client.logged_in(json!({"type": "login_open", "username": user, "presence": false})).await;
        client.take_inbox();
        client
    }

    async fn logged_in(self, frame: Value) -> TestClient {
        let mut client = self;
        let answer = client.request(frame).await;
        assert_eq!(answer["type"], "session", "login failed: {answer}");
        client.session = answer;
        client.next_of_type("synced").await;
        client
    }

    pub fn user(&self) -> String {
        self.session["user"].as_str().unwrap_or_default().to_owned()
    }

    pub fn token(&self) -> String {
        self.session["token"].as_str().unwrap_or_default().to_owned()
    }

    /// Sends a frame as is.
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string())).await.expect("websocket send");
    }

    /// Sends a raw WebSocket message (for bad-input tests).
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("websocket send");
    }

    /// Sends a frame with a fresh `ref` and returns the frame answering it (its `ref` matches);
    /// other frames stay in the inbox.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let reference = self.next_ref;
        self.next_ref += 1;
        frame["ref"] = json!(reference);
        self.send(frame).await;
        self.answer_to(reference).await
    }

    /// Waits for the frame whose `ref` is `reference`.
    pub async fn answer_to(&mut self, reference: u64) -> Value {
        if let Some(index) = self.inbox.iter().position(|f| f["ref"] == json!(reference)) {
            return self.inbox.remove(index).expect("indexed frame");
        }
        loop {
            let frame = self.receive().await;
            if frame["ref"] == json!(reference) {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// The next frame, from the inbox first.
    pub async fn next(&mut self) -> Value {
        if let Some(frame) = self.inbox.pop_front() {
            return frame;
        }
        self.receive().await
    }

    /// The next frame of a type, leaving frames of other types in the inbox.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        if let Some(index) = self.inbox.iter().position(|f| f["type"] == kind) {
            return self.inbox.remove(index).expect("indexed frame");
        }
        loop {
            let frame = self.receive().await;
            if frame["type"] == kind {
                return frame;
            }
            self.inbox.push_back(frame);
        }
    }

    /// The next frame of a type whose `user` is `user` (for presence and membership events, which
    /// a client also gets about itself); earlier frames of that type about others are dropped.
    pub async fn next_about(&mut self, kind: &str, user: &str) -> serde_json::Value {
        loop {
            let frame = self.next_of_type(kind).await;
            if frame["user"] == user {
                return frame;
            }
        }
    }

    /// Waits for `kind` events (`user_online`, `user_offline`) about every one of `users`,
    /// whatever their order.
    pub async fn await_presence(&mut self, kind: &str, users: &[&str]) {
        let mut missing: std::collections::BTreeSet<&str> = users.iter().copied().collect();
        while !missing.is_empty() {
            let event = self.next_of_type(kind).await;
            missing.remove(event["user"].as_str().unwrap_or_default());
        }
    }

    /// Reads what follows a login: the `sync` summary, then the missed messages up to `synced`
    /// (whose count must match); presence frames in between are skipped.
    pub async fn read_sync(&mut self) -> Vec<Value> {
        self.next_of_type("sync").await;
        let mut messages = Vec::new();
        loop {
            let frame = self.next().await;
            match frame["type"].as_str() {
                Some("message") => messages.push(frame),
                Some("synced") => {
                    assert_eq!(frame["messages"], messages.len(), "synced counts the messages of the sync");
                    return messages;
                }
                _ => {}
            }
        }
    }

    /// Waits until the server has handled everything sent before (it answers a `ping` after all
    /// earlier frames), and returns every frame that arrived meanwhile, inbox included.
    pub async fn quiesce(&mut self) -> Vec<Value> {
        let reference = self.next_ref;
        self.next_ref += 1;
        self.send(json!({"type": "ping", "ref": reference})).await;
        let mut frames: Vec<Value> = self.inbox.drain(..).collect();
        loop {
            let frame = self.receive().await;
            if frame["ref"] == json!(reference) {
                return frames;
            }
            frames.push(frame);
        }
    }

    /// Frames of a type that arrived by the time the server answered a ping.
    pub async fn drain_of_type(&mut self, kind: &str) -> Vec<Value> {
        let frames = self.quiesce().await;
        let (matching, others): (Vec<Value>, Vec<Value>) = frames.into_iter().partition(|f| f["type"] == kind);
        self.inbox.extend(others);
        matching
    }

    /// Waits for the server to close; returns the close code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            if let Some(closed) = self.closed.clone() {
                return closed;
            }
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let closed = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    self.closed = Some(closed.clone());
                    return closed;
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    self.inbox.push_back(serde_json::from_str(&text).expect("server frame is json"));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(error))) => panic!("connection failed before a close frame: {error}"),
                Ok(None) => panic!("connection ended without a close frame"),
                Err(_) => panic!("no close within {WAIT:?}"),
            }
        }
    }

    /// Reads until the connection ends: the close code and reason when the server managed to send
    /// a close frame, `None` when the connection just dropped (as it does for a reader so far behind
    /// that not even the close frame fits in its socket).
    pub async fn expect_end(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let closed =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    self.closed = Some(closed.clone());
                    return Some(closed);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    self.inbox.push_back(serde_json::from_str(&text).expect("server frame is json"));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("connection still open after {WAIT:?}"),
            }
        }
    }

    /// Frames received before a close, after `expect_close`.
    pub fn take_inbox(&mut self) -> Vec<Value> {
        self.inbox.drain(..).collect()
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }

    /// Drops the TCP connection without a close frame (a crashed client or lost network).
    pub fn drop_connection(self) {
        drop(self.ws);
    }

    async fn receive(&mut self) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).expect("server frame is json"),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let closed =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    self.closed = Some(closed.clone());
                    panic!("server closed the connection while a frame was expected: {closed:?}");
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(error))) => panic!("websocket error while a frame was expected: {error}"),
                Ok(None) => panic!("connection ended while a frame was expected"),
                Err(_) => panic!("no frame within {WAIT:?}; inbox: {:?}", self.inbox),
            }
        }
    }
}
