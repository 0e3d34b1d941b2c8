//! An in-memory engine: the reference the conformance suite is checked against, and a fast
//! engine for the node's unit tests. Nothing survives a drop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use crate::Timestamp;
use crate::digest::{PartitionDigest, bucket_of};
use crate::engine::{BlobReader, BlobWriter, StorageEngine};
use crate::error::{Error, Result};
use crate::etag::{self, EtagHasher};
use crate::extent::{self, ExtentPiece};
use crate::limits::{BLOB_MAX_BYTES, CHUNK_MAX_BYTES, LIST_LIMIT_MAX, REPLICATION_ENTRIES_MAX};
use crate::listing::{SliceSource, run_query};
use crate::types::*;

#[derive(Debug, Default)]
struct Listing {
    entries: BTreeMap<String, ListingEntry>,
    info: Option<ListingInfo>,
}

#[derive(Debug, Default)]
struct State {
    failed: Option<String>,
    /// Blob commits fail with this (bodies are still accepted): a disk that dies at fsync.
    commit_failure: Option<String>,
    blobs: BTreeMap<BlobKey, (BlobMeta, Bytes)>,
    quarantined: u64,
    extents: BTreeMap<ExtentKey, Vec<ExtentPiece>>,
    fences: HashMap<String, u64>,
    listings: BTreeMap<ListingKey, Listing>,
}

/// The in-memory engine. Cloning shares the store.
#[derive(Debug, Clone)]
pub struct MemoryEngine {
    state: Arc<Mutex<State>>,
    /// Unique per engine created in this process (see `StorageEngine::sync_extents`).
    incarnation: u64,
}

impl Default for MemoryEngine {
    fn default() -> MemoryEngine {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        MemoryEngine {
            state: Arc::default(),
            incarnation: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl MemoryEngine {
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }

    /// Takes the device out of service, as a failed fsync would (for callers' tests).
    pub fn fail(&self, reason: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.failed = Some(reason.to_string());
        }
    }

    /// Makes every blob commit fail from now on while bodies are still taken in, as a disk
    /// whose fsync fails at the end of a write (for callers' tests).
    pub fn fail_commits(&self, reason: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.commit_failure = Some(reason.to_string());
        }
    }

    /// Puts a failed device back in service with its contents (for callers' tests of a
    /// device that was unreachable for a while).
    pub fn recover(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.failed = None;
            s.commit_failure = None;
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        lock_state(&self.state)
    }
}

fn lock_state(state: &Mutex<State>) -> Result<MutexGuard<'_, State>> {
    let guard = state
        .lock()
        .map_err(|_| Error::Failed("memory engine lock poisoned".into()))?;
    if let Some(reason) = &guard.failed {
        return Err(Error::Failed(reason.clone()));
    }
    Ok(guard)
}

/// A blob being written into memory.
#[derive(Debug)]
pub struct MemoryWriter {
    state: Arc<Mutex<State>>,
    key: BlobKey,
    expected_size_bytes: Option<u64>,
    body: BytesMut,
    /// `None`: the etag comes with the commit.
    etag: Option<EtagHasher>,
}

impl BlobWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.body.len() as u64 + data.len() as u64 > BLOB_MAX_BYTES {
            return Err(Error::Invalid(format!(
                "blob larger than {BLOB_MAX_BYTES} bytes"
            )));
        }
        if let Some(h) = &mut self.etag {
            h.update(&data);
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn commit(self, commit: BlobCommit) -> Result<WriteOutcome> {
        let size_bytes = self.body.len() as u64;
        if let Some(expected) = self.expected_size_bytes
            && expected != size_bytes
        {
            return Err(Error::Invalid(format!(
                "blob is {size_bytes} bytes, {expected} were announced"
            )));
        }
        let meta = BlobMeta {
            timestamp: commit.timestamp,
            size_bytes,
            etag: etag::settle(self.etag, commit.etag)?,
            content_type: commit.content_type,
            user_meta: commit.user_meta,
            tombstone: false,
        };
        let mut s = lock_state(&self.state)?;
        if let Some(reason) = &s.commit_failure {
            return Err(Error::Failed(reason.clone()));
        }
        let outcome = lww(
            s.blobs.get(&self.key).map(|(m, _)| m.timestamp),
            meta.timestamp,
        );
        if outcome == WriteOutcome::Applied {
            s.blobs.insert(self.key, (meta, self.body.freeze()));
        }
        Ok(outcome)
    }

    async fn abort(self) -> Result<()> {
        Ok(())
    }
}

/// Streams a stored body in chunks.
#[derive(Debug)]
pub struct MemoryReader {
    rest: Bytes,
}

impl BlobReader for MemoryReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let n = self.rest.len().min(CHUNK_MAX_BYTES);
        Ok(Some(self.rest.split_to(n)))
    }
}

/// Clamps a requested range to a blob of `size_bytes`: shared by every engine.
pub fn clamp_range(range: Option<ByteRange>, size_bytes: u64) -> Result<(u64, u64)> {
    match range {
        None => Ok((0, size_bytes)),
        Some(r) if r.start == 0 && size_bytes == 0 => Ok((0, 0)),
        Some(r) if r.start >= size_bytes => Err(Error::RangeNotSatisfiable { size_bytes }),
        Some(r) if r.end < r.start => Err(Error::Invalid("range ends before it starts".into())),
        Some(r) => Ok((r.start, r.end.min(size_bytes))),
    }
}

fn check_fence(s: &mut State, image: &str, epoch: u64) -> Result<()> {
    let seen = s.fences.entry(image.to_string()).or_insert(0);
    if epoch < *seen {
        return Err(Error::Fenced { seen: *seen });
    }
    *seen = epoch;
    Ok(())
}

fn add_piece(s: &mut State, key: &ExtentKey, piece: ExtentPiece, keep: &[WriteTag]) {
    let pieces = s.extents.entry(key.clone()).or_default();
    let new = piece.meta();
    pieces.retain(|p| !p.meta().hidden_by(&new, keep));
    if !pieces.iter().any(|p| new.hidden_by(&p.meta(), keep)) {
        pieces.push(piece);
    }
}

impl StorageEngine for MemoryEngine {
    type Writer = MemoryWriter;
    type Reader = MemoryReader;

    async fn begin_blob_with(
        &self,
        key: BlobKey,
        options: BlobWriteOptions,
    ) -> Result<MemoryWriter> {
        let expected_size_bytes = options.expected_size_bytes;
        validate_name("blob name", &key.name)?;
        if expected_size_bytes.is_some_and(|n| n > BLOB_MAX_BYTES) {
            return Err(Error::Invalid(format!(
                "blob larger than {BLOB_MAX_BYTES} bytes"
            )));
        }
        drop(self.lock()?);
        Ok(MemoryWriter {
            state: self.state.clone(),
            key,
            expected_size_bytes,
            body: BytesMut::new(),
            etag: etag::hasher_for(options.etag),
        })
    }

    async fn delete_blob(&self, key: BlobKey, timestamp: Timestamp) -> Result<WriteOutcome> {
        validate_name("blob name", &key.name)?;
        let mut s = self.lock()?;
        let outcome = lww(s.blobs.get(&key).map(|(m, _)| m.timestamp), timestamp);
        if outcome == WriteOutcome::Applied {
            let meta = BlobMeta {
                timestamp,
                size_bytes: 0,
                etag: String::new(),
                content_type: String::new(),
                user_meta: BTreeMap::new(),
                tombstone: true,
            };
            s.blobs.insert(key, (meta, Bytes::new()));
        }
        Ok(outcome)
    }

    async fn blob_meta(&self, key: &BlobKey) -> Result<Option<BlobMeta>> {
        Ok(self.lock()?.blobs.get(key).map(|(m, _)| m.clone()))
    }

    async fn read_blob(
        &self,
        key: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<Option<(BlobMeta, MemoryReader)>> {
        let s = self.lock()?;
        let Some((meta, body)) = s.blobs.get(key).filter(|(m, _)| !m.tombstone) else {
            return Ok(None);
        };
        let (start, end) = clamp_range(range, meta.size_bytes)?;
        let rest =
            body.slice(usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0));
        Ok(Some((meta.clone(), MemoryReader { rest })))
    }

    async fn purge_blob(&self, key: &BlobKey, timestamp: Timestamp) -> Result<bool> {
        let mut s = self.lock()?;
        if s.blobs
            .get(key)
            .is_some_and(|(m, _)| m.timestamp == timestamp)
        {
            s.blobs.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn promote_blob(
        &self,
        from: &BlobKey,
        to: &BlobKey,
        timestamp: Timestamp,
    ) -> Result<Option<WriteOutcome>> {
        crate::validate_name("blob name", &to.name)?;
        let mut s = self.lock()?;
        if !s
            .blobs
            .get(from)
            .is_some_and(|(m, _)| m.timestamp == timestamp && !m.tombstone)
        {
            return Ok(None);
        }
        let Some(version) = s.blobs.remove(from) else {
            return Ok(None);
        };
        let outcome = lww(s.blobs.get(to).map(|(m, _)| m.timestamp), timestamp);
        if outcome == WriteOutcome::Applied {
            s.blobs.insert(to.clone(), version);
        }
        Ok(Some(outcome))
    }

    async fn quarantine(&self, key: &BlobKey, timestamp: Timestamp) -> Result<bool> {
        let mut s = self.lock()?;
        if s.blobs
            .get(key)
            .is_some_and(|(m, _)| m.timestamp == timestamp)
        {
            s.blobs.remove(key);
            s.quarantined += 1;
            return Ok(true);
        }
        Ok(false)
    }

    async fn quarantined_count(&self) -> Result<u64> {
        Ok(self.lock()?.quarantined)
    }

    async fn reclaim_tombstones(&self, now_micros: u64, reclaim_age_micros: u64) -> Result<u64> {
        let cutoff = now_micros.saturating_sub(reclaim_age_micros);
        let mut s = self.lock()?;
        let before = s.blobs.len();
        s.blobs
            .retain(|_, (m, _)| !(m.tombstone && m.timestamp.wall_micros < cutoff));
        Ok((before - s.blobs.len()) as u64)
    }

    async fn compact(&self) -> Result<CompactionReport> {
        drop(self.lock()?);
        Ok(CompactionReport::default())
    }

    async fn audit(&self, after: Option<BlobKey>, max_blobs: usize) -> Result<AuditReport> {
        let s = self.lock()?;
        let max = max_blobs.clamp(1, crate::limits::AUDIT_BATCH_MAX);
        let range = match &after {
            Some(k) => s.blobs.range((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => s.blobs.range(..),
        };
        let keys: Vec<BlobKey> = range.take(max + 1).map(|(k, _)| k.clone()).collect();
        let checked = keys.len().min(max) as u64;
        let next = if keys.len() > max {
            keys.get(max - 1).cloned()
        } else {
            None
        };
        Ok(AuditReport {
            checked,
            failures: Vec::new(),
            next,
        })
    }

    async fn partitions(&self) -> Result<Vec<u32>> {
        let s = self.lock()?;
        let mut parts: Vec<u32> = s
            .blobs
            .keys()
            .map(|k| k.partition)
            .chain(
                s.listings
                    .iter()
                    .filter(|(_, l)| !l.entries.is_empty() || l.info.is_some())
                    .map(|(k, _)| k.partition),
            )
            .chain(s.extents.keys().map(|k| k.partition))
            .collect();
        parts.sort_unstable();
        parts.dedup();
        Ok(parts)
    }

    async fn blob_digest(&self, partition: u32) -> Result<PartitionDigest> {
        let s = self.lock()?;
        let mut d = PartitionDigest::empty();
        for (k, (m, _)) in s.blobs.iter().filter(|(k, _)| k.partition == partition) {
            d.fold(&k.name, m.timestamp, m.tombstone);
        }
        Ok(d)
    }

    async fn blob_entries(&self, partition: u32, buckets: &[u16]) -> Result<Vec<BlobEntry>> {
        let s = self.lock()?;
        Ok(s.blobs
            .iter()
            .filter(|(k, _)| k.partition == partition && buckets.contains(&bucket_of(&k.name)))
            .take(REPLICATION_ENTRIES_MAX)
            .map(|(k, (m, _))| BlobEntry {
                name: k.name.clone(),
                timestamp: m.timestamp,
                tombstone: m.tombstone,
                size_bytes: m.size_bytes,
            })
            .collect())
    }

    async fn listing_digest(&self, partition: u32) -> Result<PartitionDigest> {
        let s = self.lock()?;
        let mut d = PartitionDigest::empty();
        for (k, l) in s.listings.iter().filter(|(k, _)| k.partition == partition) {
            for e in l.entries.values() {
                d.fold(
                    &crate::digest::listing_item_name(&k.path, &e.name),
                    e.timestamp,
                    e.deleted,
                );
            }
        }
        Ok(d)
    }

    async fn listing_records(&self, partition: u32, buckets: &[u16]) -> Result<Vec<ListingRecord>> {
        let s = self.lock()?;
        let mut out = Vec::new();
        for (k, l) in s.listings.iter().filter(|(k, _)| k.partition == partition) {
            for e in l.entries.values() {
                if out.len() < REPLICATION_ENTRIES_MAX
                    && buckets.contains(&bucket_of(&crate::digest::listing_item_name(
                        &k.path, &e.name,
                    )))
                {
                    out.push(ListingRecord {
                        path: k.path.clone(),
                        entry: e.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn change_extent(
        &self,
        key: &ExtentKey,
        change: ExtentChange,
        tag: WriteTag,
        opts: &ExtentWriteOpts,
    ) -> Result<()> {
        let piece = extent::piece_of(change, tag)?;
        let mut s = self.lock()?;
        check_fence(&mut s, &key.image, tag.epoch)?;
        add_piece(&mut s, key, piece, &opts.keep);
        Ok(())
    }

    async fn read_extent(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
    ) -> Result<ExtentRead> {
        extent::validate_range(offset, len_bytes, false)?;
        let s = self.lock()?;
        let pieces = s.extents.get(key).map(Vec::as_slice).unwrap_or(&[]);
        Ok(extent::assemble(pieces, offset, len_bytes))
    }

    async fn read_extent_pieces(
        &self,
        key: &ExtentKey,
        offset: u64,
        len_bytes: u64,
        upto: Option<WriteTag>,
    ) -> Result<Vec<ExtentPiece>> {
        extent::validate_range(offset, len_bytes, false)?;
        let s = self.lock()?;
        let pieces = s.extents.get(key).map(Vec::as_slice).unwrap_or(&[]);
        Ok(extent::paint(pieces, offset, len_bytes, upto)
            .into_iter()
            .filter_map(|(start, end, p)| p.and_then(|p| p.clip(start, end - start)))
            .collect())
    }

    async fn extent_piece_metas(&self, key: &ExtentKey) -> Result<Vec<PieceMeta>> {
        let s = self.lock()?;
        let pieces = s.extents.get(key).map(Vec::as_slice).unwrap_or(&[]);
        Ok(pieces.iter().map(ExtentPiece::meta).collect())
    }

    async fn sync_extents(&self) -> Result<u64> {
        Ok(self.incarnation)
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    async fn fence(&self, image: &str, epoch: u64) -> Result<u64> {
        let mut s = self.lock()?;
        let seen = s.fences.entry(image.to_string()).or_insert(0);
        *seen = (*seen).max(epoch);
        Ok(*seen)
    }

    async fn merge_listing_entries(
        &self,
        key: &ListingKey,
        entries: Vec<ListingEntry>,
    ) -> Result<()> {
        validate_name("listing path", &key.path)?;
        for e in &entries {
            validate_name("listing entry name", &e.name)?;
        }
        let mut s = self.lock()?;
        let listing = s.listings.entry(key.clone()).or_default();
        for e in entries {
            if lww(
                listing.entries.get(&e.name).map(|x| x.timestamp),
                e.timestamp,
            ) == WriteOutcome::Applied
            {
                listing.entries.insert(e.name.clone(), e);
            }
        }
        Ok(())
    }

    async fn merge_listing_info(&self, key: &ListingKey, info: ListingInfo) -> Result<()> {
        validate_name("listing path", &key.path)?;
        let mut s = self.lock()?;
        let listing = s.listings.entry(key.clone()).or_default();
        listing
            .info
            .get_or_insert_with(ListingInfo::default)
            .merge(&info);
        Ok(())
    }

    async fn listing_info(&self, key: &ListingKey) -> Result<Option<ListingInfo>> {
        Ok(self.lock()?.listings.get(key).and_then(|l| l.info.clone()))
    }

    async fn list(&self, key: &ListingKey, query: &ListQuery) -> Result<ListPage> {
        let s = self.lock()?;
        let entries: Vec<ListingEntry> = s
            .listings
            .get(key)
            .map(|l| l.entries.values().cloned().collect())
            .unwrap_or_default();
        run_query(&mut SliceSource::new(&entries, query.reverse), query)
    }

    async fn listing_stats(&self, key: &ListingKey) -> Result<ListingStats> {
        let s = self.lock()?;
        let mut stats = ListingStats::default();
        for e in s
            .listings
            .get(key)
            .iter()
            .flat_map(|l| l.entries.values())
            .filter(|e| !e.deleted)
        {
            stats.object_count += 1;
            stats.bytes += e.size_bytes;
        }
        Ok(stats)
    }

    async fn listing_entries(
        &self,
        key: &ListingKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListingEntry>> {
        let s = self.lock()?;
        Ok(s.listings
            .get(key)
            .iter()
            .flat_map(|l| l.entries.values())
            .filter(|e| after.is_none_or(|a| e.name.as_str() > a))
            .take(limit.min(LIST_LIMIT_MAX))
            .cloned()
            .collect())
    }

    async fn usage(&self) -> Result<Usage> {
        let s = self.lock()?;
        let live: u64 = s.blobs.values().map(|(m, _)| m.size_bytes).sum();
        Ok(Usage {
            total_bytes: u64::MAX,
            free_bytes: u64::MAX - live,
            live_blob_bytes: live,
        })
    }

    fn health(&self) -> Health {
        match self.state.lock() {
            Ok(s) => s.failed.clone().map_or(Health::Ok, Health::Failed),
            Err(_) => Health::Failed("memory engine lock poisoned".into()),
        }
    }
}
