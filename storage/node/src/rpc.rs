//! The node-to-node messages. `cairn-net` moves them as postcard headers plus byte bodies; this
//! module fixes what they mean. Blob bodies travel as the call's body, never in the header.

use std::collections::BTreeMap;

use cairn_engine::{
    BlobEntry, BlobKey, BlobMeta, ExtentKey, ExtentWriteOpts, ListItem, ListPage, ListQuery,
    ListingEntry, ListingInfo, ListingKey, ListingStats, PieceMeta, Timestamp, WriteTag,
};
use serde::{Deserialize, Serialize};

/// Where a stored object's listing entry goes: the container listing's key and the listing
/// device this object replica must update (Swift's "container update", one per replica).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingTarget {
    pub key: ListingKey,
    pub addr: std::net::SocketAddr,
    pub device: String,
}

/// Partitions one `BlobDigestSums` call may ask about.
pub const DIGEST_SUMS_PER_CALL_MAX: usize = 4096;

/// The 128-bit sum of a partition digest that `BlobDigestSums` answers: BLAKE3 over its
/// buckets, so equal sums mean equal digests.
pub fn digest_sum(buckets: &[u128]) -> u128 {
    let mut h = blake3::Hasher::new();
    for b in buckets {
        h.update(&b.to_le_bytes());
    }
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out.as_bytes()[..16]);
    u128::from_le_bytes(first)
}

/// The largest metadata trailer a `PutBlob` body may end with.
pub const META_TRAILER_BYTES_MAX: usize = 64 * 1024;

/// A request to one device of a node, named as in the ring (`device`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NodeRequest {
    /// Store a blob; the body streams the bytes. `size_bytes` is checked before commit.
    PutBlob {
        device: String,
        key: BlobKey,
        timestamp: Timestamp,
        size_bytes: u64,
        content_type: String,
        user_meta: BTreeMap<String, String>,
        listing: Option<ListingTarget>,
        /// The body holds `size_bytes` of blob and then a postcard `BTreeMap<String, String>`
        /// of further metadata (at most [`META_TRAILER_BYTES_MAX`]): what a writer learns only
        /// once the bytes went out. It must carry the body's digest
        /// ([`crate::body_digest`]): the node stores the writer's MD5 as the etag instead of
        /// hashing the body, after checking the writer's CRC32C against the bytes it received.
        /// Without a trailer the node's engine computes the MD5.
        meta_trailer: bool,
        /// This copy will not serve the object's reads (see `BlobWriteOptions::write_around`).
        write_around: bool,
    },
    /// Make a staged blob current: move the version under `from` (exactly `timestamp`) to
    /// `to` by last-writer-wins, then update `listing` as a `PutBlob` would. Answered with
    /// `Written` (`applied` false if something newer is current, or the version already is);
    /// refused as `Invalid` when neither key holds that version.
    PromoteBlob {
        device: String,
        from: BlobKey,
        to: BlobKey,
        timestamp: Timestamp,
        listing: Option<ListingTarget>,
    },
    /// Store a tombstone.
    DeleteBlob {
        device: String,
        key: BlobKey,
        timestamp: Timestamp,
        listing: Option<ListingTarget>,
    },
    /// The stored version's metadata (tombstones included).
    HeadBlob {
        device: String,
        key: BlobKey,
    },
    /// The stored version's bytes (`range` is `[start, end)`), streamed in the response body.
    GetBlob {
        device: String,
        key: BlobKey,
        range: Option<(u64, u64)>,
    },
    BlobDigest {
        device: String,
        partition: u32,
    },
    /// One 128-bit sum of each partition's blob digest (answered with `DigestSums`, in
    /// order; at most [`DIGEST_SUMS_PER_CALL_MAX`] partitions): a cheap equality check before
    /// the whole digest is fetched.
    BlobDigestSums {
        device: String,
        partitions: Vec<u32>,
    },
    ListingDigest {
        device: String,
        partition: u32,
    },
    /// Listing records in digest buckets, as (listing path, entry).
    ListingRecords {
        device: String,
        partition: u32,
        buckets: Vec<u16>,
    },
    BlobEntries {
        device: String,
        partition: u32,
        buckets: Vec<u16>,
    },
    MergeListing {
        device: String,
        key: ListingKey,
        entries: Vec<ListingEntry>,
    },
    MergeListingInfo {
        device: String,
        key: ListingKey,
        info: ListingInfo,
    },
    GetListingInfo {
        device: String,
        key: ListingKey,
    },
    List {
        device: String,
        key: ListingKey,
        query: WireListQuery,
    },
    ListingStats {
        device: String,
        key: ListingKey,
    },
    /// A write (the bytes are the body), trim or whole-object delete of an extent object.
    ChangeExtent {
        device: String,
        key: ExtentKey,
        change: WireExtentChange,
        tag: WriteTag,
        opts: ExtentWriteOpts,
    },
    /// The winning pieces of a range as of `upto` (answered with `Pieces`, bytes in the body).
    ReadExtent {
        device: String,
        key: ExtentKey,
        offset: u64,
        len_bytes: u64,
        upto: Option<WriteTag>,
        /// Answer the winning pieces without their bytes (a digest to compare another
        /// replica's full answer with).
        tags_only: bool,
    },
    /// Piece metadata of several objects (answered with `PieceMetas`, one list per key).
    ExtentMetas {
        device: String,
        keys: Vec<ExtentKey>,
    },
    /// Make every extent change acknowledged so far durable (answered with `Synced`).
    SyncExtents {
        device: String,
    },
    /// Raise an image's fence to `epoch` (answered with `Fence`, the epoch now held).
    Fence {
        device: String,
        image: String,
        epoch: u64,
    },
}

/// [`cairn_engine::ExtentChange`] without its bytes (those travel as the call's body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireExtentChange {
    Write { offset: u64 },
    Trim { offset: u64, len_bytes: u64 },
    DeleteObject,
}

/// A piece of an extent read on the wire; data pieces' bytes follow in the body, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePiece {
    pub tag: WriteTag,
    pub offset: u64,
    pub len_bytes: u64,
    pub data: bool,
}

impl NodeRequest {
    pub fn device(&self) -> &str {
        match self {
            NodeRequest::PutBlob { device, .. }
            | NodeRequest::PromoteBlob { device, .. }
            | NodeRequest::DeleteBlob { device, .. }
            | NodeRequest::HeadBlob { device, .. }
            | NodeRequest::GetBlob { device, .. }
            | NodeRequest::BlobDigest { device, .. }
            | NodeRequest::BlobDigestSums { device, .. }
            | NodeRequest::BlobEntries { device, .. }
            | NodeRequest::ListingDigest { device, .. }
            | NodeRequest::ListingRecords { device, .. }
            | NodeRequest::MergeListing { device, .. }
            | NodeRequest::MergeListingInfo { device, .. }
            | NodeRequest::GetListingInfo { device, .. }
            | NodeRequest::List { device, .. }
            | NodeRequest::ListingStats { device, .. }
            | NodeRequest::ChangeExtent { device, .. }
            | NodeRequest::ReadExtent { device, .. }
            | NodeRequest::ExtentMetas { device, .. }
            | NodeRequest::SyncExtents { device }
            | NodeRequest::Fence { device, .. } => device,
        }
    }

    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeRequest::PutBlob { .. } => "put_blob",
            NodeRequest::PromoteBlob { .. } => "promote_blob",
            NodeRequest::DeleteBlob { .. } => "delete_blob",
            NodeRequest::HeadBlob { .. } => "head_blob",
            NodeRequest::GetBlob { .. } => "get_blob",
            NodeRequest::BlobDigest { .. } => "blob_digest",
            NodeRequest::BlobDigestSums { .. } => "blob_digest_sums",
            NodeRequest::BlobEntries { .. } => "blob_entries",
            NodeRequest::ListingDigest { .. } => "listing_digest",
            NodeRequest::ListingRecords { .. } => "listing_records",
            NodeRequest::MergeListing { .. } => "merge_listing",
            NodeRequest::MergeListingInfo { .. } => "merge_listing_info",
            NodeRequest::GetListingInfo { .. } => "get_listing_info",
            NodeRequest::List { .. } => "list",
            NodeRequest::ListingStats { .. } => "listing_stats",
            NodeRequest::ChangeExtent { .. } => "change_extent",
            NodeRequest::ReadExtent { .. } => "read_extent",
            NodeRequest::ExtentMetas { .. } => "extent_metas",
            NodeRequest::SyncExtents { .. } => "sync_extents",
            NodeRequest::Fence { .. } => "fence",
        }
    }
}

/// Why a device refused a request, as the caller needs to react to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The stored copy failed its checksum: read another replica.
    #[error("corrupt copy: {0}")]
    Corrupt(String),
    #[error("disk full")]
    DiskFull,
    /// The device is out of service, or not served by this node.
    #[error("device unavailable: {0}")]
    Unavailable(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("range not satisfiable: object is {size_bytes} bytes")]
    RangeNotSatisfiable { size_bytes: u64 },
    /// An extent change tagged with an epoch older than the image's fence on this device.
    #[error("fenced: this device has seen epoch {seen}")]
    Fenced { seen: u64 },
    #[error("{0}")]
    Other(String),
}

/// The answer to a [`NodeRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NodeResponse {
    /// A write is durable (or a newer version already was: `applied` false).
    Written {
        applied: bool,
    },
    Meta(Option<BlobMeta>),
    /// GetBlob: the metadata; the bytes follow in the body. `None`: nothing stored (or deleted).
    Blob(Option<BlobMeta>),
    Digest(Vec<u128>),
    DigestSums(Vec<u128>),
    Entries(Vec<BlobEntry>),
    Records(Vec<(String, ListingEntry)>),
    Page(WireListPage),
    Info(Option<ListingInfo>),
    Stats(ListingStats),
    /// An extent change applied; `incarnation` names the device's current opening.
    ExtentChanged {
        incarnation: u64,
    },
    Pieces(Vec<WirePiece>),
    PieceMetas(Vec<Vec<PieceMeta>>),
    Synced {
        incarnation: u64,
    },
    Fence {
        epoch: u64,
    },
    Done,
    Refused(RemoteError),
}

/// [`ListQuery`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: Option<String>,
    pub end_marker: Option<String>,
    pub limit: usize,
    pub reverse: bool,
    pub include_deleted: bool,
}

impl From<ListQuery> for WireListQuery {
    fn from(q: ListQuery) -> Self {
        WireListQuery {
            prefix: q.prefix,
            delimiter: q.delimiter,
            marker: q.marker,
            end_marker: q.end_marker,
            limit: q.limit,
            reverse: q.reverse,
            include_deleted: q.include_deleted,
        }
    }
}

impl From<WireListQuery> for ListQuery {
    fn from(q: WireListQuery) -> Self {
        ListQuery {
            prefix: q.prefix,
            delimiter: q.delimiter,
            marker: q.marker,
            end_marker: q.end_marker,
            limit: q.limit,
            reverse: q.reverse,
            include_deleted: q.include_deleted,
        }
    }
}

/// [`ListPage`] on the wire: entries, or common prefixes (`Err`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireListPage {
    pub items: Vec<Result<ListingEntry, String>>,
    pub truncated: bool,
    pub next_marker: Option<String>,
}

impl From<ListPage> for WireListPage {
    fn from(p: ListPage) -> Self {
        let items = p
            .items
            .into_iter()
            .map(|i| match i {
                ListItem::Entry(e) => Ok(e),
                ListItem::Prefix(p) => Err(p),
            })
            .collect();
        WireListPage {
            items,
            truncated: p.truncated,
            next_marker: p.next_marker,
        }
    }
}

impl From<WireListPage> for ListPage {
    fn from(p: WireListPage) -> Self {
        let items = p
            .items
            .into_iter()
            .map(|i| match i {
                Ok(e) => ListItem::Entry(e),
                Err(p) => ListItem::Prefix(p),
            })
            .collect();
        ListPage {
            items,
            truncated: p.truncated,
            next_marker: p.next_marker,
        }
    }
}
