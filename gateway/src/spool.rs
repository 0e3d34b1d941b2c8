//! Bodies of unknown length (a Swift PUT with `Transfer-Encoding: chunked` and no
//! Content-Length, as `swiftclient.put_object` sends for a generator or `rclone rcat` for a
//! pipe). A cluster write announces its size before the first byte, so such a body is first
//! spooled: kept in memory up to [`SPOOL_MEMORY_BYTES`], else written to an unlinked temporary
//! file in the gateway's spool directory, then written to the cluster like any upload. Memory
//! per request stays bounded, the object is a plain one (its ETag the MD5 of its bytes), and a
//! crash leaves no file behind (the file has no name).

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::{INGEST_CHUNK_BYTES, INGEST_IDLE_TIMEOUT_MS};

/// A body that ends within this many bytes is kept in memory.
pub const SPOOL_MEMORY_BYTES: usize = 1 << 20;
/// Bodies spooled to disk at once; more are refused (the client may retry) so a burst of
/// unknown-length uploads cannot fill the gateway's disk with up to 5 GiB each.
pub const SPOOLS_MAX: usize = 16;
/// A body goes to disk, and keeps growing there, only while the spool's filesystem keeps this
/// much free: in `cairn up` it is the storage nodes' filesystem too.
pub const SPOOL_FREE_RESERVE_BYTES: u64 = 2 << 30;
/// How often (in spooled bytes) free space is checked again.
const FREE_CHECK_EVERY_BYTES: u64 = 64 << 20;

/// Unknown-length bodies read at once (each holds up to [`SPOOL_MEMORY_BYTES`] until it is
/// written or moves to disk): 64 MiB of memory at most.
pub const SPOOLS_IN_MEMORY_MAX: usize = 64;

#[derive(thiserror::Error, Debug)]
pub enum SpoolError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("too many uploads without a Content-Length are being spooled; try again later")]
    Busy,
    #[error("too little free space where uploads are spooled; try again later")]
    NoSpace,
    #[error("no body bytes for {0} ms")]
    Idle(u64),
    #[error("reading the body: {0}")]
    Client(String),
    #[error("spool file: {0}")]
    Io(#[from] std::io::Error),
}

/// Where unknown-length bodies wait, and how many may.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    slots: Arc<Semaphore>,
    memory_slots: Arc<Semaphore>,
    free_reserve_bytes: u64,
}

/// A spooled body: its length and a body that replays it (holding its spool slot until read).
#[derive(Debug)]
pub struct Spooled {
    pub len: u64,
    pub body: axum::body::Body,
}

impl Spool {
    pub fn new(dir: PathBuf) -> Spool {
        Spool {
            dir,
            slots: Arc::new(Semaphore::new(SPOOLS_MAX)),
            memory_slots: Arc::new(Semaphore::new(SPOOLS_IN_MEMORY_MAX)),
            free_reserve_bytes: SPOOL_FREE_RESERVE_BYTES,
        }
    }

    /// A spool that stops spooling to disk when less than `bytes` are free (tests).
    pub fn with_free_reserve(dir: PathBuf, bytes: u64) -> Spool {
        Spool {
            free_reserve_bytes: bytes,
            ..Spool::new(dir)
        }
    }

    /// Reads `body` to its end (at most `limit` bytes).
    pub async fn take(&self, body: axum::body::Body, limit: u64) -> Result<Spooled, SpoolError> {
        let memory_slot = self
            .memory_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| SpoolError::Busy)?;
        let mut body = body;
        let mut held = BytesMut::new();
        let mut len = 0u64;
        let mut file: Option<(tokio::fs::File, OwnedSemaphorePermit)> = None;
        let mut next_free_check = 0u64;
        let idle = Duration::from_millis(INGEST_IDLE_TIMEOUT_MS);
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(SpoolError::Idle(INGEST_IDLE_TIMEOUT_MS)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(SpoolError::Client(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > limit {
                return Err(SpoolError::TooLarge { limit });
            }
            held.extend_from_slice(&data);
            if file.is_none() && held.len() > SPOOL_MEMORY_BYTES {
                let permit = self
                    .slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| SpoolError::Busy)?;
                let dir = self.dir.clone();
                let f = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                    .await
                    .map_err(|e| SpoolError::Io(std::io::Error::other(e)))??;
                file = Some((tokio::fs::File::from_std(f), permit));
            }
            if let Some((f, _)) = &mut file
                && held.len() >= INGEST_CHUNK_BYTES
            {
                if len >= next_free_check {
                    self.check_free_space().await?;
                    next_free_check = len + FREE_CHECK_EVERY_BYTES;
                }
                f.write_all(&held.split()).await?;
            }
        }
        let Some((mut f, permit)) = file else {
            // The memory slot is held until the write has taken the bytes.
            let bytes = held.freeze();
            let once = futures::stream::once(async move {
                let _slot = memory_slot;
                Ok::<_, std::io::Error>(bytes)
            });
            return Ok(Spooled {
                len,
                body: axum::body::Body::from_stream(once),
            });
        };
        drop(memory_slot);
        f.write_all(&held).await?;
        f.flush().await?;
        f.seek(SeekFrom::Start(0)).await?;
        Ok(Spooled {
            len,
            body: axum::body::Body::from_stream(replay(f, permit)),
        })
    }
}

impl Spool {
    async fn check_free_space(&self) -> Result<(), SpoolError> {
        let dir = self.dir.clone();
        let free = tokio::task::spawn_blocking(move || {
            rustix::fs::statvfs(&dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        })
        .await
        .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?
        .map_err(std::io::Error::from)?;
        if free < self.free_reserve_bytes {
            return Err(SpoolError::NoSpace);
        }
        Ok(())
    }
}

/// The spool file's bytes, chunk by chunk; the slot is released when the stream is dropped.
fn replay(
    file: tokio::fs::File,
    permit: OwnedSemaphorePermit,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::unfold(Some((file, permit)), |state| async move {
        let (mut f, permit) = state?;
        let mut buf = BytesMut::zeroed(INGEST_CHUNK_BYTES);
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf.freeze()), Some((f, permit))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: Vec<Vec<u8>>) -> axum::body::Body {
        axum::body::Body::from_stream(futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
        ))
    }

    async fn read_all(body: axum::body::Body) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_large_ones_replay_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::with_free_reserve(dir.path().to_path_buf(), 0);
        let s = spool
            .take(chunked(vec![b"abc".to_vec(), b"de".to_vec()]), 100)
            .await
            .unwrap();
        assert_eq!(s.len, 5);
        assert_eq!(
            spool.memory_slots.available_permits(),
            SPOOLS_IN_MEMORY_MAX - 1
        );
        assert_eq!(read_all(s.body).await, b"abcde");
        assert_eq!(spool.memory_slots.available_permits(), SPOOLS_IN_MEMORY_MAX);

        let parts: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100_003]).collect();
        let whole: Vec<u8> = parts.concat();
        let s = spool.take(chunked(parts), 1 << 30).await.unwrap();
        assert_eq!(s.len, whole.len() as u64);
        assert_eq!(spool.slots.available_permits(), SPOOLS_MAX - 1);
        assert_eq!(read_all(s.body).await, whole);
        assert_eq!(spool.slots.available_permits(), SPOOLS_MAX, "slot released");
        // The file never had a name in the spool directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn over_the_limit_or_too_many_at_once_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::with_free_reserve(dir.path().to_path_buf(), 0);
        let err = spool
            .take(chunked(vec![vec![0; 600], vec![0; 600]]), 1000)
            .await
            .unwrap_err();
        assert!(matches!(err, SpoolError::TooLarge { limit: 1000 }), "{err}");
        let mut kept = Vec::new();
        for _ in 0..SPOOLS_MAX {
            let big = chunked(vec![vec![1; SPOOL_MEMORY_BYTES + 1]]);
            kept.push(spool.take(big, 1 << 30).await.unwrap());
        }
        let big = chunked(vec![vec![1; SPOOL_MEMORY_BYTES + 1]]);
        assert!(matches!(
            spool.take(big, 1 << 30).await.unwrap_err(),
            SpoolError::Busy
        ));
        drop(kept);
        let big = chunked(vec![vec![1; SPOOL_MEMORY_BYTES + 1]]);
        assert!(spool.take(big, 1 << 30).await.is_ok());
        // Small bodies held in memory are bounded in number too.
        let mut small = Vec::new();
        for _ in 0..SPOOLS_IN_MEMORY_MAX {
            small.push(spool.take(chunked(vec![vec![2; 10]]), 100).await.unwrap());
        }
        assert!(matches!(
            spool
                .take(chunked(vec![vec![2; 10]]), 100)
                .await
                .unwrap_err(),
            SpoolError::Busy
        ));
    }

    #[tokio::test]
    async fn no_disk_spooling_without_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::with_free_reserve(dir.path().to_path_buf(), u64::MAX);
        let big = chunked(vec![vec![1; SPOOL_MEMORY_BYTES + INGEST_CHUNK_BYTES]]);
        assert!(matches!(
            spool.take(big, 1 << 30).await.unwrap_err(),
            SpoolError::NoSpace
        ));
        assert_eq!(spool.slots.available_permits(), SPOOLS_MAX, "slot released");
        // Bodies that fit in memory need no disk.
        assert!(
            spool
                .take(chunked(vec![vec![1; 1000]]), 1 << 30)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_failing_client_body_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::with_free_reserve(dir.path().to_path_buf(), 0);
        let body = axum::body::Body::from_stream(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"x")),
            Err(std::io::Error::other("reset")),
        ]));
        assert!(matches!(
            spool.take(body, 100).await.unwrap_err(),
            SpoolError::Client(_)
        ));
    }
}
