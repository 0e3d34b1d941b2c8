//! The conformance suite against a real etcd (Debian `etcd-server`, `/usr/bin/etcd`), one fresh
//! server per test on free loopback ports with a temporary data directory, killed when the test
//! ends (also on panic). Lease time is real time, with etcd's 1 s minimum TTL.
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_meta::conformance::TestEnv;
use cairn_meta::{EtcdConfig, EtcdStore, MetaStore};

const ETCD_BIN: &str = "/usr/bin/etcd";
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(15);
const ETCD_START_ATTEMPTS: usize = 3;

/// A running etcd; killed (by its PID) and reaped on drop.
struct EtcdProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EtcdProcess {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_etcd() -> (EtcdProcess, String) {
    assert!(
        Path::new(ETCD_BIN).exists(),
        "{ETCD_BIN} is missing: the etcd conformance tests need Debian's etcd-server \
         (apt-get install -y etcd-server)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = Command::new(ETCD_BIN)
        .arg("--name=default")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        // Short election timing: a one-node cluster elects itself in well under a second, and
        // the minimum lease TTL becomes 1 s (it is 1.5 x the election timeout, rounded up).
        .arg("--heartbeat-interval=50")
        .arg("--election-timeout=250")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {ETCD_BIN}: {e}"));
    (EtcdProcess { child, dir }, client_url)
}

async fn etcd() -> (EtcdStore, TestEnv) {
    for attempt in 1..=ETCD_START_ATTEMPTS {
        let (mut process, url) = spawn_etcd();
        let config = EtcdConfig {
            endpoints: vec![url],
            op_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
        };
        let deadline = tokio::time::Instant::now() + ETCD_READY_TIMEOUT;
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                // Most likely a port taken between choosing and binding it: try new ports.
                assert!(
                    attempt < ETCD_START_ATTEMPTS,
                    "etcd exited with {status}:\n{}",
                    process.log_tail()
                );
                break;
            }
            if let Ok(store) = EtcdStore::connect(&config).await
                && store.revision().await.is_ok()
            {
                return (store, TestEnv::real_time(process));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd not ready within {ETCD_READY_TIMEOUT:?}:\n{}",
                process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    unreachable!("the last attempt panics")
}

cairn_meta::conformance_tests!(etcd);
