//! Prometheus metrics of a node, and the tiny HTTP endpoint that serves them at `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

use crate::limits::METRICS_CONNECTIONS_MAX;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Everything a node counts.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<KindLabels, Histogram, fn() -> Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    quarantined: Counter,
    ec_rebuilt: Counter,
    ec_reverted: Counter,
    listing_pending: Gauge,
    replication_pushed: Counter,
    replication_purged: Counter,
    replication_passes: Counter,
    replication_lag: Family<DeviceLabels, Gauge<f64, AtomicU64>>,
    audited: Counter,
    audit_failures: Counter,
    device_up: Family<DeviceLabels, Gauge>,
    ring_version: Family<RingLabels, Gauge>,
}

impl NodeMetrics {
    pub fn new() -> Arc<NodeMetrics> {
        let mut registry = Registry::with_prefix("cairn_node");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "RPC requests served, by kind and outcome",
            requests.clone(),
        );
        let latency = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "rpc_latency_seconds",
            "Time to serve an RPC (to the response head)",
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register("blob_bytes_in", "Blob bytes received", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("blob_bytes_out", "Blob bytes sent", bytes_out.clone());
        let quarantined = Counter::default();
        registry.register(
            "quarantined_objects",
            "Object copies quarantined after failing their checksum",
            quarantined.clone(),
        );
        let ec_rebuilt = Counter::default();
        registry.register(
            "ec_fragments_rebuilt",
            "Erasure-coded fragment archives the reconstructor rebuilt on this node",
            ec_rebuilt.clone(),
        );
        let ec_reverted = Counter::default();
        registry.register(
            "ec_fragments_reverted",
            "Handoff fragment archives the reconstructor moved to their primaries",
            ec_reverted.clone(),
        );
        let listing_pending = Gauge::default();
        registry.register(
            "listing_updates_pending",
            "Listing updates queued for retry",
            listing_pending.clone(),
        );
        let replication_pushed = Counter::default();
        registry.register(
            "replication_pushed",
            "Objects pushed to other replicas",
            replication_pushed.clone(),
        );
        let replication_purged = Counter::default();
        registry.register(
            "replication_purged",
            "Handoff copies removed after every primary confirmed them",
            replication_purged.clone(),
        );
        let replication_passes = Counter::default();
        registry.register(
            "replication_passes",
            "Partition replication passes completed",
            replication_passes.clone(),
        );
        let replication_lag = Family::<DeviceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "replication_lag_seconds",
            "Seconds since the device last finished a full replication cycle",
            replication_lag.clone(),
        );
        let audited = Counter::default();
        registry.register(
            "audited_objects",
            "Objects verified by the auditor",
            audited.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_failures",
            "Objects that failed the auditor's verification",
            audit_failures.clone(),
        );
        let device_up = Family::<DeviceLabels, Gauge>::default();
        registry.register(
            "device_up",
            "1 while the device serves, 0 once it is out of service (e.g. after a failed fsync)",
            device_up.clone(),
        );
        let ring_version = Family::<RingLabels, Gauge>::default();
        registry.register(
            "ring_version",
            "Version of the ring in force, by kind",
            ring_version.clone(),
        );
        Arc::new(NodeMetrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            quarantined,
            ec_rebuilt,
            ec_reverted,
            listing_pending,
            replication_pushed,
            replication_purged,
            replication_passes,
            replication_lag,
            audited,
            audit_failures,
            device_up,
            ring_version,
        })
    }

    pub fn request(&self, kind: &'static str, refused: bool, took: Duration) {
        let outcome = if refused { "refused" } else { "ok" };
        self.requests
            .get_or_create(&RequestLabels { kind, outcome })
            .inc();
        self.latency
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub fn quarantined(&self, n: u64) {
        self.quarantined.inc_by(n);
    }

    pub fn ec_reconstructed(&self, rebuilt: u64, reverted: u64) {
        self.ec_rebuilt.inc_by(rebuilt);
        self.ec_reverted.inc_by(reverted);
    }

    pub fn listing_pending_delta(&self, d: i64) {
        self.listing_pending.inc_by(d);
    }

    pub fn listing_pending_set(&self, n: u64) {
        self.listing_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn replication_pass(&self, pushed: u64, purged: u64) {
        self.replication_passes.inc();
        self.replication_pushed.inc_by(pushed);
        self.replication_purged.inc_by(purged);
    }

    pub fn replication_lag(&self, device: &str, seconds: f64) {
        self.replication_lag
            .get_or_create(&DeviceLabels {
                device: device.to_string(),
            })
            .set(seconds);
    }

    pub fn ring_version(&self, kind: &str, version: u64) {
        self.ring_version
            .get_or_create(&RingLabels {
                kind: kind.to_string(),
            })
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    pub fn device_up(&self, device: &str, up: bool) {
        self.device_up
            .get_or_create(&DeviceLabels {
                device: device.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn audited(&self, checked: u64, failures: u64) {
        self.audited.inc_by(checked);
        self.audit_failures.inc_by(failures);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. Deliberately minimal HTTP/1.0:
/// one bounded request read, one response, close.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<NodeMetrics>) {
    // A scraper or two is normal; a flood must not grow tasks without bound.
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS_MAX));
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics endpoint busy; connection dropped");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "only /metrics lives here\n".to_string())
            };
            let resp = format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let write =
                tokio::time::timeout(Duration::from_secs(5), sock.write_all(resp.as_bytes()));
            match write.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics client went away"),
                Err(_) => debug!(%peer, "metrics client too slow; dropped"),
            }
        });
    }
}

/// Binds the metrics endpoint.
pub async fn bind_metrics(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
