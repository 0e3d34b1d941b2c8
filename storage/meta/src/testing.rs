//! Test support shared by every crate whose tests need a real etcd: one fresh single-member
//! server (Debian `etcd-server`, `/usr/bin/etcd`) on free loopback ports with a temporary data
//! directory, killed by its PID when dropped (also when a test panics).
//!
//! Compiled only with the `conformance` feature, which only test builds enable.
// Test support: a failure to start etcd is a failed test, so it panics with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{EtcdConfig, EtcdStore, MetaStore};

const ETCD_BIN: &str = "/usr/bin/etcd";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;

/// A running etcd; killed (by its PID) and reaped on drop.
#[derive(Debug)]
pub struct EtcdProcess {
    child: Child,
    dir: tempfile::TempDir,
    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdProcess {
    /// Starts etcd and waits (bounded) until its client port accepts connections; retries on
    /// new ports if one was taken between choosing and binding it. For synchronous tests.
    pub fn spawn() -> EtcdProcess {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: tests that need etcd want Debian's etcd-server \
             (scripts/test.sh installs it)"
        );
        for attempt in 1..=START_ATTEMPTS {
            let mut p = Self::launch();
            let port: u16 = p
                .url
                .rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = p.child.try_wait().unwrap() {
                    assert!(
                        attempt < START_ATTEMPTS,
                        "etcd exited with {status}:\n{}",
                        p.log_tail()
                    );
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return p;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd not listening within {READY_TIMEOUT:?}:\n{}",
                    p.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!("the last attempt panics")
    }

    /// Starts etcd and returns it with a connected store once it answers.
    pub async fn start() -> (EtcdProcess, EtcdStore) {
        let process = tokio::task::spawn_blocking(Self::spawn).await.unwrap();
        let config = EtcdConfig {
            endpoints: vec![process.url.clone()],
            op_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
        };
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(store) = EtcdStore::connect(&config).await
                && store.revision().await.is_ok()
            {
                return (process, store);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd not ready within {READY_TIMEOUT:?}:\n{}",
                process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn launch() -> EtcdProcess {
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(ETCD_BIN)
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            // Short election timing: a one-member cluster elects itself in well under a second,
            // and the minimum lease TTL becomes 1 s (1.5 x the election timeout, rounded up).
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=250")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {ETCD_BIN}: {e}"));
        EtcdProcess { child, dir, url }
    }

    /// The end of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }
}
