//! The server API (`/api/`): each call against one node and across nodes, every answer checked
//! against the OpenAPI document the server serves at `/api/openapi.json`.

use serde_json::{json, Value};
use switchboard_server::api::ApiKeys;
use switchboard_testkit::{http_json, TestClient, TestCluster, TestServer};

const KEY: &str = "test-api-key-0123456789";

/// Calls the API and checks the answer against the document: its status must be listed for the
/// operation (`template` is the document's path) and its body must match that status's schema.
struct Api {
    addr: std::net::SocketAddr,
    document: Value,
}

impl Api {
    async fn of(server: &TestServer) -> Api {
        let (status, document) = http_json(server.addr, "GET", "/api/openapi.json", None, None).await;
        assert_eq!(status, 200);
        assert_eq!(document["openapi"], "3.1.0");
        Api { addr: server.addr, document }
    }

    async fn call(&self, method: &str, template: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(Some(KEY), method, template, path, body).await
    }

    async fn call_with(
        &self,
        key: Option<&str>,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, answer) = http_json(self.addr, method, path, key, body.as_ref()).await;
        let operation = &self.document["paths"][template][method.to_lowercase()];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let response = &operation["responses"][status.to_string()];
        assert!(response.is_object(), "{method} {path} answered {status}, which the document does not list: {answer}");
        let mut schema = response["content"]["application/json"]["schema"].clone();
        schema["components"] = self.document["components"].clone();
        let validator = jsonschema::validator_for(&schema).expect("a valid schema in the document");
        let errors: Vec<String> = validator.iter_errors(&answer).map(|error| error.to_string()).collect();
        assert!(errors.is_empty(), "{method} {path} ({status}) does not match the document: {errors:?}\n{answer}");
        (status, answer)
    }
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn every_call_on_one_node_answers_as_the_document_says() {
    let server =
        TestServer::builder().chat(|c| c.open_auth = true).server(|s| s.api_keys = ApiKeys::new([KEY])).start().await;
    let api = Api::of(&server).await;
    let url = server.ws_url();

    let (status, answer) =
        api.call_with(None, "POST", "/api/users", "/api/users", Some(json!({"username": "x"}))).await;
    assert_eq!((status, code(&answer)), (401, "auth_failed"), "no key");
    let (status, answer) =
        api.call_with(Some("wrong"), "GET", "/api/users/{user}/presence", "/api/users/x/presence", None).await;
    assert_eq!((status, code(&answer)), (401, "auth_failed"), "a wrong key");

    let (status, answer) = api
        .call("POST", "/api/users", "/api/users", Some(json!({"username": "Alice", "password": "alice-password"})))
        .await;
    assert_eq!((status, answer["user"].as_str()), (201, Some("alice")), "{answer}");
    let (status, answer) = api.call("POST", "/api/users", "/api/users", Some(json!({"username": "alice"}))).await;
    assert_eq!((status, code(&answer)), (409, "user_exists"));
    let (status, answer) = api.call("POST", "/api/users", "/api/users", Some(json!({"username": "system"}))).await;
    assert_eq!((status, code(&answer)), (409, "user_exists"), "the system sender is reserved");
    let (status, answer) = api.call("POST", "/api/users", "/api/users", Some(json!({"username": "no spaces"}))).await;
    assert_eq!((status, code(&answer)), (400, "invalid_name"));
    let (status, answer) = api.call("POST", "/api/users", "/api/users", Some(json!({"name": "bob"}))).await;
    assert_eq!((status, code(&answer)), (400, "invalid_field"), "unknown fields are refused");
    let (status, _) = api.call("POST", "/api/users", "/api/users", Some(json!({"username": "bob"}))).await;
    assert_eq!(status, 201);

    // A token the backend issues signs bob in (he has no password).
    let (status, token) = api.call("POST", "/api/users/{user}/tokens", "/api/users/bob/tokens", None).await;
    assert_eq!(status, 201);
    let mut bob = TestClient::resume(&url, token["token"].as_str().unwrap(), json!({})).await;
    assert_eq!(bob.session["user"], "bob");
    let (status, answer) = api.call("POST", "/api/users/{user}/tokens", "/api/users/nobody/tokens", None).await;
    assert_eq!((status, code(&answer)), (404, "user_not_found"));

    let mut alice = TestClient::login(&url, "alice", "alice-password").await;
    alice.take_inbox();
    let joined = alice.request(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(joined["type"], "room");

    let (status, published) = api
        .call("POST", "/api/messages", "/api/messages", Some(json!({"room": "lobby", "text": "maintenance at noon"})))
        .await;
    assert_eq!(status, 200, "{published}");
    let message = alice.next_of_type("message").await;
    assert_eq!((message["from"].as_str(), message["text"].as_str()), (Some("system"), Some("maintenance at noon")));
    assert_eq!(message["seq"], published["seq"]);

    let (status, answer) = api
        .call("POST", "/api/messages", "/api/messages", Some(json!({"room": "lobby", "from": "bob", "text": "hi"})))
        .await;
    assert_eq!((status, code(&answer)), (403, "not_a_member"), "a user publishes only where they may send");
    let (status, answer) =
        api.call("POST", "/api/messages", "/api/messages", Some(json!({"room": "nowhere", "text": "hi"}))).await;
    assert_eq!((status, code(&answer)), (404, "room_not_found"));
    let (status, answer) =
        api.call("POST", "/api/messages", "/api/messages", Some(json!({"room": "lobby", "text": "  "}))).await;
    assert_eq!((status, code(&answer)), (400, "empty_text"));

    let (status, _) = api
        .call("POST", "/api/messages", "/api/messages", Some(json!({"user": "bob", "from": "alice", "text": "psst"})))
        .await;
    assert_eq!(status, 200);
    let private = bob.next_of_type("message").await;
    assert_eq!((private["from"].as_str(), private["to"].as_str()), (Some("alice"), Some("bob")));

    let (status, presence) = api.call("GET", "/api/users/{user}/presence", "/api/users/alice/presence", None).await;
    assert_eq!((status, presence["online"].as_bool()), (200, Some(true)), "{presence}");
    assert_eq!(presence["connections"], 1);
    let (status, answer) = api.call("GET", "/api/users/{user}/presence", "/api/users/carol/presence", None).await;
    assert_eq!((status, code(&answer)), (404, "user_not_found"));

    let (status, members) = api.call("GET", "/api/rooms/{room}/members", "/api/rooms/lobby/members", None).await;
    assert_eq!(status, 200);
    assert_eq!(members["members"], json!([{"user": "alice", "online": true}]));
    let (status, answer) = api.call("GET", "/api/rooms/{room}/members", "/api/rooms/nowhere/members", None).await;
    assert_eq!((status, code(&answer)), (404, "room_not_found"));

    let (status, history) = api.call("GET", "/api/history", "/api/history?room=lobby&limit=10", None).await;
    assert_eq!(status, 200);
    assert_eq!(history["messages"][0]["text"], "maintenance at noon");
    let (status, history) = api.call("GET", "/api/history", "/api/history?users=bob,alice", None).await;
    assert_eq!((status, history["conv"].as_str()), (200, Some("dm:alice:bob")));
    assert_eq!(history["messages"][0]["text"], "psst");
    let (status, answer) = api.call("GET", "/api/history", "/api/history?room=lobby&before=x", None).await;
    assert_eq!((status, code(&answer)), (400, "invalid_field"));

    let (status, answer) = api.call("POST", "/api/users/{user}/disconnect", "/api/users/bob/disconnect", None).await;
    assert_eq!((status, answer["connections_here"].as_u64()), (200, Some(1)));
    assert_eq!(bob.expect_close().await.0, 4010);
}

#[tokio::test]
async fn without_a_key_set_the_api_is_off() {
    let server = TestServer::start().await;
    let api = Api::of(&server).await;
    let (status, answer) = api.call("GET", "/api/users/{user}/presence", "/api/users/alice/presence", None).await;
    assert_eq!((status, code(&answer)), (403, "auth_method_disabled"));
    let (status, _) = server.http_get("/api/nodes").await;
    assert_eq!(status, 200, "the public gateway endpoints stay open");
}

#[tokio::test]
async fn calls_to_one_node_act_on_users_of_another() {
    let cluster = TestCluster::start_with_server(2, |_| {}, |s| s.api_keys = ApiKeys::new([KEY])).await;
    let api = Api::of(&cluster.nodes[0]).await;
    let mut bob = TestClient::login_open_quiet(&cluster.url(1), "bob").await;
    let joined = bob.request(json!({"type": "join", "room": "ops"})).await;
    assert_eq!(joined["type"], "room");

    switchboard_testkit::eventually("node 1's user is online on node 0", switchboard_testkit::WAIT, || async {
        let (_, presence) = api.call("GET", "/api/users/{user}/presence", "/api/users/bob/presence", None).await;
        presence["online"] == true
    })
    .await;
    let (_, presence) = api.call("GET", "/api/users/{user}/presence", "/api/users/bob/presence", None).await;
    assert_eq!(presence["nodes"], json!(["n2"]));

    let (status, _) =
        api.call("POST", "/api/messages", "/api/messages", Some(json!({"room": "ops", "text": "deploy done"}))).await;
    assert_eq!(status, 200);
    assert_eq!(bob.next_of_type("message").await["text"], "deploy done");
    let (status, _) =
        api.call("POST", "/api/messages", "/api/messages", Some(json!({"user": "bob", "text": "for you"}))).await;
    assert_eq!(status, 200);
    let private = bob.next_of_type("message").await;
    assert_eq!((private["from"].as_str(), private["text"].as_str()), (Some("system"), Some("for you")));

    let (_, members) = api.call("GET", "/api/rooms/{room}/members", "/api/rooms/ops/members", None).await;
    assert_eq!(members["members"], json!([{"user": "bob", "online": true}]));

    let (status, answer) = api.call("POST", "/api/users/{user}/disconnect", "/api/users/bob/disconnect", None).await;
    assert_eq!((status, answer["connections_here"].as_u64()), (200, Some(0)), "bob is on the other node");
    assert_eq!(bob.expect_close().await.0, 4010, "the other node closed bob's connection");
}
