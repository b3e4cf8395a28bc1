//! Switchboard's load generator: `switchboard bench <scenario> [options]`.
//!
//! Each scenario lives in its own module ([`idle`], [`pm`], [`fanout`]); the shared pieces are
//! - [`client`]: parsing the target URL, opening WebSocket connections (optionally from one of
//!   several loopback source addresses) and logging in, the options and connection handling of
//!   the message scenarios, and reading the few fields they need from raw frames;
//! - [`metrics`]: scraping the servers' Prometheus `/metrics` and summing deltas over nodes;
//! - [`report`]: percentiles, a shared latency histogram, the bench process's own memory and CPU,
//!   and formatting helpers.
#![forbid(unsafe_code)]

pub mod client;
pub mod fanout;
pub mod idle;
pub mod metrics;
pub mod pm;
pub mod report;

pub use fanout::FanoutArgs;
pub use idle::IdleArgs;
pub use pm::PmArgs;

/// `switchboard bench <scenario>`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
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
}

/// Runs one scenario against a running server.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    raise_open_files_limit();
    match args.scenario {
        Scenario::Idle(args) => idle::run(args).await,
        Scenario::Pm(args) => pm::run(args).await,
        Scenario::Fanout(args) => fanout::run(args).await,
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
        let Command::Bench(BenchArgs { scenario: Scenario::Idle(idle) }) = cli.command else { panic!("not idle") };
        assert_eq!(idle.url, "ws://127.0.0.1:8080/ws");
        assert_eq!(idle.connections, 1000);
        assert_eq!(idle.user_prefix, "idle");
        assert_eq!(idle.sources, 8);
        assert_eq!(idle.concurrency, 256);
        assert_eq!(idle.hold_secs, 5);
        assert!(!idle.json);
        assert!(Cli::try_parse_from(["switchboard", "bench", "idle", "--jwt-secret", "s", "--sources", "0"]).is_err());
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
        let Command::Bench(BenchArgs { scenario: Scenario::Pm(pm) }) = cli.command else { panic!("not pm") };
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
        let Command::Bench(BenchArgs { scenario: Scenario::Fanout(fanout) }) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(fanout.load.urls, ["ws://127.0.0.1:8080/ws"]);
        assert_eq!((fanout.members, fanout.senders), (500, 2));
        assert_eq!(fanout.rates(), [10.0, 20.0, 40.0]);
        let cli = Cli::try_parse_from(["switchboard", "bench", "fanout", "--jwt-secret", "s", "--rate", "7"]).unwrap();
        let Command::Bench(BenchArgs { scenario: Scenario::Fanout(fanout) }) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(fanout.rates(), [7.0]);
        assert!(Cli::try_parse_from(["switchboard", "bench", "fanout", "--jwt-secret", "s", "--steps", "1,x"]).is_err());
    }
}
