//! Putting waiting replicas into child tiers, largest deficit first, within caps.

use super::*;

impl Placement<'_> {
    pub(super) fn place_pending(
        &mut self,
        level: usize,
        load: &mut [i64],
        quota: &[i64],
    ) -> Result<()> {
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
    pub(super) fn blocked_children(
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
    pub(super) fn fallback_child(
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
