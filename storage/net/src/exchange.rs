//! One call over any ordered byte stream pair, shared by the QUIC and TCP transports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::body::Body;
use crate::error::NetError;
use crate::limits;
use crate::message::{CallContext, DynHandler, Request, RequestId, Response};
use crate::wire::{self, AbortOnDrop, ReaderTail, Status};

/// What a spawned streamed-body writer ends with: the writer if the body went out whole, and
/// the reason if the caller's body itself failed.
type BodyWriterEnd<W> = (Option<W>, Option<String>);

/// A writer that is free again now, or once a spawned streamed-body writer finishes.
#[derive(Debug)]
pub(crate) enum WriterTail<W> {
    Ready(W),
    Pending(AbortOnDrop<BodyWriterEnd<W>>),
}

impl<W> WriterTail<W> {
    pub(crate) async fn into_writer(self) -> Option<W> {
        match self {
            WriterTail::Ready(w) => Some(w),
            WriterTail::Pending(mut h) => h.join().await.0,
        }
    }

    /// Why the caller's body failed, if it did (waits for the body writer).
    async fn body_aborted(self) -> Option<String> {
        match self {
            WriterTail::Ready(_) => None,
            WriterTail::Pending(mut h) => h.join().await.1,
        }
    }
}

/// The client half of one call, up to the response head. The caller wraps it in the call's
/// timeout; dropping it (timeout) aborts any body writer it spawned.
pub(crate) async fn client_exchange<R, W>(
    mut r: R,
    mut w: W,
    peer: SocketAddr,
    req: Request,
    drain_unread: bool,
) -> Result<(Response, ReaderTail<R>, WriterTail<W>), NetError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let timeout_ms = req.timeout_ms();
    wire::write_request_head(&mut w, req.id.0, timeout_ms, &req.header).await?;
    let writer_tail = match req.body {
        body @ (Body::Empty | Body::Full(_)) => {
            wire::write_body(&mut w, body).await?;
            WriterTail::Ready(w)
        }
        body @ Body::Stream(_) => {
            // The request body streams while we wait for the response: a server may answer
            // before reading everything (e.g. a refusal), and waiting would deadlock on full
            // buffers.
            let h = tokio::spawn(async move {
                match wire::write_body(&mut w, body).await {
                    Ok(()) => (Some(w), None),
                    Err(NetError::BodyAborted(reason)) => (None, Some(reason)),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "request body not fully sent");
                        (None, None)
                    }
                }
            });
            WriterTail::Pending(AbortOnDrop::new(h))
        }
    };
    let frame = match wire::read_frame(&mut r).await {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(NetError::Unreachable {
            peer,
            reason: "connection closed before the response".into(),
        }),
        Err(e) => Err(e),
    };
    let (kind, payload) = match frame {
        Ok(frame) => frame,
        // A peer that hung up because our own body failed is not a peer in trouble.
        Err(e) => {
            return Err(match writer_tail.body_aborted().await {
                Some(reason) => NetError::BodyAborted(reason),
                None => e,
            });
        }
    };
    let head = wire::parse_response_head(kind, payload)?;
    let (body, reader_tail) = wire::read_body(r, drain_unread).await?;
    let header = head.header;
    match head.status {
        Status::Ok => Ok((Response { header, body }, reader_tail, writer_tail)),
        Status::HandlerError => Err(NetError::Remote(lossy(&header))),
        Status::TooBusy => Err(NetError::TooBusy {
            peer,
            reason: lossy(&header),
        }),
        Status::Timeout => Err(NetError::Timeout { peer, timeout_ms }),
        Status::BadRequest => Err(NetError::Protocol(format!(
            "peer refused request: {}",
            lossy(&header)
        ))),
    }
}

fn lossy(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What every server connection shares.
pub(crate) struct ServerShared {
    pub handler: Arc<dyn DynHandler>,
    /// Server-wide limit on requests being handled; excess requests get `TooBusy` at once
    /// rather than queueing, so a caller can try another replica while it still has time.
    pub permits: Arc<Semaphore>,
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShared")
            .field("permits_available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// Identity of the connection a request came in on.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub addr: SocketAddr,
    pub name: Arc<str>,
}

/// Serve one request. `Ok(None)`: the peer closed cleanly before a request (TCP between calls).
/// `Ok(Some(..))`: the streams are positioned for the next request. `Err`: the connection must
/// close; the reason is logged by the caller.
pub(crate) async fn server_exchange<R, W>(
    mut r: R,
    mut w: W,
    shared: &ServerShared,
    peer: &PeerInfo,
    drain_unread: bool,
    wait_for_head: Duration,
) -> Result<Option<(R, W)>, NetError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let frame = match tokio::time::timeout(wait_for_head, wire::read_frame(&mut r)).await {
        Ok(f) => f?,
        Err(_) => return Ok(None), // idle: close quietly
    };
    let Some((kind, payload)) = frame else {
        return Ok(None);
    };
    let head = wire::parse_request_head(kind, payload)?;
    let request_id = RequestId(head.request_id);
    let span = tracing::info_span!(
        "rpc",
        request_id = %request_id,
        peer = %peer.name,
        peer_addr = %peer.addr,
        op = tracing::field::Empty,
        target = tracing::field::Empty
    );
    async move {
        let (body, reader_tail) = wire::read_body(r, drain_unread).await?;
        let timeout = Duration::from_millis(head.timeout_ms.clamp(1, limits::CALL_TIMEOUT_MS_MAX));
        let permit = shared.permits.clone().try_acquire_owned();
        // Held until the response body is written: a streamed response is still work.
        let mut _permit_held = None;
        let result = match permit {
            Err(_) => {
                tracing::warn!("refusing request: server at its concurrent request limit");
                drop(body);
                Err((
                    Status::TooBusy,
                    Bytes::from_static(b"server at concurrent request limit"),
                ))
            }
            Ok(permit) => {
                let ctx = CallContext {
                    request_id,
                    peer_addr: peer.addr,
                    peer_name: peer.name.clone(),
                    timeout,
                };
                let fut = shared.handler.handle_dyn(ctx, head.header, body);
                let out = match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "handler error");
                        Err((Status::HandlerError, Bytes::from(e.message)))
                    }
                    Err(_) => {
                        tracing::debug!(timeout_ms = head.timeout_ms, "handler timed out");
                        Err((Status::Timeout, Bytes::new()))
                    }
                };
                _permit_held = Some(permit);
                out
            }
        };
        match result {
            Ok(resp) => {
                wire::write_response_head(&mut w, Status::Ok, &resp.header).await?;
                wire::write_body(&mut w, resp.body).await?;
            }
            Err((status, msg)) => {
                let msg = msg.slice(..msg.len().min(limits::HEADER_BYTES_MAX));
                wire::write_response_head(&mut w, status, &msg).await?;
                wire::write_body(&mut w, Body::Empty).await?;
            }
        }
        match reader_tail.into_reader().await {
            Some(r) => Ok(Some((r, w))),
            // QUIC: the handler left part of the body unread and the stream was stopped.
            None if !drain_unread => Ok(None),
            None => Err(NetError::protocol("request body not cleanly finished")),
        }
    }
    .instrument(span)
    .await
}
