//! A simulated device: what survives a crash is exactly what was synced.
//!
//! Writes become visible only once their (simulated) fsync completes, as in the engine, where a
//! blob is indexed only after its data and index are durable; a crash drops every write still
//! waiting for its sync.

use std::collections::BTreeMap;

use cairn_node::core::{EntryVersion, Version};

/// Digest buckets per partition: small, so a few objects already spread over several.
pub const DIGEST_BUCKETS: u16 = 16;

pub fn bucket_of(name: &str) -> u16 {
    u16::from(blake3::hash(name.as_bytes()).as_bytes()[0]) % DIGEST_BUCKETS
}

fn fold(name: &str, v: &Version) -> u128 {
    let mut h = blake3::Hasher::new();
    h.update(name.as_bytes());
    h.update(&v.timestamp.to_bytes());
    h.update(&[u8::from(v.tombstone)]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    u128::from_le_bytes(out)
}

#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    /// Durable state: (partition, name) → version.
    pub durable: BTreeMap<(u32, String), Version>,
}

impl SimDisk {
    /// Applies a synced write by last-writer-wins; true when it replaced what was there.
    pub fn apply(&mut self, part: u32, name: &str, v: Version) -> bool {
        let key = (part, name.to_string());
        if v.supersedes(self.durable.get(&key)) {
            self.durable.insert(key, v);
            true
        } else {
            false
        }
    }

    pub fn get(&self, part: u32, name: &str) -> Option<Version> {
        self.durable.get(&(part, name.to_string())).copied()
    }

    pub fn purge(&mut self, part: u32, entry: &EntryVersion) {
        let key = (part, entry.name.clone());
        if self.durable.get(&key) == Some(&entry.version) {
            self.durable.remove(&key);
        }
    }

    pub fn partitions(&self) -> Vec<u32> {
        let mut parts: Vec<u32> = self.durable.keys().map(|(p, _)| *p).collect();
        parts.dedup();
        parts
    }

    pub fn entries(&self, part: u32) -> impl Iterator<Item = EntryVersion> + '_ {
        self.durable
            .range((part, String::new())..)
            .take_while(move |((p, _), _)| *p == part)
            .map(|((_, name), v)| EntryVersion {
                name: name.clone(),
                version: *v,
            })
    }

    pub fn digest(&self, part: u32) -> Vec<u128> {
        let mut buckets = vec![0u128; DIGEST_BUCKETS as usize];
        for e in self.entries(part) {
            buckets[bucket_of(&e.name) as usize] ^= fold(&e.name, &e.version);
        }
        buckets
    }

    pub fn bucket_entries(&self, part: u32, buckets: Option<&[u16]>) -> Vec<(u16, EntryVersion)> {
        self.entries(part)
            .map(|e| (bucket_of(&e.name), e))
            .filter(|(b, _)| buckets.is_none_or(|bs| bs.contains(b)))
            .collect()
    }
}
