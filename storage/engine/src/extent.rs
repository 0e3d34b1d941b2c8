//! Extent objects resolved from pieces: every write or trim is a piece tagged (epoch, seq); a
//! read paints pieces in tag order so the highest tag wins each byte, whatever the arrival order.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits::{EXTENT_IO_MAX_BYTES, EXTENT_OBJECT_MAX_BYTES};
use crate::types::{ExtentChange, ExtentRead, ExtentSpan, PieceMeta, WriteTag};

/// One write (`data: Some`) or trim (`data: None`) of `[offset, offset + len_bytes)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentPiece {
    pub tag: WriteTag,
    pub offset: u64,
    pub len_bytes: u64,
    pub data: Option<Bytes>,
}

impl ExtentPiece {
    pub fn end(&self) -> u64 {
        self.offset + self.len_bytes
    }

    /// Whether this piece is entirely hidden by `newer` (so it can be dropped).
    pub fn hidden_by(&self, newer: &ExtentPiece) -> bool {
        self.meta().hidden_by(&newer.meta(), &[])
    }

    pub fn meta(&self) -> PieceMeta {
        PieceMeta {
            tag: self.tag,
            offset: self.offset,
            len_bytes: self.len_bytes,
            data: self.data.is_some(),
        }
    }

    /// The part of this piece inside `[offset, offset + len_bytes)`, if any.
    pub fn clip(&self, offset: u64, len_bytes: u64) -> Option<ExtentPiece> {
        let start = self.offset.max(offset);
        let end = self.end().min(offset.saturating_add(len_bytes));
        if start >= end {
            return None;
        }
        let data = match &self.data {
            Some(d) => {
                let from = usize::try_from(start - self.offset).ok()?;
                let to = usize::try_from(end - self.offset).ok()?;
                Some(d.slice(from..to))
            }
            None => None,
        };
        Some(ExtentPiece {
            tag: self.tag,
            offset: start,
            len_bytes: end - start,
            data,
        })
    }
}

impl PieceMeta {
    pub fn end(&self) -> u64 {
        self.offset + self.len_bytes
    }

    /// Whether this piece can be dropped because `newer` covers it, given the image's snapshot
    /// tags `keep`: a snapshot taken between the two still sees this piece.
    pub fn hidden_by(&self, newer: &PieceMeta, keep: &[WriteTag]) -> bool {
        newer.tag > self.tag
            && newer.offset <= self.offset
            && newer.end() >= self.end()
            && !keep.iter().any(|s| self.tag <= *s && *s < newer.tag)
    }
}

/// Something painted by tag order: a piece with or without its bytes.
pub trait Tagged {
    fn tag(&self) -> WriteTag;
    fn range(&self) -> (u64, u64);
}

impl Tagged for ExtentPiece {
    fn tag(&self) -> WriteTag {
        self.tag
    }
    fn range(&self) -> (u64, u64) {
        (self.offset, self.end())
    }
}

impl Tagged for PieceMeta {
    fn tag(&self) -> WriteTag {
        self.tag
    }
    fn range(&self) -> (u64, u64) {
        (self.offset, self.end())
    }
}

/// Non-overlapping segments covering `[offset, offset + len_bytes)`, each with the piece that
/// wins it (highest tag), or `None` where no piece lies. Pieces tagged above `upto` are ignored,
/// which gives the view of a snapshot taken at `upto`.
pub fn paint<'a, T: Tagged>(
    pieces: impl IntoIterator<Item = &'a T>,
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
) -> Vec<(u64, u64, Option<&'a T>)> {
    let end = offset + len_bytes;
    // Only pieces overlapping the range matter: an object written in small random blocks has
    // thousands, a read touches a few.
    let mut order: Vec<&T> = pieces
        .into_iter()
        .filter(|p| upto.is_none_or(|u| p.tag() <= u))
        .filter(|p| {
            let (s, e) = p.range();
            s < end && e > offset
        })
        .collect();
    order.sort_by_key(|p| p.tag());
    let mut segs: Vec<(u64, u64, Option<&T>)> = vec![(offset, end, None)];
    for piece in order {
        let (s0, e0) = piece.range();
        let (ps, pe) = (s0.max(offset), e0.min(end));
        if ps >= pe {
            continue;
        }
        let mut next = Vec::with_capacity(segs.len() + 2);
        for (s, e, src) in segs {
            if e <= ps || s >= pe {
                next.push((s, e, src));
                continue;
            }
            if s < ps {
                next.push((s, ps, src));
            }
            next.push((s.max(ps), e.min(pe), Some(piece)));
            if e > pe {
                next.push((pe, e, src));
            }
        }
        segs = next;
    }
    segs
}

/// Checks an extent range against the limits.
pub fn validate_range(offset: u64, len_bytes: u64, whole_object: bool) -> Result<()> {
    let end = offset
        .checked_add(len_bytes)
        .ok_or_else(|| Error::Invalid("extent range overflows".into()))?;
    if end > EXTENT_OBJECT_MAX_BYTES {
        return Err(Error::Invalid(format!(
            "extent range ends at {end}, past the {EXTENT_OBJECT_MAX_BYTES}-byte object limit"
        )));
    }
    if !whole_object && len_bytes > EXTENT_IO_MAX_BYTES {
        return Err(Error::Invalid(format!(
            "extent I/O of {len_bytes} bytes exceeds {EXTENT_IO_MAX_BYTES}"
        )));
    }
    Ok(())
}

/// The piece a change stores, after checking its range against the limits.
pub fn piece_of(change: ExtentChange, tag: WriteTag) -> Result<ExtentPiece> {
    Ok(match change {
        ExtentChange::Write { offset, data } => {
            validate_range(offset, data.len() as u64, false)?;
            ExtentPiece {
                tag,
                offset,
                len_bytes: data.len() as u64,
                data: Some(data),
            }
        }
        ExtentChange::Trim { offset, len_bytes } => {
            validate_range(offset, len_bytes, true)?;
            ExtentPiece {
                tag,
                offset,
                len_bytes,
                data: None,
            }
        }
        ExtentChange::DeleteObject => delete_piece(tag),
    })
}

/// The piece a whole-object delete leaves behind so older writes arriving later stay hidden.
pub fn delete_piece(tag: WriteTag) -> ExtentPiece {
    ExtentPiece {
        tag,
        offset: 0,
        len_bytes: EXTENT_OBJECT_MAX_BYTES,
        data: None,
    }
}

/// Assembles `[offset, offset + len_bytes)` from `pieces` (any order).
pub fn assemble(pieces: &[ExtentPiece], offset: u64, len_bytes: u64) -> ExtentRead {
    assemble_upto(pieces, offset, len_bytes, None)
}

/// [`assemble`] as of the snapshot tag `upto` (`None`: the head).
pub fn assemble_upto(
    pieces: &[ExtentPiece],
    offset: u64,
    len_bytes: u64,
    upto: Option<WriteTag>,
) -> ExtentRead {
    let mut spans: Vec<ExtentSpan> = Vec::new();
    for (s, e, src) in paint(pieces, offset, len_bytes, upto) {
        match src.and_then(|p| p.data.as_ref().map(|d| (p, d))) {
            Some((p, data)) => {
                let from = usize::try_from(s - p.offset).unwrap_or(0);
                let to = usize::try_from(e - p.offset).unwrap_or(0);
                spans.push(ExtentSpan::Data {
                    offset: s,
                    data: data.slice(from..to),
                });
            }
            None => match spans.last_mut() {
                Some(ExtentSpan::Hole { len_bytes, .. }) => *len_bytes += e - s,
                _ => spans.push(ExtentSpan::Hole {
                    offset: s,
                    len_bytes: e - s,
                }),
            },
        }
    }
    ExtentRead { spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(epoch: u64, seq: u64, offset: u64, data: Option<&[u8]>, len: u64) -> ExtentPiece {
        ExtentPiece {
            tag: WriteTag { epoch, seq },
            offset,
            len_bytes: data.map_or(len, |d| d.len() as u64),
            data: data.map(Bytes::copy_from_slice),
        }
    }

    #[test]
    fn higher_tag_wins_whatever_the_order() {
        let a = piece(1, 5, 0, Some(b"aaaaaaaa"), 0);
        let b = piece(1, 3, 2, Some(b"bbbb"), 0);
        let c = piece(2, 0, 6, None, 4);
        let r = assemble(&[c, b, a], 0, 12);
        assert_eq!(r.to_bytes(), b"aaaaaa\0\0\0\0\0\0");
        assert!(matches!(
            r.spans.last(),
            Some(ExtentSpan::Hole {
                offset: 6,
                len_bytes: 6
            })
        ));
    }
}
