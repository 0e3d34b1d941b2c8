//! The etcd backend (feature `etcd`): a thin mapping of [`MetaStore`] onto etcd's v3 API, which
//! has the same model, through the `etcd-client` crate. Every call has a timeout.
//!
//! etcd gives the guarantees: linearizable reads and writes (the client's default, not
//! serializable reads), one revision per transaction, leases expired by the leader.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp as EtcdCompareOp, ConnectOptions, EventType,
    GetOptions, PutOptions, Txn as EtcdTxn, TxnOp as EtcdTxnOp, TxnOpResponse, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::limits::{
    ETCD_CONNECT_TIMEOUT_MS_DEFAULT, ETCD_OP_TIMEOUT_MS_DEFAULT, WATCH_CHANNEL_EVENTS_MAX,
};
use crate::store::{CancelOnDrop, MetaStore, WatchStream, lease_ttl_secs};
use crate::types::{
    CompareOp, CompareTarget, EventKind, KeyRange, KeyValue, LeaseId, Revision, Txn, TxnOp,
    TxnOpResult, TxnResponse, Versioned, WatchEvent, check_key, check_limit, check_value,
};

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Timeout for each call.
    #[serde(default = "default_op_timeout_ms")]
    pub op_timeout_ms: u64,
    /// Timeout for connecting.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_op_timeout_ms() -> u64 {
    ETCD_OP_TIMEOUT_MS_DEFAULT
}

fn default_connect_timeout_ms() -> u64 {
    ETCD_CONNECT_TIMEOUT_MS_DEFAULT
}

impl EtcdConfig {
    /// A config for these endpoints with default timeouts.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            op_timeout_ms: ETCD_OP_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: ETCD_CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// A store backed by an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    // Boxed: the client is several KiB, and `AnyMetaStore` should stay small.
    client: Box<Client>,
    op_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects (bounded by `connect_timeout_ms`).
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument("etcd: no endpoints".into()));
        }
        let op_timeout = Duration::from_millis(config.op_timeout_ms);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let options = ConnectOptions::new()
            .with_connect_timeout(connect_timeout)
            .with_timeout(op_timeout);
        let client = tokio::time::timeout(
            connect_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: "etcd connect",
            timeout_ms: config.connect_timeout_ms,
        })??;
        tracing::info!(endpoints = ?config.endpoints, "connected to etcd");
        Ok(EtcdStore {
            client: Box::new(client),
            op_timeout,
        })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, f).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Timeout {
                operation,
                timeout_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

fn signed(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::InvalidArgument(format!("{v} exceeds etcd's range")))
}

fn unsigned(v: i64) -> u64 {
    // etcd never sends negative revisions or versions; treat one as "none".
    u64::try_from(v).unwrap_or(0)
}

/// Maps etcd's "lease not found" answers (a gRPC status on put/txn/revoke, a keep-alive error
/// from the client) to our error.
fn lease_error(e: Error, id: LeaseId) -> Error {
    let not_found = match &e {
        Error::Etcd(inner) => match inner.as_ref() {
            etcd_client::Error::LeaseKeepAliveError(_) => true,
            etcd_client::Error::GRpcStatus(status) => {
                status.message().contains("requested lease not found")
            }
            _ => false,
        },
        _ => false,
    };
    if not_found {
        Error::LeaseNotFound(id)
    } else {
        e
    }
}

fn lease_of_put(ops: &[TxnOp]) -> Option<LeaseId> {
    ops.iter().find_map(|op| match op {
        TxnOp::Put { lease, .. } => *lease,
        _ => None,
    })
}

fn versioned(kv: &etcd_client::KeyValue) -> Versioned {
    Versioned {
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: unsigned(kv.create_revision()),
        mod_revision: unsigned(kv.mod_revision()),
        version: unsigned(kv.version()),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    }
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue::new(Bytes::copy_from_slice(kv.key()), versioned(kv))
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| unsigned(h.revision()))
        .ok_or_else(|| Error::Protocol("etcd response without header".into()))
}

fn to_etcd_op(op: &TxnOp) -> EtcdTxnOp {
    match op {
        TxnOp::Get(k) => EtcdTxnOp::get(k.to_vec(), None),
        TxnOp::Put { key, value, lease } => EtcdTxnOp::put(
            key.to_vec(),
            value.to_vec(),
            lease.map(|l| PutOptions::new().with_lease(l.0)),
        ),
        TxnOp::Delete(k) => EtcdTxnOp::delete(k.to_vec(), None),
    }
}

fn to_etcd_compare(c: &crate::types::Compare) -> Result<EtcdCompare> {
    let op = match c.op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Greater => EtcdCompareOp::Greater,
        CompareOp::Less => EtcdCompareOp::Less,
    };
    let key = c.key.to_vec();
    Ok(match &c.target {
        CompareTarget::Value(v) => EtcdCompare::value(key, op, v.to_vec()),
        CompareTarget::Version(v) => EtcdCompare::version(key, op, signed(*v)?),
        CompareTarget::CreateRevision(r) => EtcdCompare::create_revision(key, op, signed(*r)?),
        CompareTarget::ModRevision(r) => EtcdCompare::mod_revision(key, op, signed(*r)?),
    })
}

/// The events of one watch response, or the error that ended the watch.
fn watch_events(resp: &etcd_client::WatchResponse, requested: Revision) -> Result<Vec<WatchEvent>> {
    if resp.canceled() {
        let compact = unsigned(resp.compact_revision());
        return Err(if compact > 0 {
            Error::Compacted {
                requested,
                oldest_available: compact,
            }
        } else {
            Error::Protocol(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            ))
        });
    }
    Ok(resp
        .events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            let kind = match ev.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            Some(WatchEvent {
                kind,
                kv: key_value(kv),
                revision: unsigned(kv.mod_revision()),
            })
        })
        .collect())
}

fn range_options(range: &KeyRange) -> (Vec<u8>, GetOptions) {
    let (start, end) = range.bounds();
    // etcd has no empty key; "\0" is the smallest key there is.
    let start = if start.is_empty() { vec![0] } else { start };
    let options = match end {
        Some(end) => GetOptions::new().with_range(end),
        None => GetOptions::new().with_from_key(),
    };
    (start, options)
}

impl MetaStore for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        check_key(key)?;
        let mut c = Client::clone(&self.client);
        let resp = self.timed("etcd get", c.get(key, None)).await?;
        Ok(resp.kvs().first().map(versioned))
    }

    async fn put(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        let mut c = Client::clone(&self.client);
        let options = lease.map(|l| PutOptions::new().with_lease(l.0));
        let resp = self
            .timed("etcd put", c.put(key, value.to_vec(), options))
            .await;
        let resp = match (resp, lease) {
            (Err(e), Some(id)) => return Err(lease_error(e, id)),
            (r, _) => r?,
        };
        header_revision(resp.header())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let mut c = Client::clone(&self.client);
        let resp = self.timed("etcd delete", c.delete(key, None)).await?;
        Ok(resp.deleted() > 0)
    }

    async fn range(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        check_limit(limit)?;
        let (start, options) = range_options(range);
        let options = options.with_limit(signed(limit as u64)?);
        let mut c = Client::clone(&self.client);
        let resp = self
            .timed("etcd range", c.get(start, Some(options)))
            .await?;
        Ok(resp.kvs().iter().map(key_value).collect())
    }

    async fn revision(&self) -> Result<Revision> {
        let mut c = Client::clone(&self.client);
        let options = GetOptions::new().with_count_only();
        let resp = self
            .timed("etcd revision", c.get("/", Some(options)))
            .await?;
        header_revision(resp.header())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        let compares = txn
            .compare
            .iter()
            .map(to_etcd_compare)
            .collect::<Result<Vec<_>>>()?;
        let etcd_txn = EtcdTxn::new()
            .when(compares)
            .and_then(txn.success.iter().map(to_etcd_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(to_etcd_op).collect::<Vec<_>>());
        let mut c = Client::clone(&self.client);
        let resp = match self.timed("etcd txn", c.txn(etcd_txn)).await {
            Ok(resp) => resp,
            Err(e) => {
                let lease = lease_of_put(&txn.success).or(lease_of_put(&txn.failure));
                return Err(match lease {
                    Some(id) => lease_error(e, id),
                    None => e,
                });
            }
        };
        let results = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => Ok(TxnOpResult::Get(g.kvs().first().map(versioned))),
                TxnOpResponse::Put(_) => Ok(TxnOpResult::Put),
                TxnOpResponse::Delete(d) => Ok(TxnOpResult::Delete(d.deleted() > 0)),
                TxnOpResponse::Txn(_) => Err(Error::Protocol("nested etcd transaction".into())),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header())?,
            results,
        })
    }

    async fn watch(&self, prefix: &[u8], from_revision: Option<Revision>) -> Result<WatchStream> {
        // "From now" is pinned to a concrete revision first: etcd registers a watch
        // asynchronously, and without a start revision a change racing the registration could
        // be missed.
        let start = match from_revision.filter(|r| *r > 0) {
            Some(r) => r,
            None => self.revision().await? + 1,
        };
        let options = if prefix.is_empty() {
            WatchOptions::new().with_all_keys()
        } else {
            WatchOptions::new().with_prefix()
        }
        .with_start_revision(signed(start)?);
        let key = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        let mut c = Client::clone(&self.client);
        let mut stream = self
            .timed("etcd watch", c.watch(key, Some(options)))
            .await?;
        // Wait for etcd to confirm the watch, so a refusal (compacted start) is this call's
        // error and a returned stream is known to be registered.
        let first = self
            .timed("etcd watch", stream.message())
            .await?
            .ok_or(Error::Closed)?;
        let first_events = watch_events(&first, start)?;
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_EVENTS_MAX);
        let pump = tokio::spawn(async move {
            let mut events = first_events;
            loop {
                for event in events {
                    // Waiting here back-pressures etcd's stream instead of dropping events.
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                let next = match stream.message().await {
                    Ok(Some(resp)) => watch_events(&resp, start),
                    Ok(None) => Err(Error::Closed),
                    Err(e) => Err(e.into()),
                };
                events = match next {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
            }
        });
        Ok(WatchStream::new(
            Vec::new(),
            rx,
            Some(CancelOnDrop(pump.abort_handle())),
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut c = Client::clone(&self.client);
        self.timed("etcd compact", c.compact(signed(revision)?, None))
            .await
            .map(|_| ())
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = signed(lease_ttl_secs(ttl)?)?;
        let mut c = Client::clone(&self.client);
        let resp = self
            .timed("etcd lease grant", c.lease_grant(secs, None))
            .await?;
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        let mut c = Client::clone(&self.client);
        let ttl = self
            .timed("etcd lease keep-alive", async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(id.0).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map_or(0, |r| r.ttl()))
            })
            .await
            .map_err(|e| lease_error(e, id))?;
        if ttl <= 0 {
            return Err(Error::LeaseNotFound(id));
        }
        Ok(Duration::from_secs(unsigned(ttl)))
    }

    async fn revoke(&self, id: LeaseId) -> Result<()> {
        let mut c = Client::clone(&self.client);
        self.timed("etcd lease revoke", c.lease_revoke(id.0))
            .await
            .map_err(|e| lease_error(e, id))
            .map(|_| ())
    }

    async fn lease_remaining(&self, id: LeaseId) -> Result<Option<Duration>> {
        let mut c = Client::clone(&self.client);
        let resp = self
            .timed("etcd lease ttl", c.lease_time_to_live(id.0, None))
            .await
            .map_err(|e| lease_error(e, id));
        match resp {
            Ok(r) if r.ttl() >= 0 => Ok(Some(Duration::from_secs(unsigned(r.ttl())))),
            Ok(_) | Err(Error::LeaseNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
