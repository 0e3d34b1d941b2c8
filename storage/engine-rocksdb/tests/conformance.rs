//! The `cairn-engine` conformance suite against the RocksDB engine, once per I/O backend.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are failures

use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};

async fn open(io: IoChoice) -> (RocksEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(EngineOptions {
        dir: dir.path().to_path_buf(),
        io,
    })
    .await
    .unwrap();
    (engine, dir)
}

mod uring {
    use super::*;

    async fn engine() -> (RocksEngine, tempfile::TempDir) {
        let (e, d) = open(IoChoice::Uring).await;
        assert!(e.uses_io_uring());
        (e, d)
    }

    cairn_engine::conformance_tests!(engine);
}

mod plain {
    use super::*;

    async fn engine() -> (RocksEngine, tempfile::TempDir) {
        let (e, d) = open(IoChoice::Plain).await;
        assert!(!e.uses_io_uring());
        (e, d)
    }

    cairn_engine::conformance_tests!(engine);
}

/// The conformance case for copies written around the page cache takes the `O_DIRECT` path here
/// (the test directory's filesystem does direct I/O) instead of silently falling back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_written_around_go_around_the_page_cache() {
    for io in [IoChoice::Uring, IoChoice::Plain] {
        let (e, _dir) = open(io).await;
        cairn_engine::conformance::blob_written_around(&e).await;
        assert!(e.writes_blobs_around_page_cache());
    }
}
