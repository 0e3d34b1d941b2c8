//! Choosing a backend at run time: [`MetaConfig`] (the `[meta]` section of a role's config) and
//! [`AnyMetaStore`], an enum that implements [`MetaStore`] by delegating, so binaries hold one
//! concrete type whatever the operator picked.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::embedded::EmbeddedStore;
use crate::error::Result;
#[cfg(feature = "etcd")]
use crate::etcd::{EtcdConfig, EtcdStore};
use crate::store::{MetaStore, WatchStream};
use crate::types::{KeyRange, KeyValue, LeaseId, Revision, Txn, TxnResponse, Versioned};

/// Which backend to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetaConfig {
    /// The embedded single-node store in `dir`.
    Embedded {
        /// Directory holding the database file.
        dir: PathBuf,
    },
    /// An etcd cluster.
    #[cfg(feature = "etcd")]
    Etcd(EtcdConfig),
}

/// A store whose backend was picked at run time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyMetaStore {
    /// The embedded store.
    Embedded(EmbeddedStore),
    /// The etcd store.
    #[cfg(feature = "etcd")]
    Etcd(EtcdStore),
}

impl AnyMetaStore {
    /// Opens the configured backend.
    pub async fn open(config: &MetaConfig) -> Result<Self> {
        Ok(match config {
            MetaConfig::Embedded { dir } => AnyMetaStore::Embedded(EmbeddedStore::open(dir).await?),
            #[cfg(feature = "etcd")]
            MetaConfig::Etcd(c) => AnyMetaStore::Etcd(EtcdStore::connect(c).await?),
        })
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyMetaStore::Embedded($s) => $call,
            #[cfg(feature = "etcd")]
            AnyMetaStore::Etcd($s) => $call,
        }
    };
}

impl MetaStore for AnyMetaStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        delegate!(self, s => s.get(key).await)
    }

    async fn put(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        delegate!(self, s => s.put(key, value, lease).await)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        delegate!(self, s => s.delete(key).await)
    }

    async fn range(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        delegate!(self, s => s.range(range, limit).await)
    }

    async fn revision(&self) -> Result<Revision> {
        delegate!(self, s => s.revision().await)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        delegate!(self, s => s.txn(txn).await)
    }

    async fn watch(&self, prefix: &[u8], from_revision: Option<Revision>) -> Result<WatchStream> {
        delegate!(self, s => s.watch(prefix, from_revision).await)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        delegate!(self, s => s.compact(revision).await)
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        delegate!(self, s => s.grant(ttl).await)
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<Duration> {
        delegate!(self, s => s.keep_alive(id).await)
    }

    async fn revoke(&self, id: LeaseId) -> Result<()> {
        delegate!(self, s => s.revoke(id).await)
    }

    async fn lease_remaining(&self, id: LeaseId) -> Result<Option<Duration>> {
        delegate!(self, s => s.lease_remaining(id).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_from_toml_shape() {
        let c: MetaConfig =
            serde_json::from_str(r#"{"backend":"embedded","dir":"/var/lib/cairn/meta"}"#).unwrap();
        assert_eq!(
            c,
            MetaConfig::Embedded {
                dir: "/var/lib/cairn/meta".into()
            }
        );
        assert!(
            serde_json::from_str::<MetaConfig>(r#"{"backend":"embedded","dir":"x","y":1}"#)
                .is_err()
        );
    }
}
