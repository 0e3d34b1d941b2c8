//! The [`MetaStore`] trait and the watch stream both backends return.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::types::{
    KeyRange, KeyValue, LeaseId, Revision, Txn, TxnResponse, Versioned, WatchEvent,
};

/// A small, strongly consistent key-value store with revisions, compare-and-swap transactions,
/// watches and leases: etcd's v3 model. Every operation is linearizable: once a call returns,
/// every later call (from any client of the same store) sees its effect.
///
/// Generic code takes `S: MetaStore`; code that picks a backend at run time uses
/// [`AnyMetaStore`](crate::AnyMetaStore).
pub trait MetaStore: Send + Sync + Debug + 'static {
    /// The key's current value, or `None`.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Versioned>>> + Send;

    /// Writes `value` at `key`, attached to `lease` if given (the key is deleted when the lease
    /// ends). Returns the new revision. Fails with `LeaseNotFound` for an unknown lease.
    fn put(
        &self,
        key: &[u8],
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<Revision>> + Send;

    /// Deletes `key`; `true` if it existed. Deleting an absent key does not bump the revision.
    fn delete(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` (1..=[`RANGE_LIMIT_MAX`](crate::limits::RANGE_LIMIT_MAX)) key-values in
    /// `range`, in ascending key order.
    fn range(
        &self,
        range: &KeyRange,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyValue>>> + Send;

    /// The store's current revision.
    fn revision(&self) -> impl Future<Output = Result<Revision>> + Send;

    /// Runs a compare-and-swap transaction atomically.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send;

    /// Watches keys starting with `prefix`. With `from_revision = Some(r)` the stream first
    /// replays every change with revision `>= r` (failing with `Compacted` if that history is
    /// gone), then follows live changes; with `None` only changes after the call. Events arrive
    /// in revision order, each exactly once, until the stream ends or yields an error.
    fn watch(
        &self,
        prefix: &[u8],
        from_revision: Option<Revision>,
    ) -> impl Future<Output = Result<WatchStream>> + Send;

    /// Forgets change history up to `revision`: watches from an earlier revision then fail with
    /// `Compacted { oldest_available: revision, .. }`. Current values are unaffected.
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;

    /// Grants a lease of `ttl` (rounded up to whole seconds, at least one second: etcd's
    /// granularity).
    fn grant(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId>> + Send;

    /// Restarts the lease's TTL; returns the TTL. `LeaseNotFound` if it has already ended.
    fn keep_alive(&self, id: LeaseId) -> impl Future<Output = Result<Duration>> + Send;

    /// Ends the lease now, deleting its keys. `LeaseNotFound` if it has already ended.
    fn revoke(&self, id: LeaseId) -> impl Future<Output = Result<()>> + Send;

    /// Time left on the lease, or `None` if it has ended.
    fn lease_remaining(&self, id: LeaseId)
    -> impl Future<Output = Result<Option<Duration>>> + Send;
}

/// Rounds a TTL up to whole seconds within the lease bounds (etcd's granularity; the embedded
/// store applies the same rule so both behave alike).
pub fn lease_ttl_secs(ttl: Duration) -> Result<u64> {
    use crate::limits::{LEASE_TTL_MAX_MS, LEASE_TTL_MIN_MS};
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if ms > LEASE_TTL_MAX_MS {
        return Err(crate::Error::InvalidArgument(format!(
            "lease TTL {ms} ms exceeds {LEASE_TTL_MAX_MS} ms"
        )));
    }
    Ok(ms.max(LEASE_TTL_MIN_MS).div_ceil(1000))
}

/// A stream of [`WatchEvent`]s. Dropping it cancels the watch.
///
/// Items are `Ok(event)` in revision order; an `Err` (`Compacted`, `WatchLagged`, a backend
/// error) is the last item.
pub struct WatchStream {
    backlog: VecDeque<WatchEvent>,
    live: mpsc::Receiver<Result<WatchEvent>>,
    // Cancels backend work (the etcd pump task) when the stream is dropped.
    _cancel: Option<CancelOnDrop>,
    finished: bool,
}

impl Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("backlog", &self.backlog.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WatchStream {
    pub(crate) fn new(
        backlog: Vec<WatchEvent>,
        live: mpsc::Receiver<Result<WatchEvent>>,
        cancel: Option<CancelOnDrop>,
    ) -> Self {
        WatchStream {
            backlog: backlog.into(),
            live,
            _cancel: cancel,
            finished: false,
        }
    }

    /// The next event; `None` when the watch ended (the store closed).
    pub async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<WatchEvent>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(ev) = self.backlog.pop_front() {
            return Poll::Ready(Some(Ok(ev)));
        }
        match self.live.poll_recv(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}
