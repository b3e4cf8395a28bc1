//! The `storm` and `presence` scenarios end to end, at tiny sizes, through the library against
//! real servers of the test kit: one node, and two nodes sharing a bus and a store (where every
//! client resumes on the other node than the one it left, and presence crosses the bus).

use clap::Parser;
use switchboard_bench::{presence, storm, PresenceArgs, StormArgs};
use switchboard_testkit::{TestCluster, TestServer};

const SECRET: &str = "bench-secret";

#[derive(Parser)]
struct Storm {
    #[command(flatten)]
    args: StormArgs,
}

#[derive(Parser)]
struct Presence {
    #[command(flatten)]
    args: PresenceArgs,
}

/// JWT logins, no frame rate limit for the senders, and presence about everyone (the presence
/// scenario's watchers hear about users they have no conversation with).
macro_rules! bench_settings {
    () => {
        |chat| {
            chat.jwt_secret = Some(SECRET.to_string());
            chat.rate_per_sec = 1e6;
            chat.rate_burst = 1e6;
            chat.presence_everyone = true;
        }
    };
}

/// `--url` for each node, then the scenario's options.
fn argv<'a>(urls: &'a [String], options: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["bench", "--jwt-secret", SECRET, "--timeout-secs", "10", "--grace-secs", "5"];
    for url in urls {
        argv.extend(["--url", url.as_str()]);
    }
    argv.extend(options);
    argv
}

async fn storm_over(urls: &[String]) -> storm::StormReport {
    let options = [
        "--clients",
        "20",
        "--senders",
        "2",
        "--rate",
        "200",
        "--down-ms",
        "300",
        "--warmup-secs",
        "1",
        "--duration-secs",
        "1",
    ];
    let Storm { args } = Storm::parse_from(argv(urls, &options));
    storm::measure(args).await.expect("the storm runs")
}

/// Every client recovered, nothing was lost and nothing doubled (a message committed just before a
/// resume's sync read the store, but handed to the new connection after the sync ended, used to
/// be pushed live again although the sync carried it).
fn assert_recovered(report: &storm::StormReport) {
    assert_eq!(report.dropped, 20, "{report:?}");
    assert_eq!((report.reconnected, report.recovered, report.complete, report.gave_up), (20, 20, 20, 0), "{report:?}");
    assert!(report.sent > 0 && report.acked == report.sent, "{report:?}");
    assert_eq!((report.lost, report.unexpected), (0, 0), "{report:?}");
    assert_eq!(report.doubled, 0, "{report:?}");
    assert!(report.via_sync > 0, "what was sent while the clients were away comes back in the sync: {report:?}");
    assert!(report.errors.is_empty() && report.drops.is_empty(), "{report:?}");
}

async fn presence_over(urls: &[String]) -> presence::PresenceReport {
    let options =
        ["--watchers", "6", "--rate", "20", "--online-ms", "200", "--warmup-secs", "0", "--duration-secs", "1"];
    let Presence { args } = Presence::parse_from(argv(urls, &options));
    presence::measure(args).await.expect("the presence scenario runs")
}

fn assert_seen(report: &presence::PresenceReport) {
    assert!(report.cycles >= 15 && report.logins >= report.cycles, "{report:?}");
    assert!(report.login_failures.is_empty() && report.drops.is_empty(), "{report:?}");
    assert_eq!(report.events_expected, 6 * 2 * report.logins, "{report:?}");
    assert_eq!((report.missed, report.extra, report.unmatched), (0, 0, 0), "{report:?}");
    let online = report.online_latency.expect("watchers saw users come online");
    let offline = report.offline_latency.expect("watchers saw users go offline");
    // A cycle of the window whose login went out after the window's end is not timed.
    assert!(online.count as u64 >= 6 * (report.cycles / 2), "{report:?}");
    assert!(offline.count > 0 && report.events_in_window > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_on_one_node_loses_nothing() {
    let server = TestServer::builder().chat(bench_settings!()).start().await;
    let report = storm_over(&[server.ws_url()]).await;
    assert_recovered(&report);
    assert!(report.server_storm.cpu_seconds.is_some(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_resuming_on_the_other_node_loses_nothing() {
    let cluster = TestCluster::start_with(2, bench_settings!()).await;
    let report = storm_over(&[cluster.url(0), cluster.url(1)]).await;
    assert_recovered(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_user_come_and_go() {
    let server = TestServer::builder().chat(bench_settings!()).start().await;
    assert_seen(&presence_over(&[server.ws_url()]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_other_nodes_see_every_user_come_and_go() {
    let cluster = TestCluster::start_with(2, bench_settings!()).await;
    assert_seen(&presence_over(&[cluster.url(0), cluster.url(1)]).await);
}
