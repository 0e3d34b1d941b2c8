//! The node's services and cluster client wired together in one process over `cairn-net`'s
//! test network (partitions and drops, no sockets) and in-memory engines: quorum writes around
//! an isolated node, handoffs, read-after-write, and the replicator bringing handoff data home.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::{BlobKey, MemoryEngine, StorageEngine};
use cairn_net::{Body, RpcClient, TestNetwork};
use cairn_node::listing_updates::ListingUpdater;
use cairn_node::metrics::NodeMetrics;
use cairn_node::peers::{Peers, RingKind, RingRejected, Rings};
use cairn_node::replicator::Replicator;
use cairn_node::service::{DeviceSet, NodeService};
use cairn_node::{ClusterClient, ObjectPut};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};

const NODES: usize = 4;
/// Nodes on the network; the last one joins the ring only in the ring-change test.
const NODES_MAX: usize = 5;

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, u8::try_from(n + 1).unwrap()], 6000))
}

fn rings() -> Rings {
    let ring = PartitionRing::compile(&builder(NODES)).unwrap();
    Rings {
        object: ring.clone(),
        container: ring.clone(),
        account: ring,
        policies: Default::default(),
        hasher: PathHasher::new("p", "s"),
    }
}

/// A ring over the first `nodes` nodes (one device each), rebalanced.
fn builder(nodes: usize) -> RingBuilder {
    let mut b = RingBuilder::new(4, 3.0, 0).unwrap();
    for n in 0..nodes {
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
        seed: 3,
        now_minutes: 0,
    })
    .unwrap();
    b
}

struct Cluster {
    net: TestNetwork,
    services: Vec<NodeService<MemoryEngine>>,
    engines: Vec<MemoryEngine>,
    replicators: Vec<Replicator<MemoryEngine>>,
}

fn cluster(seed: u64) -> Cluster {
    let net = TestNetwork::new(seed);
    let mut engines = Vec::new();
    let mut replicators = Vec::new();
    let mut services = Vec::new();
    for n in 0..NODES_MAX {
        let engine = MemoryEngine::new();
        engines.push(engine.clone());
        let engine = Arc::new(engine);
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
        replicators.push(Replicator::new(
            "d0".into(),
            engine,
            addr(n),
            peers,
            metrics,
        ));
    }
    Cluster {
        net,
        services,
        engines,
        replicators,
    }
}

fn client(net: &TestNetwork) -> ClusterClient {
    let from = SocketAddr::from(([127, 0, 0, 100], 1));
    let transport = Arc::new(net.transport(from, "client"));
    ClusterClient::new(Arc::new(Peers::new(RpcClient::new(transport), rings())), 77)
}

fn put(object: &str, data: &Bytes) -> ObjectPut {
    ObjectPut {
        account: "a".into(),
        container: "c".into(),
        object: object.into(),
        size_bytes: data.len() as u64,
        content_type: "text/plain".into(),
        user_meta: BTreeMap::new(),
        digest: None,
    }
}

async fn read(client: &ClusterClient, object: &str) -> Option<Bytes> {
    let (_, body) = client.get_object("a", "c", object, None).await.unwrap()?;
    Some(body.collect(1 << 20).await.unwrap())
}

#[tokio::test]
async fn writes_go_around_a_down_primary_and_come_home() {
    let seed = 11;
    eprintln!("test network seed {seed}");
    let c = cluster(seed);
    let client = client(&c.net);
    let data = Bytes::from_static(b"hello handoff");
    let r = rings();
    let path = PathHasher::path_of("a", Some("c"), Some("o"));
    let part = r.object.partition_for(&r.hasher, &path);
    let primaries: Vec<usize> = r
        .object
        .primaries(part)
        .map(|d| usize::from(d.id))
        .collect();
    let down = primaries[0];
    // Down (connections refused at once), so the failure is known before the quorum is.
    c.net.unregister(addr(down));

    let written = client
        .put_object(put("o", &data), Body::Full(data.clone()))
        .await
        .unwrap();
    assert!(!written.strict || primaries.len() == 3);
    assert_eq!(
        read(&client, "o").await,
        Some(data.clone()),
        "read-after-write with a primary cut off"
    );
    let handoff = (0..NODES).find(|n| !primaries.contains(n)).unwrap();
    let key = BlobKey::new(part, path.clone());
    assert!(
        c.engines[handoff].blob_meta(&key).await.unwrap().is_some(),
        "the handoff took the isolated primary's copy"
    );
    assert!(c.engines[down].blob_meta(&key).await.unwrap().is_none());

    // Heal; the handoff's replicator pushes the copy home and then drops its own.
    c.net.register(
        addr(down),
        &format!("node-{down}"),
        c.services[down].clone(),
    );
    for _ in 0..3 {
        for r in &c.replicators {
            r.cycle().await;
        }
    }
    for &p in &primaries {
        let meta = c.engines[p].blob_meta(&key).await.unwrap();
        assert_eq!(
            meta.map(|m| m.timestamp),
            Some(written.timestamp),
            "primary {p}"
        );
    }
    assert!(
        c.engines[handoff].blob_meta(&key).await.unwrap().is_none(),
        "handoff copy purged"
    );
}

#[tokio::test]
async fn a_write_without_quorum_fails_and_a_listing_sees_every_acknowledged_write() {
    let seed = 12;
    eprintln!("test network seed {seed}");
    let c = cluster(seed);
    let client = client(&c.net);
    for i in 0..20 {
        let data = Bytes::from(format!("object {i}"));
        client
            .put_object(put(&format!("o{i:02}"), &data), Body::Full(data))
            .await
            .unwrap();
    }
    client.delete_object("a", "c", "o05").await.unwrap();
    let page = client
        .list_objects(
            "a",
            "c",
            cairn_engine::ListQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = page.items.iter().map(|i| i.marker().to_string()).collect();
    let want: Vec<String> = (0..20)
        .filter(|&i| i != 5)
        .map(|i| format!("o{i:02}"))
        .collect();
    assert_eq!(names, want);

    // Cut the client off from three of four nodes: no write quorum anywhere.
    for n in 0..3 {
        c.net.unregister(addr(n));
    }
    let data = Bytes::from_static(b"x");
    let r = client
        .put_object(put("lost", &data), Body::Full(data))
        .await;
    assert!(r.is_err(), "a write acknowledged without a quorum: {r:?}");
}

#[tokio::test]
async fn containers_are_created_listed_and_deleted_only_when_empty() {
    let c = cluster(13);
    let client = client(&c.net);
    let meta = BTreeMap::from([("color".to_string(), "blue".to_string())]);
    client.put_container("a", "c", meta).await.unwrap();
    client
        .put_container("a", "d", BTreeMap::new())
        .await
        .unwrap();
    let head = client.head_container("a", "c").await.unwrap().unwrap();
    assert_eq!(head.info.metadata["color"].value.as_deref(), Some("blue"));
    let data = Bytes::from_static(b"12345");
    client
        .put_object(put("o", &data), Body::Full(data.clone()))
        .await
        .unwrap();
    let head = client.head_container("a", "c").await.unwrap().unwrap();
    assert_eq!((head.stats.object_count, head.stats.bytes), (1, 5));

    let names = |p: cairn_engine::ListPage| -> Vec<String> {
        p.items.iter().map(|i| i.marker().to_string()).collect()
    };
    let all = cairn_engine::ListQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        names(client.list_containers("a", all.clone()).await.unwrap()),
        ["c", "d"]
    );

    let refused = client.delete_container("a", "c").await;
    assert!(
        matches!(
            refused,
            Err(cairn_node::ClientError::NotEmpty { objects: 1 })
        ),
        "{refused:?}"
    );
    client.delete_object("a", "c", "o").await.unwrap();
    client.delete_container("a", "c").await.unwrap();
    assert!(client.head_container("a", "c").await.unwrap().is_none());
    assert_eq!(
        names(client.list_containers("a", all).await.unwrap()),
        ["d"]
    );
    assert!(matches!(
        client.delete_container("a", "c").await,
        Err(cairn_node::ClientError::NotFound)
    ));
}

#[tokio::test]
async fn a_new_ring_moves_data_to_its_new_homes_and_stale_rings_are_refused() {
    let c = cluster(14);
    let client = client(&c.net);
    // A fifth node will join: the builder takes it and moves some partition-replicas onto it.
    let mut b = builder(NODES);
    b.add_device(NewDevice {
        id: None,
        region: 1,
        zone: 5,
        ip: addr(4).ip().to_string(),
        port: 6000,
        replication_ip: None,
        replication_port: None,
        device: "d0".into(),
        weight: 1.0,
        meta: String::new(),
    })
    .unwrap();
    let moved = b
        .rebalance(RebalanceOptions {
            seed: 4,
            now_minutes: 0,
        })
        .unwrap()
        .moved;
    assert!(moved > 0);
    let new_ring = PartitionRing::compile(&b).unwrap();
    let old_ring = rings().object;
    let hasher = PathHasher::new("p", "s");
    // A container whose listing partition gets a new primary, so the listing must move too.
    let container = (0..1_000)
        .map(|k| format!("c{k}"))
        .find(|name| {
            let part = new_ring.partition_for(&hasher, &PathHasher::path_of("a", Some(name), None));
            let ids = |r: &PartitionRing| {
                r.primary_ids(part)
                    .collect::<std::collections::BTreeSet<_>>()
            };
            ids(&new_ring) != ids(&old_ring)
        })
        .unwrap();
    for i in 0..40 {
        let data = Bytes::from(format!("object {i}"));
        let p = ObjectPut {
            container: container.clone(),
            ..put(&format!("o{i:02}"), &data)
        };
        client.put_object(p, Body::Full(data)).await.unwrap();
    }
    let bytes = new_ring.to_bytes().unwrap();
    for r in &c.replicators {
        for kind in [RingKind::Object, RingKind::Container, RingKind::Account] {
            r.peers().swap_ring(kind, &bytes).unwrap();
        }
    }
    client.peers().swap_ring(RingKind::Object, &bytes).unwrap();
    client
        .peers()
        .swap_ring(RingKind::Container, &bytes)
        .unwrap();
    // Replaying it, or an older one, is refused; so is a corrupt file.
    let old = PartitionRing::compile(&builder(NODES))
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(matches!(
        client.peers().swap_ring(RingKind::Object, &bytes),
        Err(RingRejected::NotNewer { .. })
    ));
    assert!(matches!(
        client.peers().swap_ring(RingKind::Object, &old),
        Err(RingRejected::NotNewer { .. })
    ));
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        client.peers().swap_ring(RingKind::Object, &corrupt),
        Err(RingRejected::Invalid(_))
    ));

    // The replicators move every object to its new primaries and drop the copies left behind.
    for _ in 0..4 {
        for r in &c.replicators {
            r.cycle().await;
        }
    }
    for i in 0..40 {
        let path = PathHasher::path_of("a", Some(&container), Some(&format!("o{i:02}")));
        let part = new_ring.partition_for(&hasher, &path);
        let homes: Vec<usize> = new_ring
            .primaries(part)
            .map(|d| usize::from(d.id))
            .collect();
        for (n, engine) in c.engines.iter().enumerate() {
            let held = engine
                .blob_meta(&BlobKey::new(part, path.clone()))
                .await
                .unwrap()
                .is_some();
            assert_eq!(
                held,
                homes.contains(&n),
                "object {i} on node {n}; homes {homes:?}"
            );
        }
        let (_, body) = client
            .get_object("a", &container, &format!("o{i:02}"), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            body.collect(1 << 20).await.unwrap(),
            Bytes::from(format!("object {i}"))
        );
    }
    // The container listing moved with its partitions too.
    let page = client
        .list_objects(
            "a",
            &container,
            cairn_engine::ListQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 40, "listing after the ring change");
    let cpath = PathHasher::path_of("a", Some(&container), None);
    let cpart = new_ring.partition_for(&hasher, &cpath);
    for d in new_ring.primaries(cpart) {
        let stats = c.engines[usize::from(d.id)]
            .listing_stats(&cairn_engine::ListingKey::new(cpart, cpath.clone()))
            .await
            .unwrap();
        assert_eq!(stats.object_count, 40, "listing replica on node {}", d.id);
    }
    {}
}

/// `aws s3 rb --force` deletes every object, then the bucket at once. A deletion's last
/// replica (and so its listing replica's update) may still be in flight, so one listing replica
/// can still count the object: the container is empty all the same.
#[tokio::test]
async fn a_container_can_be_deleted_while_a_listing_replica_still_counts_a_deleted_object() {
    use cairn_engine::ListingKey;
    use cairn_node::rpc::NodeRequest;
    let c = cluster(31);
    let client = client(&c.net);
    client
        .put_container("a", "c", BTreeMap::new())
        .await
        .unwrap();
    let data = Bytes::from_static(b"hello");
    client
        .put_object(put("o", &data), Body::Full(data.clone()))
        .await
        .unwrap();
    let rings = rings();
    let path = PathHasher::path_of("a", Some("c"), None);
    let key = ListingKey::new(rings.container.partition_for(&rings.hasher, &path), path);
    // The container listing's three replicas count the object (the last one may lag a moment).
    let mut holders = Vec::new();
    for _ in 0..100 {
        holders.clear();
        for (n, e) in c.engines.iter().enumerate() {
            if e.listing_stats(&key).await.unwrap().object_count == 1 {
                holders.push(n);
            }
        }
        if holders.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(holders.len(), 3, "{holders:?}");
    // The deletion's listing updates never reach one listing replica.
    let stale = addr(holders[0]);
    c.net
        .set_drop_request_filter(Arc::new(move |_from, to, header| {
            to == stale
                && matches!(
                    postcard::from_bytes::<NodeRequest>(header),
                    Ok(NodeRequest::MergeListing { .. })
                )
        }));
    client.delete_object("a", "c", "o").await.unwrap();
    c.net.heal();
    assert_eq!(
        c.engines[holders[0]]
            .listing_stats(&key)
            .await
            .unwrap()
            .object_count,
        1,
        "the lagging replica still counts the object"
    );
    // Another listing replica does not answer reads, so every read quorum includes the
    // lagging one (and a fresh one).
    let silent = addr(holders[1]);
    c.net
        .set_drop_request_filter(Arc::new(move |_from, to, header| {
            to == silent
                && matches!(
                    postcard::from_bytes::<NodeRequest>(header),
                    Ok(NodeRequest::ListingStats { .. } | NodeRequest::List { .. })
                )
        }));
    client.delete_container("a", "c").await.unwrap();
    c.net.heal();
    assert!(client.head_container("a", "c").await.unwrap().is_none());
}
