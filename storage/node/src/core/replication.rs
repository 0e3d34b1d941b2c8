//! One replication pass over one partition on one device, as a state machine.
//!
//! Replicas only ever *push*: each device sends its peers what they lack or hold older, and
//! every device runs passes, so data flows both ways. A pass compares the partition's digest
//! (a fixed number of buckets, each a fold over the bucket's (name, version) pairs) with each
//! peer's, lists entries only in buckets that differ, and pushes the local entries that win.
//!
//! A device that is a *handoff* for the partition (not a primary) pushes to every primary and,
//! once **every** primary has confirmed an entry — it already held that version or newer, or
//! acknowledged the push — purges its own copy of exactly that version. A primary that fails
//! during the pass blocks purging for the pass: the handoff copy may be the only one it lacks.

use std::collections::{BTreeMap, BTreeSet};

use cairn_ring::DeviceId;

use super::version::EntryVersion;

/// Whether this device is one of the partition's primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    Primary,
    Handoff,
}

/// What the driver must do next; each command is answered by one [`JobInput`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobCommand {
    /// Ask `peer` for its digest of the partition → [`JobInput::Digest`].
    FetchDigest { peer: DeviceId },
    /// Ask `peer` for its entries in `buckets` → [`JobInput::PeerEntries`].
    FetchEntries { peer: DeviceId, buckets: Vec<u16> },
    /// Read this device's entries in `buckets` (all buckets when `None`) →
    /// [`JobInput::LocalEntries`].
    ReadLocal { buckets: Option<Vec<u16>> },
    /// Send the local copy of `entry` to `peer` → [`JobInput::Pushed`].
    Push { peer: DeviceId, entry: EntryVersion },
    /// Delete the local copy if it is still exactly `entry.version`. No answer needed.
    Purge { entry: EntryVersion },
}

/// An answer to a [`JobCommand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobInput {
    Digest {
        peer: DeviceId,
        buckets: Vec<u128>,
    },
    PeerEntries {
        peer: DeviceId,
        entries: Vec<(u16, EntryVersion)>,
    },
    LocalEntries {
        entries: Vec<(u16, EntryVersion)>,
    },
    Pushed {
        peer: DeviceId,
        entry: EntryVersion,
        ok: bool,
    },
    /// The peer did not answer (timeout, refused, down): it takes no further part in this pass.
    PeerFailed {
        peer: DeviceId,
    },
}

/// What a finished pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobReport {
    pub peers_in_sync: usize,
    pub peers_synced: usize,
    pub peers_failed: usize,
    pub pushed: usize,
    pub push_failures: usize,
    pub purged: usize,
    pub buckets_differing: usize,
}

#[derive(Debug)]
enum PeerState {
    AwaitDigest,
    AwaitEntries {
        buckets: Vec<u16>,
        remote: Option<Vec<(u16, EntryVersion)>>,
    },
    Pushing {
        outstanding: usize,
    },
    Done,
    Failed,
}

#[derive(Debug)]
struct Peer {
    state: PeerState,
    /// Buckets whose digests matched: every local entry there is confirmed.
    matched: BTreeSet<u16>,
    /// Local entries this peer holds at the same version or newer, or acknowledged.
    confirmed: BTreeSet<EntryVersion>,
}

/// One pass over one partition.
#[derive(Debug)]
pub struct ReplicationJob {
    role: ReplicaRole,
    local_digest: Vec<u128>,
    /// This device's entries, once read. A handoff reads them all up front (it must know what
    /// to purge); a primary reads only differing buckets, merged as they arrive.
    local: BTreeMap<u16, Vec<EntryVersion>>,
    local_read: BTreeSet<u16>,
    /// Local reads asked for and not yet answered.
    local_pending: usize,
    peers: BTreeMap<DeviceId, Peer>,
    report: JobReport,
    finished: bool,
}

impl ReplicationJob {
    /// Starts a pass. `peers` are the partition's other primaries (all primaries for a
    /// handoff); `local_digest` is this device's digest of the partition.
    pub fn start(
        role: ReplicaRole,
        local_digest: Vec<u128>,
        peers: &[DeviceId],
    ) -> (ReplicationJob, Vec<JobCommand>) {
        let mut cmds: Vec<JobCommand> = peers
            .iter()
            .map(|&peer| JobCommand::FetchDigest { peer })
            .collect();
        if role == ReplicaRole::Handoff {
            cmds.push(JobCommand::ReadLocal { buckets: None });
        }
        let job = ReplicationJob {
            role,
            local_digest,
            local: BTreeMap::new(),
            local_read: BTreeSet::new(),
            local_pending: usize::from(role == ReplicaRole::Handoff),
            peers: peers
                .iter()
                .map(|&p| {
                    let peer = Peer {
                        state: PeerState::AwaitDigest,
                        matched: BTreeSet::new(),
                        confirmed: BTreeSet::new(),
                    };
                    (p, peer)
                })
                .collect(),
            report: JobReport::default(),
            finished: false,
        };
        let mut job = job;
        let mut more = job.maybe_finish();
        cmds.append(&mut more);
        (job, cmds)
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn report(&self) -> &JobReport {
        &self.report
    }

    /// Feeds one answer in; returns the commands it leads to.
    pub fn on_input(&mut self, input: JobInput) -> Vec<JobCommand> {
        if self.finished {
            return Vec::new();
        }
        let mut cmds = Vec::new();
        match input {
            JobInput::Digest { peer, buckets } => self.on_digest(peer, buckets, &mut cmds),
            JobInput::PeerEntries { peer, entries } => {
                if let Some(p) = self.peers.get_mut(&peer)
                    && let PeerState::AwaitEntries { remote, .. } = &mut p.state
                {
                    *remote = Some(entries);
                }
            }
            JobInput::LocalEntries { entries } => {
                self.local_pending = self.local_pending.saturating_sub(1);
                for (bucket, entry) in entries {
                    self.local.entry(bucket).or_default().push(entry);
                }
            }
            JobInput::Pushed { peer, entry, ok } => {
                if let Some(p) = self.peers.get_mut(&peer)
                    && let PeerState::Pushing { outstanding } = &mut p.state
                {
                    *outstanding = outstanding.saturating_sub(1);
                    if ok {
                        self.report.pushed += 1;
                        p.confirmed.insert(entry);
                    } else {
                        self.report.push_failures += 1;
                        // The peer did not take it: it cannot be counted as holding it.
                        p.state = PeerState::Failed;
                        self.report.peers_failed += 1;
                    }
                    if let PeerState::Pushing { outstanding: 0 } = p.state {
                        p.state = PeerState::Done;
                        self.report.peers_synced += 1;
                    }
                }
            }
            JobInput::PeerFailed { peer } => {
                if let Some(p) = self.peers.get_mut(&peer)
                    && !matches!(p.state, PeerState::Done | PeerState::Failed)
                {
                    p.state = PeerState::Failed;
                    self.report.peers_failed += 1;
                }
            }
        }
        self.advance(&mut cmds);
        cmds.append(&mut self.maybe_finish());
        cmds
    }

    fn on_digest(&mut self, peer: DeviceId, remote: Vec<u128>, cmds: &mut Vec<JobCommand>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !matches!(p.state, PeerState::AwaitDigest) {
            return;
        }
        let n = self.local_digest.len().max(remote.len());
        let mut differing = Vec::new();
        for b in 0..n {
            let local = self.local_digest.get(b).copied().unwrap_or(0);
            let theirs = remote.get(b).copied().unwrap_or(0);
            let bucket = u16::try_from(b).unwrap_or(u16::MAX);
            if local == theirs {
                p.matched.insert(bucket);
            } else {
                differing.push(bucket);
            }
        }
        if differing.is_empty() {
            p.state = PeerState::Done;
            self.report.peers_in_sync += 1;
            return;
        }
        self.report.buckets_differing += differing.len();
        cmds.push(JobCommand::FetchEntries {
            peer,
            buckets: differing.clone(),
        });
        // Read local entries of buckets nobody asked for yet (a handoff already has them all).
        if self.role == ReplicaRole::Primary {
            let unread: Vec<u16> = differing
                .iter()
                .copied()
                .filter(|b| !self.local_read.contains(b))
                .collect();
            if !unread.is_empty() {
                self.local_read.extend(unread.iter().copied());
                self.local_pending += 1;
                cmds.push(JobCommand::ReadLocal {
                    buckets: Some(unread),
                });
            }
        }
        p.state = PeerState::AwaitEntries {
            buckets: differing,
            remote: None,
        };
    }

    /// Peers whose remote entries and our local ones are both in hand move on to pushing.
    fn advance(&mut self, cmds: &mut Vec<JobCommand>) {
        if self.local_pending > 0 {
            return;
        }
        for (&peer, p) in self.peers.iter_mut() {
            let PeerState::AwaitEntries {
                buckets,
                remote: Some(remote),
            } = &p.state
            else {
                continue;
            };
            let theirs: BTreeMap<&str, &EntryVersion> =
                remote.iter().map(|(_, e)| (e.name.as_str(), e)).collect();
            let mut pushes = 0;
            for b in buckets {
                for entry in self.local.get(b).into_iter().flatten() {
                    match theirs.get(entry.name.as_str()) {
                        Some(t) if t.version.timestamp >= entry.version.timestamp => {
                            p.confirmed.insert(entry.clone());
                        }
                        _ => {
                            pushes += 1;
                            cmds.push(JobCommand::Push {
                                peer,
                                entry: entry.clone(),
                            });
                        }
                    }
                }
            }
            if pushes == 0 {
                p.state = PeerState::Done;
                self.report.peers_synced += 1;
            } else {
                p.state = PeerState::Pushing {
                    outstanding: pushes,
                };
            }
        }
    }

    fn maybe_finish(&mut self) -> Vec<JobCommand> {
        let all_answered = self
            .peers
            .values()
            .all(|p| matches!(p.state, PeerState::Done | PeerState::Failed));
        if self.finished || !all_answered || self.local_pending > 0 {
            return Vec::new();
        }
        self.finished = true;
        let mut cmds = Vec::new();
        let all_done = self
            .peers
            .values()
            .all(|p| matches!(p.state, PeerState::Done));
        if self.role == ReplicaRole::Handoff && all_done {
            for (bucket, entries) in &self.local {
                for entry in entries {
                    let everywhere = self
                        .peers
                        .values()
                        .all(|p| p.matched.contains(bucket) || p.confirmed.contains(entry));
                    if everywhere {
                        self.report.purged += 1;
                        cmds.push(JobCommand::Purge {
                            entry: entry.clone(),
                        });
                    }
                }
            }
        }
        cmds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Version;
    use cairn_engine::Timestamp;

    fn e(name: &str, t: u64) -> EntryVersion {
        EntryVersion {
            name: name.into(),
            version: Version {
                timestamp: Timestamp {
                    wall_micros: t,
                    counter: 0,
                    node: 0,
                },
                tombstone: false,
            },
        }
    }

    #[test]
    fn equal_digests_push_nothing() {
        let (mut job, cmds) = ReplicationJob::start(ReplicaRole::Primary, vec![7, 8], &[2]);
        assert_eq!(cmds, vec![JobCommand::FetchDigest { peer: 2 }]);
        let cmds = job.on_input(JobInput::Digest {
            peer: 2,
            buckets: vec![7, 8],
        });
        assert!(cmds.is_empty());
        assert!(job.is_finished());
        assert_eq!(job.report().peers_in_sync, 1);
    }

    #[test]
    fn primary_pushes_missing_and_newer_only() {
        let (mut job, _) = ReplicationJob::start(ReplicaRole::Primary, vec![1, 5], &[2]);
        let cmds = job.on_input(JobInput::Digest {
            peer: 2,
            buckets: vec![1, 6],
        });
        assert_eq!(
            cmds,
            vec![
                JobCommand::FetchEntries {
                    peer: 2,
                    buckets: vec![1]
                },
                JobCommand::ReadLocal {
                    buckets: Some(vec![1])
                }
            ]
        );
        let local = vec![(1, e("a", 5)), (1, e("b", 5)), (1, e("c", 5))];
        assert!(
            job.on_input(JobInput::LocalEntries { entries: local })
                .is_empty()
        );
        let remote = vec![(1, e("a", 5)), (1, e("b", 3)), (1, e("d", 1))];
        let cmds = job.on_input(JobInput::PeerEntries {
            peer: 2,
            entries: remote,
        });
        assert_eq!(
            cmds,
            vec![
                JobCommand::Push {
                    peer: 2,
                    entry: e("b", 5)
                },
                JobCommand::Push {
                    peer: 2,
                    entry: e("c", 5)
                }
            ]
        );
        job.on_input(JobInput::Pushed {
            peer: 2,
            entry: e("b", 5),
            ok: true,
        });
        let cmds = job.on_input(JobInput::Pushed {
            peer: 2,
            entry: e("c", 5),
            ok: true,
        });
        assert!(cmds.is_empty(), "primaries never purge");
        assert!(job.is_finished());
        assert_eq!(job.report().pushed, 2);
    }

    #[test]
    fn handoff_purges_only_what_every_primary_confirmed() {
        let (mut job, cmds) = ReplicationJob::start(ReplicaRole::Handoff, vec![9], &[1, 2]);
        assert_eq!(cmds.len(), 3);
        job.on_input(JobInput::LocalEntries {
            entries: vec![(0, e("x", 4))],
        });
        job.on_input(JobInput::Digest {
            peer: 1,
            buckets: vec![9],
        });
        job.on_input(JobInput::Digest {
            peer: 2,
            buckets: vec![0],
        });
        let cmds = job.on_input(JobInput::PeerEntries {
            peer: 2,
            entries: vec![],
        });
        assert_eq!(
            cmds,
            vec![JobCommand::Push {
                peer: 2,
                entry: e("x", 4)
            }]
        );
        let cmds = job.on_input(JobInput::Pushed {
            peer: 2,
            entry: e("x", 4),
            ok: true,
        });
        assert_eq!(cmds, vec![JobCommand::Purge { entry: e("x", 4) }]);
    }

    #[test]
    fn handoff_keeps_data_when_a_primary_fails() {
        let (mut job, _) = ReplicationJob::start(ReplicaRole::Handoff, vec![9], &[1, 2]);
        job.on_input(JobInput::LocalEntries {
            entries: vec![(0, e("x", 4))],
        });
        job.on_input(JobInput::Digest {
            peer: 1,
            buckets: vec![9],
        });
        let cmds = job.on_input(JobInput::PeerFailed { peer: 2 });
        assert!(cmds.is_empty());
        assert!(job.is_finished());
        assert_eq!(job.report().purged, 0);
    }
}
