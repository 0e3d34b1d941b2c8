//! The storage node's RPC service: decodes a [`NodeRequest`], runs it on the addressed device's
//! engine, and answers. Blob bodies stream through in both directions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cairn_engine::chunk::Crc32cHasher;
use cairn_engine::etag::EtagSource;
use cairn_engine::extent;
use cairn_engine::{
    BlobCommit, BlobKey, BlobReader, BlobWriteOptions, BlobWriter, ByteRange, Error as EngineError,
    ExtentChange, ListingEntry, StorageEngine, WriteOutcome, limits::EXTENT_IO_MAX_BYTES,
};
use cairn_net::{Body, CallContext, Handler, HandlerError, Response, decode_request};
use tracing::{Instrument, debug, warn};

use crate::body_digest::BodyDigest;
use crate::limits::EXTENT_METAS_KEYS_MAX;
use crate::listing_updates::ListingUpdater;
use crate::metrics::NodeMetrics;
use crate::rpc::{
    DIGEST_SUMS_PER_CALL_MAX, META_TRAILER_BYTES_MAX, NodeRequest, NodeResponse, RemoteError,
    WireExtentChange, WirePiece, digest_sum,
};

/// The devices this node serves, by ring device id.
#[derive(Debug)]
pub struct DeviceSet<E> {
    devices: BTreeMap<String, Arc<E>>,
}

impl<E: StorageEngine> DeviceSet<E> {
    /// Devices by name (the ring's device name, as `sdb1` in Swift).
    pub fn new(devices: BTreeMap<String, Arc<E>>) -> DeviceSet<E> {
        DeviceSet { devices }
    }

    pub fn get(&self, device: &str) -> Option<&Arc<E>> {
        self.devices.get(device)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<E>)> {
        self.devices.iter().map(|(d, e)| (d.as_str(), e))
    }
}

/// Serves a node's devices to the cluster.
#[derive(Debug)]
pub struct NodeService<E> {
    devices: Arc<DeviceSet<E>>,
    listing: Arc<ListingUpdater<E>>,
    metrics: Arc<NodeMetrics>,
}

impl<E> Clone for NodeService<E> {
    fn clone(&self) -> Self {
        NodeService {
            devices: self.devices.clone(),
            listing: self.listing.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<E: StorageEngine> NodeService<E> {
    pub fn new(
        devices: Arc<DeviceSet<E>>,
        listing: Arc<ListingUpdater<E>>,
        metrics: Arc<NodeMetrics>,
    ) -> NodeService<E> {
        NodeService {
            devices,
            listing,
            metrics,
        }
    }

    fn engine(&self, device: &str) -> Result<&Arc<E>, RemoteError> {
        self.devices
            .get(device)
            .ok_or_else(|| RemoteError::Unavailable(format!("device {device} is not on this node")))
    }

    async fn dispatch(
        &self,
        req: NodeRequest,
        body: Body,
    ) -> Result<(NodeResponse, Body), RemoteError> {
        let engine = self.engine(req.device())?.clone();
        let reply = |r: NodeResponse| Ok((r, Body::Empty));
        match req {
            NodeRequest::PutBlob {
                device,
                key,
                timestamp,
                size_bytes,
                content_type,
                user_meta,
                listing,
                meta_trailer,
                write_around,
            } => {
                let commit = BlobCommit {
                    timestamp,
                    content_type: content_type.clone(),
                    user_meta,
                    etag: None,
                };
                let (outcome, overrides, supplied_etag) = self
                    .put_blob(
                        &engine,
                        key.clone(),
                        size_bytes,
                        commit,
                        (meta_trailer, write_around),
                        body,
                    )
                    .await?;
                let applied = outcome == WriteOutcome::Applied;
                if applied && let Some(target) = listing {
                    let etag = match overrides.etag.or(supplied_etag) {
                        Some(etag) => etag,
                        None => self.etag_of(&engine, &key).await,
                    };
                    let entry = ListingEntry {
                        name: object_name(&key.name),
                        timestamp,
                        deleted: false,
                        size_bytes: overrides.size_bytes.unwrap_or(size_bytes),
                        etag,
                        content_type,
                    };
                    self.listing.update(&device, target, entry).await;
                }
                reply(NodeResponse::Written { applied })
            }
            NodeRequest::PromoteBlob {
                device,
                from,
                to,
                timestamp,
                listing,
            } => {
                let outcome = engine
                    .promote_blob(&from, &to, timestamp)
                    .await
                    .map_err(remote)?;
                let applied = match outcome {
                    Some(o) => o == WriteOutcome::Applied,
                    // Promoted already (a retry, or the reconstructor rolled it forward).
                    None => match engine.blob_meta(&to).await.map_err(remote)? {
                        Some(m) if m.timestamp >= timestamp => false,
                        _ => {
                            return Err(RemoteError::Invalid(format!(
                                "no staged version {timestamp} of {}",
                                to.name
                            )));
                        }
                    },
                };
                if applied
                    && let Some(target) = listing
                    && let Some(meta) = engine.blob_meta(&to).await.map_err(remote)?
                {
                    let overrides = ListingOverride::from_meta(&meta.user_meta);
                    let entry = ListingEntry {
                        name: object_name(&to.name),
                        timestamp,
                        deleted: false,
                        size_bytes: overrides.size_bytes.unwrap_or(meta.size_bytes),
                        etag: overrides.etag.unwrap_or(meta.etag),
                        content_type: meta.content_type,
                    };
                    self.listing.update(&device, target, entry).await;
                }
                reply(NodeResponse::Written { applied })
            }
            NodeRequest::DeleteBlob {
                device,
                key,
                timestamp,
                listing,
            } => {
                let outcome = engine
                    .delete_blob(key.clone(), timestamp)
                    .await
                    .map_err(remote)?;
                let applied = outcome == WriteOutcome::Applied;
                if applied && let Some(target) = listing {
                    let entry = ListingEntry {
                        name: object_name(&key.name),
                        timestamp,
                        deleted: true,
                        size_bytes: 0,
                        etag: String::new(),
                        content_type: String::new(),
                    };
                    self.listing.update(&device, target, entry).await;
                }
                reply(NodeResponse::Written { applied })
            }
            NodeRequest::HeadBlob { key, .. } => reply(NodeResponse::Meta(
                engine.blob_meta(&key).await.map_err(remote)?,
            )),
            NodeRequest::GetBlob { key, range, .. } => self.get_blob(&engine, key, range).await,
            NodeRequest::BlobDigest { partition, .. } => reply(NodeResponse::Digest(
                engine.blob_digest(partition).await.map_err(remote)?.buckets,
            )),
            NodeRequest::BlobDigestSums { partitions, .. } => {
                if partitions.len() > DIGEST_SUMS_PER_CALL_MAX {
                    return Err(RemoteError::Invalid(format!(
                        "{} partitions asked, at most {DIGEST_SUMS_PER_CALL_MAX} per call",
                        partitions.len()
                    )));
                }
                let mut sums = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let digest = engine.blob_digest(p).await.map_err(remote)?;
                    sums.push(digest_sum(&digest.buckets));
                }
                reply(NodeResponse::DigestSums(sums))
            }
            NodeRequest::BlobEntries {
                partition, buckets, ..
            } => reply(NodeResponse::Entries(
                engine
                    .blob_entries(partition, &buckets)
                    .await
                    .map_err(remote)?,
            )),
            NodeRequest::ListingDigest { partition, .. } => reply(NodeResponse::Digest(
                engine
                    .listing_digest(partition)
                    .await
                    .map_err(remote)?
                    .buckets,
            )),
            NodeRequest::ListingRecords {
                partition, buckets, ..
            } => reply(NodeResponse::Records(
                engine
                    .listing_records(partition, &buckets)
                    .await
                    .map_err(remote)?
                    .into_iter()
                    .map(|r| (r.path, r.entry))
                    .collect(),
            )),
            NodeRequest::MergeListing { key, entries, .. } => {
                engine
                    .merge_listing_entries(&key, entries)
                    .await
                    .map_err(remote)?;
                reply(NodeResponse::Done)
            }
            NodeRequest::MergeListingInfo { key, info, .. } => {
                engine
                    .merge_listing_info(&key, info)
                    .await
                    .map_err(remote)?;
                reply(NodeResponse::Done)
            }
            NodeRequest::GetListingInfo { key, .. } => reply(NodeResponse::Info(
                engine.listing_info(&key).await.map_err(remote)?,
            )),
            NodeRequest::List { key, query, .. } => reply(NodeResponse::Page(
                engine
                    .list(&key, &query.into())
                    .await
                    .map_err(remote)?
                    .into(),
            )),
            NodeRequest::ListingStats { key, .. } => reply(NodeResponse::Stats(
                engine.listing_stats(&key).await.map_err(remote)?,
            )),
            NodeRequest::ChangeExtent {
                key,
                change,
                tag,
                opts,
                ..
            } => {
                let change = match change {
                    WireExtentChange::Write { offset } => {
                        let data = body
                            .collect(usize::try_from(EXTENT_IO_MAX_BYTES).unwrap_or(usize::MAX))
                            .await
                            .map_err(|e| RemoteError::Invalid(format!("extent body: {e}")))?;
                        self.metrics.bytes_in(data.len() as u64);
                        ExtentChange::Write { offset, data }
                    }
                    WireExtentChange::Trim { offset, len_bytes } => {
                        ExtentChange::Trim { offset, len_bytes }
                    }
                    WireExtentChange::DeleteObject => ExtentChange::DeleteObject,
                };
                engine
                    .change_extent(&key, change, tag, &opts)
                    .await
                    .map_err(remote)?;
                reply(NodeResponse::ExtentChanged {
                    incarnation: engine.incarnation(),
                })
            }
            NodeRequest::ReadExtent {
                key,
                offset,
                len_bytes,
                upto,
                tags_only: true,
                ..
            } => {
                extent::validate_range(offset, len_bytes, false).map_err(remote)?;
                let metas = engine.extent_piece_metas(&key).await.map_err(remote)?;
                let wire = extent::paint(&metas, offset, len_bytes, upto)
                    .into_iter()
                    .filter_map(|(s, e, p)| {
                        p.map(|p| WirePiece {
                            tag: p.tag,
                            offset: s,
                            len_bytes: e - s,
                            data: p.data,
                        })
                    })
                    .collect();
                Ok((NodeResponse::Pieces(wire), Body::Empty))
            }
            NodeRequest::ReadExtent {
                key,
                offset,
                len_bytes,
                upto,
                tags_only: false,
                ..
            } => {
                let pieces = engine
                    .read_extent_pieces(&key, offset, len_bytes, upto)
                    .await
                    .map_err(remote)?;
                let wire = pieces
                    .iter()
                    .map(|p| WirePiece {
                        tag: p.tag,
                        offset: p.offset,
                        len_bytes: p.len_bytes,
                        data: p.data.is_some(),
                    })
                    .collect();
                let (body, len) = piece_bytes(&pieces);
                self.metrics.bytes_out(len);
                Ok((NodeResponse::Pieces(wire), body))
            }
            NodeRequest::ExtentMetas { keys, .. } => {
                if keys.len() > EXTENT_METAS_KEYS_MAX {
                    return Err(RemoteError::Invalid(format!(
                        "{} objects asked at once; at most {EXTENT_METAS_KEYS_MAX}",
                        keys.len()
                    )));
                }
                let mut out = Vec::with_capacity(keys.len());
                for key in &keys {
                    out.push(engine.extent_piece_metas(key).await.map_err(remote)?);
                }
                reply(NodeResponse::PieceMetas(out))
            }
            NodeRequest::SyncExtents { .. } => reply(NodeResponse::Synced {
                incarnation: engine.sync_extents().await.map_err(remote)?,
            }),
            NodeRequest::Fence { image, epoch, .. } => reply(NodeResponse::Fence {
                epoch: engine.fence(&image, epoch).await.map_err(remote)?,
            }),
        }
    }

    async fn etag_of(&self, engine: &E, key: &BlobKey) -> String {
        match engine.blob_meta(key).await {
            Ok(Some(meta)) => meta.etag,
            _ => String::new(),
        }
    }

    /// Streams the request body into the engine; nothing is visible unless every byte arrived,
    /// the size matches and (with a trailer) the bytes match the writer's CRC32C. Also answers
    /// the etag the writer supplied, if it did.
    async fn put_blob(
        &self,
        engine: &E,
        key: BlobKey,
        size_bytes: u64,
        mut commit: BlobCommit,
        (meta_trailer, write_around): (bool, bool),
        body: Body,
    ) -> Result<(WriteOutcome, ListingOverride, Option<String>), RemoteError> {
        // A trailer carries the writer's digest (see `body_digest`): the engine need not hash.
        let options = BlobWriteOptions {
            expected_size_bytes: Some(size_bytes),
            etag: if meta_trailer {
                EtagSource::Supplied
            } else {
                EtagSource::Computed
            },
            write_around,
        };
        let mut writer = engine.begin_blob_with(key, options).await.map_err(remote)?;
        let mut crc32c = Crc32cHasher::new();
        let mut received = 0u64;
        let mut trailer: Vec<u8> = Vec::new();
        let mut body = body;
        let streamed: Result<(), RemoteError> = async {
            while let Some(chunk) = body.next_chunk().await {
                let mut chunk = chunk.map_err(|e| RemoteError::Other(format!("body: {e}")))?;
                let blob_left = size_bytes.saturating_sub(received);
                if meta_trailer && chunk.len() as u64 > blob_left {
                    // The blob ends inside this chunk: the rest is the trailer.
                    let tail = chunk.split_off(usize::try_from(blob_left).unwrap_or(0));
                    if trailer.len() + tail.len() > META_TRAILER_BYTES_MAX {
                        return Err(RemoteError::Invalid(format!(
                            "metadata trailer is over {META_TRAILER_BYTES_MAX} bytes"
                        )));
                    }
                    trailer.extend_from_slice(&tail);
                }
                received += chunk.len() as u64;
                if !chunk.is_empty() {
                    if meta_trailer {
                        crc32c.update(&chunk);
                    }
                    writer.write(chunk).await.map_err(remote)?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            let _ = writer.abort().await;
            return Err(e);
        }
        self.metrics.bytes_in(received + trailer.len() as u64);
        if received != size_bytes {
            let _ = writer.abort().await;
            return Err(RemoteError::Invalid(format!(
                "body has {received} bytes, announced {size_bytes}"
            )));
        }
        if meta_trailer {
            let checked = check_trailer(&trailer, crc32c.finish());
            let (extra, digest) = match checked {
                Ok(v) => v,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            commit.user_meta.extend(extra);
            commit.etag = Some(digest.md5_hex());
        }
        let overrides = ListingOverride::from_meta(&commit.user_meta);
        let supplied_etag = commit.etag.clone();
        let outcome = writer.commit(commit).await.map_err(remote)?;
        Ok((outcome, overrides, supplied_etag))
    }

    /// Answers with the metadata and streams the bytes. The first chunk is read before
    /// answering so a copy that fails its checksum at once is refused cleanly (and quarantined).
    async fn get_blob(
        &self,
        engine: &Arc<E>,
        key: BlobKey,
        range: Option<(u64, u64)>,
    ) -> Result<(NodeResponse, Body), RemoteError> {
        let range = range.map(|(start, end)| ByteRange { start, end });
        let Some((meta, mut reader)) = engine.read_blob(&key, range).await.map_err(remote)? else {
            return Ok((NodeResponse::Blob(None), Body::Empty));
        };
        let first = match reader.next_chunk().await {
            Ok(first) => first,
            Err(e) => {
                self.quarantine_on_corrupt(engine, &key, meta.timestamp, &e)
                    .await;
                return Err(remote(e));
            }
        };
        let Some(first) = first else {
            return Ok((NodeResponse::Blob(Some(meta)), Body::Empty));
        };
        let (mut tx, body) = Body::channel();
        let metrics = self.metrics.clone();
        let engine = engine.clone();
        let timestamp = meta.timestamp;
        let service = self.clone();
        tokio::spawn(
            async move {
                let mut next = Some(first);
                while let Some(chunk) = next.take() {
                    metrics.bytes_out(chunk.len() as u64);
                    if tx.send(chunk).await.is_err() {
                        return; // the caller went away
                    }
                    match reader.next_chunk().await {
                        Ok(c) => next = c,
                        Err(e) => {
                            service
                                .quarantine_on_corrupt(&engine, &key, timestamp, &e)
                                .await;
                            tx.abort(cairn_net::NetError::Remote(e.to_string())).await;
                            return;
                        }
                    }
                }
                let _ = tx.finish().await;
            }
            .in_current_span(),
        );
        Ok((NodeResponse::Blob(Some(meta)), body))
    }

    async fn quarantine_on_corrupt(
        &self,
        engine: &E,
        key: &BlobKey,
        timestamp: cairn_engine::Timestamp,
        err: &EngineError,
    ) {
        if let EngineError::Corrupt(why) = err {
            warn!(object = %key.name, %why, "corrupt copy read; quarantining it");
            match engine.quarantine(key, timestamp).await {
                Ok(_) => self.metrics.quarantined(1),
                Err(e) => warn!(object = %key.name, error = %e, "quarantine failed"),
            }
        }
    }
}

impl<E: StorageEngine> Handler for NodeService<E> {
    async fn handle(
        &self,
        _ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> Result<Response, HandlerError> {
        let req: NodeRequest = decode_request(&header)?;
        let kind = req.kind();
        // The transport's "rpc" span (request id, peer) gets the operation and device rather
        // than a second span per request: span creation is a measurable part of a 4 KiB block
        // read (~5 µs of ~110 for this one span, by hand with fio).
        let span = tracing::Span::current();
        span.record("op", kind);
        span.record("target", req.device());
        let started = Instant::now();
        let result = self.dispatch(req, body).await;
        let (msg, body) = match result {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "refused");
                (NodeResponse::Refused(e), Body::Empty)
            }
        };
        self.metrics.request(
            kind,
            matches!(msg, NodeResponse::Refused(_)),
            started.elapsed(),
        );
        Response::encode(&msg, body)
    }
}

/// The object part of "/account/container/object".
pub fn object_name(path: &str) -> String {
    path.splitn(4, '/').nth(3).unwrap_or_default().to_string()
}

pub(crate) fn remote(e: EngineError) -> RemoteError {
    match e {
        EngineError::Corrupt(why) => RemoteError::Corrupt(why),
        EngineError::DiskFull => RemoteError::DiskFull,
        EngineError::Failed(why) => RemoteError::Unavailable(why),
        EngineError::Invalid(why) => RemoteError::Invalid(why),
        EngineError::Fenced { seen } => RemoteError::Fenced { seen },
        EngineError::RangeNotSatisfiable { size_bytes } => {
            RemoteError::RangeNotSatisfiable { size_bytes }
        }
        other => RemoteError::Other(other.to_string()),
    }
}

/// User-metadata keys by which a writer tells the listing what to show instead of the stored
/// blob's own size and ETag: a large-object manifest is listed with the size and ETag of the
/// object it stands for, not of its own few bytes of JSON (Swift's container-update override).
pub const LISTING_SIZE_OVERRIDE: &str = "sys-listing-size";
/// See [`LISTING_SIZE_OVERRIDE`].
pub const LISTING_ETAG_OVERRIDE: &str = "sys-listing-etag";

struct ListingOverride {
    size_bytes: Option<u64>,
    etag: Option<String>,
}

impl ListingOverride {
    fn from_meta(meta: &BTreeMap<String, String>) -> ListingOverride {
        ListingOverride {
            size_bytes: meta.get(LISTING_SIZE_OVERRIDE).and_then(|s| s.parse().ok()),
            etag: meta.get(LISTING_ETAG_OVERRIDE).cloned(),
        }
    }
}

/// Parses a `PutBlob` metadata trailer and checks the body the node received (`received_crc32c`)
/// against the writer's digest; answers the remaining metadata and the digest.
fn check_trailer(
    trailer: &[u8],
    received_crc32c: u32,
) -> Result<(BTreeMap<String, String>, BodyDigest), RemoteError> {
    let mut extra: BTreeMap<String, String> = postcard::from_bytes(trailer).map_err(|e| {
        RemoteError::Invalid(format!(
            "metadata trailer of {} bytes is malformed: {e}",
            trailer.len()
        ))
    })?;
    let digest = BodyDigest::take_from(&mut extra).map_err(RemoteError::Invalid)?;
    if digest.crc32c != received_crc32c {
        return Err(RemoteError::Invalid(format!(
            "the body arrived with CRC32C {received_crc32c:08x}, the writer sent {:08x}",
            digest.crc32c
        )));
    }
    Ok((extra, digest))
}

/// The bytes of a read's pieces, as one body: a single piece's bytes as they are (no copy — the
/// common case, a read inside one write), several copied together. Returns the body and its
/// length.
fn piece_bytes(pieces: &[cairn_engine::extent::ExtentPiece]) -> (Body, u64) {
    let mut data = pieces.iter().filter_map(|p| p.data.as_ref());
    let (Some(first), second) = (data.next(), data.next()) else {
        return (Body::Empty, 0);
    };
    let Some(second) = second else {
        return (Body::Full(first.clone()), first.len() as u64);
    };
    let total: usize = pieces
        .iter()
        .filter_map(|p| p.data.as_ref())
        .map(|d| d.len())
        .sum();
    let mut bytes = bytes::BytesMut::with_capacity(total);
    for d in [first, second].into_iter().chain(data) {
        bytes.extend_from_slice(d);
    }
    (Body::Full(bytes.freeze()), total as u64)
}
