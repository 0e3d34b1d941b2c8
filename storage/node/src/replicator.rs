//! The replicator: keeps every partition's replicas whole by running a [`ReplicationJob`] per
//! partition a device holds — once for its blobs (object ring) and once for its listing
//! entries (container ring) — performing the job's commands with engine calls and RPCs.
//!
//! Runs continuously per device: one *cycle* visits every partition on the device, a bounded
//! number at once; `replication_lag_seconds` reports how long ago the last clean cycle ended.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::digest::{bucket_of, listing_item_name};
use cairn_engine::{BlobKey, BlobReader, ListingEntry, ListingKey, StorageEngine};
use cairn_net::Body;
use cairn_ring::{DeviceId, PartitionRing};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{debug, info, warn};

use crate::core::{EntryVersion, JobCommand, JobInput, ReplicaRole, ReplicationJob, Version};
use crate::limits::{
    BLOB_CALL_TIMEOUT_MS, REPLICATION_JOBS_PER_DEVICE_MAX, REPLICATION_PUSHES_INFLIGHT_MAX,
    SMALL_CALL_TIMEOUT_MS,
};
use crate::metrics::NodeMetrics;
use crate::peers::{DeviceAddr, Peers, RingKind, Rings};
use crate::rpc::{NodeRequest, NodeResponse};

/// What a pass replicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Items {
    Blobs,
    /// Listing entries; item names are "path\0entry name", as the engine's listing digest.
    Listings,
}

impl Items {
    fn ring(self) -> RingKind {
        match self {
            Items::Blobs => RingKind::Object,
            Items::Listings => RingKind::Container,
        }
    }
}

/// Replicates one device's partitions.
#[derive(Debug)]
pub struct Replicator<E> {
    device: String,
    engine: Arc<E>,
    /// This node's RPC address as the rings list it, to find the device's own ring ids.
    advertised: SocketAddr,
    peers: Arc<Peers>,
    metrics: Arc<NodeMetrics>,
}

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CycleReport {
    pub passes: u64,
    pub pushed: u64,
    pub purged: u64,
    pub failed_peers: u64,
}

impl CycleReport {
    fn add(&mut self, other: CycleReport) {
        self.passes += other.passes;
        self.pushed += other.pushed;
        self.purged += other.purged;
        self.failed_peers += other.failed_peers;
    }
}

fn entry_version(
    name: String,
    timestamp: cairn_engine::Timestamp,
    tombstone: bool,
) -> (u16, EntryVersion) {
    (
        bucket_of(&name),
        EntryVersion {
            name,
            version: Version {
                timestamp,
                tombstone,
            },
        },
    )
}

impl<E: StorageEngine> Replicator<E> {
    /// The rings and peers this replicator works with (a ring swap there applies here).
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    pub fn new(
        device: String,
        engine: Arc<E>,
        advertised: SocketAddr,
        peers: Arc<Peers>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        Replicator {
            device,
            engine,
            advertised,
            peers,
            metrics,
        }
    }

    /// Cycles forever, `interval` apart.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut last_clean = Instant::now();
        loop {
            let up = matches!(self.engine.health(), cairn_engine::Health::Ok);
            self.metrics.device_up(&self.device, up);
            if !up {
                warn!(device = %self.device, "device out of service; not replicating from it");
                tokio::time::sleep(interval).await;
                continue;
            }
            let report = self.cycle().await;
            if report.failed_peers == 0 {
                last_clean = Instant::now();
            }
            self.metrics
                .replication_lag(&self.device, last_clean.elapsed().as_secs_f64());
            if report.pushed + report.purged > 0 {
                info!(device = %self.device, ?report, "replication cycle");
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn my_id(&self, ring: &PartitionRing) -> Option<DeviceId> {
        device_in_ring(ring, &self.device, self.advertised)
    }

    /// One pass over every partition the device holds, blobs then listings.
    pub async fn cycle(&self) -> CycleReport {
        let rings = self.peers.rings();
        let mut report = CycleReport::default();
        let partitions = match self.engine.partitions().await {
            Ok(p) => p,
            Err(e) => {
                warn!(device = %self.device, error = %e, "listing partitions failed");
                report.failed_peers += 1;
                return report;
            }
        };
        for items in [Items::Blobs, Items::Listings] {
            let Some(ring) = rings.ring(items.ring()) else {
                continue;
            };
            let total = ring.partitions();
            let me = self.my_id(ring);
            let mut passes =
                futures::stream::iter(partitions.iter().copied().filter(|&p| p < total))
                    .map(|p| self.replicate_partition(&rings, items, me, p))
                    .buffer_unordered(REPLICATION_JOBS_PER_DEVICE_MAX);
            while let Some(r) = passes.next().await {
                report.add(r);
            }
        }
        report
    }

    async fn replicate_partition(
        &self,
        rings: &Rings,
        items: Items,
        me: Option<DeviceId>,
        part: u32,
    ) -> CycleReport {
        let mut out = CycleReport {
            passes: 1,
            ..CycleReport::default()
        };
        let primaries: Vec<DeviceId> = rings
            .ring(items.ring())
            .map(|r| r.primary_ids(part).collect())
            .unwrap_or_default();
        let is_primary = me.is_some_and(|m| primaries.contains(&m));
        let (role, peer_ids): (ReplicaRole, Vec<DeviceId>) = if is_primary {
            (
                ReplicaRole::Primary,
                primaries
                    .iter()
                    .copied()
                    .filter(|&d| Some(d) != me)
                    .collect(),
            )
        } else {
            (ReplicaRole::Handoff, primaries.clone())
        };
        let digest = match items {
            Items::Blobs => self.engine.blob_digest(part).await,
            Items::Listings => self.engine.listing_digest(part).await,
        };
        let digest = match digest {
            Ok(d) => d.buckets,
            Err(e) => {
                warn!(device = %self.device, part, ?items, error = %e, "digest failed");
                out.failed_peers += 1;
                return out;
            }
        };
        // Listing entries read locally, by item name, for pushing them whole.
        let mut listing_local: BTreeMap<String, (String, ListingEntry)> = BTreeMap::new();
        let (mut job, cmds) = ReplicationJob::start(role, digest, &peer_ids);
        let mut queue: VecDeque<JobCommand> = cmds.into();
        let mut inflight = FuturesUnordered::new();
        loop {
            while let Some(cmd) = queue.pop_front() {
                match cmd {
                    JobCommand::ReadLocal { buckets } => {
                        let buckets = buckets.unwrap_or_else(all_buckets);
                        let entries = match items {
                            Items::Blobs => {
                                self.engine.blob_entries(part, &buckets).await.map(|es| {
                                    es.into_iter()
                                        .map(|e| entry_version(e.name, e.timestamp, e.tombstone))
                                        .collect()
                                })
                            }
                            Items::Listings => {
                                self.engine.listing_records(part, &buckets).await.map(|rs| {
                                    rs.into_iter()
                                        .map(|r| {
                                            let item = listing_item_name(&r.path, &r.entry.name);
                                            let v = entry_version(
                                                item.clone(),
                                                r.entry.timestamp,
                                                r.entry.deleted,
                                            );
                                            listing_local.insert(item, (r.path, r.entry));
                                            v
                                        })
                                        .collect()
                                })
                            }
                        };
                        let entries = entries.unwrap_or_else(|e| {
                            // Without local entries nothing can be pushed or purged safely:
                            // fail every peer so the pass ends without purging.
                            warn!(device = %self.device, part, error = %e, "reading local entries failed");
                            for &p in &peer_ids {
                                queue.extend(job.on_input(JobInput::PeerFailed { peer: p }));
                            }
                            Vec::new()
                        });
                        queue.extend(job.on_input(JobInput::LocalEntries { entries }));
                    }
                    JobCommand::Purge { .. } if items == Items::Listings => {
                        // Listing entries left behind after a ring change are pushed home but
                        // kept: the engine has no per-entry purge yet, and reads only ever go
                        // to primaries, so the stale copy costs space, not correctness.
                    }
                    JobCommand::Purge { entry } => {
                        let key = BlobKey::new(part, entry.name.clone());
                        match self.engine.purge_blob(&key, entry.version.timestamp).await {
                            Ok(true) => out.purged += 1,
                            Ok(false) => {}
                            Err(e) => {
                                warn!(device = %self.device, object = %entry.name, error = %e, "purge failed")
                            }
                        }
                    }
                    cmd => {
                        while inflight.len() >= REPLICATION_PUSHES_INFLIGHT_MAX {
                            if let Some(input) = inflight.next().await {
                                queue.extend(job.on_input(input));
                            }
                        }
                        let listing = match &cmd {
                            JobCommand::Push { entry, .. } => {
                                listing_local.get(&entry.name).cloned()
                            }
                            _ => None,
                        };
                        inflight.push(self.remote_command(rings, items, part, cmd, listing));
                    }
                }
            }
            if job.is_finished() && inflight.is_empty() {
                break;
            }
            match inflight.next().await {
                Some(input) => queue.extend(job.on_input(input)),
                None => break,
            }
        }
        let report = job.report();
        out.pushed += report.pushed as u64;
        out.failed_peers += report.peers_failed as u64;
        self.metrics
            .replication_pass(report.pushed as u64, out.purged);
        out
    }

    /// Performs a command that needs a peer and turns its answer into the job's input.
    async fn remote_command(
        &self,
        rings: &Rings,
        items: Items,
        part: u32,
        cmd: JobCommand,
        listing: Option<(String, ListingEntry)>,
    ) -> JobInput {
        let peer = match &cmd {
            JobCommand::FetchDigest { peer }
            | JobCommand::FetchEntries { peer, .. }
            | JobCommand::Push { peer, .. } => *peer,
            JobCommand::ReadLocal { .. } | JobCommand::Purge { .. } => {
                // Handled locally by the caller; never sent here.
                return JobInput::LocalEntries {
                    entries: Vec::new(),
                };
            }
        };
        let Some(addr) = self.peers.resolve(rings, items.ring(), peer) else {
            return JobInput::PeerFailed { peer };
        };
        let small = Duration::from_millis(SMALL_CALL_TIMEOUT_MS);
        let device = addr.device.clone();
        match cmd {
            JobCommand::FetchDigest { .. } => {
                let req = match items {
                    Items::Blobs => NodeRequest::BlobDigest {
                        device,
                        partition: part,
                    },
                    Items::Listings => NodeRequest::ListingDigest {
                        device,
                        partition: part,
                    },
                };
                match self.peers.call(&addr, &req, Body::Empty, small, None).await {
                    Ok((NodeResponse::Digest(buckets), _)) => JobInput::Digest { peer, buckets },
                    other => self.failed(peer, &addr, other.err()),
                }
            }
            JobCommand::FetchEntries { buckets, .. } => {
                let req = match items {
                    Items::Blobs => NodeRequest::BlobEntries {
                        device,
                        partition: part,
                        buckets,
                    },
                    Items::Listings => NodeRequest::ListingRecords {
                        device,
                        partition: part,
                        buckets,
                    },
                };
                match self.peers.call(&addr, &req, Body::Empty, small, None).await {
                    Ok((NodeResponse::Entries(es), _)) => JobInput::PeerEntries {
                        peer,
                        entries: es
                            .into_iter()
                            .map(|e| entry_version(e.name, e.timestamp, e.tombstone))
                            .collect(),
                    },
                    Ok((NodeResponse::Records(rs), _)) => JobInput::PeerEntries {
                        peer,
                        entries: rs
                            .into_iter()
                            .map(|(path, e)| {
                                entry_version(
                                    listing_item_name(&path, &e.name),
                                    e.timestamp,
                                    e.deleted,
                                )
                            })
                            .collect(),
                    },
                    other => self.failed(peer, &addr, other.err()),
                }
            }
            JobCommand::Push { entry, .. } => {
                let ok = match (items, listing) {
                    (Items::Blobs, _) => self.push_blob(&addr, part, &entry).await,
                    (Items::Listings, Some((path, e))) => {
                        let req = NodeRequest::MergeListing {
                            device,
                            key: ListingKey::new(part, path),
                            entries: vec![e],
                        };
                        matches!(
                            self.peers.call(&addr, &req, Body::Empty, small, None).await,
                            Ok((NodeResponse::Done, _))
                        )
                    }
                    (Items::Listings, None) => false,
                };
                JobInput::Pushed { peer, entry, ok }
            }
            JobCommand::ReadLocal { .. } | JobCommand::Purge { .. } => {
                JobInput::PeerFailed { peer }
            }
        }
    }

    fn failed(
        &self,
        peer: DeviceId,
        addr: &DeviceAddr,
        err: Option<crate::peers::PeerError>,
    ) -> JobInput {
        debug!(device = %self.device, peer = %addr.addr, error = ?err, "replication peer failed");
        JobInput::PeerFailed { peer }
    }

    /// Sends the local copy of a blob to a peer: the bytes, or a tombstone for a delete.
    async fn push_blob(&self, to: &DeviceAddr, part: u32, entry: &EntryVersion) -> bool {
        let key = BlobKey::new(part, entry.name.clone());
        if entry.version.tombstone {
            let req = NodeRequest::DeleteBlob {
                device: to.device.clone(),
                key,
                timestamp: entry.version.timestamp,
                listing: None,
            };
            let r = self
                .peers
                .call(
                    to,
                    &req,
                    Body::Empty,
                    Duration::from_millis(SMALL_CALL_TIMEOUT_MS),
                    None,
                )
                .await;
            return matches!(r, Ok((NodeResponse::Written { .. }, _)));
        }
        let (meta, reader) = match self.engine.read_blob(&key, None).await {
            Ok(Some((meta, reader))) if meta.timestamp == entry.version.timestamp => (meta, reader),
            // Overwritten or deleted meanwhile: the next pass pushes the new version.
            Ok(_) => return false,
            Err(e) => {
                warn!(device = %self.device, object = %entry.name, error = %e, "reading a copy to push failed");
                self.quarantine_if_corrupt(&key, entry, &e.to_string())
                    .await;
                return false;
            }
        };
        match push_blob(&self.peers, to, &key, &meta, reader).await {
            Ok(written) => written,
            Err(e) => {
                warn!(device = %self.device, object = %entry.name, error = %e, "local copy failed while pushing");
                self.quarantine_if_corrupt(&key, entry, &e).await;
                false
            }
        }
    }

    async fn quarantine_if_corrupt(&self, key: &BlobKey, entry: &EntryVersion, error: &str) {
        if error.contains("corrupt")
            && matches!(
                self.engine.quarantine(key, entry.version.timestamp).await,
                Ok(true)
            )
        {
            self.metrics.quarantined(1);
        }
    }
}

/// Streams a locally stored version (`meta`, read by `reader`) into `to` as it is: the
/// replicator's push and the reconstructor's revert. `Err`: the local copy failed while being
/// read (the caller decides about quarantine); `Ok(false)`: `to` did not store it.
pub(crate) async fn push_blob<R: BlobReader>(
    peers: &Peers,
    to: &DeviceAddr,
    key: &BlobKey,
    meta: &cairn_engine::BlobMeta,
    mut reader: R,
) -> Result<bool, String> {
    let (mut tx, body) = Body::channel();
    let feed = async move {
        loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return tx.finish().await.map_err(|e| e.to_string()),
                Err(e) => {
                    tx.abort(cairn_net::NetError::Remote(e.to_string())).await;
                    return Err(e.to_string());
                }
            }
        }
    };
    let req = NodeRequest::PutBlob {
        device: to.device.clone(),
        key: key.clone(),
        timestamp: meta.timestamp,
        size_bytes: meta.size_bytes,
        content_type: meta.content_type.clone(),
        user_meta: meta.user_meta.clone(),
        listing: None,
        meta_trailer: false,
        write_around: false,
    };
    let call = peers.call(
        to,
        &req,
        body,
        Duration::from_millis(BLOB_CALL_TIMEOUT_MS),
        None,
    );
    let (fed, answer) = tokio::join!(feed, call);
    fed?;
    Ok(matches!(answer, Ok((NodeResponse::Written { .. }, _))))
}

/// This node's device `device` (served at `advertised`) in `ring`, if the ring lists it.
pub(crate) fn device_in_ring(
    ring: &PartitionRing,
    device: &str,
    advertised: SocketAddr,
) -> Option<DeviceId> {
    ring.devices()
        .find(|d| {
            d.device == device
                && d.port == advertised.port()
                && d.ip.parse().ok() == Some(advertised.ip())
        })
        .map(|d| d.id)
}

/// Every digest bucket, for reading a whole partition's entries.
pub(crate) fn all_buckets() -> Vec<u16> {
    (0..cairn_engine::limits::DIGEST_BUCKETS)
        .filter_map(|b| u16::try_from(b).ok())
        .collect()
}
