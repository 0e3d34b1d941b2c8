//! The one error type every engine returns.

use crate::Timestamp;

/// What went wrong with an engine call. Operating conditions (disk full, corruption, fencing)
/// are distinct variants so callers can react (go to another replica, fail the device, ...).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Stored bytes failed their checksum (or a record could not be decoded). Never returned as
    /// data: the caller reads another replica and reports this copy for quarantine.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An extent write or trim carries an epoch older than one this device has seen for the image.
    #[error("fenced: the image has seen epoch {seen}")]
    Fenced { seen: u64 },
    /// No space left on the device; nothing of the failed write became visible.
    #[error("disk full")]
    DiskFull,
    /// The device is out of service (a failed fsync or a failed index write). Every call fails
    /// from then on: after a failed fsync the page cache state is unknown, so retrying could
    /// acknowledge data that is not on disk.
    #[error("device failed: {0}")]
    Failed(String),
    /// The caller asked for something malformed (bad range, name too long, size mismatch ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A byte range starts at or past the end of the blob.
    #[error("range not satisfiable: blob is {size_bytes} bytes")]
    RangeNotSatisfiable { size_bytes: u64 },
    /// A write of a timestamp older than what is stored was attempted where that is an error.
    #[error("stale timestamp {attempted}, stored {stored}")]
    Stale {
        attempted: Timestamp,
        stored: Timestamp,
    },
    /// An I/O error that does not take the device out of service (e.g. a failed read).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Engine results.
pub type Result<T> = std::result::Result<T, Error>;
