//! `ecclusterbench`: PUT/GET throughput of large objects on an erasure-coded (4+2) container
//! vs a 3-replica container of the same local cluster, and the bytes each stores per byte
//! written. Six `cairn node` processes on a random 127.x.y.0/24 (TCP + TLS, one device each,
//! replicator, reconstructor and auditor off), driven by an in-process `ClusterClient`. The
//! two policies alternate row by row so drift hits both alike.

// A benchmark's product is its printed report.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use cairn_net::{Body, ClientOptions, ClusterCa, RpcClient, TlsIdentity};
use cairn_node::peers::{Peers, Rings};
use cairn_node::policy::{CONTAINER_POLICY_KEY, Policies, PolicySection, PolicyType};
use cairn_node::{ClusterClient, ObjectPut};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};
use clap::Parser;
use rand::{Rng, RngCore};

const HASH_PREFIX: &str = "bench-prefix";
const HASH_SUFFIX: &str = "bench-suffix";
const ACCOUNT: &str = "AUTH_bench";
const NODES: usize = 6;
const MIB: usize = 1024 * 1024;

#[derive(Debug, Parser)]
struct Args {
    /// The `cairn` binary (built by `cargo build --release -p cairn-gateway`).
    #[arg(long, env = "CAIRN_BIN")]
    cairn_bin: PathBuf,
    /// Where the nodes' data goes (a fresh temp dir inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Object size in MiB.
    #[arg(long, default_value_t = 64)]
    object_mib: usize,
    /// Objects per row.
    #[arg(long, default_value_t = 8)]
    objects: usize,
    /// Concurrent operations per row (each row runs at 1 and at this).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Erasure-code codec of the EC policy.
    #[arg(long, default_value = "rs-erasure-gf8")]
    codec: String,
}

struct Cluster {
    _dir: tempfile::TempDir,
    ca: ClusterCa,
    ring: PartitionRing,
    ec_ring: PartitionRing,
    policies: Policies,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    metrics: Vec<SocketAddr>,
    devices: Vec<PathBuf>,
}

fn free_port(ip: IpAddr) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn ring_over(devices: &[NewDevice], replicas: f64) -> Result<PartitionRing> {
    let mut b = RingBuilder::new(8, replicas, 0)?;
    for d in devices {
        b.add_device(d.clone())?;
    }
    b.rebalance(RebalanceOptions {
        seed: 1,
        now_minutes: 0,
    })?;
    Ok(PartitionRing::compile(&b)?)
}

impl Cluster {
    fn start(bin: &Path, parent: &Path, codec: &str) -> Result<Cluster> {
        ensure!(bin.exists(), "{} not found", bin.display());
        let dir = tempfile::Builder::new()
            .prefix("cairn-ecbench.")
            .tempdir_in(parent)?;
        let mut rng = rand::thread_rng();
        let net = [127u8, rng.gen_range(1..=254), rng.gen_range(1..=254)];
        let ca = ClusterCa::generate("cairn-ecbench")?;
        fs::write(dir.path().join("ca.pem"), &ca.cert_pem)?;
        let mut new_devices = Vec::new();
        let (mut configs, mut logs, mut metrics, mut devices) = (vec![], vec![], vec![], vec![]);
        for n in 0..NODES {
            let ip = IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], u8::try_from(n + 1)?));
            let addr = SocketAddr::new(ip, free_port(ip)?);
            let metrics_addr = SocketAddr::new(ip, free_port(ip)?);
            let node_dir = dir.path().join(format!("node{n}"));
            fs::create_dir_all(&node_dir)?;
            let cert = ca.issue_node(&format!("node-{n}"), &[ip])?;
            fs::write(node_dir.join("node.pem"), &cert.cert_pem)?;
            fs::write(node_dir.join("node.key"), &cert.key_pem)?;
            let device = node_dir.join("d0");
            new_devices.push(NewDevice {
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
            });
            let config = node_dir.join("node.toml");
            fs::write(
                &config,
                format!(
                    "node_id = {id}\nlisten = \"{addr}\"\nmetrics_listen = \"{metrics_addr}\"\n\
                     [cluster]\nhash_prefix = \"{HASH_PREFIX}\"\nhash_suffix = \"{HASH_SUFFIX}\"\nobject_ring = \"../object.ring\"\n\
                     [[cluster.policy]]\nindex = 1\nname = \"ec42\"\ntype = \"ec\"\nring = \"../object-1.ring\"\nec_data = 4\nec_parity = 2\nec_codec = \"{codec}\"\n\
                     [tls]\nca_cert = \"../ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n\
                     [replicator]\nenabled = false\n[auditor]\nenabled = false\n\
                     [[device]]\nname = \"d0\"\npath = \"{}\"\n",
                    device.display(),
                    id = n + 1,
                ),
            )?;
            configs.push(config);
            logs.push(node_dir.join("node.log"));
            metrics.push(metrics_addr);
            devices.push(device);
        }
        let ring = ring_over(&new_devices, 3.0)?;
        let ec_ring = ring_over(&new_devices, 6.0)?;
        fs::write(dir.path().join("object.ring"), ring.to_bytes()?)?;
        fs::write(dir.path().join("object-1.ring"), ec_ring.to_bytes()?)?;
        let policies = Policies::from_sections(
            &[PolicySection {
                index: 1,
                name: "ec42".into(),
                kind: PolicyType::Ec,
                ring: Some(dir.path().join("object-1.ring")),
                ec_data: Some(4),
                ec_parity: Some(2),
                ec_codec: Some(codec.into()),
                segment_bytes: None,
                write_quorum: None,
            }],
            None,
        )
        .map_err(anyhow::Error::msg)?;
        let mut cluster = Cluster {
            _dir: dir,
            ca,
            ring,
            ec_ring,
            policies,
            children: Vec::new(),
            logs,
            metrics,
            devices,
        };
        for (config, log) in configs.iter().zip(cluster.logs.clone()) {
            let log = fs::OpenOptions::new().create(true).append(true).open(log)?;
            let child = Command::new(bin)
                .args(["node", "--config"])
                .arg(config)
                .env("CAIRN_LOG", "warn,cairn_node=info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.children.push(child);
        }
        for i in 0..NODES {
            cluster.wait_ready(i)?;
        }
        Ok(cluster)
    }

    fn wait_ready(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines: Vec<String> = BufReader::new(fs::File::open(&self.logs[i])?)
                .lines()
                .map_while(Result::ok)
                .collect();
            if lines.iter().any(|l| l.contains("cairn-node ready")) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.children[i].try_wait() {
                bail!("node {i} exited with {status}:\n{}", lines.join("\n"));
            }
            ensure!(Instant::now() < deadline, "node {i} not ready in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> Result<ClusterClient> {
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
            policies: BTreeMap::from([(1, self.ec_ring.clone())]),
            hasher: PathHasher::new(HASH_PREFIX, HASH_SUFFIX),
        };
        Ok(
            ClusterClient::new(Arc::new(Peers::new(RpcClient::new(transport), rings)), 999)
                .with_policies(self.policies.clone()),
        )
    }

    /// Blob bytes the nodes received, summed (`cairn_node_blob_bytes_in_total`).
    fn bytes_in(&self) -> f64 {
        self.metrics
            .iter()
            .map(|a| metric(*a, "cairn_node_blob_bytes_in_total"))
            .sum()
    }

    /// Bytes under the device directories.
    fn disk_bytes(&self) -> u64 {
        self.devices.iter().map(|d| du(d)).sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only the processes this benchmark started, by handle.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn du(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `objects` operations, `conc` at a time; returns MiB/s.
async fn run<F, Fut>(objects: usize, conc: usize, object_bytes: usize, op: F) -> Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::StreamExt;
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..objects)
        .map(&op)
        .buffer_unordered(conc)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((objects * object_bytes) as f64 / MIB as f64 / secs)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cluster = Cluster::start(&args.cairn_bin, &args.dir, &args.codec)?;
    let object_bytes = args.object_mib * MIB;
    let mut data = vec![0u8; object_bytes];
    rand::thread_rng().fill_bytes(&mut data);
    let data = Bytes::from(data);
    let client = Arc::new(rt.block_on(async { cluster.client() })?);
    rt.block_on(async {
        client
            .put_container(ACCOUNT, "rep", BTreeMap::new())
            .await?;
        client
            .put_container(
                ACCOUNT,
                "ec42",
                BTreeMap::from([(CONTAINER_POLICY_KEY.to_string(), "1".to_string())]),
            )
            .await?;
        anyhow::Ok(())
    })?;
    println!(
        "| policy | op | concurrency | objects | MiB/s | vs 3-replica |\n|---|---|---|---|---|---|"
    );
    let mut stored = BTreeMap::new();
    for conc in [1, args.concurrency] {
        let mut row: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for container in ["rep", "ec42"] {
            let (in_before, disk_before) = (cluster.bytes_in(), cluster.disk_bytes());
            let put = rt.block_on(run(args.objects, conc, object_bytes, |i| {
                let client = client.clone();
                let data = data.clone();
                async move {
                    client
                        .put_object(
                            ObjectPut {
                                account: ACCOUNT.into(),
                                container: container.into(),
                                object: format!("c{conc}-{i}"),
                                size_bytes: data.len() as u64,
                                content_type: "application/octet-stream".into(),
                                user_meta: BTreeMap::new(),
                                digest: None,
                            },
                            Body::Full(data),
                        )
                        .await?;
                    Ok(())
                }
            }))?;
            let written = (args.objects * object_bytes) as f64;
            stored.insert(
                (container, conc),
                (
                    (cluster.bytes_in() - in_before) / written,
                    (cluster.disk_bytes().saturating_sub(disk_before)) as f64 / written,
                ),
            );
            let get = rt.block_on(run(args.objects, conc, object_bytes, |i| {
                let client = client.clone();
                async move {
                    let object = format!("c{conc}-{i}");
                    let Some((_, body)) =
                        client.get_object(ACCOUNT, container, &object, None).await?
                    else {
                        bail!("{object} not found");
                    };
                    let got = body.collect(object_bytes + 1).await?;
                    ensure!(got.len() == object_bytes, "{object}: short read");
                    Ok(())
                }
            }))?;
            row.insert((container, "PUT"), put);
            row.insert((container, "GET"), get);
        }
        for op in ["PUT", "GET"] {
            for (container, label) in [("rep", "3-replica"), ("ec42", "EC 4+2")] {
                let v = row[&(container, op)];
                let ratio = v / row[&("rep", op)];
                println!(
                    "| {label} | {op} | {conc} | {} × {} MiB | {v:.0} | {ratio:.2} |",
                    args.objects, args.object_mib
                );
            }
        }
    }
    // Degraded: two of the six nodes gone, so every EC object misses two of its six
    // fragments; segments whose missing ones include a data fragment are decoded.
    let mut cluster = cluster;
    for child in cluster.children.iter_mut().take(2) {
        let _ = child.kill();
        let _ = child.wait();
    }
    for conc in [1, args.concurrency] {
        let get = rt.block_on(run(args.objects, conc, object_bytes, |i| {
            let client = client.clone();
            async move {
                let object = format!("c{conc}-{i}");
                let Some((_, body)) = client.get_object(ACCOUNT, "ec42", &object, None).await?
                else {
                    bail!("{object} not found");
                };
                let got = body.collect(object_bytes + 1).await?;
                ensure!(got.len() == object_bytes, "{object}: short read");
                Ok(())
            }
        }))?;
        println!(
            "| EC 4+2, 2 of 6 nodes down | GET | {conc} | {} × {} MiB | {get:.0} | – |",
            args.objects, args.object_mib
        );
    }
    println!(
        "\n| policy | concurrency | blob bytes received per byte written | disk bytes per byte written |\n|---|---|---|---|"
    );
    for ((container, conc), (received, disk)) in &stored {
        println!("| {container} | {conc} | {received:.3} | {disk:.3} |");
    }
    Ok(())
}
