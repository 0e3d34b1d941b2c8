//! Request and response bodies: empty, one `Bytes`, or a bounded stream of chunks.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::error::NetError;
use crate::limits;

/// A message body. Streams are backed by a bounded channel of `limits::BODY_CHANNEL_CHUNKS`
/// chunks, so holding a `Body` never pins more than about 8 MiB however large the object is:
/// when the consumer is slow, the producer (a socket reader or a local `BodySender`) waits.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    Full(Bytes),
    Stream(BodyStream),
}

/// The receiving half of a streamed body.
#[derive(Debug)]
pub struct BodyStream {
    rx: mpsc::Receiver<Item>,
    done: bool,
}

/// What travels in a body channel. The explicit `End` lets the consumer tell a complete body from
/// a producer that vanished (channel closed without `End`).
#[derive(Debug)]
enum Item {
    Chunk(Bytes),
    End,
    Failed(NetError),
}

/// The producing half of a streamed body. Dropping it without `finish` ends the body with an
/// error on the consumer side, so a producer that gives up never passes as a complete body.
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Item>,
}

impl Body {
    /// A streamed body and the sender that feeds it.
    pub fn channel() -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(limits::BODY_CHANNEL_CHUNKS);
        (
            BodySender { tx },
            Body::Stream(BodyStream { rx, done: false }),
        )
    }

    pub fn is_empty_body(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_empty(),
            Body::Stream(_) => false,
        }
    }

    /// Next chunk, `None` at the end. Empty chunks are never returned.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, NetError>> {
        match self {
            Body::Empty => None,
            Body::Full(_) => match std::mem::take(self) {
                Body::Full(b) if !b.is_empty() => Some(Ok(b)),
                _ => None,
            },
            Body::Stream(s) => {
                if s.done {
                    return None;
                }
                match s.rx.recv().await {
                    Some(Item::Chunk(b)) => Some(Ok(b)),
                    Some(Item::End) => {
                        s.done = true;
                        None
                    }
                    Some(Item::Failed(e)) => {
                        s.done = true;
                        Some(Err(e))
                    }
                    None => {
                        s.done = true;
                        Some(Err(NetError::protocol(
                            "body truncated: producer went away",
                        )))
                    }
                }
            }
        }
    }

    /// Read the whole body into memory, refusing more than `bytes_max`.
    pub async fn collect(mut self, bytes_max: usize) -> Result<Bytes, NetError> {
        if let Body::Full(b) = self {
            if b.len() > bytes_max {
                return Err(NetError::protocol(format!(
                    "body of {} bytes exceeds {bytes_max}",
                    b.len()
                )));
            }
            return Ok(b);
        }
        let mut buf = BytesMut::new();
        let mut chunks_left = limits::BODY_BYTES_MAX; // each chunk is >= 1 byte: bounds the loop
        while let Some(chunk) = self.next_chunk().await {
            let chunk = chunk?;
            chunks_left = chunks_left.saturating_sub(1);
            if buf.len() + chunk.len() > bytes_max || chunks_left == 0 {
                return Err(NetError::protocol(format!(
                    "body exceeds {bytes_max} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Read and discard the body, returning its length.
    pub async fn drain(mut self) -> Result<u64, NetError> {
        let mut total: u64 = 0;
        while let Some(chunk) = self.next_chunk().await {
            total += chunk?.len() as u64;
            if total > limits::BODY_BYTES_MAX {
                return Err(NetError::protocol("body exceeds BODY_BYTES_MAX"));
            }
        }
        Ok(total)
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Full(b)
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl BodySender {
    /// Queue one chunk, waiting while the channel is full (backpressure). Fails when the
    /// consumer has gone away.
    pub async fn send(&mut self, chunk: Bytes) -> Result<(), NetError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Item::Chunk(chunk))
            .await
            .map_err(|_| NetError::protocol("body consumer went away"))
    }

    /// End the body with an error the consumer will see.
    pub async fn abort(self, err: NetError) {
        let _ = self.tx.send(Item::Failed(err)).await;
    }

    /// Mark the body complete. Without this the consumer sees the body as truncated.
    pub async fn finish(self) -> Result<(), NetError> {
        self.tx
            .send(Item::End)
            .await
            .map_err(|_| NetError::protocol("body consumer went away"))
    }

    /// True when the consumer dropped its end; producers use it to stop early.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
