//! Calls between servers and clients of one process, without sockets.
//!
//! `cairn up` runs three storage nodes, the S3/Swift gateway and the NBD server in one process.
//! Over TCP+TLS every byte a gateway hands a node would be encrypted, copied through loopback
//! and decrypted again inside that same process: for a large object, TLS and socket copies are
//! about a third of the server's CPU. A [`LocalFirstTransport`] hands a call to a handler of the
//! same process directly (the same handler code, the same request header bytes and body
//! channel) and sends everything else over its inner transport.
//!
//! What stays the same as over the wire: the per-call timeout (to the response head); a body
//! that stalls for `BODY_CHUNK_IDLE_TIMEOUT_MS` fails (either direction); the caller's in-flight
//! limit per peer (excess calls wait, within their timeout) and the handler's concurrent-request
//! limit (`TooBusy` when it is reached), both held until the response body has been read; header
//! size limits; a `rpc{request_id, peer}` span around the handler; a handler that fails or
//! panics fails only its call.
//!
//! What differs: no TLS (both ends are code of one process, so there is no peer to authenticate;
//! a process only reaches its own handlers this way); the handler runs inside the caller's call
//! future, and only if the caller drops that future before the answer does it move to a task
//! of its own to finish (within the deadline), as it would on a server; unregistering a handler
//! stops new calls, while calls in progress run to their end.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::body::Body;
use crate::error::NetError;
use crate::limits;
use crate::message::{CallContext, DynHandler, Handler, Request, Response, Transport};
use crate::options::{ClientOptions, ServerOptions};

struct LocalServer {
    name: Arc<str>,
    handler: Arc<dyn DynHandler>,
    /// Like a socket server's: excess calls are refused at once.
    permits: Arc<Semaphore>,
}

/// The handlers this process serves, by the address peers dial them at. Clone freely.
#[derive(Clone, Default)]
pub struct LocalServers {
    servers: Arc<RwLock<HashMap<SocketAddr, Arc<LocalServer>>>>,
}

impl std::fmt::Debug for LocalServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<SocketAddr> = match self.servers.read() {
            Ok(s) => s.keys().copied().collect(),
            Err(poisoned) => poisoned.into_inner().keys().copied().collect(),
        };
        f.debug_struct("LocalServers")
            .field("addrs", &addrs)
            .finish()
    }
}

/// Keeps a handler reachable in-process; dropping it takes the handler off (as stopping a
/// server closes its socket).
#[must_use = "the handler is unregistered when this is dropped"]
pub struct LocalRegistration {
    servers: LocalServers,
    addrs: Vec<SocketAddr>,
    server: Option<Arc<LocalServer>>,
}

impl std::fmt::Debug for LocalRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRegistration")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Drop for LocalRegistration {
    fn drop(&mut self) {
        let Some(mine) = &self.server else {
            return;
        };
        self.servers.with_mut(|s| {
            for a in &self.addrs {
                // Only this registration's entry: a newer one at the same address stays.
                if s.get(a).is_some_and(|e| Arc::ptr_eq(e, mine)) {
                    s.remove(a);
                }
            }
        });
    }
}

impl LocalServers {
    pub fn new() -> LocalServers {
        LocalServers::default()
    }

    fn with_mut<T>(&self, f: impl FnOnce(&mut HashMap<SocketAddr, Arc<LocalServer>>) -> T) -> T {
        let mut guard = match self.servers.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn get(&self, addr: &SocketAddr) -> Option<Arc<LocalServer>> {
        match self.servers.read() {
            Ok(s) => s.get(addr).cloned(),
            Err(poisoned) => poisoned.into_inner().get(addr).cloned(),
        }
    }

    /// Serves `handler` in-process at every address in `addrs` (the addresses peers dial for
    /// the same handler's socket server), under node name `name`.
    pub fn register<H: Handler>(
        &self,
        addrs: &[SocketAddr],
        name: &str,
        handler: H,
        opts: &ServerOptions,
    ) -> LocalRegistration {
        let server = Arc::new(LocalServer {
            name: Arc::from(name),
            handler: Arc::new(handler),
            permits: Arc::new(Semaphore::new(opts.concurrent_requests_max)),
        });
        self.with_mut(|s| {
            for a in addrs {
                s.insert(*a, server.clone());
            }
        });
        LocalRegistration {
            servers: self.clone(),
            addrs: addrs.to_vec(),
            server: Some(server),
        }
    }
}

/// Calls handlers of this process directly and everything else over `inner`.
#[derive(Debug)]
pub struct LocalFirstTransport {
    local: LocalServers,
    inner: Arc<dyn Transport>,
    /// What local handlers see as the caller (`CallContext::peer_name` / `peer_addr`).
    caller_name: Arc<str>,
    caller_addr: SocketAddr,
    /// Local calls in flight per peer, like a socket client's (excess calls wait).
    inflight: std::sync::Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    inflight_per_peer_max: usize,
}

impl LocalFirstTransport {
    pub fn new(
        local: LocalServers,
        inner: Arc<dyn Transport>,
        caller_name: &str,
        caller_addr: SocketAddr,
    ) -> LocalFirstTransport {
        LocalFirstTransport {
            local,
            inner,
            caller_name: Arc::from(caller_name),
            caller_addr,
            inflight: std::sync::Mutex::new(HashMap::new()),
            inflight_per_peer_max: ClientOptions::default().inflight_per_peer_max,
        }
    }

    fn inflight_for(&self, peer: SocketAddr) -> Arc<Semaphore> {
        let mut map = match self.inflight.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.inflight_per_peer_max.max(1))))
            .clone()
    }

    async fn call_local(
        &self,
        server: Arc<LocalServer>,
        peer: SocketAddr,
        req: Request,
    ) -> Result<Response, NetError> {
        if req.header.len() > limits::HEADER_BYTES_MAX {
            return Err(NetError::protocol(format!(
                "request header of {} bytes is over {}",
                req.header.len(),
                limits::HEADER_BYTES_MAX
            )));
        }
        let timeout_ms = req.timeout_ms();
        let timeout = Duration::from_millis(timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = tokio::time::timeout_at(deadline, self.inflight_for(peer).acquire_owned())
            .await
            .map_err(|_| NetError::Timeout { peer, timeout_ms })?
            .map_err(|_| NetError::Unreachable {
                peer,
                reason: "in-flight limit closed".into(),
            })?;
        let Ok(permit) = server.permits.clone().try_acquire_owned() else {
            return Err(NetError::TooBusy {
                peer,
                reason: "server at concurrent request limit".into(),
            });
        };
        let ctx = CallContext {
            request_id: req.id,
            peer_addr: self.caller_addr,
            peer_name: self.caller_name.clone(),
            timeout,
        };
        let span = tracing::info_span!(
            "rpc",
            request_id = %req.id,
            peer = %self.caller_name,
            to = %server.name,
            local = true,
            op = tracing::field::Empty,
            target = tracing::field::Empty
        );
        // The handler runs inside the caller's future rather than as a task of its own: a
        // spawned task cost a wake-up and a context switch per call (two to three per block
        // I/O), which under load was more CPU than the handlers. What a task gave stays: a
        // panicking handler fails only this call, and a caller that goes away before the
        // answer does not cut the handler short (a socket server finishes it too, within the
        // deadline) — `Unabandoned` moves it to a task of its own then. One that misses the
        // deadline is dropped, as a socket server drops it.
        let handler = server.handler.clone();
        let request_body = with_idle_timeout(req.body, Vec::new());
        let handled = AssertUnwindSafe(
            async move { handler.handle_dyn(ctx, req.header, request_body).await }.instrument(span),
        )
        .catch_unwind();
        // The server's permit stays with the handler, wherever it finishes.
        let mut handled = Unabandoned::new(handled, deadline, permit);
        match tokio::time::timeout_at(deadline, &mut handled).await {
            Ok(Ok(Ok(resp))) => Ok(Response {
                header: resp.header,
                // Both limits stay taken until the caller has read the response body.
                body: with_idle_timeout(
                    resp.body,
                    std::iter::once(slot).chain(handled.take_permit()).collect(),
                ),
            }),
            Ok(Ok(Err(e))) => Err(NetError::Remote(e.message)),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "RPC handler panicked");
                Err(NetError::Remote(format!(
                    "handler failed: panicked: {what}"
                )))
            }
            Err(_) => {
                handled.drop_now();
                Err(NetError::Timeout { peer, timeout_ms })
            }
        }
    }
}

/// A future polled in place that, if dropped before it finished, goes on in a task of its own
/// until `deadline` (so a handler is not cut off between, say, storing a blob and updating its
/// listing just because its caller went away), holding the server's `permit` until it ends, so
/// abandoned handlers still count against the server's limit.
struct Unabandoned<F: Future<Output: Send + 'static> + Send + 'static> {
    fut: Option<Pin<Box<F>>>,
    deadline: tokio::time::Instant,
    permit: Option<OwnedSemaphorePermit>,
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Unabandoned<F> {
    fn new(fut: F, deadline: tokio::time::Instant, permit: OwnedSemaphorePermit) -> Self {
        Unabandoned {
            fut: Some(Box::pin(fut)),
            deadline,
            permit: Some(permit),
        }
    }

    /// Drops the future here and now (it missed its deadline); the permit goes with it.
    fn drop_now(&mut self) {
        self.fut = None;
    }

    /// The permit, once the future has finished (`None` only if it was taken before).
    fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Future for Unabandoned<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<F: Future<Output: Send + 'static> + Send + 'static> Drop for Unabandoned<F> {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (deadline, permit) = (self.deadline, self.permit.take());
            rt.spawn(async move {
                let _ = tokio::time::timeout_at(deadline, fut).await;
                drop(permit);
            });
        }
    }
}

/// A streamed body passed on through a new channel that fails when either end stalls for
/// `BODY_CHUNK_IDLE_TIMEOUT_MS` (as a socket transport's body would), holding `permits` until
/// the body ended. Other bodies pass as they are (and the permits go at once).
fn with_idle_timeout(body: Body, permits: Vec<OwnedSemaphorePermit>) -> Body {
    let Body::Stream(_) = body else {
        return body;
    };
    let (mut tx, out) = Body::channel();
    tokio::spawn(async move {
        let _permits = permits;
        let mut body = body;
        let idle = Duration::from_millis(limits::BODY_CHUNK_IDLE_TIMEOUT_MS);
        let stalled = || {
            NetError::protocol(format!(
                "body stalled for {} ms",
                limits::BODY_CHUNK_IDLE_TIMEOUT_MS
            ))
        };
        loop {
            match tokio::time::timeout(idle, body.next_chunk()).await {
                // The producer stalled; dropping `body` tells it nobody reads any more. (Ending
                // the body waits for room in the channel, so a stalled consumer bounds it too.)
                Err(_) => {
                    let _ = tokio::time::timeout(idle, tx.abort(stalled())).await;
                    return;
                }
                Ok(None) => {
                    let _ = tokio::time::timeout(idle, tx.finish()).await;
                    return;
                }
                Ok(Some(Err(e))) => {
                    let _ = tokio::time::timeout(idle, tx.abort(e)).await;
                    return;
                }
                Ok(Some(Ok(chunk))) => match tokio::time::timeout(idle, tx.send(chunk)).await {
                    // The consumer stalled or went away: dropping both ends fails the body for
                    // it and stops the producer.
                    Err(_) | Ok(Err(_)) => return,
                    Ok(Ok(())) => {}
                },
            }
        }
    });
    out
}

impl Transport for LocalFirstTransport {
    fn call(&self, peer: SocketAddr, req: Request) -> BoxFuture<'_, Result<Response, NetError>> {
        match self.local.get(&peer) {
            Some(server) => Box::pin(self.call_local(server, peer, req)),
            None => self.inner.call(peer, req),
        }
    }
}
