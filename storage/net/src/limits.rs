//! Every bound cairn-net enforces, in one place. Units are last in names.
//!
//! Memory per streamed body is bounded by `BODY_CHANNEL_CHUNKS * BODY_CHUNK_BYTES_MAX` (8 MiB)
//! queued in the channel plus one chunk in flight on each side, whatever the body's total size.

/// Largest typed message header (postcard bytes) carried in one request or response head.
pub const HEADER_BYTES_MAX: usize = 1024 * 1024;

/// Largest single body chunk on the wire; larger `Bytes` are split by the sender.
pub const BODY_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Largest frame payload a reader accepts: a head (header plus its small fixed fields) or a chunk.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = HEADER_BYTES_MAX + 64;

/// Chunks queued between the socket and a body's consumer. The channel is bounded, so a slow
/// consumer stops the reader, which stops flow-control credit, which stops the sender.
pub const BODY_CHANNEL_CHUNKS: usize = 8;

/// Total size of one body. Matches the largest single object PUT the gateway accepts (5 GiB).
pub const BODY_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;

/// A streamed body that produces no chunk for this long is abandoned; the per-call timeout only
/// covers the call up to the response head, so a stalled stream needs its own bound.
pub const BODY_CHUNK_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Per-call timeout used when a request does not set one.
pub const CALL_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Largest per-call timeout honoured; larger values are clamped.
pub const CALL_TIMEOUT_MS_MAX: u64 = 600_000;

/// Calls in flight from one client to one peer; further calls wait (within their timeout).
pub const CLIENT_INFLIGHT_PER_PEER_MAX_DEFAULT: usize = 64;

/// Requests one server handles at once; further requests are refused with `TooBusy`.
pub const SERVER_CONCURRENT_REQUESTS_MAX_DEFAULT: usize = 256;

/// Idle TCP+TLS connections kept per peer.
pub const TCP_IDLE_CONNECTIONS_PER_PEER_MAX: usize = 64;

/// TCP connections one server accepts at once.
pub const TCP_SERVER_CONNECTIONS_MAX: usize = 1024;

/// A TLS or QUIC handshake (or TCP connect) that takes longer than this fails.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// A QUIC stream must deliver its request head within this (streams only become visible to the
/// server once data arrives, so this only bounds a client that stalls mid-head).
pub const REQUEST_HEAD_TIMEOUT_MS: u64 = 10_000;

/// An idle server-side TCP connection waiting for its next request is closed after this.
pub const TCP_IDLE_TIMEOUT_MS: u64 = 120_000;

/// QUIC connection idle timeout; keep-alives at a third of it keep pooled connections open.
pub const QUIC_IDLE_TIMEOUT_MS: u64 = 30_000;

/// QUIC keep-alive interval.
pub const QUIC_KEEP_ALIVE_MS: u64 = 10_000;

/// QUIC per-stream receive window: one 1 GiB body at loopback speed needs a few MiB in flight.
pub const QUIC_STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// QUIC per-connection receive window (all streams of one peer together).
pub const QUIC_CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;

/// UDP socket send and receive buffer asked of the kernel (it may grant less; see
/// `net.core.rmem_max` / `wmem_max`). The granted sizes are logged and reported.
pub const UDP_SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of a node name taken from a certificate.
pub const NODE_NAME_BYTES_MAX: usize = 255;
