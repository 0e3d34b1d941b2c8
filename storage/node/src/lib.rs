//! `cairn-node`: the storage node, the cluster client, and the background processes that keep
//! replicas whole.
//!
//! - [`core`]: the cluster logic — quorums, handoffs, replication passes — as pure state
//!   machines, also driven by the seeded simulation in `tests/simulation.rs`.
//! - [`service`]: the node's RPC service over its devices' engines; [`rpc`] its messages.
//! - [`client`]: [`ClusterClient`], how everything above storage reads and writes.
//! - [`replicator`], [`auditor`], [`listing_updates`]: the background loops.
//! - [`node`]: starting a node from a [`config::NodeConfig`].
//!
//! **Must not depend on** RocksDB or sockets directly: storage goes through `cairn-engine`'s
//! trait (the binary picks the implementation) and the network through `cairn-net`.

pub mod auditor;
pub mod body_digest;
pub mod client;
pub mod config;
pub mod control;
pub mod core;
pub mod limits;
pub mod listing_updates;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod policy;
pub mod reconstructor;
pub mod replicator;
pub mod rpc;
pub mod service;

pub use client::extents::{ExtentAck, ExtentReplica, ExtentView};
pub use client::{ClientError, ClusterClient, ContainerInfo, ObjectPut, ObjectReader, Written};
pub use config::NodeConfig;
pub use node::{RunningNode, start_node, start_node_with_meta};
