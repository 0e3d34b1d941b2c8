//! The piece shared by SLO and DLO reads: mapping a byte range of the
//! concatenated object onto per-segment reads.

/// One contiguous read from one segment object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRead {
    /// Container holding the segment.
    pub container: String,
    /// Segment object name.
    pub object: String,
    /// First byte to read, offset within the segment object.
    pub start: u64,
    /// One past the last byte to read, offset within the segment object.
    pub end: u64,
}

/// A segment as the planner sees it: where it lives and which slice of the
/// segment object contributes to the large object (`[offset, offset+len)`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece<'a> {
    pub container: &'a str,
    pub object: &'a str,
    pub offset: u64,
    pub len: u64,
}

/// Plans the reads for the inclusive byte range `range` (whole object when
/// `None`). Ranges past the end are clipped; an empty or inverted range
/// yields no reads. Zero-length pieces never produce a read.
pub(crate) fn plan<'a>(
    pieces: impl IntoIterator<Item = Piece<'a>>,
    range: Option<(u64, u64)>,
) -> Vec<SegmentRead> {
    let (want_start, want_end) = match range {
        None => (0u64, u64::MAX),
        Some((first, last)) if first <= last => (first, last.saturating_add(1)),
        Some(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    for p in pieces {
        if pos >= want_end {
            break;
        }
        let piece_end = pos.saturating_add(p.len);
        let from = want_start.max(pos);
        let to = want_end.min(piece_end);
        if from < to {
            out.push(SegmentRead {
                container: p.container.to_string(),
                object: p.object.to_string(),
                start: p.offset.saturating_add(from - pos),
                end: p.offset.saturating_add(to - pos),
            });
        }
        pos = piece_end;
    }
    out
}
