//! Corruption detection, reopen durability and quarantine on the RocksDB engine.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are failures

use std::os::unix::fs::FileExt;
use std::path::Path;

use cairn_engine::conformance::{body, get, put};
use cairn_engine::{BlobKey, BlobReader, Error, ExtentKey, StorageEngine, WriteTag};
use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};

async fn open(dir: &Path, io: IoChoice) -> RocksEngine {
    RocksEngine::open(EngineOptions {
        dir: dir.to_path_buf(),
        io,
    })
    .await
    .unwrap()
}

fn flip_byte_in(dir: &Path, at: u64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, at).unwrap();
    }
}

async fn read_err<E: StorageEngine>(e: &E, key: &BlobKey) -> Error {
    let (_, mut r) = e.read_blob(key, None).await.unwrap().unwrap();
    loop {
        match r.next_chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("corrupt blob read without error"),
            Err(e) => return e,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_are_detected_by_reads_and_audit() {
    for io in [IoChoice::Uring, IoChoice::Plain] {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), io).await;
        let small = BlobKey::new(1, "/a/c/small");
        let large = BlobKey::new(1, "/a/c/large");
        let fine = BlobKey::new(2, "/a/c/fine");
        put(&e, &small, &body(1000, 1), 1).await;
        put(&e, &large, &body(1_000_000, 2), 1).await;
        drop(e);
        // Corrupt the one segment (holding `small`) and the one large file, then add a good blob.
        flip_byte_in(&dir.path().join("segments"), 500);
        flip_byte_in(&dir.path().join("blobs"), 300_000);
        let e = open(dir.path(), io).await;
        put(&e, &fine, b"fine", 1).await;
        assert!(matches!(read_err(&e, &small).await, Error::Corrupt(_)));
        assert!(matches!(read_err(&e, &large).await, Error::Corrupt(_)));
        // A range that avoids the bad chunk still reads.
        let ok = get(
            &e,
            &large,
            Some(cairn_engine::ByteRange {
                start: 0,
                end: 1000,
            }),
        )
        .await
        .unwrap();
        assert_eq!(ok, &body(1_000_000, 2)[..1000]);
        assert_eq!(get(&e, &fine, None).await.unwrap(), b"fine");
        let report = e.audit(None, 100).await.unwrap();
        assert_eq!(report.checked, 3);
        let mut bad: Vec<_> = report.failures.iter().map(|f| f.key.name.clone()).collect();
        bad.sort();
        assert_eq!(bad, ["/a/c/large", "/a/c/small"]);
        for f in &report.failures {
            assert!(e.quarantine(&f.key, f.timestamp).await.unwrap());
        }
        assert_eq!(e.quarantined_count().await.unwrap(), 2);
        assert!(e.audit(None, 100).await.unwrap().failures.is_empty());
        assert!(e.blob_meta(&large).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), IoChoice::Auto).await;
    put(&e, &BlobKey::new(1, "/a/c/s"), b"small", 1).await;
    put(&e, &BlobKey::new(1, "/a/c/l"), &body(700_000, 5), 1).await;
    e.delete_blob(
        BlobKey::new(1, "/a/c/d"),
        cairn_engine::Timestamp {
            wall_micros: 3,
            counter: 0,
            node: 0,
        },
    )
    .await
    .unwrap();
    let ek = ExtentKey {
        partition: 3,
        image: "img".into(),
        object_no: 0,
    };
    e.write_extent(
        &ek,
        0,
        bytes::Bytes::from_static(b"ext"),
        WriteTag { epoch: 5, seq: 1 },
    )
    .await
    .unwrap();
    let usage = e.usage().await.unwrap();
    assert!(usage.total_bytes > 0 && usage.live_blob_bytes == 700_005);
    drop(e);
    let e = open(dir.path(), IoChoice::Auto).await;
    assert_eq!(
        get(&e, &BlobKey::new(1, "/a/c/s"), None).await.unwrap(),
        b"small"
    );
    assert_eq!(
        get(&e, &BlobKey::new(1, "/a/c/l"), None).await.unwrap(),
        body(700_000, 5)
    );
    assert!(
        e.blob_meta(&BlobKey::new(1, "/a/c/d"))
            .await
            .unwrap()
            .unwrap()
            .tombstone
    );
    assert_eq!(e.read_extent(&ek, 0, 3).await.unwrap().to_bytes(), b"ext");
    assert!(matches!(
        e.write_extent(
            &ek,
            0,
            bytes::Bytes::from_static(b"old"),
            WriteTag { epoch: 4, seq: 9 }
        )
        .await,
        Err(Error::Fenced { seen: 5 })
    ));
    assert_eq!(e.usage().await.unwrap().live_blob_bytes, 700_005);
    assert_eq!(e.partitions().await.unwrap(), [1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rewrites_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), IoChoice::Auto).await;
    for i in 0..30u64 {
        let key = BlobKey::new(1, format!("/a/c/{}", i % 5));
        put(&e, &key, &body(10_000, (i % 200) as u8), i + 1).await;
    }
    drop(e);
    // Reopening seals the old segment (83% garbage now).
    let e = open(dir.path(), IoChoice::Auto).await;
    let report = e.compact().await.unwrap();
    assert_eq!(report.segments_rewritten, 1, "{report:?}");
    assert!(report.bytes_reclaimed >= 200_000, "{report:?}");
    for i in 25..30u64 {
        let key = BlobKey::new(1, format!("/a/c/{}", i % 5));
        assert_eq!(
            get(&e, &key, None).await.unwrap(),
            body(10_000, (i % 200) as u8)
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count(),
        1
    );
    drop(e);
    let e = open(dir.path(), IoChoice::Plain).await;
    assert_eq!(
        get(&e, &BlobKey::new(1, "/a/c/4"), None).await.unwrap(),
        body(10_000, 29)
    );
    assert!(e.audit(None, 100).await.unwrap().failures.is_empty());
}
