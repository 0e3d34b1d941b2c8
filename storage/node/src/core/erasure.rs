//! Decisions of the erasure-coded paths, as pure functions: which version a read returns from
//! the fragment archives' answers, and which primary stands in for a dead one.

use std::collections::{BTreeMap, BTreeSet};

/// One slot's answer to "which archive do you hold": `(fragment index, timestamp, tombstone)`.
/// `T` is any ordered timestamp.
pub type ArchiveAnswer<T> = (u8, T, bool);

/// What a read of an EC object concludes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcReadDecision<T> {
    /// The newest version with at least k distinct fragments (and no newer tombstone).
    Found(T),
    /// Nothing stored, or a tombstone is the newest version seen.
    Absent,
    /// Too few devices answered to rule out an acknowledged write, or the newest version has
    /// fewer than k fragments and nothing older is complete.
    Unavailable(String),
}

/// Decides a read from the archives `answered` devices reported (`answers` lists only those
/// holding something), for a k+m stripe whose writes are acknowledged at `write_quorum`.
///
/// An acknowledged write is on ≥ W devices, so any n − W + 1 answers include one of them:
/// fewer answers cannot say "absent". A version newer than the newest complete one but with
/// fewer than k fragments is a write in flight or one that failed, and is skipped.
pub fn decide_read<T: Ord + Copy + std::fmt::Debug>(
    answers: &[ArchiveAnswer<T>],
    answered: usize,
    k: usize,
    m: usize,
    write_quorum: usize,
) -> EcReadDecision<T> {
    let n = k + m;
    let needed = n + 1 - write_quorum.min(n);
    if answered < needed {
        return EcReadDecision::Unavailable(format!(
            "{answered} of {n} fragment devices answered, {needed} needed"
        ));
    }
    let mut versions: BTreeMap<T, (bool, BTreeSet<u8>)> = BTreeMap::new();
    for &(index, ts, tombstone) in answers {
        let v = versions.entry(ts).or_insert((tombstone, BTreeSet::new()));
        v.0 |= tombstone;
        v.1.insert(index);
    }
    let mut incomplete = None;
    for (ts, (tombstone, indexes)) in versions.into_iter().rev() {
        if tombstone {
            return EcReadDecision::Absent;
        }
        if indexes.len() >= k {
            return EcReadDecision::Found(ts);
        }
        incomplete.get_or_insert((ts, indexes.len()));
    }
    match incomplete {
        Some((ts, have)) => EcReadDecision::Unavailable(format!(
            "the newest version ({ts:?}) has {have} of the {k} fragments needed to read it"
        )),
        None => EcReadDecision::Absent,
    }
}

/// Which slot rebuilds the fragments of slot `missing` onto a handoff: the first slot after it
/// (cyclically) whose primary answered. Every primary computes the same answer from the same
/// view, so one acts.
pub fn acting_slot(missing: usize, n: usize, answering: impl Fn(usize) -> bool) -> Option<usize> {
    (1..n).map(|d| (missing + d) % n).find(|&s| answering(s))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn newest_complete_version_wins_and_tombstones_hide() {
        let k = 4;
        let v1: Vec<_> = (0..6).map(|i| (i, 1u64, false)).collect();
        assert_eq!(decide_read(&v1, 6, k, 2, 5), EcReadDecision::Found(1));
        // A newer write on 3 devices (in flight): the complete older one serves.
        let mut mixed: Vec<_> = (0..3).map(|i| (i, 2u64, false)).collect();
        mixed.extend((3..6).map(|i| (i, 1u64, false)));
        assert!(matches!(
            decide_read(&mixed, 6, k, 2, 5),
            EcReadDecision::Unavailable(_)
        ));
        mixed.push((0, 1, false));
        assert_eq!(decide_read(&mixed, 6, k, 2, 5), EcReadDecision::Found(1));
        let deleted = [
            (0, 3u64, true),
            (1, 1, false),
            (2, 1, false),
            (3, 1, false),
            (4, 1, false),
        ];
        assert_eq!(decide_read(&deleted, 6, k, 2, 5), EcReadDecision::Absent);
        assert_eq!(decide_read::<u64>(&[], 2, k, 2, 5), EcReadDecision::Absent);
        assert!(matches!(
            decide_read::<u64>(&[], 1, k, 2, 5),
            EcReadDecision::Unavailable(_)
        ));
    }

    #[test]
    fn exactly_one_slot_acts_for_each_missing_one() {
        let down = [1usize, 2, 5];
        for missing in down {
            let acting: Vec<usize> = (0..6)
                .filter(|s| !down.contains(s))
                .filter(|&me| {
                    acting_slot(missing, 6, |s| !down.contains(&s) || s == me) == Some(me)
                })
                .collect();
            assert_eq!(acting.len(), 1, "slot {missing}: {acting:?}");
        }
        assert_eq!(acting_slot(0, 6, |_| false), None);
    }

    proptest! {
        /// Whatever subset of devices answers (at least n − W + 1 of them), a read never
        /// returns a version older than the newest acknowledged write, nor "absent" while one
        /// exists, as long as at least k devices that hold it answer.
        #[test]
        fn reads_see_every_acknowledged_write(
            holders in proptest::collection::btree_set(0usize..6, 5..=6),
            stale_version_on_others in any::<bool>(),
            answering in proptest::collection::btree_set(0usize..6, 2..=6),
        ) {
            let (k, m, w) = (4usize, 2usize, 5usize);
            // Version 2 acknowledged on `holders` (≥ W); the rest hold version 1 or nothing.
            let answers: Vec<ArchiveAnswer<u64>> = answering
                .iter()
                .filter_map(|&d| {
                    if holders.contains(&d) {
                        Some((d as u8, 2, false))
                    } else if stale_version_on_others {
                        Some((d as u8, 1, false))
                    } else {
                        None
                    }
                })
                .collect();
            let decision = decide_read(&answers, answering.len(), k, m, w);
            let fresh = answering.iter().filter(|d| holders.contains(d)).count();
            match decision {
                EcReadDecision::Found(ts) => prop_assert_eq!(ts, 2),
                EcReadDecision::Absent => prop_assert!(false, "absent with {fresh} fresh answers"),
                EcReadDecision::Unavailable(_) => prop_assert!(fresh < k),
            }
        }
    }
}
