//! Write and read quorums over a partition's replica set, with handoffs standing in for
//! primaries that fail.
//!
//! A write goes to every primary; each primary that fails is replaced by the next handoff
//! device. It succeeds at `W = ⌊N/2⌋ + 1` acknowledgements. A read asks every primary (handoffs
//! for failed ones) and answers at `R = N − W + 1` responses with the newest version seen, so
//! R + W > N: any read quorum of primaries meets any write quorum of primaries.
//!
//! When acknowledgements or responses came partly from handoffs the quorum is *sloppy*: the data
//! is as durable (W copies), but read-after-write holds only once the replicator has pushed it
//! home. Outcomes say which, so callers (and the simulation's invariant checks) can tell.

use std::collections::BTreeMap;

use cairn_ring::DeviceId;

use super::version::Version;

/// Write quorum for N replicas: a majority.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Read quorum for N replicas such that R + W > N.
pub fn read_quorum(n: usize) -> usize {
    n - majority(n) + 1
}

/// The devices a request for a partition goes to first: its primaries, except that a primary
/// the caller already knows to be down is replaced by the next handoff (in ring order) that is
/// not known down. Returns the chosen targets and the handoffs left over, in order, for
/// substitutes on later failures.
pub fn choose_targets(
    primaries: &[DeviceId],
    handoffs: &[DeviceId],
    is_down: impl Fn(DeviceId) -> bool,
) -> (Vec<DeviceId>, Vec<DeviceId>) {
    let mut spare = handoffs
        .iter()
        .copied()
        .filter(|d| !primaries.contains(d))
        .collect::<std::collections::VecDeque<_>>();
    let mut targets = Vec::with_capacity(primaries.len());
    for &p in primaries {
        if !is_down(p) {
            targets.push(p);
            continue;
        }
        // Skip handoffs also known down; if none is left keep the primary and let it fail.
        let mut chosen = None;
        while let Some(h) = spare.pop_front() {
            if !is_down(h) {
                chosen = Some(h);
                break;
            }
        }
        targets.push(chosen.unwrap_or(p));
    }
    (targets, spare.into_iter().collect())
}

/// The order in which to fetch an object's bytes from the devices a read quorum asked:
/// `holders` (answered with the newest version) first, then every other device asked that did
/// not answer (it may hold the version; a fetch checks, but it may also be down or hung, so it
/// never goes before a known holder). Among the holders, `cached` (the first write target, whose
/// copy writes keep in the page cache) goes first. Devices that answered without the version are
/// left out.
pub fn fetch_order(
    holders: &[DeviceId],
    asked: &[DeviceId],
    answered: &[DeviceId],
    cached: Option<DeviceId>,
) -> Vec<DeviceId> {
    let mut order: Vec<DeviceId> = holders.to_vec();
    order.extend(
        asked
            .iter()
            .copied()
            .filter(|d| !holders.contains(d) && !answered.contains(d)),
    );
    if let Some(at) = holders.iter().position(|d| Some(*d) == cached) {
        order[..=at].rotate_right(1);
    }
    order
}

/// Why a device was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetRole {
    Primary,
    /// Standing in for a failed primary.
    Handoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetState {
    Pending,
    Acked,
    Failed,
}

/// How a finished write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// W acknowledgements; `strict` when W of them came from primaries.
    Succeeded { strict: bool },
    /// Too many targets failed and no handoffs are left.
    Failed,
}

/// Tracks one write across its targets.
#[derive(Debug)]
pub struct WriteQuorum {
    needed: usize,
    targets: BTreeMap<DeviceId, (TargetRole, TargetState)>,
    /// Handoffs not yet used, in ring order.
    spare: std::vec::IntoIter<DeviceId>,
    outcome: Option<WriteOutcome>,
}

impl WriteQuorum {
    /// Starts a write to `primaries`; `handoffs` are the partition's handoff devices in ring
    /// order (a bounded prefix is enough: each failed primary consumes one). Returns the devices
    /// to send to now.
    pub fn start(primaries: &[DeviceId], handoffs: Vec<DeviceId>) -> (WriteQuorum, Vec<DeviceId>) {
        Self::start_with(primaries, primaries, handoffs)
    }

    /// As [`WriteQuorum::start`], but sending to `targets` (from [`choose_targets`]): the
    /// primaries with known-down ones already replaced by handoffs.
    pub fn start_with(
        primaries: &[DeviceId],
        targets: &[DeviceId],
        handoffs: Vec<DeviceId>,
    ) -> (WriteQuorum, Vec<DeviceId>) {
        assert!(!primaries.is_empty(), "a partition always has replicas");
        assert_eq!(primaries.len(), targets.len(), "one target per replica");
        let targets_map = role_map(primaries, targets);
        assert_eq!(
            targets_map.len(),
            primaries.len(),
            "targets are distinct devices"
        );
        let handoffs = handoffs
            .into_iter()
            .filter(|d| !targets_map.contains_key(d))
            .collect::<Vec<_>>();
        let q = WriteQuorum {
            needed: majority(primaries.len()),
            targets: targets_map,
            spare: handoffs.into_iter(),
            outcome: None,
        };
        (q, targets.to_vec())
    }

    /// A target acknowledged (durably stored) the write.
    pub fn on_ack(&mut self, device: DeviceId) -> Option<WriteOutcome> {
        if let Some((_, state)) = self.targets.get_mut(&device)
            && *state == TargetState::Pending
        {
            *state = TargetState::Acked;
        }
        self.decide()
    }

    /// A target failed (error, timeout, refused). Returns the handoff to send to instead, if
    /// the write still needs one.
    pub fn on_failure(&mut self, device: DeviceId) -> (Option<WriteOutcome>, Option<DeviceId>) {
        let mut substitute = None;
        if let Some((_, state)) = self.targets.get_mut(&device)
            && *state == TargetState::Pending
        {
            *state = TargetState::Failed;
            if self.outcome.is_none() {
                substitute = self.spare.next();
                if let Some(h) = substitute {
                    self.targets
                        .insert(h, (TargetRole::Handoff, TargetState::Pending));
                }
            }
        }
        (self.decide(), substitute)
    }

    pub fn outcome(&self) -> Option<WriteOutcome> {
        self.outcome
    }

    /// Targets still waiting for an answer.
    pub fn pending(&self) -> usize {
        self.count(|_, s| s == TargetState::Pending)
    }

    fn count(&self, f: impl Fn(TargetRole, TargetState) -> bool) -> usize {
        self.targets.values().filter(|(r, s)| f(*r, *s)).count()
    }

    fn decide(&mut self) -> Option<WriteOutcome> {
        if self.outcome.is_some() {
            return self.outcome;
        }
        let acked = self.count(|_, s| s == TargetState::Acked);
        let pending = self.pending();
        if acked >= self.needed {
            let primary_acks =
                self.count(|r, s| r == TargetRole::Primary && s == TargetState::Acked);
            self.outcome = Some(WriteOutcome::Succeeded {
                strict: primary_acks >= self.needed,
            });
        } else if acked + pending < self.needed {
            // Every failure already drew a handoff if one was left, so nothing can close the gap.
            self.outcome = Some(WriteOutcome::Failed);
        }
        self.outcome
    }
}

/// How a finished read went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome<T> {
    /// R answers arrived. `newest` is the greatest version among them with its payload and the
    /// device that holds it (`None`: no answering replica has the name). `strict` when R of the
    /// answers came from primaries. `stale` lists answering devices holding an older version
    /// (or none), for read repair.
    Answered {
        newest: Option<(DeviceId, Version, T)>,
        strict: bool,
        stale: Vec<DeviceId>,
    },
    /// Too many targets failed to reach R answers.
    Failed,
}

/// Tracks one read across its targets.
#[derive(Debug)]
pub struct ReadQuorum<T> {
    needed: usize,
    targets: BTreeMap<DeviceId, (TargetRole, TargetState)>,
    spare: std::vec::IntoIter<DeviceId>,
    answers: Vec<(DeviceId, Option<(Version, T)>)>,
    done: bool,
}

impl<T: Clone> ReadQuorum<T> {
    /// Starts a read of `primaries` (handoffs as for writes). Returns the devices to ask now.
    pub fn start(
        primaries: &[DeviceId],
        handoffs: Vec<DeviceId>,
    ) -> (ReadQuorum<T>, Vec<DeviceId>) {
        Self::start_with(primaries, primaries, handoffs)
    }

    /// As [`ReadQuorum::start`], asking `targets` (from [`choose_targets`]).
    pub fn start_with(
        primaries: &[DeviceId],
        targets: &[DeviceId],
        handoffs: Vec<DeviceId>,
    ) -> (ReadQuorum<T>, Vec<DeviceId>) {
        assert!(!primaries.is_empty(), "a partition always has replicas");
        assert_eq!(primaries.len(), targets.len(), "one target per replica");
        let targets_map = role_map(primaries, targets);
        let handoffs = handoffs
            .into_iter()
            .filter(|d| !targets_map.contains_key(d))
            .collect::<Vec<_>>();
        let q = ReadQuorum {
            needed: read_quorum(primaries.len()),
            targets: targets_map,
            spare: handoffs.into_iter(),
            answers: Vec::new(),
            done: false,
        };
        (q, targets.to_vec())
    }

    /// A target answered: what it holds for the name, if anything.
    pub fn on_answer(
        &mut self,
        device: DeviceId,
        held: Option<(Version, T)>,
    ) -> Option<ReadOutcome<T>> {
        if let Some((_, state)) = self.targets.get_mut(&device)
            && *state == TargetState::Pending
        {
            *state = TargetState::Acked;
            self.answers.push((device, held));
        }
        self.decide()
    }

    /// A target failed; returns the handoff to ask instead, if any.
    pub fn on_failure(&mut self, device: DeviceId) -> (Option<ReadOutcome<T>>, Option<DeviceId>) {
        let mut substitute = None;
        if let Some((_, state)) = self.targets.get_mut(&device)
            && *state == TargetState::Pending
        {
            *state = TargetState::Failed;
            if !self.done {
                substitute = self.spare.next();
                if let Some(h) = substitute {
                    self.targets
                        .insert(h, (TargetRole::Handoff, TargetState::Pending));
                }
            }
        }
        (self.decide(), substitute)
    }

    fn decide(&mut self) -> Option<ReadOutcome<T>> {
        if self.done {
            return None;
        }
        let pending = self
            .targets
            .values()
            .filter(|(_, s)| *s == TargetState::Pending)
            .count();
        if self.answers.len() >= self.needed {
            self.done = true;
            let newest = self
                .answers
                .iter()
                .filter_map(|(d, held)| held.as_ref().map(|(v, t)| (*d, *v, t.clone())))
                .max_by_key(|(_, v, _)| v.timestamp);
            let newest_ts = newest.as_ref().map(|(_, v, _)| v.timestamp);
            let stale = self
                .answers
                .iter()
                .filter(|(_, held)| held.as_ref().map(|(v, _)| v.timestamp) != newest_ts)
                .map(|(d, _)| *d)
                .collect();
            let primary_answers = self
                .answers
                .iter()
                .filter(|(d, _)| {
                    self.targets
                        .get(d)
                        .is_some_and(|(r, _)| *r == TargetRole::Primary)
                })
                .count();
            return Some(ReadOutcome::Answered {
                newest,
                strict: primary_answers >= self.needed,
                stale,
            });
        }
        if self.answers.len() + pending < self.needed {
            self.done = true;
            return Some(ReadOutcome::Failed);
        }
        None
    }
}

fn role_map(
    primaries: &[DeviceId],
    targets: &[DeviceId],
) -> BTreeMap<DeviceId, (TargetRole, TargetState)> {
    targets
        .iter()
        .map(|&d| {
            let role = if primaries.contains(&d) {
                TargetRole::Primary
            } else {
                TargetRole::Handoff
            };
            (d, (role, TargetState::Pending))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::Timestamp;

    fn v(t: u64) -> Version {
        Version {
            timestamp: Timestamp {
                wall_micros: t,
                counter: 0,
                node: 1,
            },
            tombstone: false,
        }
    }

    #[test]
    fn fetches_start_at_the_cached_copy_when_it_holds_the_version() {
        // 1 and 3 answered with the newest version, 2 has not answered (it may be hung).
        assert_eq!(
            fetch_order(&[3, 1], &[1, 2, 3], &[3, 1], Some(1)),
            [1, 3, 2]
        );
        assert_eq!(
            fetch_order(&[3, 1], &[1, 2, 3], &[3, 1], Some(2)),
            [3, 1, 2]
        );
        // 2 answered with an older version (or none): never asked for the bytes.
        assert_eq!(
            fetch_order(&[3, 1], &[1, 2, 3], &[3, 1, 2], Some(2)),
            [3, 1]
        );
        assert_eq!(fetch_order(&[3], &[1, 2, 3], &[3, 2], None), [3, 1]);
    }

    #[test]
    fn known_down_primaries_are_replaced_up_front() {
        let (targets, spare) = choose_targets(&[1, 2, 3], &[2, 4, 5, 6], |d| d == 2 || d == 4);
        assert_eq!(targets, vec![1, 5, 3]);
        assert_eq!(spare, vec![6]);
        let (mut q, send) = WriteQuorum::start_with(&[1, 2, 3], &targets, spare);
        assert_eq!(send, vec![1, 5, 3]);
        q.on_ack(5);
        assert_eq!(q.on_ack(1), Some(WriteOutcome::Succeeded { strict: false }));
    }

    #[test]
    fn quorum_sizes_overlap() {
        for n in 1..=9 {
            assert!(read_quorum(n) + majority(n) > n, "n={n}");
        }
        assert_eq!((majority(3), read_quorum(3)), (2, 2));
        assert_eq!((majority(1), read_quorum(1)), (1, 1));
    }

    #[test]
    fn write_succeeds_strictly_on_two_primaries() {
        let (mut q, send) = WriteQuorum::start(&[1, 2, 3], vec![4, 5]);
        assert_eq!(send, vec![1, 2, 3]);
        assert_eq!(q.on_ack(1), None);
        assert_eq!(q.on_ack(3), Some(WriteOutcome::Succeeded { strict: true }));
    }

    #[test]
    fn failed_primaries_are_replaced_by_handoffs_in_order() {
        let (mut q, _) = WriteQuorum::start(&[1, 2, 3], vec![2, 7, 8]);
        assert_eq!(q.on_failure(1), (None, Some(7)));
        assert_eq!(q.on_failure(2), (None, Some(8)));
        assert_eq!(q.on_ack(7), None);
        assert_eq!(q.on_ack(3), Some(WriteOutcome::Succeeded { strict: false }));
    }

    #[test]
    fn write_fails_when_handoffs_run_out() {
        let (mut q, _) = WriteQuorum::start(&[1, 2, 3], vec![]);
        assert_eq!(q.on_failure(1), (None, None));
        assert_eq!(q.on_failure(2), (Some(WriteOutcome::Failed), None));
        // A late ack changes nothing once decided.
        assert_eq!(q.on_ack(3), Some(WriteOutcome::Failed));
    }

    #[test]
    fn read_returns_newest_of_quorum_and_names_stale_replicas() {
        let (mut q, _) = ReadQuorum::start(&[1, 2, 3], vec![]);
        assert_eq!(q.on_answer(2, Some((v(5), "old"))), None);
        let out = q.on_answer(3, Some((v(9), "new")));
        assert_eq!(
            out,
            Some(ReadOutcome::Answered {
                newest: Some((3, v(9), "new")),
                strict: true,
                stale: vec![2]
            })
        );
    }

    #[test]
    fn read_counts_not_found_answers() {
        let (mut q, _) = ReadQuorum::<()>::start(&[1, 2, 3], vec![9]);
        assert_eq!(q.on_failure(1), (None, Some(9)));
        assert_eq!(q.on_answer(9, None), None);
        assert_eq!(
            q.on_answer(2, None),
            Some(ReadOutcome::Answered {
                newest: None,
                strict: false,
                stale: vec![]
            })
        );
    }
}
