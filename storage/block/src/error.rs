//! What can go wrong in the block layer, in terms an operator can act on.

use cairn_node::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("image {0:?} does not exist")]
    NoSuchImage(String),
    #[error("image {0:?} already exists")]
    ImageExists(String),
    #[error("snapshot {snap:?} of image {image:?} does not exist")]
    NoSuchSnapshot { image: String, snap: String },
    #[error("snapshot {snap:?} of image {image:?} already exists")]
    SnapshotExists { image: String, snap: String },
    #[error("invalid: {0}")]
    Invalid(String),
    /// The operation conflicts with the image's state (snapshots, clones, protection).
    #[error("{0}")]
    Conflict(String),
    /// Another writer holds the image's writer lease.
    #[error("image {image:?} is open for writing by {holder} (epoch {epoch})")]
    Busy {
        image: String,
        holder: String,
        epoch: u64,
    },
    /// This writer was fenced off: another writer took the image over with a newer epoch.
    #[error("image {image:?}: this writer (epoch {epoch}) was fenced off by epoch {seen}")]
    Fenced {
        image: String,
        epoch: u64,
        seen: u64,
    },
    #[error("image {0:?} is read-only here (a snapshot, or opened for reading)")]
    ReadOnly(String),
    /// A flush could not make every acknowledged write durable on a write quorum.
    #[error("flush failed: {0}")]
    FlushFailed(String),
    #[error("storage: {0}")]
    Storage(#[from] ClientError),
    #[error("control plane: {0}")]
    Meta(#[from] cairn_meta::Error),
    #[error("corrupt image record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = BlockError> = std::result::Result<T, E>;
