//! The newest fencing epoch seen per image, so an extent write does not read its image's fence
//! record from RocksDB every time (that lookup was a fifth of a 4 KiB write's engine time).
//!
//! Fence records change only in batches built after `records::fence_decision` (a group's extent
//! writes, a fence call), written under the index lock; the cache is updated under the same lock
//! once such a batch is in the database, so a cached epoch is never older than the record. A
//! missing entry is simply read again.

use std::collections::HashMap;
use std::sync::Mutex;

/// Images whose fence is remembered; beyond this an arbitrary entry is dropped (a fence is
/// 8 bytes plus the image name: ~1 MiB at most).
const FENCES_MAX: usize = 8_192;

#[derive(Debug, Default)]
pub(crate) struct FenceCache {
    epochs: Mutex<HashMap<String, u64>>,
}

impl FenceCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.epochs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The image's fence if cached. Call under the index lock.
    pub(crate) fn get(&self, image: &str) -> Option<u64> {
        self.lock().get(image).copied()
    }

    /// Records the image's fence as stored in the database. Call under the index lock.
    pub(crate) fn stored(&self, image: &str, epoch: u64) {
        let mut m = self.lock();
        if m.len() >= FENCES_MAX
            && !m.contains_key(image)
            && let Some(victim) = m.keys().next().cloned()
        {
            m.remove(&victim);
        }
        m.insert(image.to_string(), epoch);
    }

    /// Forgets an image (a fence write whose outcome is unknown).
    pub(crate) fn forget(&self, image: &str) {
        self.lock().remove(image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_updates_forgets_and_stays_bounded() {
        let c = FenceCache::default();
        assert_eq!(c.get("a"), None);
        c.stored("a", 3);
        c.stored("a", 5);
        assert_eq!(c.get("a"), Some(5));
        c.forget("a");
        assert_eq!(c.get("a"), None);
        for i in 0..FENCES_MAX + 10 {
            c.stored(&format!("img{i}"), 1);
        }
        assert_eq!(c.lock().len(), FENCES_MAX);
        assert_eq!(c.get(&format!("img{}", FENCES_MAX + 9)), Some(1));
    }
}
