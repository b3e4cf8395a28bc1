//! Switchboard's load generator: `switchboard bench <scenario> [options]`.
//!
//! Each scenario lives in its own module ([`idle`]); the shared pieces are
//! - [`client`]: parsing the target URL, opening WebSocket connections (optionally from one of
//!   several loopback source addresses) and logging in;
//! - [`metrics`]: scraping the server's Prometheus `/metrics`;
//! - [`report`]: percentiles, the bench process's own memory and formatting helpers.
#![forbid(unsafe_code)]

pub mod client;
pub mod idle;
pub mod metrics;
pub mod report;

pub use idle::IdleArgs;

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
}

/// Runs one scenario against a running server.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    raise_open_files_limit();
    match args.scenario {
        Scenario::Idle(args) => idle::run(args).await,
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
        let Command::Bench(BenchArgs { scenario: Scenario::Idle(idle) }) = cli.command;
        assert_eq!(idle.url, "ws://127.0.0.1:8080/ws");
        assert_eq!(idle.connections, 1000);
        assert_eq!(idle.user_prefix, "idle");
        assert_eq!(idle.sources, 8);
        assert_eq!(idle.concurrency, 256);
        assert_eq!(idle.hold_secs, 5);
        assert!(!idle.json);
        assert!(Cli::try_parse_from(["switchboard", "bench", "idle", "--jwt-secret", "s", "--sources", "0"]).is_err());
    }
}
