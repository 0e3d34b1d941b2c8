//! The cluster logic as pure state machines: no sockets, disks, clocks or randomness.
//!
//! The node's async services and the seeded simulation (`tests/simulation`) drive exactly these
//! types: inputs are responses and failures, outputs are commands to send. That is what lets a
//! failing seed replay the same decisions the real node would take.

mod erasure;
mod quorum;
mod replication;
mod version;

pub use erasure::{ArchiveAnswer, EcReadDecision, acting_slot, decide_read};
pub use quorum::{
    ReadOutcome, ReadQuorum, TargetRole, WriteOutcome, WriteQuorum, choose_targets, fetch_order,
    majority, read_quorum,
};
pub use replication::{JobCommand, JobInput, JobReport, ReplicaRole, ReplicationJob};
pub use version::{EntryVersion, Version};
