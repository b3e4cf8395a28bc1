//! Switchboard's network server.
//!
//! - [`server`]: the listener: accepts TCP connections, serves HTTP with hyper, and hands
//!   WebSocket upgrades at `/ws` to [`websocket`].
//! - [`websocket`]: one task per connection that `select!`s over the socket, the connection's
//!   outbound queue, a ping timer and shutdown; it holds no buffer while the connection is idle.
//! - [`admin`]: the operators' page at `/admin` (nodes, connections, rooms, rates, recent errors).
//! - [`api`]: the server API for an application's backend under `/api/` (API keys, OpenAPI).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` and the cluster gateway's `/api/*`.
//! - [`web`]: the web client (HTML, JavaScript modules, CSS), embedded in the binary and served
//!   at `/`.
//! - [`socketio`]: `/socket.io/` (EIO3 and EIO4) onto the same chat core, see docs/socketio.md.
//! - [`seed001`]: seed 001's `{id, action, data}` protocol on a WebSocket at `/`, and `GET /server`.
//! - [`process`]: the process's own CPU time and resident memory, for `/metrics`.
//! - [`tls`]: TLS with rustls: the certificate that a reload swaps, and a connection's TLS session.
//! - [`webhooks`]: the webhook sender (signed POSTs of the node's hook events, retried).
//! - [`config`]: the server's settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod http;
pub mod process;
pub mod seed001;
pub mod server;
pub mod socketio;
pub mod tls;
pub mod web;
pub mod webhooks;
pub mod websocket;

pub use config::ServerConfig;
pub use server::{RunningServer, Server};
