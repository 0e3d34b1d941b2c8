//! `cairn-meta`: the control plane's small, strongly consistent metadata store.
//!
//! Owns the [`MetaStore`] trait (etcd's v3 model: revisions, compare-and-swap transactions,
//! watches from a revision, leases), its two backends — [`EmbeddedStore`] (redb, single node,
//! the default) and `EtcdStore` (feature `etcd`) — the run-time choice between them
//! ([`AnyMetaStore`], [`MetaConfig`]), writer leases with fencing epochs built once over the
//! trait ([`WriterLeases`]), and the conformance suite both backends pass (feature
//! `conformance`). Key layout conventions: `docs/meta.md`.
//!
//! **Must not depend on** RocksDB (only the storage engine touches it), the storage engine, the
//! ring or the RPC layer, and must never hold object data or listings: records here are small
//! and few, and every backend keeps them all in one strongly consistent place.

mod any;
mod clock;
mod embedded;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
pub mod identity;
pub mod limits;
pub mod rings;
mod store;
mod types;
mod writer_lease;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(all(feature = "conformance", feature = "etcd"))]
pub mod testing;

pub use any::{AnyMetaStore, MetaConfig};
pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use embedded::{DB_FILE_NAME, EmbeddedStore};
pub use error::{Error, Result};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdStore};
pub use identity::{IdentityError, IdentityMasterKey, IdentityStore};
pub use store::{MetaStore, WatchStream, lease_ttl_secs};
pub use types::*;
pub use writer_lease::{Acquire, Busy, Held, WRITER_LEASE_PREFIX, WriterLeases};
