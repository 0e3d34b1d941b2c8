//! How good an assignment is: balance per device and dispersion per failure domain, computed
//! the way `swift-ring-builder` computes them so figures compare one-for-one.
//!
//! - **balance** of a device: `100 × parts / wanted − 100` where `wanted` is its weight share
//!   of all partition-replicas; the ring's balance is the largest absolute value. A device with
//!   no weight but some partitions counts as [`MAX_BALANCE`].
//! - **dispersion**: each tier may hold at most `ceil(parent's max / number of children)`
//!   replicas of a partition (children = tiers with weighted devices; a device at most one).
//!   Each partition counts its excess once, at its worst level; dispersion is the percentage of
//!   all partition-replicas that are such excess.

// Counts are bounded by partitions × replicas (< 2^27) and replicas (≤ 32).
#![allow(clippy::cast_possible_truncation)]

use std::collections::HashMap;

use serde::Serialize;

use crate::device::{Device, DeviceId, NO_DEVICE, TierLevel};

/// Balance reported for a device that has partitions but no weight.
pub const MAX_BALANCE: f64 = 999.99;

/// Per-device view of an assignment.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    #[serde(flatten)]
    pub device: Device,
    pub partitions: u64,
    /// Partition-replicas the device's weight asks for.
    pub wanted: f64,
    /// Percent above (+) or below (−) `wanted`.
    pub balance: f64,
    pub pending_removal: bool,
}

/// One failure domain's spread, as in `swift-ring-builder dispersion --verbose`.
#[derive(Debug, Clone, Serialize)]
pub struct TierDispersion {
    pub level: TierLevel,
    pub tier: String,
    /// Most replicas of one partition this tier should hold.
    pub max_replicas: u32,
    /// Partition-replicas placed in this tier.
    pub placed: u64,
    /// Percent of `placed` beyond `max_replicas`.
    pub dispersion: f64,
    /// `replicas[n]`: partitions with exactly `n` replicas in this tier.
    pub replicas: Vec<u64>,
}

/// Balance and dispersion of a whole assignment.
#[derive(Debug, Clone, Serialize)]
pub struct AssignmentReport {
    pub balance: f64,
    pub dispersion: f64,
    /// The tier with the largest dispersion, if any is above 0.
    pub worst_tier: Option<String>,
    pub devices: Vec<DeviceReport>,
    pub tiers: Vec<TierDispersion>,
    pub unassigned: u64,
}

/// Computes the report. `removing` says which devices are on their way out (treated as
/// weight 0, as Swift does once a device is removed).
pub fn assess(
    devices: &[Option<Device>],
    rows: &[Vec<DeviceId>],
    replicas: f64,
    parts: u32,
    removing: &dyn Fn(DeviceId) -> bool,
) -> AssignmentReport {
    let weight_of = |d: &Device| if removing(d.id) { 0.0 } else { d.weight };
    let mut counts = vec![0u64; devices.len()];
    let mut unassigned = 0u64;
    for row in rows {
        for &d in row {
            match counts.get_mut(usize::from(d)) {
                Some(c) if d != NO_DEVICE => *c += 1,
                _ => unassigned += 1,
            }
        }
    }
    let total_weight: f64 = devices.iter().flatten().map(weight_of).sum();
    let weight_of_one_part = if total_weight > 0.0 {
        f64::from(parts) * replicas / total_weight
    } else {
        0.0
    };
    let mut balance: f64 = 0.0;
    let device_reports: Vec<DeviceReport> = devices
        .iter()
        .flatten()
        .map(|d| {
            let parts_here = counts[usize::from(d.id)];
            let w = weight_of(d);
            let wanted = w * weight_of_one_part;
            let b = if w <= 0.0 {
                if parts_here > 0 { MAX_BALANCE } else { 0.0 }
            } else {
                100.0 * parts_here as f64 / wanted - 100.0
            };
            balance = balance.max(b.abs());
            DeviceReport {
                device: d.clone(),
                partitions: parts_here,
                wanted,
                balance: b,
                pending_removal: removing(d.id),
            }
        })
        .collect();

    let dispersion = Dispersion::measure(devices, rows, replicas, parts, &weight_of);
    AssignmentReport {
        balance,
        dispersion: dispersion.overall,
        worst_tier: dispersion.worst_tier,
        devices: device_reports,
        tiers: dispersion.tiers,
        unassigned,
    }
}

struct Dispersion {
    overall: f64,
    worst_tier: Option<String>,
    tiers: Vec<TierDispersion>,
}

/// Tier key at each level, for grouping devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TierKey {
    Region(u32),
    Zone(u32, u32),
    Node(u32, u32, String),
    Device(u32, u32, String, DeviceId),
}

fn tier_keys(d: &Device) -> [TierKey; 4] {
    [
        TierKey::Region(d.region),
        TierKey::Zone(d.region, d.zone),
        TierKey::Node(d.region, d.zone, d.ip.clone()),
        TierKey::Device(d.region, d.zone, d.ip.clone(), d.id),
    ]
}

impl Dispersion {
    fn measure(
        devices: &[Option<Device>],
        rows: &[Vec<DeviceId>],
        replicas: f64,
        parts: u32,
        weight_of: &dyn Fn(&Device) -> f64,
    ) -> Self {
        // Number every tier that appears on any device; children counts use weighted devices.
        let mut index: HashMap<TierKey, usize> = HashMap::new();
        let mut keys: Vec<(TierKey, Device)> = Vec::new();
        let mut dev_tiers: Vec<[usize; 4]> = vec![[usize::MAX; 4]; devices.len()];
        let mut sorted: Vec<&Device> = devices.iter().flatten().collect();
        sorted.sort_by_key(|d| tier_keys(d));
        for d in &sorted {
            for (level, key) in tier_keys(d).into_iter().enumerate() {
                let next = keys.len();
                let i = *index.entry(key.clone()).or_insert(next);
                if i == next {
                    keys.push((key, (*d).clone()));
                }
                dev_tiers[usize::from(d.id)][level] = i;
            }
        }
        let max_replicas = max_replicas_by_tier(&sorted, &index, replicas, weight_of);

        // Per-tier facts the per-partition loop needs, flat: the caps are whole numbers
        // (ceil of a division, or at most 1 for a device).
        let max_whole: Vec<u32> = max_replicas.iter().map(|&m| m.max(0.0) as u32).collect();
        let width = replicas.ceil() as usize + 1;
        let mut histogram = vec![0u64; keys.len() * width];
        let mut at_risk = 0u64;
        // Per partition, the distinct tiers its replicas touch at each level with their counts.
        // Tiers of different levels never coincide, so each level is searched on its own.
        const REPLICAS_MAX: usize = 32;
        let mut tier_at: [[usize; REPLICAS_MAX]; 4] = [[0; REPLICAS_MAX]; 4];
        let mut count_at: [[u32; REPLICAS_MAX]; 4] = [[0; REPLICAS_MAX]; 4];
        for p in 0..parts as usize {
            let mut len = [0usize; 4];
            for row in rows {
                let Some(&d) = row.get(p) else { break };
                let Some(tiers) = dev_tiers.get(usize::from(d)) else {
                    continue;
                };
                for (level, &t) in tiers.iter().enumerate() {
                    let n = len[level];
                    match tier_at[level][..n].iter().position(|&x| x == t) {
                        Some(i) => count_at[level][i] += 1,
                        None if n < REPLICAS_MAX => {
                            tier_at[level][n] = t;
                            count_at[level][n] = 1;
                            len[level] += 1;
                        }
                        None => {}
                    }
                }
            }
            let mut risk_by_level = [0u32; 4];
            for level in 0..4 {
                for i in 0..len[level] {
                    let (t, n) = (tier_at[level][i], count_at[level][i]);
                    histogram[t * width + (n as usize).min(width - 1)] += 1;
                    let max = max_whole[t];
                    if n > max {
                        risk_by_level[level] += n - max;
                    }
                }
            }
            at_risk += u64::from(risk_by_level.iter().copied().max().unwrap_or(0));
        }

        let mut tiers = Vec::with_capacity(keys.len());
        let mut worst: Option<(f64, String)> = None;
        for (t, (key, sample)) in keys.iter().enumerate() {
            let mut replicas_hist = histogram[t * width..(t + 1) * width].to_vec();
            let placed_parts: u64 = replicas_hist.iter().sum();
            replicas_hist[0] = u64::from(parts).saturating_sub(placed_parts);
            let max = max_replicas[t] as u32;
            let placed: u64 = replicas_hist
                .iter()
                .enumerate()
                .map(|(n, &c)| n as u64 * c)
                .sum();
            let excess: u64 = replicas_hist
                .iter()
                .enumerate()
                .skip(max as usize + 1)
                .map(|(n, &c)| (n as u64 - u64::from(max)) * c)
                .sum();
            let tier_dispersion = if placed > 0 {
                100.0 * excess as f64 / placed as f64
            } else {
                0.0
            };
            let level = TierLevel::ALL[key.level()];
            let name = sample.tier_label(level);
            if tier_dispersion > worst.as_ref().map_or(0.0, |w| w.0) {
                worst = Some((tier_dispersion, name.clone()));
            }
            tiers.push(TierDispersion {
                level,
                tier: name,
                max_replicas: max,
                placed,
                dispersion: tier_dispersion,
                replicas: replicas_hist,
            });
        }
        let total = f64::from(parts) * replicas;
        Dispersion {
            overall: if total > 0.0 {
                100.0 * at_risk as f64 / total
            } else {
                0.0
            },
            worst_tier: worst.map(|w| w.1),
            tiers,
        }
    }
}

impl TierKey {
    fn level(&self) -> usize {
        match self {
            Self::Region(..) => 0,
            Self::Zone(..) => 1,
            Self::Node(..) => 2,
            Self::Device(..) => 3,
        }
    }

    fn parent(&self) -> Option<TierKey> {
        match self {
            Self::Region(_) => None,
            Self::Zone(r, _) => Some(Self::Region(*r)),
            Self::Node(r, z, _) => Some(Self::Zone(*r, *z)),
            Self::Device(r, z, ip, _) => Some(Self::Node(*r, *z, ip.clone())),
        }
    }
}

/// Swift's `_build_max_replicas_by_tier`: the root may hold all replicas; each child of a tier
/// may hold `ceil(tier's max / children)`, a device at most one. Tiers with no weighted device
/// may hold none.
fn max_replicas_by_tier(
    sorted: &[&Device],
    index: &HashMap<TierKey, usize>,
    replicas: f64,
    weight_of: &dyn Fn(&Device) -> f64,
) -> Vec<f64> {
    let mut max = vec![0.0; index.len()];
    // Children of each weighted tier (root = None), in sorted order.
    let mut children: HashMap<Option<TierKey>, Vec<TierKey>> = HashMap::new();
    for d in sorted.iter().filter(|d| weight_of(d) > 0.0) {
        for key in tier_keys(d) {
            // Devices are sorted by tier, so a repeated child is always the last one pushed.
            let list = children.entry(key.parent()).or_default();
            if list.last() != Some(&key) {
                list.push(key);
            }
        }
    }
    let mut stack: Vec<(Option<TierKey>, f64)> = vec![(None, replicas)];
    while let Some((tier, count)) = stack.pop() {
        if let Some(kids) = children.get(&tier) {
            let n = kids.len() as f64;
            for kid in kids {
                let mut sub = (count / n).ceil();
                if kid.level() == 3 {
                    sub = sub.min(1.0);
                }
                if let Some(&i) = index.get(kid) {
                    max[i] = sub;
                }
                stack.push((Some(kid.clone()), sub));
            }
        }
    }
    max
}
