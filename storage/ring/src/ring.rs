//! The compiled ring nodes load: devices and the partition → devices table, nothing else.

use std::collections::HashSet;

use crate::builder::RingBuilder;
use crate::device::{Device, DeviceId, NO_DEVICE};
use crate::error::{Result, RingError};
use crate::hash::{PathHasher, partition_of_hash};

/// A compiled, immutable partition ring.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRing {
    pub(crate) version: u64,
    pub(crate) part_power: u8,
    pub(crate) replicas: f64,
    pub(crate) devices: Vec<Option<Device>>,
    pub(crate) rows: Vec<Vec<DeviceId>>,
    /// Weighted devices in id order: the pool handoffs are drawn from.
    pub(crate) handoff_pool: Vec<DeviceId>,
}

impl PartitionRing {
    /// Compiles a builder whose every partition-replica is assigned.
    pub fn compile(b: &RingBuilder) -> Result<Self> {
        b.validate(true)?;
        if let Some(&d) = b
            .assignment
            .iter()
            .flatten()
            .find(|&&d| b.is_pending_removal(d))
        {
            return Err(RingError::Invalid(format!(
                "device d{d} is being removed but still holds partitions: run rebalance first"
            )));
        }
        Ok(Self::from_parts(
            b.version,
            b.part_power,
            b.replicas,
            b.devices.clone(),
            b.assignment.clone(),
        ))
    }

    pub(crate) fn from_parts(
        version: u64,
        part_power: u8,
        replicas: f64,
        devices: Vec<Option<Device>>,
        rows: Vec<Vec<DeviceId>>,
    ) -> Self {
        let handoff_pool = devices
            .iter()
            .flatten()
            .filter(|d| d.weight > 0.0)
            .map(|d| d.id)
            .collect();
        Self {
            version,
            part_power,
            replicas,
            devices,
            rows,
            handoff_pool,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn part_power(&self) -> u8 {
        self.part_power
    }
    pub fn partitions(&self) -> u32 {
        1 << self.part_power
    }
    pub fn replicas(&self) -> f64 {
        self.replicas
    }
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().flatten()
    }
    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        self.devices.get(usize::from(id)).and_then(Option::as_ref)
    }
    pub fn rows(&self) -> &[Vec<DeviceId>] {
        &self.rows
    }

    /// The partition a path such as `/account/container/object` lives in.
    pub fn partition_for(&self, hasher: &PathHasher, path: &str) -> u32 {
        partition_of_hash(hasher.hash_path(path), self.part_power)
    }

    /// Device ids of the primary replicas of `part`, in replica order.
    pub fn primary_ids(&self, part: u32) -> impl Iterator<Item = DeviceId> + '_ {
        self.rows
            .iter()
            .filter_map(move |row| row.get(part as usize).copied())
    }

    /// The primary devices of `part`, in replica order.
    pub fn primaries(&self, part: u32) -> impl Iterator<Item = &Device> + '_ {
        self.primary_ids(part).filter_map(|id| self.device(id))
    }

    /// Further devices for `part`, used when primaries are down and walked by the replicator.
    ///
    /// Deterministic for a ring and partition: first devices in regions no earlier device
    /// uses, then in unused zones, then on unused nodes, then any device left. Within each
    /// pass devices come in a partition-specific pseudo-random order, so the load of a failed
    /// device spreads over many others.
    pub fn handoffs(&self, part: u32) -> Result<Handoffs<'_>> {
        if part >= self.partitions() {
            return Err(RingError::PartitionOutOfRange(part));
        }
        let n = self.handoff_pool.len();
        // Seeded by the partition alone: the walk changes only when the devices do, not with
        // every ring version, so data written to handoffs is found on them again.
        let mix = splitmix(u64::from(part));
        // Both remainders are below `n`, a usize.
        let below_n = |x: u64| usize::try_from(x % n.max(1) as u64).unwrap_or(0);
        let start = below_n(mix);
        let mut stride = below_n(mix >> 32) | 1;
        while n > 1 && gcd(stride, n) != 1 {
            stride += 1;
        }
        let mut h = Handoffs {
            ring: self,
            pass: 0,
            pos: 0,
            start,
            stride,
            used_devices: vec![false; self.devices.len()],
            used_regions: HashSet::new(),
            used_zones: HashSet::new(),
            used_nodes: HashSet::new(),
        };
        for id in self.primary_ids(part).collect::<Vec<_>>() {
            if let Some(d) = self.device(id) {
                h.mark(d);
            }
        }
        Ok(h)
    }

    /// Checks the table: full, every device known, no partition on one device twice.
    pub fn validate(&self) -> Result<()> {
        for d in self.devices() {
            crate::device::validate_device(d)?;
        }
        let lens = crate::builder::row_lengths(self.part_power, self.replicas);
        if self
            .rows
            .iter()
            .map(Vec::len)
            .ne(lens.iter().map(|&l| l as usize))
        {
            return Err(RingError::Invalid(
                "replica rows do not match the replica count".into(),
            ));
        }
        crate::builder::validate_assignment(&self.rows, self.partitions(), true, |d| {
            self.device(d).is_some()
        })
    }

    /// Partition-replicas per device id.
    pub fn partition_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.devices.len()];
        for &d in self.rows.iter().flatten() {
            if d != NO_DEVICE
                && let Some(c) = counts.get_mut(usize::from(d))
            {
                *c += 1;
            }
        }
        counts
    }
}

/// Iterator over a partition's handoff devices; see [`PartitionRing::handoffs`].
#[derive(Debug)]
pub struct Handoffs<'a> {
    ring: &'a PartitionRing,
    /// 0: new regions, 1: new zones, 2: new nodes, 3: any device.
    pass: u8,
    pos: usize,
    start: usize,
    stride: usize,
    used_devices: Vec<bool>,
    used_regions: HashSet<u32>,
    used_zones: HashSet<(u32, u32)>,
    used_nodes: HashSet<(u32, u32, &'a str)>,
}

impl<'a> Handoffs<'a> {
    fn mark(&mut self, d: &'a Device) {
        if let Some(u) = self.used_devices.get_mut(usize::from(d.id)) {
            *u = true;
        }
        self.used_regions.insert(d.region);
        self.used_zones.insert((d.region, d.zone));
        self.used_nodes.insert((d.region, d.zone, d.ip.as_str()));
    }

    fn eligible(&self, d: &Device) -> bool {
        if self
            .used_devices
            .get(usize::from(d.id))
            .copied()
            .unwrap_or(true)
        {
            return false;
        }
        match self.pass {
            0 => !self.used_regions.contains(&d.region),
            1 => !self.used_zones.contains(&(d.region, d.zone)),
            2 => !self.used_nodes.contains(&(d.region, d.zone, d.ip.as_str())),
            _ => true,
        }
    }
}

impl<'a> Iterator for Handoffs<'a> {
    type Item = &'a Device;

    fn next(&mut self) -> Option<&'a Device> {
        let ring = self.ring;
        let n = ring.handoff_pool.len();
        while self.pass < 4 {
            while self.pos < n {
                let idx = (self.start + self.pos * self.stride) % n;
                self.pos += 1;
                let Some(d) = ring.device(ring.handoff_pool[idx]) else {
                    continue;
                };
                if self.eligible(d) {
                    self.mark(d);
                    return Some(d);
                }
            }
            self.pass += 1;
            self.pos = 0;
        }
        None
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn splitmix(x: u64) -> u64 {
    crate::rng::SplitMix64::new(x).next_u64()
}
