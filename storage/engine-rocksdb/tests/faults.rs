//! Disk full and failed fsync, injected through failpoints (feature `failpoints`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are failures
#![cfg(feature = "failpoints")]

use cairn_engine::conformance::{body, get, put};
use cairn_engine::{
    BlobCommit, BlobKey, BlobWriter, Error, Health, ListingKey, StorageEngine, Timestamp,
};
use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};

async fn try_put(e: &RocksEngine, key: &BlobKey, len: usize, t: u64) -> Result<(), Error> {
    let mut w = e.begin_blob(key.clone(), None).await?;
    w.write(bytes::Bytes::from(body(len, 1))).await?;
    let commit = BlobCommit {
        timestamp: Timestamp {
            wall_micros: t,
            counter: 0,
            node: 0,
        },
        content_type: String::new(),
        user_meta: Default::default(),
        etag: None,
    };
    w.commit(commit).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_then_failed_fsync() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        dir: dir.path().to_path_buf(),
        io: IoChoice::Auto,
    };
    let e = RocksEngine::open(options.clone()).await.unwrap();
    let key = BlobKey::new(1, "/a/c/o");
    put(&e, &key, b"before", 1).await;

    // Disk full: a clear error, nothing half-written visible, device still in service.
    fail::cfg("data-write-enospc", "return").unwrap();
    for len in [1_000, 2_000_000] {
        let err = try_put(&e, &key, len, 2).await.unwrap_err();
        assert!(matches!(err, Error::DiskFull), "{err}");
    }
    fail::remove("data-write-enospc");
    assert_eq!(get(&e, &key, None).await.unwrap(), b"before");
    assert_eq!(e.health(), Health::Ok);
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
        0
    );
    put(&e, &key, b"after", 3).await;
    assert_eq!(get(&e, &key, None).await.unwrap(), b"after");

    // A failed fsync takes the device out of service for good.
    fail::cfg("data-fsync-error", "return").unwrap();
    let err = try_put(&e, &key, 1_000, 4).await.unwrap_err();
    fail::remove("data-fsync-error");
    assert!(matches!(err, Error::Failed(_)), "{err}");
    assert!(matches!(e.health(), Health::Failed(_)));
    assert!(matches!(e.blob_meta(&key).await, Err(Error::Failed(_))));
    assert!(matches!(
        e.list(&ListingKey::new(1, "/a/c"), &Default::default())
            .await,
        Err(Error::Failed(_))
    ));
    assert!(matches!(
        try_put(&e, &key, 10, 5).await,
        Err(Error::Failed(_))
    ));
    e.close().await;

    // After a restart (the operator's decision), the last acknowledged version is there.
    let e = RocksEngine::open(options).await.unwrap();
    assert_eq!(get(&e, &key, None).await.unwrap(), b"after");
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extent_log_disk_full_then_failed_sync() {
    use cairn_engine::{ExtentKey, WriteTag};
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        dir: dir.path().to_path_buf(),
        io: IoChoice::Auto,
    };
    let key = ExtentKey {
        partition: 2,
        image: "img".into(),
        object_no: 0,
    };
    let tag = |seq| WriteTag { epoch: 1, seq };
    let data = |b: u8| bytes::Bytes::from(vec![b; 8192]);
    let read = |e: &RocksEngine| {
        let (e, key) = (e.clone(), key.clone());
        async move { e.read_extent(&key, 0, 8192).await.map(|r| r.to_bytes()) }
    };
    let e = RocksEngine::open(options.clone()).await.unwrap();
    e.write_extent(&key, 0, data(1), tag(1)).await.unwrap();

    // Disk full while appending to the log: a clear error, the old data still reads, the
    // device stays in service and the next write lands.
    fail::cfg("extent-log-write-enospc", "return").unwrap();
    let err = e.write_extent(&key, 0, data(2), tag(2)).await.unwrap_err();
    fail::remove("extent-log-write-enospc");
    assert!(matches!(err, Error::DiskFull), "{err}");
    assert_eq!(read(&e).await.unwrap(), data(1));
    assert_eq!(e.health(), Health::Ok);
    e.write_extent(&key, 0, data(3), tag(3)).await.unwrap();
    assert_eq!(read(&e).await.unwrap(), data(3));

    // A failed fdatasync of the log takes the device out of service.
    fail::cfg("extent-log-sync-error", "return").unwrap();
    let err = e.write_extent(&key, 0, data(4), tag(4)).await.unwrap_err();
    fail::remove("extent-log-sync-error");
    assert!(matches!(err, Error::Failed(_)), "{err}");
    assert!(matches!(e.health(), Health::Failed(_)));
    assert!(matches!(read(&e).await, Err(Error::Failed(_))));
    e.close().await;

    // After a restart the last acknowledged write is there.
    let e = RocksEngine::open(options).await.unwrap();
    assert_eq!(read(&e).await.unwrap(), data(3));
    scenario.teardown();
}

/// A blob writer whose write-out failed (here: disk full on a copy written around the page
/// cache) takes no more bytes and commits nothing, even once the disk has room again: the
/// bytes that failed are gone from its buffer, so a later commit would store a hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_out_poisons_the_writer() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let e = RocksEngine::open(EngineOptions {
        dir: dir.path().to_path_buf(),
        io: IoChoice::Auto,
    })
    .await
    .unwrap();
    let key = BlobKey::new(1, "/a/c/around");
    let data = body(3 * 1024 * 1024, 4);
    let options = cairn_engine::BlobWriteOptions {
        expected_size_bytes: Some(data.len() as u64),
        etag: cairn_engine::etag::EtagSource::Computed,
        write_around: true,
    };
    let mut w = e.begin_blob_with(key.clone(), options).await.unwrap();
    fail::cfg("data-write-enospc", "return").unwrap();
    let err = w
        .write(bytes::Bytes::copy_from_slice(&data[..2 * 1024 * 1024]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DiskFull), "{err}");
    fail::remove("data-write-enospc");
    let more = w
        .write(bytes::Bytes::copy_from_slice(&data[2 * 1024 * 1024..]))
        .await;
    let commit = BlobCommit {
        timestamp: Timestamp {
            wall_micros: 1,
            counter: 0,
            node: 0,
        },
        content_type: String::new(),
        user_meta: Default::default(),
        etag: None,
    };
    let committed = match more {
        Ok(()) => w.commit(commit).await,
        Err(e) => Err(e),
    };
    assert!(committed.is_err(), "a poisoned writer committed");
    assert!(e.blob_meta(&key).await.unwrap().is_none());
    assert!(e.writes_blobs_around_page_cache());
    scenario.teardown();
}
