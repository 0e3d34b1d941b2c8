//! The replicator: keeps every partition's replicas whole by running a [`ReplicationJob`] per
//! partition a device holds, performing the job's commands with engine calls and RPCs.
//!
//! Runs continuously per device: one *cycle* visits every partition on the device, a bounded
//! number at once; `replication_lag_seconds` reports how long ago the last cycle finished.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::{BlobKey, BlobReader, StorageEngine};
use cairn_net::Body;
use cairn_ring::DeviceId;
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

/// Replicates one device's partitions.
#[derive(Debug)]
pub struct Replicator<E> {
    device: String,
    engine: Arc<E>,
    /// This node's RPC address as the ring lists it, to find the device's own ring id.
    advertised: SocketAddr,
    peers: Arc<Peers>,
    metrics: Arc<NodeMetrics>,
}

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CycleReport {
    pub partitions: u64,
    pub pushed: u64,
    pub purged: u64,
    pub failed_peers: u64,
}

impl<E: StorageEngine> Replicator<E> {
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
        let mut last_done = Instant::now();
        loop {
            let report = self.cycle().await;
            last_done = if report.failed_peers == 0 {
                Instant::now()
            } else {
                last_done
            };
            self.metrics
                .replication_lag(&self.device, last_done.elapsed().as_secs_f64());
            if report.pushed + report.purged > 0 {
                info!(device = %self.device, ?report, "replication cycle");
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn my_id(&self, rings: &Rings) -> Option<DeviceId> {
        rings
            .object
            .devices()
            .find(|d| {
                d.device == self.device
                    && d.port == self.advertised.port()
                    && d.ip.parse().ok() == Some(self.advertised.ip())
            })
            .map(|d| d.id)
    }

    /// One pass over every partition the device holds.
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
        let total = rings.object.partitions();
        let me = self.my_id(&rings);
        let mut passes = futures::stream::iter(partitions.into_iter().filter(|&p| p < total))
            .map(|p| self.replicate_partition(&rings, me, p))
            .buffer_unordered(REPLICATION_JOBS_PER_DEVICE_MAX);
        while let Some(r) = passes.next().await {
            report.partitions += 1;
            report.pushed += r.pushed;
            report.purged += r.purged;
            report.failed_peers += r.failed_peers;
        }
        report
    }

    async fn replicate_partition(
        &self,
        rings: &Rings,
        me: Option<DeviceId>,
        part: u32,
    ) -> CycleReport {
        let mut out = CycleReport::default();
        let primaries: Vec<DeviceId> = rings.object.primary_ids(part).collect();
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
        let digest = match self.engine.blob_digest(part).await {
            Ok(d) => d.buckets,
            Err(e) => {
                warn!(device = %self.device, part, error = %e, "digest failed");
                out.failed_peers += 1;
                return out;
            }
        };
        let (mut job, cmds) = ReplicationJob::start(role, digest, &peer_ids);
        let mut queue: VecDeque<JobCommand> = cmds.into();
        let mut inflight = FuturesUnordered::new();
        loop {
            while let Some(cmd) = queue.pop_front() {
                match cmd {
                    JobCommand::ReadLocal { buckets } => {
                        let buckets = buckets.unwrap_or_else(all_buckets);
                        let input = match self.engine.blob_entries(part, &buckets).await {
                            Ok(entries) => JobInput::LocalEntries {
                                entries: entries
                                    .into_iter()
                                    .map(|e| {
                                        let bucket = cairn_engine::digest::bucket_of(&e.name);
                                        (
                                            bucket,
                                            EntryVersion {
                                                name: e.name,
                                                version: Version {
                                                    timestamp: e.timestamp,
                                                    tombstone: e.tombstone,
                                                },
                                            },
                                        )
                                    })
                                    .collect(),
                            },
                            Err(e) => {
                                // Without local entries nothing can be pushed or purged safely:
                                // fail every peer so the pass ends without purging.
                                warn!(device = %self.device, part, error = %e, "reading local entries failed");
                                for &p in &peer_ids {
                                    queue.extend(job.on_input(JobInput::PeerFailed { peer: p }));
                                }
                                JobInput::LocalEntries {
                                    entries: Vec::new(),
                                }
                            }
                        };
                        queue.extend(job.on_input(input));
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
                        inflight.push(self.remote_command(rings, part, cmd));
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
    async fn remote_command(&self, rings: &Rings, part: u32, cmd: JobCommand) -> JobInput {
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
        let Some(addr) = self.peers.resolve(rings, RingKind::Object, peer) else {
            return JobInput::PeerFailed { peer };
        };
        let small = Duration::from_millis(SMALL_CALL_TIMEOUT_MS);
        match cmd {
            JobCommand::FetchDigest { .. } => {
                let req = NodeRequest::BlobDigest {
                    device: addr.device.clone(),
                    partition: part,
                };
                match self.peers.call(&addr, &req, Body::Empty, small, None).await {
                    Ok((NodeResponse::Digest(buckets), _)) => JobInput::Digest { peer, buckets },
                    other => self.failed(peer, &addr, other.err()),
                }
            }
            JobCommand::FetchEntries { buckets, .. } => {
                let req = NodeRequest::BlobEntries {
                    device: addr.device.clone(),
                    partition: part,
                    buckets,
                };
                match self.peers.call(&addr, &req, Body::Empty, small, None).await {
                    Ok((NodeResponse::Entries(entries), _)) => JobInput::PeerEntries {
                        peer,
                        entries: entries
                            .into_iter()
                            .map(|e| {
                                let bucket = cairn_engine::digest::bucket_of(&e.name);
                                (
                                    bucket,
                                    EntryVersion {
                                        name: e.name,
                                        version: Version {
                                            timestamp: e.timestamp,
                                            tombstone: e.tombstone,
                                        },
                                    },
                                )
                            })
                            .collect(),
                    },
                    other => self.failed(peer, &addr, other.err()),
                }
            }
            JobCommand::Push { entry, .. } => {
                let ok = self.push(&addr, part, &entry).await;
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

    /// Sends the local copy of `entry` to a peer: the bytes for a blob, a tombstone for a delete.
    async fn push(&self, to: &DeviceAddr, part: u32, entry: &EntryVersion) -> bool {
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
        let (meta, mut reader) = match self.engine.read_blob(&key, None).await {
            Ok(Some((meta, reader))) if meta.timestamp == entry.version.timestamp => (meta, reader),
            // Overwritten or deleted meanwhile: the next pass pushes the new version.
            Ok(_) => return false,
            Err(e) => {
                warn!(device = %self.device, object = %entry.name, error = %e, "reading a copy to push failed");
                if matches!(e, cairn_engine::Error::Corrupt(_)) {
                    let _ = self.engine.quarantine(&key, entry.version.timestamp).await;
                    self.metrics.quarantined(1);
                }
                return false;
            }
        };
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
        };
        let call = self.peers.call(
            to,
            &req,
            body,
            Duration::from_millis(BLOB_CALL_TIMEOUT_MS),
            None,
        );
        let (fed, answer) = tokio::join!(feed, call);
        if let Err(e) = fed {
            warn!(device = %self.device, object = %entry.name, error = %e, "local copy failed while pushing");
            if e.contains("corrupt") {
                let _ = self.engine.quarantine(&key, entry.version.timestamp).await;
                self.metrics.quarantined(1);
            }
            return false;
        }
        matches!(answer, Ok((NodeResponse::Written { .. }, _)))
    }
}

fn all_buckets() -> Vec<u16> {
    (0..cairn_engine::limits::DIGEST_BUCKETS)
        .filter_map(|b| u16::try_from(b).ok())
        .collect()
}
