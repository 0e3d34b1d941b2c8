//! The auditor: walks a device's blobs at a bounded rate, verifying every chunk's checksum, and
//! quarantines copies that fail so the replicator restores them from a good replica.

use std::sync::Arc;
use std::time::Duration;

use cairn_engine::StorageEngine;
use tracing::{info, warn};

use crate::limits::AUDIT_BATCH_BLOBS_MAX;
use crate::metrics::NodeMetrics;

/// Audits one device.
#[derive(Debug)]
pub struct Auditor<E> {
    device: String,
    engine: Arc<E>,
    metrics: Arc<NodeMetrics>,
    /// Objects verified per second at most.
    objects_per_second: u32,
}

impl<E: StorageEngine> Auditor<E> {
    pub fn new(
        device: String,
        engine: Arc<E>,
        metrics: Arc<NodeMetrics>,
        objects_per_second: u32,
    ) -> Self {
        Auditor {
            device,
            engine,
            metrics,
            objects_per_second: objects_per_second.max(1),
        }
    }

    /// Verifies one batch after `cursor`; returns the next cursor (`None`: the walk wrapped)
    /// and how many copies were quarantined.
    pub async fn batch(
        &self,
        cursor: Option<cairn_engine::BlobKey>,
        max: usize,
    ) -> (Option<cairn_engine::BlobKey>, u64) {
        let report = match self.engine.audit(cursor, max).await {
            Ok(r) => r,
            Err(e) => {
                warn!(device = %self.device, error = %e, "audit batch failed");
                return (None, 0);
            }
        };
        let mut quarantined = 0;
        for f in &report.failures {
            warn!(device = %self.device, object = %f.key.name, reason = %f.reason, "audit failure; quarantining");
            match self.engine.quarantine(&f.key, f.timestamp).await {
                Ok(true) => quarantined += 1,
                Ok(false) => {}
                Err(e) => {
                    warn!(device = %self.device, object = %f.key.name, error = %e, "quarantine failed")
                }
            }
        }
        self.metrics
            .audited(report.checked, report.failures.len() as u64);
        self.metrics.quarantined(quarantined);
        if quarantined > 0 {
            info!(device = %self.device, quarantined, "auditor quarantined bad copies");
        }
        (report.next, quarantined)
    }

    /// Audits forever at the configured rate; a full walk is followed by `pause`.
    pub async fn run(self: Arc<Self>, pause: Duration) {
        let batch = AUDIT_BATCH_BLOBS_MAX
            .min(self.objects_per_second as usize)
            .max(1);
        let per_batch = Duration::from_secs_f64(batch as f64 / f64::from(self.objects_per_second));
        let mut cursor = None;
        loop {
            let (next, _) = self.batch(cursor.take(), batch).await;
            cursor = next;
            tokio::time::sleep(if cursor.is_none() {
                pause.max(per_batch)
            } else {
                per_batch
            })
            .await;
        }
    }
}
