//! The engine's shared state, opening and recovery, and the helpers every operation uses.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_engine::{Error, Health, Result};
use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::io::{Io, IoBackend, IoChoice};
use crate::keys::{self, BlobRecord, Location};
use crate::pool::BlockingPool;

/// Proof that the index lock is held (what keeps extent log appenders one at a time).
#[derive(Debug)]
pub(crate) struct IndexGuard<'a>(
    // Never read: held for its drop, which releases the lock.
    #[allow(dead_code)] pub(crate) MutexGuard<'a, ()>,
);

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The device's directory (the engine owns everything under it).
    pub dir: PathBuf,
    pub io: IoChoice,
}

/// The open segment small blobs are appended to.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub(crate) id: u64,
    pub(crate) file: Arc<File>,
    pub(crate) len_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: DB,
    pub(crate) dir: PathBuf,
    pub(crate) io: Io,
    pub(crate) pool: BlockingPool,
    failed: Mutex<Option<String>>,
    /// Serializes read-check-write sequences on the index (LWW checks, fences, listing stats).
    /// Held only on blocking-pool threads.
    index_lock: Mutex<()>,
    /// Decoded extent piece records of recently used objects (see `piece_cache`).
    pub(crate) pieces: crate::piece_cache::PieceCache,
    /// The newest fencing epoch per image (see `fence_cache`).
    pub(crate) fences: crate::fence_cache::FenceCache,
    /// Extent data (see `extent_log`).
    pub(crate) log: crate::extent_log::ExtentLog,
    /// Extent writes waiting for the group committer (see `extent_writes`).
    pub(crate) extent_writes: Arc<crate::extent_writes::ExtentWriteQueue>,
    /// Held by a blob garbage-collection pass (`maintenance::collect_blob_garbage`).
    pub(crate) blob_gc: Mutex<()>,
    /// `None` until the first small write after opening (a restart never appends to an old
    /// segment, whose tail may be torn).
    pub(crate) segment: tokio::sync::Mutex<Option<OpenSegment>>,
    next_file_id: AtomicU64,
    pub(crate) live_blob_bytes: AtomicU64,
    /// Segments holding bodies whose index write has not finished yet: compaction must not
    /// delete them even though no record points into them yet.
    pinned_segments: Mutex<HashMap<u64, usize>>,
    /// Differs between openings of the device (see `StorageEngine::sync_extents`).
    pub(crate) incarnation: u64,
    /// This filesystem refused `O_DIRECT` for a blob file: blobs are no longer written around
    /// the page cache (see `direct_append`).
    pub(crate) blob_direct_refused: std::sync::atomic::AtomicBool,
}

/// Keeps a segment from being compacted away until the index write that references it is done.
#[derive(Debug)]
pub(crate) struct SegmentPin {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for SegmentPin {
    fn drop(&mut self) {
        if let Ok(mut pins) = self.inner.pinned_segments.lock()
            && let Some(n) = pins.get_mut(&self.id)
        {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.id);
            }
        }
    }
}

pub(crate) fn seg_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}
pub(crate) fn blob_dir(dir: &Path) -> PathBuf {
    dir.join("blobs")
}
pub(crate) fn tmp_dir(dir: &Path) -> PathBuf {
    dir.join("tmp")
}
pub(crate) fn quarantine_dir(dir: &Path) -> PathBuf {
    dir.join("quarantine")
}
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}")
}

fn parse_id(name: &std::ffi::OsStr) -> Option<u64> {
    u64::from_str_radix(name.to_str()?, 16).ok()
}

/// A number unlikely to repeat across openings: the wall clock in nanoseconds mixed with the
/// process id (two openings in one process get different clocks).
fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // The low 64 bits of the clock are what changes between openings.
    u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0) ^ (u64::from(std::process::id()) << 40)
}

/// fsyncs a directory so a rename or create in it is durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

pub(crate) fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull
}

/// Says once per process which CRC32C RocksDB computes its checksums with.
fn log_crc32c_choice() {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        if crate::crc32c::interposed() {
            tracing::debug!("RocksDB checksums use the hardware CRC32C");
        } else {
            tracing::warn!(
                "RocksDB checksums use librocksdb's table-driven CRC32C: the executable does not export cairn's (see cairn_engine_rocksdb::crc32c)"
            );
        }
    });
}

/// Encoded bytes of the extent log each log file's piece records reference.
fn extent_log_live_bytes(db: &DB) -> Result<HashMap<u64, u64>> {
    let mut live = HashMap::new();
    for item in db.iterator(IteratorMode::From(
        &[keys::EXTENT],
        rocksdb::Direction::Forward,
    )) {
        let (k, v) = item.map_err(|e| Error::Failed(format!("cannot scan the index: {e}")))?;
        if k.first() != Some(&keys::EXTENT) {
            break;
        }
        let rec: keys::PieceRecord = keys::decode(&v)?;
        if let Some((file, bytes)) = crate::extent_log::stored_bytes(&rec.data, rec.len_bytes) {
            *live.entry(file).or_insert(0) += bytes;
        }
    }
    Ok(live)
}

/// Values at least this large (extent data chunks written before the extent log; index records
/// are far smaller) go to RocksDB's blob files.
const EXTENT_BLOB_MIN_BYTES: u64 = 2048;

/// The size of the index's memtable (see where it is set).
const INDEX_MEMTABLE_BYTES: usize = 1 << 20;

impl Inner {
    /// Opens (creating if needed) the device at `options.dir` and recovers from any crash: temp
    /// files are deleted and data files the index does not reference are swept.
    pub(crate) fn open(options: &EngineOptions) -> Result<Inner> {
        let dir = options.dir.clone();
        for d in [
            seg_dir(&dir),
            blob_dir(&dir),
            tmp_dir(&dir),
            quarantine_dir(&dir),
        ] {
            fs::create_dir_all(&d)?;
        }
        // An interrupted streaming write never became visible; its temp file is garbage.
        for entry in fs::read_dir(tmp_dir(&dir))? {
            fs::remove_file(entry?.path())?;
        }
        log_crc32c_choice();
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        // Fail loudly rather than silently skipping damaged WAL records.
        db_opts.set_paranoid_checks(true);
        // Extent chunks written before the extent log (block-device data, up to 64 KiB each)
        // stay out of the LSM tree in RocksDB's blob files: compactions move only small index
        // entries instead of rewriting every byte. Disk data rarely compresses, so blobs are
        // stored as they are. Overwritten chunks are reclaimed by
        // `maintenance::collect_blob_garbage` once there is enough garbage, not by every
        // compaction (see there). New extent data goes to the extent log (`extent_log`).
        db_opts.set_enable_blob_files(true);
        db_opts.set_min_blob_size(EXTENT_BLOB_MIN_BYTES);
        db_opts.set_blob_compression_type(rocksdb::DBCompressionType::None);
        db_opts.set_enable_blob_gc(false);
        // Small memtables: every block write inserts its piece record (and deletes those it
        // hides) into a memtable skiplist, and an insert walks the list's levels with a cache
        // miss per step. With the default 64 MiB, inserts grew to 22% of a node's CPU once
        // random writes had filled it; at 8 MiB, 4 KiB random writes at queue depth 32 ran
        // ~40% faster after a few minutes of them. At 1 MiB (three devices' memtables stay in
        // cache) the inserts' CPU per write halved again and the later of those runs were
        // 10–26% faster still, for 4 KiB S3 PUTs at concurrency 16 ~8% slower (more flushes
        // and level-0 files; bench/RESULTS.md).
        db_opts.set_write_buffer_size(INDEX_MEMTABLE_BYTES);
        let db = DB::open(&db_opts, dir.join("index"))
            .map_err(|e| Error::Failed(format!("cannot open index: {e}")))?;
        let log = crate::extent_log::ExtentLog::open(&dir, extent_log_live_bytes(&db)?)?;
        let pool = BlockingPool::new();
        let io = Io::open(options.io, pool.clone())?;
        let inner = Inner {
            db,
            dir,
            io,
            pool,
            failed: Mutex::new(None),
            index_lock: Mutex::new(()),
            pieces: crate::piece_cache::PieceCache::default(),
            fences: crate::fence_cache::FenceCache::default(),
            log,
            extent_writes: Arc::default(),
            blob_gc: Mutex::new(()),
            segment: tokio::sync::Mutex::new(None),
            next_file_id: AtomicU64::new(1),
            live_blob_bytes: AtomicU64::new(0),
            pinned_segments: Mutex::new(HashMap::new()),
            incarnation: new_incarnation(),
            blob_direct_refused: std::sync::atomic::AtomicBool::new(false),
        };
        inner.recover()?;
        Ok(inner)
    }

    fn recover(&self) -> Result<()> {
        let mut referenced_segments = HashSet::new();
        let mut referenced_files = HashSet::new();
        let mut live = 0u64;
        for item in self.db.iterator(IteratorMode::From(
            &[keys::BLOB],
            rocksdb::Direction::Forward,
        )) {
            let (k, v) = item.map_err(|e| self.read_error(e))?;
            if k.first() != Some(&keys::BLOB) {
                break;
            }
            let rec: BlobRecord = keys::decode(&v)?;
            match rec.location {
                Location::Segment { id, .. } => {
                    referenced_segments.insert(id);
                }
                Location::File { id } => {
                    referenced_files.insert(id);
                }
                Location::None => {}
            }
            if !rec.meta.tombstone {
                live += rec.meta.size_bytes;
            }
        }
        self.live_blob_bytes.store(live, Ordering::Relaxed);
        let mut max_id = 0u64;
        for (d, referenced) in [
            (seg_dir(&self.dir), &referenced_segments),
            (blob_dir(&self.dir), &referenced_files),
        ] {
            for entry in fs::read_dir(&d)? {
                let entry = entry?;
                let Some(id) = parse_id(&entry.file_name()) else {
                    continue;
                };
                max_id = max_id.max(id);
                // Written and synced but never indexed (crash before the index write), or
                // replaced/compacted away before a crash: nothing can reach it.
                if !referenced.contains(&id) {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        for entry in fs::read_dir(quarantine_dir(&self.dir))? {
            if let Some(id) = parse_id(&entry?.file_name()) {
                max_id = max_id.max(id);
            }
        }
        self.next_file_id.store(max_id + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Pins segment `id` (see [`SegmentPin`]).
    pub(crate) fn pin_segment(self: &Arc<Inner>, id: u64) -> SegmentPin {
        if let Ok(mut pins) = self.pinned_segments.lock() {
            *pins.entry(id).or_insert(0) += 1;
        }
        SegmentPin {
            inner: self.clone(),
            id,
        }
    }

    pub(crate) fn is_segment_pinned(&self, id: u64) -> bool {
        // A poisoned lock cannot tell: answer "pinned" so compaction leaves the segment alone.
        self.pinned_segments
            .lock()
            .map_or(true, |pins| pins.contains_key(&id))
    }

    /// Writes body bytes to a data file; disk full is reported as such.
    pub(crate) async fn write_data(
        &self,
        file: Arc<File>,
        offset: u64,
        data: bytes::Bytes,
    ) -> Result<()> {
        fail::fail_point!("data-write-enospc", |_| Err(
            self.write_error(io::Error::from_raw_os_error(28))
        ));
        self.io
            .write_at(file, offset, data)
            .await
            .map_err(|e| self.write_error(e))
    }

    /// fsyncs a data file; a failure takes the device out of service.
    pub(crate) async fn sync_data(&self, file: Arc<File>, what: &str) -> Result<()> {
        fail::fail_point!("data-fsync-error", |_| Err(
            self.fsync_failed(what, &io::Error::other("failpoint data-fsync-error"))
        ));
        self.io
            .fsync(file)
            .await
            .map_err(|e| self.fsync_failed(what, &e))
    }

    pub(crate) fn new_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Refuses everything once the device has failed.
    pub(crate) fn check(&self) -> Result<()> {
        match self.failed.lock() {
            Ok(f) => match &*f {
                Some(reason) => Err(Error::Failed(reason.clone())),
                None => Ok(()),
            },
            Err(_) => Err(Error::Failed("failure flag poisoned".into())),
        }
    }

    /// Takes the device out of service and returns the error to report.
    pub(crate) fn fail(&self, reason: String) -> Error {
        tracing::error!(dir = %self.dir.display(), %reason, "storage device failed, out of service");
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert(reason.clone());
        }
        Error::Failed(reason)
    }

    pub(crate) fn health(&self) -> Health {
        match self.check() {
            Ok(()) => Health::Ok,
            Err(e) => Health::Failed(e.to_string()),
        }
    }

    /// A failed fsync: the kernel may have dropped the dirty pages, so the device stops.
    pub(crate) fn fsync_failed(&self, what: &str, e: &io::Error) -> Error {
        self.fail(format!("fsync of {what} failed: {e}"))
    }

    /// A data write error: disk full is reported as such, anything else is an I/O error.
    pub(crate) fn write_error(&self, e: io::Error) -> Error {
        if is_enospc(&e) {
            Error::DiskFull
        } else {
            Error::Io(e)
        }
    }

    pub(crate) fn read_error(&self, e: rocksdb::Error) -> Error {
        match e.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corrupt(e.to_string()),
            _ => Error::Io(io::Error::other(e.to_string())),
        }
    }

    pub(crate) fn lock_index(&self) -> Result<IndexGuard<'_>> {
        self.index_lock
            .lock()
            .map(IndexGuard)
            .map_err(|_| self.fail("index lock poisoned".into()))
    }

    /// Starts a group's append to the extent log (see [`crate::extent_log::ExtentLog::append`]).
    pub(crate) fn log_append(
        &self,
        index: &IndexGuard<'_>,
        max_bytes: u64,
    ) -> Result<crate::extent_log::LogAppend> {
        use crate::extent_log::AppendError;
        self.log.append(index, max_bytes).map_err(|e| match e {
            AppendError::Create(e) => self.write_error(e),
            AppendError::SyncDir(e) => self.fsync_failed("the extent log directory", &e),
        })
    }

    /// [`Inner::log_append`] for pieces written around the page cache.
    pub(crate) fn log_append_aligned(
        &self,
        index: &IndexGuard<'_>,
        size: (u64, u64),
    ) -> Result<crate::aligned_append::AlignedAppend> {
        use crate::extent_log::AppendError;
        self.log.append_aligned(index, size).map_err(|e| match e {
            AppendError::Create(e) => self.write_error(e),
            AppendError::SyncDir(e) => self.fsync_failed("the extent log directory", &e),
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.read_error(e))
    }

    pub(crate) fn get_blob(&self, key: &[u8]) -> Result<Option<BlobRecord>> {
        self.get(key)?.map(|v| keys::decode(&v)).transpose()
    }

    /// Writes a batch to the WAL without syncing it: durable at the next [`Inner::sync_wal`]
    /// (or lost with the process before it, as NBD allows for writes before a FLUSH).
    pub(crate) fn write_unsynced(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write_opt(batch, &WriteOptions::default())
            .map_err(|e| self.index_write_error(e))
    }

    /// fdatasyncs the extent log: every extent write whose data is in it becomes durable once
    /// the WAL is synced too. A failure takes the device out of service.
    pub(crate) fn sync_extent_log(&self) -> Result<()> {
        self.log
            .sync()
            .map_err(|e| self.fsync_failed("the extent log", &e))
    }

    /// Syncs the WAL: every write acknowledged so far becomes durable. A failure takes the device
    /// out of service, as a failed fsync does.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        fail::fail_point!("index-sync-error", |_| Err(
            self.fail("failpoint index-sync-error".into())
        ));
        self.db
            .flush_wal(true)
            .map_err(|e| self.fail(format!("WAL sync failed: {e}")))
    }

    fn index_write_error(&self, e: rocksdb::Error) -> Error {
        let text = e.to_string();
        if text.contains("No space left") || text.contains("NoSpace") {
            Error::DiskFull
        } else {
            self.fail(format!("index write failed: {text}"))
        }
    }

    /// Writes a batch durably (WAL synced before returning). A failure other than disk full takes
    /// the device out of service: RocksDB itself stops accepting writes after one.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        fail::fail_point!("index-before-write", |_| Err(Error::Io(io::Error::other(
            "failpoint index-before-write"
        ))));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| self.index_write_error(e))
    }

    pub(crate) fn segment_path(&self, id: u64) -> PathBuf {
        seg_dir(&self.dir).join(file_name(id))
    }

    pub(crate) fn blob_path(&self, id: u64) -> PathBuf {
        blob_dir(&self.dir).join(file_name(id))
    }

    pub(crate) fn tmp_path(&self, id: u64) -> PathBuf {
        tmp_dir(&self.dir).join(file_name(id))
    }

    /// Opens the file holding a body (blocking).
    pub(crate) fn open_location(&self, location: Location) -> io::Result<Option<(Arc<File>, u64)>> {
        let (path, base) = match location {
            Location::None => return Ok(None),
            Location::Segment { id, offset } => (self.segment_path(id), offset),
            Location::File { id } => (self.blob_path(id), 0),
        };
        Ok(Some((
            Arc::new(OpenOptions::new().read(true).open(path)?),
            base,
        )))
    }

    /// Free and total bytes of the filesystem holding the device.
    pub(crate) fn statvfs(&self) -> Result<(u64, u64)> {
        let st = rustix::fs::statvfs(&self.dir).map_err(|e| Error::Io(io::Error::from(e)))?;
        Ok((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
    }
}
