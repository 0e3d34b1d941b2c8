//! Addressing devices across the cluster: the rings in force, device → socket address, calls
//! with timeouts, and a short memory of devices that just failed (so requests route around
//! them to handoffs at once instead of waiting for another timeout).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cairn_net::{Body, CallOptions, NetError, RequestId, RpcClient};
use cairn_ring::{DeviceId, PartitionRing, PathHasher};

use crate::limits::{DEVICE_DOWN_FOR_MS, HANDOFFS_TRIED_MAX};
use crate::rpc::{NodeRequest, NodeResponse, RemoteError};

/// Which ring a name is placed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// The object ring: replicated objects (policy 0) and the block layer's extents.
    Object,
    Container,
    Account,
    /// An erasure-coded policy's ring, by policy index.
    Policy(u16),
}

/// The rings in force and the cluster's name hasher. Replaced whole when a new ring arrives.
#[derive(Debug)]
pub struct Rings {
    pub object: PartitionRing,
    pub container: PartitionRing,
    pub account: PartitionRing,
    /// Erasure-coded policies' rings, by policy index.
    pub policies: BTreeMap<u16, PartitionRing>,
    pub hasher: PathHasher,
}

impl Rings {
    /// The ring of `kind`; `None` only for a policy without a ring.
    pub fn ring(&self, kind: RingKind) -> Option<&PartitionRing> {
        match kind {
            RingKind::Object => Some(&self.object),
            RingKind::Container => Some(&self.container),
            RingKind::Account => Some(&self.account),
            RingKind::Policy(i) => self.policies.get(&i),
        }
    }
}

/// One device as a caller reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAddr {
    pub addr: SocketAddr,
    pub device: String,
}

/// Why a published ring was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingRejected {
    #[error("not a valid ring file: {0}")]
    Invalid(String),
    #[error("ring version {offered} is not newer than version {current} in force")]
    NotNewer { offered: u64, current: u64 },
}

/// A failed call to a device.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("device {0} is not in the ring")]
    UnknownDevice(DeviceId),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("refused: {0}")]
    Refused(RemoteError),
}

/// Calls to other nodes' devices.
#[derive(Debug)]
pub struct Peers {
    rpc: RpcClient,
    rings: RwLock<Arc<Rings>>,
    failed: Mutex<HashMap<DeviceAddr, Instant>>,
}

impl Peers {
    pub fn new(rpc: RpcClient, rings: Rings) -> Peers {
        Peers {
            rpc,
            rings: RwLock::new(Arc::new(rings)),
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// The rings in force (a snapshot: a ring swap does not disturb a request in progress).
    pub fn rings(&self) -> Arc<Rings> {
        match self.rings.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces one ring with a newer one, as a node does when the control plane publishes
    /// it. `bytes` is a ring file: its checksum is verified, and a ring whose version is not
    /// newer than the one in force is refused (a replayed or stale publication must never roll
    /// placement back). The replicator picks the new assignment up at its next cycle.
    pub fn swap_ring(&self, kind: RingKind, bytes: &[u8]) -> Result<u64, RingRejected> {
        let ring =
            PartitionRing::from_bytes(bytes).map_err(|e| RingRejected::Invalid(e.to_string()))?;
        let mut guard = match self.rings.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = guard.ring(kind).map(PartitionRing::version).unwrap_or(0);
        if ring.version() <= current {
            return Err(RingRejected::NotNewer {
                offered: ring.version(),
                current,
            });
        }
        let version = ring.version();
        let mut next = Rings {
            object: guard.object.clone(),
            container: guard.container.clone(),
            account: guard.account.clone(),
            policies: guard.policies.clone(),
            hasher: guard.hasher.clone(),
        };
        match kind {
            RingKind::Object => next.object = ring,
            RingKind::Container => next.container = ring,
            RingKind::Account => next.account = ring,
            RingKind::Policy(i) => {
                next.policies.insert(i, ring);
            }
        }
        *guard = Arc::new(next);
        Ok(version)
    }

    pub fn set_rings(&self, rings: Rings) {
        let mut guard = match self.rings.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(rings);
    }

    pub fn resolve(&self, rings: &Rings, kind: RingKind, device: DeviceId) -> Option<DeviceAddr> {
        let d = rings.ring(kind)?.device(device)?;
        let ip: IpAddr = d.ip.parse().ok()?;
        Some(DeviceAddr {
            addr: SocketAddr::new(ip, d.port),
            device: d.device.clone(),
        })
    }

    /// A partition's primaries and its first handoffs, in ring order.
    pub fn placement(
        &self,
        rings: &Rings,
        kind: RingKind,
        partition: u32,
    ) -> (Vec<DeviceId>, Vec<DeviceId>) {
        let Some(ring) = rings.ring(kind) else {
            return (Vec::new(), Vec::new());
        };
        let primaries: Vec<DeviceId> = ring.primary_ids(partition).collect();
        let handoffs = match ring.handoffs(partition) {
            Ok(h) => h.take(HANDOFFS_TRIED_MAX).map(|d| d.id).collect(),
            Err(_) => Vec::new(),
        };
        (primaries, handoffs)
    }

    /// Whether a call to the device failed recently.
    pub fn is_down(&self, target: &DeviceAddr) -> bool {
        let failed = match self.failed.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        failed
            .get(target)
            .is_some_and(|at| at.elapsed() < Duration::from_millis(DEVICE_DOWN_FOR_MS))
    }

    fn note(&self, target: &DeviceAddr, ok: bool) {
        let mut failed = match self.failed.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if ok {
            failed.remove(target);
        } else {
            failed.insert(target.clone(), Instant::now());
        }
    }

    /// Calls a device. Transport failures and "device unavailable" mark it down for a while;
    /// a call that failed because the caller's own body did is no mark against the device.
    pub async fn call(
        &self,
        target: &DeviceAddr,
        req: &NodeRequest,
        body: Body,
        timeout: Duration,
        request_id: Option<RequestId>,
    ) -> Result<(NodeResponse, Body), PeerError> {
        let opts = CallOptions {
            timeout,
            request_id,
        };
        match self
            .rpc
            .call_with::<NodeRequest, NodeResponse>(target.addr, req, body, opts)
            .await
        {
            Ok((NodeResponse::Refused(e), _)) => {
                self.note(target, !matches!(e, RemoteError::Unavailable(_)));
                Err(PeerError::Refused(e))
            }
            Ok(ok) => {
                self.note(target, true);
                Ok(ok)
            }
            // The caller's body failing says nothing about the device.
            Err(e @ NetError::BodyAborted(_)) => Err(PeerError::Net(e)),
            Err(e) => {
                self.note(target, false);
                Err(PeerError::Net(e))
            }
        }
    }
}
