//! Options shared by both socket transports, and the handle of a running server.

use std::net::SocketAddr;
use std::time::Duration;

use crate::limits;
use crate::wire::AbortOnDrop;

/// Client-side options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Calls in flight to one peer; further calls wait for a slot within their timeout.
    pub inflight_per_peer_max: usize,
    /// Local address the client socket binds (QUIC); port 0 picks one.
    pub bind_addr: SocketAddr,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            inflight_per_peer_max: limits::CLIENT_INFLIGHT_PER_PEER_MAX_DEFAULT,
            bind_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// Server-side options.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Requests handled at once; further requests are refused with `NetError::TooBusy`.
    pub concurrent_requests_max: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            concurrent_requests_max: limits::SERVER_CONCURRENT_REQUESTS_MAX_DEFAULT,
        }
    }
}

/// A running server. Dropping it (or `shutdown`) stops accepting and closes its connections.
#[derive(Debug)]
pub struct ServerHandle {
    pub(crate) local_addr: SocketAddr,
    pub(crate) task: AbortOnDrop<()>,
    pub(crate) on_shutdown: Option<quinn::Endpoint>,
    /// Socket buffer sizes the kernel granted (QUIC only): (receive, send) bytes.
    pub(crate) udp_buffers_bytes: Option<(usize, usize)>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// UDP receive and send buffer sizes granted by the kernel (QUIC servers only).
    pub fn udp_buffers_bytes(&self) -> Option<(usize, usize)> {
        self.udp_buffers_bytes
    }

    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(ep) = self.on_shutdown.take() {
            ep.close(0u32.into(), b"server shutdown");
        }
        drop(std::mem::replace(&mut self.task, AbortOnDrop::empty()));
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Runs one call under its timeout, naming the peer in whatever error comes out; both socket
/// transports' `Transport::call` are this around their own `call_inner`.
pub(crate) async fn timed_call(
    peer: SocketAddr,
    timeout_ms: u64,
    call: impl std::future::Future<Output = Result<crate::Response, crate::NetError>>,
) -> Result<crate::Response, crate::NetError> {
    match tokio::time::timeout(ms(timeout_ms), call).await {
        Ok(r) => r.map_err(|e| e.at_peer(peer)),
        Err(_) => Err(crate::NetError::Timeout { peer, timeout_ms }),
    }
}
