//! A 3-node Cairn cluster as real `cairn node` processes on a random 127.x.y.0/24, set up the
//! way `tests/src/lib.rs` (`TestCluster`) does it — copied here because that harness finds the
//! binary relative to a test executable and panics instead of returning errors — with the
//! replicator and auditor switched off (the Swift peer runs no background daemons either).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use cairn_net::{Body, ClientOptions, ClusterCa, RpcClient, TlsIdentity};
use cairn_node::peers::{Peers, Rings};
use cairn_node::{ClusterClient, ObjectPut};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};
use rand::Rng;

use crate::measure::{Load, Sample, run_async};

const HASH_PREFIX: &str = "bench-prefix";
const HASH_SUFFIX: &str = "bench-suffix";
const ACCOUNT: &str = "AUTH_bench";
const CONTAINER: &str = "objects";

/// The running node processes (killed on drop) and what a client needs to reach them.
#[derive(Debug)]
pub struct Cluster {
    _dir: tempfile::TempDir,
    ca: ClusterCa,
    ring: PartitionRing,
    children: Vec<Child>,
    pub logs: Vec<PathBuf>,
}

fn free_port(ip: IpAddr) -> Result<u16> {
    // Free for both TCP and UDP, whichever transport the nodes speak.
    for _ in 0..100 {
        let tcp = TcpListener::bind((ip, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on {ip}")
}

impl Cluster {
    /// Starts `nodes` nodes with one device each (under `parent`), 3 replicas, and waits until
    /// every one serves.
    pub fn start(cairn_bin: &Path, parent: &Path, nodes: usize, part_power: u8) -> Result<Self> {
        ensure!(
            cairn_bin.exists(),
            "{} not found: build it with `cargo build --release -p cairn-gateway` (run.sh does)",
            cairn_bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("cairn-bench-cluster.")
            .tempdir_in(parent)?;
        let mut rng = rand::thread_rng();
        let net = [127u8, rng.gen_range(1..=254), rng.gen_range(1..=254)];
        let ca = ClusterCa::generate("cairn-bench")?;
        fs::write(dir.path().join("ca.pem"), &ca.cert_pem)?;
        let mut builder = RingBuilder::new(part_power, 3.0, 0)?;
        let mut configs = Vec::new();
        let mut logs = Vec::new();
        for n in 0..nodes {
            let ip = IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], u8::try_from(n + 1)?));
            let addr = SocketAddr::new(ip, free_port(ip)?);
            let metrics = SocketAddr::new(ip, free_port(ip)?);
            let node_dir = dir.path().join(format!("node{n}"));
            fs::create_dir_all(&node_dir)?;
            let cert = ca.issue_node(&format!("node-{n}"), &[ip])?;
            fs::write(node_dir.join("node.pem"), &cert.cert_pem)?;
            fs::write(node_dir.join("node.key"), &cert.key_pem)?;
            let device = node_dir.join("d0");
            builder.add_device(NewDevice {
                id: None,
                region: 1,
                zone: u32::try_from(n + 1)?,
                ip: ip.to_string(),
                port: addr.port(),
                replication_ip: None,
                replication_port: None,
                device: "d0".into(),
                weight: 100.0,
                meta: String::new(),
            })?;
            let config = node_dir.join("node.toml");
            let toml = format!(
                "node_id = {id}\nlisten = \"{addr}\"\nmetrics_listen = \"{metrics}\"\n\
                 [cluster]\nhash_prefix = \"{HASH_PREFIX}\"\nhash_suffix = \"{HASH_SUFFIX}\"\nobject_ring = \"../object.ring\"\n\
                 [tls]\nca_cert = \"../ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n\
                 [replicator]\nenabled = false\n\
                 [auditor]\nenabled = false\n\
                 [[device]]\nname = \"d0\"\npath = \"{}\"\n",
                device.display(),
                id = n + 1,
            );
            fs::write(&config, toml)?;
            configs.push(config);
            logs.push(node_dir.join("node.log"));
        }
        builder.rebalance(RebalanceOptions {
            seed: 1,
            now_minutes: 0,
        })?;
        let ring = PartitionRing::compile(&builder)?;
        fs::write(dir.path().join("object.ring"), ring.to_bytes()?)?;
        let mut cluster = Cluster {
            _dir: dir,
            ca,
            ring,
            children: Vec::new(),
            logs,
        };
        for (config, log) in configs.iter().zip(&cluster.logs) {
            let log = fs::OpenOptions::new().create(true).append(true).open(log)?;
            let child = Command::new(cairn_bin)
                .args(["node", "--config"])
                .arg(config)
                .env(
                    "CAIRN_LOG",
                    std::env::var("CAIRN_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", cairn_bin.display()))?;
            cluster.children.push(child);
        }
        for i in 0..cluster.children.len() {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }

    /// Waits (at most 30 s) until node `i` logged that it serves.
    fn wait_ready(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let f = fs::File::open(&self.logs[i])?;
            let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
            if lines.iter().any(|l| l.contains("cairn-node ready")) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.children[i].try_wait() {
                bail!(
                    "node {i} exited with {status} before serving; log:\n{}",
                    lines.join("\n")
                );
            }
            ensure!(
                Instant::now() < deadline,
                "node {i} not ready within 30 s; log:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A cluster client (default transport, TCP + TLS) with a certificate from the cluster CA.
    /// Must be called inside the tokio runtime.
    pub fn client(&self) -> Result<ClusterClient> {
        let cert = self
            .ca
            .issue_node("bench-client", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])?;
        let identity = TlsIdentity::from_pem(&self.ca.cert_pem, &cert)?;
        let transport = cairn_net::client(
            cairn_net::TransportKind::default(),
            &identity,
            ClientOptions::default(),
        )?;
        let rings = Rings {
            object: self.ring.clone(),
            container: self.ring.clone(),
            account: self.ring.clone(),
            policies: Default::default(),
            hasher: PathHasher::new(HASH_PREFIX, HASH_SUFFIX),
        };
        Ok(ClusterClient::new(
            Arc::new(Peers::new(RpcClient::new(transport), rings)),
            999,
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only the processes this benchmark started, by handle.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn object_name(tag: &str, i: usize) -> String {
    format!("{tag}/obj-{i:08}")
}

/// PUT `ops` objects of `data` through the cluster client.
pub async fn put(
    client: &Arc<ClusterClient>,
    tag: &str,
    load: Load,
    data: Bytes,
) -> Result<Sample> {
    let client = client.clone();
    let tag = tag.to_owned();
    let len = data.len();
    run_async(load.ops, load.conc, len, load.limit, move |_, i| {
        let client = client.clone();
        let data = data.clone();
        let object = object_name(&tag, i);
        async move {
            client
                .put_object(
                    ObjectPut {
                        account: ACCOUNT.into(),
                        container: CONTAINER.into(),
                        object,
                        size_bytes: u64::try_from(data.len())?,
                        content_type: "application/octet-stream".into(),
                        user_meta: BTreeMap::new(),
                        digest: None,
                    },
                    Body::Full(data),
                )
                .await?;
            Ok(())
        }
    })
    .await
}

/// GET (whole body) the objects a `put` with the same `tag` wrote.
pub async fn get(client: &Arc<ClusterClient>, tag: &str, load: Load, len: usize) -> Result<Sample> {
    let client = client.clone();
    let tag = tag.to_owned();
    run_async(load.ops, load.conc, len, load.limit, move |_, i| {
        let client = client.clone();
        let object = object_name(&tag, i);
        async move {
            let Some((_meta, body)) = client.get_object(ACCOUNT, CONTAINER, &object, None).await?
            else {
                bail!("{object} not found");
            };
            let got = body.collect(len + 1).await?;
            ensure!(
                got.len() == len,
                "{object}: read {} of {len} bytes",
                got.len()
            );
            Ok(())
        }
    })
    .await
}
