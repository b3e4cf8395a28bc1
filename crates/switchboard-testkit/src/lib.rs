//! Test kit: starts real Switchboard servers on port 0 and drives them with real WebSocket
//! clients.
//!
//! - [`TestServer`]: a chat node and its server in this process, with an in-memory store or an
//!   SQLite file that survives a restart.
//! - [`services`]: real `redis-server` and `nats-server` processes on free ports, and a
//!   PostgreSQL database of the test's own.
//! - [`proxy::TcpProxy`]: a TCP proxy that can be stopped and started, to cut a node off a service.
//! - [`browser::run_ops_script`]: chromium (playwright-core) on the TLS web client or `/admin`.
//! - [`tls::TestCa`]: a certificate authority made in the test, its server certificates and a
//!   client configuration that trusts it.
//! - [`TestClient`]: a WebSocket client that matches answers to requests by `ref`, buffers
//!   everything else, and can wait until the server has processed all it was sent
//!   ([`TestClient::quiesce`]) so that tests assert absences without sleeping.
#![forbid(unsafe_code)]

pub mod browser;
mod client;
pub mod proxy;
mod server;
pub mod services;
pub mod tls;

pub use client::TestClient;
pub use server::{http_get, http_json, metric_value, TestCluster, TestServer, TestServerBuilder};

/// How long a test waits for an expected frame before failing.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Retries `check` until it holds, for cross-node convergence that no client can observe directly
/// (linkerd's `assert_eventually!`): bounded by `limit`, after which the test fails with `what`.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never happened within {limit:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
