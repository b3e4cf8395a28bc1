//! The login fuzz target's check (`fuzz/fuzz_targets/login.rs`), shared with the corpus replay in
//! `cargo test`: the text a connection sends before it has a session, through
//! [`ChatNode::login`] on a real node (in-memory SQLite, in-process bus).
//!
//! Only built with the `fuzzing` feature: it is test code, not part of the chat core.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::InProcessBroker;
use switchboard_protocol::request::{self, Request};
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::RefValue;
use switchboard_store::{SessionRecord, SqliteStore, Store};

use crate::session::Flow;
use crate::{auth, now_millis, ChatConfig, ChatNode};

/// The JWT secret of the fuzzed node; the corpus holds tokens signed with it.
pub const JWT_SECRET: &str = "switchboard-fuzz-secret";
/// A session token the fuzzed node knows (user `resumer`), so `resume` can succeed.
pub const RESUME_TOKEN: &str = "switchboard-fuzz-resume-token";

/// Where the fuzzed logins come from.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// A current-thread runtime and the nodes the login check talks to, built once per process.
///
/// A password check is argon2 (about 30 ms): one per execution would hold the fuzzer to a few
/// dozen runs a second. So `login` frames go to a node that has throttled the fuzzer's address
/// (their parsing, name check and throttle run; the hash does not), and registration is off.
/// Everything else goes to an open node: `login_open` and `login_jwt` start real sessions (user
/// created, token stored, online list, sync), `resume` looks the token up in the store.
pub struct LoginHarness {
    runtime: tokio::runtime::Runtime,
    open: ChatNode,
    throttled: ChatNode,
}

impl LoginHarness {
    pub fn new() -> LoginHarness {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let (open, throttled) = runtime.block_on(async {
            let open = start_node(ChatConfig {
                node_id: "fuzz-open".into(),
                registration: false,
                open_auth: true,
                jwt_secret: Some(JWT_SECRET.into()),
                login_failures_per_ip: u32::MAX,
                ..ChatConfig::default()
            })
            .await;
            let throttled = start_node(ChatConfig {
                node_id: "fuzz-throttled".into(),
                registration: false,
                login_failures_per_ip: 1,
                login_window: Duration::from_secs(365 * 24 * 3600),
                ..ChatConfig::default()
            })
            .await;
            let record = SessionRecord {
                token_hash: auth::token_hash(RESUME_TOKEN),
                user: "resumer".into(),
                created_at: now_millis(),
                expires_at: i64::MAX,
            };
            open.shared.store.open_session("resumer", true, Some(&record), now_millis()).await.expect("resume session");
            // One failed resume throttles the address on the throttled node: its `login` frames
            // never reach argon2.
            let failed = throttled.login(r#"{"type":"resume","token":"unknown"}"#, PEER).await;
            assert!(failed.is_err(), "an unknown token logged in");
            (open, throttled)
        });
        LoginHarness { runtime, open, throttled }
    }

    /// Feeds `text` to a node's login as the first frame of a connection, and checks the answer:
    /// a failure is an `error` frame with a code and the frame's `ref` when it had one; a success
    /// is a session for the user the frame names, which is then logged out (or, for the shared
    /// resume token, ended) so the store does not grow with the run.
    pub fn check_login(&self, text: &str) {
        let parsed = request::parse(text);
        let node = match &parsed {
            Ok(frame) if matches!(frame.request, Request::Login { .. }) => &self.throttled,
            _ => &self.open,
        };
        let reference = match &parsed {
            Ok(frame) => frame.reference.clone(),
            Err(error) => error.reference.clone(),
        };
        self.runtime.block_on(async {
            match node.login(text, PEER).await {
                Err(frame) => check_error_frame(&frame, reference.as_ref(), text),
                Ok(mut session) => {
                    let request = parsed.map(|frame| frame.request).expect("a session from a frame that did not parse");
                    let expected = match &request {
                        Request::LoginOpen { username, .. } => Some(username.as_str()),
                        Request::Resume { .. } => Some("resumer"),
                        Request::LoginJwt { .. } => None,
                        other => panic!("{} opened a session", other.kind()),
                    };
                    if let Some(expected) = expected {
                        assert_eq!(session.user(), expected, "session for the wrong user");
                    }
                    if !matches!(request, Request::Resume { .. }) {
                        let flow = session.handle_text(r#"{"type":"logout"}"#).await;
                        assert!(matches!(flow, Flow::Close(_)), "logout did not close");
                    }
                    session.end();
                }
            }
        });
        assert_eq!(self.open.connection_count(), 0, "a connection outlived its session");
    }
}

impl Default for LoginHarness {
    fn default() -> Self {
        LoginHarness::new()
    }
}

async fn start_node(config: ChatConfig) -> ChatNode {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("in-memory store"));
    let bus = Arc::new(InProcessBroker::new().join(&config.node_id));
    ChatNode::start(config, store, bus).await.expect("start node")
}

fn check_error_frame(frame: &WireFrame, reference: Option<&RefValue>, text: &str) {
    let answer: serde_json::Value = serde_json::from_slice(&frame.payload()).expect("error frame is not JSON");
    assert_eq!(answer["type"], "error", "answer to {text:?}");
    assert!(answer["code"].as_str().is_some_and(|code| !code.is_empty()), "error without a code");
    let expected = match reference {
        Some(RefValue::Number(number)) => serde_json::json!(number),
        Some(RefValue::Text(text)) => serde_json::json!(text),
        None => serde_json::Value::Null,
    };
    assert_eq!(answer["ref"], expected, "error answer lost the frame's ref");
}
