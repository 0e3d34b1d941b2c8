//! The extent log: block-device data is written once, appended to log files, and the index
//! holds only where it went.
//!
//! Extent data used to be RocksDB values (64 KiB chunks in its blob files): every byte was
//! copied into the WAL, into the memtable and, at flush, into a blob file — two page-cache
//! writes per replica plus a skip-list insert next to each value. Writing each byte once
//! nearly doubled sequential block writes on its own (measured by switching the WAL off).
//!
//! Layout: `extents/<id>.xlog`, append-only, never reused. A data piece is one contiguous run
//! of chunks, each [`LOG_CHUNK_BYTES`] of data (the last may be shorter) followed by a CRC32C
//! of the chunk's identity (object prefix, write tag, chunk number) and its data — so a read
//! landing on another piece's bytes fails its check rather than returning them. A 4 KiB block
//! read reads and checks 4 KiB, not a 64 KiB chunk.
//!
//! Appends happen only under the index lock (the group committer and the garbage collector),
//! which [`ExtentLog::append`] takes as a witness: one appender at a time, so the tail needs no
//! lock of its own. A write's data is in the log (fdatasynced, if the write is durable) before
//! the index batch that points at it is written. A restart never appends to an existing file
//! (its tail may hold a group whose batch was never written). Live bytes per file are counted
//! in memory (rebuilt from the piece records at open); a sealed file with at least
//! [`LOG_GARBAGE_PERCENT_MIN`] garbage has its live pieces copied to the active file by
//! `maintenance`, and is deleted once its pieces' new locations are durable. A reader that
//! already holds the file keeps reading the unlinked file; one that looks it up afterwards
//! finds it gone and reloads the piece records.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_engine::WriteTag;
use cairn_engine::chunk::{CRC_BYTES, Crc32cHasher};

use crate::aligned_append::{AlignedAppend, AlignedBuf, aligned_len};
use crate::engine::{IndexGuard, sync_dir};
use crate::keys::PieceData;
use crate::read_buffers::{self, ReadBuffers};

/// Data bytes per checksummed chunk in the log: a block device's usual I/O size.
pub(crate) const LOG_CHUNK_BYTES: usize = 4096;

/// A log file is sealed (and a new one started) once it would grow past this.
pub(crate) const LOG_FILE_BYTES_MAX: u64 = 256 << 20;

/// A sealed log file is rewritten once at least this share (percent) of it is garbage: log
/// space then stays within twice the live data, and each byte reclaimed costs at most one byte
/// copied.
pub(crate) const LOG_GARBAGE_PERCENT_MIN: u64 = 50;

const SUFFIX: &str = ".xlog";

/// Encoded size of a piece of `len_bytes` data bytes.
pub(crate) fn encoded_len(len_bytes: u64) -> u64 {
    len_bytes + len_bytes.div_ceil(LOG_CHUNK_BYTES as u64) * CRC_BYTES as u64
}

/// Where chunk `index` of a piece starts, relative to the piece.
pub(crate) fn chunk_start(index: u64) -> u64 {
    index * (LOG_CHUNK_BYTES + CRC_BYTES) as u64
}

/// The checksum context of one piece: its object's key prefix and its tag.
#[derive(Clone)]
pub(crate) struct PieceIdentity(Crc32cHasher);

impl PieceIdentity {
    pub(crate) fn new(object_prefix: &[u8], tag: WriteTag) -> PieceIdentity {
        let mut h = Crc32cHasher::new();
        h.update(object_prefix);
        h.update(&tag.epoch.to_be_bytes());
        h.update(&tag.seq.to_be_bytes());
        PieceIdentity(h)
    }

    pub(crate) fn chunk_crc(&self, index: u64, data: &[u8]) -> u32 {
        let mut h = self.0.clone();
        h.update(&index.to_be_bytes());
        h.update(data);
        h.finish()
    }
}

/// One log file.
#[derive(Debug)]
pub(crate) struct LogFile {
    pub(crate) id: u64,
    pub(crate) file: File,
    /// The aligned file this run appends to: a second descriptor opened with `O_DIRECT`, unless
    /// the filesystem refuses it (then writes go through `file`, in the same layout).
    direct: Option<File>,
    /// The filesystem accepted the `O_DIRECT` open but refused a write: `file` takes the rest.
    direct_refused: std::sync::atomic::AtomicBool,
    /// End of the bytes written so far (set once a write has completed).
    written: AtomicU64,
    /// End of the bytes known durable.
    synced: AtomicU64,
    /// Held across an fdatasync, so a second syncer waits for one in progress and then sees
    /// whether it covered what it needs. Never taken under the state lock (readers need that).
    sync_lock: Mutex<()>,
}

impl LogFile {
    fn new(id: u64, file: File, written: u64) -> LogFile {
        LogFile {
            id,
            file,
            direct: None,
            direct_refused: std::sync::atomic::AtomicBool::new(false),
            written: AtomicU64::new(written),
            // A file found at open may hold bytes a crashed process wrote but never synced.
            synced: AtomicU64::new(0),
            sync_lock: Mutex::new(()),
        }
    }

    fn needs_sync(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.written.load(Ordering::Acquire)
    }

    /// Makes every byte written before this call durable.
    fn sync(&self) -> io::Result<()> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let target = self.written.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        rustix::fs::fdatasync(&self.file)?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

/// Why a log append could not start.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Creating the next file failed (disk full, I/O error).
    Create(io::Error),
    /// The directory fsync after creating it failed: the device must go out of service.
    SyncDir(io::Error),
}

#[derive(Debug, Default)]
struct LogState {
    files: BTreeMap<u64, Arc<LogFile>>,
    /// The file appends go to (its `written` is its tail).
    active: Option<Arc<LogFile>>,
    /// The aligned file appends written around the page cache go to.
    active_aligned: Option<Arc<LogFile>>,
    /// Encoded bytes of live pieces per file.
    live: HashMap<u64, u64>,
    next_id: u64,
}

impl LogState {
    fn is_active(&self, id: u64) -> bool {
        [&self.active, &self.active_aligned]
            .into_iter()
            .flatten()
            .any(|f| f.id == id)
    }
}

fn lock_spare<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A buffer slot: whatever a panic left in it is only reused as scratch space.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A second descriptor for `path` with `O_DIRECT`, for writes only; `None` where the filesystem
/// does not do direct I/O (tmpfs before Linux 6.6, some FUSE filesystems).
pub(crate) fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = i32::try_from(rustix::fs::OFlags::DIRECT.bits()).ok()?;
    match OpenOptions::new()
        .write(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "no O_DIRECT here; writes around the page cache go through it");
            None
        }
    }
}

/// A sealed file worth rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Victim {
    pub(crate) id: u64,
    pub(crate) size_bytes: u64,
    pub(crate) live_bytes: u64,
}

/// The extent log of one device.
#[derive(Debug)]
pub(crate) struct ExtentLog {
    dir: PathBuf,
    state: Mutex<LogState>,
    /// The last group's buffers, reused by the next: a fresh multi-megabyte buffer per group
    /// costs page faults and zeroing (a tenth of a random-write profile), and only one group at
    /// a time appends.
    spare: Mutex<Option<Vec<u8>>>,
    spare_aligned: Mutex<Option<AlignedBuf>>,
    /// Buffers piece reads land in.
    read_buffers: Arc<ReadBuffers>,
}

/// Buffers larger than this are not kept for reuse.
const SPARE_BUFFER_BYTES_MAX: usize = 16 << 20;

/// What a piece's data costs in its log file, counted as live: (file, bytes).
pub(crate) fn stored_bytes(data: &PieceData, len_bytes: u64) -> Option<(u64, u64)> {
    match *data {
        PieceData::Log { file, .. } => Some((file, encoded_len(len_bytes))),
        PieceData::Aligned { file, .. } => Some((file, aligned_len(len_bytes))),
        PieceData::None | PieceData::Index => None,
    }
}

/// One group's appends, written to the log in one call by [`ExtentLog::finish`].
#[derive(Debug)]
pub(crate) struct LogAppend {
    file: Arc<LogFile>,
    base: u64,
    buf: Vec<u8>,
    /// Encoded bytes per piece appended, to count as live once the batch is written.
    added: u64,
}

impl LogAppend {
    fn new(file: Arc<LogFile>, base: u64, mut buf: Vec<u8>, max_bytes: u64) -> LogAppend {
        buf.clear();
        buf.reserve(usize::try_from(max_bytes).unwrap_or(0));
        LogAppend {
            file,
            base,
            buf,
            added: 0,
        }
    }

    /// Appends a piece's data as checksummed chunks; returns its offset in the file.
    pub(crate) fn push(&mut self, identity: &PieceIdentity, data: &[u8]) -> (u64, u64) {
        let offset = self.base + self.buf.len() as u64;
        for (c, part) in (0u64..).zip(data.chunks(LOG_CHUNK_BYTES)) {
            self.buf.extend_from_slice(part);
            self.buf
                .extend_from_slice(&identity.chunk_crc(c, part).to_le_bytes());
        }
        self.added += encoded_len(data.len() as u64);
        (self.file.id, offset)
    }

    /// Appends a piece already encoded (checked by the caller); returns its offset.
    pub(crate) fn push_encoded(&mut self, encoded: &[u8]) -> (u64, u64) {
        let offset = self.base + self.buf.len() as u64;
        self.buf.extend_from_slice(encoded);
        self.added += encoded.len() as u64;
        (self.file.id, offset)
    }

    /// Where the next piece pushed will start.
    pub(crate) fn next_location(&self) -> (u64, u64) {
        (self.file.id, self.base + self.buf.len() as u64)
    }

    /// The record data of the next piece pushed.
    pub(crate) fn next_piece_data(&self) -> PieceData {
        let (file, offset) = self.next_location();
        PieceData::Log { file, offset }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Opens without access-time updates where allowed: with `relatime`, reading a file that was
/// written since its last read updates its atime, which can wait on the journal — even in a
/// `RWF_NOWAIT` read on an async worker.
fn open_noatime(options: &OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = i32::try_from(rustix::fs::OFlags::NOATIME.bits()).unwrap_or(0);
    match options.clone().custom_flags(flags).open(path) {
        // O_NOATIME needs the file's owner (or CAP_FOWNER).
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            options.open(path)
        }
        other => other,
    }
}

fn parse_name(name: &std::ffi::OsStr) -> Option<u64> {
    let hex = name.to_str()?.strip_suffix(SUFFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

impl ExtentLog {
    /// Opens the log directory under `device_dir`; `live` is the encoded bytes each file's
    /// piece records reference. Files nothing references are deleted (garbage, or a group whose
    /// batch was never written).
    pub(crate) fn open(device_dir: &Path, live: HashMap<u64, u64>) -> io::Result<ExtentLog> {
        let dir = device_dir.join("extents");
        fs::create_dir_all(&dir)?;
        let mut state = LogState {
            next_id: 1,
            ..LogState::default()
        };
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(id) = parse_name(&entry.file_name()) else {
                continue;
            };
            state.next_id = state.next_id.max(id + 1);
            if live.get(&id).copied().unwrap_or(0) == 0 {
                fs::remove_file(entry.path())?;
                continue;
            }
            let file = open_noatime(OpenOptions::new().read(true), &entry.path())?;
            let len = file.metadata()?.len();
            state
                .files
                .insert(id, Arc::new(LogFile::new(id, file, len)));
        }
        for (id, bytes) in live {
            if state.files.contains_key(&id) {
                state.live.insert(id, bytes);
            } else if bytes > 0 {
                tracing::error!(
                    file = id,
                    "extent log file referenced by the index is missing"
                );
            }
        }
        sync_dir(&dir)?;
        Ok(ExtentLog {
            dir,
            state: Mutex::new(state),
            spare: Mutex::new(None),
            spare_aligned: Mutex::new(None),
            read_buffers: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // Plain maps and counters, each change a single statement: a panic cannot leave them
        // half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}{SUFFIX}"))
    }

    /// The file `id`, while it exists.
    pub(crate) fn file(&self, id: u64) -> Option<Arc<LogFile>> {
        self.lock().files.get(&id).cloned()
    }

    /// Starts a group's append of at most `max_bytes` (encoded), sealing the active file first
    /// if it would grow past [`LOG_FILE_BYTES_MAX`]. `_index` proves the caller holds the index
    /// lock, which is what keeps appenders one at a time.
    pub(crate) fn append(
        &self,
        index: &IndexGuard<'_>,
        max_bytes: u64,
    ) -> Result<LogAppend, AppendError> {
        let (file, base) = self.tail(index, max_bytes, false)?;
        let buf = lock_spare(&self.spare).take().unwrap_or_default();
        Ok(LogAppend::new(file, base, buf, max_bytes))
    }

    /// Starts a group's append to the aligned file, written around the page cache, of pieces
    /// with `max_chunks` chunks and `max_padded_bytes` data at most (see
    /// [`AlignedAppend::size_of`]).
    pub(crate) fn append_aligned(
        &self,
        index: &IndexGuard<'_>,
        (max_chunks, max_padded_bytes): (u64, u64),
    ) -> Result<AlignedAppend, AppendError> {
        let max_bytes = AlignedAppend::max_len(max_chunks, max_padded_bytes);
        let (file, base) = self.tail(index, max_bytes, true)?;
        let buf = lock_spare(&self.spare_aligned).take();
        Ok(AlignedAppend::new(
            file,
            base,
            buf,
            max_chunks,
            max_padded_bytes,
        ))
    }

    /// Gives a finished group's buffers back for the next group.
    pub(crate) fn recycle(&self, cached: Option<LogAppend>, aligned: Option<AlignedAppend>) {
        if let Some(a) = cached
            && a.buf.capacity() <= SPARE_BUFFER_BYTES_MAX
        {
            *lock_spare(&self.spare) = Some(a.buf);
        }
        if let Some(a) = aligned {
            let buf = a.into_buf();
            if buf.capacity() <= SPARE_BUFFER_BYTES_MAX {
                *lock_spare(&self.spare_aligned) = Some(buf);
            }
        }
    }

    /// The active file of one layout and its tail, if `max_bytes` more fit in it; otherwise a
    /// new file (which becomes the active one).
    fn tail(
        &self,
        _index: &IndexGuard<'_>,
        max_bytes: u64,
        aligned: bool,
    ) -> Result<(Arc<LogFile>, u64), AppendError> {
        let active = {
            let s = self.lock();
            if aligned {
                s.active_aligned.clone()
            } else {
                s.active.clone()
            }
        };
        if let Some(file) = active {
            let tail = file.written.load(Ordering::Acquire);
            if tail == 0 || tail + max_bytes <= LOG_FILE_BYTES_MAX {
                return Ok((file, tail));
            }
        }
        // Only appenders change `active` and `next_id`, and they are one at a time (the index
        // lock): the file is created without holding the state lock readers need.
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            s.next_id - 1
        };
        let path = self.path(id);
        let file = open_noatime(
            OpenOptions::new().read(true).write(true).create_new(true),
            &path,
        )
        .map_err(AppendError::Create)?;
        // The file's name must be durable before any durable write's data in it is.
        sync_dir(&self.dir).map_err(AppendError::SyncDir)?;
        let mut file = LogFile::new(id, file, 0);
        if aligned {
            file.direct = open_direct(&path);
        }
        let file = Arc::new(file);
        let mut s = self.lock();
        s.files.insert(id, file.clone());
        if aligned {
            s.active_aligned = Some(file.clone());
        } else {
            s.active = Some(file.clone());
        }
        Ok((file, 0))
    }

    /// Writes a group's appends (page cache; see [`ExtentLog::sync`]) and moves the file's
    /// `written` end (the tail) past them. On failure the tail stays where it was: nothing was
    /// recorded as written there.
    pub(crate) fn finish(&self, append: &LogAppend) -> io::Result<()> {
        if append.buf.is_empty() {
            return Ok(());
        }
        fail::fail_point!("extent-log-write-enospc", |_| Err(
            io::Error::from_raw_os_error(28)
        ));
        append.file.file.write_all_at(&append.buf, append.base)?;
        let end = append.base + append.buf.len() as u64;
        append.file.written.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Writes a group's aligned appends around the page cache, like [`ExtentLog::finish`].
    pub(crate) fn finish_aligned(&self, append: &AlignedAppend) -> io::Result<()> {
        if append.is_empty() {
            return Ok(());
        }
        fail::fail_point!("extent-log-write-enospc", |_| Err(
            io::Error::from_raw_os_error(28)
        ));
        let bytes = append.bytes();
        let file = &append.file;
        let direct = file
            .direct
            .as_ref()
            .filter(|_| !file.direct_refused.load(Ordering::Relaxed));
        match direct {
            Some(direct) => match direct.write_all_at(bytes, append.base) {
                // A filesystem may accept O_DIRECT opens and still refuse a write's alignment:
                // the page cache takes it, and the rest of the file's writes.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(file = file.id, error = %e, "O_DIRECT write refused; this file is written through the page cache");
                    file.direct_refused.store(true, Ordering::Relaxed);
                    file.file.write_all_at(bytes, append.base)?;
                }
                other => other?,
            },
            None => file.file.write_all_at(bytes, append.base)?,
        }
        let end = append.base + bytes.len() as u64;
        file.written.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// fdatasyncs every file appended to since its last sync: every append finished so far is
    /// durable when this returns.
    pub(crate) fn sync(&self) -> io::Result<()> {
        fail::fail_point!("extent-log-sync-error", |_| Err(io::Error::other(
            "failpoint extent-log-sync-error"
        )));
        let dirty: Vec<Arc<LogFile>> = self
            .lock()
            .files
            .values()
            .filter(|f| f.needs_sync())
            .cloned()
            .collect();
        for f in dirty {
            f.sync()?;
        }
        Ok(())
    }

    /// Counts a written batch's effect: bytes now referenced (`append`) and pieces freed.
    pub(crate) fn account(
        &self,
        append: Option<&LogAppend>,
        aligned: Option<&AlignedAppend>,
        freed: &[(u64, u64)],
    ) {
        let mut s = self.lock();
        if let Some(a) = append
            && a.added > 0
        {
            *s.live.entry(a.file.id).or_insert(0) += a.added;
        }
        if let Some(a) = aligned
            && a.added() > 0
        {
            *s.live.entry(a.file.id).or_insert(0) += a.added();
        }
        for (id, bytes) in freed {
            let live = s.live.entry(*id).or_insert(0);
            if *live < *bytes {
                // Only a file missing at open (its pieces unreadable) can get here.
                tracing::error!(file = id, "extent log file frees more bytes than it holds");
            }
            *live = live.saturating_sub(*bytes);
        }
    }

    /// Sealed files with at least [`LOG_GARBAGE_PERCENT_MIN`] garbage (those with none live
    /// included).
    pub(crate) fn victims(&self) -> Vec<Victim> {
        let s = self.lock();
        s.files
            .iter()
            .filter(|(id, _)| !s.is_active(**id))
            .filter_map(|(id, f)| {
                let size_bytes = f.written.load(Ordering::Acquire);
                let live_bytes = s.live.get(id).copied().unwrap_or(0);
                let garbage = size_bytes.saturating_sub(live_bytes);
                (live_bytes == 0 || garbage * 100 >= size_bytes * LOG_GARBAGE_PERCENT_MIN)
                    .then_some(Victim {
                        id: *id,
                        size_bytes,
                        live_bytes,
                    })
            })
            .collect()
    }

    /// Deletes a sealed file none of whose pieces is referenced any more (call under the index
    /// lock, once the records that moved its pieces elsewhere are durable).
    pub(crate) fn remove(&self, _index: &IndexGuard<'_>, id: u64) -> io::Result<bool> {
        let mut s = self.lock();
        if s.is_active(id) || s.live.get(&id).copied().unwrap_or(0) > 0 {
            return Ok(false);
        }
        s.files.remove(&id);
        s.live.remove(&id);
        drop(s);
        fs::remove_file(self.path(id))?;
        Ok(true)
    }

    /// Total bytes of the log files.
    #[cfg(test)]
    pub(crate) fn size_bytes(&self) -> u64 {
        self.lock()
            .files
            .values()
            .map(|f| f.written.load(Ordering::Acquire))
            .sum()
    }

    /// Reads `len` bytes at `offset` of file `file` (None: the file is gone).
    pub(crate) fn read(&self, file: u64, offset: u64, len: usize) -> Option<io::Result<Vec<u8>>> {
        let f = self.file(file)?;
        let mut buf = vec![0u8; len];
        Some(f.file.read_exact_at(&mut buf, offset).map(|()| buf))
    }
}

/// What a piece read found.
#[derive(Debug)]
pub(crate) enum PieceRead {
    /// The bytes asked for, checked.
    Bytes(bytes::Bytes),
    /// The file is gone: the piece was moved; read its record again.
    FileGone,
    /// Not all in the page cache (`nowait` reads only).
    WouldBlock,
}

/// Why a piece read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PieceReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the file ends inside the piece")]
    Truncated,
    #[error("chunk {0} fails its checksum")]
    Checksum(u64),
}

impl ExtentLog {
    /// Reads and checks `[from, to)` (piece-relative, non-empty) of the piece of `piece_len` data
    /// bytes stored at `at` (a `Log` or `Aligned` location). The chunks' data is read straight
    /// into one buffer and their CRCs aside, so the bytes returned are a slice of what was read,
    /// not a copy. With `nowait` the read is answered only from the page cache (`RWF_NOWAIT`).
    pub(crate) fn read_piece(
        &self,
        at: &PieceData,
        identity: &PieceIdentity,
        piece_len: u64,
        (from, to): (u64, u64),
        nowait: bool,
    ) -> Result<PieceRead, PieceReadError> {
        let file = match *at {
            PieceData::Log { file, .. } | PieceData::Aligned { file, .. } => file,
            PieceData::None | PieceData::Index => {
                return Err(PieceReadError::Io(io::Error::other(
                    "the piece is not in the extent log",
                )));
            }
        };
        let Some(f) = self.file(file) else {
            return Ok(PieceRead::FileGone);
        };
        let chunk = LOG_CHUNK_BYTES as u64;
        let (first, last) = (from / chunk, (to - 1) / chunk);
        let data_start = first * chunk;
        let data_end = ((last + 1) * chunk).min(piece_len);
        let n_chunks = usize::try_from(last - first + 1).map_err(|_| PieceReadError::Truncated)?;
        let len = usize::try_from(data_end - data_start).map_err(|_| PieceReadError::Truncated)?;
        let mut buf = self.read_buffers.take(len);
        let data = &mut buf[..len];
        let mut crcs = vec![[0u8; CRC_BYTES]; n_chunks];
        let flags = if nowait {
            rustix::io::ReadWriteFlags::NOWAIT
        } else {
            rustix::io::ReadWriteFlags::empty()
        };
        let complete = match *at {
            PieceData::Log { offset, .. } => {
                let mut slices: Vec<io::IoSliceMut<'_>> = Vec::with_capacity(2 * n_chunks);
                for (part, crc) in data.chunks_mut(LOG_CHUNK_BYTES).zip(crcs.iter_mut()) {
                    slices.push(io::IoSliceMut::new(part));
                    slices.push(io::IoSliceMut::new(crc));
                }
                read_fully(&f.file, &mut slices, offset + chunk_start(first), flags)?
            }
            PieceData::Aligned {
                offset, crcs: at, ..
            } => {
                let mut data_slice = [io::IoSliceMut::new(data)];
                let mut crc_slice = [io::IoSliceMut::new(crcs.as_flattened_mut())];
                read_fully(&f.file, &mut data_slice, offset + data_start, flags)?
                    && read_fully(
                        &f.file,
                        &mut crc_slice,
                        at + first * CRC_BYTES as u64,
                        flags,
                    )?
            }
            PieceData::None | PieceData::Index => false,
        };
        match complete {
            true => {}
            // Not all cached, or a filesystem without RWF_NOWAIT (EOPNOTSUPP): the ordinary read
            // decides.
            false if nowait => return Ok(PieceRead::WouldBlock),
            false => return Err(PieceReadError::Truncated),
        }
        for ((c, part), crc) in (first..).zip(data.chunks(LOG_CHUNK_BYTES)).zip(&crcs) {
            if identity.chunk_crc(c, part) != u32::from_le_bytes(*crc) {
                return Err(PieceReadError::Checksum(c));
            }
        }
        // Every byte of `data` was just read (a short read returned above).
        let bytes = read_buffers::filled(&self.read_buffers, buf, len);
        let s = usize::try_from(from - data_start).map_err(|_| PieceReadError::Truncated)?;
        let e = usize::try_from(to - data_start).map_err(|_| PieceReadError::Truncated)?;
        Ok(PieceRead::Bytes(bytes.slice(s..e)))
    }

    /// A whole piece in the interleaved layout (chunk, CRC, chunk, CRC, …), whichever layout it
    /// is stored in — what the garbage collector checks and copies. Unchecked. `None`: the file
    /// is gone.
    pub(crate) fn read_encoded(
        &self,
        at: &PieceData,
        len_bytes: u64,
    ) -> Option<io::Result<Vec<u8>>> {
        let too_long = || io::Error::other("piece too long to read");
        match *at {
            PieceData::Log { file, offset } => {
                let len = usize::try_from(encoded_len(len_bytes)).ok()?;
                self.read(file, offset, len)
            }
            PieceData::Aligned { file, offset, crcs } => {
                let f = self.file(file)?;
                let read = || -> io::Result<Vec<u8>> {
                    let len = usize::try_from(len_bytes).map_err(|_| too_long())?;
                    let n = len.div_ceil(LOG_CHUNK_BYTES);
                    let mut data = vec![0u8; len];
                    f.file.read_exact_at(&mut data, offset)?;
                    let mut sums = vec![0u8; n * CRC_BYTES];
                    f.file.read_exact_at(&mut sums, crcs)?;
                    let mut out = Vec::with_capacity(len + sums.len());
                    for (part, crc) in data.chunks(LOG_CHUNK_BYTES).zip(sums.chunks(CRC_BYTES)) {
                        out.extend_from_slice(part);
                        out.extend_from_slice(crc);
                    }
                    Ok(out)
                };
                Some(read())
            }
            PieceData::None | PieceData::Index => None,
        }
    }
}

/// Reads into `slices` from `at` until they are full: `Ok(false)` if the file ends first or, with
/// `RWF_NOWAIT`, the page cache cannot answer (or the filesystem has no RWF_NOWAIT).
fn read_fully(
    file: &File,
    slices: &mut [io::IoSliceMut<'_>],
    mut at: u64,
    flags: rustix::io::ReadWriteFlags,
) -> Result<bool, PieceReadError> {
    let nowait = flags.contains(rustix::io::ReadWriteFlags::NOWAIT);
    // At most IOV_MAX slices per call; a regular file reads short only at its end.
    for batch in slices.chunks_mut(IOV_SLICES_MAX) {
        let len: usize = batch.iter().map(|b| b.len()).sum();
        match rustix::io::preadv2(file, batch, at, flags) {
            Ok(n) if n == len => at += n as u64,
            Ok(_) => return Ok(false),
            Err(_) if nowait => return Ok(false),
            Err(e) => return Err(PieceReadError::Io(e.into())),
        }
    }
    Ok(true)
}

/// Slices per `preadv` call (Linux's IOV_MAX is 1024).
const IOV_SLICES_MAX: usize = 1024;

/// Checks the chunks of `encoded` (chunks `first..` of a piece with `identity`, `piece_len`
/// data bytes in all) and copies out data bytes `[from, to)` (piece-relative).
pub(crate) fn verify_and_extract(
    identity: &PieceIdentity,
    encoded: &[u8],
    first: u64,
    piece_len: u64,
    from: u64,
    to: u64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let chunk = LOG_CHUNK_BYTES as u64;
    let mut at = 0usize;
    let mut c = first;
    while at < encoded.len() {
        let base = c * chunk;
        let data_len = usize::try_from(piece_len.saturating_sub(base).min(chunk)).unwrap_or(0);
        let end = at + data_len + CRC_BYTES;
        let (Some(data), Some(crc)) = (
            encoded.get(at..at + data_len),
            encoded.get(at + data_len..end),
        ) else {
            return Err(format!("chunk {c} is truncated"));
        };
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if data_len == 0 || identity.chunk_crc(c, data) != stored {
            return Err(format!("chunk {c} fails its checksum"));
        }
        let s = usize::try_from(from.max(base) - base).unwrap_or(0);
        let e = usize::try_from(to.min(base + data_len as u64).saturating_sub(base)).unwrap_or(0);
        if s < e {
            out.extend_from_slice(&data[s..e]);
        }
        at = end;
        c += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]

    use super::*;

    /// A file found at open may hold a crashed process's unsynced bytes: the first sync covers
    /// it. After that, only files written since need one.
    #[test]
    fn files_found_at_open_are_synced_once_and_writes_mark_files_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("extents");
        std::fs::create_dir_all(&log_dir).unwrap();
        std::fs::write(log_dir.join(format!("{:016x}{SUFFIX}", 5)), b"x").unwrap();
        std::fs::write(log_dir.join(format!("{:016x}{SUFFIX}", 6)), b"unreferenced").unwrap();
        let log = ExtentLog::open(dir.path(), HashMap::from([(5, 1)])).unwrap();
        assert!(
            log.file(6).is_none(),
            "an unreferenced file is deleted at open"
        );
        assert!(!log_dir.join(format!("{:016x}{SUFFIX}", 6)).exists());
        let old = log.file(5).unwrap();
        assert!(old.needs_sync());
        log.sync().unwrap();
        assert!(!old.needs_sync());
        let lock = Mutex::new(());
        let guard = IndexGuard(lock.lock().unwrap());
        let mut a = log.append(&guard, 100).map_err(|_| ()).unwrap();
        assert_eq!(
            a.next_location().0,
            7,
            "new files get ids above every existing one"
        );
        let id = PieceIdentity::new(b"o", WriteTag { epoch: 1, seq: 1 });
        a.push(&id, b"data");
        log.finish(&a).unwrap();
        let new = log.file(7).unwrap();
        assert!(new.needs_sync() && !old.needs_sync());
        log.sync().unwrap();
        assert!(!new.needs_sync());
        assert_eq!(log.read(7, 0, 4).unwrap().unwrap(), b"data");
    }

    /// Piece reads, in both layouts: ranges starting and ending mid-chunk, the short last chunk,
    /// more chunks than one `preadv` takes, a flipped byte, a file cut short; and the whole piece
    /// in the interleaved layout, as the garbage collector copies it.
    #[test]
    fn piece_reads_return_checked_slices() {
        let dir = tempfile::tempdir().unwrap();
        let log = ExtentLog::open(dir.path(), HashMap::new()).unwrap();
        let lock = Mutex::new(());
        let guard = IndexGuard(lock.lock().unwrap());
        let len = 600 * LOG_CHUNK_BYTES + 123;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let id = PieceIdentity::new(b"obj", WriteTag { epoch: 3, seq: 4 });
        let before = PieceIdentity::new(b"other", WriteTag { epoch: 1, seq: 1 });
        let mut a = log
            .append(&guard, encoded_len(len as u64) + 100)
            .map_err(|_| ())
            .unwrap();
        a.push(&before, b"first");
        let interleaved = a.next_piece_data();
        a.push(&id, &data);
        log.finish(&a).unwrap();
        let (c1, b1) = AlignedAppend::size_of(5);
        let (c2, b2) = AlignedAppend::size_of(len as u64);
        let mut a = log
            .append_aligned(&guard, (c1 + c2, b1 + b2))
            .map_err(|_| ())
            .unwrap();
        a.push(&before, b"first");
        let aligned = a.push(&id, &data);
        log.finish_aligned(&a).unwrap();
        assert!(matches!(aligned, PieceData::Aligned { offset, .. } if offset % 4096 == 0));
        let n = len as u64;
        for at in [interleaved, aligned] {
            for (from, to) in [
                (0, n),
                (1, 2),
                (4095, 4097),
                (n - 1, n),
                (8192, 12288),
                (100, n - 50),
            ] {
                for nowait in [false, true] {
                    match log.read_piece(&at, &id, n, (from, to), nowait).unwrap() {
                        PieceRead::Bytes(b) => {
                            assert_eq!(&b[..], &data[from as usize..to as usize], "{from}..{to}");
                        }
                        PieceRead::WouldBlock if nowait => {}
                        other => panic!("{other:?}"),
                    }
                }
            }
            let encoded = log.read_encoded(&at, n).unwrap().unwrap();
            let mut out = Vec::new();
            verify_and_extract(&id, &encoded, 0, n, 0, n, &mut out).unwrap();
            assert_eq!(out, data);
            let other = PieceIdentity::new(b"obj", WriteTag { epoch: 3, seq: 5 });
            assert!(matches!(
                log.read_piece(&at, &other, n, (0, 10), false),
                Err(PieceReadError::Checksum(0))
            ));
        }
        for (at, chunk7, cut) in [
            (interleaved, chunk_start(7), chunk_start(600)),
            (aligned, 7 * 4096, 600 * 4096),
        ] {
            let (PieceData::Log { file, offset } | PieceData::Aligned { file, offset, .. }) = at
            else {
                unreachable!()
            };
            let f = log.file(file).unwrap();
            f.file.write_all_at(&[0xff], offset + chunk7 + 9).unwrap();
            assert!(matches!(
                log.read_piece(&at, &id, n, (7 * 4096, 7 * 4096 + 10), false),
                Err(PieceReadError::Checksum(7))
            ));
            assert!(log.read_piece(&at, &id, n, (0, 4096), false).is_ok());
            f.file.set_len(offset + cut).unwrap();
            assert!(matches!(
                log.read_piece(&at, &id, n, (n - 1, n), false),
                Err(PieceReadError::Truncated)
            ));
        }
        assert!(matches!(
            log.read_piece(
                &PieceData::Log {
                    file: 99,
                    offset: 0
                },
                &id,
                n,
                (0, 1),
                false
            ),
            Ok(PieceRead::FileGone)
        ));
    }

    #[test]
    fn chunks_check_their_identity_and_extract_ranges() {
        let id = PieceIdentity::new(b"obj", WriteTag { epoch: 1, seq: 2 });
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut encoded = Vec::new();
        for (c, part) in (0u64..).zip(data.chunks(LOG_CHUNK_BYTES)) {
            encoded.extend_from_slice(part);
            encoded.extend_from_slice(&id.chunk_crc(c, part).to_le_bytes());
        }
        assert_eq!(encoded.len() as u64, encoded_len(10_000));
        let mut out = Vec::new();
        verify_and_extract(&id, &encoded, 0, 10_000, 100, 9_000, &mut out).unwrap();
        assert_eq!(out, &data[100..9_000]);
        // Chunk 2 alone (the short last one).
        let mut out = Vec::new();
        let from = usize::try_from(chunk_start(2)).unwrap();
        verify_and_extract(&id, &encoded[from..], 2, 10_000, 8_200, 10_000, &mut out).unwrap();
        assert_eq!(out, &data[8_200..]);
        // Another piece's identity, or a flipped bit, fails.
        let other = PieceIdentity::new(b"obj", WriteTag { epoch: 1, seq: 3 });
        assert!(verify_and_extract(&other, &encoded, 0, 10_000, 0, 10, &mut Vec::new()).is_err());
        encoded[5] ^= 1;
        assert!(verify_and_extract(&id, &encoded, 0, 10_000, 0, 10, &mut Vec::new()).is_err());
        assert!(
            verify_and_extract(&id, &encoded[..100], 0, 10_000, 0, 10, &mut Vec::new()).is_err()
        );
    }
}
