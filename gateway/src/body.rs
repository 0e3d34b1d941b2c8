//! Moving bodies between HTTP and the cluster without holding them: request bodies are
//! decoded (e.g. `aws-chunked`), hashed and counted on the way through a bounded channel, and
//! the write is only allowed to finish once the whole body checked out; response bodies are
//! streamed from the cluster's channel to the socket.

use bytes::{Bytes, BytesMut};
use cairn_net::{Body, NetError};
use cairn_node::body_digest::{BodyDigest, BodyDigestCell, BodyDigester};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

/// Chunks handed to the cluster are coalesced up to this size: hyper yields small frames,
/// and each chunk costs a frame on every replica connection.
pub const INGEST_CHUNK_BYTES: usize = 256 * 1024;
/// A client that sends nothing for this long is cut off.
pub const INGEST_IDLE_TIMEOUT_MS: u64 = 60_000;

/// Why a request body was not accepted; protocol layers map these to their own errors.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    #[error("reading the request body: {0}")]
    Client(String),
    #[error("the client sent nothing for {0} ms")]
    Idle(u64),
    #[error("the body is shorter than declared: {got} of {expected} bytes")]
    Short { got: u64, expected: u64 },
    #[error("the body is longer than the declared {expected} bytes")]
    Long { expected: u64 },
}

/// Turns raw request bytes into object bytes (identity for plain bodies).
pub trait BodyDecoder: Send + 'static {
    type Error: From<IngestFailure> + Send + 'static;
    /// Decodes `raw`, pushing object bytes to `out`.
    fn push(&mut self, raw: Bytes, out: &mut Vec<Bytes>) -> Result<(), Self::Error>;
    /// The raw body ended: anything held back goes to `out`; fails if the framing is incomplete.
    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), Self::Error>;
    /// Metadata to store with the object that only the body's end revealed (e.g. a checksum
    /// sent as a trailer); asked once the body has been checked.
    fn kept_meta(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
}

/// A body that is the object's bytes as they are.
#[derive(Debug)]
pub struct PlainBody<E>(std::marker::PhantomData<fn() -> E>);

impl<E> PlainBody<E> {
    pub fn new() -> Self {
        PlainBody(std::marker::PhantomData)
    }
}

impl<E> Default for PlainBody<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: From<IngestFailure> + Send + 'static> BodyDecoder for PlainBody<E> {
    type Error = E;
    fn push(&mut self, raw: Bytes, out: &mut Vec<Bytes>) -> Result<(), E> {
        out.push(raw);
        Ok(())
    }
    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), E> {
        Ok(())
    }
}

/// What came through: the object's size and MD5, and the decoder (for its checksums and
/// trailers).
#[derive(Debug)]
pub struct Ingested<D> {
    pub size: u64,
    pub md5: [u8; 16],
    pub decoder: D,
}

impl<D> Ingested<D> {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

/// The task checking a body on its way in: its result says whether the body was accepted.
pub type IngestTask<D> = JoinHandle<Result<Ingested<D>, <D as BodyDecoder>::Error>>;

/// Streams `body` into a cluster [`Body`] through `decoder`. `size` is the object size the
/// write was announced with: more or fewer bytes fail the body. `verify` runs after the last
/// byte and before the body is marked complete: if it fails, the body ends in an error, so
/// no replica commits the write. The body's digest (MD5 and CRC32C) is left in the returned
/// cell before the body completes: hand it to the write (`ObjectPut::digest`) so the storage
/// nodes need not hash the bytes again.
pub fn ingest<D, V>(
    body: axum::body::Body,
    mut decoder: D,
    size: u64,
    verify: V,
) -> (Body, IngestTask<D>, BodyDigestCell)
where
    D: BodyDecoder,
    V: FnOnce(&Ingested<D>) -> Result<(), D::Error> + Send + 'static,
{
    let (mut tx, out) = Body::channel();
    let cell = BodyDigestCell::new();
    let digest_out = cell.clone();
    let task = tokio::spawn(async move {
        let mut body = body;
        let mut md5 = BodyHashing::for_size(size);
        let mut got = 0u64;
        let mut pending = BytesMut::new();
        let mut decoded = Vec::new();
        let idle = std::time::Duration::from_millis(INGEST_IDLE_TIMEOUT_MS);
        let result: Result<(), D::Error> = async {
            loop {
                let frame = match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => return Err(IngestFailure::Idle(INGEST_IDLE_TIMEOUT_MS).into()),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(IngestFailure::Client(e.to_string()).into()),
                    Ok(Some(Ok(frame))) => frame,
                };
                let Ok(data) = frame.into_data() else {
                    continue; // HTTP trailers: aws-chunked carries its own.
                };
                decoder.push(data, &mut decoded)?;
                for chunk in decoded.drain(..) {
                    got += chunk.len() as u64;
                    if got > size {
                        return Err(IngestFailure::Long { expected: size }.into());
                    }
                    md5.update_small(&chunk);
                    pending.extend_from_slice(&chunk);
                    if pending.len() >= INGEST_CHUNK_BYTES {
                        let full = pending.split().freeze();
                        md5.update(&full).await;
                        if tx.send(full).await.is_err() {
                            return Err(IngestFailure::Client(
                                "the cluster stopped reading".into(),
                            )
                            .into());
                        }
                    }
                }
            }
            decoder.end(&mut decoded)?;
            for chunk in decoded.drain(..) {
                got += chunk.len() as u64;
                md5.update_small(&chunk);
                pending.extend_from_slice(&chunk);
            }
            if got > size {
                return Err(IngestFailure::Long { expected: size }.into());
            }
            if got < size {
                return Err(IngestFailure::Short {
                    got,
                    expected: size,
                }
                .into());
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tx.abort(NetError::Remote("request body refused".into()))
                .await;
            return Err(e);
        }
        let pending = pending.freeze();
        md5.update(&pending).await;
        let Some(digest) = md5.finish().await else {
            tx.abort(NetError::Remote("hashing the request body failed".into()))
                .await;
            return Err(IngestFailure::Client("hashing the body failed".into()).into());
        };
        let ingested = Ingested {
            size: got,
            md5: digest.md5,
            decoder,
        };
        if let Err(e) = verify(&ingested) {
            tx.abort(NetError::Remote("request body failed verification".into()))
                .await;
            return Err(e);
        }
        digest_out.set_with_meta(digest, ingested.decoder.kept_meta());
        if !pending.is_empty() && tx.send(pending).await.is_err() {
            return Err(IngestFailure::Client("the cluster stopped reading".into()).into());
        }
        // The cluster may already have failed the write (no quorum); that error is the
        // write's to report.
        let _ = tx.finish().await;
        Ok(ingested)
    });
    (out, task, cell)
}

/// How a body is hashed on its way in. MD5 is the costliest step of an upload (~2.2 ms of CPU
/// per MiB here, against ~0.9 for the signature's SHA-256): each forwarded chunk of a body
/// larger than one chunk is hashed on the blocking pool while the ingest task decodes, checks
/// the signature and forwards, so the steps overlap instead of adding up and the async workers
/// stay free. One chunk is hashed at a time, in order (the next waits for the previous), so an
/// upload holds a blocking thread only while there is hashing to do and never queues more than
/// one chunk. A body of one chunk is hashed inline (a thread handoff would cost more).
enum BodyHashing {
    Inline(Box<BodyDigester>),
    Piped {
        /// The digester, when no chunk is being hashed.
        idle: Option<Box<BodyDigester>>,
        /// The chunk being hashed; it hands the digester back.
        busy: Option<JoinHandle<Box<BodyDigester>>>,
    },
}

impl BodyHashing {
    fn for_size(size: u64) -> BodyHashing {
        if size <= INGEST_CHUNK_BYTES as u64 {
            BodyHashing::Inline(Box::default())
        } else {
            BodyHashing::Piped {
                idle: Some(Box::default()),
                busy: None,
            }
        }
    }

    /// Hashes bytes that are not forwarded as a chunk of their own (inline hashing only; piped
    /// hashing sees them in the chunk they are forwarded in).
    fn update_small(&mut self, data: &[u8]) {
        if let BodyHashing::Inline(d) = self {
            d.update(data);
        }
    }

    /// Hashes a forwarded chunk (piped hashing only; inline hashing saw its pieces already).
    /// Waits for the previous chunk's hashing first. A failed hashing job leaves no digester,
    /// and `finish` then reports no digest.
    async fn update(&mut self, chunk: &Bytes) {
        let BodyHashing::Piped { idle, busy } = self else {
            return;
        };
        if chunk.is_empty() {
            return;
        }
        if let Some(job) = busy.take() {
            *idle = job.await.ok();
        }
        if let Some(mut digester) = idle.take() {
            let chunk = chunk.clone();
            *busy = Some(tokio::task::spawn_blocking(move || {
                digester.update(&chunk);
                digester
            }));
        }
    }

    /// The digest; `None` if a hashing job failed.
    async fn finish(self) -> Option<BodyDigest> {
        match self {
            BodyHashing::Inline(d) => Some(d.finish()),
            BodyHashing::Piped { idle, busy } => {
                let digester = match busy {
                    Some(job) => job.await.ok()?,
                    None => idle?,
                };
                Some(digester.finish())
            }
        }
    }
}

/// A cluster body as an HTTP response body.
pub fn to_http(body: Body) -> axum::body::Body {
    match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Full(b) => axum::body::Body::from(b),
        stream @ Body::Stream(_) => {
            let s = futures::stream::unfold(stream, |mut b| async move {
                b.next_chunk()
                    .await
                    .map(|r| (r.map_err(std::io::Error::other), b))
            });
            axum::body::Body::from_stream(s)
        }
    }
}

/// Reads a small request body whole (XML and JSON documents), refusing more than `max` bytes.
pub async fn read_small(body: axum::body::Body, max: usize) -> Result<Bytes, IngestFailure> {
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(
        std::time::Duration::from_millis(INGEST_IDLE_TIMEOUT_MS),
        limited.collect(),
    )
    .await
    {
        Err(_) => Err(IngestFailure::Idle(INGEST_IDLE_TIMEOUT_MS)),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(IngestFailure::Long {
                    expected: max as u64,
                })
            } else {
                Err(IngestFailure::Client(e.to_string()))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}
