//! One extent object's pieces, ordered by offset, in blocks that versions of the list share.
//!
//! Readers hold the cached list while a write builds the next version, so a write cannot change
//! the list in place. With one flat vector every write copied the whole list, and found the
//! pieces it hides by scanning all of them: an object written in random 4 KiB blocks holds a
//! thousand pieces or more, so random writes slowed down as objects aged (three times over, one
//! per replica). Now a write looks only at the pieces starting inside its range and copies only
//! the blocks it changes. (Tag order, which reads need, is restored by `extent::paint` over the
//! few pieces a read overlaps.)

use std::sync::Arc;

use cairn_engine::WriteTag;

use crate::keys::StoredPiece;

/// Pieces per block when a list is built; a block may grow to twice this before it is split.
const BLOCK_PIECES: usize = 64;

fn order(p: &StoredPiece) -> (u64, WriteTag) {
    (p.meta.offset, p.meta.tag)
}

/// `block`, unshared: copied if another version holds it, with room for one more piece — a
/// write that drops pieces from a block usually inserts its own there next, and a copy with no
/// room would be copied again to grow.
fn unshare(block: &mut Arc<Vec<StoredPiece>>) -> &mut Vec<StoredPiece> {
    if Arc::get_mut(block).is_none() {
        let mut copy = Vec::with_capacity(block.len() + 1);
        copy.extend_from_slice(block);
        *block = Arc::new(copy);
    }
    Arc::make_mut(block)
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PieceList {
    /// Non-empty blocks; the concatenation is in strictly increasing (offset, tag) order.
    blocks: Vec<Arc<Vec<StoredPiece>>>,
    len: usize,
    /// No piece has a newer tag than this (it may be older than it, after removals).
    newest: Option<WriteTag>,
}

impl PieceList {
    pub(crate) fn new(mut pieces: Vec<StoredPiece>) -> PieceList {
        pieces.sort_unstable_by_key(order);
        debug_assert!(pieces.windows(2).all(|w| order(&w[0]) < order(&w[1])));
        let len = pieces.len();
        let newest = pieces.iter().map(|p| p.meta.tag).max();
        let blocks = pieces
            .chunks(BLOCK_PIECES)
            .map(|c| Arc::new(c.to_vec()))
            .collect();
        PieceList {
            blocks,
            len,
            newest,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// No piece is newer than this.
    pub(crate) fn newest(&self) -> Option<WriteTag> {
        self.newest
    }

    /// The pieces by offset.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &StoredPiece> {
        self.blocks.iter().flat_map(|b| b.iter())
    }

    /// Drops every piece starting in `[start, end)` that `drop` picks (it sees each such piece
    /// once), copying only the blocks that lose one.
    pub(crate) fn remove_starting_in(
        &mut self,
        start: u64,
        end: u64,
        mut drop: impl FnMut(&StoredPiece) -> bool,
    ) {
        let first = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|l| l.meta.offset < start));
        let mut removed = 0;
        for block in self.blocks.iter_mut().skip(first) {
            if block.first().is_none_or(|f| f.meta.offset >= end) {
                break;
            }
            let candidate = |p: &StoredPiece| (start..end).contains(&p.meta.offset);
            let Some(hit) = block.iter().position(|p| candidate(p) && drop(p)) else {
                continue;
            };
            let b = unshare(block);
            removed += 1;
            let mut kept = hit;
            for i in hit + 1..b.len() {
                if candidate(&b[i]) && drop(&b[i]) {
                    removed += 1;
                } else {
                    b[kept] = b[i];
                    kept += 1;
                }
            }
            b.truncate(kept);
        }
        if removed == 0 {
            return;
        }
        self.blocks.retain(|b| !b.is_empty());
        self.len -= removed;
        // Many nearly empty blocks make every later scan pay for their headers: rebuild.
        if self.blocks.len() > 2 * self.len.div_ceil(BLOCK_PIECES) + 2 {
            *self = PieceList::new(self.iter().copied().collect());
        }
    }

    /// Drops every piece `drop` picks, wherever it starts.
    pub(crate) fn remove_where(&mut self, drop: impl FnMut(&StoredPiece) -> bool) {
        self.remove_starting_in(0, u64::MAX, drop);
    }

    /// Inserts `piece` in order (no piece with its offset and tag may be in the list); copies
    /// one block.
    pub(crate) fn insert(&mut self, piece: StoredPiece) {
        let key = order(&piece);
        // The last block starting at or before the piece (the first if none does).
        let index = self
            .blocks
            .partition_point(|b| b.first().is_some_and(|f| order(f) <= key))
            .saturating_sub(1);
        if self.blocks.is_empty() {
            self.blocks.push(Arc::new(Vec::with_capacity(BLOCK_PIECES)));
        }
        let block = unshare(&mut self.blocks[index]);
        let pos = block.partition_point(|p| order(p) < key);
        debug_assert!(block.get(pos).is_none_or(|p| order(p) != key));
        block.insert(pos, piece);
        if block.len() > 2 * BLOCK_PIECES {
            let tail = block.split_off(BLOCK_PIECES);
            self.blocks.insert(index + 1, Arc::new(tail));
        }
        self.len += 1;
        self.newest = self.newest.max(Some(piece.meta.tag));
    }

    /// The piece with `tag`, to change in place (its block is copied if shared). Changing its
    /// range is not allowed: the list would be out of order.
    pub(crate) fn get_mut(&mut self, tag: WriteTag) -> Option<&mut StoredPiece> {
        let (index, pos) = self
            .blocks
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.iter().position(|p| p.meta.tag == tag).map(|pos| (i, pos)))?;
        unshare(&mut self.blocks[index]).get_mut(pos)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::keys::PieceData;
    use cairn_engine::PieceMeta;

    fn piece(seq: u64) -> StoredPiece {
        StoredPiece {
            meta: PieceMeta {
                tag: WriteTag { epoch: 1, seq },
                offset: seq * 10,
                len_bytes: 10,
                data: false,
            },
            data: PieceData::None,
        }
    }

    fn seqs(l: &PieceList) -> Vec<u64> {
        l.iter().map(|p| p.meta.tag.seq).collect()
    }

    /// Against a plain sorted vector (offsets grow with tags here): inserts in and out of order,
    /// removals by predicate and by start range, in-place changes;
    /// a version taken before a change never sees it.
    #[test]
    fn behaves_as_a_sorted_vector_and_versions_stay_apart() {
        let mut list = PieceList::default();
        let mut model: Vec<u64> = Vec::new();
        let mut x: u64 = 7;
        for round in 0..3000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let before = list.clone();
            let before_model = model.clone();
            match (x >> 33) % 10 {
                0..=5 => {
                    // Mostly the newest; sometimes an older tag.
                    let seq = if (x >> 20).is_multiple_of(4) {
                        (x >> 40) % 5000
                    } else {
                        10_000 + round
                    };
                    if !model.contains(&seq) {
                        list.insert(piece(seq));
                        let at = model.partition_point(|s| *s < seq);
                        model.insert(at, seq);
                    }
                }
                6 | 7 => {
                    let m = 2 + (x >> 45) % 5;
                    list.remove_where(|p| p.meta.tag.seq.is_multiple_of(m));
                    model.retain(|s| !s.is_multiple_of(m));
                }
                8 => {
                    // Only pieces starting in the range are offered, each once.
                    let (a, b) = ((x >> 24) % 60_000, (x >> 24) % 60_000 + (x >> 50) % 30_000);
                    let mut offered = Vec::new();
                    list.remove_starting_in(a, b, |p| {
                        offered.push(p.meta.tag.seq);
                        p.meta.tag.seq % 3 != 0
                    });
                    let expected: Vec<u64> = model
                        .iter()
                        .copied()
                        .filter(|s| (a..b).contains(&(s * 10)))
                        .collect();
                    assert_eq!(offered, expected);
                    model.retain(|s| !(a..b).contains(&(s * 10)) || s % 3 == 0);
                }
                _ => {
                    if let Some(&seq) = model.get(usize::try_from((x >> 30) % 64).unwrap()) {
                        let tag = WriteTag { epoch: 1, seq };
                        let moved = PieceData::Log {
                            file: round,
                            offset: 0,
                        };
                        list.get_mut(tag).unwrap().data = moved;
                        assert_eq!(list.iter().find(|p| p.meta.tag == tag).unwrap().data, moved);
                        let kept = before.iter().find(|p| p.meta.tag == tag).unwrap().data;
                        assert_ne!(kept, moved, "an older version changed");
                    }
                }
            }
            assert_eq!(seqs(&list), model);
            assert_eq!(list.len(), model.len());
            assert_eq!(seqs(&before), before_model, "an older version changed");
        }
        assert!(list.get_mut(WriteTag { epoch: 9, seq: 0 }).is_none());
        assert!(list.newest() >= list.iter().map(|p| p.meta.tag).max());
    }
}
