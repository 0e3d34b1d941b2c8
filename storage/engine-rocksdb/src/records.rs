//! Extent objects, listings and the replication views, all held in the RocksDB index.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::chunk;
use cairn_engine::digest::bucket_of;
use cairn_engine::extent::{self, ExtentPiece};
use cairn_engine::limits::{CHUNK_MAX_BYTES, LIST_LIMIT_MAX, REPLICATION_ENTRIES_MAX};
use cairn_engine::listing::{ListSource, run_query};
use cairn_engine::{
    BlobEntry, Error, ExtentKey, ExtentRead, ListPage, ListQuery, ListingEntry, ListingInfo,
    ListingKey, ListingRecord, ListingStats, PartitionDigest, PieceMeta, Result, WriteOutcome,
    WriteTag, lww, validate_name,
};
use rocksdb::{DB, DBRawIterator, Direction, IteratorMode, ReadOptions, WriteBatch};

use crate::engine::Inner;
use crate::extent_log::{PieceIdentity, PieceRead, PieceReadError};
use crate::keys::{self, BlobRecord, PieceData, PieceRecord, StoredPiece};
use crate::piece_list::PieceList;

/// Visits every key/value starting with `prefix` (blocking).
pub(crate) fn scan_prefix(
    inner: &Inner,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    // The upper bound stops the iterator at the prefix's end: without it, finding out that
    // the prefix is exhausted can mean stepping over many deleted keys beyond it.
    let mut opts = ReadOptions::default();
    if let Some(end) = prefix_end(prefix) {
        opts.set_iterate_upper_bound(end);
    }
    for item in inner
        .db
        .iterator_opt(IteratorMode::From(prefix, Direction::Forward), opts)
    {
        let (k, v) = item.map_err(|e| inner.read_error(e))?;
        if !k.starts_with(prefix) || !f(&k, &v)? {
            break;
        }
    }
    Ok(())
}

/// The first key after every key starting with `prefix` (None: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

// ---- Extents ------------------------------------------------------------------------------------

pub(crate) fn piece_key(prefix: &[u8], tag: WriteTag) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&tag.epoch.to_be_bytes());
    k.extend_from_slice(&tag.seq.to_be_bytes());
    k
}

pub(crate) fn chunk_key(data_prefix: &[u8], tag: WriteTag, index: u64) -> Vec<u8> {
    let mut k = piece_key(data_prefix, tag);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The piece records of one object, from the cache or else the database.
pub(crate) fn cached_metas(inner: &Inner, prefix: &[u8]) -> Result<Arc<PieceList>> {
    match inner.pieces.get(prefix) {
        Ok(metas) => Ok(metas),
        Err(ticket) => {
            let metas = Arc::new(PieceList::new(load_metas(inner, prefix)?));
            inner.pieces.fill(prefix, ticket, metas.clone());
            Ok(metas)
        }
    }
}

/// The tag in a piece record's key (after the object's prefix).
pub(crate) fn piece_tag(key: &[u8], prefix_len: usize) -> Result<WriteTag> {
    let tail = key.get(prefix_len..).unwrap_or(&[]);
    let (Some(e), Some(s)) = (tail.get(..8), tail.get(8..16)) else {
        return Err(Error::Corrupt("malformed extent key".into()));
    };
    let word = |b: &[u8]| -> Result<u64> {
        Ok(u64::from_be_bytes(
            b.try_into()
                .map_err(|_| Error::Corrupt("extent key".into()))?,
        ))
    };
    Ok(WriteTag {
        epoch: word(e)?,
        seq: word(s)?,
    })
}

pub(crate) fn stored_piece(tag: WriteTag, rec: &PieceRecord) -> StoredPiece {
    StoredPiece {
        meta: PieceMeta {
            tag,
            offset: rec.offset,
            len_bytes: rec.len_bytes,
            data: rec.data != PieceData::None,
        },
        data: rec.data,
    }
}

/// The piece records of one object (no bytes), in tag order.
fn load_metas(inner: &Inner, prefix: &[u8]) -> Result<Vec<StoredPiece>> {
    let mut out = Vec::new();
    scan_prefix(inner, prefix, |k, v| {
        let tag = piece_tag(k, prefix.len())?;
        let rec: PieceRecord = keys::decode(v)?;
        out.push(stored_piece(tag, &rec));
        Ok(true)
    })?;
    Ok(out)
}

/// Checks the image's fence for `epoch` (`pending`: a raise not yet written, which wins over
/// the stored fence): `Ok(Some(epoch))` if `epoch` raises it, and the caller puts the raise in
/// its batch and reports it to [`crate::fence_cache::FenceCache::stored`] once the batch is
/// written (or `forget`s the image if the write failed). Call under the index lock.
pub(crate) fn fence_decision(
    inner: &Inner,
    image: &str,
    epoch: u64,
    pending: Option<u64>,
) -> Result<Option<u64>> {
    let seen = match pending.or_else(|| inner.fences.get(image)) {
        Some(e) => e,
        None => {
            let stored = match inner.get(&keys::fence(image))? {
                Some(v) => u64::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| Error::Corrupt("fence record".into()))?,
                ),
                None => 0,
            };
            inner.fences.stored(image, stored);
            stored
        }
    };
    if epoch < seen {
        return Err(Error::Fenced { seen });
    }
    Ok((epoch > seen).then_some(epoch))
}

pub(crate) fn chunk_count(len_bytes: u64) -> u64 {
    len_bytes.div_ceil(CHUNK_MAX_BYTES as u64)
}

/// Reads `[from, to)` of a piece stored in the index (before the extent log; piece-relative),
/// chunk by chunk, verified.
fn read_index_piece_bytes(
    inner: &Inner,
    data_prefix: &[u8],
    piece: &PieceMeta,
    from: u64,
    to: u64,
) -> Result<Bytes> {
    let chunk = CHUNK_MAX_BYTES as u64;
    let (first, last) = (from / chunk, (to - 1) / chunk);
    let mut out = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
    // RocksDB's own checks stay on: besides the blob record's CRC they verify that the record
    // read is the one for this key (a damaged index entry could otherwise land on another
    // object's chunk, whose own CRC32C would pass), and with the CPU's CRC they are cheap.
    let opts = ReadOptions::default();
    for c in first..=last {
        // Pinned: the chunk is verified and sliced where RocksDB read it, not copied first.
        let encoded = inner
            .db
            .get_pinned_opt(chunk_key(data_prefix, piece.tag, c), &opts)
            .map_err(|e| inner.read_error(e))?
            .ok_or_else(|| Error::Corrupt(format!("extent chunk {c} is missing")))?;
        let data = chunk::verify_chunk(&encoded)
            .map_err(|e| Error::Corrupt(format!("extent chunk {c}: {e}")))?;
        if data.len() != chunk::chunk_data_len_bytes(c, piece.len_bytes) {
            return Err(Error::Corrupt(format!(
                "extent chunk {c} has the wrong length"
            )));
        }
        let base = c * chunk;
        let s = usize::try_from(from.max(base) - base).unwrap_or(0);
        let e = usize::try_from(to.min(base + data.len() as u64) - base).unwrap_or(0);
        out.extend_from_slice(&data[s..e]);
    }
    Ok(Bytes::from(out))
}

/// Reads `[from, to)` of a piece in the extent log (piece-relative), checked. `Ok(None)`: the
/// file is gone (its pieces were moved meanwhile), or, with `nowait`, not all in the page cache.
fn read_log_piece_bytes(
    inner: &Inner,
    prefix: &[u8],
    piece: &PieceMeta,
    at: &PieceData,
    range: (u64, u64),
    nowait: bool,
) -> Result<Option<Bytes>> {
    let identity = PieceIdentity::new(prefix, piece.tag);
    match inner
        .log
        .read_piece(at, &identity, piece.len_bytes, range, nowait)
    {
        Ok(PieceRead::Bytes(b)) => Ok(Some(b)),
        Ok(PieceRead::FileGone | PieceRead::WouldBlock) => Ok(None),
        Err(PieceReadError::Io(e)) => Err(Error::Io(e)),
        Err(e) => Err(Error::Corrupt(format!("extent log piece {at:?}: {e}"))),
    }
}

/// Attempts at a read whose log file disappeared under it (moved by the garbage collector
/// between finding the piece and opening its file); each retry sees the moved records.
const LOG_READ_ATTEMPTS: usize = 3;

/// The winning pieces of `[offset, offset + len_bytes)` as of `upto` (None: the head), with
/// their bytes; stretches no piece covers are left out.
fn visible_pieces(
    inner: &Inner,
    key: &ExtentKey,
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
) -> Result<Vec<ExtentPiece>> {
    let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
    for _ in 0..LOG_READ_ATTEMPTS {
        let metas = cached_metas(inner, &prefix)?;
        if let Some(pieces) = read_pieces(inner, key, &metas, (offset, len_bytes), upto, false)? {
            return Ok(pieces);
        }
    }
    // Moved by the garbage collector three times during one read is not plausible: the file is
    // missing (damaged device), and so are the bytes.
    Err(Error::Corrupt(format!(
        "extent data of {}/{} is in a missing extent log file",
        key.image, key.object_no
    )))
}

/// Paints `metas` over the range and reads each winning piece's bytes. `Ok(None)`: a log file
/// was gone (read the records again) or, with `nowait`, a byte was not in the page cache or a
/// piece is stored in the index (read on the pool).
fn read_pieces(
    inner: &Inner,
    key: &ExtentKey,
    metas: &PieceList,
    (offset, len_bytes): (u64, u64),
    upto: Option<WriteTag>,
    nowait: bool,
) -> Result<Option<Vec<ExtentPiece>>> {
    let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
    let mut out = Vec::new();
    for (s, e, src) in extent::paint(metas.iter(), offset, len_bytes, upto) {
        let Some(p) = src else { continue };
        let range = (s - p.meta.offset, e - p.meta.offset);
        let data = match p.data {
            PieceData::None => None,
            PieceData::Index if nowait => return Ok(None),
            PieceData::Index => {
                let data_prefix =
                    keys::extent_data_prefix(key.partition, &key.image, key.object_no);
                Some(read_index_piece_bytes(
                    inner,
                    &data_prefix,
                    &p.meta,
                    range.0,
                    range.1,
                )?)
            }
            PieceData::Log { .. } | PieceData::Aligned { .. } => {
                match read_log_piece_bytes(inner, &prefix, &p.meta, &p.data, range, nowait)? {
                    Some(b) => Some(b),
                    None => return Ok(None),
                }
            }
        };
        out.push(ExtentPiece {
            tag: p.meta.tag,
            offset: s,
            len_bytes: e - s,
            data,
        });
    }
    Ok(Some(out))
}

pub(crate) async fn read_extent(
    inner: &Arc<Inner>,
    key: &ExtentKey,
    offset: u64,
    len_bytes: u64,
) -> Result<ExtentRead> {
    let pieces = read_extent_pieces(inner, key, offset, len_bytes, None).await?;
    Ok(extent::assemble(&pieces, offset, len_bytes))
}

pub(crate) async fn read_extent_pieces(
    inner: &Arc<Inner>,
    key: &ExtentKey,
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
) -> Result<Vec<ExtentPiece>> {
    inner.check()?;
    extent::validate_range(offset, len_bytes, false)?;
    // Most block reads find their records cached and their bytes in the page cache: answered
    // here, they cost no thread hand-off (which was most of a 4 KiB read's CPU at depth).
    if len_bytes <= NOWAIT_READ_BYTES_MAX {
        // A read answered in place never waits, so it spends the task's cooperative budget as
        // tokio's own I/O does: a caller reading in a loop still yields its worker now and then.
        tokio::task::coop::consume_budget().await;
        if let Some(done) = visible_pieces_now(inner, key, offset, len_bytes, upto) {
            return done;
        }
    }
    let (i, key) = (inner.clone(), key.clone());
    inner
        .pool
        .run(move || visible_pieces(&i, &key, offset, len_bytes, upto))
        .await
}

/// Reads up to this size may be answered on the caller's thread (copying more from the page
/// cache would hold an async worker too long).
const NOWAIT_READ_BYTES_MAX: u64 = 128 * 1024;

/// [`visible_pieces`] without blocking: `None` unless the object's records are cached and
/// every byte it needs is in the page cache (`RWF_NOWAIT`), so the caller goes to the pool.
fn visible_pieces_now(
    inner: &Inner,
    key: &ExtentKey,
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
) -> Option<Result<Vec<ExtentPiece>>> {
    let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
    let metas = inner.pieces.get(&prefix).ok()?;
    read_pieces(inner, key, &metas, (offset, len_bytes), upto, true).transpose()
}

/// An object's pieces in tag order, as `StorageEngine::extent_piece_metas` lists them.
fn metas_by_tag(list: &PieceList) -> Vec<PieceMeta> {
    let mut metas: Vec<PieceMeta> = list.iter().map(|p| p.meta).collect();
    metas.sort_unstable_by_key(|m| m.tag);
    metas
}

pub(crate) async fn piece_metas(inner: &Arc<Inner>, key: &ExtentKey) -> Result<Vec<PieceMeta>> {
    inner.check()?;
    // A cached object is answered here: a lookup under a shard mutex, no I/O, so not worth
    // the round trip through the blocking pool (two thread wake-ups per 4 KiB read).
    let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
    if let Ok(metas) = inner.pieces.get(&prefix) {
        return Ok(metas_by_tag(&metas));
    }
    let (i, key) = (inner.clone(), key.clone());
    inner
        .pool
        .run(move || {
            let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
            Ok(metas_by_tag(cached_metas(&i, &prefix)?.as_ref()))
        })
        .await
}

pub(crate) async fn sync_extents(inner: &Arc<Inner>) -> Result<u64> {
    inner.check()?;
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            i.sync_extent_log()?;
            i.sync_wal()?;
            Ok(i.incarnation)
        })
        .await
}

pub(crate) async fn fence(inner: &Arc<Inner>, image: &str, epoch: u64) -> Result<u64> {
    inner.check()?;
    validate_name("image", image)?;
    let (i, image) = (inner.clone(), image.to_string());
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            match fence_decision(&i, &image, epoch, None) {
                Err(Error::Fenced { seen }) => Ok(seen),
                Err(e) => Err(e),
                Ok(None) => Ok(epoch),
                Ok(Some(raised)) => {
                    let mut batch = WriteBatch::default();
                    batch.put(keys::fence(&image), raised.to_be_bytes());
                    if let Err(e) = i.write(batch) {
                        i.fences.forget(&image);
                        return Err(e);
                    }
                    i.fences.stored(&image, raised);
                    Ok(epoch)
                }
            }
        })
        .await
}

// ---- Listings -----------------------------------------------------------------------------------

fn entry_key(key: &ListingKey, name: &str) -> Vec<u8> {
    let mut k = keys::listing_prefix(key.partition, &key.path);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) async fn merge_entries(
    inner: &Arc<Inner>,
    key: &ListingKey,
    entries: Vec<ListingEntry>,
) -> Result<()> {
    inner.check()?;
    validate_name("listing path", &key.path)?;
    for e in &entries {
        validate_name("listing entry name", &e.name)?;
    }
    let (i, key) = (inner.clone(), key.clone());
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            let stats_key = keys::listing_meta(keys::LISTING_STATS, key.partition, &key.path);
            let mut stats: ListingStats = i
                .get(&stats_key)?
                .map(|v| keys::decode(&v))
                .transpose()?
                .unwrap_or_default();
            let before = stats;
            let mut batch = WriteBatch::default();
            // Entries of one batch may repeat a name: apply them in order against a local view.
            let mut view: std::collections::HashMap<String, Option<ListingEntry>> =
                std::collections::HashMap::new();
            for e in entries {
                let k = entry_key(&key, &e.name);
                let old = match view.get(&e.name) {
                    Some(o) => o.clone(),
                    None => i
                        .get(&k)?
                        .map(|v| keys::decode::<ListingEntry>(&v))
                        .transpose()?,
                };
                if lww(old.as_ref().map(|o| o.timestamp), e.timestamp) != WriteOutcome::Applied {
                    continue;
                }
                if let Some(o) = old.as_ref().filter(|o| !o.deleted) {
                    stats.object_count = stats.object_count.saturating_sub(1);
                    stats.bytes = stats.bytes.saturating_sub(o.size_bytes);
                }
                if !e.deleted {
                    stats.object_count += 1;
                    stats.bytes += e.size_bytes;
                }
                batch.put(&k, keys::encode(&e)?);
                view.insert(e.name.clone(), Some(e));
            }
            if batch.is_empty() {
                return Ok(());
            }
            if stats != before || i.get(&stats_key)?.is_none() {
                batch.put(&stats_key, keys::encode(&stats)?);
            }
            i.write(batch)
        })
        .await
}

pub(crate) async fn merge_info(
    inner: &Arc<Inner>,
    key: &ListingKey,
    info: ListingInfo,
) -> Result<()> {
    inner.check()?;
    validate_name("listing path", &key.path)?;
    let (i, key) = (inner.clone(), key.clone());
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            let k = keys::listing_meta(keys::LISTING_INFO, key.partition, &key.path);
            let existing: Option<ListingInfo> = i.get(&k)?.map(|v| keys::decode(&v)).transpose()?;
            let fresh = existing.is_none();
            let mut merged = existing.unwrap_or_default();
            if merged.merge(&info) || fresh {
                let mut batch = WriteBatch::default();
                batch.put(&k, keys::encode(&merged)?);
                i.write(batch)?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn get_meta<T: serde::de::DeserializeOwned + Send + 'static>(
    inner: &Arc<Inner>,
    tag: u8,
    key: &ListingKey,
) -> Result<Option<T>> {
    inner.check()?;
    let (i, k) = (
        inner.clone(),
        keys::listing_meta(tag, key.partition, &key.path),
    );
    inner
        .pool
        .run(move || i.get(&k)?.map(|v| keys::decode(&v)).transpose())
        .await
}

/// A listing cursor on a RocksDB raw iterator, confined to one listing's key prefix.
struct RocksListSource<'a> {
    iter: DBRawIterator<'a>,
    prefix: Vec<u8>,
    reverse: bool,
}

impl RocksListSource<'_> {
    fn status(&self) -> Result<()> {
        self.iter
            .status()
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
    }
}

impl ListSource for RocksListSource<'_> {
    fn seek(&mut self, bound: Bound<&[u8]>) -> Result<()> {
        let full = |b: &[u8]| [self.prefix.as_slice(), b].concat();
        match (self.reverse, bound) {
            (false, Bound::Unbounded) => self.iter.seek(&self.prefix),
            (false, Bound::Included(b)) => self.iter.seek(full(b)),
            (false, Bound::Excluded(b)) => {
                let k = full(b);
                self.iter.seek(&k);
                if self.iter.key() == Some(k.as_slice()) {
                    self.iter.next();
                }
            }
            (true, Bound::Unbounded) => {
                // Just past the prefix: the separator NUL becomes 0x01.
                let mut end = self.prefix.clone();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                self.iter.seek_for_prev(end);
            }
            (true, Bound::Included(b)) => self.iter.seek_for_prev(full(b)),
            (true, Bound::Excluded(b)) => {
                let k = full(b);
                self.iter.seek_for_prev(&k);
                if self.iter.key() == Some(k.as_slice()) {
                    self.iter.prev();
                }
            }
        }
        self.status()
    }

    fn next_entry(&mut self) -> Result<Option<ListingEntry>> {
        let entry = match (self.iter.key(), self.iter.value()) {
            (Some(k), Some(v)) if k.starts_with(&self.prefix) => keys::decode::<ListingEntry>(v)?,
            _ => return self.status().map(|()| None),
        };
        if self.reverse {
            self.iter.prev();
        } else {
            self.iter.next();
        }
        Ok(Some(entry))
    }
}

fn raw_iter(db: &DB) -> DBRawIterator<'_> {
    db.raw_iterator()
}

pub(crate) async fn list(
    inner: &Arc<Inner>,
    key: &ListingKey,
    query: &ListQuery,
) -> Result<ListPage> {
    inner.check()?;
    let (i, key, query) = (inner.clone(), key.clone(), query.clone());
    inner
        .pool
        .run(move || {
            let mut source = RocksListSource {
                iter: raw_iter(&i.db),
                prefix: keys::listing_prefix(key.partition, &key.path),
                reverse: query.reverse,
            };
            run_query(&mut source, &query)
        })
        .await
}

pub(crate) async fn raw_entries(
    inner: &Arc<Inner>,
    key: &ListingKey,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ListingEntry>> {
    inner.check()?;
    let (i, key, after) = (inner.clone(), key.clone(), after.map(str::to_string));
    inner
        .pool
        .run(move || {
            let mut source = RocksListSource {
                iter: raw_iter(&i.db),
                prefix: keys::listing_prefix(key.partition, &key.path),
                reverse: false,
            };
            source.seek(
                after
                    .as_deref()
                    .map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes())),
            )?;
            let mut out = Vec::new();
            while out.len() < limit.min(LIST_LIMIT_MAX) {
                match source.next_entry()? {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
            Ok(out)
        })
        .await
}

// ---- Replication views --------------------------------------------------------------------------

pub(crate) async fn partitions(inner: &Arc<Inner>) -> Result<Vec<u32>> {
    inner.check()?;
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let mut parts = Vec::new();
            for tag in keys::PARTITIONED {
                let mut iter = i.db.raw_iterator();
                iter.seek([tag]);
                // Jump from partition to partition: one seek per partition, not per key.
                while let Some([t, p0, p1, p2, p3, ..]) = iter.key() {
                    if *t != tag {
                        break;
                    }
                    let p = u32::from_be_bytes([*p0, *p1, *p2, *p3]);
                    parts.push(p);
                    match p.checked_add(1) {
                        Some(next) => iter.seek(keys::partition_prefix(tag, next)),
                        None => break,
                    }
                }
            }
            parts.sort_unstable();
            parts.dedup();
            Ok(parts)
        })
        .await
}

pub(crate) async fn blob_digest(inner: &Arc<Inner>, partition: u32) -> Result<PartitionDigest> {
    inner.check()?;
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let prefix = keys::partition_prefix(keys::BLOB, partition);
            let mut d = PartitionDigest::empty();
            scan_prefix(&i, &prefix, |k, v| {
                let rec: BlobRecord = keys::decode(v)?;
                let name = std::str::from_utf8(&k[prefix.len()..])
                    .map_err(|_| Error::Corrupt("blob key".into()))?;
                d.fold(name, rec.meta.timestamp, rec.meta.tombstone);
                Ok(true)
            })?;
            Ok(d)
        })
        .await
}

pub(crate) async fn blob_entries(
    inner: &Arc<Inner>,
    partition: u32,
    buckets: &[u16],
) -> Result<Vec<BlobEntry>> {
    inner.check()?;
    let (i, buckets) = (inner.clone(), buckets.to_vec());
    inner
        .pool
        .run(move || {
            let prefix = keys::partition_prefix(keys::BLOB, partition);
            let mut out = Vec::new();
            scan_prefix(&i, &prefix, |k, v| {
                let name = std::str::from_utf8(&k[prefix.len()..])
                    .map_err(|_| Error::Corrupt("blob key".into()))?;
                if buckets.contains(&bucket_of(name)) {
                    let rec: BlobRecord = keys::decode(v)?;
                    out.push(BlobEntry {
                        name: name.to_string(),
                        timestamp: rec.meta.timestamp,
                        tombstone: rec.meta.tombstone,
                        size_bytes: rec.meta.size_bytes,
                    });
                }
                Ok(out.len() < REPLICATION_ENTRIES_MAX)
            })?;
            Ok(out)
        })
        .await
}

/// Visits every listing entry of a partition as (path, entry) (blocking).
fn scan_listing_entries(
    inner: &Inner,
    partition: u32,
    mut f: impl FnMut(&str, ListingEntry) -> Result<bool>,
) -> Result<()> {
    let prefix = keys::partition_prefix(keys::LISTING_ENTRY, partition);
    scan_prefix(inner, &prefix, |k, v| {
        let rest = &k[prefix.len()..];
        let sep = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| Error::Corrupt("listing key".into()))?;
        let path =
            std::str::from_utf8(&rest[..sep]).map_err(|_| Error::Corrupt("listing key".into()))?;
        f(path, keys::decode(v)?)
    })
}

pub(crate) async fn listing_digest(inner: &Arc<Inner>, partition: u32) -> Result<PartitionDigest> {
    inner.check()?;
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let mut d = PartitionDigest::empty();
            scan_listing_entries(&i, partition, |path, e| {
                d.fold(
                    &cairn_engine::digest::listing_item_name(path, &e.name),
                    e.timestamp,
                    e.deleted,
                );
                Ok(true)
            })?;
            Ok(d)
        })
        .await
}

pub(crate) async fn listing_records(
    inner: &Arc<Inner>,
    partition: u32,
    buckets: &[u16],
) -> Result<Vec<ListingRecord>> {
    inner.check()?;
    let (i, buckets) = (inner.clone(), buckets.to_vec());
    inner
        .pool
        .run(move || {
            let mut out = Vec::new();
            scan_listing_entries(&i, partition, |path, e| {
                if buckets.contains(&bucket_of(&cairn_engine::digest::listing_item_name(
                    path, &e.name,
                ))) {
                    out.push(ListingRecord {
                        path: path.to_string(),
                        entry: e,
                    });
                }
                Ok(out.len() < REPLICATION_ENTRIES_MAX)
            })?;
            Ok(out)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
