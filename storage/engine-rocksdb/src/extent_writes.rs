//! Group commit of extent pieces: concurrent writes to a device are applied by one committer
//! thread in one RocksDB batch per group instead of one blocking task, one index-lock handoff
//! and one WAL append each.
//!
//! Under queue depth, every 4 KiB block write used to wake a blocking-pool thread that then
//! queued on the index lock behind the others; most of a write's CPU went to those futex
//! handoffs. Now a write is queued and the caller waits for its own answer; the committer drains
//! whatever is queued (up to [`GROUP_WRITES_MAX`] writes or [`GROUP_BYTES_MAX`] bytes), applies
//! the writes in queue order against an overlay of the group's own effects, writes the batch
//! once (synced if any write asked for durability) and answers each write. A write the index
//! refuses (fenced, unreadable records) is answered alone and adds nothing to the batch; a failed
//! batch write fails every write of the group, none of which became visible.
//!
//! There is at most one committer per device, started by the write that finds none running, so
//! the thread count stays bounded without taking a blocking-pool permit (a permit's await could
//! be cancelled between claiming the committer role and starting it, leaving writes stranded).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use cairn_engine::extent::ExtentPiece;
use cairn_engine::{Error, ExtentKey, ExtentWriteOpts, Result, validate_name};
use rocksdb::WriteBatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::aligned_append::AlignedAppend;
use crate::engine::Inner;
use crate::extent_log::{self, LogAppend, PieceIdentity};
use crate::keys::{self, PieceData, StoredPiece};
use crate::limits::{
    EXTENT_WRITE_GROUP_BYTES_MAX, EXTENT_WRITE_GROUP_MAX, EXTENT_WRITES_QUEUED_MAX,
};
use crate::piece_list::PieceList;
use crate::records::{cached_metas, chunk_count, chunk_key, fence_decision, piece_key};

const GROUP_WRITES_MAX: usize = EXTENT_WRITE_GROUP_MAX;
const GROUP_BYTES_MAX: u64 = EXTENT_WRITE_GROUP_BYTES_MAX;

/// Writes at least this long that ask for it go around the page cache (`O_DIRECT`). Smaller
/// ones gain little (a 4 KiB copy is cheap next to the write's other costs) and would each cost
/// a page of padding and a device round trip on the committer.
const WRITE_AROUND_MIN_BYTES: usize = 64 * 1024;

/// Whether a write's data goes to the aligned log, written around the page cache.
fn goes_around(w: &QueuedWrite) -> bool {
    w.opts.write_around
        && w.piece
            .data
            .as_ref()
            .is_some_and(|d| d.len() >= WRITE_AROUND_MIN_BYTES)
}

/// Where a group's data goes: the cached log, the aligned one, or (trims) neither.
struct GroupAppends {
    cached: Option<LogAppend>,
    aligned: Option<AlignedAppend>,
}

type Answer = oneshot::Sender<Result<()>>;

/// One queued write and where its answer goes.
#[derive(Debug)]
struct QueuedWrite {
    key: ExtentKey,
    piece: ExtentPiece,
    opts: ExtentWriteOpts,
    answer: Answer,
    /// The queue slot; freed once the committer has taken the write in hand (so the queue holds
    /// at most `EXTENT_WRITES_QUEUED_MAX` waiting writes besides the group being applied).
    _slot: OwnedSemaphorePermit,
}

/// The per-device queue of extent writes waiting for the committer.
#[derive(Debug)]
pub(crate) struct ExtentWriteQueue {
    queued: Mutex<VecDeque<QueuedWrite>>,
    slots: Arc<Semaphore>,
    committer_running: AtomicBool,
}

impl Default for ExtentWriteQueue {
    fn default() -> Self {
        ExtentWriteQueue {
            queued: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(EXTENT_WRITES_QUEUED_MAX)),
            committer_running: AtomicBool::new(false),
        }
    }
}

impl ExtentWriteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<QueuedWrite>> {
        // The queue is a plain list: a panic while holding it cannot leave it half-changed.
        match self.queued.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        }
    }

    /// The next group: queued writes in order, up to the group limits (at least one).
    fn take_group(&self) -> Vec<QueuedWrite> {
        let mut q = self.lock();
        let mut group = Vec::new();
        let mut bytes = 0u64;
        while let Some(next) = q.front() {
            let len = next.piece.data.as_ref().map_or(0, |d| d.len() as u64);
            if !group.is_empty()
                && (group.len() >= GROUP_WRITES_MAX || bytes + len > GROUP_BYTES_MAX)
            {
                break;
            }
            bytes += len;
            if let Some(w) = q.pop_front() {
                group.push(w);
            }
        }
        group
    }
}

/// Adds a write, trim or delete piece: fence check, free the pieces it hides (unless a
/// snapshot in `opts.keep` still sees them), store it — in one batch with the device's other
/// queued writes, synced if `opts.durable`. Waits for the committer's answer.
pub(crate) async fn add_piece(
    inner: &Arc<Inner>,
    key: &ExtentKey,
    piece: ExtentPiece,
    opts: &ExtentWriteOpts,
) -> Result<()> {
    inner.check()?;
    validate_name("image", &key.image)?;
    let queue = &inner.extent_writes;
    let slot = queue
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Failed("extent write queue closed".into()))?;
    let (answer, answered) = oneshot::channel();
    queue.lock().push_back(QueuedWrite {
        key: key.clone(),
        piece,
        opts: opts.clone(),
        answer,
        _slot: slot,
    });
    // No await between claiming the role and starting the thread: see the module comment.
    if !queue.committer_running.swap(true, Ordering::AcqRel) {
        // The role exists before the thread: if the runtime drops the job unrun (shutting
        // down), the role's drop still clears the flag and fails what is queued.
        let (role, device) = (CommitterRole::claimed(queue.clone()), Arc::downgrade(inner));
        tokio::task::spawn_blocking(move || run_committer(role, &device));
    }
    answered
        .await
        .map_err(|_| Error::Failed("extent write committer stopped".into()))?
}

/// The committer role of one device's queue. Dropped while holding the role without having
/// finished normally (a panic, a job the runtime never ran), it clears the flag, so the next
/// write starts a new committer, and fails the writes still queued rather than leave them
/// waiting for one.
struct CommitterRole {
    queue: Arc<ExtentWriteQueue>,
    holds: bool,
    finished: bool,
}

impl CommitterRole {
    /// For a caller that has just set `committer_running`.
    fn claimed(queue: Arc<ExtentWriteQueue>) -> CommitterRole {
        CommitterRole {
            queue,
            holds: true,
            finished: false,
        }
    }
}

impl Drop for CommitterRole {
    fn drop(&mut self) {
        if !self.holds {
            return;
        }
        if !self.finished {
            let stranded: Vec<QueuedWrite> = self.queue.lock().drain(..).collect();
            for w in stranded {
                let _ = w
                    .answer
                    .send(Err(Error::Failed("extent write committer stopped".into())));
            }
        }
        self.queue.committer_running.store(false, Ordering::Release);
    }
}

/// Drains the queue group by group until it is empty (blocking thread).
///
/// The committer holds the device only while it applies a group, and lets go before it answers:
/// a caller that drops the engine after its last write then closes the database itself, at
/// once, rather than a committer thread closing it a moment later (and a reopen finding it
/// still locked).
fn run_committer(mut role: CommitterRole, device: &Weak<Inner>) {
    loop {
        let group = role.queue.take_group();
        if !group.is_empty() {
            let answers = match device.upgrade() {
                Some(inner) => commit_group(&inner, group),
                None => group
                    .into_iter()
                    .map(|w| (w.answer, Err(Error::Failed("device closed".into()))))
                    .collect(),
            };
            for (answer, result) in answers {
                let _ = answer.send(result);
            }
            continue;
        }
        if linger_for_work(&role.queue) {
            continue;
        }
        role.holds = false;
        role.queue.committer_running.store(false, Ordering::Release);
        // A write queued after the empty take but before the flag was cleared saw a running
        // committer and started none: take the role back for it unless a new one has it.
        if role.queue.lock().is_empty() || role.queue.committer_running.swap(true, Ordering::AcqRel)
        {
            role.finished = true;
            return;
        }
        role.holds = true;
    }
}

/// How long an idle committer waits for more writes before it lets its thread go.
const COMMITTER_LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// Waits up to [`COMMITTER_LINGER`] (yielding the CPU) for a write to be queued; true if one was.
/// Under queue depth the next write is a few microseconds away, and taking it here costs less
/// than ending the thread and having that write start (wake) another one.
fn linger_for_work(queue: &ExtentWriteQueue) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < COMMITTER_LINGER {
        std::thread::yield_now();
        if !queue.lock().is_empty() {
            return true;
        }
    }
    false
}

/// What a group has done so far, seen by its later writes before anything is in the database.
#[derive(Default)]
struct GroupOverlay {
    /// Piece records per object prefix as of the group's writes so far.
    metas: HashMap<Vec<u8>, PieceList>,
    /// Extent log bytes the group frees, per file.
    freed: Vec<(u64, u64)>,
    /// Fence raises per image.
    fences: HashMap<String, u64>,
}

/// Applies one group under the index lock; answers what each write gets (sent by the caller
/// once it has let go of the device).
fn commit_group(inner: &Inner, group: Vec<QueuedWrite>) -> Vec<(Answer, Result<()>)> {
    let fail_all = |group: Vec<QueuedWrite>, e: Error| {
        group
            .into_iter()
            .map(|w| (w.answer, Err(copy_error(&e))))
            .collect()
    };
    let guard = match inner.check().and_then(|()| inner.lock_index()) {
        Ok(g) => g,
        Err(e) => return fail_all(group, e),
    };
    let mut batch = WriteBatch::default();
    let mut overlay = GroupOverlay::default();
    let mut durable = false;
    let mut answers = Vec::with_capacity(group.len());
    let mut applied = Vec::with_capacity(group.len());
    let mut appends = match open_appends(inner, &guard, &group) {
        Ok(a) => a,
        Err(e) => return fail_all(group, e),
    };
    for w in group {
        match stage_write(inner, &mut batch, &mut overlay, &mut appends, &w) {
            Ok(()) => {
                durable |= w.opts.durable;
                applied.push(w.answer);
            }
            Err(e) => answers.push((w.answer, Err(e))),
        }
    }
    // The data first (synced, for a durable group), then the records that point at it.
    let cached_written = match &appends.cached {
        Some(a) if !a.is_empty() => inner.log.finish(a).map_err(|e| inner.write_error(e)),
        _ => Ok(()),
    };
    let data_written = cached_written.and_then(|()| match &appends.aligned {
        Some(a) if !a.is_empty() => inner
            .log
            .finish_aligned(a)
            .map_err(|e| inner.write_error(e)),
        _ => Ok(()),
    });
    let written = data_written.and_then(|()| {
        if durable {
            inner.sync_extent_log()?;
        }
        if batch.is_empty() {
            // A durable write hidden by a newer unsynced one stores nothing, but what hides it
            // must not be lost in a crash either.
            if durable { inner.sync_wal() } else { Ok(()) }
        } else if durable {
            inner.write(batch)
        } else {
            inner.write_unsynced(batch)
        }
    });
    match written {
        Ok(()) => {
            inner.log.account(
                appends.cached.as_ref(),
                appends.aligned.as_ref(),
                &overlay.freed,
            );
            for (prefix, metas) in overlay.metas {
                inner.pieces.written(&prefix, metas);
            }
            for (image, epoch) in overlay.fences {
                inner.fences.stored(&image, epoch);
            }
            answers.extend(applied.into_iter().map(|a| (a, Ok(()))));
        }
        Err(e) => {
            // Data already appended is garbage: nothing points at it, and it is not counted.
            for prefix in overlay.metas.keys() {
                inner.pieces.forget(prefix);
            }
            for image in overlay.fences.keys() {
                inner.fences.forget(image);
            }
            answers.extend(applied.into_iter().map(|a| (a, Err(copy_error(&e)))));
        }
    }
    inner.log.recycle(appends.cached, appends.aligned);
    drop(guard);
    answers
}

/// Opens the log appends a group's data needs, sized for all of it.
fn open_appends(
    inner: &Inner,
    guard: &crate::engine::IndexGuard<'_>,
    group: &[QueuedWrite],
) -> Result<GroupAppends> {
    let mut cached_bytes = None;
    let mut aligned_size: Option<(u64, u64)> = None;
    for w in group {
        let Some(d) = &w.piece.data else { continue };
        if goes_around(w) {
            let (c, b) = AlignedAppend::size_of(d.len() as u64);
            let (tc, tb) = aligned_size.unwrap_or((0, 0));
            aligned_size = Some((tc + c, tb + b));
        } else {
            *cached_bytes.get_or_insert(0) += extent_log::encoded_len(d.len() as u64);
        }
    }
    Ok(GroupAppends {
        cached: cached_bytes
            .map(|n| inner.log_append(guard, n))
            .transpose()?,
        aligned: aligned_size
            .map(|size| inner.log_append_aligned(guard, size))
            .transpose()?,
    })
}

/// Adds one write to the group's batch: fence check, free the pieces it hides (unless a snapshot
/// in `opts.keep` still sees them), store it (its data appended to the group's log append).
/// Everything fallible happens before the batch or the append is touched, so a refused write
/// leaves both as they were.
fn stage_write(
    inner: &Inner,
    batch: &mut WriteBatch,
    overlay: &mut GroupOverlay,
    appends: &mut GroupAppends,
    w: &QueuedWrite,
) -> Result<()> {
    let (key, piece, opts) = (&w.key, &w.piece, &w.opts);
    let around = goes_around(w);
    let raise = fence_decision(
        inner,
        &key.image,
        piece.tag.epoch,
        overlay.fences.get(&key.image).copied(),
    )?;
    let prefix = keys::extent_prefix(key.partition, &key.image, key.object_no);
    // A clone shares the list's blocks: changes below copy only the blocks they touch.
    let mut pieces = match overlay.metas.get(&prefix) {
        Some(m) => m.clone(),
        None => cached_metas(inner, &prefix)?.as_ref().clone(),
    };
    let new = piece.meta();
    // Only a newer piece can hide this one, and a new write is nearly always the newest: then
    // no piece needs looking at (objects written in small random blocks hold thousands).
    let newest = pieces.newest().is_none_or(|t| t < new.tag);
    let stored = newest || !pieces.iter().any(|p| new.hidden_by(&p.meta, &opts.keep));
    let new = if !stored {
        None
    } else {
        let data = match (&piece.data, &appends.cached, &appends.aligned) {
            (None, _, _) => PieceData::None,
            (Some(_), _, Some(a)) if around => a.next_piece_data(),
            (Some(_), Some(a), _) if !around => a.next_piece_data(),
            (Some(_), _, _) => {
                return Err(Error::Failed(
                    "extent write group without a log append".into(),
                ));
            }
        };
        let new = StoredPiece { meta: new, data };
        Some((new, keys::encode(&new.record())?))
    };
    if let Some(epoch) = raise {
        batch.put(keys::fence(&key.image), epoch.to_be_bytes());
        overlay.fences.insert(key.image.clone(), epoch);
    }
    let Some((new, record)) = new else {
        return Ok(());
    };
    let data_prefix = keys::extent_data_prefix(key.partition, &key.image, key.object_no);
    let (new_start, new_end) = (new.meta.offset, new.meta.end());
    let mut dropped: Vec<StoredPiece> = Vec::new();
    let mut pick = |old: &StoredPiece| {
        // A retried write has the same tag: its record key is overwritten, not added, and the
        // data of the earlier attempt is freed.
        let drop = old.meta.tag == new.meta.tag
            || (old.meta.offset >= new_start
                && old.meta.end() <= new_end
                && old.meta.hidden_by(&new.meta, &opts.keep));
        if drop {
            dropped.push(*old);
        }
        drop
    };
    if newest {
        // Only pieces starting inside the new one (or, empty, at its end) can be hidden by it,
        // and none has its tag.
        pieces.remove_starting_in(new_start, new_end.saturating_add(1), pick);
    } else {
        pieces.remove_where(&mut pick);
    }
    for old in &dropped {
        if old.meta.tag != new.meta.tag {
            batch.delete(piece_key(&prefix, old.meta.tag));
        }
        free_data(batch, &mut overlay.freed, &data_prefix, old);
    }
    pieces.insert(new);
    batch.put(piece_key(&prefix, new.meta.tag), record);
    if let Some(data) = &piece.data {
        let identity = PieceIdentity::new(&prefix, new.meta.tag);
        match (around, &mut appends.cached, &mut appends.aligned) {
            (true, _, Some(a)) => {
                let at = a.push(&identity, data);
                debug_assert_eq!(at, new.data);
            }
            (false, Some(a), _) => {
                a.push(&identity, data);
            }
            // Checked when the record was made, above.
            _ => {}
        }
    }
    overlay.metas.insert(prefix, pieces);
    Ok(())
}

/// Frees a dropped piece's bytes: chunk records of the index, or log bytes (counted once the
/// batch is written).
fn free_data(
    batch: &mut WriteBatch,
    freed: &mut Vec<(u64, u64)>,
    data_prefix: &[u8],
    old: &StoredPiece,
) {
    match old.data {
        PieceData::None => {}
        PieceData::Index => {
            for c in 0..chunk_count(old.meta.len_bytes) {
                batch.delete(chunk_key(data_prefix, old.meta.tag, c));
            }
        }
        PieceData::Log { .. } | PieceData::Aligned { .. } => {
            freed.extend(extent_log::stored_bytes(&old.data, old.meta.len_bytes));
        }
    }
}

/// The same failure for another write of the group (engine errors are not `Clone`).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Corrupt(s) => Error::Corrupt(s.clone()),
        Error::Fenced { seen } => Error::Fenced { seen: *seen },
        Error::DiskFull => Error::DiskFull,
        Error::Failed(s) => Error::Failed(s.clone()),
        Error::Invalid(s) => Error::Invalid(s.clone()),
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => Error::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use bytes::Bytes;
    use cairn_engine::{ExtentChange, StorageEngine, WriteTag};

    use super::*;
    use crate::RocksEngine;

    fn key(object_no: u64) -> ExtentKey {
        ExtentKey {
            partition: 3,
            image: "grp".into(),
            object_no,
        }
    }

    fn write(offset: u64, fill: u8, len: usize, epoch: u64, seq: u64) -> ExtentPiece {
        ExtentPiece {
            tag: WriteTag { epoch, seq },
            offset,
            len_bytes: len as u64,
            data: Some(Bytes::from(vec![fill; len])),
        }
    }

    /// Queues writes without a committer, then runs one: they form a single group, so the
    /// overlay (pieces hidden by an earlier write of the same group, a fence raised inside it)
    /// is what decides the outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_group_applies_writes_in_order_against_its_own_effects() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let inner = engine.inner.clone();
        let queue = &inner.extent_writes;
        // Hold the role so no committer starts while the writes queue up.
        assert!(!queue.committer_running.swap(true, Ordering::AcqRel));
        let opts = ExtentWriteOpts::default();
        let pieces = [
            (key(0), write(0, 1, 8192, 1, 1)),
            // Hides the second half of the first write (same group).
            (key(0), write(4096, 2, 8192, 1, 2)),
            // Hidden entirely by the second write: accepted, nothing stored.
            (key(0), write(6144, 5, 1024, 1, 0)),
            // Raises the fence to 2 ...
            (key(1), write(0, 3, 4096, 2, 1)),
            // ... so this one, queued later in the same group, is refused alone.
            (key(0), write(0, 4, 4096, 1, 3)),
        ];
        let mut answers = Vec::new();
        for (n, (k, p)) in pieces.into_iter().enumerate() {
            let (i, o) = (inner.clone(), opts.clone());
            answers.push(tokio::spawn(async move { add_piece(&i, &k, p, &o).await }));
            // One at a time, so the queue holds them in this order.
            for _ in 0..1000 {
                if queue.lock().len() > n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(queue.lock().len(), n + 1);
        }
        let (role, device) = (
            CommitterRole::claimed(inner.extent_writes.clone()),
            Arc::downgrade(&inner),
        );
        tokio::task::spawn_blocking(move || run_committer(role, &device))
            .await
            .unwrap();
        let mut results = Vec::new();
        for a in answers {
            results.push(a.await.unwrap());
        }
        for r in &results[..4] {
            assert!(r.is_ok(), "{r:?}");
        }
        assert!(
            matches!(results[4], Err(Error::Fenced { seen: 2 })),
            "{:?}",
            results[4]
        );
        assert!(!queue.committer_running.load(Ordering::Acquire));

        let got = engine.read_extent(&key(0), 0, 12288).await.unwrap();
        let mut want = vec![1u8; 4096];
        want.extend(vec![2u8; 8192]);
        assert_eq!(got.to_bytes(), want);
        let metas = engine.extent_piece_metas(&key(0)).await.unwrap();
        let tags: Vec<u64> = metas.iter().map(|m| m.tag.seq).collect();
        assert_eq!(tags, vec![1, 2], "the hidden write stored nothing");
        // The same after reopening: the cache and the database agree.
        drop((inner, engine));
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        assert_eq!(
            engine
                .read_extent(&key(0), 0, 12288)
                .await
                .unwrap()
                .to_bytes(),
            want
        );
        assert!(matches!(
            engine
                .change_extent(
                    &key(0),
                    ExtentChange::Write {
                        offset: 0,
                        data: Bytes::from_static(b"x")
                    },
                    WriteTag { epoch: 1, seq: 9 },
                    &opts
                )
                .await,
            Err(Error::Fenced { seen: 2 })
        ));
    }

    /// A committer job the runtime never ran (it was shutting down) must neither leave the
    /// flag set, which would make every later write queue forever, nor leave writes waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committer_that_never_ran_fails_its_writes_and_frees_the_role() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open_plain_for_test(dir.path()).await;
        let inner = engine.inner.clone();
        let queue = inner.extent_writes.clone();
        assert!(!queue.committer_running.swap(true, Ordering::AcqRel));
        let role = CommitterRole::claimed(queue.clone());
        let (i, o) = (inner.clone(), ExtentWriteOpts::default());
        let stranded =
            tokio::spawn(async move { add_piece(&i, &key(0), write(0, 1, 4096, 1, 1), &o).await });
        for _ in 0..1000 {
            if !queue.lock().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(role);
        let failed = stranded.await.unwrap();
        assert!(matches!(failed, Err(Error::Failed(_))), "{failed:?}");
        assert!(!queue.committer_running.load(Ordering::Acquire));
        // The next write starts a committer of its own and lands.
        engine
            .write_extent(
                &key(0),
                0,
                Bytes::from(vec![2u8; 4096]),
                WriteTag { epoch: 1, seq: 2 },
            )
            .await
            .unwrap();
        let got = engine.read_extent(&key(0), 0, 4096).await.unwrap();
        assert_eq!(got.to_bytes(), vec![2u8; 4096]);
    }
}
