//! The `StorageEngine` trait: what a storage node needs from one device, designed from Cairn's
//! access patterns (whole-object blobs, block-layer extents, listings, replication digests).
//!
//! Every method is async and returns `Send` futures so a tokio service can be generic over
//! `E: StorageEngine`; implementations must not block the calling (worker) thread.

use std::future::Future;

use bytes::Bytes;

use crate::Timestamp;
use crate::digest::PartitionDigest;
use crate::error::Result;
use crate::extent::ExtentPiece;
use crate::types::{
    AuditReport, BlobCommit, BlobEntry, BlobKey, BlobMeta, BlobWriteOptions, ByteRange,
    CompactionReport, ExtentChange, ExtentKey, ExtentRead, ExtentWriteOpts, Health, ListPage,
    ListQuery, ListingEntry, ListingInfo, ListingKey, ListingRecord, ListingStats, PieceMeta,
    Usage, WriteOutcome, WriteTag,
};

/// Options of the single-piece convenience calls: durable, no snapshots.
static DURABLE: ExtentWriteOpts = ExtentWriteOpts {
    durable: true,
    keep: Vec::new(),
    write_around: false,
};

/// A blob being streamed in. Nothing is visible until [`BlobWriter::commit`] returns `Applied`;
/// dropping the writer without committing is an abort.
pub trait BlobWriter: Send + 'static {
    /// Appends body bytes (any size; the engine re-chunks them).
    fn write(&mut self, data: Bytes) -> impl Future<Output = Result<()>> + Send;
    /// Makes the blob durable and visible if its timestamp wins (see `WriteOutcome`).
    fn commit(self, commit: BlobCommit) -> impl Future<Output = Result<WriteOutcome>> + Send;
    /// Discards everything written.
    fn abort(self) -> impl Future<Output = Result<()>> + Send;
}

/// A blob (or a range of it) being streamed out, verified chunk by chunk.
pub trait BlobReader: Send + 'static {
    /// The next verified bytes, `None` at the end. A checksum failure is `Error::Corrupt`.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>>> + Send;
}

/// One device's store. See docs/durability.md for what each acknowledgement guarantees.
pub trait StorageEngine: Send + Sync + 'static {
    type Writer: BlobWriter;
    type Reader: BlobReader;

    // ---- Blobs -------------------------------------------------------------------------------

    /// Starts streaming a blob (see [`BlobWriteOptions`]).
    fn begin_blob_with(
        &self,
        key: BlobKey,
        options: BlobWriteOptions,
    ) -> impl Future<Output = Result<Self::Writer>> + Send;

    /// Starts streaming a blob whose etag the engine computes. `expected_size_bytes`, when
    /// given, is checked at commit and lets the engine refuse early with `DiskFull` or place the
    /// blob (segment vs own file).
    fn begin_blob(
        &self,
        key: BlobKey,
        expected_size_bytes: Option<u64>,
    ) -> impl Future<Output = Result<Self::Writer>> + Send {
        self.begin_blob_with(
            key,
            BlobWriteOptions {
                expected_size_bytes,
                etag: crate::etag::EtagSource::Computed,
                write_around: false,
            },
        )
    }

    /// Stores a tombstone at `timestamp` (last-writer-wins like a write).
    fn delete_blob(
        &self,
        key: BlobKey,
        timestamp: Timestamp,
    ) -> impl Future<Output = Result<WriteOutcome>> + Send;

    /// The stored version's metadata, tombstones included.
    fn blob_meta(&self, key: &BlobKey) -> impl Future<Output = Result<Option<BlobMeta>>> + Send;

    /// Opens the stored version for reading (`None` if absent or a tombstone). `range` is clamped
    /// to the blob; a range starting at or past its end is `RangeNotSatisfiable` (except on an
    /// empty blob with start 0).
    fn read_blob(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<Option<(BlobMeta, Self::Reader)>>> + Send;

    /// Removes the local copy only if the stored version is exactly `timestamp` (after a handoff
    /// pushed it home). Returns whether something was removed.
    fn purge_blob(
        &self,
        key: &BlobKey,
        timestamp: Timestamp,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Moves the version stored under `from` — only if it is exactly `timestamp` — to `to`,
    /// where it replaces what is stored by last-writer-wins; the bytes are not copied, and
    /// `from` is empty afterwards whatever the outcome at `to`. `None`: `from` does not hold
    /// that version. Erasure-coded writes stage fragment archives this way and make them
    /// current only once a write quorum holds them.
    fn promote_blob(
        &self,
        from: &BlobKey,
        to: &BlobKey,
        timestamp: Timestamp,
    ) -> impl Future<Output = Result<Option<WriteOutcome>>> + Send;

    /// Moves the stored version out of the live index into quarantine if it is still
    /// `timestamp`, so it no longer counts and the replicator re-fetches it.
    fn quarantine(
        &self,
        key: &BlobKey,
        timestamp: Timestamp,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// How many blob versions are in quarantine.
    fn quarantined_count(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Drops tombstones whose timestamp is older than `now_micros - reclaim_age_micros`.
    /// Returns how many were dropped. The caller supplies the clock.
    fn reclaim_tombstones(
        &self,
        now_micros: u64,
        reclaim_age_micros: u64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Reclaims space of overwritten and deleted small blobs.
    fn compact(&self) -> impl Future<Output = Result<CompactionReport>> + Send;

    /// Verifies up to `max_blobs` blobs in key order, starting after `after` (the previous
    /// report's `next`), and reports those that fail.
    fn audit(
        &self,
        after: Option<BlobKey>,
        max_blobs: usize,
    ) -> impl Future<Output = Result<AuditReport>> + Send;

    // ---- Replication -------------------------------------------------------------------------

    /// Partitions with any blob, listing or extent on this device, ascending.
    fn partitions(&self) -> impl Future<Output = Result<Vec<u32>>> + Send;

    /// The blob digest of one partition (tombstones included).
    fn blob_digest(&self, partition: u32) -> impl Future<Output = Result<PartitionDigest>> + Send;

    /// A partition's blobs falling in `buckets` (see `digest::bucket_of`), by name.
    fn blob_entries(
        &self,
        partition: u32,
        buckets: &[u16],
    ) -> impl Future<Output = Result<Vec<BlobEntry>>> + Send;

    /// The listing digest of one partition: items are (path + "\0" + entry name, timestamp,
    /// deleted).
    fn listing_digest(
        &self,
        partition: u32,
    ) -> impl Future<Output = Result<PartitionDigest>> + Send;

    /// A partition's listing entries (deleted included) whose digest item falls in `buckets`.
    fn listing_records(
        &self,
        partition: u32,
        buckets: &[u16],
    ) -> impl Future<Output = Result<Vec<ListingRecord>>> + Send;

    // ---- Extent objects ----------------------------------------------------------------------

    /// Applies a write, trim or whole-object delete tagged `tag`. Refused with `Fenced` if
    /// `tag.epoch` is older than the image's fence (which a newer epoch raises). Pieces the
    /// change hides are freed unless a snapshot tag in `opts.keep` still sees them.
    fn change_extent(
        &self,
        key: &ExtentKey,
        change: ExtentChange,
        tag: WriteTag,
        opts: &ExtentWriteOpts,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes `data` at `offset`, durably, keeping no snapshot.
    fn write_extent(
        &self,
        key: &ExtentKey,
        offset: u64,
        data: Bytes,
        tag: WriteTag,
    ) -> impl Future<Output = Result<()>> + Send {
        self.change_extent(key, ExtentChange::Write { offset, data }, tag, &DURABLE)
    }

    /// Reads `[offset, offset + len_bytes)`; unwritten or trimmed bytes are holes.
    fn read_extent(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
    ) -> impl Future<Output = Result<ExtentRead>> + Send;

    /// The pieces that win `[offset, offset + len_bytes)` on this device as of the snapshot tag
    /// `upto` (`None`: the head), clipped to the stretch each wins, with their tags (trims
    /// included, uncovered stretches left out). Merging such answers from several replicas by
    /// tag gives the newest bytes any of them holds: what a reader does across a read quorum.
    fn read_extent_pieces(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
        upto: Option<WriteTag>,
    ) -> impl Future<Output = Result<Vec<ExtentPiece>>> + Send;

    /// Every stored piece of the object, without bytes (empty: the object does not exist).
    fn extent_piece_metas(
        &self,
        key: &ExtentKey,
    ) -> impl Future<Output = Result<Vec<PieceMeta>>> + Send;

    /// Makes every extent change acknowledged so far durable. Returns this engine's
    /// incarnation, a number that changes whenever the engine restarts: a caller that saw a
    /// different incarnation when its change was acknowledged knows the change may be lost.
    fn sync_extents(&self) -> impl Future<Output = Result<u64>> + Send;

    /// The incarnation [`StorageEngine::sync_extents`] reports, without syncing.
    fn incarnation(&self) -> u64;

    /// Turns `[offset, offset + len_bytes)` into a hole (for writes tagged below `tag`).
    fn trim_extent(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
        tag: WriteTag,
    ) -> impl Future<Output = Result<()>> + Send {
        self.change_extent(key, ExtentChange::Trim { offset, len_bytes }, tag, &DURABLE)
    }

    /// Deletes the object: everything tagged below `tag` becomes holes and its space is freed.
    fn delete_extent_object(
        &self,
        key: &ExtentKey,
        tag: WriteTag,
    ) -> impl Future<Output = Result<()>> + Send {
        self.change_extent(key, ExtentChange::DeleteObject, tag, &DURABLE)
    }

    /// Raises the image's minimum epoch to `epoch` without writing; returns the epoch now held.
    fn fence(&self, image: &str, epoch: u64) -> impl Future<Output = Result<u64>> + Send;

    // ---- Listings ----------------------------------------------------------------------------

    /// Merges entries into a listing, last-writer-wins per name (idempotent, order-free).
    fn merge_listing_entries(
        &self,
        key: &ListingKey,
        entries: Vec<ListingEntry>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Merges the listing's own record (see `ListingInfo::merge`).
    fn merge_listing_info(
        &self,
        key: &ListingKey,
        info: ListingInfo,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The listing's own record, if any was ever merged.
    fn listing_info(
        &self,
        key: &ListingKey,
    ) -> impl Future<Output = Result<Option<ListingInfo>>> + Send;

    /// One page of a listing.
    fn list(
        &self,
        key: &ListingKey,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ListPage>> + Send;

    /// Live objects and bytes in a listing.
    fn listing_stats(&self, key: &ListingKey) -> impl Future<Output = Result<ListingStats>> + Send;

    /// Raw entries (deleted included) after `after`, by name, at most `limit`.
    fn listing_entries(
        &self,
        key: &ListingKey,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ListingEntry>>> + Send;

    // ---- Device ------------------------------------------------------------------------------

    /// Space on the device.
    fn usage(&self) -> impl Future<Output = Result<Usage>> + Send;

    /// Whether the device is in service.
    fn health(&self) -> Health;
}
