//! Every bound the engine enforces, in one place. Units are the last word of each name.

/// Blobs up to this size are packed into append-only segment files; larger ones get their own file.
pub const SMALL_BLOB_MAX_BYTES: u64 = 256 * 1024;

/// Data is checksummed (CRC32C) in chunks of at most this many bytes; the unit of verification.
pub const CHUNK_MAX_BYTES: usize = 64 * 1024;

/// Largest blob accepted (matches S3's 5 GiB single-PUT limit).
pub const BLOB_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// A segment file is sealed and a new one started once it would grow past this.
pub const SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest blob name, listing path or listing entry name (Swift allows 1024 for object names
/// plus account and container).
pub const NAME_MAX_BYTES: usize = 2048;

/// Largest extent object (an RBD-like image object: 2^order, default 4 MiB, we allow up to 32).
pub const EXTENT_OBJECT_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// Largest single extent write or read.
pub const EXTENT_IO_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Most entries (objects plus common prefixes) one listing page returns.
pub const LIST_LIMIT_MAX: usize = 10_000;

/// Most entries scanned (including deleted and rolled-up ones) while building one listing page,
/// so a page over a mostly-deleted range is still bounded work; the page is returned truncated.
pub const LIST_SCAN_MAX: usize = 200_000;

/// Most blobs one audit call verifies.
pub const AUDIT_BATCH_MAX: usize = 1_000;

/// Buckets in a partition digest (by name hash). Replicas compare digests bucket by bucket.
pub const DIGEST_BUCKETS: usize = 256;

/// Most entries one replication listing call (`blob_entries`, `listing_records`) returns.
pub const REPLICATION_ENTRIES_MAX: usize = 100_000;

/// Most user metadata bytes (keys plus values) on one blob.
pub const USER_META_MAX_BYTES: usize = 8 * 1024;
