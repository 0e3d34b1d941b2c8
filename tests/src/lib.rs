//! Test harness: real `cairn node` processes on their own loopback addresses, with their own
//! data directories, a cluster CA, a ring, and an in-process cluster client to drive them.
//!
//! Every cluster picks a random 127.x.y.0/24 so tests running in parallel never share an
//! address; ports are picked free on that address. Processes are killed when the cluster drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

pub mod up;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_net::{ClientOptions, ClusterCa, RpcClient, TlsIdentity};
use cairn_node::ClusterClient;
use cairn_node::peers::{Peers, Rings};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};
use rand::Rng;

pub const HASH_PREFIX: &str = "test-prefix";
pub const HASH_SUFFIX: &str = "test-suffix";

/// The `cairn` binary built alongside the tests (target/<profile>/cairn).
pub fn cairn_bin() -> PathBuf {
    workspace_bin("cairn")
}

/// A binary of the workspace built alongside the tests (target/<profile>/<name>).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built: run through `cargo nextest run --workspace` (or `cargo build -p cairn-gateway`)",
        bin.display()
    );
    bin
}

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub devices_per_node: usize,
    pub part_power: u8,
    pub replicator_interval_ms: u64,
    pub auditor_objects_per_second: u32,
    pub auditor_pause_ms: u64,
    /// Extra TOML appended to every node config.
    pub extra_config: String,
    /// Mount a tmpfs of this many MiB on node `.0`'s first device (a disk that fills up).
    pub small_disk: Option<(usize, u64)>,
    /// An erasure-coded policy `ec` (index 1) with k data and m parity fragments and this
    /// segment size, over a ring of k+m replicas on the same devices.
    pub ec: Option<(usize, usize, u64)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            devices_per_node: 1,
            part_power: 6,
            replicator_interval_ms: 500,
            auditor_objects_per_second: 1_000,
            auditor_pause_ms: 500,
            extra_config: String::new(),
            small_disk: None,
            ec: None,
        }
    }
}

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    pub devices: Vec<PathBuf>,
    pub metrics: SocketAddr,
    child: Option<Child>,
}

impl NodeProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running multi-process cluster.
#[derive(Debug)]
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ca: ClusterCa,
    pub nodes: Vec<NodeProc>,
    pub ring: PartitionRing,
    pub ring_path: PathBuf,
    /// The builder the ring was compiled from, for tests that publish a newer ring.
    pub builder: RingBuilder,
    /// The erasure-coded policy's ring and policies, with [`ClusterOptions::ec`].
    pub ec_ring: Option<PartitionRing>,
    pub policies: cairn_node::policy::Policies,
    mounts: Vec<PathBuf>,
}

fn free_port(ip: IpAddr) -> u16 {
    // Free for both TCP and UDP, whichever transport the nodes speak.
    for _ in 0..100 {
        let tcp = TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

impl TestCluster {
    pub fn start(opts: ClusterOptions) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::thread_rng();
        let net = [127u8, rng.gen_range(1..=254), rng.gen_range(1..=254)];
        let ca = ClusterCa::generate("cairn-test").unwrap();
        fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        let mut builder = RingBuilder::new(opts.part_power, 3.0, 0).unwrap();
        let mut nodes = Vec::new();
        let policy_toml = match opts.ec {
            Some((k, m, segment)) => format!(
                "[[cluster.policy]]\nindex = 1\nname = \"ec\"\ntype = \"ec\"\nring = \"../object-1.ring\"\n\
                 ec_data = {k}\nec_parity = {m}\nsegment_bytes = {segment}\n"
            ),
            None => String::new(),
        };
        for n in 0..opts.nodes {
            let ip = IpAddr::V4(Ipv4Addr::new(
                net[0],
                net[1],
                net[2],
                u8::try_from(n + 1).unwrap(),
            ));
            let addr = SocketAddr::new(ip, free_port(ip));
            let metrics = SocketAddr::new(ip, free_port(ip));
            let node_dir = dir.path().join(format!("node{n}"));
            fs::create_dir_all(&node_dir).unwrap();
            let cert = ca.issue_node(&format!("node-{n}"), &[ip]).unwrap();
            fs::write(node_dir.join("node.pem"), &cert.cert_pem).unwrap();
            fs::write(node_dir.join("node.key"), &cert.key_pem).unwrap();
            let mut devices = Vec::new();
            let mut device_toml = String::new();
            for d in 0..opts.devices_per_node {
                let path = node_dir.join(format!("d{d}"));
                device_toml += &format!(
                    "[[device]]\nname = \"d{d}\"\npath = \"{}\"\n",
                    path.display()
                );
                devices.push(path);
                builder
                    .add_device(NewDevice {
                        id: None,
                        region: 1,
                        zone: u32::try_from(n + 1).unwrap(),
                        ip: ip.to_string(),
                        port: addr.port(),
                        replication_ip: None,
                        replication_port: None,
                        device: format!("d{d}"),
                        weight: 100.0,
                        meta: String::new(),
                    })
                    .unwrap();
            }
            let config = node_dir.join("node.toml");
            let toml = format!(
                "node_id = {id}\nlisten = \"{addr}\"\nmetrics_listen = \"{metrics}\"\n{extra}\n\
                 [cluster]\nhash_prefix = \"{HASH_PREFIX}\"\nhash_suffix = \"{HASH_SUFFIX}\"\nobject_ring = \"../object.ring\"\n{policy}\
                 [tls]\nca_cert = \"../ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n\
                 [replicator]\ninterval_ms = {ri}\n\
                 [auditor]\nobjects_per_second = {ar}\npause_ms = {ap}\n\
                 {device_toml}",
                id = n + 1,
                policy = policy_toml,
                extra = opts.extra_config,
                ri = opts.replicator_interval_ms,
                ar = opts.auditor_objects_per_second,
                ap = opts.auditor_pause_ms,
            );
            fs::write(&config, toml).unwrap();
            nodes.push(NodeProc {
                addr,
                config,
                log: node_dir.join("node.log"),
                devices,
                metrics,
                child: None,
            });
        }
        builder
            .rebalance(RebalanceOptions {
                seed: 1,
                now_minutes: 0,
            })
            .unwrap();
        let ring = PartitionRing::compile(&builder).unwrap();
        let ring_path = dir.path().join("object.ring");
        fs::write(&ring_path, ring.to_bytes().unwrap()).unwrap();
        let ec_ring = opts.ec.map(|(k, m, _)| {
            let mut ec = RingBuilder::new(opts.part_power, (k + m) as f64, 0).unwrap();
            for d in builder.devices() {
                ec.add_device(NewDevice {
                    id: None,
                    region: d.region,
                    zone: d.zone,
                    ip: d.ip.clone(),
                    port: d.port,
                    replication_ip: None,
                    replication_port: None,
                    device: d.device.clone(),
                    weight: d.weight,
                    meta: String::new(),
                })
                .unwrap();
            }
            ec.rebalance(RebalanceOptions {
                seed: 2,
                now_minutes: 0,
            })
            .unwrap();
            let ring = PartitionRing::compile(&ec).unwrap();
            fs::write(dir.path().join("object-1.ring"), ring.to_bytes().unwrap()).unwrap();
            ring
        });
        let policies = match opts.ec {
            Some((k, m, segment)) => cairn_node::policy::Policies::from_sections(
                &[cairn_node::policy::PolicySection {
                    index: 1,
                    name: "ec".into(),
                    kind: cairn_node::policy::PolicyType::Ec,
                    ring: Some(dir.path().join("object-1.ring")),
                    ec_data: Some(k),
                    ec_parity: Some(m),
                    ec_codec: None,
                    segment_bytes: Some(segment),
                    write_quorum: None,
                }],
                None,
            )
            .unwrap(),
            None => cairn_node::policy::Policies::default(),
        };
        let mut cluster = TestCluster {
            dir,
            ca,
            nodes,
            ring,
            ring_path,
            builder,
            ec_ring,
            policies,
            mounts: Vec::new(),
        };
        if let Some((node, mib)) = opts.small_disk {
            let path = cluster.nodes[node].devices[0].clone();
            fs::create_dir_all(&path).unwrap();
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "mounting a {mib} MiB tmpfs on {} failed (tests run as root)",
                path.display()
            );
            cluster.mounts.push(path);
        }
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(cairn_bin())
            .args(["node", "--config"])
            .arg(&node.config)
            .env(
                "CAIRN_LOG",
                std::env::var("CAIRN_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// Waits (bounded) until the node logged that it serves.
    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let node = &mut self.nodes[i];
        loop {
            // `restart` renames earlier starts' marker, so any marker here is this start's.
            let log = fs::read_to_string(&node.log).unwrap_or_default();
            if log.contains("cairn-node ready") {
                return;
            }
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("node {i} exited with {status} before serving; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "node {i} not ready within 30 s; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of a running node.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash: nothing in the process gets to run.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts a stopped node again on the same address and data.
    pub fn restart(&mut self, i: usize) {
        // A fresh log marker so `wait_ready` finds this start's line, not the last one.
        let before = fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        fs::write(
            &self.nodes[i].log,
            before.replace("cairn-node ready", "cairn-node was ready"),
        )
        .unwrap();
        self.spawn(i);
        self.wait_ready(i);
    }

    /// A client with a certificate from this cluster's CA.
    pub fn client(&self) -> ClusterClient {
        let cert = self
            .ca
            .issue_node("test-client", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let identity = TlsIdentity::from_pem(&self.ca.cert_pem, &cert).unwrap();
        let transport = cairn_net::client(
            cairn_net::TransportKind::default(),
            &identity,
            ClientOptions::default(),
        )
        .unwrap();
        let rings = Rings {
            object: self.ring.clone(),
            container: self.ring.clone(),
            account: self.ring.clone(),
            policies: self.ec_ring.iter().map(|r| (1u16, r.clone())).collect(),
            hasher: PathHasher::new(HASH_PREFIX, HASH_SUFFIX),
        };
        ClusterClient::new(Arc::new(Peers::new(RpcClient::new(transport), rings)), 999)
            .with_policies(self.policies.clone())
    }

    /// The log of a node (for assertion messages).
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// GET of a node's `/metrics`.
    pub fn metrics(&self, i: usize) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&self.nodes[i].metrics, Duration::from_secs(2))
        else {
            return String::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// A metric's value on a node (summed over label sets), 0 if absent.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        self.metrics(i)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// A cluster client over the default transport with the given identity.
pub fn client_with(identity: TlsIdentity, ring: PartitionRing) -> ClusterClient {
    let transport = cairn_net::client(
        cairn_net::TransportKind::default(),
        &identity,
        ClientOptions::default(),
    )
    .unwrap();
    let rings = Rings {
        object: ring.clone(),
        container: ring.clone(),
        account: ring,
        policies: Default::default(),
        hasher: PathHasher::new(HASH_PREFIX, HASH_SUFFIX),
    };
    ClusterClient::new(Arc::new(Peers::new(RpcClient::new(transport), rings)), 999)
}

/// Polls `check` every 100 ms until it returns true or `limit` passes; returns whether it did.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real single-member etcd for a test (see `cairn_meta::testing`), killed when dropped.
pub use cairn_meta::testing::EtcdProcess;

/// The TOML a node config needs to use `etcd` (heartbeat TTL short, for tests).
pub fn etcd_node_config(etcd: &EtcdProcess) -> String {
    format!(
        "heartbeat_ttl_s = 3\n[meta]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\n",
        etcd.url
    )
}
