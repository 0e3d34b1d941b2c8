//! Bounds the identity store enforces. Units are last in names.
//!
//! Identity records sit in the control-plane store, which holds few and small records; these
//! bounds keep one caller from filling it or from turning argon2 into a denial of service.

/// Shortest project or user name.
pub const NAME_MIN_BYTES: usize = 1;
/// Longest project or user name. Keystone allows 255; 64 keeps keys and listings small.
pub const NAME_MAX_BYTES: usize = 64;
/// Longest project description.
pub const DESCRIPTION_MAX_BYTES: usize = 1024;
/// Shortest password accepted.
pub const PASSWORD_MIN_BYTES: usize = 8;
/// Longest password accepted: argon2 hashes the whole input, so an unbounded password is a
/// cheap way to burn CPU.
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Most records one `list_*` call returns; callers page with the last id.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Items removed per transaction when a project or user is deleted. Each item is up to three
/// keys, so a batch stays well under the store's 128 operations per transaction.
pub const SWEEP_BATCH_ITEMS: usize = 32;
/// Times a read-compare-write is retried after losing a race before giving up with
/// `Conflict`.
pub const CAS_RETRIES_MAX: usize = 16;

/// Most S3 keys one user may hold. Checked before creating one, so concurrent creations can
/// overshoot by a few; the bound is against runaway scripts, not an exact quota.
pub const S3_KEYS_PER_USER_MAX: usize = 64;

/// Shortest Swift token lifetime: the store's lease granularity.
pub const TOKEN_TTL_MIN_MS: u64 = 1_000;
/// Longest Swift token lifetime: a day (the store's longest lease).
pub const TOKEN_TTL_MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// Production argon2id memory cost, in KiB: 19 MiB, OWASP's recommendation with t=2, p=1.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Production argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Production argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
