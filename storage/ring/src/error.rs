use crate::device::DeviceId;

/// Everything that can go wrong when building, rebalancing or loading a ring.
///
/// Each message says what is wrong and, where there is one, what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("part power {0} is out of range: use 1..={max}", max = crate::limits::PART_POWER_MAX)]
    PartPowerOutOfRange(u8),
    #[error(
        "replica count {0} is out of range: use a number from 1 to {max} (fractions allowed)",
        max = crate::limits::REPLICAS_MAX
    )]
    ReplicasOutOfRange(f64),
    #[error("overload {0} is out of range: use a fraction from 0 to {max}", max = crate::limits::OVERLOAD_MAX)]
    OverloadOutOfRange(f64),
    #[error("weight {0} is invalid: a weight is a finite number >= 0")]
    InvalidWeight(f64),
    #[error("device field `{field}` is invalid: {reason}")]
    InvalidDeviceField { field: &'static str, reason: String },
    #[error("device id {0} is already in use")]
    DuplicateDeviceId(DeviceId),
    #[error(
        "device {ip}:{port}/{device} already exists as d{existing}; \
         remove it first or use set-info to change it"
    )]
    DuplicateDevice {
        ip: String,
        port: u16,
        device: String,
        existing: DeviceId,
    },
    #[error("no device d{0}")]
    NoSuchDevice(DeviceId),
    #[error("the ring already has the maximum of {max} devices", max = crate::limits::DEVICES_MAX)]
    TooManyDevices,
    #[error(
        "cannot place {replicas} replicas on {devices} device(s) with weight > 0: \
         add devices or lower the replica count"
    )]
    NotEnoughDevices { replicas: f64, devices: usize },
    #[error("the ring has no device with weight > 0: add devices before rebalancing")]
    NoWeightedDevices,
    #[error("partition {part} has no replica {replica} assigned: run rebalance first")]
    Unassigned { part: u32, replica: u32 },
    #[error("partition {0} is out of range for this ring")]
    PartitionOutOfRange(u32),
    #[error("ring is invalid: {0}")]
    Invalid(String),
    #[error("not a Cairn {expected} file (it starts with {found:?}){hint}")]
    ForeignFile {
        expected: &'static str,
        found: String,
        hint: &'static str,
    },
    #[error(
        "{kind} file format version {found} is not supported (this build reads version {supported}); \
         upgrade ring-tool"
    )]
    UnsupportedFormat {
        kind: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("{kind} file is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        kind: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{kind} file is corrupt: checksum mismatch (stored {stored}, computed {computed})")]
    ChecksumMismatch {
        kind: &'static str,
        stored: String,
        computed: String,
    },
    #[error("{kind} file is corrupt: {reason}")]
    Corrupt { kind: &'static str, reason: String },
}

pub type Result<T, E = RingError> = std::result::Result<T, E>;
