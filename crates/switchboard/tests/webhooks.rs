//! Webhooks: signed POSTs to a small HTTP receiver started by the test (hyper), on one node and
//! across nodes, where each cluster-wide event must arrive once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;
use switchboard_server::webhooks::WebhookConfig;
use switchboard_testkit::{eventually, TestClient, TestCluster, TestServer, WAIT};
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret-for-tests";

/// Receives hook POSTs, checks each signature, and hands the events to the test. The first
/// `refuse_first` requests are answered 500 (and still handed over, marked refused).
struct Receiver {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<(bool, Value)>,
}

impl Receiver {
    async fn start(refuse_first: u32) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sender, events) = mpsc::unbounded_channel();
        let refused = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let sender = sender.clone();
                let refused = refused.clone();
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let sender = sender.clone();
                    let refused = refused.clone();
                    async move {
                        let headers = request.headers().clone();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
                        let timestamp = header("x-switchboard-timestamp");
                        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                        mac.update(format!("{timestamp}.").as_bytes());
                        mac.update(&body);
                        let expected: String =
                            mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
                        assert_eq!(header("x-switchboard-signature"), format!("sha256={expected}"), "signature");
                        let event: Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(header("x-switchboard-event"), event["event"].as_str().unwrap());
                        let refuse = refused.fetch_add(1, Ordering::SeqCst) < refuse_first;
                        let _ = sender.send((refuse, event));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        if refuse {
                            *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Receiver { addr, events }
    }

    fn config(&self) -> WebhookConfig {
        WebhookConfig { url: format!("http://{}/hooks", self.addr), secret: SECRET.to_owned(), queue: 1000 }
    }

    /// The next event accepted (answered 2xx).
    async fn next(&mut self) -> Value {
        loop {
            let (refused, event) =
                tokio::time::timeout(WAIT, self.events.recv()).await.expect("a webhook in time").expect("receiver");
            if !refused {
                return event;
            }
        }
    }

    /// Accepted events until one matches `last`, which is included.
    async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = last(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn count(events: &[Value], pattern: &Value) -> usize {
    events.iter().filter(|event| pattern.as_object().unwrap().iter().all(|(key, value)| &event[key] == value)).count()
}

#[tokio::test]
async fn offline_messages_presence_and_new_rooms_reach_the_webhook_signed() {
    let mut receiver = Receiver::start(0).await;
    let server = TestServer::builder()
        .chat(|c| c.open_auth = true)
        .server(|s| s.webhook = Some(receiver.config()))
        .start()
        .await;
    let url = server.ws_url();
    let bob = TestClient::login_open_quiet(&url, "bob").await;
    drop(bob);
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let events = receiver.until(|event| event["event"] == "user.offline" && event["user"] == "bob").await;
    assert_eq!(count(&events, &json!({"event": "user.online", "user": "bob"})), 1, "{events:?}");

    let created = alice.request(json!({"type": "join", "room": "launch"})).await;
    assert_eq!(created["created"], true);
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "call me"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let events = receiver.until(|event| event["event"] == "message.offline").await;
    assert_eq!(count(&events, &json!({"event": "user.online", "user": "alice"})), 1, "{events:?}");
    assert_eq!(count(&events, &json!({"event": "room.created", "room": "launch", "by": "alice"})), 1, "{events:?}");
    let offline = events.last().unwrap();
    assert_eq!((offline["user"].as_str(), offline["from"].as_str()), (Some("bob"), Some("alice")));
    assert_eq!(offline["text"], "call me");
    assert_eq!(offline["seq"], ack["seq"]);

    // To an online user: no hook. The marker after it shows nothing came in between.
    let _bob = TestClient::login_open_quiet(&url, "bob").await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "you are here"})).await;
    assert_eq!(ack["type"], "ack");
    alice.request(json!({"type": "join", "room": "marker"})).await;
    let events = receiver.until(|event| event["room"] == "marker").await;
    assert_eq!(count(&events, &json!({"event": "message.offline"})), 0, "{events:?}");
    // Counted once the receiver's answer is read, just after the receiver handed the event over.
    eventually("seven hooks counted as sent", WAIT, || async {
        server.metric("switchboard_webhook_sent_total").await == 7.0
    })
    .await;
    assert_eq!(server.metric("switchboard_webhook_dropped_total").await, 0.0);
}

#[tokio::test]
async fn a_refused_post_is_retried_until_accepted() {
    let mut receiver = Receiver::start(2).await;
    let server = TestServer::builder()
        .chat(|c| c.open_auth = true)
        .server(|s| s.webhook = Some(receiver.config()))
        .start()
        .await;
    let _alice = TestClient::login_open_quiet(&server.ws_url(), "alice").await;
    let event = receiver.next().await;
    assert_eq!((event["event"].as_str(), event["user"].as_str()), (Some("user.online"), Some("alice")));
    eventually("the event counted as sent", WAIT, || async {
        server.metric("switchboard_webhook_sent_total").await == 1.0
    })
    .await;
    assert_eq!(server.metric("switchboard_webhook_retries_total").await, 2.0, "two refusals, two retries");
}

#[tokio::test]
async fn across_nodes_each_event_is_sent_once_by_the_node_that_saw_it() {
    let mut receiver = Receiver::start(0).await;
    let config = receiver.config();
    let cluster = TestCluster::start_with_server(2, |_| {}, |s| s.webhook = Some(config.clone())).await;
    let bob = TestClient::login_open_quiet(&cluster.url(1), "bob").await;
    drop(bob);
    receiver.until(|event| event["event"] == "user.offline" && event["user"] == "bob").await;
    let mut alice = TestClient::login_open_quiet(&cluster.url(0), "alice").await;
    let ack = alice.request(json!({"type": "send", "to": "bob", "text": "while you were out"})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut carol = TestClient::login_open_quiet(&cluster.url(1), "carol").await;
    assert_eq!(carol.request(json!({"type": "join", "room": "party"})).await["created"], true);

    // A marker from each node last: each node's hooks go out in order, so a duplicate from
    // either would arrive before its marker.
    alice.request(json!({"type": "join", "room": "marker-1"})).await;
    carol.request(json!({"type": "join", "room": "marker-2"})).await;
    let mut events = Vec::new();
    let mut markers = 0;
    while markers < 2 {
        let event = receiver.next().await;
        if event["event"] == "room.created" && event["room"].as_str().unwrap().starts_with("marker-") {
            markers += 1;
        }
        events.push(event);
    }
    assert_eq!(count(&events, &json!({"event": "user.online", "user": "alice"})), 1, "{events:?}");
    assert_eq!(count(&events, &json!({"event": "user.online", "user": "carol"})), 1, "{events:?}");
    assert_eq!(count(&events, &json!({"event": "message.offline", "user": "bob"})), 1, "{events:?}");
    assert_eq!(count(&events, &json!({"event": "room.created", "room": "party"})), 1, "{events:?}");
}
