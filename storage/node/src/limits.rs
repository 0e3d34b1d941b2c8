//! Every bound of the node in one place, units last in names.

/// How long a device that failed a call is routed around.
pub const DEVICE_DOWN_FOR_MS: u64 = 10_000;
/// Handoff devices considered per partition (each failed target consumes one).
pub const HANDOFFS_TRIED_MAX: usize = 6;
/// Timeout of one small node-to-node call (metadata, digests, listing updates).
pub const SMALL_CALL_TIMEOUT_MS: u64 = 5_000;
/// Timeout to the response head of a blob transfer; the body then has a per-chunk idle limit.
pub const BLOB_CALL_TIMEOUT_MS: u64 = 30_000;
/// How long a GET of a large object waits, once its read quorum has answered, for the HEAD of
/// the first write target (the copy writes keep cached; the others were written around the page
/// cache and read from disk): reading a 64 MiB copy from disk costs far more than this wait.
pub const CACHED_COPY_GRACE_MS: u64 = 20;
/// A listing update tried inline before it goes to the durable pending queue.
pub const LISTING_UPDATE_TIMEOUT_MS: u64 = 2_000;
/// Pending listing updates retried per device per pass.
pub const LISTING_PENDING_BATCH_MAX: usize = 256;
/// Replication passes running at once per device.
pub const REPLICATION_JOBS_PER_DEVICE_MAX: usize = 4;
/// Pushes in flight per replication pass.
pub const REPLICATION_PUSHES_INFLIGHT_MAX: usize = 8;
/// Blobs the auditor verifies per batch.
pub const AUDIT_BATCH_BLOBS_MAX: usize = 64;
/// Largest listing page the node returns.
pub const LIST_PAGE_ITEMS_MAX: usize = 10_000;
/// Listing pages a container DELETE reads, at most, to see past deleted entries whose counts
/// lag on some replica; beyond that it answers "not empty" (the counts catch up in seconds).
pub const EMPTINESS_PAGES_MAX: usize = 4;
/// Connections the metrics endpoint serves at once.
pub const METRICS_CONNECTIONS_MAX: usize = 16;
/// Extent objects whose piece metadata one call may ask for.
pub const EXTENT_METAS_KEYS_MAX: usize = 1024;
/// Timeout of one extent call (a change or read of at most 4 MiB, a sync, a fence).
pub const EXTENT_CALL_TIMEOUT_MS: u64 = 30_000;
/// Timeout of the calls of a digest read (bytes from one replica, tags from the others); on
/// expiry the read falls back to asking every replica with the full timeout.
pub const EXTENT_DIGEST_CALL_TIMEOUT_MS: u64 = 5_000;
/// How long a container's storage policy is taken from the cache without reading its record.
pub const CONTAINER_POLICY_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Containers whose policy the client remembers; the cache is cleared when full.
pub const CONTAINER_POLICY_CACHE_MAX: usize = 10_000;
/// Segments an erasure-coded write or read keeps in flight per object (each ~segment size
/// in memory, on top of the channels' own bounds).
pub const EC_SEGMENTS_INFLIGHT_MAX: usize = 2;
/// Reconstructor: objects rebuilt at once per device.
pub const EC_REBUILDS_INFLIGHT_MAX: usize = 2;
/// A staged fragment archive that no device made current within this long is dropped (its
/// write failed or its writer died between staging and promotion).
pub const EC_STAGED_MAX_AGE_S: u64 = 3600;
/// An EC read still asks a primary it believes down, with this short timeout (it may be back).
pub const EC_DOWN_PROBE_TIMEOUT_MS: u64 = 500;
