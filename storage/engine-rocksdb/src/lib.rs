//! `cairn-engine-rocksdb`: the production [`StorageEngine`]: a RocksDB index plus data files
//! (append-only segments for small blobs, one file per large blob), with data-file I/O through
//! io_uring or a plain-file fallback.
//!
//! Owns the on-disk layout of one device directory (`index/`, `segments/`, `blobs/`, `tmp/`,
//! `quarantine/`) and its crash recovery. **Must not depend on** the node, the network or the
//! ring: it stores what it is told, by the rules in `cairn-engine`.
//!
//! No RocksDB call or blocking syscall runs on a tokio worker thread: they run on a bounded
//! blocking pool (`pool`), and data-file reads/writes/fsyncs go to the io_uring thread or the
//! pool. Build against the system RocksDB with `ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu`.

mod aligned_append;
mod blobs;
pub mod crc32c;
mod direct_append;
mod engine;
mod extent_log;
mod extent_writes;
mod fence_cache;
mod io;
mod keys;
pub mod limits;
mod maintenance;
mod pending;
mod piece_cache;
mod piece_list;
mod pool;
mod read_buffers;
mod records;
mod uring;

use std::sync::Arc;

use cairn_engine::extent::{self, ExtentPiece};
use cairn_engine::{
    AuditReport, BlobEntry, BlobKey, BlobMeta, BlobWriteOptions, ByteRange, CompactionReport,
    Error, ExtentChange, ExtentKey, ExtentRead, ExtentWriteOpts, Health, ListPage, ListQuery,
    ListingEntry, ListingInfo, ListingKey, ListingRecord, ListingStats, PartitionDigest, PieceMeta,
    Result, StorageEngine, Timestamp, Usage, WriteOutcome, WriteTag,
};

pub use blobs::{RocksReader, RocksWriter};
pub use engine::EngineOptions;
pub use io::{IoBackend, IoChoice, PlainIo};
pub use uring::UringIo;

use engine::Inner;

/// The RocksDB + data files engine for one device. Cloning shares it.
#[derive(Debug, Clone)]
pub struct RocksEngine {
    inner: Arc<Inner>,
}

impl RocksEngine {
    /// Opens (or creates) the device, recovering from any crash. Blocking work runs on the
    /// blocking pool.
    pub async fn open(options: EngineOptions) -> Result<RocksEngine> {
        let inner = tokio::task::spawn_blocking(move || Inner::open(&options))
            .await
            .map_err(|e| Error::Failed(format!("open task failed: {e}")))??;
        Ok(RocksEngine {
            inner: Arc::new(inner),
        })
    }

    /// A device on plain files in `dir`, for this crate's unit tests.
    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn open_plain_for_test(dir: &std::path::Path) -> RocksEngine {
        RocksEngine::open(EngineOptions {
            dir: dir.to_path_buf(),
            io: IoChoice::Plain,
        })
        .await
        .unwrap()
    }

    /// Closes the engine without blocking the calling worker thread: if this is the last handle,
    /// RocksDB is closed on a blocking thread. (Dropping the last handle instead closes it on
    /// whatever thread drops it.)
    pub async fn close(self) {
        let inner = self.inner;
        let _ = tokio::task::spawn_blocking(move || drop(inner)).await;
    }

    /// Whether data-file I/O goes through io_uring.
    pub fn uses_io_uring(&self) -> bool {
        self.inner.io.is_uring()
    }

    /// Whether blob copies written with `write_around` still bypass the page cache (`false`
    /// once this filesystem refused `O_DIRECT` for one).
    pub fn writes_blobs_around_page_cache(&self) -> bool {
        !self
            .inner
            .blob_direct_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl StorageEngine for RocksEngine {
    type Writer = RocksWriter;
    type Reader = RocksReader;

    async fn begin_blob_with(
        &self,
        key: BlobKey,
        options: BlobWriteOptions,
    ) -> Result<RocksWriter> {
        RocksWriter::begin(self.inner.clone(), key, options).await
    }

    async fn delete_blob(&self, key: BlobKey, timestamp: Timestamp) -> Result<WriteOutcome> {
        blobs::delete(&self.inner, &key, timestamp).await
    }

    async fn blob_meta(&self, key: &BlobKey) -> Result<Option<BlobMeta>> {
        maintenance::blob_meta(&self.inner, key).await
    }

    async fn read_blob(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<Option<(BlobMeta, RocksReader)>> {
        maintenance::read_blob(&self.inner, key, range).await
    }

    async fn purge_blob(&self, key: &BlobKey, timestamp: Timestamp) -> Result<bool> {
        maintenance::remove_version(&self.inner, key, timestamp, false).await
    }

    async fn promote_blob(
        &self,
        from: &BlobKey,
        to: &BlobKey,
        timestamp: Timestamp,
    ) -> Result<Option<WriteOutcome>> {
        maintenance::promote(&self.inner, from, to, timestamp).await
    }

    async fn quarantine(&self, key: &BlobKey, timestamp: Timestamp) -> Result<bool> {
        maintenance::remove_version(&self.inner, key, timestamp, true).await
    }

    async fn quarantined_count(&self) -> Result<u64> {
        maintenance::quarantined_count(&self.inner).await
    }

    async fn reclaim_tombstones(&self, now_micros: u64, reclaim_age_micros: u64) -> Result<u64> {
        maintenance::reclaim_tombstones(&self.inner, now_micros, reclaim_age_micros).await
    }

    async fn compact(&self) -> Result<CompactionReport> {
        maintenance::compact(&self.inner).await
    }

    async fn audit(&self, after: Option<BlobKey>, max_blobs: usize) -> Result<AuditReport> {
        maintenance::audit(&self.inner, after, max_blobs).await
    }

    async fn partitions(&self) -> Result<Vec<u32>> {
        records::partitions(&self.inner).await
    }

    async fn blob_digest(&self, partition: u32) -> Result<PartitionDigest> {
        records::blob_digest(&self.inner, partition).await
    }

    async fn blob_entries(&self, partition: u32, buckets: &[u16]) -> Result<Vec<BlobEntry>> {
        records::blob_entries(&self.inner, partition, buckets).await
    }

    async fn listing_digest(&self, partition: u32) -> Result<PartitionDigest> {
        records::listing_digest(&self.inner, partition).await
    }

    async fn listing_records(&self, partition: u32, buckets: &[u16]) -> Result<Vec<ListingRecord>> {
        records::listing_records(&self.inner, partition, buckets).await
    }

    async fn change_extent(
        &self,
        key: &ExtentKey,
        change: ExtentChange,
        tag: WriteTag,
        opts: &ExtentWriteOpts,
    ) -> Result<()> {
        let piece = extent::piece_of(change, tag)?;
        extent_writes::add_piece(&self.inner, key, piece, opts).await
    }

    async fn read_extent(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
    ) -> Result<ExtentRead> {
        records::read_extent(&self.inner, key, offset, len_bytes).await
    }

    async fn read_extent_pieces(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
        upto: Option<WriteTag>,
    ) -> Result<Vec<ExtentPiece>> {
        records::read_extent_pieces(&self.inner, key, offset, len_bytes, upto).await
    }

    async fn extent_piece_metas(&self, key: &ExtentKey) -> Result<Vec<PieceMeta>> {
        records::piece_metas(&self.inner, key).await
    }

    async fn sync_extents(&self) -> Result<u64> {
        records::sync_extents(&self.inner).await
    }

    fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    async fn fence(&self, image: &str, epoch: u64) -> Result<u64> {
        records::fence(&self.inner, image, epoch).await
    }

    async fn merge_listing_entries(
        &self,
        key: &ListingKey,
        entries: Vec<ListingEntry>,
    ) -> Result<()> {
        records::merge_entries(&self.inner, key, entries).await
    }

    async fn merge_listing_info(&self, key: &ListingKey, info: ListingInfo) -> Result<()> {
        records::merge_info(&self.inner, key, info).await
    }

    async fn listing_info(&self, key: &ListingKey) -> Result<Option<ListingInfo>> {
        records::get_meta(&self.inner, keys::LISTING_INFO, key).await
    }

    async fn list(&self, key: &ListingKey, query: &ListQuery) -> Result<ListPage> {
        records::list(&self.inner, key, query).await
    }

    async fn listing_stats(&self, key: &ListingKey) -> Result<ListingStats> {
        Ok(records::get_meta(&self.inner, keys::LISTING_STATS, key)
            .await?
            .unwrap_or_default())
    }

    async fn listing_entries(
        &self,
        key: &ListingKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListingEntry>> {
        records::raw_entries(&self.inner, key, after, limit).await
    }

    async fn usage(&self) -> Result<Usage> {
        self.inner.check()?;
        let i = self.inner.clone();
        let (total_bytes, free_bytes) = self.inner.pool.run(move || i.statvfs()).await?;
        Ok(Usage {
            total_bytes,
            free_bytes,
            live_blob_bytes: self
                .inner
                .live_blob_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn health(&self) -> Health {
        self.inner.health()
    }
}
