//! Cairn's front door: the S3 and Swift HTTP APIs over the cluster client, the identity admin
//! API, and the all-in-one `cairn up`. The `cairn` binary (src/main.rs) is a thin CLI over
//! this library.
//!
//! Protocol rules live in the pure crates `cairn-s3-proto` and `cairn-swift-proto`; this crate
//! does the I/O: it authenticates, maps requests onto [`objects::ObjectLayer`] and streams
//! bodies both ways ([`body`]).

pub mod account_stats;
pub mod admin;
pub mod admin_cli;
mod admin_images;
pub mod body;
pub mod cluster;
pub mod expirer;
pub mod image_cli;
pub mod nbd_serve;
pub mod node_engine;
pub mod objects;
pub mod policy;
pub mod s3;
pub mod server;
pub mod spool;
pub mod swift;
pub mod up;
