//! Exclusive writer leases with fencing epochs, built once over any [`MetaStore`].
//!
//! For a lease named `N` under prefix `P` (default [`WRITER_LEASE_PREFIX`]):
//! - `P N /epoch` holds the last epoch handed out (decimal). It is never attached to a lease
//!   and never deleted, so epochs only grow — across holders, restarts and backends.
//! - `P N /holder` holds `"<epoch>\n<holder>"` and is attached to the holder's store lease, so it
//!   vanishes when the holder stops renewing.
//!
//! `acquire` reads both, and if nobody holds the lease, writes `epoch + 1` and the holder record
//! in one transaction guarded by "holder key absent" and "epoch key unchanged since read". Two
//! acquirers can therefore never get the same epoch, and a later holder always has a strictly
//! higher epoch than every earlier one. Writers stamp their writes with the epoch; storage
//! refuses writes from an epoch below the highest it has seen (the fencing token).

use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits::{ACQUIRE_RACE_RETRIES_MAX, LEASE_NAME_MAX_BYTES};
use crate::store::MetaStore;
use crate::types::{Compare, CompareOp, LeaseId, Txn, TxnOp, TxnOpResult};

/// Where writer leases live unless told otherwise.
pub const WRITER_LEASE_PREFIX: &str = "/cairn/leases/";

/// A writer lease held by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The writer lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing epoch: strictly greater than every earlier holder's.
    pub epoch: u64,
    /// The store lease keeping the hold alive; renew before its TTL runs out.
    pub lease: LeaseId,
    /// The TTL granted.
    pub ttl: Duration,
}

/// Someone else holds the writer lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The current holder.
    pub holder: String,
    /// Their epoch.
    pub epoch: u64,
    /// Time left before their hold expires unless renewed (zero if it is expiring now).
    pub expires_in: Duration,
}

/// What `acquire` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// The caller holds the lease now.
    Held(Held),
    /// Someone else does.
    Busy(Busy),
}

/// Writer-lease operations over a store.
#[derive(Debug, Clone)]
pub struct WriterLeases<S> {
    store: S,
    prefix: String,
}

impl<S: MetaStore> WriterLeases<S> {
    /// Writer leases under [`WRITER_LEASE_PREFIX`].
    pub fn new(store: S) -> Self {
        Self::with_prefix(store, WRITER_LEASE_PREFIX)
    }

    /// Writer leases under another prefix (tests, or a separate namespace).
    pub fn with_prefix(store: S, prefix: impl Into<String>) -> Self {
        WriterLeases {
            store,
            prefix: prefix.into(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn epoch_key(&self, name: &str) -> Bytes {
        Bytes::from(format!("{}{name}/epoch", self.prefix))
    }

    fn holder_key(&self, name: &str) -> Bytes {
        Bytes::from(format!("{}{name}/holder", self.prefix))
    }

    /// Takes the writer lease `name` for `holder` with a fresh, strictly higher epoch, unless
    /// someone holds it. A holder that calls again while holding gets `Busy` (itself): a
    /// restarted process must not reuse its predecessor's epoch.
    pub async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Acquire> {
        check_name("lease name", name)?;
        check_name("holder", holder)?;
        let (epoch_key, holder_key) = (self.epoch_key(name), self.holder_key(name));
        for _ in 0..ACQUIRE_RACE_RETRIES_MAX {
            if let Some(current) = self.store.get(&holder_key).await? {
                return self
                    .busy(&current.value, current.lease)
                    .await
                    .map(Acquire::Busy);
            }
            let epoch_rec = self.store.get(&epoch_key).await?;
            let last_epoch = match &epoch_rec {
                Some(v) => parse_epoch(&v.value)?,
                None => 0,
            };
            let epoch = last_epoch + 1;
            let lease = self.store.grant(ttl).await?;
            let txn = Txn::new()
                .when([
                    Compare::absent(holder_key.clone()),
                    Compare::mod_revision(
                        epoch_key.clone(),
                        CompareOp::Equal,
                        epoch_rec.as_ref().map_or(0, |v| v.mod_revision),
                    ),
                ])
                .and_then([
                    TxnOp::put(epoch_key.clone(), epoch.to_string()),
                    TxnOp::put_with_lease(holder_key.clone(), holder_record(epoch, holder), lease),
                ])
                .or_else([TxnOp::get(holder_key.clone())]);
            let resp = match self.store.txn(txn).await {
                Ok(resp) => resp,
                Err(e) => {
                    self.revoke_quietly(lease).await;
                    return Err(e);
                }
            };
            if resp.succeeded {
                tracing::info!(name, holder, epoch, "writer lease acquired");
                return Ok(Acquire::Held(Held {
                    name: name.to_owned(),
                    holder: holder.to_owned(),
                    epoch,
                    lease,
                    ttl,
                }));
            }
            self.revoke_quietly(lease).await;
            // Lost a race: report the winner if it holds, else (its hold already ended) retry.
            if let Some(TxnOpResult::Get(Some(current))) = resp.results.first() {
                return self
                    .busy(&current.value, current.lease)
                    .await
                    .map(Acquire::Busy);
            }
        }
        Err(Error::LimitReached("writer lease acquire retries"))
    }

    async fn busy(&self, record: &[u8], lease: Option<LeaseId>) -> Result<Busy> {
        let (epoch, holder) = parse_holder(record)?;
        let expires_in = match lease {
            Some(id) => self.store.lease_remaining(id).await?.unwrap_or_default(),
            None => Duration::ZERO,
        };
        Ok(Busy {
            holder,
            epoch,
            expires_in,
        })
    }

    async fn revoke_quietly(&self, lease: LeaseId) {
        if let Err(e) = self.store.revoke(lease).await {
            // The lease then simply runs out after its TTL.
            tracing::debug!(error = %e, "revoking an unused lease failed");
        }
    }

    /// Extends the hold by its TTL. Fails with `WriterLeaseLost` if the hold has ended (expired,
    /// released, or taken over); the caller must then stop writing.
    pub async fn renew(&self, held: &Held) -> Result<Duration> {
        let lost = || Error::WriterLeaseLost {
            name: held.name.clone(),
            epoch: held.epoch,
        };
        let ttl = match self.store.keep_alive(held.lease).await {
            Ok(ttl) => ttl,
            Err(Error::LeaseNotFound(_)) => return Err(lost()),
            Err(e) => return Err(e),
        };
        // The lease being alive is not enough: the record must still be ours.
        match self.store.get(&self.holder_key(&held.name)).await? {
            Some(v) if v.lease == Some(held.lease) && parse_holder(&v.value)?.0 == held.epoch => {
                Ok(ttl)
            }
            _ => Err(lost()),
        }
    }

    /// Gives the lease up; `true` if it was still held by `held`. The epoch stays, so the next
    /// holder gets a higher one.
    pub async fn release(&self, held: &Held) -> Result<bool> {
        let holder_key = self.holder_key(&held.name);
        let txn = Txn::new()
            .when([Compare::value(
                holder_key.clone(),
                CompareOp::Equal,
                holder_record(held.epoch, &held.holder),
            )])
            .and_then([TxnOp::delete(holder_key)]);
        let resp = self.store.txn(txn).await?;
        match self.store.revoke(held.lease).await {
            Ok(()) | Err(Error::LeaseNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if resp.succeeded {
            tracing::info!(
                name = held.name,
                epoch = held.epoch,
                "writer lease released"
            );
        }
        Ok(resp.succeeded)
    }

    /// The current holder and epoch, if any.
    pub async fn holder(&self, name: &str) -> Result<Option<(String, u64)>> {
        check_name("lease name", name)?;
        match self.store.get(&self.holder_key(name)).await? {
            Some(v) => parse_holder(&v.value).map(|(e, h)| Some((h, e))),
            None => Ok(None),
        }
    }

    /// The last epoch handed out for `name` (0 if never held).
    pub async fn epoch(&self, name: &str) -> Result<u64> {
        check_name("lease name", name)?;
        match self.store.get(&self.epoch_key(name)).await? {
            Some(v) => parse_epoch(&v.value),
            None => Ok(0),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > LEASE_NAME_MAX_BYTES || name.chars().any(|c| c.is_control())
    {
        return Err(Error::InvalidArgument(format!(
            "{what} must be 1..={LEASE_NAME_MAX_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn holder_record(epoch: u64, holder: &str) -> Bytes {
    Bytes::from(format!("{epoch}\n{holder}"))
}

fn parse_holder(raw: &[u8]) -> Result<(u64, String)> {
    let text = std::str::from_utf8(raw).map_err(|_| corrupt_holder())?;
    let (epoch, holder) = text.split_once('\n').ok_or_else(corrupt_holder)?;
    let epoch = epoch.parse().map_err(|_| corrupt_holder())?;
    Ok((epoch, holder.to_owned()))
}

fn corrupt_holder() -> Error {
    Error::Corrupt("writer lease holder record".into())
}

fn parse_epoch(raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Corrupt("writer lease epoch record".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_record_round_trips() {
        assert_eq!(
            parse_holder(&holder_record(7, "node-a")).unwrap(),
            (7, "node-a".to_string())
        );
        assert!(parse_holder(b"x").is_err());
        assert!(check_name("h", "a\nb").is_err());
        assert!(check_name("h", "rbd/image-1").is_ok());
    }
}
