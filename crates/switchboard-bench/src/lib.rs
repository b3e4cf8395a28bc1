//! Switchboard's load generator: `switchboard bench <scenario> [options]`.
//!
//! Each scenario lives in its own module ([`idle`], [`pm`], [`fanout`], [`storm`], [`presence`],
//! [`floor`], [`logins`], [`chaos`], which also runs the cluster it measures); the shared pieces
//! are
//! - [`client`]: parsing the target URL, opening WebSocket connections (optionally from one of
//!   several loopback source addresses) and logging in, the options and connection handling of
//!   the message scenarios, and reading the few fields they need from raw frames;
//! - [`metrics`]: scraping the servers' Prometheus `/metrics` and summing deltas over nodes;
//! - [`tls`]: `wss://` targets and `/metrics` over https, trusting `--tls-ca`;
//! - [`report`]: percentiles, a shared latency histogram, the bench process's own memory and CPU,
//!   and formatting helpers.
#![forbid(unsafe_code)]

pub mod chaos;
pub mod chart;
pub mod client;
pub mod fanout;
pub mod floor;
pub mod idle;
pub mod logins;
pub mod metrics;
pub mod pm;
pub mod presence;
pub mod report;
pub mod soak;
pub mod storm;
pub mod tls;

pub use chaos::ChaosArgs;
pub use chart::ChartArgs;
pub use fanout::FanoutArgs;
pub use floor::FloorArgs;
pub use idle::IdleArgs;
pub use logins::LoginsArgs;
pub use pm::PmArgs;
pub use presence::PresenceArgs;
pub use soak::SoakArgs;
pub use storm::StormArgs;

/// `switchboard bench <scenario>`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// CA certificates (PEM) to trust for `wss://` targets, e.g. the CA that signed the server's
    /// --tls-cert; without it, the system's roots.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The load scenarios.
#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// Open many authenticated connections, hold them idle and measure the server's memory per
    /// connection, its CPU during the connect phase and the handshake latency.
    Idle(IdleArgs),
    /// Private messages between pairs of users at a steady total rate: delivery (lost,
    /// duplicates), latency send->receive and send->ack, server CPU and bus traffic per message.
    Pm(PmArgs),
    /// Members of one room, some of them sending at a total rate (or several stepped rates):
    /// deliveries per second, whether the rate is kept up, latency, server cost per delivery.
    Fanout(FanoutArgs),
    /// Many clients drop at once and reconnect with their cursors while private messages keep
    /// flowing: time until all have synced and recovered every missed message, lost and doubled
    /// messages, server CPU of the storm.
    Storm(StormArgs),
    /// Users coming online and going offline at a rate, watched by connections with presence on:
    /// how fast the watchers see it, missed events, server cost per event.
    Presence(PresenceArgs),
    /// This machine's floor: the CPU of bare socket writes and reads on many loopback TCP
    /// connections, the kernel's share of every delivery, to compare the server's costs with.
    Floor(FloorArgs),
    /// Starts a three-node cluster of its own and, while clients on every node chat, kills a
    /// node, restarts the broker, stops a node, cuts PostgreSQL off and restarts a node under the
    /// same id: recovery and presence-heal times, and a checker (nothing acknowledged lost or
    /// doubled, order per conversation, nobody online without a connection).
    Chaos(ChaosArgs),
    /// Bursts of password registrations and logins (good and wrong passwords), all at once: the
    /// server's memory before, at the peak and once settled, and how many were refused.
    Logins(LoginsArgs),
    /// Starts one node (SQLite) or three (PostgreSQL, Redis) of its own and keeps mixed load on
    /// them for an hour (private messages with acks, short visits that join a room, send and read
    /// history): every node's RSS and open files every 10 s, and the checker's tally.
    Soak(SoakArgs),
    /// No server: SVG charts (for docs/benchmarks.md) of the JSON lines the other scenarios print
    /// with `--json`, as collected by scripts/bench-peers.sh.
    Chart(ChartArgs),
}

/// Runs one scenario against a running server.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    raise_open_files_limit();
    if let Some(ca) = &args.tls_ca {
        tls::trust_ca_file(ca)?;
    }
    match args.scenario {
        Scenario::Idle(args) => idle::run(args).await,
        Scenario::Pm(args) => pm::run(args).await,
        Scenario::Fanout(args) => fanout::run(args).await,
        Scenario::Storm(args) => storm::run(args).await,
        Scenario::Presence(args) => presence::run(args).await,
        Scenario::Floor(args) => floor::run(args).await,
        Scenario::Chaos(args) => chaos::run(args).await,
        Scenario::Logins(args) => logins::run(args).await,
        Scenario::Soak(args) => soak::run(args).await,
        Scenario::Chart(args) => chart::run(args),
    }
}

/// Parses a rate in messages per second: a finite number above zero.
pub(crate) fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate above zero")),
    }
}

/// Raises the soft open-files limit to the hard limit: every held connection is a socket.
fn raise_open_files_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-files limit: {error}");
    }
}

/// The current soft open-files limit, if known.
pub(crate) fn open_files_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _hard)| soft)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        Bench(BenchArgs),
    }

    #[test]
    fn the_idle_scenario_parses_with_defaults() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["switchboard", "bench", "idle", "--jwt-secret", "s", "--sources", "8"]).unwrap();
        let Command::Bench(BenchArgs { scenario: Scenario::Idle(idle), .. }) = cli.command else { panic!("not idle") };
        assert_eq!(idle.url, "ws://127.0.0.1:8080/ws");
        assert_eq!(idle.connections, 1000);
        assert_eq!(idle.user_prefix, "idle");
        assert_eq!(idle.sources, 8);
        assert_eq!(idle.concurrency, 256);
        assert_eq!(idle.hold_secs, 5);
        assert!(!idle.json);
        assert!(Cli::try_parse_from(["switchboard", "bench", "idle", "--jwt-secret", "s", "--sources", "0"]).is_err());
        let tls = Cli::try_parse_from(["switchboard", "bench", "idle", "--jwt-secret", "s", "--tls-ca", "/ca.pem"]);
        let Command::Bench(bench) = tls.unwrap().command;
        assert_eq!(bench.tls_ca.as_deref(), Some(std::path::Path::new("/ca.pem")), "--tls-ca after the scenario");
    }

    #[test]
    fn the_pm_scenario_takes_several_urls() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "bench",
            "pm",
            "--jwt-secret",
            "s",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--url",
            "ws://127.0.0.1:2/ws",
            "--pairs",
            "10",
            "--rate",
            "2.5",
            "--json",
        ])
        .unwrap();
        let Command::Bench(BenchArgs { scenario: Scenario::Pm(pm), .. }) = cli.command else { panic!("not pm") };
        assert_eq!(pm.load.urls, ["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]);
        assert_eq!((pm.pairs, pm.rate), (10, 2.5));
        assert_eq!((pm.load.duration_secs, pm.load.warmup_secs, pm.load.sources), (10, 2, 1));
        assert!(pm.load.json && pm.load.user_prefix.is_none());
        assert!(Cli::try_parse_from(["switchboard", "bench", "pm", "--jwt-secret", "s", "--rate", "0"]).is_err());
    }

    #[test]
    fn the_fanout_scenario_takes_steps() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "bench",
            "fanout",
            "--jwt-secret",
            "s",
            "--members",
            "500",
            "--senders",
            "2",
            "--steps",
            "10,20,40",
        ])
        .unwrap();
        let Command::Bench(BenchArgs { scenario: Scenario::Fanout(fanout), .. }) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(fanout.load.urls, ["ws://127.0.0.1:8080/ws"]);
        assert_eq!((fanout.members, fanout.senders), (500, 2));
        assert_eq!(fanout.rates(), [10.0, 20.0, 40.0]);
        let cli = Cli::try_parse_from(["switchboard", "bench", "fanout", "--jwt-secret", "s", "--rate", "7"]).unwrap();
        let Command::Bench(BenchArgs { scenario: Scenario::Fanout(fanout), .. }) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(fanout.rates(), [7.0]);
        assert!(Cli::try_parse_from(["switchboard", "bench", "fanout", "--jwt-secret", "s", "--steps", "1,x"]).is_err());
    }

    fn bench(args: &[&str]) -> Result<Scenario, clap::Error> {
        let argv = ["switchboard", "bench"].iter().chain(args);
        Cli::try_parse_from(argv).map(|Cli { command: Command::Bench(bench) }| bench.scenario)
    }

    #[test]
    fn the_storm_scenario_parses_with_defaults() {
        let Ok(Scenario::Storm(storm)) = bench(&["storm", "--jwt-secret", "s", "--clients", "18000", "--sources", "8"])
        else {
            panic!("not storm")
        };
        assert_eq!((storm.clients, storm.senders, storm.rate, storm.down_ms), (18000, 4, 500.0, 1000));
        assert_eq!((storm.load.sources, storm.load.concurrency, storm.load.warmup_secs), (8, 128, 2));
        assert!(bench(&["storm", "--jwt-secret", "s", "--clients", "0"]).is_err());
        assert!(bench(&["storm", "--jwt-secret", "s", "--rate", "-1"]).is_err());
    }

    #[test]
    fn the_presence_scenario_sizes_its_pool() {
        let Ok(Scenario::Presence(presence)) =
            bench(&["presence", "--jwt-secret", "s", "--url", "ws://127.0.0.1:1/ws", "--url", "ws://127.0.0.1:2/ws"])
        else {
            panic!("not presence")
        };
        assert_eq!((presence.watchers, presence.rate, presence.online_ms), (100, 20.0, 1000));
        assert_eq!(presence.load.urls.len(), 2);
        // 20 users/s, each online 1 s and reused 2 s later at the earliest.
        assert_eq!(presence.pool(), 61);
        assert!(!presence.floor.floor && presence.floor.floor_us.is_none());
        let Ok(Scenario::Presence(presence)) = bench(&["presence", "--jwt-secret", "s", "--floor-us", "6.5"]) else {
            panic!("not presence")
        };
        assert_eq!((presence.floor.floor_us, presence.floor.floor_read_us), (Some(6.5), None));
        assert!(bench(&["presence", "--jwt-secret", "s", "--floor", "--floor-us", "6"]).is_err());
        assert!(bench(&["presence", "--jwt-secret", "s", "--floor-read-us", "6"]).is_err());
    }

    #[test]
    fn the_floor_scenario_needs_no_server() {
        let Ok(Scenario::Floor(floor)) = bench(&["floor", "--size", "1024", "--json"]) else { panic!("not floor") };
        assert_eq!((floor.connections, floor.size, floor.batch, floor.duration_secs), (1000, 1024, 8, 2));
        assert!(floor.json);
        assert!(bench(&["floor", "--batch", "1"]).is_err());
        assert!(bench(&["floor", "--connections", "20000"]).is_err());
    }

    #[test]
    fn the_logins_scenario_parses_with_defaults() {
        let Ok(Scenario::Logins(logins)) = bench(&["logins"]) else { panic!("not logins") };
        assert_eq!((logins.clients, logins.bad_percent, logins.sources, logins.settle_secs), (200, 50, 8, 10));
        assert!(bench(&["logins", "--bad-percent", "101"]).is_err());
        assert!(bench(&["logins", "--clients", "0"]).is_err());
    }

    #[test]
    fn the_chart_subcommand_takes_several_inputs() {
        let Ok(Scenario::Chart(chart)) =
            bench(&["chart", "--input", "a.jsonl", "--input", "b.jsonl", "--floor-us", "4.5"])
        else {
            panic!("not chart")
        };
        assert_eq!(chart.inputs, [std::path::PathBuf::from("a.jsonl"), "b.jsonl".into()]);
        assert_eq!(
            (chart.out_dir.to_str(), chart.floor_us, chart.system.as_str()),
            (Some("docs/charts"), Some(4.5), "switchboard")
        );
        assert!(bench(&["chart"]).is_err());
        assert!(bench(&["chart", "--input", "a.jsonl", "--floor-us", "0"]).is_err());
        assert!(bench(&["chart", "--input", "a.jsonl", "--floor-read-us", "4"]).is_err());
    }

    #[tokio::test]
    async fn a_given_floor_is_taken_as_is() {
        let given = floor::FloorOption { floor: false, floor_us: Some(6.0), floor_read_us: Some(5.0) };
        let cost = given.cost().await.unwrap().unwrap();
        assert_eq!((cost.write_us, cost.read_us), (6.0, 5.0));
        assert!(floor::FloorOption::default().cost().await.unwrap().is_none());
    }
}
