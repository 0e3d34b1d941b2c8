//! Stripe and fragment tests: loss of any m fragments, corruption, wrong codec, rebuild.

// A panic in a test is a failed test, and test sizes are small.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use bytes::Bytes;
use cairn_erasure::{
    CodecId, EcError, EcParams, Fragment, HEADER_LEN, Striper, decode_segment, rebuild_fragments,
    shard_len,
};
use proptest::prelude::*;

fn object(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn striper(id: CodecId, k: usize, m: usize) -> Striper {
    Striper::new(id, EcParams::new(k, m), 1 << 20).unwrap()
}

fn without(frags: &[Fragment], lost: &[usize]) -> Vec<Fragment> {
    frags
        .iter()
        .filter(|f| !lost.contains(&usize::from(f.index)))
        .cloned()
        .collect()
}

/// All subsets of `0..n` of size `size`.
fn combinations(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|mask| mask.count_ones() as usize == size)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn four_plus_two_survives_every_loss_of_up_to_two() {
    for id in CodecId::ALL {
        let s = striper(id, 4, 2);
        for len in [0, 1, 255, 4096 + 3, (1 << 20) - 1, 1 << 20] {
            let obj = object(len, len as u64);
            let frags = s.encode_segment(&obj).unwrap();
            assert_eq!(frags.len(), 6);
            for lost in 0..=2 {
                for combo in combinations(6, lost) {
                    let rest = without(&frags, &combo);
                    assert_eq!(
                        decode_segment(&rest).unwrap(),
                        obj,
                        "{id} len {len} lost {combo:?}"
                    );
                    assert_eq!(s.decode_segment(&rest).unwrap(), obj);
                }
            }
            for combo in combinations(6, 3) {
                let err = decode_segment(&without(&frags, &combo)).unwrap_err();
                assert_eq!(
                    err,
                    EcError::NotEnoughFragments {
                        good: 3,
                        corrupt: 0,
                        duplicate: 0,
                        needed: 4
                    }
                );
            }
        }
    }
}

#[test]
fn eight_plus_three_survives_sampled_losses_of_three() {
    for id in CodecId::ALL {
        let s = striper(id, 8, 3);
        let obj = object(1 << 20, 11);
        let frags = s.encode_segment(&obj).unwrap();
        let all = combinations(11, 3);
        assert_eq!(all.len(), 165);
        // Every 7th combination plus the edge cases: all-data and all-parity losses.
        let mut sample: Vec<Vec<usize>> = all.into_iter().step_by(7).collect();
        sample.push(vec![0, 1, 2]);
        sample.push(vec![5, 6, 7]);
        sample.push(vec![8, 9, 10]);
        for combo in sample {
            let mut rest = without(&frags, &combo);
            rest.reverse();
            assert_eq!(decode_segment(&rest).unwrap(), obj, "{id} lost {combo:?}");
        }
    }
}

#[test]
fn corrupt_fragments_are_treated_as_missing() {
    for id in CodecId::ALL {
        let s = striper(id, 4, 2);
        let obj = object(100_000, 5);
        let mut frags = s.encode_segment(&obj).unwrap();
        // Flip a bit in a data shard and in a header field of another fragment.
        let mut shard = frags[1].shard.to_vec();
        shard[17] ^= 0x40;
        frags[1].shard = Bytes::from(shard);
        frags[4].crc32c ^= 1;
        assert!(matches!(
            frags[1].verify(),
            Err(EcError::ChecksumMismatch { index: 1, .. })
        ));
        assert_eq!(decode_segment(&frags).unwrap(), obj);
        // A third bad one leaves only 3 good: a clear error.
        let mut shard = frags[0].shard.to_vec();
        shard[0] ^= 1;
        frags[0].shard = Bytes::from(shard);
        assert_eq!(
            decode_segment(&frags).unwrap_err(),
            EcError::NotEnoughFragments {
                good: 3,
                corrupt: 3,
                duplicate: 0,
                needed: 4
            }
        );
    }
}

#[test]
fn duplicates_and_strangers() {
    let s = striper(CodecId::RsErasureGf8, 4, 2);
    let obj = object(5000, 1);
    let frags = s.encode_segment(&obj).unwrap();
    let dup = vec![
        frags[0].clone(),
        frags[0].clone(),
        frags[1].clone(),
        frags[4].clone(),
        frags[4].clone(),
    ];
    assert_eq!(
        decode_segment(&dup).unwrap_err(),
        EcError::NotEnoughFragments {
            good: 3,
            corrupt: 0,
            duplicate: 2,
            needed: 4
        }
    );
    let other = s.encode_segment(&object(5000, 2)).unwrap();
    let mixed = vec![
        frags[0].clone(),
        frags[1].clone(),
        frags[2].clone(),
        other[3].clone(),
    ];
    assert_eq!(
        decode_segment(&mixed).unwrap_err(),
        EcError::Inconsistent {
            what: "segment checksum"
        }
    );
    let simd = striper(CodecId::RsSimd, 4, 2).encode_segment(&obj).unwrap();
    let mixed = vec![frags[0].clone(), simd[1].clone()];
    assert_eq!(
        decode_segment(&mixed).unwrap_err(),
        EcError::Inconsistent { what: "codec" }
    );
    assert_eq!(decode_segment(&[]).unwrap_err(), EcError::NoFragments);
}

/// Relabel a stripe with the other codec (header rewritten, checksums recomputed, as a
/// metadata bug would): decoding from parity is caught by the segment checksum.
#[test]
fn wrong_codec_id_is_detected() {
    for (from, to) in [
        (CodecId::RsErasureGf8, CodecId::RsSimd),
        (CodecId::RsSimd, CodecId::RsErasureGf8),
    ] {
        for (k, m) in [(4, 2), (8, 3)] {
            let obj = object(300_000, 9);
            let frags = striper(from, k, m).encode_segment(&obj).unwrap();
            let relabeled: Vec<Fragment> = frags
                .iter()
                .map(|f| {
                    Fragment::new(
                        f.index,
                        to,
                        f.params,
                        f.segment_len,
                        f.segment_crc32c,
                        f.shard.clone(),
                    )
                })
                .collect();
            // All data present: no decoding, the codec does not matter.
            assert_eq!(decode_segment(&relabeled).unwrap(), obj);
            for lost in [vec![0], vec![1, 3]] {
                let err = decode_segment(&without(&relabeled, &lost)).unwrap_err();
                assert!(
                    matches!(err, EcError::SegmentChecksum { .. }),
                    "{from}->{to} {k}+{m} {lost:?}: {err}"
                );
            }
            // Only the codec byte changed, checksum left alone: the fragment itself fails.
            let mut bytes = frags[0].to_bytes();
            bytes[5] = to.wire_byte();
            assert!(matches!(
                Fragment::from_slice(&bytes),
                Err(EcError::ChecksumMismatch { .. })
            ));
        }
    }
}

#[test]
fn rebuild_lost_fragments() {
    for id in CodecId::ALL {
        let s = striper(id, 8, 3);
        let obj = object(777_777, 3);
        let frags = s.encode_segment(&obj).unwrap();
        for lost in [vec![0u8, 9], vec![8, 9, 10], vec![2, 5, 7]] {
            let idx: Vec<usize> = lost.iter().map(|&i| usize::from(i)).collect();
            let rest = without(&frags, &idx);
            let rebuilt = rebuild_fragments(&rest, &lost).unwrap();
            let rebuilt2 = s.rebuild_fragments(&rest, &lost).unwrap();
            assert_eq!(rebuilt, rebuilt2);
            for (f, &i) in rebuilt.iter().zip(&lost) {
                assert_eq!(f, &frags[usize::from(i)], "{id} rebuilt {i}");
            }
        }
        assert_eq!(
            rebuild_fragments(&frags, &[11]).unwrap_err(),
            EcError::IndexOutOfRange {
                index: 11,
                total: 11
            }
        );
    }
}

#[test]
fn fragments_round_trip_through_bytes() {
    let s = striper(CodecId::RsSimd, 4, 2);
    let obj = object(4321, 8);
    for f in s.encode_segment(&obj).unwrap() {
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN + shard_len(4321, 4));
        assert_eq!(Fragment::from_bytes(Bytes::from(bytes)).unwrap(), f);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes never parse and never panic.
    #[test]
    fn decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Fragment::from_slice(&bytes);
        let _ = Fragment::from_bytes(Bytes::from(bytes));
    }

    /// A valid header followed by random or cut bytes, and single-byte damage anywhere.
    #[test]
    fn decoder_rejects_truncated_and_damaged(
        len in 0usize..3000,
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        simd in any::<bool>(),
    ) {
        let id = if simd { CodecId::RsSimd } else { CodecId::RsErasureGf8 };
        let f = striper(id, 3, 2).encode_segment(&object(len, len as u64)).unwrap().remove(4);
        let bytes = f.to_bytes();
        let cut = cut.index(bytes.len());
        let truncated = Fragment::from_slice(&bytes[..cut]).unwrap_err();
        prop_assert!(
            matches!(truncated, EcError::Truncated { .. }),
            "cut at {}: {:?}", cut, truncated
        );
        let mut damaged = bytes.clone();
        damaged[at.index(bytes.len())] ^= xor;
        prop_assert!(Fragment::from_slice(&damaged).is_err());
        prop_assert_eq!(Fragment::from_slice(&bytes).unwrap(), f);
    }

    /// Any segment, both codecs, any loss of up to m fragments (and order shuffled).
    #[test]
    fn segments_round_trip(
        len in 0usize..20_000,
        k in 1usize..9,
        m in 1usize..4,
        simd in any::<bool>(),
        lose in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        rotate in any::<prop::sample::Index>(),
    ) {
        let id = if simd { CodecId::RsSimd } else { CodecId::RsErasureGf8 };
        let obj = object(len, (len * k) as u64);
        let frags = striper(id, k, m).encode_segment(&obj).unwrap();
        let lost: Vec<usize> = lose.iter().take(m).map(|i| i.index(k + m)).collect();
        let mut rest = without(&frags, &lost);
        let r = rotate.index(rest.len());
        rest.rotate_left(r);
        prop_assert_eq!(decode_segment(&rest).unwrap(), obj);
    }
}
