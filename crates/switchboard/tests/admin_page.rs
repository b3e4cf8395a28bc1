//! `/admin` in chromium: refused without the API key; with it, the nodes, this node's
//! connections, rates from the node's counters, the largest rooms and the recent warnings.

use serde_json::{json, Value};
use switchboard_server::admin::recent::RecentErrorsLayer;
use switchboard_server::api::ApiKeys;
use switchboard_testkit::{TestClient, TestServer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const KEY: &str = "admin-page-key";

fn cell(rows: &Value, row: usize, column: usize) -> String {
    rows[row][column].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_admin_page_shows_the_node_in_chromium_with_the_key_only() {
    // As the binary does: the page's recent errors come from the log.
    tracing_subscriber::registry().with(RecentErrorsLayer).init();
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.node_id = "admin-node".into();
        })
        .server(|s| s.api_keys = ApiKeys::new([KEY]))
        .start()
        .await;
    let url = server.ws_url();
    let mut alice = TestClient::login_open_quiet(&url, "alice").await;
    let mut bob = TestClient::login_open_quiet(&url, "bob").await;
    for room in ["big", "small"] {
        alice.request(json!({"type": "join", "room": room})).await;
    }
    bob.request(json!({"type": "join", "room": "big"})).await;
    let ack = alice.request(json!({"type": "send", "room": "big", "text": "hello"})).await;
    assert_eq!(ack["type"], "ack");
    tracing::warn!(target: "switchboard_test", "disk <almost> full");

    let (status, _) = server.http_get("/admin").await;
    assert_eq!(status, 401);
    let page = switchboard_testkit::browser::run_ops_script(&[
        ("OPS_MODE", "admin".to_owned()),
        ("OPS_URL", format!("http://{}", server.addr)),
        ("OPS_API_KEY", KEY.to_owned()),
    ])
    .await;
    assert_eq!(page["withoutKey"], "auth required", "chromium gets nothing without the key: {page}");
    assert_eq!(page["withKey"], 200, "{page}");
    assert_eq!(page["title"], "Switchboard admin: admin-node");
    let nodes = &page["nodes"];
    assert_eq!(cell(nodes, 0, 0), "admin-node (this one)", "{page}");
    assert_eq!(cell(nodes, 0, 2), "2", "two logged-in connections: {page}");
    let connections = &page["connections"];
    assert_eq!((cell(connections, 0, 1), cell(connections, 1, 1)), ("2".to_owned(), "2".to_owned()), "{page}");
    let rates = &page["rates"];
    assert_eq!(rates.as_array().map(Vec::len), Some(2), "{page}");
    let rooms = &page["rooms"];
    assert_eq!((cell(rooms, 0, 0), cell(rooms, 0, 1)), ("big".to_owned(), "2".to_owned()), "largest first: {page}");
    assert_eq!((cell(rooms, 1, 0), cell(rooms, 1, 1)), ("small".to_owned(), "1".to_owned()));
    let errors = page["errors"].as_array().expect("an errors table");
    assert!(
        errors.iter().any(|row| row[1] == "warn" && row[3].as_str().unwrap_or_default().contains("disk <almost> full")),
        "the warning, escaped in the HTML and shown as text: {page}"
    );
}
