//! A group's appends to an *aligned* extent log file, which is written with `O_DIRECT` (see
//! `extent_log`): every write starts on a page, is whole pages long and comes from page-aligned
//! memory.
//!
//! A group's layout: a checksum block (the CRC32C of each chunk of each piece, in order, padded
//! to a page), then each piece's chunks, padded to a page. The checksum block comes first
//! because a piece's record, which says where its CRCs are, is made before the piece is pushed
//! (and pieces the group then refuses leave unused slots, zeros, in the block). Each piece
//! starts on a page, so a 4 KiB read of it touches one page.

use std::sync::Arc;

use cairn_engine::chunk::CRC_BYTES;

use crate::extent_log::{LOG_CHUNK_BYTES, LogFile, PieceIdentity};
use crate::keys::PieceData;

/// `O_DIRECT`'s alignment for offsets, lengths and memory: a page covers every logical block
/// size Linux block devices have.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// Bytes an aligned piece of `len_bytes` takes in its file: its chunks padded to whole pages and
/// its CRCs (the checksum block's padding is not any piece's, so it counts as garbage).
pub(crate) fn aligned_len(len_bytes: u64) -> u64 {
    len_bytes.next_multiple_of(DIRECT_ALIGN as u64) + chunks(len_bytes) * CRC_BYTES as u64
}

fn chunks(len_bytes: u64) -> u64 {
    len_bytes.div_ceil(LOG_CHUNK_BYTES as u64)
}

/// A byte buffer whose contents start on a [`DIRECT_ALIGN`] boundary. The backing `Vec` is
/// sized up front so it never moves while filled (and is reused from group to group).
#[derive(Debug)]
pub(crate) struct AlignedBuf {
    vec: Vec<u8>,
    /// Where the aligned contents start in `vec`.
    start: usize,
}

impl AlignedBuf {
    pub(crate) fn with_capacity(bytes: usize) -> AlignedBuf {
        let vec = Vec::with_capacity(bytes + DIRECT_ALIGN);
        let mut buf = AlignedBuf { vec, start: 0 };
        buf.clear();
        buf
    }

    /// Empties the buffer (keeping its allocation).
    fn clear(&mut self) {
        let misalign = self.vec.as_ptr().addr() % DIRECT_ALIGN;
        self.start = (DIRECT_ALIGN - misalign) % DIRECT_ALIGN;
        self.vec.clear();
        self.vec.resize(self.start, 0);
    }

    /// Empty, with room for `bytes` without moving.
    fn ready_for(mut self, bytes: usize) -> AlignedBuf {
        if self.vec.capacity() < bytes + DIRECT_ALIGN {
            return AlignedBuf::with_capacity(bytes);
        }
        self.clear();
        self
    }

    pub(crate) fn capacity(&self) -> usize {
        self.vec.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.vec.len() - self.start
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.vec[self.start..]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..]
    }

    /// Appends `data`. Past the reserved room the contents move to a new, aligned allocation
    /// (the sizing in [`AlignedAppend::max_len`] makes that a bug, but not a wrong write).
    pub(crate) fn extend(&mut self, data: &[u8]) {
        if self.vec.len() + data.len() > self.vec.capacity() {
            debug_assert!(false, "aligned buffer outgrew its reservation");
            let mut grown = AlignedBuf::with_capacity((self.len() + data.len()) * 2);
            grown.vec.extend_from_slice(self.as_slice());
            *self = grown;
        }
        self.vec.extend_from_slice(data);
    }

    /// Appends `n` zero bytes.
    fn extend_zeros(&mut self, n: usize) {
        if self.vec.len() + n > self.vec.capacity() {
            self.extend(&vec![0u8; n]);
        } else {
            self.vec.resize(self.vec.len() + n, 0);
        }
    }

    pub(crate) fn pad_to_alignment(&mut self) {
        self.extend_zeros(self.len().next_multiple_of(DIRECT_ALIGN) - self.len());
    }

    /// Makes room for `additional` more bytes without moving while they are added (moving the
    /// contents to a new aligned allocation now if needed).
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.vec.len() + additional > self.vec.capacity() {
            let mut grown = AlignedBuf::with_capacity(self.len() + additional);
            grown.vec.extend_from_slice(self.as_slice());
            *self = grown;
        }
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        let from = self.start + n;
        self.vec.copy_within(from.., self.start);
        self.vec.truncate(self.vec.len() - n);
    }

    pub(crate) fn is_aligned(&self) -> bool {
        self.as_slice().as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
            && self.len().is_multiple_of(DIRECT_ALIGN)
    }
}

/// One group's appends to the aligned file, written in one call by
/// `ExtentLog::finish_aligned`.
#[derive(Debug)]
pub(crate) struct AlignedAppend {
    pub(crate) file: Arc<LogFile>,
    /// Where the group starts in the file (page-aligned).
    pub(crate) base: u64,
    buf: AlignedBuf,
    /// Bytes of the checksum block at the front.
    crc_block: usize,
    /// CRCs pushed so far (slots used in the checksum block).
    crcs_used: usize,
    /// Bytes pushed pieces take (see [`aligned_len`]), to count as live once the batch is written.
    added: u64,
}

impl AlignedAppend {
    /// Bytes a group of pieces with `max_chunks` chunks and `max_padded_bytes` of data, each
    /// piece padded to a page, takes at most.
    pub(crate) fn max_len(max_chunks: u64, max_padded_bytes: u64) -> u64 {
        (max_chunks * CRC_BYTES as u64).next_multiple_of(DIRECT_ALIGN as u64) + max_padded_bytes
    }

    /// What `len_bytes` of data adds to a group's `(chunks, padded bytes)`.
    pub(crate) fn size_of(len_bytes: u64) -> (u64, u64) {
        (
            chunks(len_bytes),
            len_bytes.next_multiple_of(DIRECT_ALIGN as u64),
        )
    }

    pub(crate) fn new(
        file: Arc<LogFile>,
        base: u64,
        spare: Option<AlignedBuf>,
        max_chunks: u64,
        max_padded_bytes: u64,
    ) -> AlignedAppend {
        assert!(
            base.is_multiple_of(DIRECT_ALIGN as u64),
            "aligned appends start on a page"
        );
        let room = usize::try_from(AlignedAppend::max_len(max_chunks, max_padded_bytes))
            .unwrap_or(usize::MAX / 2);
        let mut buf = match spare {
            Some(b) => b.ready_for(room),
            None => AlignedBuf::with_capacity(room),
        };
        let crc_block = usize::try_from(max_chunks)
            .unwrap_or(0)
            .saturating_mul(CRC_BYTES)
            .next_multiple_of(DIRECT_ALIGN);
        buf.extend_zeros(crc_block);
        AlignedAppend {
            file,
            base,
            buf,
            crc_block,
            crcs_used: 0,
            added: 0,
        }
    }

    /// The record data of the next piece pushed.
    pub(crate) fn next_piece_data(&self) -> PieceData {
        PieceData::Aligned {
            file: self.file.id,
            offset: self.base + self.buf.len() as u64,
            crcs: self.base + (self.crcs_used * CRC_BYTES) as u64,
        }
    }

    /// Appends a piece's chunks (padded to a page) and their CRCs; returns its record data.
    pub(crate) fn push(&mut self, identity: &PieceIdentity, data: &[u8]) -> PieceData {
        let at = self.next_piece_data();
        for (c, part) in (0u64..).zip(data.chunks(LOG_CHUNK_BYTES)) {
            let slot = self.crcs_used * CRC_BYTES;
            assert!(
                slot + CRC_BYTES <= self.crc_block,
                "more chunks pushed than the group was sized for"
            );
            let crc = identity.chunk_crc(c, part).to_le_bytes();
            self.buf.as_mut_slice()[slot..slot + CRC_BYTES].copy_from_slice(&crc);
            self.crcs_used += 1;
        }
        self.buf.extend(data);
        self.buf.pad_to_alignment();
        self.added += aligned_len(data.len() as u64);
        at
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.crcs_used == 0
    }

    pub(crate) fn added(&self) -> u64 {
        self.added
    }

    /// What to write at `base`: whole pages from aligned memory.
    pub(crate) fn bytes(&self) -> &[u8] {
        assert!(self.buf.is_aligned(), "an O_DIRECT write must be aligned");
        self.buf.as_slice()
    }

    pub(crate) fn into_buf(self) -> AlignedBuf {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn aligned_buffers_stay_aligned_when_reused_and_grown() {
        let mut b = AlignedBuf::with_capacity(10_000);
        b.extend(&[1u8; 5000]);
        b.pad_to_alignment();
        assert!(b.is_aligned());
        assert_eq!(b.len(), 8192);
        let b = b.ready_for(100);
        assert_eq!(b.len(), 0);
        let mut b = b.ready_for(1 << 20);
        assert!(b.capacity() >= (1 << 20) + DIRECT_ALIGN);
        b.extend(&[7u8; 4096]);
        assert!(b.is_aligned());
        assert_eq!(b.as_slice(), &[7u8; 4096][..]);
    }

    #[test]
    fn sizes_cover_what_a_group_pushes() {
        assert_eq!(aligned_len(1), 4096 + 4);
        assert_eq!(aligned_len(65_536), 65_536 + 16 * 4);
        assert_eq!(aligned_len(65_537), 69_632 + 17 * 4);
        assert_eq!(AlignedAppend::size_of(5000), (2, 8192));
        // Two pieces of 5000 bytes: one checksum page, each padded to 8 KiB.
        assert_eq!(AlignedAppend::max_len(4, 2 * 8192), 4096 + 2 * 8192);
        assert_eq!(AlignedAppend::max_len(1025, 0), 2 * 4096);
    }
}
