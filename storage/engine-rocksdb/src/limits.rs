//! Bounds specific to this implementation (shared ones are in `cairn_engine::limits`).

/// Most RocksDB calls / plain-file syscalls running at once on the blocking pool.
pub const BLOCKING_OPS_MAX: usize = 16;

/// Threads of a device's blocking pool (started on demand, gone when idle): enough to keep
/// several disk reads in flight when the page cache misses.
pub const POOL_THREADS_MAX: usize = 8;

/// Submission queue entries of the io_uring, which also bounds operations in flight.
pub const URING_ENTRIES_MAX: u32 = 128;

/// Capacity of the channel feeding the io_uring thread; senders wait when it is full.
pub const URING_QUEUE_DEPTH_MAX: usize = 256;

/// Full chunks buffered by a streaming writer before they are written out in one call.
pub const WRITE_BATCH_CHUNKS_MAX: usize = 16;

/// A sealed segment is rewritten by compaction once at least this share (percent) is garbage.
pub const SEGMENT_GARBAGE_PERCENT_MIN: u64 = 25;

/// RocksDB's blob files (extent chunks) are garbage-collected once at least this share
/// (percent) of their bytes is garbage ...
pub const BLOB_GARBAGE_PERCENT_MIN: u64 = 40;

/// ... and the garbage is at least this many bytes (small devices are not worth a pass).
pub const BLOB_GARBAGE_BYTES_MIN: u64 = 16 << 20;

/// Extent writes queued per device for the group committer; further writers wait for a slot.
pub const EXTENT_WRITES_QUEUED_MAX: usize = 512;

/// Most extent writes the committer applies in one RocksDB batch.
pub const EXTENT_WRITE_GROUP_MAX: usize = 64;

/// Most data bytes in one group's batch (a single larger write still forms a group alone).
pub const EXTENT_WRITE_GROUP_BYTES_MAX: u64 = 8 << 20;
