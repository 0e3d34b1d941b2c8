//! The reconstructor (DESIGN §4): keeps every erasure-coded object at k+m fragments. It runs
//! per device, next to the replicator, and for each EC policy:
//!
//! - **Rebuild.** For every partition where the device is a primary (slot i), it compares its
//!   blob digest with the other primaries' (the digest covers names, timestamps and
//!   tombstones, which all fragment archives of a version share). Where they differ, a name
//!   that a peer holds at a newer version than this device — lost with a disk, deleted,
//!   quarantined by the auditor as corrupt, or missed while the node was down — is rebuilt:
//!   the object is read from k other archives (decoded if need be, segment CRCs checked), each
//!   segment re-encoded, and fragment i stored locally with the version's timestamp. A newer
//!   tombstone is copied as a tombstone.
//! - **Revert.** Archives a device holds for partitions where it is not a primary (a handoff
//!   took them while a primary was down) are pushed to the primary of the slot they name and
//!   dropped here once that primary holds the version or a newer one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use cairn_engine::{BlobCommit, BlobKey, BlobMeta, BlobWriter, StorageEngine, Timestamp};
use cairn_net::Body;
use cairn_ring::{DeviceId, PartitionRing};
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::client::ec::{ArchiveLayout, EC_INDEX, FragmentFetch, archive_index};
use crate::limits::{
    BLOB_CALL_TIMEOUT_MS, EC_REBUILDS_INFLIGHT_MAX, EC_STAGED_MAX_AGE_S, SMALL_CALL_TIMEOUT_MS,
};
use crate::metrics::NodeMetrics;
use crate::peers::{DeviceAddr, Peers, RingKind, Rings};
use crate::policy::{
    Policies, STAGED_BIT, StoragePolicy, split_stored_partition, stored_partition,
};
use crate::replicator::{all_buckets, device_in_ring, push_blob};
use crate::rpc::{DIGEST_SUMS_PER_CALL_MAX, NodeRequest, NodeResponse, digest_sum};

/// What one reconstructor cycle did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconstructReport {
    /// Partitions compared with their peers.
    pub partitions: u64,
    pub rebuilt: u64,
    pub tombstones: u64,
    pub reverted: u64,
    /// Staged archives made current here because their version is current elsewhere.
    pub rolled_forward: u64,
    /// Staged archives of writes that never became current, dropped.
    pub dropped: u64,
    /// Rebuilds or reverts that failed (retried next cycle).
    pub failed: u64,
}

/// Peers' digest sums by (device, stored partition), and the peers that did not answer.
#[derive(Debug, Default)]
struct PeerSums {
    sums: HashMap<(DeviceAddr, u32), u128>,
    dead: HashSet<DeviceAddr>,
}

#[derive(Debug)]
pub struct Reconstructor<E: StorageEngine> {
    device: String,
    engine: Arc<E>,
    advertised: SocketAddr,
    peers: Arc<Peers>,
    policies: Arc<Policies>,
    metrics: Arc<NodeMetrics>,
}

impl<E: StorageEngine> Reconstructor<E> {
    pub fn new(
        device: String,
        engine: Arc<E>,
        advertised: SocketAddr,
        peers: Arc<Peers>,
        policies: Arc<Policies>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        Reconstructor {
            device,
            engine,
            advertised,
            peers,
            policies,
            metrics,
        }
    }

    /// Cycles forever, `interval` apart.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            if matches!(self.engine.health(), cairn_engine::Health::Ok) {
                let report = self.cycle().await;
                if report.rebuilt
                    + report.tombstones
                    + report.reverted
                    + report.rolled_forward
                    + report.dropped
                    + report.failed
                    > 0
                {
                    info!(device = %self.device, ?report, "reconstructor cycle");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn my_id(&self, ring: &PartitionRing) -> Option<DeviceId> {
        device_in_ring(ring, &self.device, self.advertised)
    }

    /// Every erasure-coded policy whose ring lists this device, with that ring and the
    /// device's id in it.
    fn my_ec_rings<'a>(
        &'a self,
        rings: &'a Rings,
    ) -> impl Iterator<Item = (&'a StoragePolicy, &'a PartitionRing, DeviceId)> + 'a {
        self.policies
            .iter()
            .filter(|p| p.ec().is_some())
            .filter_map(move |p| {
                let ring = rings.ring(RingKind::Policy(p.index))?;
                Some((p, ring, self.my_id(ring)?))
            })
    }

    /// One pass over every EC partition this device is a primary of or holds.
    pub async fn cycle(&self) -> ReconstructReport {
        let mut report = ReconstructReport::default();
        let rings = self.peers.rings();
        let held: BTreeSet<u32> = match self.engine.partitions().await {
            Ok(p) => p.into_iter().collect(),
            Err(e) => {
                warn!(device = %self.device, error = %e, "listing partitions failed");
                report.failed += 1;
                return report;
            }
        };
        // Staged archives first: one that should be current is promoted, not rebuilt.
        for &staged in held.iter().filter(|&&p| p & STAGED_BIT != 0) {
            let r = self.settle_staged(staged).await;
            report.rolled_forward += r.rolled_forward;
            report.dropped += r.dropped;
            report.failed += r.failed;
        }
        let peer_sums = self.peer_digest_sums().await;
        for (policy, ring, me) in self.my_ec_rings(&rings) {
            let kind = RingKind::Policy(policy.index);
            for part in 0..ring.partitions() {
                let primaries: Vec<DeviceId> = ring.primary_ids(part).collect();
                let stored = stored_partition(policy.index, part);
                match primaries.iter().position(|&d| d == me) {
                    Some(slot) => {
                        let r = self
                            .rebuild_partition(kind, stored, slot, &primaries, &peer_sums)
                            .await;
                        report.partitions += 1;
                        report.rebuilt += r.rebuilt;
                        report.tombstones += r.tombstones;
                        report.failed += r.failed;
                    }
                    None if held.contains(&stored) => {
                        let r = self.revert_partition(kind, stored, &primaries).await;
                        report.reverted += r.reverted;
                        report.failed += r.failed;
                    }
                    None => {}
                }
            }
        }
        self.metrics
            .ec_reconstructed(report.rebuilt, report.reverted);
        report
    }

    /// What the peers of this device's EC partitions report at the start of a cycle: one
    /// batched `BlobDigestSums` call per peer (instead of a digest call per partition), and
    /// the peers that did not answer, so no partition waits for a dead peer's timeout.
    async fn peer_digest_sums(&self) -> PeerSums {
        let rings = self.peers.rings();
        let mut asks: HashMap<DeviceAddr, Vec<u32>> = HashMap::new();
        for (policy, ring, me) in self.my_ec_rings(&rings) {
            let kind = RingKind::Policy(policy.index);
            for part in 0..ring.partitions() {
                let primaries: Vec<DeviceId> = ring.primary_ids(part).collect();
                if !primaries.contains(&me) {
                    continue;
                }
                for &d in primaries.iter().filter(|&&d| d != me) {
                    if let Some(addr) = self.peers.resolve(&rings, kind, d) {
                        asks.entry(addr)
                            .or_default()
                            .push(stored_partition(policy.index, part));
                    }
                }
            }
        }
        let calls = asks.into_iter().map(|(addr, partitions)| async move {
            let mut sums = Vec::with_capacity(partitions.len());
            for chunk in partitions.chunks(DIGEST_SUMS_PER_CALL_MAX) {
                let req = NodeRequest::BlobDigestSums {
                    device: addr.device.clone(),
                    partitions: chunk.to_vec(),
                };
                match self.call(&addr, req).await {
                    Ok((NodeResponse::DigestSums(got), _)) if got.len() == chunk.len() => {
                        sums.extend(chunk.iter().copied().zip(got));
                    }
                    _ => return (addr, None),
                }
            }
            (addr, Some(sums))
        });
        let mut out = PeerSums::default();
        for (addr, sums) in futures::future::join_all(calls).await {
            match sums {
                Some(sums) => {
                    for (p, sum) in sums {
                        out.sums.insert((addr.clone(), p), sum);
                    }
                }
                None => {
                    out.dead.insert(addr);
                }
            }
        }
        out
    }

    /// Staged archives left behind by a write: one whose version is current on another
    /// device is made current here too (the writer decided to commit it and then lost this
    /// device's promotion); one that nobody made current within [`EC_STAGED_MAX_AGE_S`] is
    /// dropped (its write failed).
    async fn settle_staged(&self, staged: u32) -> ReconstructReport {
        let mut out = ReconstructReport::default();
        let (policy, part) = split_stored_partition(staged);
        let kind = RingKind::Policy(policy);
        let rings = self.peers.rings();
        if rings.ring(kind).is_none() {
            return out;
        }
        let live = stored_partition(policy, part);
        let all = all_buckets();
        let entries = match self.engine.blob_entries(staged, &all).await {
            Ok(e) => e,
            Err(e) => {
                warn!(device = %self.device, staged, error = %e, "staged entries failed");
                out.failed += 1;
                return out;
            }
        };
        let (primaries, handoffs) = self.peers.placement(&rings, kind, part);
        let holders: Vec<DeviceAddr> = primaries
            .iter()
            .chain(handoffs.iter())
            .filter_map(|&d| self.peers.resolve(&rings, kind, d))
            .collect();
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        for e in entries.into_iter().filter(|e| !e.tombstone) {
            let from = BlobKey::new(staged, e.name.clone());
            let to = BlobKey::new(live, e.name.clone());
            let mut current_elsewhere = false;
            let mut superseded = false;
            for h in &holders {
                let req = NodeRequest::HeadBlob {
                    device: h.device.clone(),
                    key: to.clone(),
                };
                if let Ok((NodeResponse::Meta(Some(m)), _)) = self.call(h, req).await {
                    if m.timestamp == e.timestamp {
                        current_elsewhere = true;
                        break;
                    }
                    if m.timestamp > e.timestamp {
                        superseded = true;
                    }
                }
            }
            let result = if current_elsewhere {
                self.engine
                    .promote_blob(&from, &to, e.timestamp)
                    .await
                    .map(|o| {
                        if o == Some(cairn_engine::WriteOutcome::Applied) {
                            out.rolled_forward += 1;
                        }
                    })
            } else if superseded
                || now_micros.saturating_sub(e.timestamp.wall_micros)
                    > EC_STAGED_MAX_AGE_S * 1_000_000
            {
                // A newer version is current (this write lost), or nobody made it current.
                self.engine
                    .purge_blob(&from, e.timestamp)
                    .await
                    .map(|purged| out.dropped += u64::from(purged))
            } else {
                Ok(())
            };
            if let Err(err) = result {
                warn!(device = %self.device, object = %e.name, error = %err, "settling a staged archive failed");
                out.failed += 1;
            }
        }
        out
    }

    async fn call(
        &self,
        to: &DeviceAddr,
        req: NodeRequest,
    ) -> Result<(NodeResponse, Body), String> {
        self.peers
            .call(
                to,
                &req,
                Body::Empty,
                Duration::from_millis(SMALL_CALL_TIMEOUT_MS),
                None,
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Rebuilds what this device (slot `slot`) lacks of one partition, then stands in for
    /// the primaries that did not answer.
    async fn rebuild_partition(
        &self,
        kind: RingKind,
        stored: u32,
        slot: usize,
        primaries: &[DeviceId],
        peer_sums: &PeerSums,
    ) -> ReconstructReport {
        let (mut out, unreachable, others) = self
            .rebuild_own(kind, stored, slot, primaries, peer_sums)
            .await;
        if !unreachable.is_empty() {
            let r = self
                .stand_in(kind, stored, slot, primaries, &unreachable, &others)
                .await;
            out.rebuilt += r.rebuilt;
            out.tombstones += r.tombstones;
            out.failed += r.failed;
        }
        out
    }

    /// Rebuilds what this device lacks; returns the report, the slots whose primary did not
    /// answer, and the addresses of the other primaries.
    async fn rebuild_own(
        &self,
        kind: RingKind,
        stored: u32,
        slot: usize,
        primaries: &[DeviceId],
        peer_sums: &PeerSums,
    ) -> (ReconstructReport, Vec<usize>, Vec<DeviceAddr>) {
        let mut out = ReconstructReport::default();
        let rings = self.peers.rings();
        let local = match self.engine.blob_digest(stored).await {
            Ok(d) => d.buckets,
            Err(e) => {
                warn!(device = %self.device, stored, error = %e, "digest failed");
                out.failed += 1;
                return (out, Vec::new(), Vec::new());
            }
        };
        let local_sum = digest_sum(&local);
        let mut unreachable = Vec::new();
        let mut others: Vec<DeviceAddr> = Vec::new();
        let mut asked = Vec::new();
        for (s, &d) in primaries.iter().enumerate() {
            if s == slot {
                continue;
            }
            match self.peers.resolve(&rings, kind, d) {
                // A peer that did not answer this cycle's batched call is not waited for (a
                // timeout per partition would make a cycle with a dead peer last hours); one
                // whose sum matches ours holds the same versions and is not asked again.
                Some(peer) if !peer_sums.dead.contains(&peer) => {
                    others.push(peer.clone());
                    if peer_sums.sums.get(&(peer.clone(), stored)) != Some(&local_sum) {
                        asked.push((s, peer));
                    }
                }
                Some(peer) => {
                    others.push(peer);
                    unreachable.push(s);
                }
                None => unreachable.push(s),
            }
        }
        let digests = futures::future::join_all(asked.into_iter().map(|(s, peer)| async move {
            let req = NodeRequest::BlobDigest {
                device: peer.device.clone(),
                partition: stored,
            };
            let r = self.call(&peer, req).await;
            (s, peer, r)
        }))
        .await;
        let mut differing: BTreeSet<u16> = BTreeSet::new();
        let mut differing_peers = Vec::new();
        for (s, peer, r) in digests {
            match r {
                Ok((NodeResponse::Digest(theirs), _)) => {
                    if local == theirs {
                        continue;
                    }
                    let width = local.len().max(theirs.len());
                    for i in 0..width {
                        if local.get(i) != theirs.get(i)
                            && let Ok(b) = u16::try_from(i)
                        {
                            differing.insert(b);
                        }
                    }
                    differing_peers.push(peer);
                }
                Ok(_) | Err(_) => {
                    debug!(peer = %peer.addr, stored, "peer digest unavailable");
                    unreachable.push(s);
                }
            }
        }
        unreachable.sort_unstable();
        if differing_peers.is_empty() {
            return (out, unreachable, others);
        }
        let buckets: Vec<u16> = differing.into_iter().collect();
        let mine: BTreeMap<String, Timestamp> =
            match self.engine.blob_entries(stored, &buckets).await {
                Ok(es) => es.into_iter().map(|e| (e.name, e.timestamp)).collect(),
                Err(e) => {
                    warn!(device = %self.device, stored, error = %e, "local entries failed");
                    out.failed += 1;
                    return (out, unreachable, others);
                }
            };
        // The newest version any peer holds of each name, and whether it is a tombstone.
        let mut newest: BTreeMap<String, (Timestamp, bool)> = BTreeMap::new();
        for peer in &differing_peers {
            let req = NodeRequest::BlobEntries {
                device: peer.device.clone(),
                partition: stored,
                buckets: buckets.clone(),
            };
            if let Ok((NodeResponse::Entries(es), _)) = self.call(peer, req).await {
                for e in es {
                    let slot = newest.entry(e.name).or_insert((e.timestamp, e.tombstone));
                    if e.timestamp > slot.0 {
                        *slot = (e.timestamp, e.tombstone);
                    }
                }
            }
        }
        let wanted: Vec<(String, Timestamp, bool)> = newest
            .into_iter()
            .filter(|(name, (ts, _))| mine.get(name).is_none_or(|m| m < ts))
            .map(|(name, (ts, tomb))| (name, ts, tomb))
            .collect();
        let results = futures::stream::iter(wanted)
            .map(|(name, ts, tombstone)| {
                let others = &others;
                async move {
                    let key = BlobKey::new(stored, name);
                    if tombstone {
                        let r = self.engine.delete_blob(key, ts).await;
                        return (true, r.map(|_| ()).map_err(|e| e.to_string()));
                    }
                    (
                        false,
                        self.rebuild_one(kind, key, ts, slot, others, None).await,
                    )
                }
            })
            .buffer_unordered(EC_REBUILDS_INFLIGHT_MAX)
            .collect::<Vec<_>>()
            .await;
        for (tombstone, r) in results {
            match (tombstone, r) {
                (true, Ok(())) => out.tombstones += 1,
                (false, Ok(())) => out.rebuilt += 1,
                (_, Err(e)) => {
                    warn!(device = %self.device, stored, error = %e, "rebuilding a fragment failed");
                    out.failed += 1;
                }
            }
        }
        (out, unreachable, others)
    }

    /// Rebuilds the fragments of primaries that did not answer onto handoffs, so the
    /// partition keeps k+m fragments while a device is dead. For each such slot exactly one
    /// primary acts — the first answering slot after it — and it uses the handoff a writer
    /// would have used (the r-th live handoff for the r-th missing slot), where reads look.
    async fn stand_in(
        &self,
        kind: RingKind,
        stored: u32,
        slot: usize,
        primaries: &[DeviceId],
        unreachable: &[usize],
        others: &[DeviceAddr],
    ) -> ReconstructReport {
        let mut out = ReconstructReport::default();
        let n = primaries.len();
        let rings = self.peers.rings();
        let (_, part) = split_stored_partition(stored);
        let (_, handoffs) = self.peers.placement(&rings, kind, part);
        let handoffs: Vec<DeviceAddr> = handoffs
            .iter()
            .filter_map(|&h| self.peers.resolve(&rings, kind, h))
            .filter(|a| !self.peers.is_down(a))
            .collect();
        let answering = |s: usize| s == slot || !unreachable.contains(&s);
        // This device's own archive counts too: with m primaries dead, the others alone
        // hold only k − 1 fragments.
        let sources: Vec<DeviceAddr> = others
            .iter()
            .filter(|a| !self.peers.is_down(a))
            .cloned()
            .chain(std::iter::once(DeviceAddr {
                addr: self.advertised,
                device: self.device.clone(),
            }))
            .collect();
        let mut entries = None;
        for (rank, &missing) in unreachable.iter().enumerate() {
            let acting = crate::core::acting_slot(missing, n, answering);
            if acting != Some(slot) {
                continue;
            }
            let Some(to) = handoffs.get(rank) else {
                continue;
            };
            if entries.is_none() {
                let all = all_buckets();
                match self.engine.blob_entries(stored, &all).await {
                    Ok(es) => entries = Some(es),
                    Err(e) => {
                        warn!(device = %self.device, stored, error = %e, "local entries failed");
                        out.failed += 1;
                        return out;
                    }
                }
            }
            for e in entries.iter().flatten() {
                let key = BlobKey::new(stored, e.name.clone());
                let head = NodeRequest::HeadBlob {
                    device: to.device.clone(),
                    key: key.clone(),
                };
                match self.call(to, head).await {
                    Ok((NodeResponse::Meta(Some(m)), _)) if m.timestamp >= e.timestamp => continue,
                    Ok((NodeResponse::Meta(_), _)) => {}
                    _ => {
                        out.failed += 1;
                        continue;
                    }
                }
                let r = if e.tombstone {
                    let req = NodeRequest::DeleteBlob {
                        device: to.device.clone(),
                        key,
                        timestamp: e.timestamp,
                        listing: None,
                    };
                    match self.call(to, req).await {
                        Ok((NodeResponse::Written { .. }, _)) => {
                            out.tombstones += 1;
                            Ok(())
                        }
                        other => Err(format!("tombstone to {}: {other:?}", to.addr)),
                    }
                } else {
                    self.rebuild_one(kind, key, e.timestamp, missing, &sources, Some(to))
                        .await
                        .map(|()| out.rebuilt += 1)
                };
                if let Err(err) = r {
                    warn!(device = %self.device, stored, slot = missing, error = %err, "standing in for a dead primary failed");
                    out.failed += 1;
                }
            }
        }
        out
    }

    /// Rebuilds fragment `slot` of one object version from k other archives, into this
    /// device or onto `to` (a handoff standing in for a dead primary).
    async fn rebuild_one(
        &self,
        kind: RingKind,
        key: BlobKey,
        ts: Timestamp,
        slot: usize,
        sources: &[DeviceAddr],
        to: Option<&DeviceAddr>,
    ) -> Result<(), String> {
        // Who holds this version: the given primaries, then handoffs (which may hold slots
        // whose primary was down at write time).
        let rings = self.peers.rings();
        let (_, part) = split_stored_partition(key.partition);
        let (_, handoffs) = self.peers.placement(&rings, kind, part);
        let candidates: Vec<DeviceAddr> = sources
            .iter()
            .cloned()
            .chain(
                handoffs
                    .iter()
                    .filter_map(|&h| self.peers.resolve(&rings, kind, h)),
            )
            .collect();
        let heads = futures::future::join_all(candidates.into_iter().map(|addr| {
            let req = NodeRequest::HeadBlob {
                device: addr.device.clone(),
                key: key.clone(),
            };
            async move { (addr.clone(), self.call(&addr, req).await) }
        }))
        .await;
        let mut holders: Vec<(u8, DeviceAddr)> = Vec::new();
        let mut sample: Option<BlobMeta> = None;
        for (addr, r) in heads {
            if let Ok((NodeResponse::Meta(Some(m)), _)) = r
                && m.timestamp == ts
                && !m.tombstone
                && let Some(i) = archive_index(&m)
                && usize::from(i) != slot
            {
                holders.push((i, addr));
                sample.get_or_insert(m);
            }
        }
        let Some(sample) = sample else {
            return Err(format!("{}: no holder of version {ts}", key.name));
        };
        let layout = ArchiveLayout::from_meta(&sample)?;
        let distinct: BTreeSet<u8> = holders.iter().map(|h| h.0).collect();
        if distinct.len() < layout.params.k {
            return Err(format!(
                "{}: {} fragments of version {ts} found, {} needed",
                key.name,
                distinct.len(),
                layout.params.k
            ));
        }
        holders.sort_by_key(|h| h.0);
        let fetch = FragmentFetch::new(self.peers.clone(), key.clone(), ts, layout, holders);
        let archive = rebuilt_archive(fetch, layout, slot)?;
        let mut user_meta = sample.user_meta.clone();
        user_meta.insert(EC_INDEX.into(), slot.to_string());
        match to {
            Some(to) => {
                let req = NodeRequest::PutBlob {
                    device: to.device.clone(),
                    key: key.clone(),
                    timestamp: ts,
                    size_bytes: layout.archive_bytes(),
                    content_type: sample.content_type.clone(),
                    user_meta,
                    listing: None,
                    meta_trailer: false,
                    write_around: false,
                };
                let r = self
                    .peers
                    .call(
                        to,
                        &req,
                        archive,
                        Duration::from_millis(BLOB_CALL_TIMEOUT_MS),
                        None,
                    )
                    .await;
                match r {
                    Ok((NodeResponse::Written { .. }, _)) => Ok(()),
                    Ok((other, _)) => Err(format!("{}: unexpected answer {other:?}", key.name)),
                    Err(e) => Err(format!("{}: storing on {}: {e}", key.name, to.addr)),
                }
            }
            None => {
                let mut writer = self
                    .engine
                    .begin_blob(key.clone(), Some(layout.archive_bytes()))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut archive = archive;
                let copied: Result<(), String> = async {
                    while let Some(chunk) = archive.next_chunk().await {
                        let chunk = chunk.map_err(|e| e.to_string())?;
                        writer.write(chunk).await.map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = copied {
                    let _ = writer.abort().await;
                    return Err(format!("{}: {e}", key.name));
                }
                writer
                    .commit(BlobCommit {
                        timestamp: ts,
                        content_type: sample.content_type.clone(),
                        user_meta,
                        etag: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                debug!(device = %self.device, object = %key.name, slot, "fragment rebuilt");
                Ok(())
            }
        }
    }

    /// Pushes a handoff's archives to the primaries of the slots they name.
    async fn revert_partition(
        &self,
        kind: RingKind,
        stored: u32,
        primaries: &[DeviceId],
    ) -> ReconstructReport {
        let mut out = ReconstructReport::default();
        let rings = self.peers.rings();
        let all = all_buckets();
        let entries = match self.engine.blob_entries(stored, &all).await {
            Ok(e) => e,
            Err(e) => {
                warn!(device = %self.device, stored, error = %e, "local entries failed");
                out.failed += 1;
                return out;
            }
        };
        for entry in entries {
            let key = BlobKey::new(stored, entry.name.clone());
            let meta = match self.engine.blob_meta(&key).await {
                Ok(Some(m)) if m.timestamp == entry.timestamp => m,
                _ => continue,
            };
            // A tombstone goes to every primary; a fragment to its slot's.
            let slots: Vec<usize> = if meta.tombstone {
                (0..primaries.len()).collect()
            } else {
                match archive_index(&meta) {
                    Some(i) => vec![usize::from(i)],
                    None => continue,
                }
            };
            let mut home = true;
            for s in slots {
                let Some(to) = primaries
                    .get(s)
                    .and_then(|&d| self.peers.resolve(&rings, kind, d))
                else {
                    home = false;
                    continue;
                };
                home &= self.push_home(&key, &meta, &to).await;
            }
            if home {
                match self.engine.purge_blob(&key, meta.timestamp).await {
                    Ok(_) => out.reverted += 1,
                    Err(e) => {
                        warn!(device = %self.device, object = %key.name, error = %e, "purge failed");
                        out.failed += 1;
                    }
                }
            } else {
                out.failed += 1;
            }
        }
        out
    }

    /// Whether `to` holds this version (or newer) after the call, pushing it if needed.
    async fn push_home(&self, key: &BlobKey, meta: &BlobMeta, to: &DeviceAddr) -> bool {
        let head = NodeRequest::HeadBlob {
            device: to.device.clone(),
            key: key.clone(),
        };
        match self.call(to, head).await {
            // Home only if the primary holds this fragment (its index, not another slot's
            // archive of the same version) or something newer.
            Ok((NodeResponse::Meta(Some(m)), _))
                if m.timestamp > meta.timestamp
                    || (m.timestamp == meta.timestamp
                        && (meta.tombstone || archive_index(&m) == archive_index(meta))) =>
            {
                return true;
            }
            Ok((NodeResponse::Meta(Some(m)), _)) if m.timestamp == meta.timestamp => return false,
            Ok((NodeResponse::Meta(_), _)) => {}
            _ => return false,
        }
        if meta.tombstone {
            let req = NodeRequest::DeleteBlob {
                device: to.device.clone(),
                key: key.clone(),
                timestamp: meta.timestamp,
                listing: None,
            };
            return matches!(
                self.call(to, req).await,
                Ok((NodeResponse::Written { .. }, _))
            );
        }
        let (meta, reader) = match self.engine.read_blob(key, None).await {
            Ok(Some((m, r))) if m.timestamp == meta.timestamp => (m, r),
            _ => return false,
        };
        // A local archive that fails while read stays here: the auditor quarantines it and
        // the primary keeps what it has (or rebuilds).
        push_blob(&self.peers, to, key, &meta, reader)
            .await
            .unwrap_or(false)
    }
}

/// Fragment archive `slot` of a version, as a stream: the object is read (and decoded where
/// fragments are missing) from `fetch`, and each segment re-encoded.
fn rebuilt_archive(
    fetch: FragmentFetch,
    layout: ArchiveLayout,
    slot: usize,
) -> Result<Body, String> {
    let striper = cairn_erasure::Striper::new(layout.codec, layout.params, layout.segment_bytes)
        .map_err(|e| e.to_string())?;
    let striper = Arc::new(striper);
    let segment_bytes = usize::try_from(layout.segment_bytes).map_err(|e| e.to_string())?;
    let (mut tx, out) = Body::channel();
    tokio::spawn(async move {
        let mut object = fetch.read(0, layout.object_bytes);
        let mut segment = BytesMut::with_capacity(segment_bytes);
        let mut segments = 0u64;
        let result: Result<(), String> = async {
            loop {
                match object.next_chunk().await {
                    Some(chunk) => {
                        let mut chunk = chunk.map_err(|e| e.to_string())?;
                        while !chunk.is_empty() {
                            let take = (segment_bytes - segment.len()).min(chunk.len());
                            segment.extend_from_slice(&chunk.split_to(take));
                            if segment.len() == segment_bytes {
                                let seg = segment.split().freeze();
                                send_fragment(&striper, seg, slot, &mut tx).await?;
                                segments += 1;
                            }
                        }
                    }
                    None => {
                        // The last, short segment (or the one empty segment of an empty object).
                        if !segment.is_empty() || segments == 0 {
                            let seg = segment.split().freeze();
                            send_fragment(&striper, seg, slot, &mut tx).await?;
                        }
                        return Ok(());
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => {
                let _ = tx.finish().await;
            }
            Err(e) => tx.abort(cairn_net::NetError::Remote(e)).await,
        }
    });
    Ok(out)
}

/// Encodes one segment (off the async workers) and sends fragment `slot` on.
async fn send_fragment(
    striper: &Arc<cairn_erasure::Striper>,
    segment: bytes::Bytes,
    slot: usize,
    tx: &mut cairn_net::BodySender,
) -> Result<(), String> {
    let striper = striper.clone();
    let fragments = tokio::task::spawn_blocking(move || striper.encode_segment(&segment))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let fragment = fragments
        .get(slot)
        .ok_or_else(|| format!("the stripe has no fragment {slot}"))?;
    tx.send(bytes::Bytes::from(fragment.to_bytes()))
        .await
        .map_err(|e| e.to_string())
}
