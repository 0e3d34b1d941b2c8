//! Fixing the balance that caps left uneven: direct moves, then chains of two.

use super::*;

impl Placement<'_> {
    /// Moves replicas from children above quota to siblings below it, where caps allow,
    /// preferring replicas that are moving in this rebalance anyway.
    pub(super) fn repair_balance(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
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
        // First replicas that are moving anyway (free), then any movable one.
        for only_moving in [true, false] {
            for i in 0..self.parts {
                if under.iter().all(Vec::is_empty) {
                    return;
                }
                let p = self.order.get(i);
                self.partition_slots_into(p, level, &mut ps);
                for j in 0..ps.len {
                    let (Some(c), s) = (ps.child[j], ps.slot[j]) else {
                        continue;
                    };
                    let t = ps.parent[j] as usize;
                    if load[c as usize] <= quota[c as usize]
                        || under[t].is_empty()
                        || !self.movable(s)
                        || (only_moving && !self.slots[s].moving)
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
    }

    /// Whether partition `p` may take one more replica in child `u` (under `parent`) at `level`.
    pub(super) fn has_cap_room(
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
    pub(super) fn repair_two_hop(&mut self, level: usize, load: &mut [i64], quota: &[i64]) {
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
