//! `cairn-node`: the storage node, the cluster client, and the background processes that keep
//! replicas whole.
//!
//! [`core`] holds the cluster logic — quorums, handoffs, replication passes — as pure state
//! machines; the services around them supply sockets, disks and clocks.
//!
//! **Must not depend on** RocksDB or sockets directly: storage goes through `cairn-engine`'s
//! trait and the network through `cairn-net`.

pub mod core;
