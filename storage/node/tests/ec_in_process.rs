//! Erasure-coded objects end to end in one process: real services and cluster client over
//! `cairn-net`'s test network with in-memory engines, an EC 4+2 policy on 8 nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::{BlobKey, BlobReader, ListItem, ListQuery, MemoryEngine, StorageEngine};
use cairn_net::{Body, RpcClient, TestNetwork};
use cairn_node::listing_updates::ListingUpdater;
use cairn_node::metrics::NodeMetrics;
use cairn_node::peers::{Peers, Rings};
use cairn_node::policy::{CONTAINER_POLICY_KEY, Policies, PolicySection, PolicyType};
use cairn_node::reconstructor::Reconstructor;
use cairn_node::service::{DeviceSet, NodeService};
use cairn_node::{ClientError, ClusterClient, ObjectPut};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};

const NODES: usize = 8;
const SEGMENT: u64 = 4096;

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, u8::try_from(n + 1).unwrap()], 6000))
}

fn ring(replicas: f64) -> PartitionRing {
    let mut b = RingBuilder::new(4, replicas, 0).unwrap();
    for n in 0..NODES {
        b.add_device(NewDevice {
            id: None,
            region: 1,
            zone: u32::try_from(n + 1).unwrap(),
            ip: addr(n).ip().to_string(),
            port: 6000,
            replication_ip: None,
            replication_port: None,
            device: "d0".into(),
            weight: 1.0,
            meta: String::new(),
        })
        .unwrap();
    }
    b.rebalance(RebalanceOptions {
        seed: 5,
        now_minutes: 0,
    })
    .unwrap();
    PartitionRing::compile(&b).unwrap()
}

fn rings() -> Rings {
    let replicated = ring(3.0);
    Rings {
        object: replicated.clone(),
        container: replicated.clone(),
        account: replicated,
        policies: BTreeMap::from([(1, ring(6.0))]),
        hasher: PathHasher::new("p", "s"),
    }
}

fn policies() -> Policies {
    Policies::from_sections(
        &[PolicySection {
            index: 1,
            name: "ec42".into(),
            kind: PolicyType::Ec,
            ring: Some("unused".into()),
            ec_data: Some(4),
            ec_parity: Some(2),
            ec_codec: None,
            segment_bytes: Some(SEGMENT),
            write_quorum: None,
        }],
        None,
    )
    .unwrap()
}

struct Cluster {
    net: TestNetwork,
    services: Vec<NodeService<MemoryEngine>>,
    engines: Vec<Arc<MemoryEngine>>,
    reconstructors: Vec<Reconstructor<MemoryEngine>>,
}

fn cluster(seed: u64) -> Cluster {
    let net = TestNetwork::new(seed);
    let mut services = Vec::new();
    let mut engines = Vec::new();
    let mut reconstructors = Vec::new();
    for n in 0..NODES {
        let engine = Arc::new(MemoryEngine::new());
        engines.push(engine.clone());
        let devices = Arc::new(DeviceSet::new(BTreeMap::from([(
            "d0".to_string(),
            engine.clone(),
        )])));
        let transport = Arc::new(net.transport(addr(n), &format!("node-{n}")));
        let peers = Arc::new(Peers::new(RpcClient::new(transport), rings()));
        let metrics = NodeMetrics::new();
        let listing = Arc::new(ListingUpdater::new(
            devices.clone(),
            peers.clone(),
            metrics.clone(),
        ));
        let service = NodeService::new(devices, listing, metrics.clone());
        net.register(addr(n), &format!("node-{n}"), service.clone());
        services.push(service);
        reconstructors.push(Reconstructor::new(
            "d0".into(),
            engine,
            addr(n),
            peers,
            Arc::new(policies()),
            metrics,
        ));
    }
    Cluster {
        net,
        services,
        engines,
        reconstructors,
    }
}

fn client(net: &TestNetwork) -> ClusterClient {
    let from = SocketAddr::from(([127, 0, 1, 100], 1));
    let transport = Arc::new(net.transport(from, "client"));
    ClusterClient::new(Arc::new(Peers::new(RpcClient::new(transport), rings())), 77)
        .with_policies(policies())
}

fn put(object: &str, len: usize) -> ObjectPut {
    ObjectPut {
        account: "a".into(),
        container: "ec".into(),
        object: object.into(),
        size_bytes: len as u64,
        content_type: "application/octet-stream".into(),
        user_meta: BTreeMap::from([("meta-colour".to_string(), "blue".to_string())]),
        digest: None,
    }
}

fn data(len: usize, salt: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 9) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A streamed body in uneven chunks, as a gateway hands it over.
fn stream(bytes: &Bytes) -> Body {
    let (mut tx, body) = Body::channel();
    let bytes = bytes.clone();
    tokio::spawn(async move {
        let mut at = 0;
        let mut step = 1000;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            tx.send(bytes.slice(at..end)).await.unwrap();
            at = end;
            step = step * 3 % 7919 + 1;
        }
        tx.finish().await.unwrap();
    });
    body
}

async fn read(client: &ClusterClient, object: &str, range: Option<(u64, u64)>) -> Bytes {
    let (_, body) = client
        .get_object("a", "ec", object, range)
        .await
        .unwrap()
        .expect("object exists");
    body.collect(64 << 20).await.unwrap()
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The node indexes holding an object's fragments, slot by slot.
fn slots(object: &str) -> Vec<usize> {
    let r = rings();
    let path = PathHasher::path_of("a", Some("ec"), Some(object));
    let ring = &r.policies[&1];
    let part = ring.partition_for(&r.hasher, &path);
    ring.primaries(part).map(|d| usize::from(d.id)).collect()
}

async fn ec_container(client: &ClusterClient) {
    client
        .put_container(
            "a",
            "ec",
            BTreeMap::from([(CONTAINER_POLICY_KEY.to_string(), "1".to_string())]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn objects_of_every_size_round_trip_with_ranges_metadata_and_listings() {
    let c = cluster(21);
    let client = client(&c.net);
    ec_container(&client).await;
    let sizes = [0usize, 1, 4095, 4096, 4097, 14_000, 100_000];
    for (i, &len) in sizes.iter().enumerate() {
        let name = format!("o{len}");
        let bytes = data(len, i as u8);
        client
            .put_object(put(&name, len), stream(&bytes))
            .await
            .unwrap();
        let meta = client.head_object("a", "ec", &name).await.unwrap().unwrap();
        assert_eq!(meta.size_bytes, len as u64);
        assert_eq!(meta.etag, md5_hex(&bytes));
        assert_eq!(
            meta.user_meta.get("meta-colour").map(String::as_str),
            Some("blue")
        );
        assert!(meta.user_meta.keys().all(|k| !k.starts_with("sys-ec-")));
        assert_eq!(read(&client, &name, None).await, bytes, "{name}");
        for (a, b) in [
            (0, 1),
            (4095, 4097),
            (1, len as u64),
            (len as u64 / 3, len as u64 / 2),
        ] {
            let b = b.min(len as u64);
            let a = a.min(b);
            assert_eq!(
                read(&client, &name, Some((a, b))).await,
                bytes.slice(a as usize..b as usize),
                "{name} range {a}..{b}"
            );
        }
    }
    let page = client
        .list_objects(
            "a",
            "ec",
            ListQuery {
                limit: 100,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    let listed: BTreeMap<String, (u64, String)> = page
        .items
        .iter()
        .filter_map(|i| match i {
            ListItem::Entry(e) => Some((e.name.clone(), (e.size_bytes, e.etag.clone()))),
            _ => None,
        })
        .collect();
    for (i, &len) in sizes.iter().enumerate() {
        assert_eq!(
            listed.get(&format!("o{len}")),
            Some(&(len as u64, md5_hex(&data(len, i as u8)))),
            "listing of o{len}"
        );
    }
    client.delete_object("a", "ec", "o4096").await.unwrap();
    assert!(
        client
            .head_object("a", "ec", "o4096")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_object("a", "ec", "o4096", None)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn reads_and_writes_go_on_with_m_fragment_devices_down() {
    let c = cluster(22);
    let client = client(&c.net);
    ec_container(&client).await;
    let bytes = data(50_000, 9);
    client
        .put_object(put("x", bytes.len()), stream(&bytes))
        .await
        .unwrap();
    let holders = slots("x");
    // Two data fragments gone: every segment is decoded from parity.
    for &n in &holders[..2] {
        c.net.unregister(addr(n));
    }
    assert_eq!(read(&client, "x", None).await, bytes);
    assert_eq!(
        read(&client, "x", Some((5000, 9000))).await,
        bytes.slice(5000..9000)
    );
    // A new version written now lands on handoffs for the missing slots and reads back.
    let v2 = data(20_000, 10);
    client
        .put_object(put("x", v2.len()), stream(&v2))
        .await
        .unwrap();
    assert_eq!(read(&client, "x", None).await, v2);
    // One more device down: a third slot is lost, but handoffs hold the first two.
    c.net.unregister(addr(holders[2]));
    assert_eq!(read(&client, "x", None).await, v2);
    for &n in &holders[..3] {
        c.net
            .register(addr(n), &format!("node-{n}"), c.services[n].clone());
    }
    // The returning primaries hold the old version; the newest complete one still wins.
    assert_eq!(read(&client, "x", None).await, v2);
}

#[tokio::test]
async fn a_write_that_cannot_reach_the_write_quorum_fails() {
    let c = cluster(23);
    let client = client(&c.net);
    ec_container(&client).await;
    let holders = slots("y");
    // Down: three primaries and both spare nodes, so only three devices can take fragments.
    let spares: Vec<usize> = (0..NODES).filter(|n| !holders.contains(n)).collect();
    for &n in holders[..3].iter().chain(&spares) {
        c.net.unregister(addr(n));
    }
    let bytes = data(10_000, 1);
    let err = client
        .put_object(put("y", bytes.len()), stream(&bytes))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoQuorum(_)), "{err}");
}

fn key(object: &str) -> BlobKey {
    let r = rings();
    let path = PathHasher::path_of("a", Some("ec"), Some(object));
    let part = r.policies[&1].partition_for(&r.hasher, &path);
    BlobKey::new(cairn_node::policy::stored_partition(1, part), path)
}

/// A device's archive of an object: (fragment index, bytes), `None` if absent.
async fn archive(engine: &MemoryEngine, key: &BlobKey) -> Option<(String, Bytes)> {
    let (meta, mut reader) = engine.read_blob(key, None).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(c) = reader.next_chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    Some((meta.user_meta["sys-ec-index"].clone(), Bytes::from(out)))
}

async fn reconstruct(c: &Cluster) -> u64 {
    let mut rebuilt = 0;
    for r in &c.reconstructors {
        let report = r.cycle().await;
        assert_eq!(report.failed, 0, "{report:?}");
        rebuilt += report.rebuilt + report.reverted;
    }
    rebuilt
}

#[tokio::test]
async fn the_reconstructor_rebuilds_lost_fragments_byte_for_byte_and_reverts_handoffs() {
    let c = cluster(24);
    let client = client(&c.net);
    ec_container(&client).await;
    let bytes = data(30_000, 3);
    client
        .put_object(put("z", bytes.len()), stream(&bytes))
        .await
        .unwrap();
    let holders = slots("z");
    let k = key("z");
    let mut before = Vec::new();
    for (slot, &n) in holders.iter().enumerate() {
        let (index, archive) = archive(&c.engines[n], &k).await.unwrap();
        assert_eq!(index, slot.to_string());
        before.push(archive);
    }
    // Lose a data fragment and a parity fragment (a disk's worth each).
    let ts = c.engines[holders[0]]
        .blob_meta(&k)
        .await
        .unwrap()
        .unwrap()
        .timestamp;
    for &slot in &[1usize, 4] {
        assert!(c.engines[holders[slot]].purge_blob(&k, ts).await.unwrap());
    }
    assert_eq!(reconstruct(&c).await, 2);
    for (slot, &n) in holders.iter().enumerate() {
        let (index, archive) = archive(&c.engines[n], &k).await.unwrap();
        assert_eq!(index, slot.to_string());
        assert_eq!(archive, before[slot], "slot {slot} rebuilt byte for byte");
    }
    assert_eq!(reconstruct(&c).await, 0, "nothing left to do");

    // A write while slot 0's primary is down lands on a handoff; once it is back the
    // handoff's archive goes home and is dropped from the handoff.
    c.net.unregister(addr(holders[0]));
    let v2 = data(9_000, 4);
    client
        .put_object(put("z", v2.len()), stream(&v2))
        .await
        .unwrap();
    c.net.register(
        addr(holders[0]),
        "node-back",
        c.services[holders[0]].clone(),
    );
    assert!(reconstruct(&c).await >= 1);
    let home = archive(&c.engines[holders[0]], &k).await.unwrap();
    assert_eq!(home.0, "0");
    for n in (0..NODES).filter(|n| !holders.contains(n)) {
        assert!(
            c.engines[n].blob_meta(&k).await.unwrap().is_none(),
            "handoff {n} still holds an archive"
        );
    }
    assert_eq!(read(&client, "z", None).await, v2);

    // A deletion missed by one primary reaches it as a tombstone.
    c.net.unregister(addr(holders[5]));
    client.delete_object("a", "ec", "z").await.unwrap();
    c.net.register(
        addr(holders[5]),
        "node-back",
        c.services[holders[5]].clone(),
    );
    reconstruct(&c).await;
    let meta = c.engines[holders[5]].blob_meta(&k).await.unwrap();
    assert!(meta.is_some_and(|m| m.tombstone), "tombstone rebuilt");
}

#[tokio::test]
async fn a_dead_primarys_fragments_are_rebuilt_on_a_handoff_and_dropped_when_it_returns() {
    let c = cluster(25);
    let client = client(&c.net);
    ec_container(&client).await;
    let bytes = data(40_000, 5);
    client
        .put_object(put("w", bytes.len()), stream(&bytes))
        .await
        .unwrap();
    let holders = slots("w");
    let k = key("w");
    let spares: Vec<usize> = (0..NODES).filter(|n| !holders.contains(n)).collect();
    c.net.unregister(addr(holders[0]));
    for _ in 0..2 {
        for r in &c.reconstructors {
            r.cycle().await;
        }
    }
    let stand_ins: Vec<usize> = {
        let mut v = Vec::new();
        for &n in &spares {
            if let Some((index, _)) = archive(&c.engines[n], &k).await {
                assert_eq!(index, "0");
                v.push(n);
            }
        }
        v
    };
    assert_eq!(
        stand_ins.len(),
        1,
        "exactly one handoff stands in for slot 0"
    );
    // Two more primaries gone: only the stand-in makes k fragments.
    c.net.unregister(addr(holders[1]));
    c.net.unregister(addr(holders[2]));
    assert_eq!(read(&client, "w", None).await, bytes);
    for &n in &holders[..3] {
        c.net.register(addr(n), "node-back", c.services[n].clone());
    }
    assert_eq!(
        reconstruct(&c).await,
        1,
        "the stand-in is dropped once slot 0 answers"
    );
    assert!(archive(&c.engines[stand_ins[0]], &k).await.is_none());
    assert_eq!(reconstruct(&c).await, 0);
}

#[tokio::test]
async fn a_malformed_metadata_trailer_is_refused_and_stores_nothing() {
    use cairn_node::peers::DeviceAddr;
    use cairn_node::rpc::{NodeRequest, NodeResponse, RemoteError};
    let c = cluster(26);
    let client = client(&c.net);
    let k = key("t");
    let to = DeviceAddr {
        addr: addr(0),
        device: "d0".into(),
    };
    let blob = b"0123456789";
    let with_trailer = |meta: BTreeMap<String, String>| {
        let mut body = blob.to_vec();
        body.extend_from_slice(&postcard::to_allocvec(&meta).unwrap());
        body
    };
    let digest_of = |bytes: &[u8]| {
        let mut d = cairn_node::body_digest::BodyDigester::new();
        d.update(bytes);
        d.finish()
    };
    let mut no_digest = BTreeMap::from([("sys-ec-object-etag".to_string(), "abc".to_string())]);
    let mut wrong_crc = no_digest.clone();
    digest_of(b"0123456788").insert_into(&mut wrong_crc);
    let no_digest_body = with_trailer(no_digest.clone());
    let wrong_crc_body = with_trailer(wrong_crc);
    for (body, why) in [
        (&b"0123456789\xff\xff\xff"[..], "malformed"),
        (&b"01234"[..], "announced"),
        (&no_digest_body[..], "no sys-body-md5"),
        (&wrong_crc_body[..], "CRC32C"),
    ] {
        let req = NodeRequest::PutBlob {
            device: "d0".into(),
            key: k.clone(),
            timestamp: cairn_engine::Timestamp::ZERO,
            size_bytes: 10,
            content_type: String::new(),
            user_meta: BTreeMap::new(),
            listing: None,
            meta_trailer: true,
            write_around: false,
        };
        let r = client
            .peers()
            .call(
                &to,
                &req,
                Body::Full(Bytes::copy_from_slice(body)),
                std::time::Duration::from_secs(5),
                None,
            )
            .await;
        match r {
            Err(cairn_node::peers::PeerError::Refused(RemoteError::Invalid(m))) => {
                assert!(m.contains(why), "{m}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(c.engines[0].blob_meta(&k).await.unwrap().is_none());
    }
    // A well-formed trailer lands in the metadata; its MD5 is the blob's etag.
    let digest = digest_of(blob);
    digest.insert_into(&mut no_digest);
    let body = with_trailer(no_digest);
    let req = NodeRequest::PutBlob {
        device: "d0".into(),
        key: k.clone(),
        timestamp: cairn_engine::Timestamp::ZERO,
        size_bytes: 10,
        content_type: String::new(),
        user_meta: BTreeMap::new(),
        listing: None,
        meta_trailer: true,
        write_around: false,
    };
    let r = client
        .peers()
        .call(
            &to,
            &req,
            Body::Full(Bytes::from(body)),
            std::time::Duration::from_secs(5),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(r.0, NodeResponse::Written { .. }));
    let meta = c.engines[0].blob_meta(&k).await.unwrap().unwrap();
    assert_eq!(
        (
            meta.size_bytes,
            meta.user_meta["sys-ec-object-etag"].as_str(),
            meta.etag.clone(),
        ),
        (10, "abc", digest.md5_hex())
    );
    assert!(
        !meta.user_meta.keys().any(|k| k.starts_with("sys-body-")),
        "the digest is not kept as metadata: {:?}",
        meta.user_meta
    );
}

#[tokio::test]
async fn a_failed_overwrite_leaves_the_previous_version_whole() {
    let c = cluster(27);
    let client = client(&c.net);
    ec_container(&client).await;
    let v1 = data(30_000, 6);
    client
        .put_object(put("v", v1.len()), stream(&v1))
        .await
        .unwrap();
    let holders = slots("v");
    let k = key("v");
    // Three fragment devices take v2's bytes but fail to commit them (their disks die at
    // fsync), and there is no handoff to take over: three archives stored, below the write
    // quorum of five. A one-phase write would have replaced v1 on the other three devices,
    // leaving three fragments of each version: neither readable.
    for &n in &holders[..3] {
        c.engines[n].fail_commits("fsync failed");
    }
    for n in (0..NODES).filter(|n| !holders.contains(n)) {
        c.net.unregister(addr(n));
    }
    let v2 = data(20_000, 7);
    let err = client
        .put_object(put("v", v2.len()), stream(&v2))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoQuorum(_)), "{err}");
    for &n in &holders[..3] {
        c.engines[n].recover();
    }
    // v2's archives were only staged: v1 is current on all six devices.
    assert_eq!(read(&client, "v", None).await, v1);
    for &n in &holders {
        assert_eq!(
            c.engines[n]
                .blob_meta(&k)
                .await
                .unwrap()
                .unwrap()
                .size_bytes,
            archive(&c.engines[holders[0]], &k).await.unwrap().1.len() as u64
        );
    }
    // The staged v2 archives are young: the reconstructor leaves them for now.
    for r in &c.reconstructors {
        let report = r.cycle().await;
        assert_eq!(
            (report.rolled_forward, report.dropped),
            (0, 0),
            "{report:?}"
        );
    }
    assert_eq!(read(&client, "v", None).await, v1);
}

#[tokio::test]
async fn staged_archives_are_rolled_forward_or_dropped_by_the_reconstructor() {
    use cairn_engine::{BlobCommit, BlobWriter, Timestamp};
    let c = cluster(28);
    let client = client(&c.net);
    ec_container(&client).await;
    let bytes = data(25_000, 8);
    client
        .put_object(put("s", bytes.len()), stream(&bytes))
        .await
        .unwrap();
    let holders = slots("s");
    let k = key("s");
    let staged = BlobKey::new(
        cairn_node::policy::staged_partition(k.partition),
        k.name.clone(),
    );
    // Slot 0's device staged the version but never promoted it (its promotion was lost).
    let e0 = &c.engines[holders[0]];
    let meta = e0.blob_meta(&k).await.unwrap().unwrap();
    let (_, archive0) = archive(e0, &k).await.unwrap();
    let mut w = e0.begin_blob(staged.clone(), None).await.unwrap();
    w.write(archive0.clone()).await.unwrap();
    w.commit(BlobCommit {
        timestamp: meta.timestamp,
        content_type: meta.content_type.clone(),
        user_meta: meta.user_meta.clone(),
        etag: None,
    })
    .await
    .unwrap();
    assert!(e0.purge_blob(&k, meta.timestamp).await.unwrap());
    // Another device holds a staged archive of a write that died an hour and more ago.
    let e1 = &c.engines[holders[1]];
    let stale = BlobKey::new(staged.partition, "/a/ec/gone");
    let mut w = e1.begin_blob(stale.clone(), None).await.unwrap();
    w.write(Bytes::from_static(b"never promoted"))
        .await
        .unwrap();
    let long_ago = Timestamp {
        wall_micros: 1_000_000,
        counter: 0,
        node: 9,
    };
    w.commit(BlobCommit {
        timestamp: long_ago,
        content_type: String::new(),
        user_meta: BTreeMap::new(),
        etag: None,
    })
    .await
    .unwrap();
    let mut rolled = 0;
    let mut dropped = 0;
    for r in &c.reconstructors {
        let report = r.cycle().await;
        rolled += report.rolled_forward;
        dropped += report.dropped;
    }
    assert_eq!((rolled, dropped), (1, 1));
    assert_eq!(archive(e0, &k).await.unwrap(), ("0".to_string(), archive0));
    assert!(e0.blob_meta(&staged).await.unwrap().is_none());
    assert!(e1.blob_meta(&stale).await.unwrap().is_none());
}

#[tokio::test]
async fn m_dead_primaries_are_both_stood_in_for() {
    let c = cluster(29);
    let client = client(&c.net);
    ec_container(&client).await;
    let bytes = data(33_000, 9);
    client
        .put_object(put("u", bytes.len()), stream(&bytes))
        .await
        .unwrap();
    let holders = slots("u");
    let k = key("u");
    // Two primaries dead at once: each survivor holds k − 1 others' fragments plus its own.
    c.net.unregister(addr(holders[0]));
    c.net.unregister(addr(holders[3]));
    for _ in 0..2 {
        for r in &c.reconstructors {
            r.cycle().await;
        }
    }
    let mut stood_in = Vec::new();
    for n in (0..NODES).filter(|n| !holders.contains(n)) {
        if let Some((index, _)) = archive(&c.engines[n], &k).await {
            stood_in.push(index);
        }
    }
    stood_in.sort();
    assert_eq!(stood_in, ["0", "3"], "both dead slots rebuilt on handoffs");
    // Two more primaries go: two live primaries and the two stand-ins make k.
    c.net.unregister(addr(holders[1]));
    c.net.unregister(addr(holders[2]));
    assert_eq!(read(&client, "u", None).await, bytes);
}
