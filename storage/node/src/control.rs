//! The node's side of the control plane: it registers itself and heartbeats on a lease
//! (membership), and watches the store for published rings, taking each newer one without a
//! restart. Record layout: `docs/meta.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn_engine::{Health, StorageEngine};
use cairn_meta::rings::{RING_PREFIX, fetch_ring, ring_kind_of};
use cairn_meta::{EventKind, MetaStore};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::metrics::NodeMetrics;
use crate::peers::{Peers, RingKind, RingRejected};
use crate::service::DeviceSet;

/// A node's registration (no lease: what the operator sees even while it is down).
pub const NODES_PREFIX: &str = "/cairn/nodes/";
/// A node's presence, on its lease (value: its last heartbeat time): gone within the TTL of
/// the node dying.
pub const ALIVE_PREFIX: &str = "/cairn/alive/";

/// One device as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub name: String,
    pub up: bool,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub live_blob_bytes: u64,
}

/// What a node writes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub format: u32,
    pub name: String,
    pub node_id: u32,
    pub rpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub devices: Vec<DeviceStatus>,
    /// Ring versions in force, by kind.
    pub rings: BTreeMap<String, u64>,
    pub started_unix_ms: u64,
    pub heartbeat_unix_ms: u64,
}

fn now_unix_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Where a node is and what it serves; filled in at each heartbeat.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub node_id: u32,
    pub rpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

async fn status<E: StorageEngine>(
    id: &Identity,
    devices: &DeviceSet<E>,
    peers: &Peers,
    started: u64,
) -> NodeStatus {
    let mut list = Vec::new();
    for (name, engine) in devices.iter() {
        let up = engine.health() == Health::Ok;
        let usage = engine.usage().await.ok();
        list.push(DeviceStatus {
            name: name.to_string(),
            up,
            total_bytes: usage.map_or(0, |u| u.total_bytes),
            free_bytes: usage.map_or(0, |u| u.free_bytes),
            live_blob_bytes: usage.map_or(0, |u| u.live_blob_bytes),
        });
    }
    let rings = peers.rings();
    let mut versions = BTreeMap::from([
        ("object".to_string(), rings.object.version()),
        ("container".to_string(), rings.container.version()),
        ("account".to_string(), rings.account.version()),
    ]);
    for (i, ring) in &rings.policies {
        versions.insert(format!("object-{i}"), ring.version());
    }
    NodeStatus {
        format: 1,
        name: id.name.clone(),
        node_id: id.node_id,
        rpc: id.rpc,
        metrics: id.metrics,
        devices: list,
        rings: versions,
        started_unix_ms: started,
        heartbeat_unix_ms: now_unix_ms(),
    }
}

/// Registers the node and heartbeats on a lease of `ttl` until the task is dropped. A lost
/// lease (the store was unreachable for longer than the TTL) is replaced by a new one.
pub async fn run_membership<S: MetaStore, E: StorageEngine>(
    store: Arc<S>,
    id: Identity,
    devices: Arc<DeviceSet<E>>,
    peers: Arc<Peers>,
    ttl: Duration,
) {
    let started = now_unix_ms();
    let every = ttl / 3;
    loop {
        let lease = match store.grant(ttl).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot reach the control plane to register; retrying");
                tokio::time::sleep(every).await;
                continue;
            }
        };
        let mut registered = false;
        loop {
            let s = status(&id, &devices, &peers, started).await;
            let Ok(json) = serde_json::to_vec(&s) else {
                break;
            };
            let json = Bytes::from(json);
            // The registration (no lease) is refreshed with every beat too, so a node that died
            // still shows when it was last seen and what it last reported.
            let registration = format!("{NODES_PREFIX}{}", id.name);
            if let Err(e) = store.put(registration.as_bytes(), json, None).await {
                warn!(error = %e, "updating the node's registration failed");
                break;
            }
            if !registered {
                registered = true;
                info!(node = %id.name, "registered with the control plane");
            }
            let alive = format!("{ALIVE_PREFIX}{}", id.name);
            let beat = async {
                // Presence only: the registration above carries the report.
                store
                    .put(
                        alive.as_bytes(),
                        Bytes::from(s.heartbeat_unix_ms.to_string()),
                        Some(lease),
                    )
                    .await?;
                store.keep_alive(lease).await
            };
            if let Err(e) = beat.await {
                warn!(error = %e, "heartbeat failed; registering again");
                break;
            }
            tokio::time::sleep(every).await;
        }
        let _ = store.revoke(lease).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The rings a published kind replaces: `object`, `container` or `object-<policy index>`.
fn kinds_for(published: &str) -> Option<Vec<RingKind>> {
    match published {
        "object" => Some(vec![RingKind::Object]),
        // Account listings share the container ring (config validation enforces it).
        "container" => Some(vec![RingKind::Container, RingKind::Account]),
        _ => {
            let index: u16 = published.strip_prefix("object-")?.parse().ok()?;
            (index > 0).then_some(vec![RingKind::Policy(index)])
        }
    }
}

async fn take_ring<S: MetaStore>(store: &S, peers: &Peers, metrics: &NodeMetrics, kind: &str) {
    let Some(replaces) = kinds_for(kind) else {
        debug!(kind, "published ring of a kind this node does not use");
        return;
    };
    match fetch_ring(store, kind).await {
        Ok(Some((record, bytes))) => {
            for k in replaces {
                if let RingKind::Policy(i) = k
                    && peers.rings().ring(k).is_none()
                {
                    debug!(
                        kind,
                        policy = i,
                        "published ring of a policy this node does not have"
                    );
                    continue;
                }
                match peers.swap_ring(k, &bytes) {
                    Ok(v) => {
                        info!(kind, version = v, "new ring in force");
                        metrics.ring_version(kind, v);
                    }
                    Err(RingRejected::NotNewer { .. }) => {
                        debug!(kind, version = record.version, "ring already in force")
                    }
                    Err(e) => {
                        warn!(kind, version = record.version, error = %e, "published ring refused")
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => warn!(kind, error = %e, "fetching a published ring failed"),
    }
}

/// Takes every published ring newer than the one in force, now and whenever a new one is
/// published, until the task is dropped.
pub async fn run_ring_watch<S: MetaStore>(
    store: Arc<S>,
    peers: Arc<Peers>,
    metrics: Arc<NodeMetrics>,
) {
    loop {
        // Read then watch from the revision read, so no publication in between is missed.
        let rev = match store.revision().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot reach the control plane for rings; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut kinds = vec!["object".to_string(), "container".to_string()];
        kinds.extend(peers.rings().policies.keys().map(|i| format!("object-{i}")));
        for kind in &kinds {
            take_ring(&*store, &peers, &metrics, kind).await;
        }
        let mut watch = match store.watch(RING_PREFIX.as_bytes(), Some(rev + 1)).await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "watching rings failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        while let Some(event) = watch.next_event().await {
            match event {
                Ok(ev) if ev.kind == EventKind::Put => {
                    if let Some(kind) = ring_kind_of(&ev.kv.key) {
                        take_ring(&*store, &peers, &metrics, kind).await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "ring watch ended; reading again");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
