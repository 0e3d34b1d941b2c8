//! Every bound of the block layer, units last in names.

/// Object size is 2^order bytes: 4 KiB to 32 MiB (the engine's extent-object limit).
pub const ORDER_MIN: u8 = 12;
pub const ORDER_MAX: u8 = 25;
/// RBD's default: 4 MiB objects.
pub const ORDER_DEFAULT: u8 = 22;
/// Largest image: 64 TiB.
pub const IMAGE_SIZE_MAX_BYTES: u64 = 64 << 40;
/// Longest image or snapshot name.
pub const NAME_MAX_BYTES: usize = 128;
/// Snapshots one image may have (each is a tag every write carries in its keep list).
pub const SNAPSHOTS_MAX: usize = 128;
/// Objects whose metadata one enumeration step asks for.
pub const OBJECTS_PER_SCAN_STEP: usize = 512;
/// Object operations a management task (delete, rollback, flatten) runs at once.
pub const MAINTENANCE_PARALLELISM: usize = 16;
/// Writer lease TTL; the holder renews it every third of that.
pub const WRITER_LEASE_TTL_SECS: u64 = 15;
/// Images listed at most.
pub const IMAGES_LISTED_MAX: usize = 10_000;
