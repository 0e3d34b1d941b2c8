//! Partition digests for the replicator: 256 buckets by name hash, each a 128-bit XOR fold of
//! BLAKE3 over (name, timestamp, tombstone). XOR makes the fold order-independent, so every
//! implementation computes the same digest however it iterates.

use crate::Timestamp;
use crate::limits::DIGEST_BUCKETS;

/// One partition's digest: `DIGEST_BUCKETS` folds. Equal buckets mean (with overwhelming
/// probability) equal contents; the replicator lists and syncs only buckets that differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDigest {
    pub buckets: Vec<u128>,
}

impl PartitionDigest {
    pub fn empty() -> PartitionDigest {
        PartitionDigest {
            buckets: vec![0; DIGEST_BUCKETS],
        }
    }

    /// Folds one item in (or out: XOR is its own inverse).
    pub fn fold(&mut self, name: &str, timestamp: Timestamp, tombstone: bool) {
        let bucket = bucket_of(name);
        if let Some(slot) = self.buckets.get_mut(usize::from(bucket)) {
            *slot ^= item_hash(name, timestamp, tombstone);
        }
    }

    /// Buckets whose folds differ from `other`'s.
    pub fn differing_buckets(&self, other: &PartitionDigest) -> Vec<u16> {
        (0..DIGEST_BUCKETS)
            .filter(|&i| self.buckets.get(i) != other.buckets.get(i))
            .filter_map(|i| u16::try_from(i).ok())
            .collect()
    }
}

/// The name a listing entry has in a partition's listing digest: its listing's path and its
/// own name, NUL-separated (NUL never occurs in either). Engines fold it into the digest and
/// bucket it; the replicator compares entries by it, so both must spell it this one way.
pub fn listing_item_name(path: &str, entry_name: &str) -> String {
    format!("{path}\0{entry_name}")
}

/// Which bucket a name falls in.
pub fn bucket_of(name: &str) -> u16 {
    let hash = blake3::hash(name.as_bytes());
    u16::from(hash.as_bytes()[0])
}

fn item_hash(name: &str, timestamp: Timestamp, tombstone: bool) -> u128 {
    let mut hasher = blake3::Hasher::new();
    // Length-prefix the name so (name, ts) pairs cannot collide by shifting bytes.
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&timestamp.to_bytes());
    hasher.update(&[u8::from(tombstone)]);
    let bytes = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes.as_bytes()[..16]);
    u128::from_le_bytes(first)
}
