//! Listing updates sent by object replicas, with a durable retry queue.
//!
//! After a blob write or delete is durable, the object replica tells its assigned listing
//! device. If that fails, the update is queued **on the same device, in the engine** (a listing
//! under a reserved partition), so it survives a crash exactly as the blob does; a background
//! loop retries queued updates until they land. Updates are last-writer-wins entries, so a
//! retry that races a newer update is harmless. Nothing is ever dropped.

use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{ListingEntry, ListingKey, StorageEngine, Timestamp};
use tracing::{debug, warn};

use crate::limits::{LISTING_PENDING_BATCH_MAX, LISTING_UPDATE_TIMEOUT_MS};
use crate::metrics::NodeMetrics;
use crate::peers::{DeviceAddr, Peers};
use crate::rpc::{ListingTarget, NodeRequest, NodeResponse};
use crate::service::DeviceSet;

/// The reserved partition holding the pending queue; real rings have at most 2^22 partitions,
/// so it never collides, and the replicator skips partitions outside the ring.
pub const PENDING_PARTITION: u32 = u32::MAX;
const PENDING_PATH: &str = "/.cairn/pending-listing-updates";

fn pending_key() -> ListingKey {
    ListingKey::new(PENDING_PARTITION, PENDING_PATH)
}

/// Sends listing updates and keeps the ones that could not be sent.
#[derive(Debug)]
pub struct ListingUpdater<E> {
    devices: Arc<DeviceSet<E>>,
    peers: Arc<Peers>,
    metrics: Arc<NodeMetrics>,
}

impl<E: StorageEngine> ListingUpdater<E> {
    pub fn new(devices: Arc<DeviceSet<E>>, peers: Arc<Peers>, metrics: Arc<NodeMetrics>) -> Self {
        ListingUpdater {
            devices,
            peers,
            metrics,
        }
    }

    /// Tries the update once; on failure queues it durably on `local_device`.
    pub async fn update(&self, local_device: &str, target: ListingTarget, entry: ListingEntry) {
        if self.send(&target, entry.clone()).await {
            return;
        }
        let Some(engine) = self.devices.get(local_device) else {
            return;
        };
        let queued = encode(&target, entry);
        if let Err(e) = engine
            .merge_listing_entries(&pending_key(), vec![queued])
            .await
        {
            // The blob itself is durable; losing its listing entry would be silent, so say so
            // loudly. The listing replicator cannot recover it, only a re-PUT would.
            warn!(device = local_device, error = %e, "could not queue a listing update");
        } else {
            self.metrics.listing_pending_delta(1);
        }
    }

    async fn send(&self, target: &ListingTarget, entry: ListingEntry) -> bool {
        let to = DeviceAddr {
            addr: target.addr,
            device: target.device.clone(),
        };
        let req = NodeRequest::MergeListing {
            device: target.device.clone(),
            key: target.key.clone(),
            entries: vec![entry],
        };
        let timeout = Duration::from_millis(LISTING_UPDATE_TIMEOUT_MS);
        match self
            .peers
            .call(&to, &req, cairn_net::Body::Empty, timeout, None)
            .await
        {
            Ok((NodeResponse::Done, _)) => true,
            Ok((other, _)) => {
                debug!(?other, "unexpected answer to a listing update");
                false
            }
            Err(e) => {
                debug!(to = %target.addr, error = %e, "listing update failed; queueing it");
                false
            }
        }
    }

    /// Retries queued updates on every device; returns (sent, still queued).
    pub async fn retry_pending(&self) -> (u64, u64) {
        let (mut sent, mut left) = (0, 0);
        for (_, engine) in self.devices.iter() {
            let queued = match engine
                .listing_entries(&pending_key(), None, LISTING_PENDING_BATCH_MAX)
                .await
            {
                Ok(q) => q,
                Err(e) => {
                    warn!(error = %e, "reading pending listing updates");
                    continue;
                }
            };
            for q in queued.into_iter().filter(|q| !q.deleted) {
                let Some((target, entry)) = decode(&q) else {
                    warn!(name = %q.name, "unreadable pending listing update");
                    continue;
                };
                if self.send(&target, entry).await {
                    // Retire it with a tombstone just after its own timestamp: a newer update
                    // for the same object (a later timestamp) still wins over the tombstone.
                    let done = ListingEntry {
                        deleted: true,
                        timestamp: Timestamp {
                            counter: q.timestamp.counter.saturating_add(1),
                            ..q.timestamp
                        },
                        ..q.clone()
                    };
                    if engine
                        .merge_listing_entries(&pending_key(), vec![done])
                        .await
                        .is_ok()
                    {
                        sent += 1;
                    } else {
                        left += 1;
                    }
                } else {
                    left += 1;
                }
            }
        }
        // What is still queued, as counted now (enqueues in between add to it until the next
        // pass recounts).
        self.metrics.listing_pending_set(left);
        (sent, left)
    }
}

/// Queue entry name: fixed-width target fields, then the listing path and the object name.
fn encode(target: &ListingTarget, entry: ListingEntry) -> ListingEntry {
    let name = format!(
        "{}|{}|{}|{}|{}|{}",
        target.addr,
        target.device.len(),
        target.device,
        target.key.partition,
        target.key.path.len(),
        target.key.path
    ) + "|"
        + &entry.name;
    ListingEntry { name, ..entry }
}

fn decode(q: &ListingEntry) -> Option<(ListingTarget, ListingEntry)> {
    let (addr, rest) = q.name.split_once('|')?;
    let (dev_len, rest) = rest.split_once('|')?;
    let dev_len: usize = dev_len.parse().ok()?;
    let device = rest.get(..dev_len)?.to_string();
    let rest = rest.get(dev_len + 1..)?;
    let (partition, rest) = rest.split_once('|')?;
    let (path_len, rest) = rest.split_once('|')?;
    let path_len: usize = path_len.parse().ok()?;
    let path = rest.get(..path_len)?.to_string();
    let name = rest.get(path_len + 1..)?.to_string();
    let target = ListingTarget {
        key: ListingKey::new(partition.parse().ok()?, path),
        addr: addr.parse().ok()?,
        device,
    };
    Some((target, ListingEntry { name, ..q.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip_any_names() {
        let target = ListingTarget {
            key: ListingKey::new(17, "/acct/con|tainer"),
            addr: "127.0.0.3:6001".parse().unwrap(),
            device: "d|1".into(),
        };
        let entry = ListingEntry {
            name: "a|b/c".into(),
            timestamp: Timestamp {
                wall_micros: 5,
                counter: 1,
                node: 2,
            },
            deleted: false,
            size_bytes: 9,
            etag: "x".into(),
            content_type: "text/plain".into(),
        };
        let (t, e) = decode(&encode(&target, entry.clone())).unwrap();
        assert_eq!(t, target);
        assert_eq!(e, entry);
    }
}
