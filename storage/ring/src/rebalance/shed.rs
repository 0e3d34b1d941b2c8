//! Taking replicas out of tiers: over a partition's cap (dispersion) or over quota (balance),
//! choosing them so the tiers below stay even and the replica has somewhere to go.

use super::*;

impl Placement<'_> {
    /// Whether one more replica of partition `p`, entering tier `u` at `level`, can descend
    /// to a device through tiers that are below target and have cap room for `p`.
    /// Explores at most `budget` tiers and answers yes when it runs out: this steers choices,
    /// it does not forbid them.
    pub(super) fn room_below(&self, level: usize, u: TierIdx, p: u32, budget: &mut u32) -> bool {
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

    /// Whether every tier below `level` on placed slot `s`'s path holds more than `slack`
    /// above its share of `quota`, the new quota of the slot's tier at `level`: shedding such
    /// replicas brings the child to quota with the tiers below it already even.
    pub(super) fn over_projection(&self, level: usize, s: usize, quota: i64, slack: f64) -> bool {
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
            self.tier_load[below][t] as f64 > projected + slack
        })
    }

    /// How far the device of placed slot `s` is above its target (negative: below).
    pub(super) fn device_excess(&self, s: usize) -> f64 {
        let t = self.tree.dev_tier[4][usize::from(self.slots[s].dev)] as usize;
        self.dev_load[t] as f64 - self.dev_target[t]
    }

    /// Unplaces replicas over a cap, among the partitions in `suspects` (those that could be).
    pub(super) fn shed_for_dispersion(&mut self, level: usize, load: &mut [i64], suspects: &[u32]) {
        let mut ps = PartitionSlots::default();
        let mut shed = Vec::new();
        for &p in suspects {
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
    pub(super) fn even_out_forced_sheds(&mut self, level: usize, shed: &mut [usize]) {
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

    /// Sheds replicas from children above quota. Four passes, each less choosy. The first
    /// three take only replicas in partitions with nothing else moving (so no partition loses
    /// two replicas where one will do) and whose partition some sibling below quota can take:
    /// first replicas whose tiers below all hold more than their share of the child's new
    /// quota rounded to a whole replica, then more than their exact share (so the last few
    /// come from the tiers the next level's rounding would take them from), then any. The
    /// last pass takes any movable replica.
    pub(super) fn shed_for_balance(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
        let tree = self.tree;
        let mut ps = PartitionSlots::default();
        let mut over: i64 = load.iter().zip(quota).map(|(l, q)| (l - q).max(0)).sum();
        // Children below quota per parent: the only places a shed replica can go. Shedding
        // lowers only children above quota, so the lists hold for the whole pass.
        let par = &tree.levels[level - 1];
        let under: Vec<Vec<TierIdx>> = par
            .children
            .iter()
            .map(|&(a, b)| {
                (a..b)
                    .filter(|&u| load[u as usize] < quota[u as usize])
                    .collect()
            })
            .collect();
        // Room promised to replicas shed so far, per child: a shed replica whose partition
        // can enter only some siblings must find room left in one of them.
        let mut room: Vec<i64> = load
            .iter()
            .zip(quota)
            .map(|(l, q)| (q - l).max(0))
            .collect();
        for pass in 0..4 {
            for i in 0..self.parts {
                if over == 0 {
                    return;
                }
                let p = self.order.get(i);
                if pass < 3 && self.moving_in_partition[p as usize] > 0 {
                    continue;
                }
                let mut loaded = false;
                for s in self.slot_range(p) {
                    let d = self.slots[s].dev;
                    if d == NO_DEVICE || !self.movable(s) {
                        continue;
                    }
                    let c = tree.dev_tier[level][usize::from(d)] as usize;
                    let slack = match pass {
                        0 => Some(0.5),
                        1 => Some(0.0),
                        _ => None,
                    };
                    if load[c] <= quota[c]
                        || slack.is_some_and(|x| !self.over_projection(level, s, quota[c], x))
                    {
                        continue;
                    }
                    if pass < 3 {
                        if !loaded {
                            self.partition_slots_into(p, level, &mut ps);
                            loaded = true;
                        }
                        let Some(j) = (0..ps.len).find(|&j| ps.slot[j] == s) else {
                            continue;
                        };
                        let Some(u) = self.room_elsewhere(level, &ps, j, &under, &room) else {
                            continue;
                        };
                        room[u as usize] -= 1;
                    }
                    let parent = tree.dev_tier[level - 1][usize::from(d)];
                    self.unplace(s, level, parent);
                    load[c] -= 1;
                    over -= 1;
                    if pass < 3 {
                        break;
                    }
                }
            }
        }
    }

    /// A sibling of slot `j`'s child, among those below quota (`under`, per parent) with
    /// `room` left, that could take a replica of the partition without exceeding its cap and
    /// pass it on down: the one with most room.
    pub(super) fn room_elsewhere(
        &self,
        level: usize,
        ps: &PartitionSlots,
        j: usize,
        under: &[Vec<TierIdx>],
        room: &[i64],
    ) -> Option<TierIdx> {
        let parent = ps.parent[j];
        let in_parent = (0..ps.len).filter(|&k| ps.parent[k] == parent).count();
        let p = self.partition_of(ps.slot[j]) as u32;
        under[parent as usize]
            .iter()
            .copied()
            .filter(|&u| {
                Some(u) != ps.child[j]
                    && room[u as usize] > 0
                    && (0..ps.len).filter(|&k| ps.child[k] == Some(u)).count()
                        < self.cap(level, u, in_parent)
            })
            .max_by_key(|&u| room[u as usize])
            .filter(|&u| self.room_below(level, u, p, &mut LOOKAHEAD_BUDGET.clone()))
    }
}
