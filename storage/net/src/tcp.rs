//! TCP + rustls mutual TLS. One call per connection at a time, from a per-peer pool: a stream of
//! calls needs no multiplexing layer, a large body never delays small calls behind it (no
//! head-of-line blocking between calls), and the in-flight limit bounds the pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio::io::{BufReader, BufWriter, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::NetError;
use crate::exchange::{self, PeerInfo, ServerShared};
use crate::limits;
use crate::message::{DynHandler, Handler, Request, Response, Transport};
use crate::options::{ClientOptions, ServerHandle, ServerOptions, ms};
use crate::tls::{self, TlsIdentity};
use crate::wire::AbortOnDrop;

/// Buffer in front of the TLS stream: small frames (heads, end markers) coalesce into one TLS
/// record and one syscall; large chunks bypass it.
const IO_BUFFER_BYTES: usize = 64 * 1024;

/// Pooled connections unused for longer than this are closed rather than reused, so a call
/// rarely meets a connection the server has already timed out (`TCP_IDLE_TIMEOUT_MS`).
const POOL_IDLE_REUSE_MS: u64 = limits::TCP_IDLE_TIMEOUT_MS / 2;

/// Requests served on one connection before the server closes it (bounds the serve loop).
const REQUESTS_PER_CONNECTION_MAX: u64 = 1 << 32;

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

#[derive(Debug)]
struct PooledConn {
    r: BufReader<ReadHalf<ClientTls>>,
    w: BufWriter<WriteHalf<ClientTls>>,
    idle_since: Instant,
}

#[derive(Debug)]
struct TcpPeer {
    inflight: Arc<Semaphore>,
    idle: Mutex<Vec<PooledConn>>,
}

/// Client of the TCP+TLS transport.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    inner: Arc<TcpInner>,
}

struct TcpInner {
    connector: TlsConnector,
    peers: Mutex<HashMap<SocketAddr, Arc<TcpPeer>>>,
    opts: ClientOptions,
}

impl std::fmt::Debug for TcpInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpInner")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    pub fn new(identity: &TlsIdentity, opts: ClientOptions) -> Result<Self, NetError> {
        let cfg = identity.client_config()?;
        Ok(TcpTransport {
            inner: Arc::new(TcpInner {
                connector: TlsConnector::from(Arc::new(cfg)),
                peers: Mutex::new(HashMap::new()),
                opts,
            }),
        })
    }

    fn peer(&self, addr: SocketAddr) -> Result<Arc<TcpPeer>, NetError> {
        let mut peers = self
            .inner
            .peers
            .lock()
            .map_err(|_| NetError::Config("peer table poisoned".into()))?;
        Ok(peers
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(TcpPeer {
                    inflight: Arc::new(Semaphore::new(self.inner.opts.inflight_per_peer_max)),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone())
    }

    async fn connect(&self, peer: SocketAddr) -> Result<PooledConn, NetError> {
        let tcp = tokio::time::timeout(ms(limits::HANDSHAKE_TIMEOUT_MS), TcpStream::connect(peer))
            .await
            .map_err(|_| NetError::Unreachable {
                peer,
                reason: "connect timed out".into(),
            })?
            .map_err(|e| NetError::Unreachable {
                peer,
                reason: e.to_string(),
            })?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(peer.ip().into());
        let tls = tokio::time::timeout(
            ms(limits::HANDSHAKE_TIMEOUT_MS),
            self.inner.connector.connect(name, tcp),
        )
        .await
        .map_err(|_| NetError::TlsRefused {
            peer,
            reason: "TLS handshake timed out".into(),
        })?
        .map_err(|e| NetError::TlsRefused {
            peer,
            reason: e.to_string(),
        })?;
        let (r, w) = tokio::io::split(tls);
        Ok(PooledConn {
            r: BufReader::with_capacity(IO_BUFFER_BYTES, r),
            w: BufWriter::with_capacity(IO_BUFFER_BYTES, w),
            idle_since: Instant::now(),
        })
    }

    async fn call_inner(&self, peer: SocketAddr, req: Request) -> Result<Response, NetError> {
        let state = self.peer(peer)?;
        let permit = state
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NetError::Config("in-flight semaphore closed".into()))?;
        let pooled = take_idle(&state);
        let conn = match pooled {
            Some(c) => c,
            None => self.connect(peer).await?,
        };
        let (resp, reader_tail, writer_tail) =
            exchange::client_exchange(conn.r, conn.w, peer, req, true).await?;
        // The connection returns to the pool once both bodies are done; the in-flight slot is
        // held until then so the limit also bounds streams.
        tokio::spawn(async move {
            let r = reader_tail.into_reader().await;
            let w = writer_tail.into_writer().await;
            if let (Some(r), Some(w)) = (r, w)
                && let Ok(mut idle) = state.idle.lock()
                && idle.len() < limits::TCP_IDLE_CONNECTIONS_PER_PEER_MAX
            {
                idle.push(PooledConn {
                    r,
                    w,
                    idle_since: Instant::now(),
                });
            }
            drop(permit);
        });
        Ok(resp)
    }
}

fn take_idle(state: &TcpPeer) -> Option<PooledConn> {
    let mut idle = state.idle.lock().ok()?;
    // Bounded by the pool size.
    while let Some(mut c) = idle.pop() {
        if c.idle_since.elapsed() < ms(POOL_IDLE_REUSE_MS) && looks_alive(&mut c) {
            return Some(c);
        }
    }
    None
}

/// An idle connection has nothing to read; if a read completes at once, the peer closed it
/// (restart, idle timeout) or broke protocol. Checking costs one non-blocking poll and, unlike
/// retrying a failed call, can never deliver a request twice.
fn looks_alive(c: &mut PooledConn) -> bool {
    use futures::FutureExt;
    use tokio::io::AsyncBufReadExt;
    c.r.fill_buf().now_or_never().is_none()
}

impl Transport for TcpTransport {
    fn call(&self, peer: SocketAddr, req: Request) -> BoxFuture<'_, Result<Response, NetError>> {
        let timeout_ms = req.timeout_ms();
        Box::pin(crate::options::timed_call(
            peer,
            timeout_ms,
            self.call_inner(peer, req),
        ))
    }
}

/// Start a TCP+TLS server on `bind` (use port 0 in tests).
pub async fn serve_tcp<H: Handler>(
    identity: &TlsIdentity,
    bind: SocketAddr,
    handler: H,
    opts: ServerOptions,
) -> Result<ServerHandle, NetError> {
    let acceptor = TlsAcceptor::from(Arc::new(identity.server_config()?));
    let listener = TcpListener::bind(bind).await?;
    let local_addr = listener.local_addr()?;
    let handler: Arc<dyn DynHandler> = Arc::new(handler);
    let shared = Arc::new(ServerShared {
        handler,
        permits: Arc::new(Semaphore::new(opts.concurrent_requests_max)),
    });
    let task = tokio::spawn(accept_loop(listener, acceptor, shared));
    tracing::info!(%local_addr, "TCP+TLS RPC server listening");
    Ok(ServerHandle {
        local_addr,
        task: AbortOnDrop::new(task),
        on_shutdown: None,
        udp_buffers_bytes: None,
    })
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<ServerShared>) {
    // Connection tasks live in the set, so aborting this task (server shutdown) ends them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    if conns.len() >= limits::TCP_SERVER_CONNECTIONS_MAX {
                        tracing::warn!(%addr, "refusing connection: TCP_SERVER_CONNECTIONS_MAX");
                        continue;
                    }
                    conns.spawn(serve_conn(tcp, addr, acceptor.clone(), shared.clone()));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_conn(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<ServerShared>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%addr, error = %e, "set_nodelay failed");
    }
    let tls =
        match tokio::time::timeout(ms(limits::HANDSHAKE_TIMEOUT_MS), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::warn!(%addr, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::warn!(%addr, "TLS handshake timed out");
                return;
            }
        };
    let Some(name) = tls::peer_node_name(tls.get_ref().1.peer_certificates()) else {
        tracing::warn!(%addr, "peer certificate carries no node name; closing");
        return;
    };
    let peer = PeerInfo {
        addr,
        name: Arc::from(name),
    };
    let (r, w) = tokio::io::split(tls);
    let mut r = BufReader::with_capacity(IO_BUFFER_BYTES, r);
    let mut w = BufWriter::with_capacity(IO_BUFFER_BYTES, w);
    for _ in 0..REQUESTS_PER_CONNECTION_MAX {
        match exchange::server_exchange(r, w, &shared, &peer, true, ms(limits::TCP_IDLE_TIMEOUT_MS))
            .await
        {
            Ok(Some((nr, nw))) => {
                r = nr;
                w = nw;
            }
            Ok(None) => return,
            Err(e) => {
                // A client process that exits drops its pooled connections without a TLS
                // close_notify; between calls that is an ordinary close, not a fault.
                let text = e.to_string();
                if text.contains("close_notify") || text.contains("unexpected-eof") {
                    tracing::debug!(%addr, peer = %peer.name, error = %e, "peer dropped connection");
                } else {
                    tracing::warn!(%addr, peer = %peer.name, error = %e, "closing connection");
                }
                return;
            }
        }
    }
}
