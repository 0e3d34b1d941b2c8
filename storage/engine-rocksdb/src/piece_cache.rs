//! Decoded piece records of recently used extent objects, so a block read does not iterate the
//! object's records in RocksDB every time (that scan was most of a 4 KiB read's CPU).
//!
//! The writer (`extent_writes`' committer, under the index lock) replaces an object's entry
//! once its batch is in the database. Readers fill missing entries without the lock, so a
//! reader that loaded records before a write landed must not install them afterwards: every
//! shard counts its writes, and a reader installs its load only if the count did not move
//! meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::piece_list::PieceList;

/// Shards, so readers of different objects rarely wait on one mutex.
const SHARDS: usize = 16;
/// Piece records kept per shard (about 64 bytes each): 16 × 65,536 ≈ 1 M records, ~64 MiB
/// per device at most.
const SHARD_PIECES_MAX: usize = 65_536;

#[derive(Debug, Default)]
struct Shard {
    writes: u64,
    pieces: usize,
    objects: HashMap<Vec<u8>, Arc<PieceList>>,
}

impl Shard {
    fn insert(&mut self, key: Vec<u8>, metas: Arc<PieceList>) {
        // An object with more records than a shard holds is simply not cached.
        if metas.len() > SHARD_PIECES_MAX {
            self.remove(&key);
            return;
        }
        self.pieces += metas.len();
        if let Some(old) = self.objects.insert(key, metas) {
            self.pieces -= old.len();
        }
        // Evict arbitrary entries (HashMap order) until under the limit: no recency is kept,
        // which costs some hit rate but no bookkeeping on the read path.
        while self.pieces > SHARD_PIECES_MAX {
            let Some(victim) = self.objects.keys().next().cloned() else {
                break;
            };
            self.remove(&victim);
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.objects.remove(key) {
            self.pieces -= old.len();
        }
    }
}

/// The cache of one device.
#[derive(Debug)]
pub(crate) struct PieceCache {
    shards: Vec<Mutex<Shard>>,
}

/// What a reader saw before loading from the database: pass it back to [`PieceCache::fill`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket {
    shard: usize,
    writes: u64,
}

impl Default for PieceCache {
    fn default() -> Self {
        PieceCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl PieceCache {
    fn shard_of(key: &[u8]) -> usize {
        // FNV-1a: cheap, and object keys differ in their last bytes (the object number).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        usize::try_from(h % SHARDS as u64).unwrap_or(0)
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached records of an object, or a ticket to fill them after loading.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Arc<PieceList>, FillTicket> {
        let shard = Self::shard_of(key);
        let s = self.lock(shard);
        match s.objects.get(key) {
            Some(m) => Ok(m.clone()),
            None => Err(FillTicket {
                shard,
                writes: s.writes,
            }),
        }
    }

    /// Installs what a reader loaded, unless a write to the shard happened since its ticket.
    pub(crate) fn fill(&self, key: &[u8], ticket: FillTicket, metas: Arc<PieceList>) {
        let mut s = self.lock(ticket.shard);
        if s.writes == ticket.writes {
            s.insert(key.to_vec(), metas);
        }
    }

    /// Records a write (call it once the write's batch is in the database, before the index
    /// lock is released): the object's records are now `metas`.
    pub(crate) fn written(&self, key: &[u8], metas: PieceList) {
        let mut s = self.lock(Self::shard_of(key));
        s.writes += 1;
        s.insert(key.to_vec(), Arc::new(metas));
    }

    /// Forgets an object (a write whose outcome is unknown, e.g. a failed batch).
    pub(crate) fn forget(&self, key: &[u8]) {
        let mut s = self.lock(Self::shard_of(key));
        s.writes += 1;
        s.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PieceData, StoredPiece};
    use cairn_engine::{PieceMeta, WriteTag};

    fn metas(n: usize) -> PieceList {
        PieceList::new(metas_vec(n))
    }

    fn metas_vec(n: usize) -> Vec<StoredPiece> {
        (0..n as u64)
            .map(|i| StoredPiece {
                meta: PieceMeta {
                    tag: WriteTag { epoch: 1, seq: i },
                    offset: i * 4096,
                    len_bytes: 4096,
                    data: false,
                },
                data: PieceData::None,
            })
            .collect()
    }

    #[test]
    fn a_load_that_raced_a_write_is_not_installed() {
        let c = PieceCache::default();
        let ticket = c.get(b"obj").unwrap_err();
        c.written(b"obj", metas(2));
        c.fill(b"obj", ticket, Arc::new(metas(1)));
        assert_eq!(c.get(b"obj").unwrap().len(), 2);
        c.forget(b"obj");
        let ticket = c.get(b"obj").unwrap_err();
        c.fill(b"obj", ticket, Arc::new(metas(3)));
        assert_eq!(c.get(b"obj").unwrap().len(), 3);
    }

    #[test]
    fn a_shard_stays_within_its_piece_limit() {
        let c = PieceCache::default();
        for i in 0..2_000u32 {
            c.written(&i.to_be_bytes(), metas(1_000));
        }
        for s in &c.shards {
            let s = s.lock().unwrap();
            assert!(s.pieces <= SHARD_PIECES_MAX);
            assert_eq!(s.pieces, s.objects.values().map(|m| m.len()).sum::<usize>());
        }
        c.written(b"huge", metas(SHARD_PIECES_MAX + 1));
        assert!(c.get(b"huge").is_err());
    }
}
