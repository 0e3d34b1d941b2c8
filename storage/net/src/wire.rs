//! The RPC wire format, the same on a QUIC stream and on a TLS-over-TCP connection.
//!
//! Every frame is `kind: u8 | len: u32 LE | payload[len]`. A call is
//!
//! ```text
//! client: REQ_HEAD  (version u8, request_id u64 LE, timeout_ms u32 LE, header bytes)
//!         body frames
//! server: RESP_HEAD (version u8, status u8, header bytes)
//!         body frames
//! ```
//!
//! and a body is `END` (empty), `DATA_LAST` (one chunk, complete), or `DATA`* then `END` or
//! `ABORT` (producer failed; payload is a UTF-8 reason). On TCP, calls follow each other on one
//! connection; on QUIC, each call has its own bidirectional stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::body::{Body, BodySender};
use crate::error::NetError;
use crate::limits;

/// Bumped whenever a message's encoding changes (postcard is positional: an added field breaks
/// decoding), so a peer of another version gets "unsupported wire version", not a garbled
/// decode. 2: `ExtentWriteOpts::write_around`. 3: `PutBlob::write_around`.
pub(crate) const WIRE_VERSION: u8 = 3;

pub(crate) const KIND_REQ_HEAD: u8 = 1;
pub(crate) const KIND_RESP_HEAD: u8 = 2;
pub(crate) const KIND_DATA: u8 = 3;
pub(crate) const KIND_DATA_LAST: u8 = 4;
pub(crate) const KIND_END: u8 = 5;
pub(crate) const KIND_ABORT: u8 = 6;

const FRAME_PREFIX_BYTES: usize = 5;
const REQ_HEAD_FIXED_BYTES: usize = 1 + 8 + 4;
const RESP_HEAD_FIXED_BYTES: usize = 2;

/// Outcome of a call as carried in the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    HandlerError = 1,
    TooBusy = 2,
    Timeout = 3,
    BadRequest = 4,
}

impl Status {
    fn from_u8(v: u8) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::HandlerError,
            2 => Status::TooBusy,
            3 => Status::Timeout,
            4 => Status::BadRequest,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(crate) struct RequestHead {
    pub request_id: u64,
    pub timeout_ms: u64,
    pub header: Bytes,
}

#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: Status,
    pub header: Bytes,
}

fn check_header_len(len: usize) -> Result<(), NetError> {
    if len > limits::HEADER_BYTES_MAX {
        return Err(NetError::protocol(format!(
            "header of {len} bytes exceeds HEADER_BYTES_MAX ({})",
            limits::HEADER_BYTES_MAX
        )));
    }
    Ok(())
}

fn frame_prefix(kind: u8, len: usize) -> Result<[u8; FRAME_PREFIX_BYTES], NetError> {
    let len = u32::try_from(len).map_err(|_| NetError::protocol("frame too large"))?;
    let l = len.to_le_bytes();
    Ok([kind, l[0], l[1], l[2], l[3]])
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    fixed: &[u8],
    payload: &[u8],
) -> Result<(), NetError> {
    w.write_all(&frame_prefix(kind, fixed.len() + payload.len())?)
        .await
        .map_err(io_to_net)?;
    if !fixed.is_empty() {
        w.write_all(fixed).await.map_err(io_to_net)?;
    }
    if !payload.is_empty() {
        w.write_all(payload).await.map_err(io_to_net)?;
    }
    Ok(())
}

/// Mid-call I/O failures surface as protocol errors carrying the cause; transports map
/// connection-level failures (connect, handshake) themselves.
pub(crate) fn io_to_net(e: std::io::Error) -> NetError {
    // With TLS 1.3 a server refuses a client certificate after the client thinks the handshake
    // is done, so the refusal arrives as an alert on the first read.
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return NetError::TlsRefused {
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            reason: tls.to_string(),
        };
    }
    NetError::Protocol(format!("connection failed mid-call: {e}"))
}

pub(crate) async fn write_request_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    request_id: u64,
    timeout_ms: u64,
    header: &[u8],
) -> Result<(), NetError> {
    check_header_len(header.len())?;
    let mut fixed = [0u8; REQ_HEAD_FIXED_BYTES];
    fixed[0] = WIRE_VERSION;
    fixed[1..9].copy_from_slice(&request_id.to_le_bytes());
    let t = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    fixed[9..13].copy_from_slice(&t.to_le_bytes());
    write_frame(w, KIND_REQ_HEAD, &fixed, header).await
}

pub(crate) async fn write_response_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: Status,
    header: &[u8],
) -> Result<(), NetError> {
    check_header_len(header.len())?;
    write_frame(w, KIND_RESP_HEAD, &[WIRE_VERSION, status as u8], header).await
}

/// Read one frame. `Ok(None)` is a clean end of stream before the first byte of a frame; an end
/// of stream inside a frame is a truncation error.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(u8, Bytes)>, NetError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let first = r.read(&mut prefix[..1]).await.map_err(io_to_net)?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut prefix[1..])
        .await
        .map_err(|e| NetError::protocol(format!("truncated frame prefix: {e}")))?;
    let kind = prefix[0];
    if !(KIND_REQ_HEAD..=KIND_ABORT).contains(&kind) {
        return Err(NetError::protocol(format!("unknown frame kind {kind}")));
    }
    let mut len_bytes = &prefix[1..];
    let len = len_bytes.get_u32_le() as usize;
    let max = match kind {
        KIND_DATA | KIND_DATA_LAST => limits::BODY_CHUNK_BYTES_MAX,
        _ => limits::FRAME_PAYLOAD_BYTES_MAX,
    };
    if len > max {
        return Err(NetError::protocol(format!(
            "frame kind {kind} of {len} bytes exceeds {max}"
        )));
    }
    let mut buf = BytesMut::zeroed(len);
    r.read_exact(&mut buf)
        .await
        .map_err(|e| NetError::protocol(format!("truncated frame payload: {e}")))?;
    Ok(Some((kind, buf.freeze())))
}

pub(crate) fn parse_request_head(kind: u8, mut p: Bytes) -> Result<RequestHead, NetError> {
    if kind != KIND_REQ_HEAD {
        return Err(NetError::protocol(format!(
            "expected request head, got kind {kind}"
        )));
    }
    if p.len() < REQ_HEAD_FIXED_BYTES {
        return Err(NetError::protocol("request head too short"));
    }
    let version = p.get_u8();
    if version != WIRE_VERSION {
        return Err(NetError::protocol(format!(
            "unsupported wire version {version}"
        )));
    }
    let request_id = p.get_u64_le();
    let timeout_ms = u64::from(p.get_u32_le());
    check_header_len(p.len())?;
    Ok(RequestHead {
        request_id,
        timeout_ms,
        header: p,
    })
}

pub(crate) fn parse_response_head(kind: u8, mut p: Bytes) -> Result<ResponseHead, NetError> {
    if kind != KIND_RESP_HEAD {
        return Err(NetError::protocol(format!(
            "expected response head, got kind {kind}"
        )));
    }
    if p.len() < RESP_HEAD_FIXED_BYTES {
        return Err(NetError::protocol("response head too short"));
    }
    let version = p.get_u8();
    if version != WIRE_VERSION {
        return Err(NetError::protocol(format!(
            "unsupported wire version {version}"
        )));
    }
    let status =
        Status::from_u8(p.get_u8()).ok_or_else(|| NetError::protocol("unknown response status"))?;
    check_header_len(p.len())?;
    Ok(ResponseHead { status, header: p })
}

async fn with_idle_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(
        Duration::from_millis(limits::BODY_CHUNK_IDLE_TIMEOUT_MS),
        fut,
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(NetError::protocol(format!(
            "body stalled for {} ms",
            limits::BODY_CHUNK_IDLE_TIMEOUT_MS
        ))),
    }
}

/// Write a whole body and flush. Stream chunks larger than the frame limit are split.
pub(crate) async fn write_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: Body,
) -> Result<(), NetError> {
    match body {
        Body::Empty => write_frame(w, KIND_END, &[], &[]).await?,
        Body::Full(b) if b.is_empty() => write_frame(w, KIND_END, &[], &[]).await?,
        Body::Full(b) if b.len() <= limits::BODY_CHUNK_BYTES_MAX => {
            write_frame(w, KIND_DATA_LAST, &[], &b).await?
        }
        mut body => {
            let mut total: u64 = 0;
            loop {
                // Bounded: each pass consumes at least one byte of a body capped at BODY_BYTES_MAX.
                let next = with_idle_timeout(async { Ok(body.next_chunk().await) }).await?;
                match next {
                    None => break,
                    Some(Err(e)) => {
                        let reason = e.to_string();
                        write_frame(w, KIND_ABORT, &[], reason.as_bytes()).await?;
                        w.flush().await.map_err(io_to_net)?;
                        return Err(NetError::BodyAborted(reason));
                    }
                    Some(Ok(chunk)) => {
                        total += chunk.len() as u64;
                        if total > limits::BODY_BYTES_MAX {
                            write_frame(w, KIND_ABORT, &[], b"body exceeds BODY_BYTES_MAX").await?;
                            return Err(NetError::protocol("body exceeds BODY_BYTES_MAX"));
                        }
                        for part in chunk.chunks(limits::BODY_CHUNK_BYTES_MAX) {
                            with_idle_timeout(write_frame(w, KIND_DATA, &[], part)).await?;
                        }
                        // Flush per chunk so a slow producer's data is not parked in the buffer.
                        w.flush().await.map_err(io_to_net)?;
                    }
                }
            }
            write_frame(w, KIND_END, &[], &[]).await?;
        }
    }
    w.flush().await.map_err(io_to_net)
}

/// A reader that is either free again now or will be once a spawned body pump finishes.
#[derive(Debug)]
pub(crate) enum ReaderTail<R> {
    Ready(R),
    Pending(AbortOnDrop<Option<R>>),
}

impl<R> ReaderTail<R> {
    /// Wait for the body to be fully read; `None` when the reader had to be abandoned.
    pub(crate) async fn into_reader(self) -> Option<R> {
        match self {
            ReaderTail::Ready(r) => Some(r),
            ReaderTail::Pending(mut h) => h.join().await,
        }
    }
}

/// A task handle that aborts the task when dropped, so a cancelled call (timeout) never leaves a
/// pump or body writer running against a connection nobody owns.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    pub(crate) fn new(h: JoinHandle<T>) -> Self {
        AbortOnDrop(Some(h))
    }

    pub(crate) fn empty() -> Self {
        AbortOnDrop(None)
    }

    /// Await the task; `None`-like failures (panic, abort) map to `T::default()`.
    pub(crate) async fn join(&mut self) -> T
    where
        T: Default,
    {
        match self.0.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => T::default(),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Read a body that starts at the current frame. Empty and single-chunk bodies are read inline;
/// a multi-chunk body gets a pump task that feeds a bounded channel. When the consumer drops the
/// body early, the pump either drains the rest (`drain_unread`, for TCP where the connection is
/// reused) or abandons the reader (QUIC: dropping the stream stops the sender).
pub(crate) async fn read_body<R>(
    mut r: R,
    drain_unread: bool,
) -> Result<(Body, ReaderTail<R>), NetError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (kind, payload) = with_idle_timeout(read_frame(&mut r))
        .await?
        .ok_or_else(|| NetError::protocol("stream ended before body"))?;
    match kind {
        KIND_END => Ok((Body::Empty, ReaderTail::Ready(r))),
        KIND_DATA_LAST => Ok((Body::Full(payload), ReaderTail::Ready(r))),
        KIND_ABORT => Err(NetError::Remote(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        KIND_DATA => {
            let (mut tx, body) = Body::channel();
            let handle = tokio::spawn(async move {
                let first_ok = payload.is_empty() || tx.send(payload).await.is_ok();
                pump(r, tx, drain_unread, first_ok).await
            });
            Ok((body, ReaderTail::Pending(AbortOnDrop::new(handle))))
        }
        other => Err(NetError::protocol(format!(
            "unexpected frame kind {other} in body"
        ))),
    }
}

async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    mut tx: BodySender,
    drain_unread: bool,
    mut consumer_alive: bool,
) -> Option<R> {
    let mut total: u64 = 0;
    // Bounded: every DATA frame adds >= 1 byte... or 0 for an empty frame, so count frames too.
    let frames_max = limits::BODY_BYTES_MAX;
    for _ in 0..frames_max {
        if !consumer_alive && !drain_unread {
            return None;
        }
        let frame = match with_idle_timeout(read_frame(&mut r)).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                tx.abort(NetError::protocol("stream ended inside body"))
                    .await;
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "body read failed");
                tx.abort(e).await;
                return None;
            }
        };
        match frame {
            (KIND_DATA, chunk) => {
                total += chunk.len() as u64;
                if total > limits::BODY_BYTES_MAX {
                    tx.abort(NetError::protocol("body exceeds BODY_BYTES_MAX"))
                        .await;
                    return None;
                }
                if consumer_alive && !chunk.is_empty() {
                    consumer_alive = tx.send(chunk).await.is_ok();
                }
            }
            (KIND_END, _) => {
                let _ = tx.finish().await;
                return Some(r);
            }
            (KIND_ABORT, reason) => {
                let reason = String::from_utf8_lossy(&reason).into_owned();
                tx.abort(NetError::Remote(format!(
                    "body aborted by sender: {reason}"
                )))
                .await;
                return Some(r);
            }
            (kind, _) => {
                tracing::warn!(kind, "unexpected frame inside body; closing connection");
                tx.abort(NetError::protocol(format!(
                    "unexpected frame kind {kind} in body"
                )))
                .await;
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heads_round_trip_and_bad_input_is_an_error() {
        let mut buf = Vec::new();
        write_request_head(&mut buf, 7, 1234, b"hdr").await.unwrap();
        write_body(&mut buf, Body::from(b"abc".to_vec()))
            .await
            .unwrap();
        let mut r = std::io::Cursor::new(buf);
        let (kind, p) = read_frame(&mut r).await.unwrap().unwrap();
        let head = parse_request_head(kind, p).unwrap();
        assert_eq!(
            (head.request_id, head.timeout_ms, &head.header[..]),
            (7, 1234, &b"hdr"[..])
        );
        let (body, _) = read_body(r, true).await.unwrap();
        assert_eq!(&body.collect(10).await.unwrap()[..], b"abc");

        assert!(parse_request_head(KIND_RESP_HEAD, Bytes::new()).is_err());
        assert!(parse_response_head(KIND_RESP_HEAD, Bytes::from_static(&[1, 99])).is_err());
        let mut short = &[KIND_DATA, 10, 0, 0, 0, 1][..];
        assert!(read_frame(&mut short).await.is_err());
        let mut empty = &[][..];
        assert!(read_frame(&mut empty).await.unwrap().is_none());
        let big = vec![0u8; limits::HEADER_BYTES_MAX + 1];
        assert!(
            write_request_head(&mut Vec::new(), 1, 1, &big)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn large_full_body_is_split_into_frames() {
        let mut buf = Vec::new();
        let data = Bytes::from(vec![3u8; limits::BODY_CHUNK_BYTES_MAX * 2 + 5]);
        write_body(&mut buf, Body::Full(data.clone()))
            .await
            .unwrap();
        let (body, tail) = read_body(std::io::Cursor::new(buf), true).await.unwrap();
        assert_eq!(body.collect(data.len()).await.unwrap(), data);
        assert!(tail.into_reader().await.is_some());
    }
}
