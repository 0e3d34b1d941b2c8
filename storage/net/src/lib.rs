//! cairn-net: node-to-node RPC for Cairn.
//!
//! **Owns:** every socket and every TLS session between nodes, and the RPC wire format
//! (`src/wire.rs`: `kind | len | payload` frames; one call per QUIC stream, or one call at a
//! time per pooled TCP connection). Also the cluster CA and node certificates,
//! and an in-process [`TestNetwork`] with fault filters for other crates' tests.
//!
//! **Must never depend on:** any other Cairn crate (ring, engine, node, ...) or on the meaning of
//! messages. Callers define their own serde message enums; this crate only moves
//! postcard-encoded headers and byte bodies. Nothing above this crate opens a socket to a peer.
//!
//! # Shape
//! - [`Transport`]: `call(peer, Request) -> Response`, object safe; implemented by
//!   [`QuicTransport`], [`TcpTransport`] and [`TestTransport`]. [`RpcClient`] adds typed calls.
//!   [`LocalFirstTransport`] wraps one of them and calls handlers of the same process
//!   ([`LocalServers`]) directly, without sockets or TLS (`cairn up` runs every node and the
//!   gateway in one process).
//! - [`Handler`]: the server side, `handle(CallContext, header, Body) -> Response`; the context
//!   carries the request id and the peer's verified node name, and the server enters a
//!   `rpc{request_id, peer}` tracing span around the handler.
//! - [`Body`]: empty, one `Bytes`, or a stream through a bounded channel (memory per body about
//!   `BODY_CHANNEL_CHUNKS * BODY_CHUNK_BYTES_MAX` = 8 MiB, whatever the object size).
//! - Limits: per-call timeout (to the response head; streams have a per-chunk idle timeout),
//!   client in-flight calls per peer (excess waits), server concurrent requests (excess is
//!   refused with [`NetError::TooBusy`]). All bounds are in [`limits`].
//! - Security: mutual TLS 1.3 from the cluster CA ([`ClusterCa`]). A peer without a certificate
//!   from this CA is refused during the handshake; a client verifies the server against the IP
//!   it dialled, which the node certificate lists next to the node name.
//!
//! # Default transport
//! [`TransportKind::default()`] is **TCP + TLS**, chosen by measurement (`bench/net/RESULTS.md`):
//! on loopback it streamed bodies 2.2-4.9x faster than QUIC at a quarter to a third of the CPU
//! per GiB, with 2.5-5x lower small-RPC latency. [`TransportKind`] has the numbers and the reasons.

mod body;
mod der;
mod error;
mod exchange;
pub mod limits;
mod local;
mod message;
mod options;
mod quic;
mod tcp;
mod testnet;
mod tls;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

pub use body::{Body, BodySender, BodyStream};
pub use error::NetError;
pub use local::{LocalFirstTransport, LocalRegistration, LocalServers};
pub use message::{
    CallContext, CallOptions, Handler, HandlerError, Request, RequestId, Response, RpcClient,
    Transport, decode_request,
};
pub use options::{ClientOptions, ServerHandle, ServerOptions};
pub use quic::{QuicTransport, close_quic, serve_quic};
pub use tcp::{TcpTransport, serve_tcp};
pub use testnet::{Delay, DropRequestFilter, TestNetwork, TestTransport};
pub use tls::{ClusterCa, NodeCert, TlsIdentity};

/// Which socket transport nodes use.
///
/// **The default is TCP + TLS, by measurement** (`bench/net/RESULTS.md`: loopback, one process,
/// 2 CPUs shared with other work, release build, four runs). Against QUIC in the same run,
/// TCP+TLS streamed a 1 GiB body 2.2-4.9x faster (0.61-1.54 vs 0.13-0.56 GiB/s), spent a
/// quarter to a third of the CPU per GiB (0.84-1.31 vs 3.1-3.9 CPU-seconds, client and server
/// together), answered 64-byte RPCs with 2.5-5x lower p50 latency at concurrency 1, and
/// completed 1.9-2.6x more calls per second at concurrency 16. CPU per byte decides it for a
/// storage cluster, where replication traffic competes with disks and checksums for the same
/// cores.
///
/// Why: kernel TCP moves 64 KiB+ per syscall and does ACKs, retransmission and congestion
/// control in the kernel (with offloads on real NICs); quinn does all of that in user space per
/// ~1.4 KB datagram. GSO batches about 9 datagrams per send call, but receives stay one datagram
/// per call, and every datagram is encrypted and acknowledged separately. QUIC's strengths
/// (no head-of-line blocking between streams, connection migration, 0-RTT) buy little here:
/// the TCP transport already gives each call its own pooled connection, and nodes do not move.
/// QUIC stays available (`TransportKind::Quic`) and tested; re-measure on real NICs before
/// flipping the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportKind {
    Quic,
    #[default]
    Tcp,
}

/// A client of the given kind.
pub fn client(
    kind: TransportKind,
    identity: &TlsIdentity,
    opts: ClientOptions,
) -> Result<Arc<dyn Transport>, NetError> {
    Ok(match kind {
        TransportKind::Quic => Arc::new(QuicTransport::new(identity, opts)?),
        TransportKind::Tcp => Arc::new(TcpTransport::new(identity, opts)?),
    })
}

/// A server of the given kind on `bind`.
pub async fn serve<H: Handler>(
    kind: TransportKind,
    identity: &TlsIdentity,
    bind: SocketAddr,
    handler: H,
    opts: ServerOptions,
) -> Result<ServerHandle, NetError> {
    match kind {
        TransportKind::Quic => serve_quic(identity, bind, handler, opts).await,
        TransportKind::Tcp => serve_tcp(identity, bind, handler, opts).await,
    }
}
