//! The one error type of cairn-net.

use std::net::SocketAddr;

/// Why a call failed. `TooBusy` and `TlsRefused` mean no handler ran; `Remote` means the handler
/// ran and refused; `Timeout`, `Unreachable` (when the connection dropped mid-call) and `Protocol`
/// leave it unknown, so callers must treat the operation as possibly applied.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The call did not complete within its timeout (or a streamed body stalled).
    #[error("call to {peer} timed out after {timeout_ms} ms")]
    Timeout { peer: SocketAddr, timeout_ms: u64 },
    /// No connection could be made (refused, unreachable, connection lost before a reply).
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable { peer: SocketAddr, reason: String },
    /// The TLS handshake failed: certificate missing, from another CA, or wrong name.
    #[error("TLS/auth with {peer} refused: {reason}")]
    TlsRefused { peer: SocketAddr, reason: String },
    /// The remote handler ran and returned an error.
    #[error("remote handler error: {0}")]
    Remote(String),
    /// Malformed, truncated or oversized frame, or a message that does not decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Too many calls: the server's concurrent-request limit was hit.
    #[error("peer {peer} too busy: {reason}")]
    TooBusy { peer: SocketAddr, reason: String },
    /// The caller's own request body failed (its producer gave up): the peer closed the call
    /// because of it, which says nothing about the peer's health.
    #[error("request body aborted by the caller: {0}")]
    BodyAborted(String),
    /// Local setup problem: bad PEM, certificate generation, socket bind.
    #[error("configuration error: {0}")]
    Config(String),
    /// A local I/O error outside a call (bind, accept).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl NetError {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        NetError::Protocol(msg.into())
    }
}

impl NetError {
    /// Fill in the peer of errors raised below the transport, where it was not known.
    pub(crate) fn at_peer(self, at: SocketAddr) -> Self {
        match self {
            NetError::TlsRefused { reason, .. } => NetError::TlsRefused { peer: at, reason },
            other => other,
        }
    }
}
