//! The embedded backend: one redb file, served by one dedicated thread (see `actor.rs`), with a
//! background task that expires leases on time.
//!
//! Durability: every acknowledged write is a committed redb transaction with redb's default
//! durability (fsynced before the commit returns). Lease deadlines are persisted as wall-clock
//! times, so leases that ran out while the process was down are expired at the first operation
//! after reopening.

mod actor;
mod codec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};

use self::actor::{Actor, Cmd, Reply};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::limits::{EMBEDDED_QUEUE_COMMANDS_MAX, LEASE_SWEEP_IDLE_MS};
use crate::store::{MetaStore, WatchStream, lease_ttl_secs};
use crate::types::{
    KeyRange, KeyValue, LeaseId, Revision, Txn, TxnOp, TxnOpResult, TxnResponse, Versioned,
    check_key, check_limit, check_value,
};

/// The database file's name inside the store's directory.
pub const DB_FILE_NAME: &str = "meta.redb";

/// The embedded, single-node store. Cheap to clone; clones share one database.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<Cmd>,
    /// Wakes the expiry task early (a lease was granted that may be due sooner).
    wake: Arc<Notify>,
    /// Stops the expiry task when the last handle goes.
    shutdown: Arc<Notify>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir`, expiring leases by the system clock.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_clock(dir, Arc::new(SystemClock)).await
    }

    /// Opens the store with an injected clock (tests use [`ManualClock`](crate::ManualClock)).
    /// Must be called inside a tokio runtime: it starts the lease expiry task.
    pub async fn open_with_clock(dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self> {
        let dir: PathBuf = dir.as_ref().to_path_buf();
        let (tx, rx) = mpsc::channel(EMBEDDED_QUEUE_COMMANDS_MAX);
        let (opened_tx, opened_rx) = oneshot::channel();
        let actor_clock = clock.clone();
        std::thread::Builder::new()
            .name("cairn-meta".into())
            .spawn(move || {
                let opened = std::fs::create_dir_all(&dir)
                    .map_err(Error::from)
                    .and_then(|()| Actor::open(&dir.join(DB_FILE_NAME), actor_clock));
                match opened {
                    Ok(actor) => {
                        let _ = opened_tx.send(Ok(()));
                        actor.run(rx);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })?;
        opened_rx.await.map_err(|_| Error::Closed)??;

        let wake = Arc::new(Notify::new());
        let shutdown = Arc::new(Notify::new());
        tokio::spawn(expire_leases(
            tx.downgrade(),
            clock,
            wake.clone(),
            shutdown.clone(),
        ));
        Ok(EmbeddedStore {
            inner: Arc::new(Handle { tx, wake, shutdown }),
        })
    }

    /// Closes the database and waits until its file is released (so it can be reopened at
    /// once). Other clones of this store fail with `Closed` afterwards.
    pub async fn close(self) -> Result<()> {
        self.call(Cmd::Shutdown).await
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// The background expiry task: sleeps until the next lease deadline (or a bounded idle time,
/// or a new grant), then asks the store thread to expire what is due. The store also expires
/// due leases before each operation; this task is what makes watchers see the deletes without
/// any other traffic.
async fn expire_leases(
    tx: mpsc::WeakSender<Cmd>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    shutdown: Arc<Notify>,
) {
    loop {
        let Some(strong) = tx.upgrade() else { return };
        let (reply_tx, reply_rx) = oneshot::channel();
        if strong.send(Cmd::Sweep(reply_tx)).await.is_err() {
            return;
        }
        drop(strong);
        let next = match reply_rx.await {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "meta lease expiry failed; stopping the expiry task");
                return;
            }
            Err(_) => return,
        };
        let idle_until = clock.now_unix_ms().saturating_add(LEASE_SWEEP_IDLE_MS);
        let until = next.map_or(idle_until, |n| n.min(idle_until));
        tokio::select! {
            () = clock.sleep_until_unix_ms(until) => {}
            () = wake.notified() => {}
            () = shutdown.notified() => return,
        }
    }
}

impl MetaStore for EmbeddedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        check_key(key)?;
        self.call(|r| Cmd::Get(key.to_vec(), r)).await
    }

    async fn put(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        let txn = Txn::new().and_then([TxnOp::Put {
            key: Bytes::copy_from_slice(key),
            value,
            lease,
        }]);
        Ok(self.call(|r| Cmd::Txn(txn, r)).await?.revision)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let txn = Txn::new().and_then([TxnOp::delete(Bytes::copy_from_slice(key))]);
        let resp = self.call(|r| Cmd::Txn(txn, r)).await?;
        Ok(matches!(
            resp.results.first(),
            Some(TxnOpResult::Delete(true))
        ))
    }

    async fn range(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        check_limit(limit)?;
        self.call(|r| Cmd::Range(range.clone(), limit, r)).await
    }

    async fn revision(&self) -> Result<Revision> {
        self.call(Cmd::Revision).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        self.call(|r| Cmd::Txn(txn, r)).await
    }

    async fn watch(&self, prefix: &[u8], from_revision: Option<Revision>) -> Result<WatchStream> {
        // Revision 0 means "from now", as in etcd.
        let from = from_revision.filter(|r| *r > 0);
        let (backlog, rx) = self.call(|r| Cmd::Watch(prefix.to_vec(), from, r)).await?;
        Ok(WatchStream::new(backlog, rx, None))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.call(|r| Cmd::Compact(revision, r)).await
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl_ms = lease_ttl_secs(ttl)? * 1000;
        let id = self.call(|r| Cmd::Grant(ttl_ms, r)).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.call(|r| Cmd::KeepAlive(id, r)).await
    }

    async fn revoke(&self, id: LeaseId) -> Result<()> {
        self.call(|r| Cmd::Revoke(id, r)).await
    }

    async fn lease_remaining(&self, id: LeaseId) -> Result<Option<Duration>> {
        self.call(|r| Cmd::LeaseRemaining(id, r)).await
    }
}
