//! The NBD server as a role of its own: `cairn nbd serve` (and the one inside `cairn up`).
//!
//! A standalone server needs two things from the cluster: a cluster client (rings and a
//! certificate the nodes trust, taken from a node config) and the control-plane store that
//! holds the image catalog and the writer leases. It runs in its own process, so it can be
//! killed and restarted, or run twice against one image (the second writer is fenced).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cairn_block::BlockService;
use cairn_block::nbd::{NbdConfig, NbdServer, TlsConfig};
use cairn_meta::{AnyMetaStore, MetaConfig};
use cairn_node::config::NodeConfig;
use tracing::info;

/// A running NBD server.
#[derive(Debug)]
pub struct NbdHandle {
    pub local_addr: SocketAddr,
    block: Arc<BlockService<AnyMetaStore>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl NbdHandle {
    /// Stops accepting, lets in-flight requests finish, and returns once connections closed
    /// and the writer leases are given back.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        if let Err(e) = self.block.release_idle_writers().await {
            tracing::warn!(error = %e, "releasing writer leases failed; they will expire");
        }
    }
}

/// Serves every image of `block` as an export on `listen` (port 0 picks a free one).
pub async fn start(
    block: Arc<BlockService<AnyMetaStore>>,
    listen: SocketAddr,
    config: NbdConfig,
) -> anyhow::Result<NbdHandle> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the NBD listener on {listen}"))?;
    let local_addr = listener.local_addr()?;
    let exports = Arc::new(cairn_block::exports::ImageExports::new(block.clone()));
    let server = NbdServer::new(exports, config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await;
    });
    info!(%local_addr, "NBD server listening");
    Ok(NbdHandle {
        local_addr,
        block,
        stop,
        task,
    })
}

/// `cairn nbd serve`'s options.
#[derive(Debug, Clone)]
pub struct NbdServeOptions {
    /// A node config: rings, hash secrets and a certificate the cluster trusts.
    pub node_config: PathBuf,
    /// The control-plane store; `None` takes the node config's `[meta]` section.
    pub meta: Option<MetaConfig>,
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub tls_required: bool,
}

/// Starts a standalone NBD server over the cluster a node config names.
pub async fn serve(opts: NbdServeOptions) -> anyhow::Result<NbdHandle> {
    let node = NodeConfig::load(&opts.node_config)?;
    let meta = match (opts.meta, &node.meta) {
        (Some(m), _) => m,
        (None, Some(m)) => m.clone(),
        (None, None) => anyhow::bail!(
            "{} has no [meta] section: name the control-plane store with --etcd or --meta-dir",
            opts.node_config.display()
        ),
    };
    anyhow::ensure!(
        opts.tls.is_some() || !opts.tls_required,
        "--tls-required needs --tls-dir"
    );
    let store = AnyMetaStore::open(&meta)
        .await
        .context("opening the control-plane store")?;
    let client = Arc::new(
        cairn_node::node::cluster_client(&node)
            .await?
            .with_policies(node.policies().map_err(anyhow::Error::msg)?),
    );
    // The holder names this process: a lease left by a killed server is recognised as stale
    // by nobody but its expiry, so the name only helps an operator reading the store.
    let name = node
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{}", node.node_id));
    let holder = format!("cairn-nbd:{name}:{}", std::process::id());
    let block = BlockService::new(client, store, holder);
    start(
        block,
        opts.listen,
        NbdConfig {
            tls: opts.tls,
            tls_required: opts.tls_required,
            ..NbdConfig::default()
        },
    )
    .await
}
