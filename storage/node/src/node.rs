//! A running storage node: its devices' engines, the RPC server, and the background loops
//! (replicator, auditor, listing-update retries, tombstone reclaim and compaction).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_engine::StorageEngine;
use cairn_net::{
    ClientOptions, LocalFirstTransport, LocalRegistration, LocalServers, NodeCert, RpcClient,
    ServerHandle, ServerOptions, TlsIdentity, TransportKind,
};
use cairn_ring::{PartitionRing, PathHasher};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auditor::Auditor;
use crate::client::ClusterClient;
use crate::config::{DeviceSection, EngineSection, NodeConfig, TransportChoice};
use crate::listing_updates::ListingUpdater;
use crate::metrics::{NodeMetrics, bind_metrics, serve_metrics};
use crate::peers::{Peers, Rings};
use crate::replicator::Replicator;
use crate::service::{DeviceSet, NodeService};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("ring {path}: {message}")]
    Ring { path: String, message: String },
    #[error("TLS material: {0}")]
    Tls(String),
    #[error("config: {0}")]
    Config(String),
    #[error("device {device}: {message}")]
    Device { device: String, message: String },
    #[error("network: {0}")]
    Net(#[from] cairn_net::NetError),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("control plane: {0}")]
    Meta(#[from] cairn_meta::Error),
}

/// A started node; dropping it stops the server and every background loop.
#[derive(Debug)]
pub struct RunningNode {
    pub rpc_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub peers: Arc<Peers>,
    pub metrics: Arc<NodeMetrics>,
    server: Option<ServerHandle>,
    /// In-process calls reach the node while this is held.
    local: Option<LocalRegistration>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Stops serving and every background loop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.local = None;
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn transport_kind(choice: TransportChoice) -> TransportKind {
    match choice {
        TransportChoice::Default => TransportKind::default(),
        TransportChoice::Tcp => TransportKind::Tcp,
        TransportChoice::Quic => TransportKind::Quic,
    }
}

async fn read_ring(path: &Path) -> Result<PartitionRing, NodeError> {
    let err = |message: String| NodeError::Ring {
        path: path.display().to_string(),
        message,
    };
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    PartitionRing::from_bytes(&bytes).map_err(|e| err(e.to_string()))
}

/// Loads the rings a config names.
pub async fn load_rings(config: &NodeConfig) -> Result<Rings, NodeError> {
    let c = &config.cluster;
    let object = read_ring(&c.object_ring).await?;
    let container_path = c
        .container_ring
        .clone()
        .unwrap_or_else(|| c.object_ring.clone());
    let container = read_ring(&container_path).await?;
    let account = read_ring(&c.account_ring.clone().unwrap_or(container_path)).await?;
    let mut policies = std::collections::BTreeMap::new();
    for p in &c.policies {
        if let Some(path) = &p.ring {
            policies.insert(p.index, read_ring(path).await?);
        }
    }
    Ok(Rings {
        object,
        container,
        account,
        policies,
        hasher: PathHasher::new(&c.hash_prefix, &c.hash_suffix),
    })
}

/// Loads the node's TLS identity from the PEM files a config names.
pub async fn load_identity(config: &NodeConfig) -> Result<TlsIdentity, NodeError> {
    let read = |p: std::path::PathBuf| async move {
        tokio::fs::read_to_string(&p)
            .await
            .map_err(|e| NodeError::Tls(format!("{}: {e}", p.display())))
    };
    let ca = read(config.tls.ca_cert.clone()).await?;
    let cert = NodeCert {
        node_name: format!("node-{}", config.node_id),
        cert_pem: read(config.tls.cert.clone()).await?,
        key_pem: read(config.tls.key.clone()).await?,
    };
    TlsIdentity::from_pem(&ca, &cert).map_err(|e| NodeError::Tls(e.to_string()))
}

/// A cluster client speaking with the node's own identity (for tools and the gateway).
pub async fn cluster_client(config: &NodeConfig) -> Result<ClusterClient, NodeError> {
    let identity = load_identity(config).await?;
    let rings = load_rings(config).await?;
    let transport = cairn_net::client(
        transport_kind(config.transport),
        &identity,
        ClientOptions::default(),
    )?;
    let peers = Arc::new(Peers::new(RpcClient::new(transport), rings));
    Ok(ClusterClient::new(peers, config.node_id))
}

/// Starts a node: opens every device with `open`, serves RPC, and starts the background loops.
/// With a `[meta]` section the node opens that control-plane store itself.
pub async fn start_node<E, F, Fut>(config: &NodeConfig, open: F) -> Result<RunningNode, NodeError>
where
    E: StorageEngine,
    F: Fn(DeviceSection, EngineSection) -> Fut,
    Fut: Future<Output = Result<E, String>>,
{
    let meta = match &config.meta {
        Some(meta) => Some(Arc::new(cairn_meta::AnyMetaStore::open(meta).await?)),
        None => None,
    };
    start_node_with_meta(config, open, meta, None).await
}

/// [`start_node`] with an already open control-plane store (its `[meta]` section is ignored).
/// The all-in-one `cairn up` runs several nodes in one process over one embedded store, which
/// only one opener may hold. With `local`, the node also serves the calls of this process
/// in-process, and calls this process's other servers so (see `cairn_net::LocalServers`).
pub async fn start_node_with_meta<E, F, Fut>(
    config: &NodeConfig,
    open: F,
    meta: Option<Arc<cairn_meta::AnyMetaStore>>,
    local: Option<LocalServers>,
) -> Result<RunningNode, NodeError>
where
    E: StorageEngine,
    F: Fn(DeviceSection, EngineSection) -> Fut,
    Fut: Future<Output = Result<E, String>>,
{
    let rings = load_rings(config).await?;
    let identity = load_identity(config).await?;
    let kind = transport_kind(config.transport);
    let advertised = config.advertised();
    for d in &config.devices {
        let listed = rings.object.devices().any(|r| {
            r.device == d.name
                && r.port == advertised.port()
                && r.ip.parse().ok() == Some(advertised.ip())
        });
        if !listed {
            warn!(device = %d.name, %advertised, "device is not in the object ring at this address; it will only hold handoff data");
        }
    }
    let mut engines = BTreeMap::new();
    for d in &config.devices {
        let engine = open(d.clone(), config.engine.clone())
            .await
            .map_err(|message| NodeError::Device {
                device: d.name.clone(),
                message,
            })?;
        engines.insert(d.name.clone(), Arc::new(engine));
    }
    let devices = Arc::new(DeviceSet::new(engines));
    let metrics = NodeMetrics::new();
    let mut transport = cairn_net::client(kind, &identity, ClientOptions::default())?;
    if let Some(local) = &local {
        transport = Arc::new(LocalFirstTransport::new(
            local.clone(),
            transport,
            &config.node_name(),
            advertised,
        ));
    }
    let peers = Arc::new(Peers::new(RpcClient::new(transport), rings));
    let listing = Arc::new(ListingUpdater::new(
        devices.clone(),
        peers.clone(),
        metrics.clone(),
    ));
    let service = NodeService::new(devices.clone(), listing.clone(), metrics.clone());
    let server = cairn_net::serve(
        kind,
        &identity,
        config.listen,
        service.clone(),
        ServerOptions::default(),
    )
    .await?;
    let rpc_addr = server.local_addr();
    let local_registration = local.map(|l| {
        l.register(
            &[advertised, rpc_addr],
            &config.node_name(),
            service,
            &ServerOptions::default(),
        )
    });
    let mut tasks = Vec::new();

    if config.replicator.enabled {
        let interval = Duration::from_millis(config.replicator.interval_ms);
        for (name, engine) in devices.iter() {
            let r = Arc::new(Replicator::new(
                name.to_string(),
                engine.clone(),
                advertised,
                peers.clone(),
                metrics.clone(),
            ));
            tasks.push(tokio::spawn(r.run(interval)));
        }
        // Erasure-coded policies: the reconstructor runs beside the replicator, on its clock.
        let policies = Arc::new(config.policies().map_err(NodeError::Config)?);
        if policies.iter().any(|p| p.ec().is_some()) {
            for (name, engine) in devices.iter() {
                let r = Arc::new(crate::reconstructor::Reconstructor::new(
                    name.to_string(),
                    engine.clone(),
                    advertised,
                    peers.clone(),
                    policies.clone(),
                    metrics.clone(),
                ));
                tasks.push(tokio::spawn(r.run(interval)));
            }
        }
        let listing = listing.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let (sent, left) = listing.retry_pending().await;
                if sent + left > 0 {
                    info!(sent, left, "retried pending listing updates");
                }
            }
        }));
    }
    if config.auditor.enabled {
        for (name, engine) in devices.iter() {
            let a = Arc::new(Auditor::new(
                name.to_string(),
                engine.clone(),
                metrics.clone(),
                config.auditor.objects_per_second,
            ));
            tasks.push(tokio::spawn(
                a.run(Duration::from_millis(config.auditor.pause_ms)),
            ));
        }
    }
    {
        // Housekeeping: drop tombstones past reclaim_age, compact segments.
        let devices = devices.clone();
        let reclaim_age_micros = config.engine.reclaim_age_s.saturating_mul(1_000_000);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0);
                let now = u64::try_from(now).unwrap_or(u64::MAX);
                for (name, engine) in devices.iter() {
                    if let Err(e) = engine.reclaim_tombstones(now, reclaim_age_micros).await {
                        warn!(device = name, error = %e, "reclaiming tombstones failed");
                    }
                    if let Err(e) = engine.compact().await {
                        warn!(device = name, error = %e, "compaction failed");
                    }
                }
            }
        }));
    }
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_listen {
        let listener = bind_metrics(addr)
            .await
            .map_err(|source| NodeError::Metrics { addr, source })?;
        metrics_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(serve_metrics(listener, metrics.clone())));
    }
    if let Some(store) = meta {
        let id = crate::control::Identity {
            name: config.node_name(),
            node_id: config.node_id,
            rpc: advertised,
            metrics: metrics_addr,
        };
        let ttl = Duration::from_secs(config.heartbeat_ttl_s);
        tasks.push(tokio::spawn(crate::control::run_membership(
            store.clone(),
            id,
            devices.clone(),
            peers.clone(),
            ttl,
        )));
        tasks.push(tokio::spawn(crate::control::run_ring_watch(
            store,
            peers.clone(),
            metrics.clone(),
        )));
    }
    {
        let rings = peers.rings();
        metrics.ring_version("object", rings.object.version());
        metrics.ring_version("container", rings.container.version());
    }
    info!(%rpc_addr, ?metrics_addr, devices = config.devices.len(), transport = ?kind, "storage node serving");
    Ok(RunningNode {
        rpc_addr,
        metrics_addr,
        peers,
        metrics,
        server: Some(server),
        local: local_registration,
        tasks,
    })
}
