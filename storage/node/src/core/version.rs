//! What one replica holds for a name: the version that wins by last-writer-wins.

use cairn_engine::Timestamp;
use serde::{Deserialize, Serialize};

/// A stored version of a name: when it was written and whether it is a delete.
///
/// Merge law (last writer wins): of two versions the one with the greater timestamp wins;
/// timestamps are unique cluster-wide (they carry the node id), so the merge is commutative,
/// associative and idempotent — replicas that exchange versions in any order converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub timestamp: Timestamp,
    pub tombstone: bool,
}

impl Version {
    /// True when `self` should replace `stored` (absent means nothing stored).
    pub fn supersedes(&self, stored: Option<&Version>) -> bool {
        stored.is_none_or(|s| self.timestamp > s.timestamp)
    }
}

/// A name and its version, as replicas compare them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryVersion {
    pub name: String,
    pub version: Version,
}
