//! The conformance suite: behaviour every [`StorageEngine`] must show. Implementations run it
//! with [`conformance_tests!`](crate::conformance_tests), passing an async factory returning
//! `(engine, guard)` (the guard keeps e.g. a temporary directory alive).
//!
//! This is test-support code: it panics on any deviation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::bool_assert_comparison
)]

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::limits::{CHUNK_MAX_BYTES, SMALL_BLOB_MAX_BYTES};
use crate::*;

/// Generates one `#[tokio::test]` per conformance case, each calling `$factory().await`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            blob_round_trip, blob_streaming_large, blob_ranges, blob_lww_and_tombstones,
            blob_abort_and_drop_leave_nothing, blob_size_mismatch_is_refused, blob_supplied_etag, blob_purge_and_quarantine, blob_promote,
            blob_written_around,
            tombstone_reclaim, compaction_keeps_live_data, digests_and_entries, extents_basic,
            extents_fencing, extents_concurrent_writes, extents_trim_and_delete, extents_snapshots_and_pieces,
            listings_merge_and_stats, listings_query,
            listing_info_merge, audit_walks_everything);
    };
    (@cases $factory:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (engine, _guard) = $factory().await;
                $crate::conformance::$case(&engine).await;
            }
        )*
    };
}

fn ts(wall_micros: u64) -> Timestamp {
    Timestamp {
        wall_micros,
        counter: 0,
        node: 1,
    }
}

/// Deterministic test bytes.
pub fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn commit(t: u64) -> BlobCommit {
    BlobCommit {
        timestamp: ts(t),
        content_type: "application/octet-stream".into(),
        user_meta: BTreeMap::from([("color".to_string(), "blue".to_string())]),
        etag: None,
    }
}

/// Writes a blob in `piece`-byte writes.
pub async fn put<E: StorageEngine>(e: &E, key: &BlobKey, data: &[u8], t: u64) -> WriteOutcome {
    let mut w = e
        .begin_blob(key.clone(), Some(data.len() as u64))
        .await
        .unwrap();
    for piece in data.chunks(100_000) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    w.commit(commit(t)).await.unwrap()
}

/// Reads a whole blob (or range), `None` if absent.
pub async fn get<E: StorageEngine>(
    e: &E,
    key: &BlobKey,
    range: Option<ByteRange>,
) -> Option<Vec<u8>> {
    let (_, mut r) = e.read_blob(key, range).await.unwrap()?;
    let mut out = Vec::new();
    while let Some(chunk) = r.next_chunk().await.unwrap() {
        assert!(chunk.len() <= CHUNK_MAX_BYTES);
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

pub async fn blob_round_trip<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(7, "/a/c/o");
    assert_eq!(put(e, &key, b"hello", 10).await, WriteOutcome::Applied);
    let meta = e.blob_meta(&key).await.unwrap().unwrap();
    assert_eq!(meta.size_bytes, 5);
    assert_eq!(meta.etag, "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(
        meta.user_meta.get("color").map(String::as_str),
        Some("blue")
    );
    assert!(!meta.tombstone);
    assert_eq!(get(e, &key, None).await.unwrap(), b"hello");
    let empty = BlobKey::new(7, "/a/c/empty");
    put(e, &empty, b"", 10).await;
    assert_eq!(get(e, &empty, None).await.unwrap(), b"");
    assert_eq!(
        e.blob_meta(&empty).await.unwrap().unwrap().etag,
        "d41d8cd98f00b204e9800998ecf8427e"
    );
    assert!(
        e.blob_meta(&BlobKey::new(8, "/a/c/o"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(e.health(), Health::Ok);
}

pub async fn blob_streaming_large<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(1, "/a/c/big");
    let data = body(SMALL_BLOB_MAX_BYTES as usize * 3 + 12_345, 3);
    put(e, &key, &data, 5).await;
    assert_eq!(get(e, &key, None).await.unwrap(), data);
    // Unknown size that turns out large.
    let key2 = BlobKey::new(1, "/a/c/big2");
    let mut w = e.begin_blob(key2.clone(), None).await.unwrap();
    for piece in data.chunks(7_777) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert_eq!(w.commit(commit(5)).await.unwrap(), WriteOutcome::Applied);
    assert_eq!(get(e, &key2, None).await.unwrap(), data);
    // Overwrite large with small and back.
    put(e, &key, b"small now", 6).await;
    assert_eq!(get(e, &key, None).await.unwrap(), b"small now");
    put(e, &key, &data[..300_000], 7).await;
    assert_eq!(get(e, &key, None).await.unwrap(), &data[..300_000]);
}

/// A copy written around the page cache (`write_around`) reads back exactly, whatever its size
/// and however the body was cut into writes, and its ranges and overwrites behave as usual.
pub async fn blob_written_around<E: StorageEngine>(e: &E) {
    let around = |n: Option<u64>| BlobWriteOptions {
        expected_size_bytes: n,
        etag: crate::etag::EtagSource::Computed,
        write_around: true,
    };
    let chunk = CHUNK_MAX_BYTES;
    let sizes = [
        SMALL_BLOB_MAX_BYTES as usize + 1,
        3 * chunk,
        1024 * 1024 + 12_345,
        5 * 1024 * 1024 + 1,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        let data = body(len, i as u8);
        for (j, (piece, announced)) in [(7_777, true), (3 * 1024 * 1024, true), (100_000, false)]
            .into_iter()
            .enumerate()
        {
            let key = BlobKey::new(3, format!("/a/c/around-{i}-{j}"));
            let size = announced.then_some(len as u64);
            let mut w = e.begin_blob_with(key.clone(), around(size)).await.unwrap();
            for part in data.chunks(piece) {
                w.write(Bytes::copy_from_slice(part)).await.unwrap();
            }
            assert_eq!(w.commit(commit(4)).await.unwrap(), WriteOutcome::Applied);
            assert!(
                get(e, &key, None).await.unwrap() == data,
                "{len} bytes in {piece}-byte writes"
            );
            let meta = e.blob_meta(&key).await.unwrap().unwrap();
            assert_eq!(meta.size_bytes, len as u64);
            let (s, en) = (len as u64 / 3, len as u64 - 1);
            let got = get(e, &key, Some(ByteRange { start: s, end: en }))
                .await
                .unwrap();
            assert!(got == data[s as usize..en as usize], "range of {len} bytes");
        }
    }
    // A cached overwrite replaces a copy written around.
    let key = BlobKey::new(3, "/a/c/around-0-0");
    put(e, &key, &body(400_000, 9), 5).await;
    assert_eq!(get(e, &key, None).await.unwrap(), body(400_000, 9));
    assert_eq!(e.health(), Health::Ok);
}

pub async fn blob_ranges<E: StorageEngine>(e: &E) {
    for (name, len) in [("/a/c/s", 100_000usize), ("/a/c/l", 400_000)] {
        let key = BlobKey::new(2, name);
        let data = body(len, 9);
        put(e, &key, &data, 1).await;
        for (s, en) in [
            (0u64, 1u64),
            (65_535, 65_537),
            (70_000, 200_000),
            (len as u64 - 1, len as u64 + 50),
        ] {
            let got = get(e, &key, Some(ByteRange { start: s, end: en }))
                .await
                .unwrap();
            let en = en.min(len as u64);
            assert_eq!(got, &data[s as usize..en as usize], "{name} {s}..{en}");
        }
        let err = e
            .read_blob(
                &key,
                Some(ByteRange {
                    start: len as u64,
                    end: len as u64 + 1,
                }),
            )
            .await;
        assert!(matches!(err, Err(Error::RangeNotSatisfiable { .. })));
    }
}

pub async fn blob_lww_and_tombstones<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(3, "/a/c/o");
    assert_eq!(put(e, &key, b"v2", 20).await, WriteOutcome::Applied);
    assert_eq!(
        put(e, &key, b"v1", 10).await,
        WriteOutcome::Lost { stored: ts(20) }
    );
    assert_eq!(
        put(e, &key, b"v2-again", 20).await,
        WriteOutcome::Lost { stored: ts(20) }
    );
    assert_eq!(get(e, &key, None).await.unwrap(), b"v2");
    assert_eq!(
        e.delete_blob(key.clone(), ts(15)).await.unwrap(),
        WriteOutcome::Lost { stored: ts(20) }
    );
    assert_eq!(
        e.delete_blob(key.clone(), ts(30)).await.unwrap(),
        WriteOutcome::Applied
    );
    assert!(get(e, &key, None).await.is_none());
    let meta = e.blob_meta(&key).await.unwrap().unwrap();
    assert!(meta.tombstone && meta.timestamp == ts(30));
    assert_eq!(
        put(e, &key, b"old", 25).await,
        WriteOutcome::Lost { stored: ts(30) }
    );
    assert_eq!(put(e, &key, b"v4", 40).await, WriteOutcome::Applied);
    assert_eq!(get(e, &key, None).await.unwrap(), b"v4");
}

pub async fn blob_abort_and_drop_leave_nothing<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(4, "/a/c/o");
    let mut w = e.begin_blob(key.clone(), None).await.unwrap();
    w.write(Bytes::from(body(500_000, 1))).await.unwrap();
    w.abort().await.unwrap();
    let mut w = e.begin_blob(key.clone(), None).await.unwrap();
    w.write(Bytes::from_static(b"x")).await.unwrap();
    drop(w);
    assert!(e.blob_meta(&key).await.unwrap().is_none());
    assert!(e.blob_digest(4).await.unwrap() == PartitionDigest::empty());
}

pub async fn blob_size_mismatch_is_refused<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(4, "/a/c/short");
    let mut w = e.begin_blob(key.clone(), Some(10)).await.unwrap();
    w.write(Bytes::from_static(b"123")).await.unwrap();
    assert!(matches!(w.commit(commit(1)).await, Err(Error::Invalid(_))));
    assert!(e.blob_meta(&key).await.unwrap().is_none());
    assert!(matches!(
        e.begin_blob(BlobKey::new(4, ""), None).await,
        Err(Error::Invalid(_))
    ));
}

/// A writer that hashed the body supplies the etag (small and large bodies); one that supplies
/// nothing, or a malformed etag, is refused; a supplied etag that contradicts the engine's own
/// hash is refused.
pub async fn blob_supplied_etag<E: StorageEngine>(e: &E) {
    use crate::etag::EtagSource;
    let supplied = |n| BlobWriteOptions {
        expected_size_bytes: Some(n),
        etag: EtagSource::Supplied,
        write_around: false,
    };
    let claimed = "0123456789abcdef0123456789abcdef".to_string();
    for (name, len) in [
        ("/a/c/small", 5usize),
        ("/a/c/large", SMALL_BLOB_MAX_BYTES as usize + 7),
    ] {
        let key = BlobKey::new(5, name);
        let data = body(len, 9);
        let begin = || e.begin_blob_with(key.clone(), supplied(len as u64));
        let mut w = begin().await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        assert!(
            matches!(w.commit(commit(1)).await, Err(Error::Invalid(_))),
            "{name}: no etag"
        );
        let mut w = begin().await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        let bad = BlobCommit {
            etag: Some("XYZ".into()),
            ..commit(1)
        };
        assert!(
            matches!(w.commit(bad).await, Err(Error::Invalid(_))),
            "{name}: bad etag"
        );
        assert!(e.blob_meta(&key).await.unwrap().is_none(), "{name}");
        let mut w = begin().await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        let good = BlobCommit {
            etag: Some(claimed.clone()),
            ..commit(2)
        };
        assert_eq!(w.commit(good).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            e.blob_meta(&key).await.unwrap().unwrap().etag,
            claimed,
            "{name}"
        );
        assert_eq!(get(e, &key, None).await.unwrap(), data, "{name}");
    }
    // Computed and supplied: they must agree.
    let key = BlobKey::new(5, "/a/c/both");
    let mut w = e.begin_blob(key.clone(), Some(5)).await.unwrap();
    w.write(Bytes::from_static(b"hello")).await.unwrap();
    let wrong = BlobCommit {
        etag: Some(claimed.clone()),
        ..commit(1)
    };
    assert!(matches!(w.commit(wrong).await, Err(Error::Invalid(_))));
    let mut w = e.begin_blob(key.clone(), Some(5)).await.unwrap();
    w.write(Bytes::from_static(b"hello")).await.unwrap();
    let right = BlobCommit {
        etag: Some("5d41402abc4b2a76b9719d911017c592".into()),
        ..commit(1)
    };
    assert_eq!(w.commit(right).await.unwrap(), WriteOutcome::Applied);
}

pub async fn blob_purge_and_quarantine<E: StorageEngine>(e: &E) {
    let key = BlobKey::new(5, "/a/c/o");
    put(e, &key, b"data", 10).await;
    assert!(!e.purge_blob(&key, ts(9)).await.unwrap());
    assert!(e.purge_blob(&key, ts(10)).await.unwrap());
    assert!(e.blob_meta(&key).await.unwrap().is_none());
    put(e, &key, &body(300_000, 2), 11).await;
    assert_eq!(e.quarantined_count().await.unwrap(), 0);
    assert!(!e.quarantine(&key, ts(10)).await.unwrap());
    assert!(e.quarantine(&key, ts(11)).await.unwrap());
    assert_eq!(e.quarantined_count().await.unwrap(), 1);
    assert!(e.blob_meta(&key).await.unwrap().is_none());
    // The replicator can now bring the same version back.
    assert_eq!(put(e, &key, b"again", 11).await, WriteOutcome::Applied);
}

pub async fn blob_promote<E: StorageEngine>(e: &E) {
    let staged = BlobKey::new(5 | (1 << 23), "/a/c/o");
    let live = BlobKey::new(5, "/a/c/o");
    for (t, len) in [(10u64, 4usize), (20, 300_000)] {
        put(e, &live, &body(len, 1), t).await;
        put(e, &staged, &body(len + 7, 2), t + 5).await;
        // Only the exact version moves.
        assert_eq!(
            e.promote_blob(&staged, &live, ts(t + 4)).await.unwrap(),
            None
        );
        assert_eq!(
            e.promote_blob(&staged, &live, ts(t + 5)).await.unwrap(),
            Some(WriteOutcome::Applied)
        );
        assert!(e.blob_meta(&staged).await.unwrap().is_none());
        let meta = e.blob_meta(&live).await.unwrap().unwrap();
        assert_eq!(
            (meta.timestamp, meta.size_bytes),
            (ts(t + 5), len as u64 + 7)
        );
        assert_eq!(get(e, &live, None).await.unwrap(), body(len + 7, 2));
        assert_eq!(
            meta.user_meta.get("color").map(String::as_str),
            Some("blue")
        );
    }
    // An older staged version loses to what is live, and is dropped all the same.
    put(e, &staged, b"old", 3).await;
    assert_eq!(
        e.promote_blob(&staged, &live, ts(3)).await.unwrap(),
        Some(WriteOutcome::Lost { stored: ts(25) })
    );
    assert!(e.blob_meta(&staged).await.unwrap().is_none());
    assert_eq!(get(e, &live, None).await.unwrap(), body(300_007, 2));
    // Live bytes count the live version once.
    assert_eq!(e.usage().await.unwrap().live_blob_bytes, 300_007);
    assert_eq!(e.promote_blob(&staged, &live, ts(3)).await.unwrap(), None);
}

pub async fn tombstone_reclaim<E: StorageEngine>(e: &E) {
    let old = BlobKey::new(6, "/a/c/old");
    let new = BlobKey::new(6, "/a/c/new");
    e.delete_blob(old.clone(), ts(1_000)).await.unwrap();
    e.delete_blob(new.clone(), ts(9_000)).await.unwrap();
    put(e, &BlobKey::new(6, "/a/c/live"), b"x", 1).await;
    assert_eq!(e.reclaim_tombstones(10_000, 5_000).await.unwrap(), 1);
    assert!(e.blob_meta(&old).await.unwrap().is_none());
    assert!(e.blob_meta(&new).await.unwrap().is_some());
    assert!(
        e.blob_meta(&BlobKey::new(6, "/a/c/live"))
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn compaction_keeps_live_data<E: StorageEngine>(e: &E) {
    for i in 0..40u64 {
        let key = BlobKey::new(9, format!("/a/c/{}", i % 10));
        put(e, &key, &body(20_000, i as u8), i + 1).await;
    }
    e.delete_blob(BlobKey::new(9, "/a/c/0"), ts(100))
        .await
        .unwrap();
    e.compact().await.unwrap();
    for i in 1..10u64 {
        let key = BlobKey::new(9, format!("/a/c/{i}"));
        assert_eq!(
            get(e, &key, None).await.unwrap(),
            body(20_000, (30 + i) as u8)
        );
    }
    assert!(get(e, &BlobKey::new(9, "/a/c/0"), None).await.is_none());
    // Writes after compaction still work.
    put(e, &BlobKey::new(9, "/a/c/after"), b"after", 1).await;
    assert_eq!(
        get(e, &BlobKey::new(9, "/a/c/after"), None).await.unwrap(),
        b"after"
    );
}

pub async fn digests_and_entries<E: StorageEngine>(e: &E) {
    let empty = e.blob_digest(10).await.unwrap();
    put(e, &BlobKey::new(10, "/a/c/x"), b"x", 1).await;
    e.delete_blob(BlobKey::new(10, "/a/c/y"), ts(2))
        .await
        .unwrap();
    put(e, &BlobKey::new(11, "/a/c/z"), b"z", 1).await;
    let d = e.blob_digest(10).await.unwrap();
    let mut expect = PartitionDigest::empty();
    expect.fold("/a/c/x", ts(1), false);
    expect.fold("/a/c/y", ts(2), true);
    assert_eq!(d, expect);
    let buckets = empty.differing_buckets(&d);
    let mut entries = e.blob_entries(10, &buckets).await.unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].size_bytes),
        ("/a/c/x", 1)
    );
    assert!(entries[1].tombstone);
    let parts = e.partitions().await.unwrap();
    assert!(parts.contains(&10) && parts.contains(&11));
    // Listing digests.
    let lk = ListingKey::new(10, "/a/c");
    e.merge_listing_entries(&lk, vec![entry("o", 3, false, 1)])
        .await
        .unwrap();
    let mut ld = PartitionDigest::empty();
    ld.fold("/a/c\0o", ts(3), false);
    assert_eq!(e.listing_digest(10).await.unwrap(), ld);
    let recs = e
        .listing_records(10, &PartitionDigest::empty().differing_buckets(&ld))
        .await
        .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].path, "/a/c");
}

fn ek(image: &str, object_no: u64) -> ExtentKey {
    ExtentKey {
        partition: 20,
        image: image.into(),
        object_no,
    }
}

fn tag(epoch: u64, seq: u64) -> WriteTag {
    WriteTag { epoch, seq }
}

/// Snapshot tags keep hidden pieces; `read_extent_pieces` gives each view's winners with tags;
/// piece metadata describes the object; unsynced changes are readable at once.
pub async fn extents_snapshots_and_pieces<E: StorageEngine>(e: &E) {
    let k = ek("snapimg", 0);
    let lazy = |keep: Vec<WriteTag>| ExtentWriteOpts {
        durable: false,
        keep,
        write_around: false,
    };
    let big = body(3 * CHUNK_MAX_BYTES + 100, 9);
    e.change_extent(
        &k,
        ExtentChange::Write {
            offset: 0,
            data: Bytes::from(big.clone()),
        },
        tag(1, 1),
        &lazy(vec![]),
    )
    .await
    .unwrap();
    // Snapshot at (1, 1): the overwrite below must not free the first piece.
    let snap = tag(1, 1);
    e.change_extent(
        &k,
        ExtentChange::Write {
            offset: 0,
            data: Bytes::from(vec![0xee; big.len()]),
        },
        tag(1, 2),
        &lazy(vec![snap]),
    )
    .await
    .unwrap();
    e.change_extent(
        &k,
        ExtentChange::Trim {
            offset: 10,
            len_bytes: 10,
        },
        tag(1, 3),
        &lazy(vec![snap]),
    )
    .await
    .unwrap();
    let len = big.len() as u64;
    let head = e.read_extent_pieces(&k, 0, len, None).await.unwrap();
    let head = extent::assemble(&head, 0, len).to_bytes();
    assert_eq!(&head[..10], &[0xee; 10]);
    assert_eq!(&head[10..20], &[0u8; 10]);
    assert_eq!(&head[20..], &vec![0xee; big.len() - 20][..]);
    // The snapshot's view, read across chunk boundaries.
    let off = CHUNK_MAX_BYTES as u64 - 7;
    let old = e
        .read_extent_pieces(&k, off, 2 * CHUNK_MAX_BYTES as u64, Some(snap))
        .await
        .unwrap();
    assert!(old.iter().all(|p| p.tag == snap));
    assert_eq!(
        extent::assemble(&old, off, 2 * CHUNK_MAX_BYTES as u64).to_bytes(),
        &big[off as usize..off as usize + 2 * CHUNK_MAX_BYTES]
    );
    let metas = e.extent_piece_metas(&k).await.unwrap();
    assert_eq!(metas.len(), 3);
    assert!(metas.iter().any(|m| m.tag == tag(1, 3) && !m.data));
    // Without the snapshot, the next covering write frees both older data pieces.
    e.change_extent(
        &k,
        ExtentChange::Write {
            offset: 0,
            data: Bytes::from(vec![1u8; big.len()]),
        },
        tag(1, 4),
        &lazy(vec![]),
    )
    .await
    .unwrap();
    let metas = e.extent_piece_metas(&k).await.unwrap();
    assert_eq!(metas.iter().map(|m| m.tag).collect::<Vec<_>>(), [tag(1, 4)]);
    assert!(
        e.read_extent_pieces(&k, 0, 8, Some(snap))
            .await
            .unwrap()
            .is_empty()
    );
    let inc = e.sync_extents().await.unwrap();
    assert_eq!(e.sync_extents().await.unwrap(), inc);
    assert!(
        e.extent_piece_metas(&ek("snapimg", 1))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn extents_basic<E: StorageEngine>(e: &E) {
    let k = ek("img", 0);
    let r = e.read_extent(&k, 0, 100).await.unwrap();
    assert_eq!(
        r.spans,
        vec![ExtentSpan::Hole {
            offset: 0,
            len_bytes: 100
        }]
    );
    e.write_extent(&k, 10, Bytes::from_static(b"aaaaaaaaaa"), tag(1, 2))
        .await
        .unwrap();
    // An older seq arriving later loses where they overlap.
    e.write_extent(&k, 15, Bytes::from_static(b"bbbbbbbbbb"), tag(1, 1))
        .await
        .unwrap();
    let r = e.read_extent(&k, 0, 30).await.unwrap();
    let mut want = vec![0u8; 30];
    want[10..20].copy_from_slice(b"aaaaaaaaaa");
    want[20..25].copy_from_slice(b"bbbbb");
    assert_eq!(r.to_bytes(), want);
    let big = body(1 << 20, 4);
    e.write_extent(&k, 4096, Bytes::from(big.clone()), tag(1, 3))
        .await
        .unwrap();
    let r = e.read_extent(&k, 4096, 1 << 20).await.unwrap();
    assert_eq!(r.to_bytes(), big);
    // Other objects are independent.
    assert_eq!(
        e.read_extent(&ek("img", 1), 0, 8).await.unwrap().to_bytes(),
        vec![0; 8]
    );
    assert!(e.partitions().await.unwrap().contains(&20));
}

pub async fn extents_fencing<E: StorageEngine>(e: &E) {
    let k = ek("fimg", 0);
    e.write_extent(&k, 0, Bytes::from_static(b"one"), tag(1, 1))
        .await
        .unwrap();
    assert_eq!(e.fence("fimg", 3).await.unwrap(), 3);
    assert_eq!(e.fence("fimg", 2).await.unwrap(), 3);
    let err = e
        .write_extent(&k, 0, Bytes::from_static(b"two"), tag(2, 9))
        .await;
    assert!(matches!(err, Err(Error::Fenced { seen: 3 })), "{err:?}");
    assert!(matches!(
        e.trim_extent(&k, 0, 3, tag(1, 9)).await,
        Err(Error::Fenced { seen: 3 })
    ));
    assert!(matches!(
        e.delete_extent_object(&k, tag(1, 9)).await,
        Err(Error::Fenced { seen: 3 })
    ));
    assert_eq!(e.read_extent(&k, 0, 3).await.unwrap().to_bytes(), b"one");
    e.write_extent(&k, 0, Bytes::from_static(b"new"), tag(3, 0))
        .await
        .unwrap();
    // A write at a newer epoch raises the fence too.
    e.write_extent(&k, 0, Bytes::from_static(b"new"), tag(4, 0))
        .await
        .unwrap();
    assert!(matches!(
        e.write_extent(&k, 0, Bytes::from_static(b"x"), tag(3, 5))
            .await,
        Err(Error::Fenced { seen: 4 })
    ));
    // Fencing is per image.
    e.write_extent(&ek("other", 0), 0, Bytes::from_static(b"ok"), tag(1, 1))
        .await
        .unwrap();
}

/// Many writes in flight at once (an engine may apply them in groups): each is answered on its
/// own, a stale epoch among them is refused without harming the others, later writes win
/// where they overlap, and a raise inside the burst fences what follows.
pub async fn extents_concurrent_writes<E: StorageEngine>(e: &E) {
    assert_eq!(e.fence("cimg", 2).await.unwrap(), 2);
    let block = 4096u64;
    // 48 writes at epoch 2, each overlapping the next by half a block, and 16 at epoch 1.
    let writes = (0..64u64).map(|i| {
        let (epoch, seq) = if i % 4 == 3 { (1, 100 + i) } else { (2, i) };
        let object = i % 2;
        let offset = (i / 2) * block / 2;
        let data = Bytes::from(vec![i as u8 + 1; block as usize]);
        async move {
            let r = e
                .write_extent(&ek("cimg", object), offset, data, tag(epoch, seq))
                .await;
            (i, epoch, r)
        }
    });
    let results = futures::future::join_all(writes).await;
    for (i, epoch, r) in &results {
        match epoch {
            2 => assert!(r.is_ok(), "write {i}: {r:?}"),
            _ => assert!(
                matches!(r, Err(Error::Fenced { seen: 2 })),
                "write {i}: {r:?}"
            ),
        }
    }
    // Expected bytes: for every object, each half block holds the newest accepted write.
    for object in 0..2u64 {
        let len = 33 * block / 2;
        let mut want = vec![0u8; len as usize];
        for i in (0..64u64).filter(|i| i % 2 == object && i % 4 != 3) {
            let offset = ((i / 2) * block / 2) as usize;
            want[offset..offset + block as usize].fill(i as u8 + 1);
        }
        let got = e.read_extent(&ek("cimg", object), 0, len).await.unwrap();
        assert_eq!(got.to_bytes(), want, "object {object}");
    }
    // A burst that raises the fence: afterwards the image has seen epoch 3.
    let raised_object = ek("cimg", 2);
    let raises = (0..8u64).map(|i| {
        e.write_extent(
            &raised_object,
            i * block,
            Bytes::from(vec![9u8; block as usize]),
            tag(3, i),
        )
    });
    for r in futures::future::join_all(raises).await {
        r.unwrap();
    }
    assert_eq!(e.fence("cimg", 2).await.unwrap(), 3);
    assert!(matches!(
        e.write_extent(&ek("cimg", 0), 0, Bytes::from_static(b"late"), tag(2, 999))
            .await,
        Err(Error::Fenced { seen: 3 })
    ));
}

pub async fn extents_trim_and_delete<E: StorageEngine>(e: &E) {
    let k = ek("timg", 5);
    e.write_extent(&k, 0, Bytes::from(vec![7u8; 100]), tag(1, 1))
        .await
        .unwrap();
    e.trim_extent(&k, 20, 30, tag(1, 2)).await.unwrap();
    let r = e.read_extent(&k, 0, 100).await.unwrap();
    assert_eq!(r.spans.len(), 3);
    assert!(matches!(
        r.spans[1],
        ExtentSpan::Hole {
            offset: 20,
            len_bytes: 30
        }
    ));
    e.delete_extent_object(&k, tag(1, 3)).await.unwrap();
    assert_eq!(
        e.read_extent(&k, 0, 100).await.unwrap().to_bytes(),
        vec![0; 100]
    );
    // A write from before the delete arriving late stays deleted; a newer one shows.
    e.write_extent(&k, 0, Bytes::from(vec![1u8; 10]), tag(1, 2))
        .await
        .unwrap();
    assert_eq!(
        e.read_extent(&k, 0, 10).await.unwrap().to_bytes(),
        vec![0; 10]
    );
    e.write_extent(&k, 0, Bytes::from(vec![2u8; 10]), tag(1, 4))
        .await
        .unwrap();
    assert_eq!(
        e.read_extent(&k, 0, 10).await.unwrap().to_bytes(),
        vec![2; 10]
    );
    assert!(matches!(
        e.write_extent(&k, 0, Bytes::from(vec![0u8; 10]), tag(1, 1))
            .await,
        Ok(())
    ));
    assert!(
        e.write_extent(&k, u64::MAX - 1, Bytes::from_static(b"xx"), tag(1, 9))
            .await
            .is_err()
    );
}

fn entry(name: &str, t: u64, deleted: bool, size_bytes: u64) -> ListingEntry {
    ListingEntry {
        name: name.into(),
        timestamp: ts(t),
        deleted,
        size_bytes,
        etag: "e".into(),
        content_type: "t".into(),
    }
}

pub async fn listings_merge_and_stats<E: StorageEngine>(e: &E) {
    let k = ListingKey::new(30, "/acct/cont");
    e.merge_listing_entries(&k, vec![entry("a", 2, false, 10), entry("b", 2, false, 5)])
        .await
        .unwrap();
    // Replays and older updates change nothing; a newer delete wins.
    e.merge_listing_entries(
        &k,
        vec![
            entry("a", 1, false, 99),
            entry("b", 3, true, 0),
            entry("a", 2, false, 10),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        e.listing_stats(&k).await.unwrap(),
        ListingStats {
            object_count: 1,
            bytes: 10
        }
    );
    let raw = e.listing_entries(&k, None, 100).await.unwrap();
    assert_eq!(raw.len(), 2);
    assert!(raw[1].deleted);
    assert_eq!(
        e.listing_entries(&k, Some("a"), 100).await.unwrap().len(),
        1
    );
    e.merge_listing_entries(&k, vec![entry("b", 4, false, 7)])
        .await
        .unwrap();
    assert_eq!(
        e.listing_stats(&k).await.unwrap(),
        ListingStats {
            object_count: 2,
            bytes: 17
        }
    );
    assert_eq!(
        e.listing_stats(&ListingKey::new(30, "/acct/none"))
            .await
            .unwrap(),
        ListingStats::default()
    );
}

pub async fn listings_query<E: StorageEngine>(e: &E) {
    let k = ListingKey::new(31, "/acct/cont");
    let other = ListingKey::new(31, "/acct/cont2");
    let names = ["a", "a/1", "a/2", "a/b/1", "b", "b/1", "c", "d/x/y", "e"];
    e.merge_listing_entries(&k, names.iter().map(|n| entry(n, 1, false, 1)).collect())
        .await
        .unwrap();
    e.merge_listing_entries(&k, vec![entry("c", 2, true, 0)])
        .await
        .unwrap();
    e.merge_listing_entries(&other, vec![entry("zz", 1, false, 1)])
        .await
        .unwrap();
    let kr = &k;
    let list = move |q: ListQuery| list_names(e, kr, q);
    let q = |f: &dyn Fn(&mut ListQuery)| {
        let mut q = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(
        list(q(&|_| {})).await.0,
        ["a", "a/1", "a/2", "a/b/1", "b", "b/1", "d/x/y", "e"]
    );
    assert_eq!(
        list(q(&|q| q.delimiter = Some("/".into()))).await.0,
        ["a", "a/*", "b", "b/*", "d/*", "e"]
    );
    assert_eq!(
        list(q(&|q| {
            q.delimiter = Some("/".into());
            q.limit = 2;
            q.marker = Some("a/".into());
        }))
        .await,
        (vec!["b".to_string(), "b/*".to_string()], true)
    );
    assert_eq!(
        list(q(&|q| {
            q.prefix = "a/".into();
            q.delimiter = Some("/".into());
        }))
        .await
        .0,
        ["a/1", "a/2", "a/b/*"]
    );
    assert_eq!(
        list(q(&|q| {
            q.marker = Some("a/2".into());
            q.end_marker = Some("d/x/y".into());
        }))
        .await
        .0,
        ["a/b/1", "b", "b/1"]
    );
    assert_eq!(
        list(q(&|q| {
            q.reverse = true;
            q.delimiter = Some("/".into());
        }))
        .await
        .0,
        ["e", "d/*", "b/*", "b", "a/*", "a"]
    );
    assert_eq!(
        list(q(&|q| {
            q.reverse = true;
            q.marker = Some("b/1".into());
            q.end_marker = Some("a/1".into());
        }))
        .await
        .0,
        ["b", "a/b/1", "a/2"]
    );
    assert_eq!(list(q(&|q| q.limit = 8)).await.1, false);
    assert_eq!(list(q(&|q| q.limit = 7)).await.1, true);
    assert!(
        e.list(&ListingKey::new(31, "/acct/none"), &q(&|_| {}))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn list_names<E: StorageEngine>(e: &E, k: &ListingKey, q: ListQuery) -> (Vec<String>, bool) {
    let page = e.list(k, &q).await.unwrap();
    let items = page
        .items
        .iter()
        .map(|i| match i {
            ListItem::Entry(en) => en.name.clone(),
            ListItem::Prefix(p) => format!("{p}*"),
        })
        .collect();
    (items, page.truncated)
}

pub async fn listing_info_merge<E: StorageEngine>(e: &E) {
    let k = ListingKey::new(32, "/acct");
    assert!(e.listing_info(&k).await.unwrap().is_none());
    let mut info = ListingInfo {
        created: Some(ts(5)),
        ..ListingInfo::default()
    };
    info.metadata.insert(
        "quota".into(),
        MetaValue {
            timestamp: ts(5),
            value: Some("10".into()),
        },
    );
    e.merge_listing_info(&k, info.clone()).await.unwrap();
    let mut older = ListingInfo {
        created: Some(ts(1)),
        deleted: Some(ts(3)),
        ..ListingInfo::default()
    };
    older.metadata.insert(
        "quota".into(),
        MetaValue {
            timestamp: ts(4),
            value: Some("1".into()),
        },
    );
    e.merge_listing_info(&k, older).await.unwrap();
    let got = e.listing_info(&k).await.unwrap().unwrap();
    assert_eq!(got.created, Some(ts(5)));
    assert_eq!(got.deleted, Some(ts(3)));
    assert!(got.exists());
    assert_eq!(got.metadata["quota"].value.as_deref(), Some("10"));
}

pub async fn audit_walks_everything<E: StorageEngine>(e: &E) {
    for i in 0..25u64 {
        put(
            e,
            &BlobKey::new(40 + (i % 2) as u32, format!("/a/c/{i:02}")),
            &body(1000 + i as usize * 20_000, 1),
            1,
        )
        .await;
    }
    e.delete_blob(BlobKey::new(40, "/a/c/zz"), ts(2))
        .await
        .unwrap();
    let mut after = None;
    let mut checked = 0;
    for _ in 0..100 {
        let report = e.audit(after, 7).await.unwrap();
        assert!(report.checked <= 7);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        checked += report.checked;
        after = report.next;
        if after.is_none() {
            break;
        }
    }
    assert!(after.is_none());
    assert_eq!(checked, 26);
}
