//! The object layer both APIs share, over the cluster client: how user and system metadata
//! are kept in a blob's metadata, and large objects — a manifest blob naming segments (S3
//! multipart uploads and Swift SLOs), or a prefix (Swift DLOs) — read as one object.
//!
//! Metadata keys: `meta-<name>` is user metadata (S3 `x-amz-meta-<name>` = Swift
//! `X-Object-Meta-<name>`, so both APIs see the same); `sys-*` keys are the gateway's own and
//! can never be set by a client header.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_engine::{BlobMeta, ListItem, ListQuery};
use cairn_net::Body;
use cairn_node::service::{LISTING_ETAG_OVERRIDE, LISTING_SIZE_OVERRIDE};
use cairn_node::{ClientError, ClusterClient, ObjectPut, ObjectReader, Written};
use cairn_swift_proto::{SegmentRead, SloManifest};
use tracing::warn;

/// User metadata key prefix.
pub const USER_META: &str = "meta-";
/// `slo` (Swift static large object) or `mpu` (completed S3 multipart upload): the blob is a
/// JSON segment list.
pub const SYS_MANIFEST: &str = "sys-manifest";
/// `container/prefix`: a Swift dynamic large object.
pub const SYS_DLO: &str = "sys-dlo";
/// Number of parts of a completed multipart upload (for the `-N` ETag suffix).
pub const SYS_MPU_PARTS: &str = "sys-mpu-parts";
pub const SYS_CONTENT_ENCODING: &str = "sys-content-encoding";
pub const SYS_CONTENT_DISPOSITION: &str = "sys-content-disposition";
pub const SYS_CONTENT_LANGUAGE: &str = "sys-content-language";
pub const SYS_CACHE_CONTROL: &str = "sys-cache-control";
pub const SYS_EXPIRES: &str = "sys-expires";
/// Unix seconds after which the object reads as gone (Swift `X-Delete-At`).
pub const SYS_DELETE_AT: &str = "sys-delete-at";
/// `sys-checksum-<algorithm>`: a checksum the client sent and the gateway verified.
pub const SYS_CHECKSUM_PREFIX: &str = "sys-checksum-";

/// A manifest holds at most this many segments (Swift's SLO limit; S3 allows 10,000 parts).
pub const MANIFEST_SEGMENTS_MAX: usize = 10_000;
/// A manifest blob is read whole; it is never larger than this.
pub const MANIFEST_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How many segments a DLO read lists at most.
pub const DLO_SEGMENTS_MAX: usize = 10_000;

/// An object as a reader sees it: for a large object, its logical size and ETag.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub meta: BlobMeta,
}

impl ObjectInfo {
    pub fn size(&self) -> u64 {
        self.meta
            .user_meta
            .get(LISTING_SIZE_OVERRIDE)
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.meta.size_bytes)
    }

    /// The ETag without quotes.
    pub fn etag(&self) -> &str {
        self.meta
            .user_meta
            .get(LISTING_ETAG_OVERRIDE)
            .map(String::as_str)
            .unwrap_or(&self.meta.etag)
    }

    pub fn last_modified_unix_ms(&self) -> u64 {
        self.meta.timestamp.wall_micros / 1000
    }

    pub fn timestamp_micros(&self) -> u64 {
        self.meta.timestamp.wall_micros
    }

    pub fn sys(&self, key: &str) -> Option<&str> {
        self.meta.user_meta.get(key).map(String::as_str)
    }

    /// User metadata: `(name, value)` with the name lowercased.
    pub fn user_meta(&self) -> impl Iterator<Item = (&str, &str)> {
        self.meta
            .user_meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(USER_META)?, v.as_str())))
    }

    pub fn manifest_kind(&self) -> Option<&str> {
        self.sys(SYS_MANIFEST)
    }

    /// Whether `X-Delete-At` has passed.
    pub fn expired(&self, now_unix_s: u64) -> bool {
        self.sys(SYS_DELETE_AT)
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|at| at <= now_unix_s)
    }
}

/// What kind of object was opened.
#[derive(Debug)]
pub enum Opened {
    /// A plain blob.
    Plain(ObjectReader),
    /// A manifest (SLO or multipart): the segments, in order.
    Manifest(SloManifest),
    /// A DLO, its segments listed when it was opened.
    Dynamic {
        container: String,
        /// `(object, size)` in name order.
        segments: Vec<(String, u64)>,
        /// Swift's DLO ETag: the MD5 of the segments' ETags.
        etag: String,
    },
}

impl Opened {
    /// The size of the object a reader sees (a large object's, not its manifest's).
    pub fn size(&self) -> u64 {
        match self {
            Opened::Plain(reader) => reader.meta.size_bytes,
            Opened::Manifest(m) => m.total_size(),
            Opened::Dynamic { segments, .. } => cairn_swift_proto::dlo::dlo_total_size(segments),
        }
    }
}

/// An object found and ready to read.
#[derive(Debug)]
pub struct OpenObject {
    pub info: ObjectInfo,
    pub opened: Opened,
}

/// How long a container seen to exist is taken to exist without asking again. Swift's proxy
/// caches container info the same way (60 s by default); a write racing the container's
/// deletion by another gateway within this window lands in a deleted container, as in Swift.
pub const CONTAINER_CACHE_TTL: Duration = Duration::from_secs(2);
/// Containers remembered at most; the cache is cleared when full.
pub const CONTAINER_CACHE_ENTRIES: usize = 10_000;

/// How long a container is remembered as absent by [`ObjectLayer::container_exists_cached`].
/// Only used where a wrong "absent" costs garbage, not correctness.
pub const ABSENT_CONTAINER_CACHE_TTL: Duration = Duration::from_secs(10);

type ContainerCache = Mutex<HashMap<(String, String), Instant>>;

/// Whether `key` was recorded in `cache` less than `ttl` ago.
fn cached_within(cache: &ContainerCache, key: &(String, String), ttl: Duration) -> bool {
    cache
        .lock()
        .is_ok_and(|c| c.get(key).is_some_and(|t| t.elapsed() < ttl))
}

/// Records `key` now; a full cache is cleared first (bounded memory).
fn remember(cache: &ContainerCache, key: (String, String)) {
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CONTAINER_CACHE_ENTRIES {
            c.clear();
        }
        c.insert(key, Instant::now());
    }
}

/// The shared object layer.
#[derive(Debug, Clone)]
pub struct ObjectLayer {
    client: Arc<ClusterClient>,
    seen: Arc<ContainerCache>,
    absent: Arc<ContainerCache>,
}

pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ObjectLayer {
    pub fn new(client: Arc<ClusterClient>) -> Self {
        ObjectLayer {
            client,
            seen: Arc::new(Mutex::new(HashMap::new())),
            absent: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// [`Self::container_exists`], also remembering absence for
    /// [`ABSENT_CONTAINER_CACHE_TTL`]: for checks on every write where a stale "absent"
    /// only leaves garbage behind (another gateway may have created the container since).
    pub async fn container_exists_cached(
        &self,
        account: &str,
        container: &str,
    ) -> Result<bool, ClientError> {
        let key = (account.to_string(), container.to_string());
        if cached_within(&self.absent, &key, ABSENT_CONTAINER_CACHE_TTL) {
            return Ok(false);
        }
        let exists = self.container_exists(account, container).await?;
        if !exists {
            remember(&self.absent, key);
        }
        Ok(exists)
    }

    /// Remembers a container this gateway just created.
    pub fn note_container(&self, account: &str, container: &str) {
        let key = (account.to_string(), container.to_string());
        if let Ok(mut absent) = self.absent.lock() {
            absent.remove(&key);
        }
        remember(&self.seen, key);
    }

    /// Whether a container exists, answered from a short-lived cache when it was seen lately.
    pub async fn container_exists(
        &self,
        account: &str,
        container: &str,
    ) -> Result<bool, ClientError> {
        let key = (account.to_string(), container.to_string());
        if cached_within(&self.seen, &key, CONTAINER_CACHE_TTL) {
            return Ok(true);
        }
        let exists = self
            .client
            .container_info(account, container)
            .await?
            .is_some();
        if exists {
            remember(&self.seen, key);
        }
        Ok(exists)
    }

    /// Forgets a container (after deleting it here).
    pub fn forget_container(&self, account: &str, container: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&(account.to_string(), container.to_string()));
        }
        if let Ok(mut absent) = self.absent.lock() {
            absent.remove(&(account.to_string(), container.to_string()));
        }
    }

    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// Stores a blob.
    pub async fn put(&self, put: ObjectPut, body: Body) -> Result<Written, ClientError> {
        self.client.put_object(put, body).await
    }

    /// The object's metadata, or `None` (missing, deleted or expired).
    pub async fn head(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> Result<Option<ObjectInfo>, ClientError> {
        let meta = self.client.head_object(account, container, object).await?;
        Ok(meta
            .map(|meta| ObjectInfo { meta })
            .filter(|i| !i.expired(now_unix_s())))
    }

    /// Finds an object; a manifest's segment list is read here (it is small).
    pub async fn open(
        &self,
        account: &str,
        container: &str,
        object: &str,
        resolve_manifest: bool,
    ) -> Result<Option<OpenObject>, ClientError> {
        let Some(reader) = self.client.open_object(account, container, object).await? else {
            return Ok(None);
        };
        let info = ObjectInfo {
            meta: reader.meta.clone(),
        };
        if info.expired(now_unix_s()) {
            return Ok(None);
        }
        if resolve_manifest {
            if info.manifest_kind().is_some() {
                let bytes = read_all(reader.read(None).await?, MANIFEST_BYTES_MAX).await?;
                let segments = SloManifest::from_stored_json(&bytes).map_err(|e| {
                    ClientError::Invalid(format!("stored manifest is malformed: {}", e.message))
                })?;
                return Ok(Some(OpenObject {
                    info,
                    opened: Opened::Manifest(segments),
                }));
            }
            if let Some(dlo) = info.sys(SYS_DLO)
                && let Some((c, p)) = dlo.split_once('/')
            {
                let listed = self.dlo_segments(account, c, p).await?;
                let etag = cairn_swift_proto::dlo::dlo_etag(listed.iter().map(|s| s.2.as_str()));
                let segments = listed.into_iter().map(|s| (s.0, s.1)).collect();
                let container = c.to_string();
                return Ok(Some(OpenObject {
                    info,
                    opened: Opened::Dynamic {
                        container,
                        segments,
                        etag,
                    },
                }));
            }
        }
        Ok(Some(OpenObject {
            info,
            opened: Opened::Plain(reader),
        }))
    }

    /// A DLO's segments: `(name, size, etag)` of the objects under its prefix, in name order.
    async fn dlo_segments(
        &self,
        account: &str,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64, String)>, ClientError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_objects(
                    account,
                    container,
                    ListQuery {
                        prefix: prefix.to_string(),
                        marker: marker.clone(),
                        limit: 1000,
                        ..ListQuery::default()
                    },
                )
                .await?;
            for item in &page.items {
                if let ListItem::Entry(e) = item {
                    out.push((e.name.clone(), e.size_bytes, e.etag.clone()));
                }
            }
            if out.len() > DLO_SEGMENTS_MAX {
                return Err(ClientError::Invalid(format!(
                    "a dynamic large object has more than {DLO_SEGMENTS_MAX} segments"
                )));
            }
            match (page.truncated, page.next_marker) {
                (true, Some(m)) => marker = Some(m),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Streams `[start, end)` of an opened object (everything without `span`), whatever its
    /// kind: a blob, a manifest's segments or a DLO's.
    pub async fn read_opened(
        &self,
        account: &str,
        opened: Opened,
        span: Option<(u64, u64)>,
    ) -> Result<Body, ClientError> {
        // Segment planners take inclusive ranges.
        let inclusive = span.map(|(a, b)| (a, b.saturating_sub(1)));
        Ok(match opened {
            Opened::Plain(reader) => reader.read(span).await?,
            Opened::Manifest(m) => self.read_segments(account, m.plan_read(inclusive)),
            Opened::Dynamic {
                container,
                segments,
                ..
            } => self.read_segments(
                account,
                cairn_swift_proto::dlo::plan_dlo_read(&container, &segments, inclusive),
            ),
        })
    }

    /// Streams the planned segment reads of a large object, one after another.
    pub fn read_segments(&self, account: &str, plan: Vec<SegmentRead>) -> Body {
        let (mut tx, out) = Body::channel();
        let client = self.client.clone();
        let account = account.to_string();
        tokio::spawn(async move {
            for r in plan {
                let opened = client.open_object(&account, &r.container, &r.object).await;
                let reader = match opened {
                    Ok(Some(reader)) if reader.meta.size_bytes >= r.end => reader,
                    Ok(_) => {
                        warn!(container = %r.container, object = %r.object, "large object segment missing or short");
                        tx.abort(cairn_net::NetError::Remote(format!(
                            "segment /{}/{} is missing",
                            r.container, r.object
                        )))
                        .await;
                        return;
                    }
                    Err(e) => {
                        tx.abort(cairn_net::NetError::Remote(e.to_string())).await;
                        return;
                    }
                };
                let mut body = match reader.read(Some((r.start, r.end))).await {
                    Ok(b) => b,
                    Err(e) => {
                        tx.abort(cairn_net::NetError::Remote(e.to_string())).await;
                        return;
                    }
                };
                while let Some(chunk) = body.next_chunk().await {
                    match chunk {
                        Ok(c) => {
                            if tx.send(c).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tx.abort(e).await;
                            return;
                        }
                    }
                }
            }
            let _ = tx.finish().await;
        });
        out
    }

    /// Deletes an object; with `segments`, a manifest's segments too (S3 always, Swift on
    /// `multipart-manifest=delete`). Returns whether it existed.
    pub async fn delete(
        &self,
        account: &str,
        container: &str,
        object: &str,
        segments: bool,
    ) -> Result<bool, ClientError> {
        let found = if segments {
            self.open(account, container, object, true).await?
        } else {
            None
        };
        let existed = match &found {
            Some(_) => true,
            None => self.head(account, container, object).await?.is_some(),
        };
        self.client
            .delete_object(account, container, object)
            .await?;
        if let Some(OpenObject {
            opened: Opened::Manifest(segs),
            ..
        }) = found
        {
            self.delete_segments(account, &segs).await;
        }
        Ok(existed)
    }

    /// Deletes segments (best effort: a failure leaves garbage, never a broken object).
    pub async fn delete_segments(&self, account: &str, manifest: &SloManifest) {
        for s in &manifest.segments {
            if let Err(e) = self
                .client
                .delete_object(account, &s.container, &s.object)
                .await
            {
                warn!(container = %s.container, object = %s.object, error = %e, "deleting a segment failed; it stays as garbage");
            }
        }
    }
}

/// Reads a whole cluster body of at most `max` bytes.
pub async fn read_all(mut body: Body, max: usize) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(|e| ClientError::Body(e.to_string()))?;
        if out.len() + chunk.len() > max {
            return Err(ClientError::Invalid(format!("body over {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Builds the blob metadata of a manifest standing for an object of `size` bytes with `etag`.
pub fn manifest_meta(
    kind: &str,
    size: u64,
    etag: &str,
    mut meta: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    meta.insert(SYS_MANIFEST.into(), kind.into());
    meta.insert(LISTING_SIZE_OVERRIDE.into(), size.to_string());
    meta.insert(LISTING_ETAG_OVERRIDE.into(), etag.into());
    meta
}
