//! Every bound `cairn-meta` enforces, in one place. Units are last in names.
//!
//! The store holds small control-plane records, so the bounds are tight: they keep one bad
//! caller from turning the metadata store into an object store or exhausting its memory.

/// Longest key accepted. Keys are paths such as `/cairn/nodes/<name>`; 4 KiB is generous.
pub const KEY_MAX_BYTES: usize = 4 * 1024;
/// Largest value accepted. etcd's default request limit is 1.5 MiB; staying under it means both
/// backends accept the same writes.
pub const VALUE_MAX_BYTES: usize = 1024 * 1024;
/// Most compares plus operations in one transaction branch; etcd's default `--max-txn-ops`.
pub const TXN_OPS_MAX: usize = 128;
/// Most key-values one `range` call returns; callers page with the last key.
pub const RANGE_LIMIT_MAX: usize = 10_000;

/// Events buffered per watcher before it counts as lagging (embedded) or back-pressures the
/// etcd stream (etcd).
pub const WATCH_CHANNEL_EVENTS_MAX: usize = 1024;
/// Events the embedded store keeps for watches that start in the past. Older start revisions
/// get `Error::Compacted`.
pub const WATCH_HISTORY_EVENTS_MAX: usize = 10_000;
/// Concurrent watchers on one embedded store.
pub const WATCHERS_MAX: usize = 4096;

/// Shortest lease TTL. etcd rounds TTLs up to whole seconds, so the embedded store rounds the
/// same way to keep both backends' behaviour identical.
pub const LEASE_TTL_MIN_MS: u64 = 1_000;
/// Longest lease TTL: a day. Longer "leases" are really permanent records.
pub const LEASE_TTL_MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// Live leases on one embedded store.
pub const LEASES_MAX: usize = 100_000;
/// Upper bound on how long the embedded expiry task sleeps when no lease is due sooner, so a
/// clock that jumps forward is noticed.
pub const LEASE_SWEEP_IDLE_MS: u64 = 1_000;

/// Commands queued to the embedded store's thread before callers wait.
pub const EMBEDDED_QUEUE_COMMANDS_MAX: usize = 256;

/// Default timeout on every etcd call (connect, request, first keep-alive response).
pub const ETCD_OP_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default timeout for establishing the etcd connection.
pub const ETCD_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Longest writer-lease name and holder name.
pub const LEASE_NAME_MAX_BYTES: usize = 512;
/// Times `acquire` retries after losing a compare-and-swap race to a concurrent acquirer before
/// reporting the winner as busy.
pub const ACQUIRE_RACE_RETRIES_MAX: usize = 8;
