//! NBD server: exports block devices over the Network Block Device protocol
//! (<https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>), so qemu, the Linux
//! kernel client, libnbd tools and fio can use Cairn images.
//!
//! - `proto` — the wire format as pure functions (no I/O), fuzzed by the property tests.
//! - `handshake` — fixed-newstyle negotiation: options, STARTTLS, INFO/GO, meta contexts.
//! - `transmission` — pipelined request handling: a reader, a task per request, one writer.
//! - `server` — accept loop, connection limit, timeouts, graceful shutdown.
//! - `export` — the [`Export`]/[`Exports`] traits the storage implements.
//!
//! Supported: structured replies (with holes), `base:allocation`, FUA, TRIM, WRITE_ZEROES
//! (NO_HOLE, FAST_ZERO), CACHE, DF, TLS (optionally required, optionally with client
//! certificates). Not supported: extended headers, resize, oldstyle negotiation.

mod config;
mod export;
mod handshake;
pub mod proto;
mod server;
mod tls;
mod transmission;

pub use config::{NbdConfig, TlsConfig};
pub use export::{Export, Exports, Extent, IoError, Span};
pub use server::NbdServer;

/// Errors setting up the server.
#[derive(thiserror::Error, Debug)]
pub enum NbdError {
    #[error("NBD configuration: {0}")]
    Config(String),
    #[error("NBD TLS: {0}")]
    Tls(String),
}
