//! The bounded blocking pool: every RocksDB call and every plain-file syscall runs here, never on
//! a tokio worker thread. A semaphore bounds how many run at once so a burst of requests queues
//! instead of growing tokio's blocking pool without limit.

use std::sync::Arc;

use cairn_engine::{Error, Result};
use tokio::sync::Semaphore;

use crate::limits::BLOCKING_OPS_MAX;

#[derive(Debug, Clone)]
pub(crate) struct BlockingPool {
    permits: Arc<Semaphore>,
}

impl BlockingPool {
    pub(crate) fn new() -> BlockingPool {
        BlockingPool {
            permits: Arc::new(Semaphore::new(BLOCKING_OPS_MAX)),
        }
    }

    /// Runs `f` on a blocking thread once a permit is free.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Failed("blocking pool closed".into()))?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Failed(format!("blocking task cancelled: {e}"))),
        }
    }
}
