//! Erasure-coded objects (DESIGN §4): an object of an EC policy is cut into segments, each
//! segment into k data + m parity fragments ([`cairn_erasure::Striper`]), and fragment `i` of
//! every segment goes, one after another, into the **fragment archive** that the policy ring's
//! `i`-th primary of the object's partition stores as an ordinary blob (Swift's layout). The
//! archive's metadata names its index, the object's size, MD5 and the scheme; every fragment
//! in it carries its own header and CRC32C, so a read checks what it decodes.
//!
//! - A PUT streams the body through the encoder to the k+m archives at once and succeeds when
//!   the policy's write quorum (at least k+1) of them is durable. The MD5 is known only at the
//!   end, so it travels in the `PutBlob` body's metadata trailer.
//! - A HEAD asks every slot; the newest version with at least k distinct fragments wins (a
//!   newer tombstone hides it). Fewer than n − W + 1 answers are not enough to say "absent".
//! - A GET streams the k archives it needs (data fragments first: no decoding), segment by
//!   segment, only over the segments the range touches; a fragment that fails or arrives
//!   corrupt is replaced by another index and the segment decoded.
//! - A DELETE writes tombstones to every slot and needs the write quorum.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_engine::{BlobKey, BlobMeta, Timestamp};
use cairn_erasure::{CodecId, EcParams, Fragment, HEADER_LEN, decode_segment, shard_len};
use cairn_net::{Body, BodySender, NetError, RequestId};
use cairn_ring::{DeviceId, PathHasher};
use md5::{Digest, Md5};

use crate::body_digest::{BodyDigest, BodyDigestCell};
use cairn_engine::chunk::Crc32cHasher;
use tracing::{debug, warn};

use super::{ClientError, ClusterClient, ObjectPut, Written};
use crate::core::{ArchiveAnswer, EcReadDecision, decide_read};
use crate::limits::{BLOB_CALL_TIMEOUT_MS, EC_DOWN_PROBE_TIMEOUT_MS, SMALL_CALL_TIMEOUT_MS};
use crate::peers::{DeviceAddr, PeerError, Peers, RingKind};
use crate::policy::{EcScheme, StoragePolicy, staged_partition, stored_partition};
use crate::rpc::{NodeRequest, NodeResponse, RemoteError};
use crate::service::{LISTING_ETAG_OVERRIDE, LISTING_SIZE_OVERRIDE};

/// Archive metadata: this archive's fragment index.
pub const EC_INDEX: &str = "sys-ec-index";
/// Archive metadata: the object's size in bytes.
pub const EC_OBJECT_BYTES: &str = "sys-ec-object-bytes";
/// Archive metadata (from the trailer): the object's MD5, hex.
pub const EC_OBJECT_ETAG: &str = "sys-ec-object-etag";
/// Archive metadata: `<codec> <k> <m> <segment bytes>`, the layout the archive was cut with.
pub const EC_SCHEME: &str = "sys-ec-scheme";

/// How an object's segments sit in each fragment archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLayout {
    pub object_bytes: u64,
    pub codec: CodecId,
    pub params: EcParams,
    pub segment_bytes: u64,
}

impl ArchiveLayout {
    pub fn new(object_bytes: u64, scheme: &EcScheme) -> ArchiveLayout {
        ArchiveLayout {
            object_bytes,
            codec: scheme.codec,
            params: scheme.params,
            segment_bytes: scheme.segment_bytes,
        }
    }

    /// Segments of the object (an empty object has one empty segment).
    pub fn segments(&self) -> u64 {
        self.object_bytes.div_ceil(self.segment_bytes).max(1)
    }

    /// Real bytes of segment `s`.
    pub fn segment_len(&self, s: u64) -> u64 {
        let start = s * self.segment_bytes;
        self.object_bytes
            .saturating_sub(start)
            .min(self.segment_bytes)
    }

    /// Encoded bytes of one fragment of segment `s` (header and shard).
    pub fn fragment_len(&self, s: u64) -> u64 {
        (HEADER_LEN + shard_len(self.segment_len(s), self.params.k)) as u64
    }

    /// Where segment `s`'s fragment starts in an archive (every segment but the last is full).
    pub fn archive_offset(&self, s: u64) -> u64 {
        s * (HEADER_LEN + shard_len(self.segment_bytes, self.params.k)) as u64
    }

    pub fn archive_bytes(&self) -> u64 {
        let last = self.segments() - 1;
        self.archive_offset(last) + self.fragment_len(last)
    }

    fn scheme_value(&self) -> String {
        format!(
            "{} {} {} {}",
            self.codec, self.params.k, self.params.m, self.segment_bytes
        )
    }

    /// The layout an archive's metadata records.
    pub fn from_meta(meta: &BlobMeta) -> Result<ArchiveLayout, String> {
        let get = |k: &str| {
            meta.user_meta
                .get(k)
                .ok_or_else(|| format!("fragment archive lacks {k}"))
        };
        let object_bytes: u64 = get(EC_OBJECT_BYTES)?
            .parse()
            .map_err(|_| format!("bad {EC_OBJECT_BYTES}"))?;
        let scheme = get(EC_SCHEME)?;
        let parts: Vec<&str> = scheme.split(' ').collect();
        let [codec, k, m, seg] = parts[..] else {
            return Err(format!("bad {EC_SCHEME} {scheme:?}"));
        };
        let bad = || format!("bad {EC_SCHEME} {scheme:?}");
        let layout = ArchiveLayout {
            object_bytes,
            codec: codec.parse().map_err(|_| bad())?,
            params: EcParams::new(k.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?),
            segment_bytes: seg.parse().map_err(|_| bad())?,
        };
        if layout.segment_bytes == 0
            || layout.params.k == 0
            || layout.segment_bytes > cairn_erasure::MAX_SEGMENT_BYTES
        {
            return Err(bad());
        }
        Ok(layout)
    }
}

/// The fragment index an archive's metadata records.
pub fn archive_index(meta: &BlobMeta) -> Option<u8> {
    meta.user_meta.get(EC_INDEX)?.parse().ok()
}

/// An archive's metadata as the object's: its size and MD5, without the `sys-ec-*` keys.
pub fn object_meta(archive: &BlobMeta) -> Result<BlobMeta, String> {
    let mut meta = archive.clone();
    if archive.tombstone {
        return Ok(meta);
    }
    let layout = ArchiveLayout::from_meta(archive)?;
    meta.size_bytes = layout.object_bytes;
    meta.etag = archive
        .user_meta
        .get(EC_OBJECT_ETAG)
        .cloned()
        .ok_or_else(|| format!("fragment archive lacks {EC_OBJECT_ETAG}"))?;
    meta.user_meta.retain(|k, _| !k.starts_with("sys-ec-"));
    Ok(meta)
}

/// Where an EC object's archives live.
struct Placement {
    kind: RingKind,
    key: BlobKey,
    /// Slot i's primary device (fragment index i).
    primaries: Vec<DeviceId>,
    handoffs: Vec<DeviceId>,
}

/// An EC object version found by a HEAD, ready to be read.
#[derive(Debug)]
pub struct FragmentFetch {
    peers: Arc<Peers>,
    key: BlobKey,
    timestamp: Timestamp,
    layout: ArchiveLayout,
    /// Holders of this version's archives, data indexes first; an index may appear twice.
    holders: Vec<(u8, DeviceAddr)>,
}

impl ClusterClient {
    fn ec_placement(
        &self,
        policy: &StoragePolicy,
        scheme: &EcScheme,
        name: &str,
    ) -> Result<Placement, ClientError> {
        let rings = self.peers.rings();
        let kind = RingKind::Policy(policy.index);
        let ring = rings.ring(kind).ok_or_else(|| {
            ClientError::Invalid(format!("storage policy {} has no ring loaded", policy.name))
        })?;
        let n = scheme.params.total();
        if ring.replicas() != n as f64 {
            return Err(ClientError::Invalid(format!(
                "the ring of storage policy {} has {} replicas; {}+{} needs {n}",
                policy.name,
                ring.replicas(),
                scheme.params.k,
                scheme.params.m
            )));
        }
        let partition = ring.partition_for(&rings.hasher, name);
        let (primaries, handoffs) = self.peers.placement(&rings, kind, partition);
        Ok(Placement {
            kind,
            key: BlobKey::new(stored_partition(policy.index, partition), name),
            primaries,
            handoffs,
        })
    }

    /// One device per slot: the primary, or for a primary known to be down the next handoff
    /// not known to be down (so a write lands k+m fragments whenever enough devices live).
    fn ec_targets(&self, p: &Placement) -> Vec<(usize, DeviceId, DeviceAddr)> {
        let rings = self.peers.rings();
        let mut spare = p.handoffs.iter().copied();
        let mut out = Vec::with_capacity(p.primaries.len());
        for (slot, &d) in p.primaries.iter().enumerate() {
            let addr = self.peers.resolve(&rings, p.kind, d);
            match addr {
                Some(a) if !self.peers.is_down(&a) => out.push((slot, d, a)),
                _ => {
                    let substitute = spare.by_ref().find_map(|h| {
                        let a = self.peers.resolve(&rings, p.kind, h)?;
                        (!self.peers.is_down(&a)).then_some((h, a))
                    });
                    if let Some((h, a)) = substitute {
                        out.push((slot, h, a));
                    }
                }
            }
        }
        out
    }

    /// Stores an object of an erasure-coded policy.
    pub(crate) async fn put_ec(
        &self,
        put: ObjectPut,
        policy: &StoragePolicy,
        scheme: &EcScheme,
        body: Body,
    ) -> Result<Written, ClientError> {
        let name = PathHasher::path_of(&put.account, Some(&put.container), Some(&put.object));
        let placement = self.ec_placement(policy, scheme, &name)?;
        let rings = self.peers.rings();
        let listings = self.listing_targets(&rings, &put.account, &put.container);
        let layout = ArchiveLayout::new(put.size_bytes, scheme);
        let timestamp = self.now();
        let request_id = RequestId::random();
        tracing::Span::current().record("request_id", tracing::field::display(request_id));
        let mut meta = put.user_meta.clone();
        meta.insert(EC_SCHEME.into(), layout.scheme_value());
        meta.insert(EC_OBJECT_BYTES.into(), put.size_bytes.to_string());
        meta.entry(LISTING_SIZE_OVERRIDE.into())
            .or_insert_with(|| put.size_bytes.to_string());
        let etag_override_given = meta.contains_key(LISTING_ETAG_OVERRIDE);

        let targets = self.ec_targets(&placement);
        if targets.len() < scheme.write_quorum {
            return Err(ClientError::NoQuorum(format!(
                "only {} of {} fragment devices are reachable; the write quorum is {}",
                targets.len(),
                scheme.params.total(),
                scheme.write_quorum
            )));
        }
        let n = scheme.params.total();
        let mut senders: Vec<Option<BodySender>> = (0..n).map(|_| None).collect();
        let staged = BlobKey::new(staged_partition(placement.key.partition), name.clone());
        let mut calls = Vec::with_capacity(targets.len());
        for (slot, device, addr) in targets {
            let (tx, rx) = Body::channel();
            senders[slot] = Some(tx);
            let mut user_meta = meta.clone();
            user_meta.insert(EC_INDEX.into(), slot.to_string());
            // Phase 1 stages the archive: the version it replaces stays current until a
            // write quorum holds the new one.
            let req = NodeRequest::PutBlob {
                device: addr.device.clone(),
                key: staged.clone(),
                timestamp,
                size_bytes: layout.archive_bytes(),
                content_type: put.content_type.clone(),
                user_meta,
                listing: None,
                meta_trailer: true,
                write_around: false,
            };
            let primary = placement.primaries.get(slot) == Some(&device);
            let call = self.call_owned(
                device,
                addr.clone(),
                req,
                rx,
                BLOB_CALL_TIMEOUT_MS,
                request_id,
            );
            calls.push((primary, slot, addr, tokio::spawn(call)));
        }

        let encoded = encode_into(&layout, scheme, body, put.digest.as_ref(), &mut senders).await;
        let (etag, archive_crc32c) = match encoded {
            Ok(v) => v,
            Err(e) => {
                for s in senders.into_iter().flatten() {
                    s.abort(NetError::Remote(e.to_string())).await;
                }
                return Err(e);
            }
        };
        let mut trailer = put.digest.as_ref().map(|c| c.meta()).unwrap_or_default();
        trailer.insert(EC_OBJECT_ETAG.to_string(), etag.clone());
        if !etag_override_given {
            trailer.insert(LISTING_ETAG_OVERRIDE.to_string(), etag.clone());
        }
        let md5: [u8; 16] = hex::decode(&etag)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ClientError::Invalid(format!("bad MD5 {etag}")))?;
        for (slot, s) in senders.into_iter().enumerate() {
            let (Some(mut s), Some(&crc32c)) = (s, archive_crc32c.get(slot)) else {
                continue;
            };
            // An archive's etag is the object's MD5 (nothing asks for an archive's own); its
            // CRC32C lets the node check the archive bytes it received.
            let mut trailer = trailer.clone();
            BodyDigest { md5, crc32c }.insert_into(&mut trailer);
            let trailer = Bytes::from(
                postcard::to_allocvec(&trailer).map_err(|e| ClientError::Invalid(e.to_string()))?,
            );
            if s.send(trailer).await.is_ok() {
                let _ = s.finish().await;
            }
        }
        let mut stored = Vec::new();
        let mut last_error = String::from("no fragment device answered");
        for (primary, slot, addr, call) in calls {
            match call.await {
                Ok((_, Ok((NodeResponse::Written { .. }, _)))) => {
                    stored.push((primary, slot, addr))
                }
                Ok((_, other)) => last_error = super::describe(&other),
                Err(e) => last_error = e.to_string(),
            }
        }
        if stored.len() < scheme.write_quorum {
            // The staged archives stay invisible; the reconstructor drops them later.
            return if last_error.contains("disk full") {
                Err(ClientError::DiskFull)
            } else {
                Err(ClientError::NoQuorum(format!(
                    "{} of {n} fragments stored, {} needed: {last_error}",
                    stored.len(),
                    scheme.write_quorum
                )))
            };
        }
        // Phase 2: a write quorum holds the archives; make them current everywhere they are.
        let promotes = stored.into_iter().map(|(primary, slot, addr)| {
            let req = NodeRequest::PromoteBlob {
                device: addr.device.clone(),
                from: staged.clone(),
                to: placement.key.clone(),
                timestamp,
                listing: listings.get(slot % listings.len().max(1)).cloned(),
            };
            let peers = self.peers.clone();
            async move {
                let r = peers
                    .call(
                        &addr,
                        &req,
                        Body::Empty,
                        Duration::from_millis(SMALL_CALL_TIMEOUT_MS),
                        Some(request_id),
                    )
                    .await;
                (primary, r)
            }
        });
        let mut acks = 0usize;
        let mut strict = true;
        for (primary, r) in futures::future::join_all(promotes).await {
            match r {
                Ok((NodeResponse::Written { .. }, _)) => {
                    acks += 1;
                    strict &= primary;
                }
                Ok((other, _)) => last_error = format!("unexpected answer {other:?}"),
                Err(e) => last_error = e.to_string(),
            }
        }
        if acks >= scheme.write_quorum {
            Ok(Written { timestamp, strict })
        } else {
            // Archives promoted on some devices are rolled forward on the others by the
            // reconstructor (it promotes a staged version that is current elsewhere).
            Err(ClientError::NoQuorum(format!(
                "{acks} of {n} fragments made current, {} needed: {last_error}",
                scheme.write_quorum
            )))
        }
    }

    /// Deletes an object of an erasure-coded policy: a tombstone in every slot.
    pub(crate) async fn delete_ec(
        &self,
        account: &str,
        container: &str,
        object: &str,
        policy: &StoragePolicy,
        scheme: &EcScheme,
    ) -> Result<Written, ClientError> {
        let name = PathHasher::path_of(account, Some(container), Some(object));
        let placement = self.ec_placement(policy, scheme, &name)?;
        let rings = self.peers.rings();
        let listings = self.listing_targets(&rings, account, container);
        let timestamp = self.now();
        let request_id = RequestId::random();
        let calls: Vec<_> = self
            .ec_targets(&placement)
            .into_iter()
            .map(|(slot, device, addr)| {
                let primary = placement.primaries.get(slot) == Some(&device);
                let req = NodeRequest::DeleteBlob {
                    device: addr.device.clone(),
                    key: placement.key.clone(),
                    timestamp,
                    listing: listings.get(slot % listings.len().max(1)).cloned(),
                };
                let call = self.call_owned(
                    device,
                    addr,
                    req,
                    Body::Empty,
                    SMALL_CALL_TIMEOUT_MS,
                    request_id,
                );
                (primary, call)
            })
            .collect();
        let mut acks = 0;
        let mut strict = true;
        let mut last_error = String::from("no fragment device answered");
        let results = futures::future::join_all(
            calls
                .into_iter()
                .map(|(primary, call)| async move { (primary, call.await) }),
        )
        .await;
        for (primary, (_, r)) in results {
            match r {
                Ok((NodeResponse::Written { .. }, _)) => {
                    acks += 1;
                    strict &= primary;
                }
                other => last_error = super::describe(&other),
            }
        }
        if acks >= scheme.write_quorum {
            Ok(Written { timestamp, strict })
        } else {
            Err(ClientError::NoQuorum(format!(
                "{acks} tombstones stored, {} needed: {last_error}",
                scheme.write_quorum
            )))
        }
    }

    /// The newest readable version of an EC object: `None` when absent or deleted.
    pub(crate) async fn head_ec(
        &self,
        account: &str,
        container: &str,
        object: &str,
        policy: &StoragePolicy,
        scheme: &EcScheme,
    ) -> Result<Option<(BlobMeta, FragmentFetch)>, ClientError> {
        let name = PathHasher::path_of(account, Some(container), Some(object));
        let placement = self.ec_placement(policy, scheme, &name)?;
        let answers = self.ec_archive_metas(&placement, scheme.params.m).await;
        let answered = answers.iter().filter(|(_, _, m)| m.is_ok()).count();
        let mut last_error = String::from("no fragment device answered");
        let mut held: Vec<(u8, DeviceAddr, BlobMeta)> = Vec::new();
        for (slot, addr, meta) in answers {
            match meta {
                Ok(Some(m)) => {
                    let index = if m.tombstone {
                        u8::try_from(slot).unwrap_or(u8::MAX)
                    } else {
                        match archive_index(&m) {
                            Some(i) => i,
                            None => continue,
                        }
                    };
                    held.push((index, addr, m));
                }
                Ok(None) => {}
                Err(e) => last_error = e,
            }
        }
        let summary: Vec<ArchiveAnswer<Timestamp>> = held
            .iter()
            .map(|(i, _, m)| (*i, m.timestamp, m.tombstone))
            .collect();
        let (k, m) = (scheme.params.k, scheme.params.m);
        let ts = match decide_read(&summary, answered, k, m, scheme.write_quorum) {
            EcReadDecision::Found(ts) => ts,
            EcReadDecision::Absent => return Ok(None),
            EcReadDecision::Unavailable(why) => {
                return Err(ClientError::NoQuorum(format!("{why}: {last_error}")));
            }
        };
        let mut holders: Vec<(u8, DeviceAddr, BlobMeta)> =
            held.into_iter().filter(|h| h.2.timestamp == ts).collect();
        holders.sort_by_key(|h| h.0);
        let Some(archive) = holders.first().map(|h| h.2.clone()) else {
            return Err(ClientError::NoQuorum("no holder left".into()));
        };
        let meta = object_meta(&archive).map_err(ClientError::Invalid)?;
        let layout = ArchiveLayout::from_meta(&archive).map_err(ClientError::Invalid)?;
        let holders: Vec<(u8, DeviceAddr)> = holders.into_iter().map(|(i, a, _)| (i, a)).collect();
        Ok(Some((
            meta,
            FragmentFetch {
                peers: self.peers.clone(),
                key: placement.key.clone(),
                timestamp: ts,
                layout,
                holders,
            },
        )))
    }

    /// Every slot's archive metadata: `(slot, device, answer)`. A slot whose primary fails is
    /// asked again at a handoff, which holds the fragment if the primary was down at write time.
    async fn ec_archive_metas(
        &self,
        p: &Placement,
        parity: usize,
    ) -> Vec<(usize, DeviceAddr, Result<Option<BlobMeta>, String>)> {
        let rings = self.peers.rings();
        let request_id = RequestId::random();
        let ask = |addr: DeviceAddr, timeout_ms: u64| {
            let peers = self.peers.clone();
            let key = p.key.clone();
            async move {
                let req = NodeRequest::HeadBlob {
                    device: addr.device.clone(),
                    key,
                };
                let r = peers
                    .call(
                        &addr,
                        &req,
                        Body::Empty,
                        Duration::from_millis(timeout_ms),
                        Some(request_id),
                    )
                    .await;
                let r = match r {
                    Ok((NodeResponse::Meta(m), _)) => Ok(m),
                    Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                (addr, r)
            }
        };
        // A primary known to be down is still asked, briefly (it may be back: a read must
        // not settle for fewer than k fragments when k are there), and a handoff is asked
        // for its slot at the same time.
        let primaries: Vec<(usize, DeviceAddr, bool)> = p
            .primaries
            .iter()
            .enumerate()
            .filter_map(|(slot, &d)| {
                let addr = self.peers.resolve(&rings, p.kind, d)?;
                let down = self.peers.is_down(&addr);
                Some((slot, addr, down))
            })
            .collect();
        let known_down = primaries.iter().filter(|(_, _, down)| *down).count();
        let mut handoffs = p
            .handoffs
            .iter()
            .filter_map(|&h| self.peers.resolve(&rings, p.kind, h))
            .filter(|a| !self.peers.is_down(a));
        let firsts = primaries.into_iter().map(|(slot, addr, down)| {
            let timeout = if down {
                EC_DOWN_PROBE_TIMEOUT_MS
            } else {
                SMALL_CALL_TIMEOUT_MS
            };
            let ask = &ask;
            async move { (slot, ask(addr, timeout).await) }
        });
        // The first m live handoffs are always asked too: a write acknowledged while
        // primaries were down may have its fragments there, and those primaries may be back
        // (answering with the older version) before the archives were reverted home.
        let early: Vec<DeviceAddr> = handoffs.by_ref().take(known_down.max(parity)).collect();
        let (firsts, early) = futures::future::join(
            futures::future::join_all(firsts),
            futures::future::join_all(early.into_iter().map(|a| ask(a, SMALL_CALL_TIMEOUT_MS))),
        )
        .await;
        let mut out = Vec::new();
        let mut failed = 0usize;
        for (slot, (addr, r)) in firsts {
            failed += usize::from(r.is_err());
            out.push((slot, addr, r));
        }
        // Handoffs may hold fragments of slots whose primary failed: as many as failed.
        let late: Vec<DeviceAddr> = handoffs
            .take(failed.saturating_sub(known_down.max(parity)))
            .collect();
        let late =
            futures::future::join_all(late.into_iter().map(|a| ask(a, SMALL_CALL_TIMEOUT_MS)))
                .await;
        for (addr, r) in early.into_iter().chain(late) {
            // A handoff answers for whatever slot its archive names; only real holders count.
            match &r {
                Ok(Some(m)) if m.tombstone => out.push((usize::from(u8::MAX), addr, r)),
                Ok(Some(m)) => {
                    if let Some(i) = archive_index(m) {
                        out.push((usize::from(i), addr, r));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// What encoding accumulates besides the fragments: the object's MD5 (unless the body's
/// producer supplies it) and each archive's CRC32C, for the archives' trailers.
struct EncodeDigests {
    md5: Option<Md5>,
    archive_crc32c: Vec<Crc32cHasher>,
}

/// Reads the body, encodes it segment by segment and feeds slot i's fragments to
/// `senders[i]`; returns the body's MD5 (hex; `digest`'s when given) and each archive's CRC32C.
/// A slot whose device stops reading is dropped; fewer than the write quorum left fails the
/// write at once.
async fn encode_into(
    layout: &ArchiveLayout,
    scheme: &EcScheme,
    body: Body,
    digest: Option<&BodyDigestCell>,
    senders: &mut [Option<BodySender>],
) -> Result<(String, Vec<u32>), ClientError> {
    let striper = Arc::new(
        scheme
            .striper()
            .map_err(|e| ClientError::Invalid(e.to_string()))?,
    );
    let segment_bytes = usize::try_from(layout.segment_bytes)
        .map_err(|_| ClientError::Invalid("segment size too large".into()))?;
    let mut digests = Some(EncodeDigests {
        md5: digest.is_none().then(Md5::new),
        archive_crc32c: vec![Crc32cHasher::new(); senders.len()],
    });
    let mut segment = BytesMut::with_capacity(segment_bytes);
    let mut received = 0u64;
    let mut segments_sent = 0u64;
    let mut body = body;
    loop {
        let chunk = match body.next_chunk().await {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return Err(ClientError::Body(e.to_string())),
            None => None,
        };
        let done = chunk.is_none();
        if let Some(mut chunk) = chunk {
            received += chunk.len() as u64;
            if received > layout.object_bytes {
                return Err(ClientError::Invalid(format!(
                    "body is longer than the {} bytes announced",
                    layout.object_bytes
                )));
            }
            while !chunk.is_empty() {
                let take = (segment_bytes - segment.len()).min(chunk.len());
                segment.extend_from_slice(&chunk.split_to(take));
                if segment.len() == segment_bytes {
                    let full = segment.split().freeze();
                    send_segment(&striper, full, &mut digests, senders, scheme).await?;
                    segments_sent += 1;
                }
            }
        }
        if done {
            break;
        }
    }
    if received != layout.object_bytes {
        return Err(ClientError::Invalid(format!(
            "body has {received} bytes, {} announced",
            layout.object_bytes
        )));
    }
    if !segment.is_empty() || segments_sent == 0 {
        send_segment(&striper, segment.freeze(), &mut digests, senders, scheme).await?;
    }
    let digests = digests.ok_or_else(|| ClientError::Invalid("encoder state lost".into()))?;
    let md5 = match (digests.md5, digest) {
        (Some(m), _) => hex::encode(m.finalize()),
        (None, Some(cell)) => cell.get().map(|d| d.md5_hex()).ok_or_else(|| {
            ClientError::Body("the body ended without its producer's digest".into())
        })?,
        (None, None) => return Err(ClientError::Invalid("no MD5 for the body".into())),
    };
    let crcs = digests.archive_crc32c.iter().map(|c| c.finish()).collect();
    Ok((md5, crcs))
}

async fn send_segment(
    striper: &Arc<cairn_erasure::Striper>,
    segment: Bytes,
    digests: &mut Option<EncodeDigests>,
    senders: &mut [Option<BodySender>],
    scheme: &EcScheme,
) -> Result<(), ClientError> {
    let striper = striper.clone();
    let mut state = digests
        .take()
        .ok_or_else(|| ClientError::Invalid("encoder state lost".into()))?;
    // Hashing and encoding a segment is ~1 ms of CPU per MiB: off the async workers.
    let (state, fragments) = tokio::task::spawn_blocking(move || {
        if let Some(m) = &mut state.md5 {
            m.update(&segment);
        }
        let fragments = striper.encode_segment(&segment).map(|fragments| {
            fragments
                .into_iter()
                .zip(&mut state.archive_crc32c)
                .map(|(fragment, crc)| {
                    let bytes = Bytes::from(fragment.to_bytes());
                    crc.update(&bytes);
                    bytes
                })
                .collect::<Vec<_>>()
        });
        (state, fragments)
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("encoder task failed: {e}")))?;
    *digests = Some(state);
    let fragments = fragments.map_err(|e| ClientError::Invalid(e.to_string()))?;
    let sends = senders
        .iter_mut()
        .zip(fragments)
        .map(|(slot, fragment)| async move {
            if let Some(s) = slot
                && s.send(fragment).await.is_err()
            {
                *slot = None;
            }
        });
    futures::future::join_all(sends).await;
    let alive = senders.iter().filter(|s| s.is_some()).count();
    if alive < scheme.write_quorum {
        return Err(ClientError::NoQuorum(format!(
            "only {alive} fragment devices still take the write; the write quorum is {}",
            scheme.write_quorum
        )));
    }
    Ok(())
}

/// One archive being read: buffered so fragments can be cut at their exact lengths.
struct ArchiveStream {
    index: u8,
    body: Body,
    buf: BytesMut,
}

impl ArchiveStream {
    async fn read_exact(&mut self, n: usize) -> Result<Bytes, String> {
        while self.buf.len() < n {
            match self.body.next_chunk().await {
                Some(Ok(c)) => self.buf.extend_from_slice(&c),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err(format!("archive ended {} bytes short", n - self.buf.len())),
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }
}

impl FragmentFetch {
    /// A fetch of one version from known holders (data indexes first).
    pub(crate) fn new(
        peers: Arc<Peers>,
        key: BlobKey,
        timestamp: Timestamp,
        layout: ArchiveLayout,
        holders: Vec<(u8, DeviceAddr)>,
    ) -> FragmentFetch {
        FragmentFetch {
            peers,
            key,
            timestamp,
            layout,
            holders,
        }
    }

    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Opens archive `index`'s bytes `[from, to)` at one of its holders.
    async fn open(&self, index: u8, from: u64, to: u64) -> Result<ArchiveStream, String> {
        let mut last = format!("no holder of fragment {index}");
        for (_, addr) in self.holders.iter().filter(|(i, _)| *i == index) {
            let req = NodeRequest::GetBlob {
                device: addr.device.clone(),
                key: self.key.clone(),
                range: Some((from, to)),
            };
            let r = self
                .peers
                .call(
                    addr,
                    &req,
                    Body::Empty,
                    Duration::from_millis(BLOB_CALL_TIMEOUT_MS),
                    None,
                )
                .await;
            match r {
                Ok((NodeResponse::Blob(Some(m)), body)) if m.timestamp == self.timestamp => {
                    return Ok(ArchiveStream {
                        index,
                        body,
                        buf: BytesMut::new(),
                    });
                }
                Ok((NodeResponse::Blob(_), _)) => {
                    last = format!("{} changed underneath", addr.addr)
                }
                Err(PeerError::Refused(RemoteError::Corrupt(e))) => {
                    last = format!("fragment {index} at {} is corrupt: {e}", addr.addr)
                }
                Err(e) => last = e.to_string(),
                Ok((other, _)) => last = format!("unexpected answer {other:?}"),
            }
            debug!(index, peer = %addr.addr, error = %last, "fragment archive not readable here");
        }
        Err(last)
    }

    /// Streams `[start, end)` of the object, decoding segments from k archives.
    pub fn read(self, start: u64, end: u64) -> Body {
        let (mut tx, out) = Body::channel();
        tokio::spawn(async move {
            if let Err(e) = self.stream(start, end, &mut tx).await {
                warn!(object = %self.key.name, error = %e, "erasure-coded read failed");
                tx.abort(NetError::Remote(e)).await;
            } else {
                let _ = tx.finish().await;
            }
        });
        out
    }

    async fn stream(&self, start: u64, end: u64, tx: &mut BodySender) -> Result<(), String> {
        let layout = self.layout;
        if start >= end {
            return Ok(());
        }
        let first = start / layout.segment_bytes;
        let last = (end - 1) / layout.segment_bytes;
        let from = layout.archive_offset(first);
        let to = layout.archive_offset(last) + layout.fragment_len(last);
        let k = layout.params.k;
        // Data fragments first: with all k of them no decoding is needed.
        let mut order: Vec<u8> = self.holders.iter().map(|(i, _)| *i).collect();
        order.dedup();
        let mut unused: std::collections::VecDeque<u8> = order.into();
        let mut streams: Vec<ArchiveStream> = Vec::with_capacity(k);
        while streams.len() < k {
            // Open as many as are still needed at once; fall back to further indexes.
            let batch: Vec<u8> = (0..k - streams.len())
                .map_while(|_| unused.pop_front())
                .collect();
            if batch.is_empty() {
                return Err(format!(
                    "only {} of the {k} fragments needed could be opened",
                    streams.len()
                ));
            }
            let opened =
                futures::future::join_all(batch.iter().map(|&i| self.open(i, from, to))).await;
            for (index, r) in batch.into_iter().zip(opened) {
                match r {
                    Ok(s) => streams.push(s),
                    Err(e) => warn!(index, error = %e, "fragment archive unavailable"),
                }
            }
        }
        // Data fragments in index order, so a healthy read concatenates without decoding.
        streams.sort_by_key(|s| s.index);
        for s in first..=last {
            let flen = usize::try_from(layout.fragment_len(s)).map_err(|e| e.to_string())?;
            let mut fragments: Vec<Fragment> = Vec::with_capacity(k);
            let mut i = 0;
            while i < streams.len() {
                let got = streams[i].read_exact(flen).await;
                match got.and_then(|b| Fragment::from_bytes(b).map_err(|e| e.to_string())) {
                    Ok(f) if f.segment_len == layout.segment_len(s) => {
                        fragments.push(f);
                        i += 1;
                    }
                    other => {
                        let why = match other {
                            Err(e) => e,
                            Ok(_) => "fragment from another segment".into(),
                        };
                        warn!(index = streams[i].index, segment = s, error = %why, "fragment unusable; reading another");
                        streams.swap_remove(i);
                        // Replace it with another index from this segment on.
                        loop {
                            let Some(index) = unused.pop_front() else {
                                return Err(format!(
                                    "segment {s}: fewer than {k} good fragments ({why})"
                                ));
                            };
                            if let Ok(stream) = self.open(index, layout.archive_offset(s), to).await
                            {
                                streams.push(stream);
                                break;
                            }
                        }
                    }
                }
            }
            let all_data = fragments.iter().filter(|f| f.is_data()).count() == k;
            let segment = if all_data {
                decode_segment(&fragments).map_err(|e| e.to_string())?
            } else {
                tokio::task::spawn_blocking(move || decode_segment(&fragments))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
            };
            let seg_start = s * layout.segment_bytes;
            let a = usize::try_from(start.max(seg_start) - seg_start).map_err(|e| e.to_string())?;
            let b = usize::try_from(end.min(seg_start + layout.segment_len(s)) - seg_start)
                .map_err(|e| e.to_string())?;
            let piece = Bytes::from(segment).slice(a..b);
            tx.send(piece).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn scheme(k: usize, m: usize, seg: u64) -> EcScheme {
        EcScheme {
            codec: CodecId::RsErasureGf8,
            params: EcParams::new(k, m),
            segment_bytes: seg,
            write_quorum: k + 1,
        }
    }

    #[test]
    fn archive_layout_matches_the_encoder() {
        for (len, seg) in [
            (0u64, 1024u64),
            (1, 1024),
            (1024, 1024),
            (1025, 1024),
            (5000, 1024),
        ] {
            let s = scheme(4, 2, seg);
            let layout = ArchiveLayout::new(len, &s);
            let striper = s.striper().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut archive_len = 0u64;
            for seg_no in 0..layout.segments() {
                let a = (seg_no * seg) as usize;
                let b = ((seg_no + 1) * seg).min(len) as usize;
                let frags = striper.encode_segment(&data[a..b]).unwrap();
                assert_eq!(layout.archive_offset(seg_no), archive_len);
                assert_eq!(
                    frags[0].to_bytes().len() as u64,
                    layout.fragment_len(seg_no)
                );
                archive_len += layout.fragment_len(seg_no);
            }
            assert_eq!(layout.archive_bytes(), archive_len, "len {len}");
        }
    }

    #[test]
    fn archive_metadata_round_trips_and_bad_values_are_refused() {
        let s = scheme(8, 3, 1 << 20);
        let layout = ArchiveLayout::new(12345, &s);
        let mut meta = BlobMeta {
            timestamp: Timestamp::ZERO,
            size_bytes: layout.archive_bytes(),
            etag: "archive".into(),
            content_type: "text/plain".into(),
            user_meta: std::collections::BTreeMap::new(),
            tombstone: false,
        };
        meta.user_meta
            .insert(EC_SCHEME.into(), layout.scheme_value());
        meta.user_meta
            .insert(EC_OBJECT_BYTES.into(), "12345".into());
        meta.user_meta.insert(EC_OBJECT_ETAG.into(), "abc".into());
        meta.user_meta.insert(EC_INDEX.into(), "7".into());
        meta.user_meta.insert("meta-x".into(), "y".into());
        assert_eq!(ArchiveLayout::from_meta(&meta).unwrap(), layout);
        assert_eq!(archive_index(&meta), Some(7));
        let object = object_meta(&meta).unwrap();
        assert_eq!((object.size_bytes, object.etag.as_str()), (12345, "abc"));
        assert_eq!(object.user_meta.len(), 1);
        meta.user_meta
            .insert(EC_SCHEME.into(), "rs-erasure-gf8 0 2 1".into());
        assert!(ArchiveLayout::from_meta(&meta).is_err());
        meta.user_meta.insert(EC_SCHEME.into(), "nope 4 2 1".into());
        assert!(ArchiveLayout::from_meta(&meta).is_err());
    }
}
