//! `cairn`: the one binary. Today it runs storage nodes (`cairn node --config node.toml`); the
//! all-in-one `cairn up`, the S3/Swift gateway and the admin commands join it with their issues.

use std::path::PathBuf;

use anyhow::Context;
use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};
use cairn_node::config::{DeviceSection, EngineSection, IoChoiceConfig, NodeConfig};
use clap::{Parser, Subcommand};
use tracing::info;

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn: a storage-centric cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a storage node: serve its devices and run the replicator and auditor.
    Node {
        /// The node's TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Only check the config (and that rings and certificates load), then exit.
        #[arg(long)]
        check: bool,
    },
}

async fn open_device(d: DeviceSection, e: EngineSection) -> Result<RocksEngine, String> {
    let io = match e.io {
        IoChoiceConfig::Auto => IoChoice::Auto,
        IoChoiceConfig::Uring => IoChoice::Uring,
        IoChoiceConfig::Plain => IoChoice::Plain,
    };
    tokio::fs::create_dir_all(&d.path)
        .await
        .map_err(|err| format!("creating {}: {err}", d.path.display()))?;
    let engine = RocksEngine::open(EngineOptions {
        dir: d.path.clone(),
        io,
    })
    .await
    .map_err(|err| err.to_string())?;
    info!(device = %d.name, path = %d.path.display(), io_uring = engine.uses_io_uring(), "device open");
    Ok(engine)
}

async fn run_node(config: PathBuf, check: bool) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(&config)?;
    if check {
        cairn_node::node::load_rings(&cfg).await?;
        cairn_node::node::load_identity(&cfg).await?;
        info!(config = %config.display(), "config, rings and certificates are valid");
        return Ok(());
    }
    let node = cairn_node::start_node(&cfg, open_device)
        .await
        .context("starting the node")?;
    // Scripts and tests read this line to learn the bound addresses.
    eprintln!(
        "cairn-node ready rpc={} metrics={}",
        node.rpc_addr,
        node.metrics_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    wait_for_signal().await?;
    info!("shutting down");
    node.shutdown();
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Node { config, check } => run_node(config, check).await,
        }
    })
}
