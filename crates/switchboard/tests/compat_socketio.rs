//! `/socket.io/` with the real clients (socket.io-client 1.7.4 for EIO3, 4.x for EIO4, and `ws`
//! for the native side): `tests/compat/socketio.test.mjs`, against one node with the default
//! settings (no open login) and against three nodes over Redis and over NATS.

mod compat_support;

use compat_support::{http_url, run_node_tests};
use switchboard_testkit::services::{NodeProcess, ProcessCluster, ServiceProcess};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

#[test]
fn socketio_clients_on_one_node_with_tokens_only() {
    let node = NodeProcess::start(BINARY, "solo", &[]);
    run_node_tests("socketio.test.mjs", &[http_url(node.addr())], false, &[]);
}

#[test]
fn socketio_clients_across_three_nodes_over_redis() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("socketio.test.mjs", &urls, true, &[]);
}

#[test]
fn socketio_clients_across_three_nodes_over_nats() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::nats(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("socketio.test.mjs", &urls, true, &[]);
}

#[test]
fn seed_002_dialect_across_three_nodes_over_redis() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("seed002.test.mjs", &urls, true, &[]);
}

#[test]
fn seed_002_dialect_across_three_nodes_over_nats() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::nats(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("seed002.test.mjs", &urls, true, &[]);
}

#[test]
fn seeds_000_and_003_across_three_nodes_over_redis() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("seeds-legacy.test.mjs", &urls, true, &[]);
}

#[test]
fn seeds_000_and_003_across_three_nodes_over_nats() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::nats(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("seeds-legacy.test.mjs", &urls, true, &[]);
}

#[test]
fn seed_001_protocol_across_three_nodes_over_redis() {
    let cluster = ProcessCluster::start(BINARY, ServiceProcess::redis(), 3, &["--node-timeout-ms", "1500"]);
    let urls: Vec<String> = (0..3).map(|index| http_url(cluster.addr(index))).collect();
    run_node_tests("seed001.test.mjs", &urls, true, &[]);
}
