//! QUIC (quinn) transport: one connection per peer, reused; one bidirectional stream per call.
//! The UDP socket is bound here (socket2) so its kernel buffers can be raised; quinn keeps GSO
//! (and GRO) on by default, which is most of its bulk throughput.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ConnectionError, Endpoint, EndpointConfig, IdleTimeout, TokioRuntime, TransportConfig, VarInt,
};
use rustls::pki_types::CertificateDer;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{BufReader, BufWriter};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::NetError;
use crate::exchange::{self, PeerInfo, ServerShared};
use crate::limits;
use crate::message::{DynHandler, Handler, Request, Response, Transport};
use crate::options::{ClientOptions, ServerHandle, ServerOptions, ms};
use crate::tls::{self, TlsIdentity};
use crate::wire::AbortOnDrop;

/// Small frames coalesce into one stream write; large chunks bypass the buffer.
const IO_BUFFER_BYTES: usize = 64 * 1024;

/// Streams one server connection may have open beyond the server's request limit, so that
/// excess requests reach the server and get a clear `TooBusy` instead of queueing invisibly in
/// QUIC flow control.
const STREAMS_SLACK: u32 = 16;

/// Bind a UDP socket with large kernel buffers; returns the granted (receive, send) sizes.
pub(crate) fn bind_udp(
    addr: SocketAddr,
) -> Result<(std::net::UdpSocket, (usize, usize)), NetError> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Failures here only cost throughput: log and keep what the kernel gives.
    if let Err(e) = socket.set_recv_buffer_size(limits::UDP_SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "cannot raise UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(limits::UDP_SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "cannot raise UDP send buffer");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let granted = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
    if granted.0 < limits::UDP_SOCKET_BUFFER_BYTES || granted.1 < limits::UDP_SOCKET_BUFFER_BYTES {
        tracing::info!(
            recv_bytes = granted.0,
            send_bytes = granted.1,
            asked_bytes = limits::UDP_SOCKET_BUFFER_BYTES,
            "kernel granted smaller UDP buffers (raise net.core.rmem_max/wmem_max)"
        );
    }
    Ok((socket.into(), granted))
}

fn transport_config(bidi_streams_max: u32) -> Result<TransportConfig, NetError> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams_max));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(limits::QUIC_STREAM_WINDOW_BYTES));
    t.receive_window(VarInt::from_u32(limits::QUIC_CONNECTION_WINDOW_BYTES));
    t.send_window(u64::from(limits::QUIC_CONNECTION_WINDOW_BYTES));
    t.keep_alive_interval(Some(ms(limits::QUIC_KEEP_ALIVE_MS)));
    let idle = IdleTimeout::try_from(ms(limits::QUIC_IDLE_TIMEOUT_MS))
        .map_err(|e| NetError::Config(format!("QUIC idle timeout: {e}")))?;
    t.max_idle_timeout(Some(idle));
    // Path-MTU discovery stays at quinn's default ceiling (1452 B). Raising it towards jumbo
    // frames was measured on loopback: bursts of receive-buffer drops then trip quinn's black-hole
    // detection and the path falls back to 1200 B, which is slower (bench/net/RESULTS.md).
    Ok(t)
}

/// A closed connection tells us why: TLS alerts (crypto error codes 0x100-0x1ff) mean our
/// certificate or theirs was refused.
fn connection_error(peer: SocketAddr, e: &ConnectionError) -> NetError {
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        ConnectionError::TransportError(te) if crypto(te.code.into()) => NetError::TlsRefused {
            peer,
            reason: te.to_string(),
        },
        ConnectionError::ConnectionClosed(cc) if crypto(cc.error_code.into()) => {
            NetError::TlsRefused {
                peer,
                reason: cc.to_string(),
            }
        }
        ConnectionError::TimedOut => NetError::Unreachable {
            peer,
            reason: "QUIC connection timed out".into(),
        },
        other => NetError::Unreachable {
            peer,
            reason: other.to_string(),
        },
    }
}

#[derive(Debug)]
struct QuicPeer {
    inflight: Arc<Semaphore>,
    conn: tokio::sync::Mutex<Option<quinn::Connection>>,
}

/// Client of the QUIC transport.
#[derive(Debug, Clone)]
pub struct QuicTransport {
    inner: Arc<QuicInner>,
}

#[derive(Debug)]
struct QuicInner {
    endpoint: Endpoint,
    peers: Mutex<HashMap<SocketAddr, Arc<QuicPeer>>>,
    opts: ClientOptions,
    udp_buffers_bytes: (usize, usize),
}

impl Drop for QuicInner {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"client dropped");
    }
}

impl QuicTransport {
    /// Must be called inside a tokio runtime (the endpoint spawns its driver).
    pub fn new(identity: &TlsIdentity, opts: ClientOptions) -> Result<Self, NetError> {
        let crypto = QuicClientConfig::try_from(identity.client_config()?)
            .map_err(|e| NetError::Config(format!("QUIC client TLS: {e}")))?;
        let mut client_cfg = quinn::ClientConfig::new(Arc::new(crypto));
        client_cfg.transport_config(Arc::new(transport_config(0)?));
        let (socket, udp_buffers_bytes) = bind_udp(opts.bind_addr)?;
        let mut endpoint = Endpoint::new(
            EndpointConfig::default(),
            None,
            socket,
            Arc::new(TokioRuntime),
        )?;
        endpoint.set_default_client_config(client_cfg);
        Ok(QuicTransport {
            inner: Arc::new(QuicInner {
                endpoint,
                peers: Mutex::new(HashMap::new()),
                opts,
                udp_buffers_bytes,
            }),
        })
    }

    /// UDP receive and send buffer sizes the kernel granted.
    pub fn udp_buffers_bytes(&self) -> (usize, usize) {
        self.inner.udp_buffers_bytes
    }

    /// A one-line summary of the connection to `peer` (path MTU, RTT, losses, datagrams per
    /// send/receive syscall, i.e. GSO/GRO batching), for benchmarks and debugging.
    pub fn path_summary(&self, peer: SocketAddr) -> Option<String> {
        let state = self.inner.peers.lock().ok()?.get(&peer)?.clone();
        let conn = state.conn.try_lock().ok()?.clone()?;
        let st = conn.stats();
        let per_io = |d: u64, ios: u64| if ios == 0 { 0.0 } else { d as f64 / ios as f64 };
        Some(format!(
            "path MTU {} B, RTT {:?}, lost {} of {} packets, datagrams per send syscall {:.1}, per receive syscall {:.1}",
            st.path.current_mtu,
            st.path.rtt,
            st.path.lost_packets,
            st.path.sent_packets,
            per_io(st.udp_tx.datagrams, st.udp_tx.ios),
            per_io(st.udp_rx.datagrams, st.udp_rx.ios),
        ))
    }

    fn peer(&self, addr: SocketAddr) -> Result<Arc<QuicPeer>, NetError> {
        let mut peers = self
            .inner
            .peers
            .lock()
            .map_err(|_| NetError::Config("peer table poisoned".into()))?;
        Ok(peers
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(QuicPeer {
                    inflight: Arc::new(Semaphore::new(self.inner.opts.inflight_per_peer_max)),
                    conn: tokio::sync::Mutex::new(None),
                })
            })
            .clone())
    }

    /// The peer's live connection, connecting if there is none. The per-peer lock makes
    /// concurrent first calls share one handshake.
    async fn connection(
        &self,
        peer: SocketAddr,
        state: &QuicPeer,
    ) -> Result<quinn::Connection, NetError> {
        let mut slot = state.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let connecting = self
            .inner
            .endpoint
            .connect(peer, &peer.ip().to_string())
            .map_err(|e| NetError::Unreachable {
                peer,
                reason: e.to_string(),
            })?;
        let conn = tokio::time::timeout(ms(limits::HANDSHAKE_TIMEOUT_MS), connecting)
            .await
            .map_err(|_| NetError::Unreachable {
                peer,
                reason: "QUIC handshake timed out".into(),
            })?
            .map_err(|e| connection_error(peer, &e))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn call_inner(&self, peer: SocketAddr, req: Request) -> Result<Response, NetError> {
        let state = self.peer(peer)?;
        let permit = state
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NetError::Config("in-flight semaphore closed".into()))?;
        let conn = self.connection(peer, &state).await?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(peer, &e))?;
        let r = BufReader::with_capacity(IO_BUFFER_BYTES, recv);
        let w = BufWriter::with_capacity(IO_BUFFER_BYTES, send);
        let (resp, reader_tail, writer_tail) =
            match exchange::client_exchange(r, w, peer, req, false).await {
                Ok(x) => x,
                // A refused client certificate shows up as the connection closing under us.
                Err(e) => {
                    return Err(conn
                        .close_reason()
                        .map_or(e, |c| connection_error(peer, &c)));
                }
            };
        tokio::spawn(async move {
            // Dropping the streams finishes (send) or stops (receive) them.
            let _ = reader_tail.into_reader().await;
            let _ = writer_tail.into_writer().await;
            drop(permit);
        });
        Ok(resp)
    }
}

impl Transport for QuicTransport {
    fn call(&self, peer: SocketAddr, req: Request) -> BoxFuture<'_, Result<Response, NetError>> {
        let timeout_ms = req.timeout_ms();
        Box::pin(crate::options::timed_call(
            peer,
            timeout_ms,
            self.call_inner(peer, req),
        ))
    }
}

/// Start a QUIC server on `bind` (use port 0 in tests).
pub async fn serve_quic<H: Handler>(
    identity: &TlsIdentity,
    bind: SocketAddr,
    handler: H,
    opts: ServerOptions,
) -> Result<ServerHandle, NetError> {
    let crypto = QuicServerConfig::try_from(identity.server_config()?)
        .map_err(|e| NetError::Config(format!("QUIC server TLS: {e}")))?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let streams = u32::try_from(opts.concurrent_requests_max)
        .unwrap_or(u32::MAX)
        .saturating_add(STREAMS_SLACK);
    server_cfg.transport_config(Arc::new(transport_config(streams)?));
    let (socket, udp_buffers_bytes) = bind_udp(bind)?;
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(server_cfg),
        socket,
        Arc::new(TokioRuntime),
    )?;
    let local_addr = endpoint.local_addr()?;
    let handler: Arc<dyn DynHandler> = Arc::new(handler);
    let shared = Arc::new(ServerShared {
        handler,
        permits: Arc::new(Semaphore::new(opts.concurrent_requests_max)),
    });
    let task = tokio::spawn(accept_loop(endpoint.clone(), shared));
    tracing::info!(%local_addr, recv_buffer_bytes = udp_buffers_bytes.0, send_buffer_bytes = udp_buffers_bytes.1, "QUIC RPC server listening");
    Ok(ServerHandle {
        local_addr,
        task: AbortOnDrop::new(task),
        on_shutdown: Some(endpoint),
        udp_buffers_bytes: Some(udp_buffers_bytes),
    })
}

async fn accept_loop(endpoint: Endpoint, shared: Arc<ServerShared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    conns.spawn(serve_conn(incoming, shared.clone()));
                }
                None => return, // endpoint closed
            }
        }
    }
}

async fn serve_conn(incoming: quinn::Incoming, shared: Arc<ServerShared>) {
    let addr = incoming.remote_address();
    let conn = match tokio::time::timeout(ms(limits::HANDSHAKE_TIMEOUT_MS), incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "QUIC handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, "QUIC handshake timed out");
            return;
        }
    };
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    let Some(name) = tls::peer_node_name(certs.as_deref().map(Vec::as_slice)) else {
        tracing::warn!(%addr, "peer certificate carries no node name; closing");
        conn.close(1u32.into(), b"no node name");
        return;
    };
    let peer = PeerInfo {
        addr,
        name: Arc::from(name),
    };
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    let shared = shared.clone();
                    let peer = peer.clone();
                    streams.spawn(async move {
                        let r = BufReader::with_capacity(IO_BUFFER_BYTES, recv);
                        let w = BufWriter::with_capacity(IO_BUFFER_BYTES, send);
                        let wait = ms(limits::REQUEST_HEAD_TIMEOUT_MS);
                        match exchange::server_exchange(r, w, &shared, &peer, false, wait).await {
                            Ok(Some((_r, w))) => {
                                let mut send = w.into_inner();
                                let _ = send.finish();
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(%addr, peer = %peer.name, error = %e, "closing stream");
                            }
                        }
                    });
                }
                Err(ConnectionError::ApplicationClosed(_) | ConnectionError::LocallyClosed) => return,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "QUIC connection ended");
                    return;
                }
            }
        }
    }
}

/// Shut a transport's endpoint down and wait briefly for close frames to go out.
pub async fn close_quic(transport: &QuicTransport) {
    transport.inner.endpoint.close(0u32.into(), b"closing");
    let _ =
        tokio::time::timeout(Duration::from_secs(1), transport.inner.endpoint.wait_idle()).await;
}
