//! Keys and records of the three stored things (blobs, extent objects, listings).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::limits::NAME_MAX_BYTES;

/// A whole object: `name` is its "/account/container/object" path within ring `partition`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobKey {
    pub partition: u32,
    pub name: String,
}

impl BlobKey {
    pub fn new(partition: u32, name: impl Into<String>) -> BlobKey {
        BlobKey {
            partition,
            name: name.into(),
        }
    }
}

/// A stored blob version (or its tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub timestamp: Timestamp,
    pub size_bytes: u64,
    /// Hex MD5 of the body: computed by the engine while the body streamed in, or supplied by
    /// the writer that hashed it (see [`crate::etag`]).
    pub etag: String,
    pub content_type: String,
    pub user_meta: BTreeMap<String, String>,
    pub tombstone: bool,
}

/// What the caller supplies when committing a streamed blob; the size comes from the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobCommit {
    pub timestamp: Timestamp,
    pub content_type: String,
    pub user_meta: BTreeMap<String, String>,
    /// The body's MD5 (lowercase hex) as the writer computed it: required when the blob was
    /// begun with [`EtagSource::Supplied`](crate::etag::EtagSource), else checked against the
    /// engine's own (a mismatch refuses the commit).
    pub etag: Option<String>,
}

/// How a blob is begun.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobWriteOptions {
    /// Checked at commit; lets the engine refuse early with `DiskFull` or place the blob
    /// (segment vs own file).
    pub expected_size_bytes: Option<u64>,
    pub etag: crate::etag::EtagSource,
    /// This copy will not serve reads soon (another replica does): a large body may bypass the
    /// page cache. A hint: the stored bytes and the durability are the same either way.
    pub write_around: bool,
}

/// The result of a last-writer-wins write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write is now the stored version (durably: see docs/durability.md).
    Applied,
    /// Something with a timestamp greater than or equal to the write's was already stored; the
    /// write changed nothing. Replaying a write therefore reports `Lost`, which is success for
    /// replication.
    Lost { stored: Timestamp },
}

/// A byte range `[start, end)` of a blob; `end` past the blob's size is clamped to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// One blob as the replicator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub name: String,
    pub timestamp: Timestamp,
    pub tombstone: bool,
    pub size_bytes: u64,
}

/// A blob that failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFailure {
    pub key: BlobKey,
    pub timestamp: Timestamp,
    pub reason: String,
}

/// The result of one bounded audit batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Blobs verified in this batch (tombstones count, they have no data to verify).
    pub checked: u64,
    pub failures: Vec<AuditFailure>,
    /// Where the next batch starts; `None` when the scan reached the end of the device.
    pub next: Option<BlobKey>,
}

/// Space reclaimed by a segment compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_rewritten: u64,
    pub bytes_reclaimed: u64,
}

/// Device space, for placement weight and alarms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Bytes of live blob data the engine holds (not counting index or garbage).
    pub live_blob_bytes: u64,
}

/// One object of a block-layer image.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExtentKey {
    pub partition: u32,
    pub image: String,
    pub object_no: u64,
}

/// Orders extent writes: (epoch, seq) lexicographically; the higher tag wins an overlap whatever
/// the arrival order. `epoch` is the image's fencing epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct WriteTag {
    pub epoch: u64,
    pub seq: u64,
}

/// How a change to an extent object is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentWriteOpts {
    /// Durable before the answer (fsync); otherwise durable at the next
    /// [`crate::StorageEngine::sync_extents`] (NBD's write-then-flush model).
    pub durable: bool,
    /// Snapshot tags of the image: a piece still visible at one of them is kept even when a newer
    /// piece hides it at the head (that is how snapshots preserve old data).
    pub keep: Vec<WriteTag>,
    /// This replica is not the one reads of the range are sent to: the engine may write large
    /// data around its page cache (`O_DIRECT`) instead of filling the cache with pages nobody
    /// will read. A hint: reads still work, from the device.
    pub write_around: bool,
}

/// A change to an extent object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentChange {
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Reads as zeros afterwards; frees what it hides.
    Trim {
        offset: u64,
        len_bytes: u64,
    },
    /// The whole object: everything older becomes holes and is freed.
    DeleteObject,
}

/// A stored piece without its bytes: enough for allocation maps, diffs and finding objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceMeta {
    pub tag: WriteTag,
    pub offset: u64,
    pub len_bytes: u64,
    /// `false` for trims and deletes.
    pub data: bool,
}

/// A piece of an extent read: written bytes or a hole (never written, trimmed: reads as zeros).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentSpan {
    Data { offset: u64, data: Bytes },
    Hole { offset: u64, len_bytes: u64 },
}

/// An extent read: spans in offset order covering exactly the requested range.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExtentRead {
    pub spans: Vec<ExtentSpan>,
}

impl ExtentRead {
    /// The range as plain bytes, holes as zeros.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for span in &self.spans {
            match span {
                ExtentSpan::Data { data, .. } => out.extend_from_slice(data),
                ExtentSpan::Hole { len_bytes, .. } => {
                    out.resize(out.len() + usize::try_from(*len_bytes).unwrap_or(0), 0)
                }
            }
        }
        out
    }
}

/// A container or account listing: `path` is "/account" or "/account/container".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListingKey {
    pub partition: u32,
    pub path: String,
}

impl ListingKey {
    pub fn new(partition: u32, path: impl Into<String>) -> ListingKey {
        ListingKey {
            partition,
            path: path.into(),
        }
    }
}

/// One name in a listing. Merged last-writer-wins by `timestamp`; deletes are `deleted` entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingEntry {
    pub name: String,
    pub timestamp: Timestamp,
    pub deleted: bool,
    pub size_bytes: u64,
    pub etag: String,
    pub content_type: String,
}

/// A metadata value with its own LWW timestamp; `None` records a removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaValue {
    pub timestamp: Timestamp,
    pub value: Option<String>,
}

/// A listing's own record. Merging takes the max of each timestamp and LWW per metadata key, so
/// it is commutative, associative and idempotent (a state CRDT).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListingInfo {
    pub created: Option<Timestamp>,
    pub deleted: Option<Timestamp>,
    pub metadata: BTreeMap<String, MetaValue>,
}

impl ListingInfo {
    /// Merges `other` into `self`; returns whether anything changed.
    pub fn merge(&mut self, other: &ListingInfo) -> bool {
        let mut changed = false;
        if other.created > self.created {
            self.created = other.created;
            changed = true;
        }
        if other.deleted > self.deleted {
            self.deleted = other.deleted;
            changed = true;
        }
        for (k, v) in &other.metadata {
            match self.metadata.get(k) {
                Some(mine) if mine.timestamp >= v.timestamp => {}
                _ => {
                    self.metadata.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
        changed
    }

    /// The listing exists when its latest create is after its latest delete.
    pub fn exists(&self) -> bool {
        match (self.created, self.deleted) {
            (Some(c), Some(d)) => c > d,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// A listing query, with Swift's semantics (S3's map onto them).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListQuery {
    /// Only names starting with this.
    pub prefix: String,
    /// Names containing this after the prefix roll up into one common prefix.
    pub delimiter: Option<String>,
    /// Exclusive: only names after this (before it when `reverse`).
    pub marker: Option<String>,
    /// Exclusive: only names before this (after it when `reverse`).
    pub end_marker: Option<String>,
    /// Most items (entries plus common prefixes) returned; capped at `LIST_LIMIT_MAX`.
    pub limit: usize,
    pub reverse: bool,
    /// Also return deleted entries (as entries with `deleted` set; never rolled into common
    /// prefixes), so a reader merging several replicas' pages can let a newer deletion on one
    /// replica hide an older entry on another.
    pub include_deleted: bool,
}

/// One item of a listing page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListItem {
    Entry(ListingEntry),
    /// A common prefix (ends with the delimiter).
    Prefix(String),
}

impl ListItem {
    /// The name to use as the next page's marker.
    pub fn marker(&self) -> &str {
        match self {
            ListItem::Entry(e) => &e.name,
            ListItem::Prefix(p) => p,
        }
    }
}

/// A listing page.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListPage {
    pub items: Vec<ListItem>,
    /// More items may follow: ask again with `next_marker` as the marker.
    pub truncated: bool,
    /// Where the next page starts when `truncated`: the last item's marker, or the last name
    /// scanned when the page stopped at the scan bound (`LIST_SCAN_MAX`) with few or no items.
    pub next_marker: Option<String>,
}

/// Live objects and their bytes in one listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListingStats {
    pub object_count: u64,
    pub bytes: u64,
}

/// A listing entry as the listing replicator sees it (path plus entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingRecord {
    pub path: String,
    pub entry: ListingEntry,
}

/// Whether the device is serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Out of service since the given reason; every call fails.
    Failed(String),
}

/// Rejects names the engine cannot store: empty, too long, or containing NUL (NUL separates key
/// parts in ordered indexes, and Swift forbids it too).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.contains('\0') {
        return Err(Error::Invalid(format!(
            "{what} must be 1..={NAME_MAX_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

/// Decides last-writer-wins: `Applied` when `incoming` is newer than `stored`.
pub fn lww(stored: Option<Timestamp>, incoming: Timestamp) -> WriteOutcome {
    match stored {
        Some(s) if s >= incoming => WriteOutcome::Lost { stored: s },
        _ => WriteOutcome::Applied,
    }
}
