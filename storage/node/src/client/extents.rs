//! Extent objects through the rings: what the block layer stores images in.
//!
//! An extent object lives on its partition's primaries only (never on handoffs: the replicator
//! does not move extents yet, so a copy on a handoff would be invisible to later reads). A
//! change is acknowledged once a write quorum of primaries applied it; a read needs a read
//! quorum, so it sees every acknowledged change (R + W > N): one primary sends the bytes and
//! the others of the quorum only the winning pieces' tags; if they all match, that is the
//! answer, otherwise every primary is asked for bytes and the answers are merged piece by
//! piece, highest tag winning. A device that refuses a change as fenced ends the
//! change at once: the caller's epoch is stale and must not be retried.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use cairn_engine::extent::{self, ExtentPiece};
use cairn_engine::{ExtentChange, ExtentKey, ExtentWriteOpts, PieceMeta, WriteTag};
use cairn_net::{Body, RequestId};
use cairn_ring::{DeviceId, PathHasher};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{ClientError, ClusterClient, describe, finish_in_background};
use crate::core::{majority as write_quorum, read_quorum};
use crate::limits::{EXTENT_CALL_TIMEOUT_MS, EXTENT_DIGEST_CALL_TIMEOUT_MS, EXTENT_METAS_KEYS_MAX};
use crate::peers::{DeviceAddr, PeerError, RingKind, Rings};
use crate::rpc::{NodeRequest, NodeResponse, RemoteError, WireExtentChange};

/// The account name extent objects are hashed under; no S3 or Swift account can have it.
const EXTENT_ACCOUNT: &str = ".cairn-block";

/// One device that acknowledged a change, and in which of its openings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtentReplica {
    pub addr: std::net::SocketAddr,
    pub device: String,
    pub incarnation: u64,
}

/// The devices that acknowledged one change (at least a write quorum of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentAck {
    pub replicas: Vec<ExtentReplica>,
    /// The replica set's size: a flush needs `write_quorum(of)` of `replicas` synced.
    pub of: usize,
}

/// What one extent read asks each replica for.
struct RangeRead<'a> {
    key: &'a ExtentKey,
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
    request_id: RequestId,
}

impl RangeRead<'_> {
    fn request(&self, device: &str, tags_only: bool) -> NodeRequest {
        NodeRequest::ReadExtent {
            device: device.to_string(),
            key: self.key.clone(),
            offset: self.offset,
            len_bytes: self.len_bytes,
            upto: self.upto,
            tags_only,
        }
    }
}

/// Reads of consecutive stretches this long get their bytes from consecutive primaries.
const DIGEST_ROTATE_BYTES: u64 = 1 << 20;

/// Which of `up` primaries a digest read of the stretch holding `offset` of object `object_no`
/// gets its bytes from (the others send tags only).
fn bytes_reader(object_no: u64, offset: u64, up: usize) -> usize {
    let up = up.max(1) as u64;
    // The remainder is below `up`, a usize.
    usize::try_from((object_no ^ (offset / DIGEST_ROTATE_BYTES)) % up).unwrap_or(0)
}

/// Whether primary `index` of `of` will be asked for the bytes of `[offset, offset + len)` when
/// every primary is up and reads stay within a stretch: the others may write the data around
/// their page cache. (A read crossing a stretch boundary gets all its bytes from its first
/// stretch's reader, which may then read the rest from its device: slower, never wrong.)
fn reads_bytes_of(index: usize, of: usize, object_no: u64, offset: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let first = offset / DIGEST_ROTATE_BYTES;
    let last = (offset + len - 1) / DIGEST_ROTATE_BYTES;
    // A write lies within one object, so this is a few stretches at most.
    (first..=last).any(|s| bytes_reader(object_no, s * DIGEST_ROTATE_BYTES, of) == index)
}

/// A read of one range, merged from a read quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentView {
    /// The winning pieces in offset order (stretches no piece covers are left out).
    pub pieces: Vec<ExtentPiece>,
    /// The replicas did not all answer the same: some hold a change others lack.
    pub divergent: bool,
}

impl ClusterClient {
    fn extent_key(&self, rings: &Rings, image: &str, object_no: u64) -> ExtentKey {
        let path = PathHasher::path_of(EXTENT_ACCOUNT, Some(image), Some(&object_no.to_string()));
        ExtentKey {
            partition: rings.object.partition_for(&rings.hasher, &path),
            image: image.to_string(),
            object_no,
        }
    }

    fn extent_primaries(&self, rings: &Rings, partition: u32) -> Vec<(DeviceId, DeviceAddr)> {
        rings
            .object
            .primary_ids(partition)
            .filter_map(|d| Some((d, self.peers.resolve(rings, RingKind::Object, d)?)))
            .collect()
    }

    /// Applies a change to `image`'s object `object_no` on a write quorum of its primaries.
    pub async fn change_extent(
        &self,
        image: &str,
        object_no: u64,
        change: ExtentChange,
        tag: WriteTag,
        opts: &ExtentWriteOpts,
    ) -> Result<ExtentAck, ClientError> {
        let rings = self.peers.rings();
        let key = self.extent_key(&rings, image, object_no);
        let targets = self.extent_primaries(&rings, key.partition);
        let of = rings.object.primary_ids(key.partition).count();
        let needed = write_quorum(of);
        let written = match &change {
            ExtentChange::Write { offset, data } => Some((*offset, data.len() as u64)),
            _ => None,
        };
        let (wire, body) = match change {
            ExtentChange::Write { offset, data } => (WireExtentChange::Write { offset }, data),
            ExtentChange::Trim { offset, len_bytes } => {
                (WireExtentChange::Trim { offset, len_bytes }, Bytes::new())
            }
            ExtentChange::DeleteObject => (WireExtentChange::DeleteObject, Bytes::new()),
        };
        let request_id = RequestId::random();
        let n_targets = targets.len();
        let mut calls: FuturesUnordered<_> = targets
            .into_iter()
            .enumerate()
            .map(|(i, (device, addr))| {
                let mut opts = opts.clone();
                if let Some((offset, len)) = written {
                    opts.write_around = !reads_bytes_of(i, n_targets, object_no, offset, len);
                }
                let req = NodeRequest::ChangeExtent {
                    device: addr.device.clone(),
                    key: key.clone(),
                    change: wire,
                    tag,
                    opts,
                };
                let body = if body.is_empty() {
                    Body::Empty
                } else {
                    Body::Full(body.clone())
                };
                let call = self.call_owned(
                    device,
                    addr.clone(),
                    req,
                    body,
                    EXTENT_CALL_TIMEOUT_MS,
                    request_id,
                );
                async move { (addr, call.await.1) }
            })
            .collect();
        let mut replicas = Vec::new();
        let mut last_error = String::from("no primary answered");
        while let Some((addr, result)) = calls.next().await {
            match result {
                Ok((NodeResponse::ExtentChanged { incarnation }, _)) => {
                    replicas.push(ExtentReplica {
                        addr: addr.addr,
                        device: addr.device,
                        incarnation,
                    });
                    if replicas.len() >= needed {
                        break;
                    }
                }
                Err(PeerError::Refused(RemoteError::Fenced { seen })) => {
                    finish_in_background(calls);
                    return Err(ClientError::Fenced { seen });
                }
                other => last_error = describe(&other),
            }
        }
        finish_in_background(calls);
        if replicas.len() < needed {
            return Err(ClientError::NoQuorum(format!(
                "extent change acknowledged by {} of {of} replicas: {last_error}",
                replicas.len()
            )));
        }
        Ok(ExtentAck { replicas, of })
    }

    /// Reads `[offset, offset + len_bytes)` of an object as of `upto` (`None`: the head).
    pub async fn read_extent(
        &self,
        image: &str,
        object_no: u64,
        offset: u64,
        len_bytes: u64,
        upto: Option<WriteTag>,
    ) -> Result<ExtentView, ClientError> {
        let rings = self.peers.rings();
        let key = self.extent_key(&rings, image, object_no);
        let targets = self.extent_primaries(&rings, key.partition);
        let needed = read_quorum(rings.object.primary_ids(key.partition).count());
        let request_id = RequestId::random();
        let read = RangeRead {
            key: &key,
            offset,
            len_bytes,
            upto,
            request_id,
        };
        if let Some(view) = self.read_extent_by_digest(&targets, needed, &read).await {
            return Ok(view);
        }
        // A replica failed or the quorum disagrees: ask every primary for the bytes and merge.
        let mut calls: FuturesUnordered<_> = targets
            .into_iter()
            .map(|(device, addr)| {
                let req = read.request(&addr.device, false);
                self.call_owned(
                    device,
                    addr,
                    req,
                    Body::Empty,
                    EXTENT_CALL_TIMEOUT_MS,
                    request_id,
                )
            })
            .collect();
        let mut answers: Vec<Vec<ExtentPiece>> = Vec::new();
        let mut last_error = String::from("no primary answered");
        while let Some((_, result)) = calls.next().await {
            match result {
                Ok((NodeResponse::Pieces(wire), body)) => {
                    match pieces_from_wire(wire, body).await {
                        Ok(p) => answers.push(p),
                        Err(e) => last_error = e,
                    }
                    if answers.len() >= needed {
                        break;
                    }
                }
                other => last_error = describe(&other),
            }
        }
        finish_in_background(calls);
        if answers.len() < needed {
            return Err(ClientError::NoQuorum(format!(
                "extent read answered by {} replicas, {needed} needed: {last_error}",
                answers.len()
            )));
        }
        Ok(merge_answers(answers, offset, len_bytes))
    }

    /// The common case of a read: the bytes from one primary and only the winning pieces' tags
    /// from as many others as make a read quorum. If every tag list matches the bytes' pieces,
    /// the quorum agrees and those bytes are the answer; `None` (a call failed, or replicas
    /// differ) sends the caller to the full read. Which primary sends bytes rotates with the
    /// offset, so sequential reads spread over the replicas; it is not random, so seeded
    /// simulations replay.
    async fn read_extent_by_digest(
        &self,
        targets: &[(DeviceId, DeviceAddr)],
        needed: usize,
        read: &RangeRead<'_>,
    ) -> Option<ExtentView> {
        // Replicas that failed recently are left out: the full read asks everyone anyway.
        let up: Vec<&(DeviceId, DeviceAddr)> = targets
            .iter()
            .filter(|(_, addr)| !self.peers.is_down(addr))
            .collect();
        if needed == 0 || up.len() < needed {
            return None;
        }
        let first = bytes_reader(read.key.object_no, read.offset, up.len());
        let chosen = (0..needed).map(|i| up[(first + i) % up.len()]);
        let calls = chosen.enumerate().map(|(i, (device, addr))| {
            let req = read.request(&addr.device, i > 0);
            // Shorter than a full read's timeout: a hung replica costs this once, then it
            // counts as down and the next reads choose others.
            self.call_owned(
                *device,
                addr.clone(),
                req,
                Body::Empty,
                EXTENT_DIGEST_CALL_TIMEOUT_MS,
                read.request_id,
            )
        });
        let mut answers = futures::future::join_all(calls).await.into_iter();
        let (_, Ok((NodeResponse::Pieces(wire), body))) = answers.next()? else {
            return None;
        };
        let pieces = pieces_from_wire(wire, body).await.ok()?;
        for (_, answer) in answers {
            let Ok((NodeResponse::Pieces(tags), _)) = answer else {
                return None;
            };
            let same = tags.len() == pieces.len()
                && tags.iter().zip(&pieces).all(|(t, p)| {
                    t.tag == p.tag
                        && t.offset == p.offset
                        && t.len_bytes == p.len_bytes
                        && t.data == p.data.is_some()
                });
            if !same {
                return None;
            }
        }
        Some(ExtentView {
            pieces,
            divergent: false,
        })
    }

    /// Piece metadata of objects `object_nos` of `image`, merged over a read quorum of each
    /// object's primaries (an empty list: the object does not exist).
    pub async fn extent_metas(
        &self,
        image: &str,
        object_nos: &[u64],
    ) -> Result<Vec<Vec<PieceMeta>>, ClientError> {
        let rings = self.peers.rings();
        let keys: Vec<ExtentKey> = object_nos
            .iter()
            .map(|&o| self.extent_key(&rings, image, o))
            .collect();
        // Each device gets one call per batch listing the objects it holds.
        let mut per_device: BTreeMap<DeviceId, (DeviceAddr, Vec<usize>)> = BTreeMap::new();
        let mut holders = vec![0usize; keys.len()];
        for (i, key) in keys.iter().enumerate() {
            for (device, addr) in self.extent_primaries(&rings, key.partition) {
                per_device
                    .entry(device)
                    .or_insert((addr, Vec::new()))
                    .1
                    .push(i);
                holders[i] += 1;
            }
        }
        let request_id = RequestId::random();
        let mut calls = FuturesUnordered::new();
        for (device, (addr, idx)) in per_device {
            for batch in idx.chunks(EXTENT_METAS_KEYS_MAX) {
                let req = NodeRequest::ExtentMetas {
                    device: addr.device.clone(),
                    keys: batch.iter().map(|&i| keys[i].clone()).collect(),
                };
                let batch = batch.to_vec();
                let call = self.call_owned(
                    device,
                    addr.clone(),
                    req,
                    Body::Empty,
                    EXTENT_CALL_TIMEOUT_MS,
                    request_id,
                );
                calls.push(async move { (batch, call.await.1) });
            }
        }
        let mut merged: Vec<BTreeSet<MetaOrd>> = vec![BTreeSet::new(); keys.len()];
        let mut answered = vec![0usize; keys.len()];
        let mut last_error = String::from("no primary answered");
        while let Some((batch, result)) = calls.next().await {
            match result {
                Ok((NodeResponse::PieceMetas(lists), _)) if lists.len() == batch.len() => {
                    for (i, list) in batch.into_iter().zip(lists) {
                        answered[i] += 1;
                        merged[i].extend(list.into_iter().map(MetaOrd));
                    }
                }
                other => last_error = describe(&other),
            }
        }
        for (i, n) in answered.iter().enumerate() {
            if *n < read_quorum(holders[i]) {
                return Err(ClientError::NoQuorum(format!(
                    "piece metadata of object {} answered by {n} of {} replicas: {last_error}",
                    object_nos[i], holders[i]
                )));
            }
        }
        Ok(merged
            .into_iter()
            .map(|set| set.into_iter().map(|m| m.0).collect())
            .collect())
    }

    /// Syncs the devices named by acknowledgements: returns each device's incarnation, or the
    /// reason it could not be synced.
    pub async fn sync_extent_replicas(
        &self,
        replicas: &[(std::net::SocketAddr, String)],
    ) -> Vec<((std::net::SocketAddr, String), Result<u64, String>)> {
        let request_id = RequestId::random();
        let calls: FuturesUnordered<_> = replicas
            .iter()
            .map(|(addr, device)| {
                let target = DeviceAddr {
                    addr: *addr,
                    device: device.clone(),
                };
                let peers = self.peers.clone();
                async move {
                    let req = NodeRequest::SyncExtents {
                        device: target.device.clone(),
                    };
                    let r = peers
                        .call(
                            &target,
                            &req,
                            Body::Empty,
                            Duration::from_millis(EXTENT_CALL_TIMEOUT_MS),
                            Some(request_id),
                        )
                        .await;
                    let out = match r {
                        Ok((NodeResponse::Synced { incarnation }, _)) => Ok(incarnation),
                        other => Err(describe(&other)),
                    };
                    ((target.addr, target.device), out)
                }
            })
            .collect();
        calls.collect().await
    }

    /// Raises `image`'s fence to `epoch` on every device of the object ring, and checks that
    /// every partition has a write quorum of fenced primaries: after that, no change tagged
    /// with an older epoch can reach a write quorum anywhere.
    pub async fn fence_image(&self, image: &str, epoch: u64) -> Result<(), ClientError> {
        let rings = self.peers.rings();
        let request_id = RequestId::random();
        let calls: FuturesUnordered<_> = rings
            .object
            .devices()
            .filter_map(|d| Some((d.id, self.peers.resolve(&rings, RingKind::Object, d.id)?)))
            .map(|(device, addr)| {
                let req = NodeRequest::Fence {
                    device: addr.device.clone(),
                    image: image.to_string(),
                    epoch,
                };
                self.call_owned(
                    device,
                    addr,
                    req,
                    Body::Empty,
                    EXTENT_CALL_TIMEOUT_MS,
                    request_id,
                )
            })
            .collect();
        let results: Vec<_> = calls.collect().await;
        let mut fenced = BTreeSet::new();
        let mut last_error = String::from("no device answered");
        for (device, result) in results {
            match result {
                Ok((NodeResponse::Fence { epoch: held }, _)) if held == epoch => {
                    fenced.insert(device);
                }
                Ok((NodeResponse::Fence { epoch: held }, _)) => {
                    return Err(ClientError::Fenced { seen: held });
                }
                other => last_error = describe(&other),
            }
        }
        for partition in 0..rings.object.partitions() {
            let primaries: Vec<DeviceId> = rings.object.primary_ids(partition).collect();
            let ok = primaries.iter().filter(|d| fenced.contains(d)).count();
            if ok < write_quorum(primaries.len()) {
                return Err(ClientError::NoQuorum(format!(
                    "fence of {image} at epoch {epoch} reached {ok} of {} primaries of partition {partition}: {last_error}",
                    primaries.len()
                )));
            }
        }
        Ok(())
    }
}

/// Piece metadata ordered by tag then range, for de-duplicating answers from replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MetaOrd(PieceMeta);

impl PartialOrd for MetaOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MetaOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.tag, self.0.offset, self.0.len_bytes, self.0.data).cmp(&(
            other.0.tag,
            other.0.offset,
            other.0.len_bytes,
            other.0.data,
        ))
    }
}

async fn pieces_from_wire(
    wire: Vec<crate::rpc::WirePiece>,
    body: Body,
) -> Result<Vec<ExtentPiece>, String> {
    let expected: u64 = wire.iter().filter(|p| p.data).map(|p| p.len_bytes).sum();
    let cap = usize::try_from(expected).map_err(|_| "read answer too large".to_string())?;
    let bytes = body
        .collect(cap)
        .await
        .map_err(|e| format!("extent read body: {e}"))?;
    if bytes.len() as u64 != expected {
        return Err(format!(
            "extent read body has {} bytes, pieces announce {expected}",
            bytes.len()
        ));
    }
    let mut at = 0usize;
    let mut out = Vec::with_capacity(wire.len());
    for p in wire {
        let data = if p.data {
            let len = usize::try_from(p.len_bytes).map_err(|_| "piece too large".to_string())?;
            let d = bytes.slice(at..at + len);
            at += len;
            Some(d)
        } else {
            None
        };
        out.push(ExtentPiece {
            tag: p.tag,
            offset: p.offset,
            len_bytes: p.len_bytes,
            data,
        });
    }
    Ok(out)
}

/// Merges replicas' winning pieces: for each byte the highest tag any replica holds wins.
pub fn merge_answers(answers: Vec<Vec<ExtentPiece>>, offset: u64, len_bytes: u64) -> ExtentView {
    let divergent = answers.windows(2).any(|w| {
        w[0].len() != w[1].len() || w[0].iter().zip(&w[1]).any(|(a, b)| a.meta() != b.meta())
    });
    let all: Vec<ExtentPiece> = answers.into_iter().flatten().collect();
    let pieces = extent::paint(&all, offset, len_bytes, None)
        .into_iter()
        .filter_map(|(s, e, p)| p.and_then(|p| p.clip(s, e - s)))
        .collect();
    ExtentView { pieces, divergent }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(epoch: u64, seq: u64, offset: u64, data: &[u8]) -> ExtentPiece {
        ExtentPiece {
            tag: WriteTag { epoch, seq },
            offset,
            len_bytes: data.len() as u64,
            data: Some(Bytes::copy_from_slice(data)),
        }
    }

    /// Exactly the primary a digest read takes the bytes from writes through its cache: for one
    /// stretch one primary, for a write spanning stretches each of theirs.
    #[test]
    fn the_primary_that_serves_reads_keeps_the_data_cached() {
        const M: u64 = DIGEST_ROTATE_BYTES;
        for object_no in 0..6u64 {
            for offset in [0, 4096, M - 4096, M, 2 * M + 100, 3 * M] {
                let reader = bytes_reader(object_no, offset, 3);
                for i in 0..3 {
                    assert_eq!(reads_bytes_of(i, 3, object_no, offset, 4096), i == reader);
                }
            }
            // Spanning two stretches: both readers keep it cached, the third does not.
            let readers = [bytes_reader(object_no, 0, 3), bytes_reader(object_no, M, 3)];
            for i in 0..3 {
                assert_eq!(
                    reads_bytes_of(i, 3, object_no, M - 4096, 8192),
                    readers.contains(&i)
                );
            }
            // Four stretches: every primary reads some of it.
            assert!((0..3).all(|i| reads_bytes_of(i, 3, object_no, 0, 4 * M)));
        }
    }

    #[test]
    fn merge_takes_each_byte_from_the_newest_replica() {
        // Replica A missed write 2, replica B missed write 1: the union has both.
        let a = vec![piece(1, 1, 0, b"aaaa")];
        let b = vec![piece(1, 2, 2, b"bbbb")];
        let v = merge_answers(vec![a, b], 0, 8);
        assert!(v.divergent);
        assert_eq!(extent::assemble(&v.pieces, 0, 8).to_bytes(), b"aabbbb\0\0");
        let same = merge_answers(
            vec![vec![piece(1, 1, 0, b"x")], vec![piece(1, 1, 0, b"x")]],
            0,
            1,
        );
        assert!(!same.divergent);
    }
}
