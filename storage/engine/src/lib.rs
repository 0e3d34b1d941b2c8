//! `cairn-engine`: one device's local store, as a trait.
//!
//! **Must not depend on** RocksDB, sockets or any particular file layout: implementations live in
//! their own crates (`cairn-engine-rocksdb`), and every one of them passes the conformance suite
//! in this crate.

mod timestamp;

pub use timestamp::{HybridClock, Timestamp};
