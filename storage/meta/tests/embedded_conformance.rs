//! The conformance suite against the embedded (redb) store, with a manual clock so lease expiry
//! is instant.
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use cairn_meta::conformance::TestEnv;
use cairn_meta::{EmbeddedStore, ManualClock};

async fn embedded() -> (EmbeddedStore, TestEnv) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store = EmbeddedStore::open_with_clock(dir.path(), Arc::new(clock.clone()))
        .await
        .unwrap();
    (store, TestEnv::manual(clock, dir))
}

cairn_meta::conformance_tests!(embedded);

/// The same suite through the run-time-chosen wrapper, opened from config.
mod through_any {
    use cairn_meta::conformance::TestEnv;
    use cairn_meta::{AnyMetaStore, ManualClock, MetaConfig};

    async fn any_embedded() -> (AnyMetaStore, TestEnv) {
        let dir = tempfile::tempdir().unwrap();
        let config = MetaConfig::Embedded {
            dir: dir.path().to_path_buf(),
        };
        let store = AnyMetaStore::open(&config).await.unwrap();
        // The store runs on the system clock: the suite's lease cases then take real time.
        (store, TestEnv::real_time((dir, ManualClock::new(0))))
    }

    cairn_meta::conformance_tests!(any_embedded);
}
