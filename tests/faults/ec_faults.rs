//! Fault tests of the erasure-coded policy (4+2) with real `cairn node` processes, real data
//! directories and TLS: m nodes killed under reads and writes, a wiped disk and corrupted
//! data files rebuilt by the reconstructor. Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_engine::{BlobKey, Timestamp};
use cairn_net::Body;
use cairn_node::peers::DeviceAddr;
use cairn_node::policy::{CONTAINER_POLICY_KEY, stored_partition};
use cairn_node::rpc::{NodeRequest, NodeResponse};
use cairn_node::{ClusterClient, ObjectPut};
use cairn_ring::PathHasher;
use cairn_tests::{ClusterOptions, HASH_PREFIX, HASH_SUFFIX, TestCluster, eventually};

const ACCOUNT: &str = "AUTH_ec";
const CONTAINER: &str = "ec";
const SEGMENT: u64 = 256 * 1024;
const K: usize = 4;
const M: usize = 2;

fn options() -> ClusterOptions {
    ClusterOptions {
        nodes: 8,
        part_power: 4,
        ec: Some((K, M, SEGMENT)),
        auditor_objects_per_second: 200,
        auditor_pause_ms: 300,
        ..ClusterOptions::default()
    }
}

/// Sizes around the segment boundary and several segments long.
const SIZES: [usize; 7] = [0, 1, 100_000, 262_144, 262_145, 1_500_000, 3_000_001];

fn payload(i: usize, size: usize) -> Bytes {
    let mut out = Vec::with_capacity(size + 8);
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

async fn put(client: &ClusterClient, object: &str, data: Bytes) -> Timestamp {
    let put = ObjectPut {
        account: ACCOUNT.into(),
        container: CONTAINER.into(),
        object: object.into(),
        size_bytes: data.len() as u64,
        content_type: "application/octet-stream".into(),
        user_meta: BTreeMap::new(),
        digest: None,
    };
    client
        .put_object(put, Body::Full(data))
        .await
        .unwrap()
        .timestamp
}

async fn get(client: &ClusterClient, object: &str, range: Option<(u64, u64)>) -> Bytes {
    let (_, body) = client
        .get_object(ACCOUNT, CONTAINER, object, range)
        .await
        .unwrap_or_else(|e| panic!("GET {object}: {e}"))
        .unwrap_or_else(|| panic!("GET {object}: not found"));
    body.collect(64 << 20)
        .await
        .unwrap_or_else(|e| panic!("GET {object} body: {e}"))
}

/// The nodes holding an object's fragments, slot by slot (node n is device n).
fn holders(cluster: &TestCluster, object: &str) -> (BlobKey, Vec<usize>) {
    let ring = cluster.ec_ring.as_ref().unwrap();
    let path = PathHasher::path_of(ACCOUNT, Some(CONTAINER), Some(object));
    let part = ring.partition_for(&PathHasher::new(HASH_PREFIX, HASH_SUFFIX), &path);
    let nodes = ring
        .primaries(part)
        .map(|d| {
            cluster
                .nodes
                .iter()
                .position(|n| n.addr.port() == d.port && n.addr.ip().to_string() == d.ip)
                .unwrap()
        })
        .collect();
    (BlobKey::new(stored_partition(1, part), path), nodes)
}

/// Whether node `n` holds fragment archive `slot` of exactly version `ts`, readable whole.
async fn holds(
    cluster: &TestCluster,
    client: &ClusterClient,
    n: usize,
    key: &BlobKey,
    slot: usize,
    ts: Timestamp,
) -> bool {
    let to = DeviceAddr {
        addr: cluster.nodes[n].addr,
        device: "d0".into(),
    };
    let req = NodeRequest::GetBlob {
        device: "d0".into(),
        key: key.clone(),
        range: None,
    };
    match client
        .peers()
        .call(&to, &req, Body::Empty, Duration::from_secs(10), None)
        .await
    {
        Ok((NodeResponse::Blob(Some(m)), body)) => {
            m.timestamp == ts
                && m.user_meta.get("sys-ec-index") == Some(&slot.to_string())
                && body.collect(64 << 20).await.is_ok()
        }
        _ => false,
    }
}

/// Whether every object's k+m primaries hold their fragment of the newest version.
async fn fully_redundant(
    cluster: &TestCluster,
    client: &ClusterClient,
    written: &BTreeMap<String, Timestamp>,
) -> bool {
    for (name, &ts) in written {
        let (key, nodes) = holders(cluster, name);
        for (slot, &n) in nodes.iter().enumerate() {
            if !holds(cluster, client, n, &key, slot, ts).await {
                return false;
            }
        }
    }
    true
}

async fn setup(cluster: &TestCluster, client: &ClusterClient) -> BTreeMap<String, Timestamp> {
    client
        .put_container(
            ACCOUNT,
            CONTAINER,
            BTreeMap::from([(CONTAINER_POLICY_KEY.to_string(), "1".to_string())]),
        )
        .await
        .unwrap();
    let mut written = BTreeMap::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let name = format!("o{i}");
        written.insert(name.clone(), put(client, &name, payload(i, size)).await);
    }
    assert!(
        fully_redundant(cluster, client, &written).await,
        "a fresh write left some primary without its fragment"
    );
    written
}

async fn check_all(client: &ClusterClient, objects: &BTreeMap<String, Bytes>) {
    for (name, bytes) in objects {
        assert_eq!(&get(client, name, None).await, bytes, "{name}");
        let len = bytes.len() as u64;
        let (a, b) = (len / 3, (len / 3 + 300_000).min(len));
        assert_eq!(
            get(client, name, Some((a, b))).await,
            bytes.slice(a as usize..b as usize),
            "{name} [{a}, {b})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_m_killed_nodes_and_a_wiped_disk_is_rebuilt() {
    let mut cluster = TestCluster::start(options());
    let client = cluster.client();
    let mut written = setup(&cluster, &client).await;
    let mut objects: BTreeMap<String, Bytes> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("o{i}"), payload(i, s)))
        .collect();
    // Kill -9 two nodes holding data fragments of the largest object.
    let (_, big) = holders(&cluster, "o6");
    let (a, b) = (big[0], big[1]);
    cluster.kill(a);
    cluster.kill(b);
    check_all(&client, &objects).await;
    // Writes go on with m nodes down (handoffs take the missing slots).
    for i in 7..9 {
        let name = format!("o{i}");
        let bytes = payload(i, 700_000 + i);
        written.insert(name.clone(), put(&client, &name, bytes.clone()).await);
        objects.insert(name, bytes);
    }
    check_all(&client, &objects).await;
    cluster.restart(a);
    cluster.restart(b);

    // A disk is lost: kill a node holding a fragment of o6, wipe its device, start it empty.
    let wiped = big[2];
    cluster.kill(wiped);
    let device = cluster.nodes[wiped].devices[0].clone();
    std::fs::remove_dir_all(&device).unwrap();
    std::fs::create_dir_all(&device).unwrap();
    cluster.restart(wiped);
    let started = Instant::now();
    let restored = eventually(Duration::from_secs(120), async || {
        fully_redundant(&cluster, &client, &written).await
    })
    .await;
    assert!(
        restored,
        "full redundancy not restored in 120 s; wiped node log:\n{}",
        cluster.log(wiped)
    );
    let took = started.elapsed();
    let rebuilt: f64 = (0..cluster.nodes.len())
        .map(|n| cluster.metric(n, "cairn_node_ec_fragments_rebuilt_total"))
        .sum();
    let reverted: f64 = (0..cluster.nodes.len())
        .map(|n| cluster.metric(n, "cairn_node_ec_fragments_reverted_total"))
        .sum();
    eprintln!(
        "full redundancy after {took:?}: {rebuilt} fragments rebuilt, {reverted} handoff archives reverted"
    );
    assert!(rebuilt >= 1.0 && reverted >= 1.0);
    // With redundancy back, any two other fragment nodes may go: reads still need the
    // rebuilt fragments of the wiped node for some objects.
    let others: Vec<usize> = big
        .iter()
        .copied()
        .filter(|&n| n != wiped)
        .take(2)
        .collect();
    for &n in &others {
        cluster.kill(n);
    }
    check_all(&client, &objects).await;
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["segments", "blobs"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_file() && e.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_fragments_are_never_served_and_get_rebuilt() {
    let cluster = TestCluster::start(options());
    let client = cluster.client();
    let written = setup(&cluster, &client).await;
    let objects: BTreeMap<String, Bytes> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("o{i}"), payload(i, s)))
        .collect();
    // Flip bytes in every data file of two nodes holding data fragments of the largest object.
    let (_, big) = holders(&cluster, "o6");
    let mut corrupted = 0;
    for &n in &big[..M] {
        for f in data_files(&cluster.nodes[n].devices[0]) {
            let mut bytes = std::fs::read(&f).unwrap();
            let mid = bytes.len() / 2;
            let end = (mid + 16).min(bytes.len());
            for b in &mut bytes[mid..end] {
                *b ^= 0x5A;
            }
            std::fs::write(&f, bytes).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "no data files found to corrupt");
    for _ in 0..3 {
        check_all(&client, &objects).await;
    }
    let started = Instant::now();
    let restored = eventually(Duration::from_secs(120), async || {
        fully_redundant(&cluster, &client, &written).await
    })
    .await;
    assert!(
        restored,
        "corrupt fragments not rebuilt in 120 s; log:\n{}",
        cluster.log(big[0])
    );
    let quarantined: f64 = big[..M]
        .iter()
        .map(|&n| cluster.metric(n, "cairn_node_quarantined_objects_total"))
        .sum();
    eprintln!(
        "{corrupted} data files corrupted, {quarantined} archives quarantined, rebuilt after {:?}",
        started.elapsed()
    );
    assert!(quarantined >= 1.0);
}

/// Whether some live node other than the primaries holds fragment `slot` of `ts`.
async fn on_a_handoff(
    cluster: &TestCluster,
    client: &ClusterClient,
    key: &BlobKey,
    primaries: &[usize],
    slot: usize,
    ts: Timestamp,
) -> bool {
    for n in (0..cluster.nodes.len()).filter(|n| !primaries.contains(n)) {
        if cluster.nodes[n].is_running() && holds(cluster, client, n, key, slot, ts).await {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_fragments_are_rebuilt_on_handoffs_and_m_more_losses_are_survived() {
    let mut cluster = TestCluster::start(options());
    let client = cluster.client();
    let written = setup(&cluster, &client).await;
    let objects: BTreeMap<String, Bytes> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("o{i}"), payload(i, s)))
        .collect();
    let (_, big) = holders(&cluster, "o6");
    let dead = big[0];
    cluster.kill(dead);
    let started = Instant::now();
    let restored = eventually(Duration::from_secs(120), async || {
        for (name, &ts) in &written {
            let (key, nodes) = holders(&cluster, name);
            for (slot, &n) in nodes.iter().enumerate() {
                let ok = if n == dead {
                    on_a_handoff(&cluster, &client, &key, &nodes, slot, ts).await
                } else {
                    holds(&cluster, &client, n, &key, slot, ts).await
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(
        restored,
        "the dead node's fragments were not rebuilt on handoffs in 120 s; log of node {}:\n{}",
        big[1],
        cluster.log(big[1])
    );
    eprintln!(
        "the dead node's fragments stood in on handoffs after {:?}",
        started.elapsed()
    );
    // m more fragment nodes of the largest object go: 3 of its 6 primaries are down now.
    cluster.kill(big[1]);
    cluster.kill(big[2]);
    check_all(&client, &objects).await;
}
