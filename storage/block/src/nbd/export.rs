//! What the NBD server asks of the storage behind it: the export traits and their data types.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::proto;

/// A piece of a read result. A read answers with spans in order that together cover exactly
/// the requested range; holes cost nothing on the wire with structured replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    Data(Bytes),
    /// `len` bytes that read as zeros.
    Hole(u64),
}

impl Span {
    pub fn len(&self) -> u64 {
        match self {
            Self::Data(b) => b.len() as u64,
            Self::Hole(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `base:allocation` extent: `hole` is NBD_STATE_HOLE (not allocated), `zero` is
/// NBD_STATE_ZERO (reads as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    pub hole: bool,
    pub zero: bool,
}

/// Why an export operation failed; each maps to one NBD errno.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// NBD_EIO.
    #[error("I/O error: {0}")]
    Io(String),
    /// NBD_ENOSPC.
    #[error("no space left")]
    NoSpace,
    /// NBD_EPERM.
    #[error("export is read-only")]
    ReadOnly,
    /// NBD_EINVAL.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// NBD_ENOTSUP, e.g. a FAST_ZERO request that cannot be fast.
    #[error("operation not supported")]
    NotSupported,
    /// This writer lost its lease to a newer one. Sent as NBD_EPERM, not EIO: EIO invites
    /// clients to retry, and a fenced writer must never succeed again on this connection;
    /// ESHUTDOWN is kept for the server's own graceful shutdown.
    #[error("writer fenced: {0}")]
    Fenced(String),
}

impl IoError {
    pub fn errno(&self) -> u32 {
        match self {
            Self::Io(_) => proto::EIO,
            Self::NoSpace => proto::ENOSPC,
            Self::ReadOnly | Self::Fenced(_) => proto::EPERM,
            Self::Invalid(_) => proto::EINVAL,
            Self::NotSupported => proto::ENOTSUP,
        }
    }
}

/// One exported block device. The server checks bounds, alignment, flags and read-only before
/// calling in, so implementations see only requests inside `0..size()` with nonzero lengths
/// (FLUSH excepted). Calls on one connection run concurrently.
pub trait Export: Send + Sync + 'static {
    fn size(&self) -> u64;

    fn read_only(&self) -> bool;

    /// (minimum, preferred, maximum) block sizes for NBD_INFO_BLOCK_SIZE, e.g.
    /// (1, 4096, 32 MiB). The server enforces the minimum as alignment and caps the maximum at
    /// 32 MiB for READ/WRITE/CACHE.
    fn block_sizes(&self) -> (u32, u32, u32);

    /// Whether a FLUSH on one connection makes durable every write completed on every
    /// connection; only then is NBD_FLAG_CAN_MULTI_CONN advertised.
    fn multi_conn(&self) -> bool;

    /// Whether `write_zeroes` is always cheap (metadata only), so NBD_CMD_FLAG_FAST_ZERO can be
    /// honoured. When false, FAST_ZERO requests fail with ENOTSUP without calling in.
    fn fast_zero(&self) -> bool {
        true
    }

    fn read(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Vec<Span>, IoError>> + Send;

    fn write(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send;

    fn trim(
        &self,
        offset: u64,
        len: u32,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send;

    /// `may_punch` is `!NBD_CMD_FLAG_NO_HOLE`: whether the range may become a hole rather than
    /// allocated zeros.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        may_punch: bool,
        fua: bool,
    ) -> impl Future<Output = Result<(), IoError>> + Send;

    fn flush(&self) -> impl Future<Output = Result<(), IoError>> + Send;

    fn cache(&self, offset: u64, len: u32) -> impl Future<Output = Result<(), IoError>> + Send;

    /// `base:allocation` extents from `offset`, in order. They may cover less than `len` (the
    /// client asks again for the rest) but must cover at least one byte; anything past `len`
    /// is clipped.
    fn block_status(
        &self,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Vec<Extent>, IoError>> + Send;
}

/// The set of exports a server offers.
pub trait Exports: Send + Sync + 'static {
    type Export: Export;

    /// Opens (or shares) the export called `name`. `Err(reason)` is sent to the client as
    /// NBD_REP_ERR_UNKNOWN with that message.
    fn open(&self, name: &str) -> impl Future<Output = Result<Arc<Self::Export>, String>> + Send;

    /// (name, description) pairs for NBD_OPT_LIST.
    fn list(&self) -> impl Future<Output = Vec<(String, String)>> + Send;

    /// The export a client gets when it asks for "".
    fn default_name(&self) -> Option<String> {
        None
    }
}
