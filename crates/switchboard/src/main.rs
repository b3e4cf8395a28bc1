//! The `switchboard` binary: wires the crates together. `serve` is the default subcommand.
#![forbid(unsafe_code)]

mod data_dir;
mod settings;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard_bus::{Bus, InProcessBroker, NatsBus, RedisBus};
use switchboard_core::ChatNode;
use switchboard_server::Server;
use switchboard_store::{PostgresStore, SqliteStore, Store};

use data_dir::DataDirLock;
use settings::{BusKind, ServeArgs, Settings, StoreKind};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "A chat server in one binary", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, the default subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server (the default).
    Serve(Box<ServeArgs>),
    /// Measure a running server (see docs/benchmarks.md).
    Bench(switchboard_bench::BenchArgs),
    /// Chat in the terminal with a running server.
    Chat(switchboard_chat::ChatArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match cli.command {
        Some(Command::Bench(args)) => runtime.block_on(switchboard_bench::run(args)),
        Some(Command::Chat(args)) => runtime.block_on(switchboard_chat::run(args)),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    settings::init_logging(&settings.log_format);
    tracing::info!(settings = %settings.describe(), "starting switchboard");
    // Held until the server has stopped: no second server may open the same SQLite file meanwhile.
    let _data_dir_lock = match &settings.store {
        StoreKind::Sqlite(path) => {
            let folder = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
            Some(DataDirLock::acquire(folder, settings.server.listen)?)
        }
        StoreKind::Memory | StoreKind::Postgres(_) => None,
    };
    let store: Arc<dyn Store> = match &settings.store {
        StoreKind::Sqlite(path) => Arc::new(
            SqliteStore::open(path, settings.sqlite_options())
                .await
                .with_context(|| format!("opening the sqlite store at {}", path.display()))?,
        ),
        StoreKind::Memory => Arc::new(SqliteStore::open_in_memory().await.context("opening the in-memory store")?),
        StoreKind::Postgres(url) => Arc::new(
            PostgresStore::connect(url)
                .await
                .with_context(|| format!("connecting to the postgres store at {}", settings::redact(url)))?,
        ),
    };
    let node_id = settings.chat.node_id.as_str();
    let bus: Arc<dyn Bus> = match &settings.bus {
        BusKind::InProcess => Arc::new(InProcessBroker::new().join(node_id)),
        BusKind::Redis(url) => Arc::new(
            RedisBus::connect(url, node_id, &settings.cluster)
                .await
                .with_context(|| format!("connecting to the redis bus at {}", settings::redact(url)))?,
        ),
        BusKind::Nats(url) => Arc::new(
            NatsBus::connect(url, node_id, &settings.cluster)
                .await
                .with_context(|| format!("connecting to the nats bus at {}", settings::redact(url)))?,
        ),
    };
    let node = ChatNode::start(settings.chat.clone(), store.clone(), bus).await.context("starting the chat node")?;
    let server = Server::new(settings.server.clone(), node, store)
        .start()
        .await
        .with_context(|| format!("listening on {}", settings.server.listen))?;
    println!("switchboard listening on http://{} (websocket: ws://{}/ws)", server.local_addr, server.local_addr);
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for sigterm");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
