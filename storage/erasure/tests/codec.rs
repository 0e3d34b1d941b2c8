//! Codec-level tests: both implementations round-trip, refuse bad input, and differ.

// A panic in a test is a failed test, and test sizes are small.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use cairn_erasure::{CodecId, EcError, EcParams, codec};
use proptest::prelude::*;

fn data(k: usize, len: usize, seed: u8) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            (0..len)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8 ^ seed))
                .collect()
        })
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[test]
fn params_are_validated() {
    for id in CodecId::ALL {
        for (k, m) in [(0, 2), (4, 0), (200, 57), (usize::MAX, 1)] {
            assert!(
                matches!(
                    codec(id, EcParams::new(k, m)),
                    Err(EcError::InvalidParams { .. })
                ),
                "{id} {k}+{m}"
            );
        }
        assert!(codec(id, EcParams::new(200, 56)).is_ok());
        assert!(codec(id, EcParams::new(1, 1)).is_ok());
    }
}

#[test]
fn names_are_stable() {
    assert_eq!(
        serde_json::to_string(&CodecId::RsErasureGf8).unwrap(),
        "\"rs-erasure-gf8\""
    );
    assert_eq!(
        serde_json::to_string(&CodecId::RsSimd).unwrap(),
        "\"rs-simd\""
    );
    for id in CodecId::ALL {
        assert_eq!(id.name().parse::<CodecId>().unwrap(), id);
        assert_eq!(CodecId::from_wire_byte(id.wire_byte()).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CodecId>(&json).unwrap(), id);
    }
    assert!("rs".parse::<CodecId>().is_err());
    assert_eq!(CodecId::from_wire_byte(0), Err(EcError::UnknownCodec(0)));
}

#[test]
fn bad_shards_are_refused() {
    for id in CodecId::ALL {
        let c = codec(id, EcParams::new(4, 2)).unwrap();
        let d = data(4, 64, 1);
        assert!(matches!(
            c.encode(&refs(&d[..3])),
            Err(EcError::ShardCount { .. })
        ));
        let mut uneven = d.clone();
        uneven[2].push(0);
        assert!(matches!(
            c.encode(&refs(&uneven)),
            Err(EcError::ShardLen { .. })
        ));
        let empty = vec![Vec::new(); 4];
        assert!(matches!(
            c.encode(&refs(&empty)),
            Err(EcError::ShardLen { .. })
        ));
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; 6];
        shards[0] = Some(vec![0; 64]);
        assert_eq!(
            c.reconstruct(&mut shards),
            Err(EcError::TooFewShards {
                present: 1,
                needed: 4
            })
        );
        let mut short: Vec<Option<Vec<u8>>> = vec![Some(vec![0; 64]); 5];
        assert!(matches!(
            c.reconstruct(&mut short),
            Err(EcError::ShardCount { .. })
        ));
    }
    let odd = data(4, 63, 0);
    let simd = codec(CodecId::RsSimd, EcParams::new(4, 2)).unwrap();
    assert!(matches!(
        simd.encode(&refs(&odd)),
        Err(EcError::ShardLen { .. })
    ));
}

#[test]
fn the_two_codecs_compute_different_parity() {
    for (k, m) in [(4, 2), (8, 3)] {
        let d = data(k, 1024, 7);
        let a = codec(CodecId::RsErasureGf8, EcParams::new(k, m))
            .unwrap()
            .encode(&refs(&d))
            .unwrap();
        let b = codec(CodecId::RsSimd, EcParams::new(k, m))
            .unwrap()
            .encode(&refs(&d))
            .unwrap();
        assert_eq!(a.len(), m);
        assert_eq!(b.len(), m);
        assert_ne!(a, b, "{k}+{m}");
    }
}

/// Every pattern of up to m missing shards, exhaustively, for both codecs.
#[test]
fn reconstruct_every_loss_pattern() {
    for id in CodecId::ALL {
        for (k, m) in [(4, 2), (3, 3), (2, 1)] {
            let c = codec(id, EcParams::new(k, m)).unwrap();
            let d = data(k, 128, 3);
            let mut full: Vec<Option<Vec<u8>>> = d.iter().cloned().map(Some).collect();
            full.extend(c.encode(&refs(&d)).unwrap().into_iter().map(Some));
            let n = k + m;
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize > m {
                    continue;
                }
                let mut shards = full.clone();
                for (i, s) in shards.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        *s = None;
                    }
                }
                let mut data_only = shards.clone();
                c.reconstruct(&mut shards).unwrap();
                assert_eq!(shards, full, "{id} {k}+{m} mask {mask:b}");
                c.reconstruct_data(&mut data_only).unwrap();
                assert_eq!(data_only[..k], full[..k], "{id} {k}+{m} mask {mask:b}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_random(
        simd in any::<bool>(),
        k in 1usize..12,
        m in 1usize..5,
        half_len in 1usize..200,
        seed in any::<u8>(),
        lose in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let id = if simd { CodecId::RsSimd } else { CodecId::RsErasureGf8 };
        let c = codec(id, EcParams::new(k, m)).unwrap();
        let d = data(k, half_len * 2, seed);
        let mut full: Vec<Option<Vec<u8>>> = d.iter().cloned().map(Some).collect();
        full.extend(c.encode(&refs(&d)).unwrap().into_iter().map(Some));
        let mut shards = full.clone();
        for ix in lose.iter().take(m) {
            shards[ix.index(k + m)] = None;
        }
        c.reconstruct(&mut shards).unwrap();
        prop_assert_eq!(shards, full);
    }
}
