//! The rebalancer: assigns every partition-replica to a device.
//!
//! It works top-down through the failure-domain tree (regions, then zones, nodes, devices).
//! At each level and within each parent tier it
//! 1. computes an integer quota per child from the child's share of the replicas the parent
//!    actually holds (so a parent that could not shed its excess passes it down evenly);
//! 2. unplaces replicas that break the child's per-partition cap (dispersion);
//! 3. unplaces replicas from children above quota (balance);
//! 4. places every unplaced replica in the child with the largest remaining deficit whose cap
//!    allows it, taking partitions with the most unplaced replicas first (Havel–Hakimi order,
//!    which keeps deficits level so late replicas do not find only full children);
//! 5. repairs what caps left uneven by moving replicas that are moving anyway, then movable
//!    ones, and by chains of two where every direct move is blocked.
//!
//! A replica that is unplaced at a level keeps its place at every level above, so a replica
//! shed from a zone stays in its region: movement is confined to where the imbalance is.
//! A ring with nothing placed yet takes a one-pass path instead (`fresh`).
//!
//! Modules: `fresh` (new rings), `shed` (steps 2–3), `place` (step 4), `repair` (step 5);
//! this one holds the working state, quotas, caps and the level loop.
//!
//! `min_part_hours`: a partition whose replica moved within the window is locked, and once
//! one replica of a partition moves in a rebalance its other replicas stay put (so a
//! partition never loses a majority of its placed replicas at once). Replicas on removed
//! devices move regardless.

// Slot indexes (< 2^22 partitions × 32 replicas), tier indexes (< devices ≤ 65,535 per level)
// and levels (≤ 4) all fit the narrower integer types they are stored in; `rebalance` asserts
// the first bound on entry.
#![allow(clippy::cast_possible_truncation)]

mod fresh;
mod place;
mod repair;
mod shed;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::builder::RingBuilder;
use crate::device::{DeviceId, NO_DEVICE};
use crate::error::{Result, RingError};
use crate::rng::{PartitionOrder, SplitMix64};
use crate::topology::{EPS, TierIdx, TierTree};

/// Inputs that make a rebalance deterministic: the same builder, seed and time give the
/// same ring.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceOptions {
    pub seed: u64,
    /// Minutes since the Unix epoch; compared with replicas' last-moved times.
    pub now_minutes: u32,
}

/// What a rebalance did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RebalanceOutcome {
    /// Partition-replicas reassigned from one device to another.
    pub moved: u64,
    /// Partition-replicas that had no device before (new ring, more replicas).
    pub assigned: u64,
    /// Devices whose removal completed.
    pub removed_devices: Vec<DeviceId>,
}

/// A progress report: `done` of `total` steps finished, now in `stage`.
#[derive(Debug, Clone, Copy)]
pub struct ProgressStep {
    pub done: u32,
    pub total: u32,
    pub stage: &'static str,
}

const STAGES_PER_LEVEL: u32 = 4;
const PROGRESS_TOTAL: u32 = 4 * STAGES_PER_LEVEL;
/// Children of one tier beyond which picking the largest deficit uses a heap.
const LINEAR_PICK_MAX: usize = 16;
/// Children whose deficit is this close to the largest are equally good picks: choosing
/// among them at random keeps placement from falling into a cycle that pairs the same tiers of
/// different failure domains (which costs extra moves at the next rebalance).
const NEAR_MAX_DEFICIT: i64 = 1;
/// Tiers the lookahead may visit per question.
const LOOKAHEAD_BUDGET: u32 = 64;
/// Children `pick_child` tries before settling for the largest deficit.
const LOOKAHEAD_TRIES: usize = 3;

impl RingBuilder {
    /// Rebalances the ring. See the module documentation for the algorithm.
    pub fn rebalance(&mut self, opts: RebalanceOptions) -> Result<RebalanceOutcome> {
        self.rebalance_with_progress(opts, &mut |_| {})
    }

    /// As [`RingBuilder::rebalance`], reporting progress after each stage.
    pub fn rebalance_with_progress(
        &mut self,
        opts: RebalanceOptions,
        progress: &mut dyn FnMut(ProgressStep),
    ) -> Result<RebalanceOutcome> {
        let active: Vec<_> = self
            .devices()
            .filter(|d| !self.is_pending_removal(d.id))
            .collect();
        let weighted = active.iter().filter(|d| d.weight > 0.0).count();
        if weighted == 0 {
            return Err(RingError::NoWeightedDevices);
        }
        if self.replicas() > weighted as f64 + EPS {
            return Err(RingError::NotEnoughDevices {
                replicas: self.replicas(),
                devices: weighted,
            });
        }
        let tree = TierTree::build(
            &active,
            self.device_table_len(),
            self.replicas(),
            self.overload(),
        );
        assert!(
            u64::from(self.partitions()) * self.row_lengths().len() as u64 <= u64::from(u32::MAX),
            "slot indexes fit in u32 by the part power and replica limits"
        );
        let old = self.assignment_flat();
        let mut state = Placement::new(self, &tree, opts);
        let done = state.nothing_placed() && state.place_fresh(progress)?;
        if !done {
            for level in 1..=4 {
                state.run_level(level, progress)?;
            }
        }
        let new = state.into_row_major();
        debug_assert!(new.iter().all(|&d| d != NO_DEVICE), "every slot is placed");

        let mut outcome = RebalanceOutcome::default();
        let mut changed = Vec::new();
        for (s, (&was, &now)) in old.iter().zip(&new).enumerate() {
            if was != now {
                changed.push(s);
                if was == NO_DEVICE {
                    outcome.assigned += 1;
                } else {
                    outcome.moved += 1;
                }
            }
        }
        if changed.is_empty() && !self.pending_removal.is_empty() {
            // Nothing moved, but removals complete: that is a change nodes must see.
            self.version += 1;
        }
        self.store_assignment(&new, &changed, opts.now_minutes);
        outcome.removed_devices = self.finish_removals();
        Ok(outcome)
    }
}

/// Working state of one partition-replica.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Device, `NO_DEVICE` while unplaced.
    dev: DeviceId,
    /// For an unplaced slot: the level of the deepest tier it has been placed in so far.
    pend_level: u8,
    /// Unplaced during this rebalance: moving it again costs nothing.
    moving: bool,
    /// Device before this rebalance (`NO_DEVICE` if none or leaving the ring).
    origin: DeviceId,
    /// For an unplaced slot: the deepest tier it has been placed in so far.
    pend_tier: TierIdx,
}

/// Working state of one rebalance. Slots are laid out partition-major (`partition * rows +
/// replica`) so that one partition's replicas share a cache line: every pass visits
/// partitions, not replica rows.
struct Placement<'a> {
    tree: &'a TierTree,
    parts: u32,
    rows: usize,
    row_len: Vec<u32>,
    /// Rows that cover every partition, and the length of a shorter last row (0 if none).
    full_rows: usize,
    partial_len: u32,
    slots: Vec<Slot>,
    /// `caps[level][c * (rows + 1) + n]`: most replicas of a partition tier `c` may hold
    /// when its parent holds `n` (see [`Placement::compute_cap`]).
    caps: [Vec<u8>; 5],
    /// The partition may not move another replica in this rebalance.
    locked: Vec<bool>,
    /// Replicas of the partition unplaced during this rebalance.
    moving_in_partition: Vec<u8>,
    /// Every slot unplaced during this rebalance (some may since be back in place): the
    /// placement pass visits their partitions instead of all partitions.
    moving_slots: Vec<usize>,
    /// Partitions that may exceed a cap: `None` means any (check all), `Some(list)` only
    /// those listed (after a fresh placement, the ones that needed a fallback).
    cap_suspects: Option<Vec<u32>>,
    lock_on_move: bool,
    /// Placed replicas per device tier, and each device's target count: which replica a tier
    /// sheds is chosen by how far its device is over target, so shedding at one level
    /// leaves the levels below even.
    dev_load: Vec<i64>,
    dev_target: Vec<f64>,
    /// Placed replicas per tier at every level, refreshed from `dev_load` at the start of
    /// each level: the lookahead's view of which deeper tiers are below target.
    tier_load: [Vec<i64>; 5],
    order: PartitionOrder,
    tiebreak: Vec<Vec<u32>>,
    /// Seeds the per-replica choice among near-equal children.
    salt: u64,
}

/// At most this many replicas of one partition (`limits::REPLICAS_MAX` rounded up).
const SLOTS_MAX: usize = 32;

/// The slots of one partition and where they are at the level being worked on.
#[derive(Default)]
struct PartitionSlots {
    len: usize,
    slot: [usize; SLOTS_MAX],
    /// Tier at the parent level.
    parent: [TierIdx; SLOTS_MAX],
    /// Tier at the current level, if placed that deep.
    child: [Option<TierIdx>; SLOTS_MAX],
}

impl<'a> Placement<'a> {
    fn new(b: &RingBuilder, tree: &'a TierTree, opts: RebalanceOptions) -> Self {
        let parts = b.partitions();
        let row_len = b.row_lengths();
        let rows = row_len.len();
        let mut rng = SplitMix64::new(opts.seed);
        let order = PartitionOrder::new(&mut rng, parts);
        let tiebreak = tree
            .levels
            .iter()
            .map(|l| (0..l.len()).map(|_| rng.next_u32()).collect())
            .collect();
        let lock_on_move = b.min_part_hours() > 0;
        let mut locked = vec![false; parts as usize];
        let unplaced = Slot {
            dev: NO_DEVICE,
            pend_level: 0,
            moving: true,
            origin: NO_DEVICE,
            pend_tier: 0,
        };
        let mut slots = vec![unplaced; parts as usize * rows];
        let window = b.min_part_hours().saturating_mul(60);
        for r in 0..rows {
            for p in 0..row_len[r] as usize {
                let d = b.assignment[r][p];
                // Replicas on devices leaving the ring, and replicas never placed, start
                // unplaced at the root; moving them locks their partition.
                if d == NO_DEVICE || tree.device_tier(d).is_none() {
                    locked[p] |= lock_on_move;
                } else {
                    slots[p * rows + r] = Slot {
                        dev: d,
                        moving: false,
                        origin: d,
                        ..unplaced
                    };
                }
                let t = b.last_moved[r][p];
                if lock_on_move && t != 0 && opts.now_minutes.saturating_sub(t) < window {
                    locked[p] = true;
                }
            }
        }
        let full_rows = row_len.iter().filter(|&&l| l == parts).count();
        let mut dev_load = vec![0i64; tree.levels[4].len()];
        let mut moving_in_partition = vec![0u8; parts as usize];
        let mut moving_slots = Vec::new();
        for (s, slot) in slots.iter().enumerate() {
            if slot.dev != NO_DEVICE {
                dev_load[tree.dev_tier[4][usize::from(slot.dev)] as usize] += 1;
            } else if s % rows < row_len.len() && (s / rows) < row_len[s % rows] as usize {
                moving_in_partition[s / rows] += 1;
                moving_slots.push(s);
            }
        }
        let dev_target = tree.levels[4]
            .target
            .iter()
            .map(|&t| t * f64::from(parts))
            .collect();
        let partial_len = row_len.get(full_rows).copied().unwrap_or(0);
        let mut placement = Self {
            tree,
            parts,
            rows,
            row_len,
            full_rows,
            partial_len,
            slots,
            caps: Default::default(),
            locked,
            moving_in_partition,
            moving_slots,
            cap_suspects: None,
            lock_on_move,
            dev_load,
            dev_target,
            tier_load: Default::default(),
            order,
            tiebreak,
            salt: rng.next_u64(),
        };
        for level in 1..=4 {
            placement.prepare_caps(level);
        }
        placement
    }

    /// The assignment in the builder's row-major layout.
    fn into_row_major(self) -> Vec<DeviceId> {
        let mut out = Vec::with_capacity(self.row_len.iter().map(|&l| l as usize).sum());
        for r in 0..self.rows {
            for p in 0..self.row_len[r] as usize {
                out.push(self.slots[p * self.rows + r].dev);
            }
        }
        out
    }

    fn partition_of(&self, s: usize) -> usize {
        s / self.rows
    }

    /// Slot indexes of partition `p` (the last replica row may not reach it).
    fn slot_range(&self, p: u32) -> std::ops::Range<usize> {
        let n = self.full_rows + usize::from(p < self.partial_len);
        let start = p as usize * self.rows;
        start..start + n
    }

    /// Fills `ps` with partition `p`'s slots; the buffer is reused because zeroing its
    /// fixed arrays on every call was a measurable share of a rebalance.
    fn partition_slots_into(&self, p: u32, level: usize, ps: &mut PartitionSlots) {
        ps.len = 0;
        for s in self.slot_range(p) {
            let i = ps.len;
            ps.slot[i] = s;
            ps.parent[i] = self.tier_at(s, level - 1).unwrap_or(TierIdx::MAX);
            ps.child[i] = self.tier_at(s, level);
            ps.len += 1;
        }
    }

    fn tier_at(&self, s: usize, level: usize) -> Option<TierIdx> {
        let slot = self.slots[s];
        if slot.dev != NO_DEVICE {
            return Some(self.tree.dev_tier[level][usize::from(slot.dev)]);
        }
        let pl = usize::from(slot.pend_level);
        (pl >= level).then(|| self.tree.ancestor(pl, slot.pend_tier, level))
    }

    /// Adds `delta` to the loads of device tier `t` and all its ancestors.
    fn adjust_tier_loads(&mut self, t: TierIdx, delta: i64) {
        if self.tier_load[4].is_empty() {
            return;
        }
        let mut t = t;
        for level in (0..=4).rev() {
            self.tier_load[level][t as usize] += delta;
            if level > 0 {
                t = self.tree.levels[level].parent[t as usize];
            }
        }
    }

    fn refresh_tier_loads(&mut self) {
        let tree = self.tree;
        for level in 0..4 {
            self.tier_load[level] = vec![0; tree.levels[level].len()];
        }
        self.tier_load[4] = self.dev_load.clone();
        for level in (1..=4).rev() {
            for t in 0..tree.levels[level].len() {
                let parent = tree.levels[level].parent[t] as usize;
                self.tier_load[level - 1][parent] += self.tier_load[level][t];
            }
        }
    }

    fn movable(&self, s: usize) -> bool {
        self.slots[s].moving || !self.locked[self.partition_of(s)]
    }

    /// Takes slot `s` out of its child tier; it stays in `parent` at `level - 1`.
    fn unplace(&mut self, s: usize, level: usize, parent: TierIdx) {
        self.mark_moving(s);
        self.release_device(s);
        let slot = &mut self.slots[s];
        slot.dev = NO_DEVICE;
        slot.pend_tier = parent;
        slot.pend_level = (level - 1) as u8;
    }

    fn mark_moving(&mut self, s: usize) {
        if !self.slots[s].moving {
            self.slots[s].moving = true;
            self.moving_slots.push(s);
            let p = self.partition_of(s);
            self.moving_in_partition[p] = self.moving_in_partition[p].saturating_add(1);
            if self.lock_on_move {
                self.locked[p] = true;
            }
        }
    }

    /// Takes slot `s` off the loads of the device it is on, if any.
    fn release_device(&mut self, s: usize) {
        let dev = self.slots[s].dev;
        if dev != NO_DEVICE {
            let t = self.tree.dev_tier[4][usize::from(dev)];
            self.dev_load[t as usize] -= 1;
            self.adjust_tier_loads(t, -1);
        }
    }

    /// Puts slot `s` into child tier `c` at `level`.
    fn place(&mut self, s: usize, level: usize, c: TierIdx) {
        self.release_device(s);
        let slot = &mut self.slots[s];
        if level == 4 {
            slot.dev = self.tree.device_of_tier[c as usize];
            self.dev_load[c as usize] += 1;
            self.adjust_tier_loads(c, 1);
        } else {
            slot.dev = NO_DEVICE;
            slot.pend_tier = c;
            slot.pend_level = level as u8;
        }
    }

    /// Most replicas of one partition that child `c` may hold when its parent holds
    /// `in_parent`: its share of them rounded up, and no more than its weighted devices.
    fn compute_cap(&self, level: usize, c: usize, in_parent: usize) -> usize {
        let l = &self.tree.levels[level];
        let by_share = ((in_parent as f64) * l.share[c] - EPS).ceil().max(0.0) as usize;
        by_share.min(l.weighted_devices[c] as usize)
    }

    /// Tabulates [`Placement::compute_cap`] for every child tier of `level`.
    fn prepare_caps(&mut self, level: usize) {
        let width = self.rows + 1;
        let n = self.tree.levels[level].len();
        let mut caps = vec![0u8; n * width];
        for c in 0..n {
            for in_parent in 0..width {
                // At most `rows` (<= 32) replicas: fits in u8.
                caps[c * width + in_parent] =
                    self.compute_cap(level, c, in_parent).min(self.rows) as u8;
            }
        }
        self.caps[level] = caps;
    }

    /// The tabulated cap; `prepare_caps(level)` must have run for this level.
    fn cap(&self, level: usize, c: TierIdx, in_parent: usize) -> usize {
        usize::from(self.caps[level][c as usize * (self.rows + 1) + in_parent.min(self.rows)])
    }

    fn run_level(&mut self, level: usize, progress: &mut dyn FnMut(ProgressStep)) -> Result<()> {
        let tree = self.tree;
        let lvl = &tree.levels[level];
        let par = &tree.levels[level - 1];
        let base = (level as u32 - 1) * STAGES_PER_LEVEL;
        let report = |progress: &mut dyn FnMut(ProgressStep), i: u32, stage| {
            progress(ProgressStep {
                done: base + i,
                total: PROGRESS_TOTAL,
                stage,
            })
        };

        // Quotas from what each parent actually holds.
        let mut items = vec![0u64; par.len()];
        let mut load = vec![0i64; lvl.len()];
        // While counting, note the partitions that could be over a cap: only two replicas in
        // one child, or one in a child with no share, can be (every other child's cap is >= 1).
        let mut suspects: Vec<u32> = Vec::new();
        for p in 0..self.parts {
            let mut seen = [TierIdx::MAX; SLOTS_MAX];
            let mut n_seen = 0;
            let mut suspect = false;
            for s in self.slot_range(p) {
                let slot = self.slots[s];
                if slot.dev != NO_DEVICE {
                    let c = tree.dev_tier[level][usize::from(slot.dev)];
                    items[tree.dev_tier[level - 1][usize::from(slot.dev)] as usize] += 1;
                    load[c as usize] += 1;
                    suspect |= lvl.share[c as usize] <= 0.0
                        || lvl.weighted_devices[c as usize] == 0
                        || seen[..n_seen].contains(&c);
                    seen[n_seen] = c;
                    n_seen += 1;
                } else {
                    debug_assert_eq!(usize::from(slot.pend_level), level - 1);
                    items[slot.pend_tier as usize] += 1;
                }
            }
            if suspect {
                suspects.push(p);
            }
        }
        if let Some(listed) = &self.cap_suspects {
            suspects.clone_from(listed);
        } else {
            // Visit them in the rebalance's partition order.
            let start = self.order.get(0);
            suspects.sort_unstable_by_key(|&p| p.wrapping_sub(start) & (self.parts - 1));
        }
        let quota = self.apportion(level, &items, &load);
        self.refresh_tier_loads();
        report(progress, 1, "quotas");

        // A new ring has nothing placed yet, so nothing to shed.
        if load.iter().any(|&l| l > 0) {
            self.shed_for_dispersion(level, &mut load, &suspects);
            self.shed_for_balance(level, &mut load, &quota);
        }
        report(progress, 2, "gather");
        self.place_pending(level, &mut load, &quota)?;
        report(progress, 3, "place");
        self.repair_balance(level, &mut load, &quota);
        self.repair_two_hop(level, &mut load, &quota);
        report(progress, 4, "repair");
        Ok(())
    }

    /// Integer quotas per child: floor of the share, remainders to the largest fractions and,
    /// among equal fractions, to the children already holding most (so an unchanged ring
    /// keeps its assignment whatever the seed).
    fn apportion(&self, level: usize, items: &[u64], load: &[i64]) -> Vec<i64> {
        let lvl = &self.tree.levels[level];
        let par = &self.tree.levels[level - 1];
        let mut quota = vec![0i64; lvl.len()];
        let mut fractions: Vec<(f64, i64, u32, usize)> = Vec::new();
        for (t, &n) in items.iter().enumerate() {
            let (a, b) = par.children[t];
            let (a, b) = (a as usize, b as usize);
            let mut given = 0u64;
            fractions.clear();
            for c in a..b {
                let exact = n as f64 * lvl.share[c];
                let q = exact.floor() as u64;
                quota[c] = q as i64;
                given += q;
                fractions.push((exact - q as f64, load[c], self.tiebreak[level][c], c));
            }
            let rest = n.saturating_sub(given) as usize;
            if rest > 0 {
                // Fractions equal up to float noise count as equal.
                let rank = |f: f64| (f * 1e9).round() as i64;
                fractions.sort_by(|x, y| {
                    rank(y.0)
                        .cmp(&rank(x.0))
                        .then(y.1.cmp(&x.1))
                        .then(y.2.cmp(&x.2))
                });
                for &(_, _, _, c) in fractions.iter().take(rest) {
                    quota[c] += 1;
                }
            }
        }
        quota
    }
}
