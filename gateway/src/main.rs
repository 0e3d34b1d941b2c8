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
    /// Object operations straight through the cluster client (an operator's tool until the
    /// S3/Swift gateway exists), authenticated with a node's certificate from its config.
    Object {
        /// A node config naming the rings, hash secrets and a certificate.
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// The cluster certificate authority: node-to-node TLS trusts exactly its certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
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

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a cluster CA: writes ca.pem and ca.key (mode 0600) into DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name (recorded in the CA certificate).
        #[arg(long, default_value = "cairn")]
        cluster: String,
    },
    /// Issue a node certificate: writes <NAME>.pem and <NAME>.key into OUT.
    Issue {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, default_value = "cairn")]
        cluster: String,
        /// The node's name (a DNS name; peers see it in logs and spans).
        #[arg(long)]
        name: String,
        /// An address the node serves on (repeatable); peers verify the address they dial.
        #[arg(long = "ip", required = true)]
        ips: Vec<std::net::IpAddr>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ObjectCommand {
    /// Store FILE as ACCOUNT/CONTAINER/OBJECT.
    Put { path: String, file: PathBuf },
    /// Write ACCOUNT/CONTAINER/OBJECT to FILE (stdout if omitted).
    Get { path: String, file: Option<PathBuf> },
    /// Delete ACCOUNT/CONTAINER/OBJECT.
    Rm { path: String },
    /// List ACCOUNT/CONTAINER.
    Ls {
        path: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        delimiter: Option<String>,
    },
}

fn split_path(path: &str, parts: usize) -> anyhow::Result<Vec<String>> {
    let v: Vec<String> = path
        .trim_start_matches('/')
        .splitn(parts, '/')
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        v.len() == parts && v.iter().all(|p| !p.is_empty()),
        "expected {} path parts (ACCOUNT/CONTAINER{}), got {path:?}",
        parts,
        if parts == 3 { "/OBJECT" } else { "" }
    );
    Ok(v)
}

async fn run_object(config: PathBuf, command: ObjectCommand) -> anyhow::Result<()> {
    use std::io::Write;
    let cfg = NodeConfig::load(&config)?;
    let client = cairn_node::node::cluster_client(&cfg).await?;
    match command {
        ObjectCommand::Put { path, file } => {
            let p = split_path(&path, 3)?;
            let data = tokio::fs::read(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let put = cairn_node::ObjectPut {
                account: p[0].clone(),
                container: p[1].clone(),
                object: p[2].clone(),
                size_bytes: data.len() as u64,
                content_type: "application/octet-stream".into(),
                user_meta: Default::default(),
            };
            let w = client
                .put_object(put, cairn_net::Body::Full(data.into()))
                .await?;
            info!(timestamp = %w.timestamp, strict = w.strict, "stored");
        }
        ObjectCommand::Get { path, file } => {
            let p = split_path(&path, 3)?;
            let (meta, body) = client
                .get_object(&p[0], &p[1], &p[2], None)
                .await?
                .with_context(|| format!("{path}: no such object"))?;
            let mut body = body;
            let mut out: Box<dyn Write> = match &file {
                Some(f) => Box::new(std::fs::File::create(f)?),
                None => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = body.next_chunk().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
            info!(etag = %meta.etag, bytes = meta.size_bytes, "fetched");
        }
        ObjectCommand::Rm { path } => {
            let p = split_path(&path, 3)?;
            client.delete_object(&p[0], &p[1], &p[2]).await?;
        }
        ObjectCommand::Ls {
            path,
            prefix,
            delimiter,
        } => {
            let p = split_path(&path, 2)?;
            let mut marker = None;
            let mut out = std::io::stdout().lock();
            loop {
                let query = cairn_engine::ListQuery {
                    prefix: prefix.clone(),
                    delimiter: delimiter.clone(),
                    marker: marker.clone(),
                    limit: 1_000,
                    ..Default::default()
                };
                let page = client.list_objects(&p[0], &p[1], query).await?;
                for item in &page.items {
                    match item {
                        cairn_engine::ListItem::Entry(e) => {
                            writeln!(out, "{}\t{}\t{}", e.size_bytes, e.etag, e.name)?
                        }
                        cairn_engine::ListItem::Prefix(p) => writeln!(out, "-\t-\t{p}")?,
                    }
                }
                if !page.truncated {
                    break;
                }
                marker = page
                    .next_marker
                    .or_else(|| page.items.last().map(|i| i.marker().to_string()));
            }
        }
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite a key)", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn run_ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { dir, cluster } => {
            std::fs::create_dir_all(&dir)?;
            let ca = cairn_net::ClusterCa::generate(&cluster)?;
            write_secret(&dir.join("ca.key"), &ca.key_pem)?;
            std::fs::write(dir.join("ca.pem"), &ca.cert_pem)?;
            info!(dir = %dir.display(), "cluster CA created");
        }
        CaCommand::Issue {
            ca_dir,
            cluster,
            name,
            ips,
            out,
        } => {
            let cert_pem =
                std::fs::read_to_string(ca_dir.join("ca.pem")).context("reading ca.pem")?;
            let key_pem =
                std::fs::read_to_string(ca_dir.join("ca.key")).context("reading ca.key")?;
            let ca = cairn_net::ClusterCa::from_pem(&cluster, &cert_pem, &key_pem)?;
            let node = ca.issue_node(&name, &ips)?;
            std::fs::create_dir_all(&out)?;
            write_secret(&out.join(format!("{name}.key")), &node.key_pem)?;
            std::fs::write(out.join(format!("{name}.pem")), &node.cert_pem)?;
            info!(%name, ?ips, out = %out.display(), "node certificate issued");
        }
    }
    Ok(())
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Node { config, check } => run_node(config, check).await,
            Command::Ca { command } => run_ca(command),
            Command::Object { config, command } => run_object(config, command).await,
        }
    })
}
