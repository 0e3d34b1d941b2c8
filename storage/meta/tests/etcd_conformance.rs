//! The conformance suite against a real etcd (Debian `etcd-server`, `/usr/bin/etcd`), one fresh
//! server per test on free loopback ports with a temporary data directory, killed when the test
//! ends (also on panic). Lease time is real time, with etcd's 1 s minimum TTL.
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_meta::EtcdStore;
use cairn_meta::conformance::TestEnv;
use cairn_meta::testing::EtcdProcess;

async fn etcd() -> (EtcdStore, TestEnv) {
    let (process, store) = EtcdProcess::start().await;
    (store, TestEnv::real_time(process))
}

cairn_meta::conformance_tests!(etcd);
