//! The block layer: RBD-style images striped over the cluster's extent objects (thin,
//! snapshots, clones, fencing by writer epoch) and the NBD server that exports them.
//!
//! - [`header`], [`layout`]: what an image is and how its bytes map onto objects (pure).
//! - [`catalog`]: image headers in the control plane, changed by compare-and-swap.
//! - [`layer`]: the read path through an image and its parents.
//! - [`image`]: an open image — reads, writes, trims, flushes with durability accounting.
//! - [`service`]: management (create, resize, snapshots, clones, flatten, diff) and the
//!   one-writer-per-image handles.
//! - [`nbd`]: the NBD protocol server; [`exports`] serves images through it.
//!
//! **Must not** touch sockets other than the NBD listener, nor storage other than through
//! `cairn-node`'s cluster client.

pub mod catalog;
pub mod error;
pub mod exports;
pub mod header;
pub mod image;
pub mod layer;
pub mod layout;
pub mod limits;
pub mod nbd;
pub mod service;

pub use error::{BlockError, Result};
pub use header::{ImageHeader, ParentRef, Snapshot};
pub use image::Image;
pub use layer::{Allocation, ReadSpan};
pub use service::{BlockService, DiffExtent, ImageInfo};
