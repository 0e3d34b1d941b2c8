//! Blob reads by key, purge and quarantine, tombstone reclaim, segment and extent log
//! compaction, and audit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_engine::chunk;
use cairn_engine::limits::{AUDIT_BATCH_MAX, CHUNK_MAX_BYTES};
use cairn_engine::{
    AuditFailure, AuditReport, BlobKey, BlobMeta, ByteRange, CompactionReport, Error, Result,
    Timestamp, WriteOutcome, clamp_range, lww,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::blobs::{RocksReader, account, append_segment, release};
use crate::engine::{Inner, quarantine_dir, sync_dir};
use crate::extent_log::{self, PieceIdentity};
use crate::io::IoBackend;
use crate::keys::{self, BlobRecord, Location, PieceData, PieceRecord};
use crate::limits::{
    BLOB_GARBAGE_BYTES_MIN, BLOB_GARBAGE_PERCENT_MIN, SEGMENT_GARBAGE_PERCENT_MIN,
};

pub(crate) async fn blob_meta(inner: &Arc<Inner>, key: &BlobKey) -> Result<Option<BlobMeta>> {
    inner.check()?;
    let (i, k) = (inner.clone(), keys::blob(key.partition, &key.name));
    Ok(inner
        .pool
        .run(move || i.get_blob(&k))
        .await?
        .map(|r| r.meta))
}

pub(crate) async fn read_blob(
    inner: &Arc<Inner>,
    key: &BlobKey,
    range: Option<ByteRange>,
) -> Result<Option<(BlobMeta, RocksReader)>> {
    inner.check()?;
    // A concurrent overwrite or compaction may unlink the file between the index read and the
    // open; the second attempt sees the new record.
    for attempt in 0..2 {
        let (i, k) = (inner.clone(), keys::blob(key.partition, &key.name));
        let opened = inner
            .pool
            .run(move || {
                let Some(rec) = i.get_blob(&k)?.filter(|r| !r.meta.tombstone) else {
                    return Ok(None);
                };
                match i.open_location(rec.location) {
                    Ok(file) => Ok(Some(Some((rec, file)))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(None)),
                    Err(e) => Err(Error::Io(e)),
                }
            })
            .await?;
        match opened {
            None => return Ok(None),
            Some(Some((rec, file))) => {
                let (start, end) = clamp_range(range, rec.meta.size_bytes)?;
                let (file, base) = file.map_or((None, 0), |(f, b)| (Some(f), b));
                let reader =
                    RocksReader::new(inner.clone(), file, base, rec.meta.size_bytes, start, end);
                return Ok(Some((rec.meta, reader)));
            }
            Some(None) if attempt == 0 => continue,
            Some(None) => break,
        }
    }
    Err(Error::Corrupt(format!(
        "data file of {} is missing",
        key.name
    )))
}

/// Removes the record if it is still `timestamp`; `quarantine` keeps a copy of the record (and
/// moves a large body) into the quarantine area first.
pub(crate) async fn remove_version(
    inner: &Arc<Inner>,
    key: &BlobKey,
    timestamp: Timestamp,
    quarantine: bool,
) -> Result<bool> {
    inner.check()?;
    let (i, key) = (inner.clone(), key.clone());
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            let k = keys::blob(key.partition, &key.name);
            let Some(rec) = i.get_blob(&k)?.filter(|r| r.meta.timestamp == timestamp) else {
                return Ok(false);
            };
            let mut batch = WriteBatch::default();
            batch.delete(&k);
            let mut kept = rec.clone();
            if quarantine {
                if let Location::File { id } = rec.location {
                    let to = quarantine_dir(&i.dir).join(crate::engine::file_name(id));
                    std::fs::rename(i.blob_path(id), &to)?;
                    sync_dir(&quarantine_dir(&i.dir))
                        .map_err(|e| i.fsync_failed("quarantine directory", &e))?;
                } else {
                    // Segment space is reclaimed by compaction; only the record is kept.
                    kept.location = Location::None;
                }
                batch.put(
                    keys::quarantine(key.partition, &key.name, timestamp),
                    keys::encode(&kept)?,
                );
            }
            i.write(batch)?;
            account(&i, Some(&rec), None);
            if !quarantine {
                release(&i, rec.location);
            }
            Ok(true)
        })
        .await
}

/// Moves the version under `from` (exactly `timestamp`) to `to` by last-writer-wins in one
/// index batch; the bytes stay where they are.
pub(crate) async fn promote(
    inner: &Arc<Inner>,
    from: &BlobKey,
    to: &BlobKey,
    timestamp: Timestamp,
) -> Result<Option<WriteOutcome>> {
    inner.check()?;
    cairn_engine::validate_name("blob name", &to.name)?;
    let (i, from, to) = (inner.clone(), from.clone(), to.clone());
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            let fk = keys::blob(from.partition, &from.name);
            let Some(rec) = i
                .get_blob(&fk)?
                .filter(|r| r.meta.timestamp == timestamp && !r.meta.tombstone)
            else {
                return Ok(None);
            };
            let tk = keys::blob(to.partition, &to.name);
            let old = i.get_blob(&tk)?;
            let outcome = lww(old.as_ref().map(|r| r.meta.timestamp), timestamp);
            let mut batch = WriteBatch::default();
            batch.delete(&fk);
            if outcome == WriteOutcome::Applied {
                batch.put(&tk, keys::encode(&rec)?);
            }
            i.write(batch)?;
            if outcome == WriteOutcome::Applied {
                // The moved version was counted when staged; what it replaced leaves.
                account(&i, old.as_ref(), None);
                if let Some(old) = old {
                    release(&i, old.location);
                }
            } else {
                account(&i, Some(&rec), None);
                release(&i, rec.location);
            }
            Ok(Some(outcome))
        })
        .await
}

pub(crate) async fn quarantined_count(inner: &Arc<Inner>) -> Result<u64> {
    inner.check()?;
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let mut n = 0;
            for item in
                i.db.iterator(IteratorMode::From(&[keys::QUARANTINE], Direction::Forward))
            {
                let (k, _) = item.map_err(|e| i.read_error(e))?;
                if k.first() != Some(&keys::QUARANTINE) {
                    break;
                }
                n += 1;
            }
            Ok(n)
        })
        .await
}

/// Visits every blob record in key order from `from` until `f` returns false (blocking).
pub(crate) fn scan_blobs(
    inner: &Inner,
    from: &[u8],
    mut f: impl FnMut(&[u8], BlobRecord) -> Result<bool>,
) -> Result<()> {
    for item in inner
        .db
        .iterator(IteratorMode::From(from, Direction::Forward))
    {
        let (k, v) = item.map_err(|e| inner.read_error(e))?;
        if k.first() != Some(&keys::BLOB) || !f(&k, keys::decode(&v)?)? {
            break;
        }
    }
    Ok(())
}

pub(crate) async fn reclaim_tombstones(
    inner: &Arc<Inner>,
    now_micros: u64,
    reclaim_age_micros: u64,
) -> Result<u64> {
    inner.check()?;
    let cutoff = now_micros.saturating_sub(reclaim_age_micros);
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let mut old = Vec::new();
            scan_blobs(&i, &[keys::BLOB], |k, rec| {
                if rec.meta.tombstone && rec.meta.timestamp.wall_micros < cutoff {
                    old.push((k.to_vec(), rec.meta.timestamp));
                }
                Ok(true)
            })?;
            let _guard = i.lock_index()?;
            let mut batch = WriteBatch::default();
            let mut n = 0;
            for (k, ts) in old {
                // Re-check under the lock: a newer write may have replaced the tombstone.
                if i.get_blob(&k)?
                    .is_some_and(|r| r.meta.tombstone && r.meta.timestamp == ts)
                {
                    batch.delete(&k);
                    n += 1;
                }
            }
            if n > 0 {
                i.write(batch)?;
            }
            Ok(n)
        })
        .await
}

/// Rewrites the live records of sealed segments that are mostly garbage, then deletes them.
pub(crate) async fn compact(inner: &Arc<Inner>) -> Result<CompactionReport> {
    inner.check()?;
    let current = inner.segment.lock().await.as_ref().map(|s| s.id);
    let i = inner.clone();
    let (sizes, live) = inner
        .pool
        .run(move || {
            let mut sizes: HashMap<u64, u64> = HashMap::new();
            for entry in std::fs::read_dir(crate::engine::seg_dir(&i.dir))? {
                let entry = entry?;
                if let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| u64::from_str_radix(n, 16).ok())
                {
                    sizes.insert(id, entry.metadata()?.len());
                }
            }
            let mut live: HashMap<u64, Vec<(Vec<u8>, BlobRecord)>> = HashMap::new();
            scan_blobs(&i, &[keys::BLOB], |k, rec| {
                if let Location::Segment { id, .. } = rec.location {
                    live.entry(id).or_default().push((k.to_vec(), rec));
                }
                Ok(true)
            })?;
            Ok((sizes, live))
        })
        .await?;
    let mut report = CompactionReport::default();
    for (id, size) in sizes {
        if Some(id) == current {
            continue;
        }
        let records = live.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        let live_bytes: u64 = records
            .iter()
            .map(|(_, r)| chunk::encoded_len_bytes(r.meta.size_bytes))
            .sum();
        let garbage = size.saturating_sub(live_bytes);
        if size == 0
            || garbage * 100 < size * SEGMENT_GARBAGE_PERCENT_MIN
            || inner.is_segment_pinned(id)
        {
            continue;
        }
        let mut all_moved = true;
        for (k, rec) in records {
            let Location::Segment { offset, .. } = rec.location else {
                continue;
            };
            let (i, rec2) = (inner.clone(), rec.clone());
            let file = inner
                .pool
                .run(move || Ok(i.open_location(rec2.location)?))
                .await?;
            let Some((file, _)) = file else { continue };
            let len = usize::try_from(chunk::encoded_len_bytes(rec.meta.size_bytes)).unwrap_or(0);
            let encoded = inner.io.read_at(file, offset, len).await?;
            if chunk::decode_body(&encoded, rec.meta.size_bytes).is_err() {
                // Leave a corrupt body where it is: the auditor will quarantine it.
                all_moved = false;
                continue;
            }
            let (location, _pin) = append_segment(inner, encoded).await?;
            let (i, k, old) = (inner.clone(), k.clone(), rec.clone());
            let moved = inner
                .pool
                .run(move || {
                    let _guard = i.lock_index()?;
                    // Only if nothing replaced it meanwhile.
                    match i.get_blob(&k)? {
                        Some(now) if now == old => {
                            let mut batch = WriteBatch::default();
                            batch.put(&k, keys::encode(&BlobRecord { location, ..old })?);
                            i.write(batch)?;
                            Ok(true)
                        }
                        _ => Ok(false),
                    }
                })
                .await?;
            // The record changed meanwhile: replaced (its body is garbage now) or moved to
            // another key by `promote_blob` (its body is still live, at the same location).
            // Keep the segment; the next pass sees the index as it is then.
            all_moved &= moved;
        }
        // A write whose body is in this segment may still be on its way to the index.
        if all_moved && !inner.is_segment_pinned(id) {
            let i = inner.clone();
            inner
                .pool
                .run(move || Ok(std::fs::remove_file(i.segment_path(id))?))
                .await?;
            report.segments_rewritten += 1;
            report.bytes_reclaimed += garbage;
        }
    }
    let i = inner.clone();
    report.bytes_reclaimed += inner.pool.run(move || collect_blob_garbage(&i)).await?;
    let i = inner.clone();
    let (files, bytes) = inner
        .pool
        .run(move || collect_extent_log_garbage(&i))
        .await?;
    report.segments_rewritten += files;
    report.bytes_reclaimed += bytes;
    Ok(report)
}

/// Extent log files rewritten in one pass at most (each ≤ 256 MiB, at most half of it live).
const LOG_GC_FILES_PER_PASS: usize = 4;

/// Live extent log bytes copied under one hold of the index lock.
const LOG_GC_GROUP_BYTES_MAX: u64 = 8 << 20;

/// Extent log garbage (see `extent_log`): each sealed file with enough garbage has its live
/// pieces copied to the active file — under the index lock, a group at a time, each piece only
/// if its record still points where it did — and is deleted once the records that moved them
/// (and every record that freed the rest) are durable. A piece that fails its checksum is left
/// where it is, and so is its file. Returns (files deleted, bytes reclaimed) (blocking).
pub(crate) fn collect_extent_log_garbage(inner: &Inner) -> Result<(u64, u64)> {
    let victims: Vec<extent_log::Victim> = inner
        .log
        .victims()
        .into_iter()
        .take(LOG_GC_FILES_PER_PASS)
        .collect();
    if victims.is_empty() {
        return Ok((0, 0));
    }
    let ids: HashSet<u64> = victims.iter().map(|v| v.id).collect();
    // Found without the lock (a scan of every piece record); each is checked again under it.
    let mut candidates: Vec<(Vec<u8>, cairn_engine::WriteTag, u64)> = Vec::new();
    crate::records::scan_prefix(inner, &[keys::EXTENT], |k, v| {
        let rec: PieceRecord = keys::decode(v)?;
        if let Some((file, stored)) = extent_log::stored_bytes(&rec.data, rec.len_bytes)
            && ids.contains(&file)
        {
            let split = k
                .len()
                .checked_sub(16)
                .ok_or_else(|| Error::Corrupt("malformed extent key".into()))?;
            let tag = crate::records::piece_tag(k, split)?;
            // What the copy takes in the (interleaved) active file, and what it frees here.
            candidates.push((
                k[..split].to_vec(),
                tag,
                extent_log::encoded_len(rec.len_bytes).max(stored),
            ));
        }
        Ok(true)
    })?;
    let mut rest = candidates.as_slice();
    while !rest.is_empty() {
        let mut take = 0;
        let mut bytes = 0u64;
        while let Some((_, _, len)) = rest.get(take) {
            if take > 0 && bytes + len > LOG_GC_GROUP_BYTES_MAX {
                break;
            }
            bytes += len;
            take += 1;
        }
        let (group, tail) = rest.split_at(take);
        rest = tail;
        move_log_pieces(inner, &ids, group, bytes)?;
    }
    let mut files = 0;
    let mut reclaimed = 0;
    let guard = inner.lock_index()?;
    // The batches that freed these files' other pieces may not be synced yet: a crash must not
    // bring back a record pointing into a deleted file.
    inner.sync_wal()?;
    for v in &victims {
        if inner.log.remove(&guard, v.id)? {
            files += 1;
            reclaimed += v.size_bytes.saturating_sub(v.live_bytes);
        }
    }
    drop(guard);
    Ok((files, reclaimed))
}

/// Copies one group of pieces out of the victim files `ids`, under the index lock.
fn move_log_pieces(
    inner: &Inner,
    ids: &HashSet<u64>,
    group: &[(Vec<u8>, cairn_engine::WriteTag, u64)],
    bytes: u64,
) -> Result<()> {
    let guard = inner.lock_index()?;
    let mut append = inner.log_append(&guard, bytes)?;
    let mut batch = WriteBatch::default();
    let mut objects: HashMap<Vec<u8>, crate::piece_list::PieceList> = HashMap::new();
    let mut freed = Vec::new();
    let mut moved: HashSet<Vec<u8>> = HashSet::new();
    for (prefix, tag, _) in group {
        if !objects.contains_key(prefix) {
            let metas = crate::records::cached_metas(inner, prefix)?;
            objects.insert(prefix.clone(), metas.as_ref().clone());
        }
        let Some(pieces) = objects.get_mut(prefix) else {
            continue;
        };
        // Gone or moved since the scan: nothing to do (and no block of the list copied).
        let Some((at, file, stored, len_bytes)) = pieces.iter().find_map(|p| {
            let (file, stored) = extent_log::stored_bytes(&p.data, p.meta.len_bytes)?;
            (p.meta.tag == *tag && ids.contains(&file)).then_some((
                p.data,
                file,
                stored,
                p.meta.len_bytes,
            ))
        }) else {
            continue;
        };
        let encoded = match inner.log.read_encoded(&at, len_bytes) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(file, at = ?at, error = %e, "extent log piece unreadable; its file is kept");
                continue;
            }
            None => continue,
        };
        let identity = PieceIdentity::new(prefix, *tag);
        if let Err(e) =
            extent_log::verify_and_extract(&identity, &encoded, 0, len_bytes, 0, 0, &mut Vec::new())
        {
            tracing::error!(file, at = ?at, error = %e, "extent log piece is corrupt; its file is kept");
            continue;
        }
        let Some(piece) = pieces.get_mut(*tag) else {
            continue;
        };
        let (to_file, to_offset) = append.push_encoded(&encoded);
        moved.insert(prefix.clone());
        piece.data = PieceData::Log {
            file: to_file,
            offset: to_offset,
        };
        batch.put(
            crate::records::piece_key(prefix, *tag),
            keys::encode(&piece.record())?,
        );
        freed.push((file, stored));
    }
    if append.is_empty() {
        return Ok(());
    }
    inner
        .log
        .finish(&append)
        .map_err(|e| inner.write_error(e))?;
    inner.sync_extent_log()?;
    if let Err(e) = inner.write(batch) {
        for prefix in objects.keys() {
            inner.pieces.forget(prefix);
        }
        return Err(e);
    }
    inner.log.account(Some(&append), None, &freed);
    inner.log.recycle(Some(append), None);
    for (prefix, pieces) in objects {
        if moved.contains(&prefix) {
            inner.pieces.written(&prefix, pieces);
        }
    }
    drop(guard);
    Ok(())
}

/// RocksDB blob files (extent chunks) are garbage-collected here, on demand, not by every
/// compaction: with GC on, each compaction relocates every live blob of the oldest quarter of
/// the blob files, which was nine tenths of compaction work and a quarter of all CPU while
/// block images were written sequentially, most of it copying data that was not garbage. Once
/// at least [`BLOB_GARBAGE_PERCENT_MIN`] of the blob bytes are garbage (and at least
/// [`BLOB_GARBAGE_BYTES_MIN`]), one full compaction with GC over every blob file rewrites the
/// live blobs and drops the old files: at 40%, blob space stays within 1.7 times the live data
/// and each byte of garbage reclaimed costs at most 1.5 bytes of live data copied. Returns the
/// bytes reclaimed (blocking).
pub(crate) fn collect_blob_garbage(inner: &Inner) -> Result<u64> {
    // One pass at a time: a second would switch GC off under the first.
    let Ok(_one_pass) = inner.blob_gc.try_lock() else {
        return Ok(0);
    };
    let (total, garbage) = blob_file_bytes(inner)?;
    if garbage < BLOB_GARBAGE_BYTES_MIN || garbage * 100 < total * BLOB_GARBAGE_PERCENT_MIN {
        return Ok(0);
    }
    let gc = BlobGcOn::switch_on(inner)?;
    // Forced down to the last level: by default a manual compaction leaves the bottommost
    // files alone, and most live keys (so most blob references) are there.
    let mut compact = rocksdb::CompactOptions::default();
    compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
    inner
        .db
        .compact_range_opt(None::<&[u8]>, None::<&[u8]>, &compact);
    gc.switch_off()?;
    let (after, _) = blob_file_bytes(inner)?;
    let reclaimed = total.saturating_sub(after);
    tracing::info!(
        blob_bytes_before = total,
        garbage_bytes = garbage,
        blob_bytes_after = after,
        "blob files garbage-collected"
    );
    Ok(reclaimed)
}

/// Blob GC switched on for one manual compaction; switched off again however the pass ends,
/// so ordinary compactions never keep relocating live blobs.
struct BlobGcOn<'a> {
    inner: &'a Inner,
    on: bool,
}

impl<'a> BlobGcOn<'a> {
    const ON: [(&'static str, &'static str); 2] = [
        ("enable_blob_garbage_collection", "true"),
        ("blob_garbage_collection_age_cutoff", "1.0"),
    ];
    const OFF: [(&'static str, &'static str); 2] = [
        ("enable_blob_garbage_collection", "false"),
        ("blob_garbage_collection_age_cutoff", "0.25"),
    ];

    fn switch_on(inner: &'a Inner) -> Result<BlobGcOn<'a>> {
        let gc = BlobGcOn { inner, on: true };
        if let Err(e) = inner.db.set_options(&Self::ON) {
            // Part of the options may have been applied.
            let _ = gc.switch_off();
            return Err(Error::Failed(format!("cannot switch blob GC on: {e}")));
        }
        Ok(gc)
    }

    fn switch_off(mut self) -> Result<()> {
        self.on = false;
        self.inner
            .db
            .set_options(&Self::OFF)
            .map_err(|e| Error::Failed(format!("cannot switch blob GC off: {e}")))
    }
}

impl Drop for BlobGcOn<'_> {
    fn drop(&mut self) {
        if self.on
            && let Err(e) = self.inner.db.set_options(&Self::OFF)
        {
            tracing::error!(error = %e, "cannot switch RocksDB blob GC off again");
        }
    }
}

/// Bytes in the current version's blob files, and how many of them are garbage.
pub(crate) fn blob_file_bytes(inner: &Inner) -> Result<(u64, u64)> {
    let prop = |name: &str| {
        inner
            .db
            .property_int_value(name)
            .map_err(|e| inner.read_error(e))
            .map(Option::unwrap_or_default)
    };
    Ok((
        prop("rocksdb.live-blob-file-size")?,
        prop("rocksdb.live-blob-file-garbage-size")?,
    ))
}

pub(crate) async fn audit(
    inner: &Arc<Inner>,
    after: Option<BlobKey>,
    max_blobs: usize,
) -> Result<AuditReport> {
    inner.check()?;
    let max = max_blobs.clamp(1, AUDIT_BATCH_MAX);
    let i = inner.clone();
    let batch = inner
        .pool
        .run(move || {
            let from = match &after {
                Some(k) => {
                    let mut from = keys::blob(k.partition, &k.name);
                    from.push(0);
                    from
                }
                None => vec![keys::BLOB],
            };
            let mut out = Vec::new();
            scan_blobs(&i, &from, |k, rec| {
                out.push((keys::parse_blob(k)?, rec));
                Ok(out.len() <= max)
            })?;
            Ok(out)
        })
        .await?;
    let more = batch.len() > max;
    let mut report = AuditReport::default();
    for (n, ((partition, name), rec)) in batch.into_iter().enumerate() {
        let key = BlobKey { partition, name };
        if n == max {
            break;
        }
        report.checked += 1;
        if n + 1 == max && more {
            report.next = Some(key.clone());
        }
        if rec.meta.tombstone || rec.meta.size_bytes == 0 {
            continue;
        }
        if let Err(e) = verify(inner, &rec).await {
            // A concurrent overwrite or compaction can remove the file under us: only report a
            // version that is still the stored one, in the same place.
            let (i, k) = (inner.clone(), keys::blob(key.partition, &key.name));
            if inner.pool.run(move || i.get_blob(&k)).await?.as_ref() != Some(&rec) {
                continue;
            }
            report.failures.push(AuditFailure {
                key,
                timestamp: rec.meta.timestamp,
                reason: e.to_string(),
            });
        }
    }
    // `next` is only set when the batch was full and more records followed.
    Ok(report)
}

async fn verify(inner: &Arc<Inner>, rec: &BlobRecord) -> Result<()> {
    let (i, loc) = (inner.clone(), rec.location);
    let file = inner.pool.run(move || Ok(i.open_location(loc)?)).await?;
    let (file, base) = file.map_or((None, 0), |(f, b)| (Some(f), b));
    let reader = RocksReader::new(
        inner.clone(),
        file,
        base,
        rec.meta.size_bytes,
        0,
        rec.meta.size_bytes,
    );
    for index in 0..rec.meta.size_bytes.div_ceil(CHUNK_MAX_BYTES as u64) {
        reader.read_chunk(index).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cast_possible_truncation
    )]

    use bytes::Bytes;
    use cairn_engine::{ExtentKey, StorageEngine, WriteTag};

    use super::*;
    use crate::RocksEngine;

    fn ekey(object_no: u64) -> ExtentKey {
        ExtentKey {
            partition: 1,
            image: "gc".into(),
            object_no,
        }
    }

    fn tag(seq: u64) -> WriteTag {
        WriteTag { epoch: 1, seq }
    }

    /// Overwritten values of RocksDB's blob files (where extent chunks lived before the extent
    /// log) become garbage that compactions do not collect; once it passes the threshold,
    /// `compact` reclaims it and every value still reads back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_garbage_is_collected_on_demand_and_live_values_survive() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let value = 64u64 << 10; // a pre-log chunk record's size
        let values = (BLOB_GARBAGE_BYTES_MIN / value) * 8 / 7 + 8;
        let db = &engine.inner.db;
        let flush_and_compact = || {
            db.flush().unwrap();
            let mut c = rocksdb::CompactOptions::default();
            c.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &c);
        };
        let key = |i: u64| {
            let mut k = keys::extent_data_prefix(1, "gc", 0);
            k.extend_from_slice(&i.to_be_bytes());
            k
        };
        // Seven of every eight values are written again: their first copies become garbage in
        // blob files that also hold live values, so no file can simply be dropped (garbage is
        // then 7/15 of the blob bytes, clear of the 40% threshold).
        let rewritten = |generation: u64, i: u64| generation == 0 || !i.is_multiple_of(8);
        for generation in 0..2u64 {
            for i in (0..values).filter(|&i| rewritten(generation, i)) {
                db.put(key(i), vec![(generation * 100 + i) as u8; value as usize])
                    .unwrap();
            }
            flush_and_compact();
        }
        let (total, garbage) = blob_file_bytes(&engine.inner).unwrap();
        assert!(
            garbage >= BLOB_GARBAGE_BYTES_MIN && garbage * 100 >= total * BLOB_GARBAGE_PERCENT_MIN,
            "ordinary compactions left the garbage: {garbage} of {total}"
        );
        let report = engine.compact().await.unwrap();
        let (after, garbage_after) = blob_file_bytes(&engine.inner).unwrap();
        assert!(report.bytes_reclaimed >= garbage / 2, "{report:?}");
        assert!(
            after < total && garbage_after < garbage,
            "{after} {garbage_after}"
        );
        for i in 0..values {
            let got = db.get(key(i)).unwrap().unwrap();
            let want = if i.is_multiple_of(8) { i } else { 100 + i } as u8;
            assert!(got.iter().all(|&b| b == want), "value {i}");
        }
        // Nothing more to do: a second pass reclaims nothing.
        assert_eq!(engine.compact().await.unwrap().bytes_reclaimed, 0);
    }

    /// A sealed extent log file that is mostly garbage has its live pieces moved and is
    /// deleted; every byte reads back, before and after reopening, and a second pass has
    /// nothing to do.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn extent_log_garbage_is_reclaimed_and_live_pieces_survive() {
        log_garbage_scenario(|_| false, 1).await;
    }

    /// The same with every odd piece written around the page cache (the aligned layout): both
    /// files are collected, their live pieces move to the cached file, and every piece reads
    /// back, in place (4 KiB) and on the pool, before and after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aligned_log_pieces_read_back_and_are_collected() {
        log_garbage_scenario(|i| i % 2 == 1, 2).await;
    }

    /// Writes 32 pieces of 256 KiB over 4 objects, rewrites three of every four twice, trims
    /// one, reopens (sealing the files) and compacts; `around(i)` says whether piece `i` is
    /// written around the page cache, `sealed` how many files the writes filled.
    async fn log_garbage_scenario(around: fn(u64) -> bool, sealed: u64) {
        let dir = tempfile::tempdir().unwrap();
        let piece = 256 * 1024u64;
        let want = |i: u64| -> u8 {
            if i.is_multiple_of(4) {
                i as u8
            } else {
                200 + i as u8
            }
        };
        {
            let engine = RocksEngine::open_plain_for_test(dir.path()).await;
            for generation in 0..3u64 {
                for i in (0..32u64).filter(|i| generation == 0 || !i.is_multiple_of(4)) {
                    let data = Bytes::from(vec![(generation * 100 + i) as u8; piece as usize]);
                    let opts = cairn_engine::ExtentWriteOpts {
                        durable: true,
                        keep: Vec::new(),
                        write_around: around(i),
                    };
                    let change = cairn_engine::ExtentChange::Write {
                        offset: (i % 8) * piece,
                        data,
                    };
                    engine
                        .change_extent(&ekey(i / 8), change, tag(generation * 32 + i + 1), &opts)
                        .await
                        .unwrap();
                }
            }
            // Trimmed pieces free their bytes too.
            engine
                .trim_extent(&ekey(3), 0, piece, tag(100))
                .await
                .unwrap();
            let files = std::fs::read_dir(dir.path().join("extents"))
                .unwrap()
                .count();
            assert_eq!(files as u64, sealed);
        }
        // Reopening seals the files: of their 80 pieces, 48 were overwritten and one trimmed.
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let before = engine.inner.log.size_bytes();
        let check = |engine: RocksEngine| async move {
            for i in 0..32u64 {
                let expected = if i == 24 { 0 } else { want(i) };
                let at = (i % 8) * piece;
                let got = engine
                    .read_extent(&ekey(i / 8), at, piece)
                    .await
                    .unwrap()
                    .to_bytes();
                assert!(got.iter().all(|&b| b == expected), "piece {i}");
                // Small enough for the in-place path once the records are cached.
                for _ in 0..2 {
                    let got = engine
                        .read_extent(&ekey(i / 8), at + 8192 + 100, 4096)
                        .await
                        .unwrap()
                        .to_bytes();
                    assert!(got.iter().all(|&b| b == expected), "piece {i}, 4 KiB");
                }
            }
            engine
        };
        let engine = check(engine).await;
        let report = engine.compact().await.unwrap();
        assert_eq!(report.segments_rewritten, sealed, "{report:?}");
        let after = engine.inner.log.size_bytes();
        assert!(report.bytes_reclaimed >= 24 * piece, "{report:?}");
        assert!(after < before / 2, "{before} → {after}");
        let engine = check(engine).await;
        assert_eq!(engine.compact().await.unwrap(), CompactionReport::default());
        drop(engine);
        let engine = check(RocksEngine::open_plain_for_test(dir.path()).await).await;
        let files = std::fs::read_dir(dir.path().join("extents"))
            .unwrap()
            .count();
        assert_eq!(files, 1, "only the file the live pieces moved to is left");
        drop(engine);
    }

    /// Readers racing the extent log's garbage collection always get the right bytes: one that
    /// found a piece before it moved reads the old (unlinked) file or, finding it gone, reads
    /// the records again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_racing_log_garbage_collection_get_the_right_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let piece = 16 * 1024u64;
        let pieces = 64u64;
        {
            let engine = RocksEngine::open_plain_for_test(dir.path()).await;
            for generation in 0..3u64 {
                for i in 0..pieces {
                    // Generations 1 and 2 rewrite three of every four pieces.
                    if generation > 0 && i.is_multiple_of(4) {
                        continue;
                    }
                    let data = Bytes::from(vec![(generation * 64 + i) as u8; piece as usize]);
                    let t = tag(generation * pieces + i + 1);
                    engine
                        .write_extent(&ekey(0), i * piece, data, t)
                        .await
                        .unwrap();
                }
            }
        }
        let want = |i: u64| -> u8 {
            if i.is_multiple_of(4) {
                i as u8
            } else {
                (128 + i) as u8
            }
        };
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut readers = Vec::new();
        for r in 0..4u64 {
            let (engine, stop, running) = (engine.clone(), stop.clone(), running.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                // Bounded: stops when told, or after this many reads.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && reads < 200_000 {
                    let i = (reads * 7 + r * 13) % pieces;
                    // Small reads take the in-place path, large ones the pool.
                    let (off, len) = if reads.is_multiple_of(2) {
                        (i * piece + 100, 4096)
                    } else {
                        (i * piece, piece)
                    };
                    let got = engine
                        .read_extent(&ekey(0), off, len)
                        .await
                        .unwrap()
                        .to_bytes();
                    assert!(
                        got.iter().all(|&b| b == want(i)),
                        "piece {i} read wrong bytes"
                    );
                    reads += 1;
                    if reads == 10 {
                        running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                reads
            }));
        }
        // The collection starts only once every reader is reading.
        for _ in 0..1000 {
            if running.load(std::sync::atomic::Ordering::Relaxed) == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(running.load(std::sync::atomic::Ordering::Relaxed), 4);
        let report = engine.compact().await.unwrap();
        assert_eq!(report.segments_rewritten, 1, "{report:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() >= 10);
        }
        for i in 0..pieces {
            let got = engine
                .read_extent(&ekey(0), i * piece, piece)
                .await
                .unwrap()
                .to_bytes();
            assert!(got.iter().all(|&b| b == want(i)), "piece {i}");
        }
    }

    /// Pieces stored before the extent log (chunk records in the index) still read, and a write
    /// that hides one deletes its chunk records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pieces_stored_in_the_index_still_read_and_are_freed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let len = CHUNK_MAX_BYTES + 1000;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let prefix = keys::extent_prefix(1, "gc", 0);
        let data_prefix = keys::extent_data_prefix(1, "gc", 0);
        let record = PieceRecord {
            offset: 100,
            len_bytes: len as u64,
            data: PieceData::Index,
        };
        let db = &engine.inner.db;
        db.put(
            crate::records::piece_key(&prefix, tag(1)),
            keys::encode(&record).unwrap(),
        )
        .unwrap();
        for (c, part) in (0u64..).zip(data.chunks(CHUNK_MAX_BYTES)) {
            let mut buf = Vec::new();
            chunk::encode_chunk(part, &mut buf);
            db.put(crate::records::chunk_key(&data_prefix, tag(1), c), buf)
                .unwrap();
        }
        let got = engine
            .read_extent(&ekey(0), 0, 100 + len as u64)
            .await
            .unwrap();
        let mut want = vec![0u8; 100];
        want.extend_from_slice(&data);
        assert_eq!(got.to_bytes(), want);
        engine
            .write_extent(&ekey(0), 0, Bytes::from(vec![7u8; 100 + len]), tag(2))
            .await
            .unwrap();
        let mut chunks_left = 0;
        crate::records::scan_prefix(&engine.inner, &data_prefix, |_, _| {
            chunks_left += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(chunks_left, 0);
        let got = engine
            .read_extent(&ekey(0), 0, 100 + len as u64)
            .await
            .unwrap();
        assert!(got.to_bytes().iter().all(|&b| b == 7));
    }
}
