//! `cairn up`: the all-in-one local cluster. One process runs three storage nodes (separate
//! data directories, two devices each), the embedded control-plane store they share, and the
//! S3/Swift gateway. Two storage policies: `replicated` (the default; a 3-replica object ring
//! over the six devices) and `ec42` (Reed-Solomon 4+2 over a 6-replica ring of the same
//! devices). The first start creates everything under `--data-dir`; later starts reuse it, so
//! data survives restarts. A data directory made before the EC policy existed (one device per
//! node, no `object-1` ring) keeps starting as it was, with the replicated policy only.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cairn_meta::{AnyMetaStore, IdentityStore, MetaConfig};
use cairn_net::{ClientOptions, NodeCert, RpcClient, TlsIdentity, TransportKind};
use cairn_node::config::NodeConfig;
use cairn_node::metrics::NodeMetrics;
use cairn_node::peers::Peers;
use cairn_node::policy::Policies;
use cairn_node::{ClusterClient, RunningNode};
use cairn_ring::{NewDevice, PartitionRing, RebalanceOptions, RingBuilder};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::cluster::{self, AdminCredentials};
use crate::server::{Gateway, GatewayOptions};

/// How many storage nodes `cairn up` runs.
pub const UP_NODES: usize = 3;
/// Partition power of the all-in-one ring: 256 partitions is plenty for three devices.
const UP_PART_POWER: u8 = 8;
/// Replication passes of the all-in-one nodes (Swift's default interval): three nodes share
/// one machine with the gateway, so passes are spaced more than a dedicated node's.
const UP_REPLICATOR_INTERVAL_MS: u64 = 30_000;
/// The gateway's timestamp node id (storage nodes are 1..=UP_NODES).
const GATEWAY_NODE_ID: u32 = 1000;
/// Each node's devices (directories under the node's data directory).
const UP_DEVICES: [&str; 2] = ["d1", "d2"];
/// Replicas of the replicated policy's object ring (and of the container ring).
const UP_REPLICAS: f64 = 3.0;
/// The erasure-coded policy `cairn up` defines: index, name, k data and m parity fragments.
const UP_EC_INDEX: u16 = 1;
const UP_EC_NAME: &str = "ec42";
const UP_EC_DATA: usize = 4;
const UP_EC_PARITY: usize = 2;

/// `cairn up`'s options.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub data_dir: PathBuf,
    /// Gateway listen address (S3 and Swift); port 0 picks a free one.
    pub listen: SocketAddr,
    pub region: String,
    /// How often the object expirer runs.
    pub expirer_interval: std::time::Duration,
    /// NBD listen address (every image an export); port 0 picks a free one.
    pub nbd_listen: SocketAddr,
    /// Calls between the gateway, the NBD server and the nodes stay inside the process (no
    /// TLS or sockets; see `cairn_net::LocalServers`). Off: every call goes over TCP+TLS as
    /// between hosts (to measure that cost).
    pub local_calls: bool,
    /// Serve S3 and Swift over HTTPS with the gateway's certificate from the cluster CA
    /// (`<data-dir>/ca.pem`, written to `endpoints.json` as `s3.ca_bundle`).
    pub https: bool,
}

/// What a first start records so later starts find the same cluster.
#[derive(Debug, Serialize, Deserialize)]
struct UpState {
    format: u32,
    admin: AdminCredentials,
    region: String,
}

/// The endpoints file scripts read (`<data-dir>/endpoints.json`).
#[derive(Debug, Serialize)]
pub struct Endpoints {
    pub s3: S3Endpoint,
    pub swift: SwiftEndpoint,
    pub nbd: Option<String>,
    /// The storage policies a new bucket or container may name.
    pub storage_policies: Vec<PolicyEndpoint>,
}

/// One storage policy in `endpoints.json`.
#[derive(Debug, Serialize)]
pub struct PolicyEndpoint {
    pub name: String,
    /// `replicated` or `ec 4+2 rs-erasure-gf8`.
    pub kind: String,
    pub default: bool,
}

#[derive(Debug, Serialize)]
pub struct S3Endpoint {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// With `--https`: the CA certificate that signed the gateway's (clients' `--ca-bundle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SwiftEndpoint {
    pub auth_url: String,
    pub user: String,
    pub key: String,
}

/// A running all-in-one cluster.
#[derive(Debug)]
pub struct UpCluster {
    pub nodes: Vec<RunningNode>,
    pub gateway: Gateway,
    pub endpoints: Endpoints,
    pub nbd: crate::nbd_serve::NbdHandle,
    pub policies: Policies,
}

/// `replicated (default), ec42 (ec 4+2 rs-erasure-gf8)`: the policies for a banner.
pub fn describe_policies(policies: &Policies) -> String {
    let default = policies.default_policy().index;
    policies
        .iter()
        .map(|p| {
            let mut notes = Vec::new();
            let kind = p.describe();
            if kind != p.name {
                notes.push(kind);
            }
            if p.index == default {
                notes.push("default".to_string());
            }
            if notes.is_empty() {
                p.name.clone()
            } else {
                format!("{} ({})", p.name, notes.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A free port on `ip`. The listener that found it stays in `held` until the caller drops
/// them all, so ports picked one after another are distinct (a port released at once could
/// be handed out again by the next pick).
fn free_port(ip: IpAddr, held: &mut Vec<std::net::TcpListener>) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0)).context("finding a free port")?;
    let port = l.local_addr()?.port();
    held.push(l);
    Ok(port)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn node_dir(data_dir: &Path, n: usize) -> PathBuf {
    data_dir.join(format!("node{}", n + 1))
}

/// First start: cluster record, CA, admin identity, certificates, ring and node configs.
async fn create(opts: &UpOptions, store: &AnyMetaStore) -> anyhow::Result<UpState> {
    let dir = &opts.data_dir;
    let new = cluster::create_cluster(store, "cairn-up").await?;
    write_private(
        &dir.join("identity.key"),
        &hex::encode(new.identity_master_key),
    )?;
    std::fs::write(dir.join("ca.pem"), &new.ca.cert_pem)?;
    // The nodes serve on the gateway's address: one loopback address per cluster keeps
    // clusters started side by side (tests) from racing for the same free ports.
    let ip = opts.listen.ip();
    let gateway_cert = new.ca.issue_node("gateway", &[ip])?;
    write_private(&dir.join("gateway.key"), &gateway_cert.key_pem)?;
    std::fs::write(dir.join("gateway.pem"), &gateway_cert.cert_pem)?;
    // The replicated policy's ring (3 replicas) and the erasure-coded policy's (one fragment
    // on each of the k+m = 6 devices), over the same devices.
    let mut builder = RingBuilder::new(UP_PART_POWER, UP_REPLICAS, 0)?;
    let ec_width = UP_EC_DATA + UP_EC_PARITY;
    let mut ec_builder = RingBuilder::new(UP_PART_POWER, ec_width as f64, 0)?;
    let rings_dir = dir.join("rings");
    std::fs::create_dir_all(&rings_dir)?;
    let ring_path = rings_dir.join("object.ring");
    let ec_ring_path = rings_dir.join(format!("object-{UP_EC_INDEX}.ring"));
    let mut held_ports = Vec::new();
    for n in 0..UP_NODES {
        let nd = node_dir(dir, n);
        std::fs::create_dir_all(&nd)?;
        let port = free_port(ip, &mut held_ports)?;
        let metrics = free_port(ip, &mut held_ports)?;
        let cert = new.ca.issue_node(&format!("node-{}", n + 1), &[ip])?;
        std::fs::write(nd.join("node.pem"), &cert.cert_pem)?;
        write_private(&nd.join("node.key"), &cert.key_pem)?;
        let mut devices = String::new();
        for device in UP_DEVICES {
            let new = NewDevice {
                id: None,
                region: 1,
                zone: u32::try_from(n + 1)?,
                ip: ip.to_string(),
                port,
                replication_ip: None,
                replication_port: None,
                device: device.into(),
                weight: 100.0,
                meta: String::new(),
            };
            builder.add_device(new.clone())?;
            ec_builder.add_device(new)?;
            devices.push_str(&format!(
                "\n[[device]]\nname = \"{device}\"\npath = \"{}\"\n",
                nd.join(device).display()
            ));
        }
        let toml = format!(
            "# Written by `cairn up`; edit with care (the ring lists this address).\n\
             node_id = {id}\nlisten = \"{ip}:{port}\"\nmetrics_listen = \"{ip}:{metrics}\"\n\n\
             [cluster]\nhash_prefix = \"{hp}\"\nhash_suffix = \"{hs}\"\nobject_ring = \"{ring}\"\n\
             default_policy = \"replicated\"\n\n\
             # Storage policies: a bucket or container chooses one when it is created.\n\
             [[cluster.policy]]\nindex = 0\nname = \"replicated\"\ntype = \"replicated\"\n\n\
             [[cluster.policy]]\nindex = {UP_EC_INDEX}\nname = \"{UP_EC_NAME}\"\ntype = \"ec\"\n\
             ring = \"{ec_ring}\"\nec_data = {UP_EC_DATA}\nec_parity = {UP_EC_PARITY}\n\n\
             [tls]\nca_cert = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
             [replicator]\ninterval_ms = {UP_REPLICATOR_INTERVAL_MS}\n{devices}",
            id = n + 1,
            hp = new.record.hash_prefix,
            hs = new.record.hash_suffix,
            ring = ring_path.display(),
            ec_ring = ec_ring_path.display(),
            ca = dir.join("ca.pem").display(),
            cert = nd.join("node.pem").display(),
            key = nd.join("node.key").display(),
        );
        std::fs::write(nd.join("node.toml"), toml)?;
    }
    for (builder, path, kinds) in [
        (
            &mut builder,
            &ring_path,
            vec!["object".to_string(), "container".to_string()],
        ),
        (
            &mut ec_builder,
            &ec_ring_path,
            vec![format!("object-{UP_EC_INDEX}")],
        ),
    ] {
        builder.rebalance(RebalanceOptions {
            seed: 1,
            now_minutes: 0,
        })?;
        let ring = PartitionRing::compile(builder)?;
        let bytes = ring.to_bytes()?;
        std::fs::write(path, &bytes)?;
        std::fs::write(path.with_extension("builder"), builder.to_bytes()?)?;
        for kind in kinds {
            cairn_meta::rings::publish_ring(store, &kind, ring.version(), &bytes).await?;
        }
    }
    let state = UpState {
        format: 1,
        admin: new.admin,
        region: opts.region.clone(),
    };
    write_private(&dir.join("up.json"), &serde_json::to_string_pretty(&state)?)?;
    Ok(state)
}

/// Starts (creating on first use) the all-in-one cluster under `opts.data_dir`.
pub async fn start(opts: UpOptions) -> anyhow::Result<UpCluster> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let opts = UpOptions {
        data_dir: dir.clone(),
        ..opts
    };
    let store = AnyMetaStore::open(&MetaConfig::Embedded {
        dir: dir.join("meta"),
    })
    .await
    .context("opening the embedded control-plane store (is another `cairn up` using it?)")?;
    let state_path = dir.join("up.json");
    let state: UpState = if state_path.exists() {
        let text = std::fs::read_to_string(&state_path)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is malformed", state_path.display()))?
    } else {
        info!(dir = %dir.display(), "first start: creating the cluster");
        create(&opts, &store).await?
    };
    let store = Arc::new(store);
    let local = opts.local_calls.then(cairn_net::LocalServers::new);
    let mut nodes = Vec::new();
    let mut node_config = None;
    for n in 0..UP_NODES {
        let path = node_dir(&dir, n).join("node.toml");
        let config = NodeConfig::load(&path)?;
        let node = cairn_node::start_node_with_meta(
            &config,
            crate::node_engine::open_device,
            Some(store.clone()),
            local.clone(),
        )
        .await
        .with_context(|| format!("starting node {} ({})", n + 1, path.display()))?;
        nodes.push(node);
        node_config.get_or_insert(config);
    }
    let config = node_config.context("no nodes")?;
    let rings = cairn_node::node::load_rings(&config).await?;
    let tls = TlsIdentity::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem"))?,
        &NodeCert {
            node_name: "gateway".into(),
            cert_pem: std::fs::read_to_string(dir.join("gateway.pem"))?,
            key_pem: std::fs::read_to_string(dir.join("gateway.key"))?,
        },
    )?;
    let mut transport =
        cairn_net::client(TransportKind::default(), &tls, ClientOptions::default())?;
    if let Some(local) = &local {
        transport = Arc::new(cairn_net::LocalFirstTransport::new(
            local.clone(),
            transport,
            "gateway",
            SocketAddr::new(opts.listen.ip(), 0),
        ));
    }
    let peers = Arc::new(Peers::new(RpcClient::new(transport), rings));
    // Every node of one `cairn up` has the same policies; a data directory from before the
    // erasure-coded policy has replication only.
    let policies = config
        .policies()
        .map_err(|e| anyhow::anyhow!("{}: {e}", node_dir(&dir, 0).join("node.toml").display()))?;
    let client = Arc::new(
        ClusterClient::new(peers.clone(), GATEWAY_NODE_ID).with_policies(policies.clone()),
    );
    let master = cluster::parse_master_key(&std::fs::read_to_string(dir.join("identity.key"))?)?;
    let identity = IdentityStore::new((*store).clone(), master);
    let watch = tokio::spawn(cairn_node::control::run_ring_watch(
        store.clone(),
        peers,
        NodeMetrics::new(),
    ));
    let expirer = tokio::spawn(crate::expirer::run(client.clone(), opts.expirer_interval));
    let holder = format!("cairn-up:{}", std::process::id());
    let block = cairn_block::BlockService::new(client.clone(), (*store).clone(), holder);
    let nbd = crate::nbd_serve::start(
        block.clone(),
        opts.nbd_listen,
        cairn_block::nbd::NbdConfig::default(),
    )
    .await?;
    let gateway = Gateway::start(
        GatewayOptions {
            listen: opts.listen,
            region: state.region.clone(),
            block: Some(block),
            spool_dir: dir.join("spool"),
            tls: if opts.https {
                Some(Arc::new(tls.https_server_config()?))
            } else {
                None
            },
        },
        client,
        identity,
        vec![watch, expirer],
    )
    .await?;
    let scheme = if opts.https { "https" } else { "http" };
    let base = format!("{scheme}://{}", gateway.local_addr());
    let endpoints = Endpoints {
        s3: S3Endpoint {
            endpoint: base.clone(),
            region: state.region.clone(),
            access_key: state.admin.access_key.clone(),
            secret_key: state.admin.secret_key.clone(),
            ca_bundle: opts.https.then(|| dir.join("ca.pem").display().to_string()),
        },
        swift: SwiftEndpoint {
            auth_url: format!("{base}/auth/v1.0"),
            user: format!("{}:{}", state.admin.project_name, state.admin.user_name),
            key: state.admin.password.clone(),
        },
        nbd: Some(format!("nbd://{}", nbd.local_addr)),
        storage_policies: policies
            .iter()
            .map(|p| PolicyEndpoint {
                name: p.name.clone(),
                kind: p.describe(),
                default: p.index == policies.default_policy().index,
            })
            .collect(),
    };
    write_private(
        &dir.join("endpoints.json"),
        &serde_json::to_string_pretty(&endpoints)?,
    )?;
    Ok(UpCluster {
        nodes,
        gateway,
        endpoints,
        nbd,
        policies,
    })
}
