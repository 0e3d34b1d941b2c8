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
//! 5. repairs what caps left uneven by moving replicas that are moving anyway, or movable.
//!
//! A replica that is unplaced at a level keeps its place at every level above, so a replica
//! shed from a zone stays in its region: movement is confined to where the imbalance is.
//!
//! `min_part_hours`: a partition whose replica moved within the window is locked, and once
//! one replica of a partition moves in a rebalance its other replicas stay put (so a
//! partition never loses a majority of its placed replicas at once). Replicas on removed
//! devices move regardless.

// Slot indexes (< 2^22 partitions × 32 replicas), tier indexes (< devices ≤ 65,535 per level)
// and levels (≤ 4) all fit the narrower integer types they are stored in; `rebalance` asserts
// the first bound on entry.
#![allow(clippy::cast_possible_truncation)]

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
/// replica`) so that one partition's replicas share a cache line: the passes below visit
/// partitions, and at 2^20 partitions row-major state was four times slower.
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
    /// No partition exceeds a cap: set after a fresh placement, which never breaks one.
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

    /// Whether one more replica of partition `p`, entering tier `u` at `level`, can descend
    /// to a device through tiers that are below target and have cap room for `p`.
    /// Explores at most `budget` tiers and answers yes when it runs out: this steers choices,
    /// it does not forbid them.
    fn room_below(&self, level: usize, u: TierIdx, p: u32, budget: &mut u32) -> bool {
        if level == 4 {
            return true;
        }
        let tree = self.tree;
        let below = level + 1;
        let range = self.slot_range(p);
        let in_u = 1 + range
            .clone()
            .filter(|&s| self.tier_at(s, level) == Some(u))
            .count();
        let (a, b) = tree.levels[level].children[u as usize];
        for v in a..b {
            if *budget == 0 {
                return true;
            }
            *budget -= 1;
            let target = tree.levels[below].target[v as usize] * f64::from(self.parts);
            if (self.tier_load[below][v as usize] as f64) > target - 0.5 {
                continue;
            }
            let held = range
                .clone()
                .filter(|&s| self.tier_at(s, below) == Some(v))
                .count();
            if held < self.cap(below, v, in_u) && self.room_below(below, v, p, budget) {
                return true;
            }
        }
        false
    }

    /// Whether every tier below `level` on placed slot `s`'s path holds more than its share
    /// of `quota`, the new quota of the slot's tier at `level`: shedding such replicas brings
    /// the child to quota with the tiers below it already even.
    fn over_projection(&self, level: usize, s: usize, quota: i64) -> bool {
        let tree = self.tree;
        let dev = usize::from(self.slots[s].dev);
        let c = tree.dev_tier[level][dev] as usize;
        let base = tree.levels[level].target[c];
        if base <= 0.0 {
            return true;
        }
        (level + 1..=4).all(|below| {
            let t = tree.dev_tier[below][dev] as usize;
            let projected = quota as f64 * tree.levels[below].target[t] / base;
            // Down to the nearest whole replica, not below it: the next level's integer
            // quotas round the same way.
            self.tier_load[below][t] as f64 > projected + 0.5
        })
    }

    /// How far the device of placed slot `s` is above its target (negative: below).
    fn device_excess(&self, s: usize) -> f64 {
        let t = self.tree.dev_tier[4][usize::from(self.slots[s].dev)] as usize;
        self.dev_load[t] as f64 - self.dev_target[t]
    }

    fn movable(&self, s: usize) -> bool {
        self.slots[s].moving || !self.locked[self.partition_of(s)]
    }

    /// Takes slot `s` out of its child tier; it stays in `parent` at `level - 1`.
    fn unplace(&mut self, s: usize, level: usize, parent: TierIdx) {
        self.mark_moving(s);
        let dev = self.slots[s].dev;
        if dev != NO_DEVICE {
            let t = self.tree.dev_tier[4][usize::from(dev)];
            self.dev_load[t as usize] -= 1;
            self.adjust_tier_loads(t, -1);
        }
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
                let p = self.partition_of(s);
                self.locked[p] = true;
            }
        }
    }

    /// Puts slot `s` into child tier `c` at `level`.
    fn place(&mut self, s: usize, level: usize, c: TierIdx) {
        let old = self.slots[s].dev;
        if old != NO_DEVICE {
            let t = self.tree.dev_tier[4][usize::from(old)];
            self.dev_load[t as usize] -= 1;
            self.adjust_tier_loads(t, -1);
        }
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

    fn nothing_placed(&self) -> bool {
        self.slots.iter().all(|s| s.dev == NO_DEVICE)
    }

    /// Places a ring with nothing placed yet in one pass: each replica descends from the root
    /// to a device, taking at every level the child with the largest deficit against quotas
    /// apportioned top-down in advance. Caps count only the replicas routed so far, which is
    /// never looser than the level-by-level rule. Returns false if some quota came out
    /// uneven (caps forced it), in which case the level-by-level passes finish the job.
    fn place_fresh(&mut self, progress: &mut dyn FnMut(ProgressStep)) -> Result<bool> {
        let tree = self.tree;
        let mut quota: Vec<Vec<i64>> = vec![vec![self.slots.len() as i64]];
        for level in 1..=4 {
            let items: Vec<u64> = quota[level - 1].iter().map(|&q| q.max(0) as u64).collect();
            quota.push(self.apportion(level, &items, &vec![0; tree.levels[level].len()]));
        }
        let mut load: Vec<Vec<i64>> = tree.levels.iter().map(|l| vec![0; l.len()]).collect();
        let mut samplers: Vec<Vec<Option<QuotaSampler>>> = tree
            .levels
            .iter()
            .map(|l| (0..l.len()).map(|_| None).collect())
            .collect();
        let mut rng = SplitMix64::new(self.salt);
        let mut fallbacks = 0u64;
        let mut fallback_partitions: Vec<u32> = Vec::new();
        let mut ps = PartitionSlots::default();
        let mut path = [[0 as TierIdx; 5]; SLOTS_MAX];
        let step = (self.parts / 16).max(1);
        for i in 0..self.parts {
            if i % step == 0 {
                progress(ProgressStep {
                    done: i / step,
                    total: 16,
                    stage: "place",
                });
            }
            let p = self.order.get(i);
            let range = self.slot_range(p);
            for (j, s) in range.clone().enumerate() {
                for level in 1..=4 {
                    let parent = path[j][level - 1];
                    // Only another replica of `p` already in this parent can block a child.
                    let shared = path[..j].iter().any(|route| route[level - 1] == parent);
                    let (blocked, n_blocked) = if shared {
                        routed_so_far(&mut ps, &path, j, level, range.start);
                        self.blocked_children(level, parent, &ps)
                    } else {
                        ([TierIdx::MAX; SLOTS_MAX], 0)
                    };
                    let sampler = samplers[level - 1][parent as usize].get_or_insert_with(|| {
                        let (a, b) = tree.levels[level - 1].children[parent as usize];
                        QuotaSampler::new(a..b, &quota[level])
                    });
                    let c = match sampler.draw(&blocked[..n_blocked], &mut rng) {
                        Some(c) => c,
                        None => {
                            fallbacks += 1;
                            fallback_partitions.push(p);
                            routed_so_far(&mut ps, &path, j, level, range.start);
                            self.fallback_child(level, parent, &ps, &load[level], &quota[level])?
                        }
                    };
                    load[level][c as usize] += 1;
                    path[j][level] = c;
                }
                self.place(s, 4, path[j][4]);
            }
        }
        // A fallback may have gone past a cap; then the level passes check dispersion too.
        fallback_partitions.dedup();
        self.cap_suspects = Some(fallback_partitions);
        Ok(fallbacks == 0 && (1..=4).all(|l| load[l] == quota[l]))
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
        for p in 0..self.parts {
            for s in self.slot_range(p) {
                let slot = self.slots[s];
                if slot.dev != NO_DEVICE {
                    items[tree.dev_tier[level - 1][usize::from(slot.dev)] as usize] += 1;
                    load[tree.dev_tier[level][usize::from(slot.dev)] as usize] += 1;
                } else {
                    debug_assert_eq!(usize::from(slot.pend_level), level - 1);
                    items[slot.pend_tier as usize] += 1;
                }
            }
        }
        let quota = self.apportion(level, &items, &load);
        self.refresh_tier_loads();
        report(progress, 1, "quotas");

        // A new ring has nothing placed yet, so nothing to shed.
        if load.iter().any(|&l| l > 0) {
            self.shed_for_dispersion(level, &mut load);
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

    fn shed_for_dispersion(&mut self, level: usize, load: &mut [i64]) {
        let mut ps = PartitionSlots::default();
        let mut shed = Vec::new();
        let order = self.order;
        let visit: Vec<u32> = match &self.cap_suspects {
            None => (0..self.parts).map(|i| order.get(i)).collect(),
            Some(list) => list.clone(),
        };
        for p in visit {
            self.partition_slots_into(p, level, &mut ps);
            for j in 0..ps.len {
                let Some(c) = ps.child[j] else { continue };
                let in_parent = (0..ps.len)
                    .filter(|&k| ps.parent[k] == ps.parent[j])
                    .count();
                let cap = self.cap(level, c, in_parent);
                loop {
                    let in_child = (0..ps.len).filter(|&k| ps.child[k] == Some(c));
                    if in_child.clone().count() <= cap {
                        break;
                    }
                    // Of the replicas over the cap, shed the one whose device is most loaded.
                    let pick = in_child
                        .filter(|&k| {
                            self.slots[ps.slot[k]].dev != NO_DEVICE && self.movable(ps.slot[k])
                        })
                        .max_by(|&a, &b| {
                            self.device_excess(ps.slot[a])
                                .total_cmp(&self.device_excess(ps.slot[b]))
                        });
                    let Some(k) = pick else { break };
                    self.unplace(ps.slot[k], level, ps.parent[k]);
                    shed.push(ps.slot[k]);
                    ps.child[k] = None;
                    load[c as usize] -= 1;
                }
            }
        }
        self.even_out_forced_sheds(level, &mut shed);
    }

    /// A partition over its cap in a tier must give up one of its replicas there, but which
    /// one is free. Greedy choices leave devices uneven when the same devices keep pairing
    /// up, and evening them out later would cost extra moves; so revisit the choices: if a
    /// replica that stayed sits on a device more loaded than the one that left, swap them.
    fn even_out_forced_sheds(&mut self, level: usize, shed: &mut [usize]) {
        const ROUNDS_MAX: usize = 8;
        let tree = self.tree;
        for _ in 0..ROUNDS_MAX {
            let mut swaps = 0;
            for m in shed.iter_mut() {
                let origin = self.slots[*m].origin;
                let Some(origin_tier) = tree.device_tier(origin) else {
                    continue;
                };
                if self.slots[*m].dev != NO_DEVICE {
                    continue;
                }
                let child = tree.dev_tier[level][usize::from(origin)];
                let t = origin_tier as usize;
                let excess_if_back = (self.dev_load[t] + 1) as f64 - self.dev_target[t];
                let p = self.partition_of(*m);
                let better = self.slot_range(p as u32).filter(|&k| k != *m).find(|&k| {
                    let d = self.slots[k].dev;
                    d != NO_DEVICE
                        && !self.slots[k].moving
                        && tree.dev_tier[level][usize::from(d)] == child
                        && self.device_excess(k) > excess_if_back + 0.5
                });
                let Some(k) = better else { continue };
                // Put the shed replica back where it was and shed `k` instead: still one
                // move for this partition.
                let restored = &mut self.slots[*m];
                restored.dev = origin;
                restored.moving = false;
                self.dev_load[t] += 1;
                self.adjust_tier_loads(origin_tier, 1);
                self.moving_in_partition[p] = self.moving_in_partition[p].saturating_sub(1);
                let parent = tree.dev_tier[level - 1][usize::from(self.slots[k].dev)];
                self.unplace(k, level, parent);
                *m = k;
                swaps += 1;
            }
            if swaps == 0 {
                break;
            }
        }
    }

    /// Sheds replicas from children above quota. Three passes, each less choosy: first
    /// replicas whose tiers below are over their share of the child's new quota, in
    /// partitions with nothing else moving (so no partition loses two replicas where one will
    /// do), and whose partition some sibling below quota could take; then any replica in such
    /// partitions; then any movable one.
    fn shed_for_balance(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
        let tree = self.tree;
        let mut ps = PartitionSlots::default();
        let mut over: i64 = load.iter().zip(quota).map(|(l, q)| (l - q).max(0)).sum();
        for pass in 0..3 {
            for i in 0..self.parts {
                if over == 0 {
                    return;
                }
                let p = self.order.get(i);
                if pass < 2 && self.moving_in_partition[p as usize] > 0 {
                    continue;
                }
                let mut loaded = false;
                for s in self.slot_range(p) {
                    let d = self.slots[s].dev;
                    if d == NO_DEVICE || !self.movable(s) {
                        continue;
                    }
                    let c = tree.dev_tier[level][usize::from(d)] as usize;
                    if load[c] <= quota[c]
                        || (pass == 0 && !self.over_projection(level, s, quota[c]))
                    {
                        continue;
                    }
                    if pass < 2 {
                        if !loaded {
                            self.partition_slots_into(p, level, &mut ps);
                            loaded = true;
                        }
                        let Some(j) = (0..ps.len).find(|&j| ps.slot[j] == s) else {
                            continue;
                        };
                        if !self.room_elsewhere(level, &ps, j, load, quota) {
                            continue;
                        }
                    }
                    let parent = tree.dev_tier[level - 1][usize::from(d)];
                    self.unplace(s, level, parent);
                    load[c] -= 1;
                    over -= 1;
                    if pass < 2 {
                        break;
                    }
                }
            }
        }
    }

    /// Whether a sibling of slot `j`'s child, below its quota, could take a replica of the
    /// partition without exceeding its cap.
    fn room_elsewhere(
        &self,
        level: usize,
        ps: &PartitionSlots,
        j: usize,
        load: &[i64],
        quota: &[i64],
    ) -> bool {
        let parent = ps.parent[j];
        let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == parent).count();
        let (a, b) = self.tree.levels[level - 1].children[parent as usize];
        let p = self.partition_of(ps.slot[j]) as u32;
        (a..b).any(|u| {
            Some(u) != ps.child[j]
                && load[u as usize] < quota[u as usize]
                && (0..ps.len).filter(|&k| ps.child[k] == Some(u)).count()
                    < self.cap(level, u, in_parent)
                && self.room_below(level, u, p, &mut LOOKAHEAD_BUDGET.clone())
        })
    }

    fn place_pending(&mut self, level: usize, load: &mut [i64], quota: &[i64]) -> Result<()> {
        let tree = self.tree;
        let par = &tree.levels[level - 1];
        // Havel–Hakimi order: partitions with the most replicas waiting in one parent tier go
        // first. Partitions are bucketed rather than slots sorted, so each bucket is walked in
        // memory order.
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); self.rows + 1];
        let mut ps = PartitionSlots::default();
        let pending_parent = |slot: &Slot| {
            (slot.dev == NO_DEVICE && usize::from(slot.pend_level) == level - 1)
                .then_some(slot.pend_tier)
        };
        // Partitions with a replica waiting at this level, in visiting order.
        let mut waiting: Vec<u32> = self
            .moving_slots
            .iter()
            .filter(|&&s| pending_parent(&self.slots[s]).is_some())
            .map(|&s| self.partition_of(s) as u32)
            .collect();
        let start = self.order.get(0);
        waiting.sort_unstable_by_key(|&p| p.wrapping_sub(start) & (self.parts - 1));
        waiting.dedup();
        for &p in &waiting {
            let range = self.slot_range(p);
            let slots = &self.slots[range];
            // Pending slots wait in the parent tier they were placed in at `level - 1`.
            let most = slots
                .iter()
                .filter_map(pending_parent)
                .map(|t| {
                    slots
                        .iter()
                        .filter(|s| pending_parent(s) == Some(t))
                        .count()
                })
                .max()
                .unwrap_or(0);
            if most > 0 {
                buckets[most].push(p);
            }
        }
        let mut pickers: Vec<Option<ChildPicker>> = (0..par.len()).map(|_| None).collect();
        for bucket in buckets.iter().rev() {
            for &p in bucket {
                self.partition_slots_into(p, level, &mut ps);
                for j in 0..ps.len {
                    if ps.child[j].is_some() {
                        continue;
                    }
                    let parent = ps.parent[j];
                    let picker = pickers[parent as usize].get_or_insert_with(|| {
                        let (a, b) = par.children[parent as usize];
                        ChildPicker::new(
                            a,
                            b,
                            load,
                            quota,
                            &tree.levels[level].share,
                            &self.tiebreak[level],
                        )
                    });
                    let c =
                        self.pick_child(level, parent, ps.slot[j], &ps, picker, load, quota, true)?;
                    self.place(ps.slot[j], level, c);
                    ps.child[j] = Some(c);
                    load[c as usize] += 1;
                    picker.took(c, load[c as usize], quota[c as usize]);
                }
            }
        }
        Ok(())
    }

    /// Children of `parent` that already hold as many replicas of the partition in `ps` as
    /// their cap allows. Only children holding a replica can be at their cap.
    fn blocked_children(
        &self,
        level: usize,
        parent: TierIdx,
        ps: &PartitionSlots,
    ) -> ([TierIdx; SLOTS_MAX], usize) {
        let mut blocked = [TierIdx::MAX; SLOTS_MAX];
        let mut n_blocked = 0;
        let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == parent).count();
        if in_parent <= 1 {
            // The replica being placed is the partition's only one here: nothing is at a cap.
            return (blocked, n_blocked);
        }
        let held = |c: TierIdx| (0..ps.len).filter(|&k| ps.child[k] == Some(c)).count();
        for k in 0..ps.len {
            if let Some(c) = ps.child[k]
                && ps.parent[k] == parent
                && !blocked[..n_blocked].contains(&c)
                && held(c) >= self.cap(level, c, in_parent)
            {
                blocked[n_blocked] = c;
                n_blocked += 1;
            }
        }
        (blocked, n_blocked)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the level's whole working state, kept flat for speed"
    )]
    fn pick_child(
        &self,
        level: usize,
        parent: TierIdx,
        slot: usize,
        ps: &PartitionSlots,
        picker: &mut ChildPicker,
        load: &[i64],
        quota: &[i64],
        lookahead: bool,
    ) -> Result<TierIdx> {
        let (mut blocked, mut n_blocked) = self.blocked_children(level, parent, ps);
        // Multiplicative hashing: enough to vary ties from replica to replica.
        let salt =
            (self.salt ^ ((slot as u64) << 3 | level as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Prefer a child from which the replica can reach a device below target; a few
        // tries, then the best by deficit alone.
        let mut first = None;
        for _ in 0..LOOKAHEAD_TRIES {
            let Some(c) = picker.best(&blocked[..n_blocked], salt) else {
                break;
            };
            first.get_or_insert(c);
            let p = self.partition_of(slot) as u32;
            if !lookahead
                || level == 4
                || self.room_below(level, c, p, &mut LOOKAHEAD_BUDGET.clone())
            {
                return Ok(c);
            }
            if n_blocked == SLOTS_MAX {
                break;
            }
            blocked[n_blocked] = c;
            n_blocked += 1;
            // `best` left `c` out of its heap; put it back unchanged.
            picker.took(c, load[c as usize], quota[c as usize]);
        }
        match first {
            Some(c) => Ok(c),
            None => self.fallback_child(level, parent, ps, load, quota),
        }
    }

    /// When no child may take the replica within its cap (weights force a tighter spread than
    /// the shares allow): any child with a free weighted device, then any device at all.
    fn fallback_child(
        &self,
        level: usize,
        parent: TierIdx,
        ps: &PartitionSlots,
        load: &[i64],
        quota: &[i64],
    ) -> Result<TierIdx> {
        let lvl = &self.tree.levels[level];
        let held = |c: TierIdx| (0..ps.len).filter(|&k| ps.child[k] == Some(c)).count();
        let (a, b) = self.tree.levels[level - 1].children[parent as usize];
        let best_by = |ok: &dyn Fn(TierIdx) -> bool| {
            (a..b).filter(|&c| ok(c)).max_by_key(|&c| {
                (
                    quota[c as usize] - load[c as usize],
                    self.tiebreak[level][c as usize],
                )
            })
        };
        best_by(&|c| held(c) < lvl.weighted_devices[c as usize] as usize)
            .or_else(|| best_by(&|c| held(c) < lvl.all_devices[c as usize] as usize))
            .ok_or_else(|| {
                RingError::Invalid(format!(
                    "no room for a replica of partition {} below a level-{} tier: \
                     too few devices in that failure domain",
                    self.partition_of(ps.slot[0]),
                    level - 1
                ))
            })
    }

    /// Moves replicas from children above quota to siblings below it, where caps allow.
    fn repair_balance(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
        let tree = self.tree;
        let par = &tree.levels[level - 1];
        let mut under: Vec<Vec<TierIdx>> = vec![Vec::new(); par.len()];
        let mut any = false;
        for (t, &(a, b)) in par.children.iter().enumerate() {
            let has_over = (a..b).any(|c| load[c as usize] > quota[c as usize]);
            if has_over {
                under[t] = (a..b)
                    .filter(|&c| load[c as usize] < quota[c as usize])
                    .collect();
                any |= !under[t].is_empty();
            }
        }
        if !any {
            return;
        }
        let mut ps = PartitionSlots::default();
        for i in 0..self.parts {
            let p = self.order.get(i);
            self.partition_slots_into(p, level, &mut ps);
            for j in 0..ps.len {
                let (Some(c), s) = (ps.child[j], ps.slot[j]) else {
                    continue;
                };
                let t = ps.parent[j] as usize;
                if load[c as usize] <= quota[c as usize] || under[t].is_empty() || !self.movable(s)
                {
                    continue;
                }
                let in_parent = (0..ps.len).filter(|&k| ps.parent[k] as usize == t).count();
                let target = under[t].iter().position(|&u| {
                    let held = (0..ps.len).filter(|&k| ps.child[k] == Some(u)).count();
                    held < self.cap(level, u, in_parent)
                });
                let Some(pos) = target else { continue };
                let u = under[t][pos];
                self.mark_moving(s);
                self.place(s, level, u);
                ps.child[j] = Some(u);
                load[c as usize] -= 1;
                load[u as usize] += 1;
                if load[u as usize] >= quota[u as usize] {
                    under[t].swap_remove(pos);
                }
            }
        }
    }

    /// Whether partition `p` may take one more replica in child `u` (under `parent`) at `level`.
    fn has_cap_room(
        &self,
        level: usize,
        p: u32,
        parent: TierIdx,
        u: TierIdx,
        ps: &mut PartitionSlots,
    ) -> bool {
        self.partition_slots_into(p, level, ps);
        let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == parent).count();
        let held = (0..ps.len).filter(|&k| ps.child[k] == Some(u)).count();
        held < self.cap(level, u, in_parent)
    }

    /// When no replica can go straight from a child above quota to one below it (every
    /// candidate's partition is at its cap there), a chain of two can: a replica moves from
    /// the over child `a` to a sibling `m`, and another partition's replica moves on from `m`
    /// to the under child `u`. Two moves buy one unit of balance, so this runs only for what
    /// the direct repair left, and only under parents with few children.
    fn repair_two_hop(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
        const CHILDREN_MAX: u32 = 64;
        const ROUNDS_MAX: usize = 4;
        let tree = self.tree;
        let par = &tree.levels[level - 1];
        let mut ps = PartitionSlots::default();
        let mut other = PartitionSlots::default();
        for _ in 0..ROUNDS_MAX {
            let uneven: Vec<bool> = par
                .children
                .iter()
                .map(|&(a, b)| {
                    b - a <= CHILDREN_MAX
                        && (a..b).any(|c| load[c as usize] > quota[c as usize])
                        && (a..b).any(|c| load[c as usize] < quota[c as usize])
                })
                .collect();
            let need: i64 = par
                .children
                .iter()
                .zip(&uneven)
                .filter(|(_, u)| **u)
                .map(|(&(a, b), _)| {
                    (a..b)
                        .map(|c| (load[c as usize] - quota[c as usize]).max(0))
                        .sum::<i64>()
                })
                .sum();
            if need == 0 {
                return;
            }
            // Second hops: replicas in a child `m` whose partition has room in an under sibling.
            let per_child_max = usize::try_from(need)
                .unwrap_or(usize::MAX)
                .saturating_mul(4)
                .saturating_add(16);
            let mut onward: Vec<Vec<(usize, TierIdx)>> = vec![Vec::new(); tree.levels[level].len()];
            for i in 0..self.parts {
                let p = self.order.get(i);
                self.partition_slots_into(p, level, &mut ps);
                for j in 0..ps.len {
                    let (Some(m), s, t) = (ps.child[j], ps.slot[j], ps.parent[j]) else {
                        continue;
                    };
                    if !uneven[t as usize]
                        || load[m as usize] > quota[m as usize]
                        || onward[m as usize].len() >= per_child_max
                        || !self.movable(s)
                    {
                        continue;
                    }
                    let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == t).count();
                    let (a, b) = par.children[t as usize];
                    let to = (a..b).find(|&u| {
                        u != m
                            && load[u as usize] < quota[u as usize]
                            && (0..ps.len).filter(|&k| ps.child[k] == Some(u)).count()
                                < self.cap(level, u, in_parent)
                    });
                    if let Some(u) = to {
                        onward[m as usize].push((s, u));
                    }
                }
            }
            // First hops: replicas in over children, into a sibling with onward candidates.
            let mut progress = 0;
            for i in 0..self.parts {
                let p = self.order.get(i);
                self.partition_slots_into(p, level, &mut ps);
                for j in 0..ps.len {
                    let (Some(a), s, t) = (ps.child[j], ps.slot[j], ps.parent[j]) else {
                        continue;
                    };
                    if !uneven[t as usize]
                        || load[a as usize] <= quota[a as usize]
                        || !self.movable(s)
                    {
                        continue;
                    }
                    let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == t).count();
                    let (lo, hi) = par.children[t as usize];
                    let mut done = false;
                    for m in lo..hi {
                        if m == a
                            || (0..ps.len).filter(|&k| ps.child[k] == Some(m)).count()
                                >= self.cap(level, m, in_parent)
                        {
                            continue;
                        }
                        while let Some((s2, u)) = onward[m as usize].pop() {
                            let q = self.partition_of(s2) as u32;
                            let valid = q != p
                                && self.tier_at(s2, level) == Some(m)
                                && load[u as usize] < quota[u as usize]
                                && self.movable(s2)
                                && self.has_cap_room(level, q, t, u, &mut other);
                            if !valid {
                                continue;
                            }
                            self.mark_moving(s);
                            self.place(s, level, m);
                            self.mark_moving(s2);
                            self.place(s2, level, u);
                            load[a as usize] -= 1;
                            load[u as usize] += 1;
                            progress += 1;
                            done = true;
                            break;
                        }
                        if done {
                            break;
                        }
                    }
                    if done {
                        break; // `ps` is stale for this partition now
                    }
                }
            }
            if progress == 0 {
                return;
            }
        }
    }
}

/// Picks, among one parent's children, the one with the largest deficit (quota − load) that
/// a predicate allows. Linear for few children; for many, a max-heap keyed by deficit whose
/// entries are invalidated lazily (an entry whose deficit is no longer current is dropped).
struct ChildPicker {
    a: TierIdx,
    b: TierIdx,
    deficit: Vec<i64>,
    tiebreak: Vec<u32>,
    heap: Option<BinaryHeap<(i64, u32, Reverse<TierIdx>)>>,
    share_positive: Vec<bool>,
    pushes: u64,
}

impl ChildPicker {
    fn new(
        a: TierIdx,
        b: TierIdx,
        load: &[i64],
        quota: &[i64],
        share: &[f64],
        tiebreak: &[u32],
    ) -> Self {
        let range = a as usize..b as usize;
        let deficit: Vec<i64> = range.clone().map(|c| quota[c] - load[c]).collect();
        let tiebreak: Vec<u32> = tiebreak[range.clone()].to_vec();
        let share_positive: Vec<bool> = range.clone().map(|c| share[c] > 0.0).collect();
        let heap = (range.len() > LINEAR_PICK_MAX).then(|| {
            // Children without share never take a replica through the heap.
            (0..range.len())
                .filter(|&i| share_positive[i])
                .map(|i| (deficit[i], tiebreak[i], Reverse(a + i as TierIdx)))
                .collect()
        });
        Self {
            a,
            b,
            deficit,
            tiebreak,
            heap,
            share_positive,
            pushes: 0,
        }
    }

    /// A child with a share, not `blocked`, with the largest deficit or (few children) one
    /// within [`NEAR_MAX_DEFICIT`] of it; `salt` (seeded per replica) decides among equals. A fixed tie order makes placement
    /// cyclic, which lines up partitions of one kind on the same devices and costs extra
    /// moves at the next rebalance.
    fn best(&mut self, blocked: &[TierIdx], salt: u64) -> Option<TierIdx> {
        let a = self.a;
        let Some(heap) = &mut self.heap else {
            // Any child within NEAR_MAX_DEFICIT of the largest deficit (but still under quota
            // if the largest is), the first met scanning from a salt-chosen start.
            let k = (self.b - a) as usize;
            let allowed =
                |i: usize| self.share_positive[i] && !blocked.contains(&(a + i as TierIdx));
            let top = (0..k)
                .filter(|&i| allowed(i))
                .map(|i| self.deficit[i])
                .max()?;
            let floor = if top > 0 {
                (top - NEAR_MAX_DEFICIT).max(1)
            } else {
                top
            };
            let start = ((salt >> 32) as usize) % k;
            return (0..k)
                .map(|step| (start + step) % k)
                .find(|&i| allowed(i) && self.deficit[i] >= floor)
                .map(|i| a + i as TierIdx);
        };
        let mut skipped: [(i64, u32, Reverse<TierIdx>); SLOTS_MAX] =
            [(0, 0, Reverse(0)); SLOTS_MAX];
        let mut n_skipped = 0;
        let mut found = None;
        while let Some(entry) = heap.pop() {
            let c = entry.2.0;
            if entry.0 != self.deficit[(c - a) as usize] {
                continue; // stale
            }
            if !blocked.contains(&c) {
                // Left out of the heap: `took` pushes it back with its new deficit.
                found = Some(c);
                break;
            }
            // Only blocked children are skipped, and there are fewer than SLOTS_MAX of them.
            if n_skipped < SLOTS_MAX {
                skipped[n_skipped] = entry;
                n_skipped += 1;
            }
        }
        heap.extend(skipped[..n_skipped].iter().copied());
        found
    }

    /// Records that child `c` took a replica and now has `load` against `quota`.
    fn took(&mut self, c: TierIdx, load: i64, quota: i64) {
        let i = (c - self.a) as usize;
        self.deficit[i] = quota - load;
        if let Some(heap) = &mut self.heap
            && self.share_positive[i]
        {
            // A fresh tie key each time, so equal deficits do not come out in a fixed cycle.
            self.pushes = self.pushes.wrapping_add(1);
            let key = (mix(self.pushes, c) >> 32) as u32 ^ self.tiebreak[i];
            heap.push((self.deficit[i], key, Reverse(c)));
        }
    }
}

/// A cheap 64-bit mix of a salt and a tier, for tie-breaking.
fn mix(salt: u64, c: TierIdx) -> u64 {
    let mut z = salt ^ (u64::from(c).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What is left of one parent's children's quotas, dealt at random in proportion to it: the
/// same as dealing from a shuffled deck holding each child as many times as its quota, without
/// the deck (at 2^20 partitions a deck is megabytes and shuffling it is all cache misses).
/// New rings are placed at exactly the quotas, in an order that pairs nothing systematically.
struct QuotaSampler {
    a: TierIdx,
    remaining: Vec<i64>,
    total: i64,
    /// Prefix sums over `remaining` for parents with many children.
    fenwick: Option<Vec<i64>>,
}

impl QuotaSampler {
    fn new(children: std::ops::Range<TierIdx>, quota: &[i64]) -> Self {
        let a = children.start;
        let remaining: Vec<i64> = children.map(|c| quota[c as usize].max(0)).collect();
        let total = remaining.iter().sum();
        let fenwick = (remaining.len() > LINEAR_PICK_MAX).then(|| {
            let mut tree = vec![0i64; remaining.len() + 1];
            for (i, &r) in remaining.iter().enumerate() {
                let mut k = i + 1;
                while k < tree.len() {
                    tree[k] += r;
                    k += k & k.wrapping_neg();
                }
            }
            tree
        });
        Self {
            a,
            remaining,
            total,
            fenwick,
        }
    }

    /// Deals one child not in `blocked`, chosen with probability proportional to its remaining
    /// quota; `None` if only blocked children have quota left.
    fn draw(&mut self, blocked: &[TierIdx], rng: &mut SplitMix64) -> Option<TierIdx> {
        let a = self.a;
        let index = |c: TierIdx| {
            c.checked_sub(a)
                .map(|i| i as usize)
                .filter(|&i| i < self.remaining.len())
        };
        let mut skip: [usize; SLOTS_MAX] = [0; SLOTS_MAX];
        let mut n_skip = 0;
        for &b in blocked {
            if let Some(i) = index(b)
                && self.remaining[i] > 0
                && !skip[..n_skip].contains(&i)
            {
                skip[n_skip] = i;
                n_skip += 1;
            }
        }
        let blocked_total: i64 = skip[..n_skip].iter().map(|&i| self.remaining[i]).sum();
        let available = self.total - blocked_total;
        if available <= 0 {
            return None;
        }
        // Multiply-shift maps 64 random bits onto 0..available without a division.
        let mut r = ((u128::from(rng.next_u64()) * available as u128) >> 64) as i64;
        let i = match &self.fenwick {
            None => (0..self.remaining.len()).find(|&i| {
                if skip[..n_skip].contains(&i) {
                    return false;
                }
                if r < self.remaining[i] {
                    return true;
                }
                r -= self.remaining[i];
                false
            })?,
            Some(tree) => {
                // Position `r` among the unblocked quota: step over blocked ranges in order.
                skip[..n_skip].sort_unstable();
                for &b in &skip[..n_skip] {
                    if prefix(tree, b) <= r {
                        r += self.remaining[b];
                    } else {
                        break;
                    }
                }
                lower_bound(tree, r)
            }
        };
        self.remaining[i] -= 1;
        self.total -= 1;
        if let Some(tree) = &mut self.fenwick {
            let mut k = i + 1;
            while k < tree.len() {
                tree[k] -= 1;
                k += k & k.wrapping_neg();
            }
        }
        Some(a + i as TierIdx)
    }
}

/// Sum of the first `n` entries of a Fenwick tree.
fn prefix(tree: &[i64], n: usize) -> i64 {
    let mut sum = 0;
    let mut k = n;
    while k > 0 {
        sum += tree[k];
        k -= k & k.wrapping_neg();
    }
    sum
}

/// The index whose range in the prefix sums contains position `r` (0-based).
fn lower_bound(tree: &[i64], mut r: i64) -> usize {
    let n = tree.len() - 1;
    let mut pos = 0;
    let mut step = n.next_power_of_two();
    while step > 0 {
        let next = pos + step;
        if next <= n && tree[next] <= r {
            pos = next;
            r -= tree[next];
        }
        step >>= 1;
    }
    pos
}

/// Fills `ps` with the first `j + 1` replicas of a partition being placed fresh, as seen at
/// `level`: replica `j` is the one being placed (no child yet), the others are routed already.
fn routed_so_far(
    ps: &mut PartitionSlots,
    path: &[[TierIdx; 5]],
    j: usize,
    level: usize,
    first_slot: usize,
) {
    ps.len = j + 1;
    for (k, route) in path.iter().enumerate().take(j + 1) {
        ps.slot[k] = first_slot + k;
        ps.parent[k] = route[level - 1];
        ps.child[k] = (k < j).then_some(route[level]);
    }
}
