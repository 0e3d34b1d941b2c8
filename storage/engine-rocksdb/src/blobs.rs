//! Blobs: streaming writes into segments (small) or their own files (large), verified reads, and
//! the index commit that makes a write visible.
//!
//! Write order (see docs/durability.md): body written and fsynced (large: temp file, fsync,
//! rename, fsync dir) → index record written with a synced WAL write → acknowledged. Old data
//! is released only after the new index record is durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use cairn_engine::chunk::{self, CRC_BYTES};
use cairn_engine::etag::{self, EtagHasher};
use cairn_engine::limits::{
    BLOB_MAX_BYTES, CHUNK_MAX_BYTES, SEGMENT_MAX_BYTES, SMALL_BLOB_MAX_BYTES,
};
use cairn_engine::{
    BlobCommit, BlobKey, BlobMeta, BlobReader, BlobWriteOptions, BlobWriter, Error, Result,
    Timestamp, WriteOutcome, lww,
};
use rocksdb::WriteBatch;

use crate::direct_append::DirectAppend;
use crate::engine::{Inner, OpenSegment, SegmentPin, blob_dir, seg_dir, sync_dir};
use crate::io::IoBackend;
use crate::keys::{self, BlobRecord, Location};
use crate::limits::WRITE_BATCH_CHUNKS_MAX;
use crate::pending::PendingBytes;

#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn injected(name: &str) -> Error {
    Error::Io(io::Error::other(format!("failpoint {name}")))
}

#[derive(Debug)]
struct LargeBody {
    id: u64,
    file: Arc<File>,
    written_bytes: u64,
    /// Set when this copy is written around the page cache.
    direct: Option<DirectAppend>,
}

/// A blob being streamed into the RocksDB engine.
#[derive(Debug)]
pub struct RocksWriter {
    inner: Arc<Inner>,
    key: BlobKey,
    expected_size_bytes: Option<u64>,
    /// `None`: the etag comes with the commit.
    etag: Option<EtagHasher>,
    size_bytes: u64,
    /// Bytes not yet written out (small blobs: the whole body; large: a partial chunk tail).
    pending: PendingBytes,
    large: Option<LargeBody>,
    /// A large body goes around the page cache (see `direct_append`).
    write_around: bool,
    finished: bool,
    /// A write-out failed: what the file holds is unknown (its bytes left `pending`), so the
    /// writer writes and commits nothing more.
    failed: bool,
}

impl RocksWriter {
    pub(crate) async fn begin(
        inner: Arc<Inner>,
        key: BlobKey,
        options: BlobWriteOptions,
    ) -> Result<RocksWriter> {
        let expected_size_bytes = options.expected_size_bytes;
        inner.check()?;
        cairn_engine::validate_name("blob name", &key.name)?;
        if let Some(n) = expected_size_bytes {
            if n > BLOB_MAX_BYTES {
                return Err(Error::Invalid(format!(
                    "blob larger than {BLOB_MAX_BYTES} bytes"
                )));
            }
            let i = inner.clone();
            let (_, free) = inner.pool.run(move || i.statvfs()).await?;
            if chunk::encoded_len_bytes(n) > free {
                return Err(Error::DiskFull);
            }
        }
        let mut w = RocksWriter {
            inner,
            key,
            expected_size_bytes,
            etag: etag::hasher_for(options.etag),
            size_bytes: 0,
            pending: PendingBytes::default(),
            large: None,
            write_around: options.write_around,
            finished: false,
            failed: false,
        };
        if expected_size_bytes.is_some_and(|n| n > SMALL_BLOB_MAX_BYTES) {
            w.start_large().await?;
        }
        Ok(w)
    }

    async fn start_large(&mut self) -> Result<()> {
        let inner = self.inner.clone();
        let id = inner.new_file_id();
        let path = inner.tmp_path(id);
        let around = self.write_around && !inner.blob_direct_refused.load(Ordering::Relaxed);
        let (file, direct) = inner
            .pool
            .run(move || {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(Error::Io)?;
                Ok((file, around.then(|| DirectAppend::open(&path)).flatten()))
            })
            .await?;
        if around && direct.is_none() {
            inner.blob_direct_refused.store(true, Ordering::Relaxed);
        }
        self.large = Some(LargeBody {
            id,
            file: Arc::new(file),
            written_bytes: 0,
            direct,
        });
        Ok(())
    }

    /// Writes out the full chunks of `pending` (all of it, the tail chunk included, if `last`).
    async fn flush(&mut self, last: bool) -> Result<()> {
        if self.failed {
            return Err(Error::Invalid(
                "an earlier write of this blob failed".into(),
            ));
        }
        let written = self.write_out(last).await;
        self.failed = written.is_err();
        written
    }

    async fn write_out(&mut self, last: bool) -> Result<()> {
        let Some(large) = &mut self.large else {
            return Ok(());
        };
        let full = if last {
            self.pending.len()
        } else {
            self.pending.len() / CHUNK_MAX_BYTES * CHUNK_MAX_BYTES
        };
        if full == 0 && !(last && large.direct.is_some()) {
            return Ok(());
        }
        let n = chunk::encoded_len_bytes(full as u64);
        if let Some(direct) = large.direct.take() {
            let direct = self.flush_around(direct, full, n, last).await?;
            if let Some(large) = &mut self.large {
                large.direct = Some(direct);
                large.written_bytes += n;
            }
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        self.pending
            .encode_front(full, |s| encoded.extend_from_slice(s));
        debug_assert_eq!(encoded.len() as u64, n);
        self.inner
            .write_data(
                large.file.clone(),
                large.written_bytes,
                Bytes::from(encoded),
            )
            .await?;
        large.written_bytes += n;
        Ok(())
    }

    /// [`RocksWriter::flush`] for a copy written around the page cache: encodes the first
    /// `full` bytes of `pending` (`encoded` bytes once encoded) into the staging buffer and
    /// writes its whole pages.
    async fn flush_around(
        &mut self,
        mut direct: DirectAppend,
        full: usize,
        encoded: u64,
        last: bool,
    ) -> Result<DirectAppend> {
        let Some(large) = &self.large else {
            return Err(Error::Invalid("no large body".into()));
        };
        let staging = direct.staging(usize::try_from(encoded).unwrap_or(usize::MAX));
        self.pending.encode_front(full, |s| staging.extend(s));
        let file = large.file.clone();
        let inner = self.inner.clone();
        let direct = self
            .inner
            .pool
            .run(move || {
                fail::fail_point!("data-write-enospc", |_| Err(
                    inner.write_error(io::Error::from_raw_os_error(28))
                ));
                direct
                    .write_out(&file, last)
                    .map_err(|e| inner.write_error(e))?;
                Ok(direct)
            })
            .await?;
        if direct.was_refused() {
            self.inner
                .blob_direct_refused
                .store(true, Ordering::Relaxed);
        }
        Ok(direct)
    }

    fn cleanup(&mut self) {
        self.finished = true;
        if let Some(large) = self.large.take() {
            let path = self.inner.tmp_path(large.id);
            // Unlinking is a blocking syscall: never on a tokio worker thread.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn_blocking(move || {
                    let _ = std::fs::remove_file(path);
                });
            }
        }
    }

    async fn commit_inner(&mut self, commit: BlobCommit) -> Result<WriteOutcome> {
        self.inner.check()?;
        if let Some(expected) = self.expected_size_bytes
            && expected != self.size_bytes
        {
            return Err(Error::Invalid(format!(
                "blob is {} bytes, {expected} were announced",
                self.size_bytes
            )));
        }
        let meta = BlobMeta {
            timestamp: commit.timestamp,
            size_bytes: self.size_bytes,
            etag: etag::settle(self.etag.take(), commit.etag)?,
            content_type: commit.content_type,
            user_meta: commit.user_meta,
            tombstone: false,
        };
        // Cheap early check: a replayed or stale write needs no data I/O at all.
        let inner = self.inner.clone();
        let key = keys::blob(self.key.partition, &self.key.name);
        let k2 = key.clone();
        let stored = self.inner.pool.run(move || inner.get_blob(&k2)).await?;
        if let WriteOutcome::Lost { stored } = lww(stored.map(|r| r.meta.timestamp), meta.timestamp)
        {
            return Ok(WriteOutcome::Lost { stored });
        }
        // Held until the index write is done so compaction cannot delete the segment first.
        let mut _pin = None;
        let location = match self.large.is_some() {
            false if self.size_bytes == 0 => Location::None,
            false => {
                let n = chunk::encoded_len_bytes(self.size_bytes);
                let mut encoded = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
                self.pending
                    .encode_front(usize::MAX, |s| encoded.extend_from_slice(s));
                let (location, pin) = append_segment(&self.inner, encoded).await?;
                _pin = Some(pin);
                location
            }
            true => self.finish_large().await?,
        };
        let record = BlobRecord { meta, location };
        let outcome = commit_record(&self.inner, key, record).await;
        // A body that lost the race is garbage now. After an error the index write's fate is
        // unknown, so the file stays: the sweep at the next open removes it if unreferenced.
        if matches!(outcome, Ok(WriteOutcome::Lost { .. }))
            && let Location::File { id } = location
        {
            {
                let path = self.inner.blob_path(id);
                let _ = self
                    .inner
                    .pool
                    .run(move || std::fs::remove_file(path).map_err(Error::Io))
                    .await;
            }
        }
        outcome
    }

    /// Flushes, fsyncs and renames the large body into place.
    async fn finish_large(&mut self) -> Result<Location> {
        self.flush(true).await?;
        let Some(large) = self.large.take() else {
            return Err(Error::Invalid("no large body".into()));
        };
        let inner = self.inner.clone();
        inner.sync_data(large.file.clone(), "blob file").await?;
        fail::fail_point!("large-before-rename", |_| Err(injected(
            "large-before-rename"
        )));
        let (from, to) = (inner.tmp_path(large.id), inner.blob_path(large.id));
        let i = inner.clone();
        inner
            .pool
            .run(move || {
                std::fs::rename(&from, &to).map_err(|e| i.write_error(e))?;
                fail::fail_point!("large-after-rename", |_| Err(injected(
                    "large-after-rename"
                )));
                sync_dir(&blob_dir(&i.dir)).map_err(|e| i.fsync_failed("blob directory", &e))
            })
            .await?;
        fail::fail_point!("blob-after-data-fsync", |_| Err(injected(
            "blob-after-data-fsync"
        )));
        Ok(Location::File { id: large.id })
    }
}

impl Drop for RocksWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.cleanup();
        }
    }
}

impl BlobWriter for RocksWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner.check()?;
        if self.size_bytes + data.len() as u64 > BLOB_MAX_BYTES {
            return Err(Error::Invalid(format!(
                "blob larger than {BLOB_MAX_BYTES} bytes"
            )));
        }
        if let Some(h) = &mut self.etag {
            h.update(&data);
        }
        self.size_bytes += data.len() as u64;
        self.pending.push(data);
        if self.large.is_none() && self.size_bytes > SMALL_BLOB_MAX_BYTES {
            self.start_large().await?;
        }
        if self.large.is_some() && self.pending.len() >= WRITE_BATCH_CHUNKS_MAX * CHUNK_MAX_BYTES {
            self.flush(false).await?;
        }
        Ok(())
    }

    async fn commit(mut self, commit: BlobCommit) -> Result<WriteOutcome> {
        let outcome = self.commit_inner(commit).await;
        self.cleanup();
        outcome
    }

    async fn abort(mut self) -> Result<()> {
        self.cleanup();
        Ok(())
    }
}

/// Appends an encoded body to the open segment and fsyncs it; returns where it landed, pinned
/// until the caller has written the index record that references it.
pub(crate) async fn append_segment(
    inner: &Arc<Inner>,
    encoded: Vec<u8>,
) -> Result<(Location, SegmentPin)> {
    let n = encoded.len() as u64;
    let mut guard = inner.segment.lock().await;
    if guard
        .as_ref()
        .is_none_or(|s| s.len_bytes + n > SEGMENT_MAX_BYTES)
    {
        let id = inner.new_file_id();
        let i = inner.clone();
        let file = inner
            .pool
            .run(move || {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(i.segment_path(id))
                    .map_err(|e| i.write_error(e))?;
                sync_dir(&seg_dir(&i.dir)).map_err(|e| i.fsync_failed("segment directory", &e))?;
                Ok(f)
            })
            .await?;
        *guard = Some(OpenSegment {
            id,
            file: Arc::new(file),
            len_bytes: 0,
        });
    }
    let Some(seg) = guard.as_mut() else {
        return Err(Error::Invalid("no open segment".into()));
    };
    let offset = seg.len_bytes;
    let pin = inner.pin_segment(seg.id);
    #[cfg(feature = "failpoints")]
    if fail::eval("segment-mid-append", |_| ()).is_some() {
        // Leave a torn record behind, as a crash in the middle of the write would.
        let half = Bytes::copy_from_slice(&encoded[..encoded.len() / 2]);
        let _ = inner.io.write_at(seg.file.clone(), offset, half).await;
        *guard = None;
        return Err(injected("segment-mid-append"));
    }
    let result = inner
        .write_data(seg.file.clone(), offset, Bytes::from(encoded))
        .await;
    if let Err(e) = result {
        // The tail of this segment is unknown now: seal it, the next append starts a new one.
        *guard = None;
        return Err(e);
    }
    seg.len_bytes += n;
    if let Err(e) = inner.sync_data(seg.file.clone(), "segment").await {
        *guard = None;
        return Err(e);
    }
    fail::fail_point!("blob-after-data-fsync", |_| Err(injected(
        "blob-after-data-fsync"
    )));
    Ok((Location::Segment { id: seg.id, offset }, pin))
}

/// Writes `record` under `key` if it wins LWW; releases the replaced version's file.
pub(crate) async fn commit_record(
    inner: &Arc<Inner>,
    key: Vec<u8>,
    record: BlobRecord,
) -> Result<WriteOutcome> {
    let i = inner.clone();
    inner
        .pool
        .run(move || {
            let _guard = i.lock_index()?;
            let old = i.get_blob(&key)?;
            let outcome = lww(
                old.as_ref().map(|r| r.meta.timestamp),
                record.meta.timestamp,
            );
            if outcome != WriteOutcome::Applied {
                return Ok(outcome);
            }
            let mut batch = WriteBatch::default();
            batch.put(&key, keys::encode(&record)?);
            i.write(batch)?;
            account(&i, old.as_ref(), Some(&record));
            if let Some(old) = old {
                release(&i, old.location);
            }
            Ok(outcome)
        })
        .await
}

/// Keeps the live-bytes counter in step with an index change.
pub(crate) fn account(inner: &Inner, old: Option<&BlobRecord>, new: Option<&BlobRecord>) {
    let live = |r: Option<&BlobRecord>| {
        r.filter(|r| !r.meta.tombstone)
            .map_or(0, |r| r.meta.size_bytes)
    };
    inner
        .live_blob_bytes
        .fetch_add(live(new), Ordering::Relaxed);
    inner.live_blob_bytes.fetch_sub(
        live(old).min(inner.live_blob_bytes.load(Ordering::Relaxed)),
        Ordering::Relaxed,
    );
}

/// Frees a body no index record points to any more (blocking). Segment space is left to
/// compaction; a crash before the unlink leaves an orphan the next open sweeps.
pub(crate) fn release(inner: &Inner, location: Location) {
    if let Location::File { id } = location
        && let Err(e) = std::fs::remove_file(inner.blob_path(id))
    {
        tracing::warn!(id, error = %e, "could not remove replaced blob file");
    }
}

/// Stores a tombstone.
pub(crate) async fn delete(
    inner: &Arc<Inner>,
    key: &BlobKey,
    timestamp: Timestamp,
) -> Result<WriteOutcome> {
    inner.check()?;
    cairn_engine::validate_name("blob name", &key.name)?;
    let record = BlobRecord {
        meta: BlobMeta {
            timestamp,
            size_bytes: 0,
            etag: String::new(),
            content_type: String::new(),
            user_meta: Default::default(),
            tombstone: true,
        },
        location: Location::None,
    };
    commit_record(inner, keys::blob(key.partition, &key.name), record).await
}

/// Streams a body (or a range of it), verifying every chunk.
#[derive(Debug)]
pub struct RocksReader {
    inner: Arc<Inner>,
    file: Option<Arc<File>>,
    base: u64,
    size_bytes: u64,
    pos: u64,
    end: u64,
}

impl RocksReader {
    pub(crate) fn new(
        inner: Arc<Inner>,
        file: Option<Arc<File>>,
        base: u64,
        size_bytes: u64,
        start: u64,
        end: u64,
    ) -> RocksReader {
        RocksReader {
            inner,
            file,
            base,
            size_bytes,
            pos: start,
            end,
        }
    }

    /// Reads and verifies chunk `index`.
    pub(crate) async fn read_chunk(&self, index: u64) -> Result<Vec<u8>> {
        let Some(file) = &self.file else {
            return Err(Error::Corrupt("blob has data but no location".into()));
        };
        let data_len = chunk::chunk_data_len_bytes(index, self.size_bytes);
        let encoded = self
            .inner
            .io
            .read_at(
                file.clone(),
                self.base + chunk::chunk_offset_bytes(index),
                data_len + CRC_BYTES,
            )
            .await?;
        if encoded.len() != data_len + CRC_BYTES {
            return Err(Error::Corrupt(format!(
                "chunk {index} truncated: {} of {} bytes",
                encoded.len(),
                data_len + CRC_BYTES
            )));
        }
        let mut encoded = encoded;
        chunk::verify_chunk(&encoded).map_err(|e| Error::Corrupt(format!("chunk {index}: {e}")))?;
        encoded.truncate(data_len);
        Ok(encoded)
    }
}

impl BlobReader for RocksReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        self.inner.check()?;
        let chunk_bytes = CHUNK_MAX_BYTES as u64;
        let index = self.pos / chunk_bytes;
        let data = self.read_chunk(index).await?;
        let chunk_start = index * chunk_bytes;
        let from = usize::try_from(self.pos - chunk_start).unwrap_or(0);
        let to = usize::try_from(self.end.min(chunk_start + data.len() as u64) - chunk_start)
            .unwrap_or(0);
        self.pos = chunk_start + to as u64;
        Ok(Some(Bytes::from(data).slice(from..to)))
    }
}
