//! Every bound the ring enforces, in one place. Units are last in names.

/// 2^22 partitions is four million: enough for tens of thousands of devices at ~100
/// partitions each, and the assignment table stays under 50 MiB at 3 replicas.
pub const PART_POWER_MAX: u8 = 22;
/// Device ids are `u16` in the assignment table; `u16::MAX` marks "unassigned".
pub const DEVICES_MAX: usize = (u16::MAX - 1) as usize;
/// Replica rows. An erasure-coded ring has k+m rows (e.g. 8+3 = 11); 32 leaves room.
pub const REPLICAS_MAX: f64 = 32.0;
/// Overload as a fraction (1.0 = a device may take twice its weight share).
pub const OVERLOAD_MAX: f64 = 10.0;
/// Device names, IPs/hostnames and meta strings.
pub const DEVICE_NAME_LEN_MAX: usize = 64;
pub const HOST_LEN_MAX: usize = 255;
pub const META_LEN_MAX: usize = 1024;
/// A ring or builder file is at most this big once decompressed (2^22 × 32 replicas × 6 bytes
/// plus device records): a header claiming more is corrupt, not a reason to allocate.
pub const FILE_PAYLOAD_LEN_MAX: u64 = 1 << 30;
