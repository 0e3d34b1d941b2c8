//! Server configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// NBD server settings. `Default` is a plain-text server suitable for tests and loopback use.
#[derive(Debug, Clone)]
pub struct NbdConfig {
    /// Offer NBD_OPT_STARTTLS with these credentials.
    pub tls: Option<TlsConfig>,
    /// Refuse everything but STARTTLS and ABORT until TLS is up (the spec's FORCEDTLS mode).
    pub tls_required: bool,
    /// Connections beyond this are closed right after accept.
    pub max_connections: usize,
    /// Time allowed from accept to the end of option haggling, TLS included.
    pub handshake_timeout: Duration,
    /// Close a connection that sends no request for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Requests one connection may have in flight; the reader stops reading beyond it.
    pub max_inflight_requests: usize,
    /// Payload bytes (write data plus read lengths) one connection may have in flight.
    pub max_inflight_bytes: usize,
    /// On shutdown, how long in-flight requests get to finish before connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for NbdConfig {
    fn default() -> Self {
        Self {
            tls: None,
            tls_required: false,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
            max_inflight_requests: 64,
            max_inflight_bytes: 128 << 20,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// TLS credentials as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// When set, clients must present a certificate issued by this CA.
    pub ca_pem: Option<PathBuf>,
}

impl TlsConfig {
    /// Reads qemu's `tls-creds-x509` directory layout: `server-cert.pem`, `server-key.pem` and,
    /// if present, `ca-cert.pem` (which turns on client-certificate verification, as qemu's
    /// `verify-peer=on` does).
    pub fn from_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let ca = dir.join("ca-cert.pem");
        Self {
            cert_pem: dir.join("server-cert.pem"),
            key_pem: dir.join("server-key.pem"),
            ca_pem: ca.exists().then_some(ca),
        }
    }
}
