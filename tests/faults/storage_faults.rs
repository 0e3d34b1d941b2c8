//! Fault tests of the replicated object store with real `cairn node` processes on 127.x.y.z,
//! real data directories and real TLS: crashes, stale replicas, corruption, full disks and
//! peers without a cluster certificate. Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cairn_engine::BlobKey;
use cairn_net::{Body, ClusterCa, TlsIdentity};
use cairn_node::peers::{DeviceAddr, RingKind};
use cairn_node::rpc::{NodeRequest, NodeResponse};
use cairn_node::{ClientError, ClusterClient, ObjectPut};
use cairn_ring::PathHasher;
use cairn_tests::{ClusterOptions, HASH_PREFIX, HASH_SUFFIX, TestCluster, client_with, eventually};

const ACCOUNT: &str = "AUTH_test";
const CONTAINER: &str = "c";

/// Deterministic bytes of a given size for object `i`; sizes straddle the engine's small/large
/// blob boundary.
fn payload(i: usize) -> Bytes {
    let size = [1_000, 20_000, 70_000, 300_000, 1_100_000][i % 5] + i;
    let mut out = Vec::with_capacity(size);
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

fn name(i: usize) -> String {
    format!("obj-{i:04}")
}

async fn put(
    client: &ClusterClient,
    object: &str,
    data: Bytes,
) -> Result<cairn_node::Written, ClientError> {
    let put = ObjectPut {
        account: ACCOUNT.into(),
        container: CONTAINER.into(),
        object: object.into(),
        size_bytes: data.len() as u64,
        content_type: "application/octet-stream".into(),
        user_meta: BTreeMap::new(),
        digest: None,
    };
    client.put_object(put, Body::Full(data)).await
}

async fn get(client: &ClusterClient, object: &str) -> Result<Option<Bytes>, ClientError> {
    match client.get_object(ACCOUNT, CONTAINER, object, None).await? {
        Some((_, body)) => Ok(Some(
            body.collect(64 << 20)
                .await
                .map_err(|e| ClientError::Body(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

/// Every live name in the container, read page by page through the cluster client.
async fn list_all(client: &ClusterClient, page: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut marker = None;
    for _ in 0..1_000 {
        let query = cairn_engine::ListQuery {
            marker: marker.clone(),
            limit: page,
            ..Default::default()
        };
        let p = client
            .list_objects(ACCOUNT, CONTAINER, query)
            .await
            .unwrap();
        for item in &p.items {
            names.push(item.marker().to_string());
        }
        if !p.truncated {
            return names;
        }
        marker = p.next_marker.clone().or_else(|| names.last().cloned());
    }
    panic!("listing did not end within 1,000 pages");
}

/// The copy one node's device holds, read directly (bypassing quorums).
async fn device_get(
    cluster: &TestCluster,
    client: &ClusterClient,
    node: usize,
    object: &str,
) -> Option<Bytes> {
    let path = PathHasher::path_of(ACCOUNT, Some(CONTAINER), Some(object));
    let part = cluster
        .ring
        .partition_for(&PathHasher::new(HASH_PREFIX, HASH_SUFFIX), &path);
    let to = DeviceAddr {
        addr: cluster.nodes[node].addr,
        device: "d0".into(),
    };
    let req = NodeRequest::GetBlob {
        device: "d0".into(),
        key: BlobKey::new(part, path),
        range: None,
    };
    match client
        .peers()
        .call(&to, &req, Body::Empty, Duration::from_secs(10), None)
        .await
    {
        Ok((NodeResponse::Blob(Some(_)), body)) => body.collect(64 << 20).await.ok(),
        _ => None,
    }
}

/// Whether every partition's primaries report identical blob and listing digests.
async fn replicas_identical(cluster: &TestCluster, client: &ClusterClient) -> bool {
    digests_identical(cluster, client, false).await
        && digests_identical(cluster, client, true).await
}

async fn digests_identical(cluster: &TestCluster, client: &ClusterClient, listings: bool) -> bool {
    let rings = client.peers().rings();
    for part in 0..cluster.ring.partitions() {
        let mut digests = Vec::new();
        for d in cluster.ring.primary_ids(part) {
            let Some(to) = client.peers().resolve(&rings, RingKind::Object, d) else {
                return false;
            };
            let (device, partition) = (to.device.clone(), part);
            let req = if listings {
                NodeRequest::ListingDigest { device, partition }
            } else {
                NodeRequest::BlobDigest { device, partition }
            };
            match client
                .peers()
                .call(&to, &req, Body::Empty, Duration::from_secs(5), None)
                .await
            {
                Ok((NodeResponse::Digest(b), _)) => digests.push(b),
                _ => return false,
            }
        }
        if digests.windows(2).any(|w| w[0] != w[1]) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_mid_stream() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    let client = std::sync::Arc::new(cluster.client());
    let total = 90;
    let (tx, mut rx) = tokio::sync::mpsc::channel(total);
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            // Four writers at once, so the kill lands while writes are in flight.
            let mut next = 0;
            let mut running = std::collections::VecDeque::new();
            while next < total || !running.is_empty() {
                while next < total && running.len() < 4 {
                    let c = client.clone();
                    let i = next;
                    running.push_back(tokio::spawn(async move {
                        (i, put(&c, &name(i), payload(i)).await)
                    }));
                    next += 1;
                }
                let Some(handle) = running.pop_front() else {
                    break;
                };
                let (i, r) = handle.await.unwrap();
                tx.send((i, r.is_ok())).await.unwrap();
            }
        })
    };
    let mut acked = Vec::new();
    let mut failed = 0;
    while let Some((i, ok)) = rx.recv().await {
        if ok {
            acked.push(i);
        } else {
            failed += 1;
        }
        if acked.len() + failed == 30 {
            cluster.kill(1);
        }
    }
    writer.await.unwrap();
    assert!(
        acked.len() >= total - 8,
        "only {} of {total} writes acknowledged with 2 of 3 nodes up",
        acked.len()
    );
    // Every acknowledged write reads back byte-identical with node 1 down ...
    for &i in &acked {
        assert_eq!(
            get(&client, &name(i)).await.unwrap().as_deref(),
            Some(&payload(i)[..]),
            "object {i} with node 1 down"
        );
    }
    // ... from the survivors' own copies ...
    for &i in &acked {
        let mut held = 0;
        for n in [0, 2] {
            if device_get(&cluster, &client, n, &name(i)).await.as_deref() == Some(&payload(i)[..])
            {
                held += 1;
            }
        }
        assert!(held >= 1, "object {i} is on no survivor");
    }
    // ... and after node 1 returns, the replicator gives it every object.
    cluster.restart(1);
    let complete = eventually(Duration::from_secs(90), async || {
        for &i in &acked {
            if device_get(&cluster, &client, 1, &name(i)).await.as_deref() != Some(&payload(i)[..])
            {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        complete,
        "node 1 did not receive every acknowledged object within 90 s; log:\n{}",
        cluster.log(1)
    );
    for &i in &acked {
        assert_eq!(
            get(&client, &name(i)).await.unwrap().as_deref(),
            Some(&payload(i)[..])
        );
    }
    eprintln!(
        "acked {} of {total}, {failed} failed; node 1 caught up",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_node_converges_by_replication_after_restart() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    let client = cluster.client();
    for i in 0..20 {
        put(&client, &name(i), payload(i)).await.unwrap();
    }
    cluster.kill(2);
    for i in 20..40 {
        put(&client, &name(i), payload(i)).await.unwrap();
    }
    for i in (0..20).step_by(3) {
        client
            .delete_object(ACCOUNT, CONTAINER, &name(i))
            .await
            .unwrap();
    }
    // The listing updates meant for node 2 wait in the survivors' durable queues ...
    let pending = cluster.metric(0, "cairn_node_listing_updates_pending")
        + cluster.metric(1, "cairn_node_listing_updates_pending");
    assert!(
        pending >= 1.0,
        "no listing update was queued while node 2 was down"
    );
    cluster.restart(2);
    let started = std::time::Instant::now();
    let converged = eventually(Duration::from_secs(90), async || {
        replicas_identical(&cluster, &client).await
    })
    .await;
    assert!(
        converged,
        "replicas differ 90 s after restart; log:\n{}",
        cluster.log(2)
    );
    eprintln!(
        "converged {:?} after restart; {pending} listing updates had been queued",
        started.elapsed()
    );
    // ... and are delivered once it is back.
    let drained = eventually(Duration::from_secs(60), async || {
        cluster.metric(0, "cairn_node_listing_updates_pending")
            + cluster.metric(1, "cairn_node_listing_updates_pending")
            == 0.0
    })
    .await;
    assert!(
        drained,
        "queued listing updates were not delivered; node 0 log:\n{}",
        cluster.log(0)
    );
    // The node reports its device in service and its replication as recent.
    let metrics = cluster.metrics(2);
    assert_eq!(cluster.metric(2, "cairn_node_device_up"), 1.0, "{metrics}");
    assert!(
        metrics.contains("cairn_node_replication_lag_seconds{device=\"d0\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_node_rpc_latency_seconds_bucket"),
        "{metrics}"
    );
    let live: Vec<String> = (0..40)
        .filter(|i| !(*i < 20 && i % 3 == 0))
        .map(name)
        .collect();
    assert_eq!(
        list_all(&client, 7).await,
        live,
        "container listing after convergence"
    );
    for i in 0..40 {
        let want = if i < 20 && i % 3 == 0 {
            None
        } else {
            Some(payload(i))
        };
        assert_eq!(
            device_get(&cluster, &client, 2, &name(i)).await,
            want,
            "object {i} on the restarted node"
        );
    }
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
async fn corrupt_copies_are_never_served_and_get_repaired() {
    let opts = ClusterOptions {
        auditor_objects_per_second: 200,
        auditor_pause_ms: 300,
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(opts);
    let client = cluster.client();
    let objects = [0usize, 1, 2, 3, 4, 8];
    for &i in &objects {
        put(&client, &name(i), payload(i)).await.unwrap();
    }
    // Flip bytes in the middle of every data file on node 0.
    let files = data_files(&cluster.nodes[0].devices[0]);
    assert!(
        !files.is_empty(),
        "no data files found under {}",
        cluster.nodes[0].devices[0].display()
    );
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let mid = bytes.len() / 2;
        let end = (mid + 16).min(bytes.len());
        for b in &mut bytes[mid..end] {
            *b ^= 0xA5;
        }
        std::fs::write(f, bytes).unwrap();
    }
    // Reads never return the bad bytes, whichever replica they reach first.
    for _ in 0..5 {
        for &i in &objects {
            assert_eq!(
                get(&client, &name(i)).await.unwrap().as_deref(),
                Some(&payload(i)[..])
            );
        }
    }
    // The auditor (or a read) quarantines the bad copies, the replicator restores them.
    let repaired = eventually(Duration::from_secs(90), async || {
        for &i in &objects {
            if device_get(&cluster, &client, 0, &name(i)).await.as_deref() != Some(&payload(i)[..])
            {
                return false;
            }
        }
        true
    })
    .await;
    let quarantined = cluster.metric(0, "cairn_node_quarantined_objects_total");
    assert!(
        repaired,
        "node 0 copies not repaired in 90 s (quarantined {quarantined}); log:\n{}",
        cluster.log(0)
    );
    assert!(quarantined >= 1.0, "nothing was quarantined on node 0");
    eprintln!(
        "{} data files corrupted, {quarantined} copies quarantined, all repaired",
        files.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_cluster_certificate_gets_nothing() {
    let cluster = TestCluster::start(ClusterOptions {
        replicator_interval_ms: 60_000,
        ..ClusterOptions::default()
    });
    let client = cluster.client();
    put(&client, "secret", Bytes::from_static(b"cluster data"))
        .await
        .unwrap();

    let foreign = ClusterCa::generate("some-other-cluster").unwrap();
    let cert = foreign
        .issue_node("intruder", &["127.0.0.1".parse().unwrap()])
        .unwrap();
    let intruder = client_with(
        TlsIdentity::from_pem(&foreign.cert_pem, &cert).unwrap(),
        cluster.ring.clone(),
    );
    let read = get(&intruder, "secret").await;
    assert!(read.is_err(), "a foreign certificate read: {read:?}");
    let write = put(&intruder, "secret", Bytes::from_static(b"overwritten")).await;
    assert!(write.is_err(), "a foreign certificate wrote: {write:?}");
    let write = put(&intruder, "planted", Bytes::from_static(b"x")).await;
    assert!(write.is_err());
    // Nothing changed.
    assert_eq!(
        get(&client, "secret").await.unwrap().as_deref(),
        Some(&b"cluster data"[..])
    );
    assert_eq!(get(&client, "planted").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_cleanly_and_loses_nothing() {
    // Four nodes, so every partition has a handoff for the full device to fall back on.
    let opts = ClusterOptions {
        nodes: 4,
        small_disk: Some((0, 16)),
        replicator_interval_ms: 60_000,
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(opts);
    let client = cluster.client();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for i in 0..50 {
        // ~1.1 MiB each: ~55 MiB in all, far more than node 0's 16 MiB.
        let i = i * 5 + 4;
        match put(&client, &name(i), payload(i)).await {
            Ok(_) => acked.push(i),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let refused = cluster.metrics(0);
    let full_refusals: f64 = refused
        .lines()
        .filter(|l| {
            l.starts_with("cairn_node_rpc_requests_total")
                && l.contains("put_blob")
                && l.contains("refused")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        full_refusals >= 1.0,
        "node 0 never refused a write; metrics:\n{refused}"
    );
    assert!(
        acked.len() >= 45,
        "only {} of 50 writes acknowledged; errors: {errors:?}",
        acked.len()
    );
    for e in &errors {
        assert!(
            e.contains("disk full") || e.contains("quorum"),
            "unclear error: {e}"
        );
    }
    for &i in &acked {
        assert_eq!(
            get(&client, &name(i)).await.unwrap().as_deref(),
            Some(&payload(i)[..]),
            "object {i}"
        );
    }
    eprintln!(
        "{} acknowledged, {} refused by the full device, errors: {errors:?}",
        acked.len(),
        full_refusals
    );
}

#[test]
fn a_bad_node_config_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "node_id = 1\nlisten = \"127.0.0.1:1\"\nbogus_key = 3\n",
            "bogus_key",
        ),
        ("node_id = \"one\"\n", "node_id"),
        ("not toml at all [", "expected"),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(cairn_tests::cairn_bin())
            .args(["node", "--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted {text:?}");
        assert!(
            stderr.contains(needle) && stderr.contains("node.toml"),
            "for {text:?}: {stderr}"
        );
    }
}

/// A write whose body the client breaks (a bad checksum found at the end, a truncated upload)
/// is refused by the devices, and none of them is taken for down: reads that follow must not
/// be routed to handoffs, whose "not found" would hide objects that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_client_breaks_marks_no_device_down() {
    let cluster = TestCluster::start(ClusterOptions {
        nodes: 5,
        ..ClusterOptions::default()
    });
    let client = cluster.client();
    put(&client, "kept", payload(1)).await.unwrap();
    for i in 0..6 {
        let (mut tx, body) = Body::channel();
        // Broken before any byte, midway, or after every byte (a checksum failing at the end).
        let sent = [0, 300_000, 1_000_000][i % 3];
        tokio::spawn(async move {
            tx.send(Bytes::from(vec![7u8; sent])).await.unwrap();
            tx.abort(cairn_net::NetError::Remote(
                "request body failed verification".into(),
            ))
            .await;
        });
        let put = ObjectPut {
            account: ACCOUNT.into(),
            container: CONTAINER.into(),
            object: format!("broken-{i}"),
            size_bytes: 1_000_000,
            content_type: "application/octet-stream".into(),
            user_meta: BTreeMap::new(),
            digest: None,
        };
        assert!(client.put_object(put, body).await.is_err());
    }
    let rings = client.peers().rings();
    for d in rings.object.devices() {
        let addr = DeviceAddr {
            addr: std::net::SocketAddr::new(d.ip.parse().unwrap(), d.port),
            device: d.device.clone(),
        };
        assert!(
            !client.peers().is_down(&addr),
            "device {} at {} marked down after a client-side body failure",
            d.device,
            addr.addr
        );
    }
    assert_eq!(
        get(&client, "kept").await.unwrap().as_deref(),
        Some(&payload(1)[..])
    );
}
