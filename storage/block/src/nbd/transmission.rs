//! Transmission phase: one reader that parses requests and runs each (inline if it completes at
//! once, else as a task of its own), and one writer that serialises replies. Replies go out in
//! completion order, which NBD allows.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use super::config::NbdConfig;
use super::export::Export;
use super::handshake::Negotiated;
use super::proto::{self, Command, Frame, Limits, Request};

/// Zeros for holes in simple replies and DF reads.
static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];

#[derive(thiserror::Error, Debug)]
pub(crate) enum TransmitError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad request: {0}")]
    Frame(#[from] proto::FrameError),
    #[error("write payload of {0} bytes exceeds {max}", max = proto::MAX_PAYLOAD)]
    PayloadTooLarge(u32),
    #[error("idle for {0:?}")]
    Idle(Duration),
}

/// How the reader loop ended.
enum End {
    Disconnect,
    Eof,
    Shutdown,
    WriterGone,
}

/// Serves requests until the client disconnects, the server shuts down or the stream breaks.
/// In-flight requests get up to `shutdown_grace` to finish and have their replies sent before
/// this returns.
pub(crate) async fn run<S, E>(
    stream: S,
    neg: Negotiated<E>,
    config: &NbdConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TransmitError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    E: Export,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let max_requests = config.max_inflight_requests.clamp(1, 1 << 16);
    let (tx, rx) = mpsc::channel::<Vec<Frame>>(max_requests);
    let writer = tokio::spawn(write_replies(wr, rx).in_current_span());

    let export = neg.export;
    let (min_block, _, max_block) = export.block_sizes();
    let limits = Limits {
        size: export.size(),
        read_only: export.read_only(),
        structured: neg.structured,
        base_allocation: neg.base_allocation,
        fast_zero: export.fast_zero(),
        min_block,
        max_block,
    };
    let requests = Arc::new(Semaphore::new(max_requests));
    // A single request may be as large as MAX_PAYLOAD, so the byte budget must admit one.
    let one_request = usize::try_from(proto::MAX_PAYLOAD).unwrap_or(usize::MAX);
    let budget = config.max_inflight_bytes.max(one_request);
    let budget = budget.min(Semaphore::MAX_PERMITS);
    let bytes = Arc::new(Semaphore::new(budget));

    let result = async {
        loop {
            let mut hdr = [0u8; proto::REQUEST_LEN];
            // A close between requests is a normal end; one inside a header is a truncated
            // frame.
            let read = async {
                if rd.fill_buf().await?.is_empty() {
                    return Ok(false);
                }
                rd.read_exact(&mut hdr).await?;
                Ok::<_, std::io::Error>(true)
            };
            let read = async {
                match config.idle_timeout {
                    Some(t) => tokio::time::timeout(t, read)
                        .await
                        .map_err(|_| TransmitError::Idle(t))?,
                    None => read.await,
                }
                .map_err(TransmitError::from)
            };
            tokio::select! {
                r = read => if !r? { return Ok(End::Eof) },
                _ = shutdown.wait_for(|s| *s) => return Ok(End::Shutdown),
                _ = tx.closed() => return Ok(End::WriterGone),
            }
            let req = proto::parse_request(&hdr)?;
            if req.command == Command::Disc {
                return Ok(End::Disconnect);
            }
            if req.payload_len() > proto::MAX_PAYLOAD {
                // Skipping 4 GiB to stay in sync is not worth it; the spec allows a hard
                // disconnect for payloads this large.
                return Err(TransmitError::PayloadTooLarge(req.len));
            }
            // Both permits are taken before the payload is read, so memory stays bounded even
            // when the client streams writes faster than the export completes them.
            let Ok(slot) = requests.clone().acquire_owned().await else {
                return Ok(End::WriterGone);
            };
            let cost = match req.command {
                Command::Write | Command::Read => req.len.min(proto::MAX_PAYLOAD),
                _ => 0,
            };
            let Ok(budget) = bytes.clone().acquire_many_owned(cost).await else {
                return Ok(End::WriterGone);
            };
            let payload = if req.payload_len() > 0 {
                let mut buf = BytesMut::zeroed(usize::try_from(req.payload_len()).unwrap_or(0));
                rd.read_exact(&mut buf).await?;
                Some(buf.freeze())
            } else {
                None
            };
            if let Err(errno) = proto::validate(&req, &limits) {
                tracing::debug!(?req, errno, "request refused");
                let structured = limits.structured && is_structured_only(req.command);
                let reply = proto::error_reply(req.cookie, errno, structured, "invalid request");
                if tx.send(reply).await.is_err() {
                    return Ok(End::WriterGone);
                }
                continue;
            }
            let export = export.clone();
            let tx = tx.clone();
            let mut request = Box::pin(
                async move {
                    let reply = execute(&*export, req, payload, limits.structured).await;
                    // The writer is gone only if the connection is; nobody to tell.
                    let _ = tx.send(reply).await;
                    drop((slot, budget));
                }
                .in_current_span(),
            );
            // Polled once here first: a read the storage answers from memory completes at
            // once, and spawning a task for it would wake the other worker thread, which at
            // queue depth 1 cost more than the read. Anything still pending becomes a task,
            // whose first poll registers its real waker (the no-op one here is forgotten).
            let mut cx = Context::from_waker(Waker::noop());
            // A panic stays with its request, as it would in a task of its own: the request is
            // dropped (freeing its permits) and the connection goes on.
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                request.as_mut().poll(&mut cx).is_pending()
            }));
            match polled {
                Ok(true) => drop(tokio::spawn(request)),
                Ok(false) => {}
                Err(_) => tracing::error!("request handler panicked; no reply sent"),
            }
        }
    }
    .await;

    // Let in-flight requests finish: their writes may already be applied, and the client is
    // owed the replies. Bounded, because a client that stopped reading would otherwise pin
    // the writer (and so every request task) forever.
    let all = u32::try_from(max_requests).unwrap_or(u32::MAX);
    let grace = config.shutdown_grace;
    let mut writer = writer;
    let drained = tokio::time::timeout(grace, async {
        let _ = requests.acquire_many(all).await;
        drop(tx);
        (&mut writer).await
    })
    .await;
    match (&result, drained) {
        (_, Err(_)) => {
            tracing::warn!(
                ?grace,
                "in-flight requests did not finish; dropping connection"
            );
            writer.abort();
        }
        (Ok(End::Disconnect), _) => tracing::debug!("client disconnected"),
        (Ok(End::Eof), _) => tracing::debug!("client closed the connection"),
        (Ok(End::Shutdown), _) => tracing::debug!("closed for server shutdown"),
        (_, Ok(Ok(Err(e)))) => tracing::debug!(error = %e, "reply writer failed"),
        _ => {}
    }
    result.map(|_| ())
}

/// Commands whose replies must be structured once structured replies are negotiated.
fn is_structured_only(cmd: Command) -> bool {
    matches!(cmd, Command::Read | Command::BlockStatus)
}

async fn execute<E: Export>(
    export: &E,
    req: Request,
    payload: Option<bytes::Bytes>,
    structured: bool,
) -> Vec<Frame> {
    let (off, len, fua) = (req.offset, req.len, req.has(proto::CMD_FLAG_FUA));
    let result = match req.command {
        Command::Read => match export.read(off, len).await {
            Ok(spans) => match proto::check_spans(&spans, len) {
                Ok(()) => {
                    let df = req.has(proto::CMD_FLAG_DF);
                    return proto::read_reply(req.cookie, off, spans, structured, df);
                }
                Err(msg) => {
                    tracing::error!(%msg, "export returned a malformed read");
                    Err(super::IoError::Io(msg))
                }
            },
            Err(e) => Err(e),
        },
        Command::Write => export.write(off, payload.unwrap_or_default(), fua).await,
        Command::Flush => export.flush().await,
        Command::Trim => export.trim(off, len, fua).await,
        Command::Cache => export.cache(off, len).await,
        Command::WriteZeroes => {
            let may_punch = !req.has(proto::CMD_FLAG_NO_HOLE);
            export.write_zeroes(off, len, may_punch, fua).await
        }
        Command::BlockStatus => match export.block_status(off, len).await {
            Ok(extents) => {
                let req_one = req.has(proto::CMD_FLAG_REQ_ONE);
                let d = proto::block_status_descriptors(&extents, len, req_one);
                if !d.is_empty() {
                    return proto::block_status_reply(req.cookie, &d);
                }
                tracing::error!("export returned no block-status extents");
                Err(super::IoError::Io("no extents".into()))
            }
            Err(e) => Err(e),
        },
        // Filtered out by the reader and by `validate`.
        Command::Disc | Command::Unknown(_) => Err(super::IoError::Invalid("command".into())),
    };
    match result {
        Ok(()) => proto::ok_reply(req.cookie),
        Err(e) => {
            match &e {
                super::IoError::Fenced(_) | super::IoError::Io(_) => {
                    tracing::warn!(error = %e, ?req.command, req.offset, req.len, "request failed");
                }
                _ => tracing::debug!(error = %e, ?req, "request failed"),
            }
            let structured = structured && is_structured_only(req.command);
            proto::error_reply(req.cookie, e.errno(), structured, &e.to_string())
        }
    }
}

/// Writes replies as they arrive, flushing only when no more are queued so bursts share
/// syscalls (and TLS records).
async fn write_replies<W>(wr: W, mut rx: mpsc::Receiver<Vec<Frame>>) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut w = BufWriter::with_capacity(256 << 10, wr);
    let result = async {
        while let Some(frames) = rx.recv().await {
            for f in frames {
                match f {
                    Frame::Bytes(b) => w.write_all(&b).await?,
                    Frame::Zeros(mut n) => {
                        while n > 0 {
                            let k = usize::try_from(n).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
                            w.write_all(&ZEROS[..k]).await?;
                            n -= k as u64;
                        }
                    }
                }
            }
            if rx.is_empty() {
                w.flush().await?;
            }
        }
        w.flush().await?;
        w.shutdown().await
    }
    .await;
    // Dropping the receiver makes the reader stop instead of queueing into a dead socket.
    rx.close();
    result
}
