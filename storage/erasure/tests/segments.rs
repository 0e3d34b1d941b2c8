//! Byte ranges → segments → data shards.

// A panic in a test is a failed test, and test sizes are small.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use cairn_erasure::{
    EcError, data_shards_for_range, segment_bounds, segment_count, segments_for_range, shard_len,
};
use proptest::prelude::*;

#[test]
fn counts_and_bounds() {
    assert_eq!(segment_count(0, 10).unwrap(), 1);
    assert_eq!(segment_count(10, 10).unwrap(), 1);
    assert_eq!(segment_count(11, 10).unwrap(), 2);
    assert!(segment_count(5, 0).is_err());
    assert_eq!(segment_bounds(25, 10, 2).unwrap(), Some(20..25));
    assert_eq!(segment_bounds(25, 10, 3).unwrap(), None);
    assert_eq!(segment_bounds(0, 10, 0).unwrap(), Some(0..0));
}

#[test]
fn ranges() {
    let v: Vec<_> = segments_for_range(25, 10, 5..21).unwrap().collect();
    assert_eq!(v.len(), 3);
    assert_eq!((v[0].segment, v[0].within.clone()), (0, 5..10));
    assert_eq!((v[1].segment, v[1].within.clone()), (1, 0..10));
    assert_eq!(
        (v[2].segment, v[2].within.clone(), v[2].segment_len),
        (2, 0..1, 5)
    );
    assert_eq!(segments_for_range(25, 10, 5..21).unwrap().segments(), 0..3);
    assert_eq!(segments_for_range(25, 10, 7..7).unwrap().count(), 0);
    assert_eq!(
        segments_for_range(25, 10, 20..26).unwrap_err(),
        EcError::RangeOutOfBounds {
            start: 20,
            end: 26,
            len: 25
        }
    );
    assert_eq!(data_shards_for_range(1 << 20, 4, 0..1).unwrap(), 0..1);
    assert_eq!(
        data_shards_for_range(1 << 20, 4, (256 << 10) - 1..(256 << 10) + 1).unwrap(),
        0..2
    );
    assert_eq!(data_shards_for_range(1 << 20, 4, 0..1 << 20).unwrap(), 0..4);
    assert_eq!(data_shards_for_range(100, 4, 5..5).unwrap(), 0..0);
    assert!(data_shards_for_range(100, 4, 5..101).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The slices tile the range exactly, in order, each inside its segment.
    #[test]
    fn slices_tile_the_range(
        object_len in 0u64..100_000,
        segment_size in 1u64..5_000,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (x, y) = (a.index(object_len as usize + 1) as u64, b.index(object_len as usize + 1) as u64);
        let range = x.min(y)..x.max(y);
        let it = segments_for_range(object_len, segment_size, range.clone()).unwrap();
        let segs = it.segments();
        prop_assert_eq!(it.size_hint().0 as u64, segs.end - segs.start);
        let mut pos = range.start;
        let mut expected_segment = segs.start;
        for s in it {
            prop_assert_eq!(s.segment, expected_segment);
            expected_segment += 1;
            let bounds = segment_bounds(object_len, segment_size, s.segment).unwrap().unwrap();
            prop_assert_eq!(bounds.clone(), s.segment_start..s.segment_start + s.segment_len);
            prop_assert!(!s.within.is_empty());
            prop_assert!(s.within.end <= s.segment_len);
            prop_assert_eq!(s.segment_start + s.within.start, pos);
            pos = s.segment_start + s.within.end;
        }
        prop_assert_eq!(pos, range.end);
        prop_assert_eq!(expected_segment, segs.end);
        prop_assert!(segs.end <= segment_count(object_len, segment_size).unwrap());
    }

    /// The shards named hold exactly the bytes wanted (first and last shard overlap them).
    #[test]
    fn shards_cover_the_range(
        segment_len in 1u64..50_000,
        k in 1usize..12,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (x, y) = (a.index(segment_len as usize + 1) as u64, b.index(segment_len as usize + 1) as u64);
        let within = x.min(y)..x.max(y);
        let shards = data_shards_for_range(segment_len, k, within.clone()).unwrap();
        let len = shard_len(segment_len, k) as u64;
        if within.is_empty() {
            prop_assert!(shards.is_empty());
        } else {
            prop_assert!(shards.end <= k);
            prop_assert!(shards.start as u64 * len <= within.start);
            prop_assert!(shards.end as u64 * len >= within.end);
            prop_assert!((shards.start as u64 + 1) * len > within.start);
            prop_assert!((shards.end as u64 - 1) * len < within.end);
        }
    }
}
