//! `cairn-engine`: one device's local store, as a trait.
//!
//! Owns the [`StorageEngine`] trait and the types of what a device stores (blobs, extent objects,
//! listings), the rules every implementation shares (last-writer-wins, listing semantics, extent
//! resolution, digests, CRC32C chunking), an in-memory reference engine ([`MemoryEngine`]) and
//! the conformance suite (feature `conformance`).
//!
//! **Must not depend on** RocksDB, sockets or any particular file layout: implementations live in
//! their own crates (`cairn-engine-rocksdb`), and every one of them passes the conformance suite
//! in this crate.

pub mod chunk;
pub mod digest;
mod engine;
mod error;
pub mod etag;
pub mod extent;
pub mod limits;
pub mod listing;
mod memory;
mod timestamp;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use digest::PartitionDigest;
pub use engine::{BlobReader, BlobWriter, StorageEngine};
pub use error::{Error, Result};
pub use memory::{MemoryEngine, MemoryReader, MemoryWriter, clamp_range};
pub use timestamp::{HybridClock, Timestamp};
pub use types::*;
