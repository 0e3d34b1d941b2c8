//! The failure-domain tree (root → region → zone → node → device) and how many replicas of an
//! average partition each tier should hold.
//!
//! Targets are computed top-down. For each tier's children:
//! - the *weighted* share splits the parent's replicas in proportion to weight, bounded by the
//!   number of devices below each child (a child cannot hold two replicas on one device);
//! - the *dispersed* share splits them as evenly as the children allow (each child between
//!   floor and ceil of an even split, device-limited), the widest possible spread;
//! - the *target* starts at the weighted share and moves children that want more for
//!   dispersion toward the dispersed share by at most `overload` of their weighted share,
//!   taking the difference from the children that want less.
//!
//! With overload 0 weight wins (as in Swift); with enough overload dispersion wins.

// Tier indexes are bounded by the device count (≤ 65,535), so they fit u32.
#![allow(clippy::cast_possible_truncation)]

use crate::device::{Device, DeviceId};

/// Tolerance for float comparisons of replica counts.
pub(crate) const EPS: f64 = 1e-9;

/// Index of a tier within its level.
pub(crate) type TierIdx = u32;
pub(crate) const NO_TIER: TierIdx = u32::MAX;

/// One level of the tree. Tiers of a level are numbered so that the children of any parent
/// are a contiguous range.
#[derive(Debug, Default)]
pub(crate) struct Level {
    pub parent: Vec<TierIdx>,
    /// Children range in the next level (empty for devices).
    pub children: Vec<(TierIdx, TierIdx)>,
    pub weight: Vec<f64>,
    /// Devices below with weight > 0.
    pub weighted_devices: Vec<u32>,
    /// All devices below, whatever their weight.
    pub all_devices: Vec<u32>,
    /// Replicas of an average partition this tier should hold.
    pub target: Vec<f64>,
    /// `target / parent's target` (uniform if the parent's target is 0).
    pub share: Vec<f64>,
    /// Replicas of an average partition by weight alone (no dispersion, no overload).
    pub weighted: Vec<f64>,
    /// A representative device, for labels.
    pub sample_device: Vec<DeviceId>,
}

impl Level {
    pub fn len(&self) -> usize {
        self.parent.len()
    }
}

/// The tree over the devices that take part in a rebalance.
#[derive(Debug)]
pub(crate) struct TierTree {
    /// levels[0] is the root (one tier), levels[4] the devices.
    pub levels: [Level; 5],
    /// For each device id, its tier index at each level (`NO_TIER` if not in the tree).
    pub dev_tier: [Vec<TierIdx>; 5],
    /// Device id of each device-level tier.
    pub device_of_tier: Vec<DeviceId>,
    /// Largest ratio of dispersed to weighted share minus one, over all tiers: the overload
    /// that full dispersion would need.
    pub required_overload: f64,
}

impl TierTree {
    /// Builds the tree over `devices` (those not being removed), targeting `replicas`
    /// replicas per partition on average.
    pub fn build(
        devices: &[&Device],
        device_table_len: usize,
        replicas: f64,
        overload: f64,
    ) -> Self {
        let mut sorted: Vec<&Device> = devices.to_vec();
        sorted.sort_by(|a, b| {
            (a.region, a.zone, a.ip.as_str(), a.id).cmp(&(b.region, b.zone, b.ip.as_str(), b.id))
        });

        let mut levels: [Level; 5] = Default::default();
        let mut dev_tier: [Vec<TierIdx>; 5] = Default::default();
        for v in &mut dev_tier {
            *v = vec![NO_TIER; device_table_len];
        }
        let mut device_of_tier = Vec::with_capacity(sorted.len());

        // Root.
        levels[0].parent.push(NO_TIER);
        levels[0]
            .sample_device
            .push(sorted.first().map_or(0, |d| d.id));
        let mut prev: Option<&Device> = None;
        for d in &sorted {
            // Which levels start a new tier at this device: the first level where it differs.
            let first_new = match prev {
                None => 1,
                Some(p) if p.region != d.region => 1,
                Some(p) if p.zone != d.zone => 2,
                Some(p) if p.ip != d.ip => 3,
                Some(_) => 4,
            };
            for level in first_new..=4 {
                let parent = tier_count(&levels[level - 1]) - 1;
                levels[level].parent.push(parent);
                levels[level].sample_device.push(d.id);
            }
            for (level, tiers) in dev_tier.iter_mut().enumerate() {
                tiers[usize::from(d.id)] = tier_count(&levels[level]) - 1;
            }
            device_of_tier.push(d.id);
            prev = Some(d);
        }

        // Children ranges, device counts, weights (bottom-up).
        for level in &mut levels {
            let n = level.len();
            level.children = vec![(0, 0); n];
            level.weight = vec![0.0; n];
            level.weighted_devices = vec![0; n];
            level.all_devices = vec![0; n];
        }
        for level in 1..5 {
            let (upper, lower) = levels.split_at_mut(level);
            let parents = &mut upper[level - 1];
            for (i, &p) in lower[0].parent.iter().enumerate() {
                let i = i as TierIdx;
                let range = &mut parents.children[p as usize];
                if range.0 == range.1 {
                    *range = (i, i + 1);
                } else {
                    range.1 = i + 1;
                }
            }
        }
        for d in &sorted {
            for level in 0..5 {
                let t = dev_tier[level][usize::from(d.id)] as usize;
                levels[level].weight[t] += d.weight;
                levels[level].all_devices[t] += 1;
                if d.weight > 0.0 {
                    levels[level].weighted_devices[t] += 1;
                }
            }
        }

        let mut tree = TierTree {
            levels,
            dev_tier,
            device_of_tier,
            required_overload: 0.0,
        };
        tree.compute_targets(replicas, overload);
        tree
    }

    fn compute_targets(&mut self, replicas: f64, overload: f64) {
        for level in 0..5 {
            let n = self.levels[level].len();
            self.levels[level].target = vec![0.0; n];
            self.levels[level].share = vec![0.0; n];
            self.levels[level].weighted = vec![0.0; n];
        }
        self.levels[0].target[0] = replicas;
        self.levels[0].weighted[0] = replicas;
        self.levels[0].share[0] = 1.0;
        let mut required_overload: f64 = 0.0;
        for level in 0..4 {
            let (upper, lower) = self.levels.split_at_mut(level + 1);
            let parents = &upper[level];
            let children = &mut lower[0];
            for t in 0..parents.len() {
                let (a, b) = parents.children[t];
                let (a, b) = (a as usize, b as usize);
                let total = parents.target[t];
                let weights = &children.weight[a..b];
                // A device holds at most one replica of a partition.
                let hi: Vec<f64> = children.weighted_devices[a..b]
                    .iter()
                    .map(|&n| f64::from(n))
                    .collect();
                let weighted = bounded_proportional(total, weights, &vec![0.0; b - a], &hi);
                let pure =
                    bounded_proportional(parents.weighted[t], weights, &vec![0.0; b - a], &hi);
                let spread = dispersed_share(total, weights, &hi);
                let (target, needed) = apply_overload(&weighted, &spread, overload);
                required_overload = required_overload.max(needed);
                for (i, c) in (a..b).enumerate() {
                    children.target[c] = target[i];
                    children.weighted[c] = pure[i];
                    children.share[c] = if total > EPS {
                        target[i] / total
                    } else {
                        1.0 / (b - a) as f64
                    };
                }
            }
        }
        self.required_overload = required_overload;
    }

    /// The deepest level's tier for a device id, if the device is in the tree.
    pub fn device_tier(&self, id: DeviceId) -> Option<TierIdx> {
        let t = *self.dev_tier[4].get(usize::from(id))?;
        (t != NO_TIER).then_some(t)
    }

    /// The ancestor at `target_level` of tier `t` at `level`.
    pub fn ancestor(&self, mut level: usize, mut t: TierIdx, target_level: usize) -> TierIdx {
        debug_assert!(target_level <= level);
        while level > target_level {
            t = self.levels[level].parent[t as usize];
            level -= 1;
        }
        t
    }
}

fn tier_count(level: &Level) -> TierIdx {
    level.parent.len() as TierIdx
}

/// Splits `total` among children in proportion to `weights`, each within `[lo, hi]`.
/// Children with zero weight get their lower bound. If the bounds cannot absorb `total`,
/// children are clamped and the remainder is dropped (callers validate feasibility first).
pub(crate) fn bounded_proportional(
    total: f64,
    weights: &[f64],
    lo: &[f64],
    hi: &[f64],
) -> Vec<f64> {
    let n = weights.len();
    let mut out = vec![0.0; n];
    let mut fixed = vec![false; n];
    // Each round fixes at least one child or terminates, so n + 1 rounds suffice.
    for _ in 0..=n {
        let fixed_sum: f64 = (0..n).filter(|&i| fixed[i]).map(|i| out[i]).sum();
        let free_weight: f64 = (0..n).filter(|&i| !fixed[i]).map(|i| weights[i]).sum();
        let remaining = total - fixed_sum;
        let mut changed = false;
        for i in 0..n {
            if fixed[i] {
                continue;
            }
            let v = if free_weight > 0.0 {
                remaining * weights[i] / free_weight
            } else {
                0.0
            };
            out[i] = v;
        }
        for i in 0..n {
            if fixed[i] {
                continue;
            }
            if out[i] > hi[i] + EPS {
                out[i] = hi[i];
                fixed[i] = true;
                changed = true;
            } else if out[i] < lo[i] - EPS {
                out[i] = lo[i];
                fixed[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    out
}

/// The widest spread of `total` replicas over children: as even as possible among children
/// with weight, each between floor and ceil of the even split, and no more than its devices.
fn dispersed_share(total: f64, weights: &[f64], devices: &[f64]) -> Vec<f64> {
    let k = weights.iter().filter(|&&w| w > 0.0).count();
    if k == 0 {
        return vec![0.0; weights.len()];
    }
    let even = total / k as f64;
    let lo: Vec<f64> = weights
        .iter()
        .zip(devices)
        .map(|(&w, &d)| {
            if w > 0.0 {
                (even + EPS).floor().min(d)
            } else {
                0.0
            }
        })
        .collect();
    let hi: Vec<f64> = weights
        .iter()
        .zip(devices)
        .map(|(&w, &d)| {
            if w > 0.0 {
                (even - EPS).ceil().min(d)
            } else {
                0.0
            }
        })
        .collect();
    // Between the bounds, follow weight (as Swift's "wanted" replicas do).
    bounded_proportional(total, weights, &lo, &hi)
}

/// Moves children from their weighted share toward their dispersed share, gainers by at most
/// `overload` of their weighted share; losers give up the same total in proportion to how
/// much they are above their dispersed share. Returns the targets and the overload that full
/// dispersion would need.
fn apply_overload(weighted: &[f64], spread: &[f64], overload: f64) -> (Vec<f64>, f64) {
    let mut target = weighted.to_vec();
    let mut gained = 0.0;
    let mut slack = 0.0;
    let mut needed: f64 = 0.0;
    for i in 0..weighted.len() {
        let (w, d) = (weighted[i], spread[i]);
        if d > w + EPS {
            let g = if w > 0.0 {
                d.min(w * (1.0 + overload))
            } else {
                w
            };
            gained += g - w;
            target[i] = g;
            if w > 0.0 {
                needed = needed.max(d / w - 1.0);
            }
        } else if d < w - EPS {
            slack += w - d;
        }
    }
    if gained > 0.0 && slack > 0.0 {
        for i in 0..weighted.len() {
            let (w, d) = (weighted[i], spread[i]);
            if d < w - EPS {
                target[i] = w - gained * (w - d) / slack;
            }
        }
    }
    (target, needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_respects_bounds_and_total() {
        let out = bounded_proportional(3.0, &[10.0, 1.0, 1.0], &[0.0; 3], &[1.0, 4.0, 4.0]);
        assert!((out.iter().sum::<f64>() - 3.0).abs() < 1e-9);
        assert!((out[0] - 1.0).abs() < 1e-9);
        assert!((out[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn overload_zero_keeps_weight() {
        let weighted = bounded_proportional(2.0, &[9.0, 1.0], &[0.0; 2], &[4.0, 4.0]);
        let spread = dispersed_share(2.0, &[9.0, 1.0], &[4.0, 4.0]);
        assert!((spread[0] - 1.0).abs() < 1e-9 && (spread[1] - 1.0).abs() < 1e-9);
        let (t, needed) = apply_overload(&weighted, &spread, 0.0);
        assert!((t[0] - 1.8).abs() < 1e-9);
        assert!((needed - 4.0).abs() < 1e-9, "needed {needed}");
        let (t, _) = apply_overload(&weighted, &spread, 4.0);
        assert!((t[0] - 1.0).abs() < 1e-9 && (t[1] - 1.0).abs() < 1e-9);
        let (t, _) = apply_overload(&weighted, &spread, 1.0);
        assert!((t[1] - 0.4).abs() < 1e-9 && (t[0] - 1.6).abs() < 1e-9);
    }
}
