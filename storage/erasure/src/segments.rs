//! Objects as sequences of segments: which segments (and which bytes of them) a byte range
//! touches, and which data shards of a segment hold a range, for ranged reads.

use std::ops::Range;

use crate::error::{EcError, Result};
use crate::stripe::{MAX_SEGMENT_BYTES, shard_len};

/// Segments of an object of `object_len` bytes: `ceil(len / segment_size)`, and one (empty)
/// segment for an empty object, so that every object has a stripe to record it.
pub fn segment_count(object_len: u64, segment_size: u64) -> Result<u64> {
    check_segment_size(segment_size)?;
    Ok(object_len.div_ceil(segment_size).max(1))
}

/// Byte range of segment `index` within the object, or `None` past the last segment.
pub fn segment_bounds(
    object_len: u64,
    segment_size: u64,
    index: u64,
) -> Result<Option<Range<u64>>> {
    let count = segment_count(object_len, segment_size)?;
    if index >= count {
        return Ok(None);
    }
    let start = index * segment_size;
    Ok(Some(start..(start + segment_size).min(object_len)))
}

fn check_segment_size(segment_size: u64) -> Result<()> {
    if segment_size == 0 || segment_size > MAX_SEGMENT_BYTES {
        return Err(EcError::InvalidSegmentSize {
            size: segment_size,
            max: MAX_SEGMENT_BYTES,
        });
    }
    Ok(())
}

/// The part of one segment a byte range needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSlice {
    /// Segment number.
    pub segment: u64,
    /// Offset of the segment in the object.
    pub segment_start: u64,
    /// Real length of the segment.
    pub segment_len: u64,
    /// The bytes wanted, as offsets within the segment.
    pub within: Range<u64>,
}

/// The segments a byte range touches, in order, as an iterator (an object may have millions).
#[derive(Debug, Clone)]
pub struct SegmentSlices {
    object_len: u64,
    segment_size: u64,
    pos: u64,
    end: u64,
}

impl SegmentSlices {
    /// The segment numbers still to come.
    pub fn segments(&self) -> Range<u64> {
        if self.pos >= self.end {
            return 0..0;
        }
        self.pos / self.segment_size..self.end.div_ceil(self.segment_size)
    }
}

impl Iterator for SegmentSlices {
    type Item = SegmentSlice;

    fn next(&mut self) -> Option<SegmentSlice> {
        if self.pos >= self.end {
            return None;
        }
        let segment = self.pos / self.segment_size;
        let segment_start = segment * self.segment_size;
        let segment_end = (segment_start + self.segment_size).min(self.object_len);
        let end = self.end.min(segment_end);
        let slice = SegmentSlice {
            segment,
            segment_start,
            segment_len: segment_end - segment_start,
            within: self.pos - segment_start..end - segment_start,
        };
        self.pos = end;
        Some(slice)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = self.segments();
        let n = usize::try_from(r.end - r.start).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// The segments `range` of an object of `object_len` bytes needs, with the bytes of each.
/// The range must lie within the object (`start <= end <= object_len`); an empty range needs
/// no segment.
pub fn segments_for_range(
    object_len: u64,
    segment_size: u64,
    range: Range<u64>,
) -> Result<SegmentSlices> {
    check_segment_size(segment_size)?;
    if range.start > range.end || range.end > object_len {
        return Err(EcError::RangeOutOfBounds {
            start: range.start,
            end: range.end,
            len: object_len,
        });
    }
    Ok(SegmentSlices {
        object_len,
        segment_size,
        pos: range.start,
        end: range.end,
    })
}

/// Data shards of a segment of `segment_len` bytes (k data shards) that hold the bytes
/// `within` (offsets in the segment): a read of them alone needs no decoding when they are
/// all present. Empty for an empty range.
pub fn data_shards_for_range(
    segment_len: u64,
    k: usize,
    within: Range<u64>,
) -> Result<Range<usize>> {
    if within.start > within.end || within.end > segment_len || k == 0 {
        return Err(EcError::RangeOutOfBounds {
            start: within.start,
            end: within.end,
            len: segment_len,
        });
    }
    if within.is_empty() {
        return Ok(0..0);
    }
    let len = shard_len(segment_len, k) as u64;
    let first = usize::try_from(within.start / len).unwrap_or(usize::MAX);
    let last = usize::try_from((within.end - 1) / len).unwrap_or(usize::MAX);
    Ok(first..last + 1)
}
