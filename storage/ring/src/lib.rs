//! `cairn-ring`: the partition ring — which devices hold which partitions.
//!
//! It owns the builder state operators edit ([`RingBuilder`]), the rebalancer that assigns
//! partition-replicas to devices (dispersion first, then balance, then fewest moves), the
//! compiled [`PartitionRing`] nodes load, name → partition hashing, handoff order, the ring
//! and builder file formats, and the balance/dispersion report.
//!
//! **Must not depend on** any I/O, network, async runtime or clock: callers pass time and
//! seeds in and move bytes to and from disk themselves, so every result replays exactly.

mod builder;
mod codec;
mod device;
mod error;
mod file;
mod hash;
pub mod limits;
mod rebalance;
mod report;
mod ring;
mod rng;
mod topology;

pub use builder::{DeviceInfo, RingBuilder};
pub use device::{Device, DeviceId, NO_DEVICE, NewDevice, TierLevel};
pub use error::{Result, RingError};
pub use hash::{PathHasher, partition_of_hash};
pub use rebalance::{ProgressStep, RebalanceOptions, RebalanceOutcome};
pub use report::{AssignmentReport, DeviceReport, MAX_BALANCE, TierDispersion};
pub use ring::{Handoffs, PartitionRing};

impl RingBuilder {
    /// Balance and dispersion of the current assignment.
    pub fn report(&self) -> AssignmentReport {
        report::assess(
            &self.devices,
            &self.assignment,
            self.replicas,
            self.partitions(),
            &|id| self.is_pending_removal(id),
        )
    }

    /// The overload full dispersion would need with the current devices (0 if none).
    pub fn required_overload(&self) -> f64 {
        let active: Vec<&Device> = self
            .devices()
            .filter(|d| !self.is_pending_removal(d.id))
            .collect();
        topology::TierTree::build(&active, self.devices.len(), self.replicas, self.overload)
            .required_overload
    }
}

impl PartitionRing {
    /// Balance and dispersion of the compiled assignment.
    pub fn report(&self) -> AssignmentReport {
        report::assess(
            &self.devices,
            &self.rows,
            self.replicas,
            self.partitions(),
            &|_| false,
        )
    }
}
