//! Data-file I/O behind a small trait: io_uring when the kernel allows it, plain positioned
//! reads/writes on the blocking pool otherwise. Metadata operations (open, rename, unlink,
//! directory fsync) always go through the blocking pool: they are rare and not worth a ring op.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use crate::pool::BlockingPool;
use crate::uring::UringIo;

/// Positioned I/O on data files. Reads return fewer bytes than asked only at end of file.
pub trait IoBackend: Send + Sync + 'static {
    fn write_at(
        &self,
        file: Arc<File>,
        offset: u64,
        data: Bytes,
    ) -> impl Future<Output = io::Result<()>> + Send;
    fn read_at(
        &self,
        file: Arc<File>,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
    fn fsync(&self, file: Arc<File>) -> impl Future<Output = io::Result<()>> + Send;
}

/// Plain files on the blocking pool.
#[derive(Debug, Clone)]
pub struct PlainIo {
    pool: BlockingPool,
}

impl PlainIo {
    pub(crate) fn new(pool: BlockingPool) -> PlainIo {
        PlainIo { pool }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.pool
            .run(move || f().map_err(cairn_engine::Error::Io))
            .await
            .map_err(|e| match e {
                cairn_engine::Error::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })
    }
}

impl IoBackend for PlainIo {
    async fn write_at(&self, file: Arc<File>, offset: u64, data: Bytes) -> io::Result<()> {
        self.run(move || file.write_all_at(&data, offset)).await
    }

    async fn read_at(&self, file: Arc<File>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.run(move || {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                match file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(done);
            Ok(buf)
        })
        .await
    }

    async fn fsync(&self, file: Arc<File>) -> io::Result<()> {
        self.run(move || file.sync_all()).await
    }
}

/// Which backend an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring if `io_uring_setup` works here, plain files otherwise.
    Auto,
    Uring,
    Plain,
}

/// The backend in use (an enum rather than `dyn`: the trait has `async fn`s).
#[derive(Debug)]
pub enum Io {
    Uring(UringIo),
    Plain(PlainIo),
}

impl Io {
    pub(crate) fn open(choice: IoChoice, pool: BlockingPool) -> io::Result<Io> {
        match choice {
            IoChoice::Plain => Ok(Io::Plain(PlainIo::new(pool))),
            IoChoice::Uring => Ok(Io::Uring(UringIo::start()?)),
            IoChoice::Auto => match UringIo::start() {
                Ok(u) => Ok(Io::Uring(u)),
                Err(e) => {
                    tracing::info!(error = %e, "io_uring unavailable, using plain-file I/O");
                    Ok(Io::Plain(PlainIo::new(pool)))
                }
            },
        }
    }

    pub fn is_uring(&self) -> bool {
        matches!(self, Io::Uring(_))
    }
}

impl IoBackend for Io {
    async fn write_at(&self, file: Arc<File>, offset: u64, data: Bytes) -> io::Result<()> {
        match self {
            Io::Uring(u) => u.write_at(file, offset, data).await,
            Io::Plain(p) => p.write_at(file, offset, data).await,
        }
    }

    async fn read_at(&self, file: Arc<File>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Io::Uring(u) => u.read_at(file, offset, len).await,
            Io::Plain(p) => p.read_at(file, offset, len).await,
        }
    }

    async fn fsync(&self, file: Arc<File>) -> io::Result<()> {
        match self {
            Io::Uring(u) => u.fsync(file).await,
            Io::Plain(p) => p.fsync(file).await,
        }
    }
}
