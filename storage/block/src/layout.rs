//! Striping: how an image's byte range maps onto its objects (pure).

/// The part of an image range that falls in one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRange {
    pub object_no: u64,
    /// Offset inside the object.
    pub offset: u64,
    pub len_bytes: u64,
    /// Offset of this part inside the caller's buffer (from the range's start).
    pub buffer_offset: u64,
}

/// Splits `[offset, offset + len_bytes)` of an image with 2^`order`-byte objects.
pub fn split(order: u8, offset: u64, len_bytes: u64) -> Vec<ObjectRange> {
    let object = 1u64 << order;
    let mut out = Vec::new();
    let mut at = offset;
    let end = offset.saturating_add(len_bytes);
    while at < end {
        let object_no = at >> order;
        let inside = at & (object - 1);
        let len = (object - inside).min(end - at);
        out.push(ObjectRange {
            object_no,
            offset: inside,
            len_bytes: len,
            buffer_offset: at - offset,
        });
        at += len;
    }
    out
}

/// [`split`], with parts cut further to at most `io_max_bytes` (one extent call each).
pub fn split_io(order: u8, offset: u64, len_bytes: u64, io_max_bytes: u64) -> Vec<ObjectRange> {
    let mut out = Vec::new();
    for p in split(order, offset, len_bytes) {
        let mut done = 0;
        while done < p.len_bytes {
            let len = (p.len_bytes - done).min(io_max_bytes);
            out.push(ObjectRange {
                object_no: p.object_no,
                offset: p.offset + done,
                len_bytes: len,
                buffer_offset: p.buffer_offset + done,
            });
            done += len;
        }
    }
    out
}

/// Objects an image of `size_bytes` spans.
pub fn object_count(order: u8, size_bytes: u64) -> u64 {
    size_bytes.div_ceil(1u64 << order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parts_tile_the_range(order in 12u8..=25, offset in 0u64..(1 << 30), len in 0u64..(1 << 27)) {
            let parts = split(order, offset, len);
            let mut expect = 0u64;
            for p in &parts {
                prop_assert_eq!(p.buffer_offset, expect);
                prop_assert!(p.len_bytes > 0 && p.offset + p.len_bytes <= 1 << order);
                prop_assert_eq!((p.object_no << order) + p.offset, offset + expect);
                expect += p.len_bytes;
            }
            prop_assert_eq!(expect, len);
        }
    }
}
