//! A new ring (nothing placed yet) in one pass: each replica descends from the root to a
//! device, dealt at every tier in proportion to what is left of the children's quotas.

use super::*;

impl Placement<'_> {
    pub(super) fn nothing_placed(&self) -> bool {
        self.slots.iter().all(|s| s.dev == NO_DEVICE)
    }

    /// Places a ring with nothing placed yet in one pass: each replica descends from the root
    /// to a device, dealt at every level at random in proportion to what is left of the
    /// children's quotas, apportioned top-down in advance. Caps count only the replicas routed so far, which is
    /// never looser than the level-by-level rule. Returns false if some quota came out
    /// uneven (caps forced it), in which case the level-by-level passes finish the job.
    pub(super) fn place_fresh(&mut self, progress: &mut dyn FnMut(ProgressStep)) -> Result<bool> {
        let tree = self.tree;
        // Only real slots: a partial last replica row does not reach every partition.
        let slots: u64 = self.row_len.iter().map(|&l| u64::from(l)).sum();
        let mut quota: Vec<Vec<i64>> = vec![vec![slots as i64]];
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
