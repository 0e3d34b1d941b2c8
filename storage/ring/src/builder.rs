//! Builder state: everything an operator edits and the rebalancer needs. Nodes never see it;
//! they load the compiled [`crate::PartitionRing`].

use crate::device::{self, Device, DeviceId, NO_DEVICE, NewDevice};
use crate::error::{Result, RingError};
use crate::limits;

/// The ring builder: devices, parameters, the current assignment and when each
/// partition-replica last moved.
#[derive(Debug, Clone, PartialEq)]
pub struct RingBuilder {
    pub(crate) part_power: u8,
    pub(crate) replicas: f64,
    pub(crate) min_part_hours: u32,
    pub(crate) overload: f64,
    /// Indexed by device id; `None` for ids not (or no longer) in use.
    pub(crate) devices: Vec<Option<Device>>,
    /// Devices to drop at the next rebalance, sorted.
    pub(crate) pending_removal: Vec<DeviceId>,
    /// One row per replica; the last row is shorter when `replicas` has a fraction.
    pub(crate) assignment: Vec<Vec<DeviceId>>,
    /// Same shape: minutes since the Unix epoch when that partition-replica last moved
    /// (0 = never, or forgotten by `pretend_min_part_hours_passed`).
    pub(crate) last_moved: Vec<Vec<u32>>,
    /// Bumped on every change nodes would see; a compiled ring carries the version it was
    /// built from.
    pub(crate) version: u64,
    /// Changes since the last rebalance that the assignment does not reflect yet.
    pub(crate) dirty: bool,
}

impl RingBuilder {
    /// A new, empty builder. `replicas` may have a fraction, as in Swift.
    pub fn new(part_power: u8, replicas: f64, min_part_hours: u32) -> Result<Self> {
        if part_power == 0 || part_power > limits::PART_POWER_MAX {
            return Err(RingError::PartPowerOutOfRange(part_power));
        }
        validate_replicas(replicas)?;
        let mut b = Self {
            part_power,
            replicas,
            min_part_hours,
            overload: 0.0,
            devices: Vec::new(),
            pending_removal: Vec::new(),
            assignment: Vec::new(),
            last_moved: Vec::new(),
            version: 0,
            dirty: true,
        };
        b.resize_rows();
        Ok(b)
    }

    pub fn part_power(&self) -> u8 {
        self.part_power
    }
    pub fn partitions(&self) -> u32 {
        1u32 << self.part_power
    }
    pub fn replicas(&self) -> f64 {
        self.replicas
    }
    pub fn min_part_hours(&self) -> u32 {
        self.min_part_hours
    }
    pub fn overload(&self) -> f64 {
        self.overload
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    /// True if devices or parameters changed since the last rebalance.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Devices in id order (including those pending removal).
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().flatten()
    }

    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        self.devices.get(usize::from(id)).and_then(Option::as_ref)
    }

    pub fn is_pending_removal(&self, id: DeviceId) -> bool {
        self.pending_removal.binary_search(&id).is_ok()
    }

    pub(crate) fn device_table_len(&self) -> usize {
        self.devices.len()
    }

    /// Lengths of the replica rows: `ceil(replicas)` rows, the last one partial if fractional.
    pub fn row_lengths(&self) -> Vec<u32> {
        row_lengths(self.part_power, self.replicas)
    }

    /// Adds a device; returns its id (the lowest free one unless the caller chose).
    pub fn add_device(&mut self, new: NewDevice) -> Result<DeviceId> {
        device::validate_weight(new.weight)?;
        device::validate_host("ip", &new.ip)?;
        device::validate_device_name(&new.device)?;
        device::validate_meta(&new.meta)?;
        if let Some(ip) = &new.replication_ip {
            device::validate_host("replication_ip", ip)?;
        }
        if new.port == 0 {
            return Err(RingError::InvalidDeviceField {
                field: "port",
                reason: "is 0".into(),
            });
        }
        if let Some(existing) = self.devices().find(|d| {
            d.ip == new.ip
                && d.port == new.port
                && d.device == new.device
                && !self.is_pending_removal(d.id)
        }) {
            return Err(RingError::DuplicateDevice {
                ip: new.ip,
                port: new.port,
                device: new.device,
                existing: existing.id,
            });
        }
        let id = match new.id {
            Some(id) => {
                if usize::from(id) >= limits::DEVICES_MAX {
                    return Err(RingError::InvalidDeviceField {
                        field: "id",
                        reason: format!(
                            "{id} is above the largest id, {}",
                            limits::DEVICES_MAX - 1
                        ),
                    });
                }
                if self.device(id).is_some() {
                    return Err(RingError::DuplicateDeviceId(id));
                }
                id
            }
            None => {
                let free = self
                    .devices
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.devices.len());
                match DeviceId::try_from(free) {
                    Ok(id) if free < limits::DEVICES_MAX => id,
                    _ => return Err(RingError::TooManyDevices),
                }
            }
        };
        if usize::from(id) >= self.devices.len() {
            self.devices.resize(usize::from(id) + 1, None);
        }
        self.devices[usize::from(id)] = Some(Device {
            id,
            region: new.region,
            zone: new.zone,
            replication_ip: new.replication_ip.unwrap_or_else(|| new.ip.clone()),
            replication_port: new.replication_port.unwrap_or(new.port),
            ip: new.ip,
            port: new.port,
            device: new.device,
            weight: new.weight,
            meta: new.meta,
        });
        self.touch();
        Ok(id)
    }

    /// Marks a device for removal: the next rebalance moves its partitions away (regardless of
    /// `min_part_hours`) and then drops it.
    pub fn remove_device(&mut self, id: DeviceId) -> Result<()> {
        self.device(id).ok_or(RingError::NoSuchDevice(id))?;
        if let Err(pos) = self.pending_removal.binary_search(&id) {
            self.pending_removal.insert(pos, id);
        }
        self.touch();
        Ok(())
    }

    pub fn set_weight(&mut self, id: DeviceId, weight: f64) -> Result<()> {
        device::validate_weight(weight)?;
        self.device_mut(id)?.weight = weight;
        self.touch();
        Ok(())
    }

    /// Changes a device's addresses, name or meta. Region and zone stay: changing those moves
    /// data, so it is a remove and an add. A new IP puts the device on another node (a node is
    /// region, zone and IP, as in Swift), so the next rebalance may move replicas for dispersion.
    pub fn set_info(&mut self, id: DeviceId, info: DeviceInfo) -> Result<()> {
        if let Some(ip) = &info.ip {
            device::validate_host("ip", ip)?;
        }
        if let Some(ip) = &info.replication_ip {
            device::validate_host("replication_ip", ip)?;
        }
        if let Some(name) = &info.device {
            device::validate_device_name(name)?;
        }
        if let Some(meta) = &info.meta {
            device::validate_meta(meta)?;
        }
        if info.port == Some(0) || info.replication_port == Some(0) {
            return Err(RingError::InvalidDeviceField {
                field: "port",
                reason: "is 0".into(),
            });
        }
        let current = self.device(id).ok_or(RingError::NoSuchDevice(id))?.clone();
        let node_changes = info.ip.as_ref().is_some_and(|ip| *ip != current.ip);
        let (ip, port, name) = (
            info.ip.clone().unwrap_or(current.ip.clone()),
            info.port.unwrap_or(current.port),
            info.device.clone().unwrap_or(current.device.clone()),
        );
        if let Some(other) = self.devices().find(|d| {
            d.id != id
                && d.ip == ip
                && d.port == port
                && d.device == name
                && !self.is_pending_removal(d.id)
        }) {
            return Err(RingError::DuplicateDevice {
                ip,
                port,
                device: name,
                existing: other.id,
            });
        }
        let d = self.device_mut(id)?;
        d.ip = ip;
        d.port = port;
        d.device = name;
        if let Some(v) = info.replication_ip {
            d.replication_ip = v;
        }
        if let Some(v) = info.replication_port {
            d.replication_port = v;
        }
        if let Some(v) = info.meta {
            d.meta = v;
        }
        if node_changes {
            self.touch();
        } else {
            self.version += 1;
        }
        Ok(())
    }

    pub fn set_overload(&mut self, overload: f64) -> Result<()> {
        if !overload.is_finite() || !(0.0..=limits::OVERLOAD_MAX).contains(&overload) {
            return Err(RingError::OverloadOutOfRange(overload));
        }
        self.overload = overload;
        self.touch();
        Ok(())
    }

    /// Builder-only: nodes never see it, so the ring version does not change.
    pub fn set_min_part_hours(&mut self, hours: u32) {
        self.min_part_hours = hours;
    }

    /// Changes the replica count; the next rebalance places new replicas or forgets dropped ones.
    pub fn set_replicas(&mut self, replicas: f64) -> Result<()> {
        validate_replicas(replicas)?;
        self.replicas = replicas;
        self.resize_rows();
        self.touch();
        Ok(())
    }

    /// Forgets when partitions last moved, so the next rebalance may move any of them.
    pub fn pretend_min_part_hours_passed(&mut self) {
        for row in &mut self.last_moved {
            row.fill(0);
        }
    }

    /// Partition-replicas assigned to each device id (index = id).
    pub fn partition_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.devices.len()];
        for row in &self.assignment {
            for &d in row {
                if let Some(c) = counts.get_mut(usize::from(d)) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// The device of replica `replica` of partition `part`, if assigned.
    pub fn assigned(&self, replica: usize, part: u32) -> Option<DeviceId> {
        let d = *self.assignment.get(replica)?.get(part as usize)?;
        (d != NO_DEVICE).then_some(d)
    }

    /// Checks the builder's internal consistency: row shapes, every assigned device exists,
    /// no partition uses one device twice. Unassigned slots are reported when `require_full`.
    pub fn validate(&self, require_full: bool) -> Result<()> {
        let lens = self.row_lengths();
        if self.assignment.len() != lens.len() || self.last_moved.len() != lens.len() {
            return Err(RingError::Invalid(
                "replica rows do not match the replica count".into(),
            ));
        }
        for (r, len) in lens.iter().enumerate() {
            if self.assignment[r].len() != *len as usize
                || self.last_moved[r].len() != *len as usize
            {
                return Err(RingError::Invalid(format!(
                    "replica row {r} has the wrong length"
                )));
            }
        }
        if self.devices.len() > limits::DEVICES_MAX {
            return Err(RingError::TooManyDevices);
        }
        for d in self.devices() {
            device::validate_device(d)?;
        }
        if let Some(&id) = self
            .pending_removal
            .iter()
            .find(|&&id| self.device(id).is_none())
        {
            return Err(RingError::Invalid(format!(
                "d{id} is pending removal but does not exist"
            )));
        }
        for w in self.pending_removal.windows(2) {
            if w[0] >= w[1] {
                return Err(RingError::Invalid("pending removals are not sorted".into()));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(d) = d
                && usize::from(d.id) != i
            {
                return Err(RingError::Invalid(format!(
                    "device at index {i} has id {}",
                    d.id
                )));
            }
        }
        validate_assignment(&self.assignment, self.partitions(), require_full, |d| {
            self.device(d).is_some()
        })
    }

    fn device_mut(&mut self, id: DeviceId) -> Result<&mut Device> {
        self.devices
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(RingError::NoSuchDevice(id))
    }

    fn touch(&mut self) {
        self.version += 1;
        self.dirty = true;
    }

    fn resize_rows(&mut self) {
        let lens = self.row_lengths();
        self.assignment.truncate(lens.len());
        self.last_moved.truncate(lens.len());
        self.assignment.resize_with(lens.len(), Vec::new);
        self.last_moved.resize_with(lens.len(), Vec::new);
        for (r, &len) in lens.iter().enumerate() {
            self.assignment[r].resize(len as usize, NO_DEVICE);
            self.last_moved[r].resize(len as usize, 0);
        }
    }

    pub(crate) fn assignment_flat(&self) -> Vec<DeviceId> {
        self.assignment.concat()
    }

    /// Writes a rebalanced assignment back; `changed` slots get `now` as last-moved time.
    pub(crate) fn store_assignment(&mut self, flat: &[DeviceId], changed: &[usize], now: u32) {
        let parts = self.partitions() as usize;
        for (r, row) in self.assignment.iter_mut().enumerate() {
            let start = r * parts;
            let len = row.len();
            row.copy_from_slice(&flat[start..start + len]);
        }
        for &s in changed {
            // A recorded time of 0 would read as "never moved".
            self.last_moved[s / parts][s % parts] = now.max(1);
        }
        // An assignment that did not change is the same ring: same version.
        if !changed.is_empty() {
            self.version += 1;
        }
        self.dirty = false;
    }

    /// Drops devices pending removal (the rebalance has moved everything off them).
    pub(crate) fn finish_removals(&mut self) -> Vec<DeviceId> {
        let removed = std::mem::take(&mut self.pending_removal);
        for &id in &removed {
            if let Some(slot) = self.devices.get_mut(usize::from(id)) {
                *slot = None;
            }
        }
        while self.devices.last().is_some_and(Option::is_none) {
            self.devices.pop();
        }
        removed
    }
}

/// Fields of a device that `set_info` may change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: Option<String>,
    pub meta: Option<String>,
}

fn validate_replicas(replicas: f64) -> Result<()> {
    if replicas.is_finite() && (1.0..=limits::REPLICAS_MAX).contains(&replicas) {
        Ok(())
    } else {
        Err(RingError::ReplicasOutOfRange(replicas))
    }
}

pub(crate) fn row_lengths(part_power: u8, replicas: f64) -> Vec<u32> {
    let parts = 1u32 << part_power;
    // Callers validate replicas to 1..=REPLICAS_MAX, so these conversions are exact.
    let whole = (1..=32u32)
        .take_while(|&r| f64::from(r) <= replicas)
        .count();
    let fraction = replicas - replicas.floor();
    let mut lens = vec![parts; whole];
    let partial = (fraction * f64::from(parts)).round();
    if partial >= 1.0 {
        // `partial` is in 1..=parts (fraction < 1), so the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        lens.push((partial as u32).min(parts));
    }
    lens
}

/// Shared by the builder and the compiled ring: every slot names a known device and no
/// partition uses a device twice.
pub(crate) fn validate_assignment(
    rows: &[Vec<DeviceId>],
    parts: u32,
    require_full: bool,
    exists: impl Fn(DeviceId) -> bool,
) -> Result<()> {
    let mut seen = Vec::with_capacity(rows.len());
    for p in 0..parts {
        seen.clear();
        let (part, p) = (p, p as usize);
        for (r, row) in rows.iter().enumerate() {
            let Some(&d) = row.get(p) else { break };
            if d == NO_DEVICE {
                if require_full {
                    return Err(RingError::Unassigned {
                        part,
                        replica: u32::try_from(r).unwrap_or(u32::MAX),
                    });
                }
                continue;
            }
            if !exists(d) {
                return Err(RingError::Invalid(format!(
                    "partition {p} replica {r} is assigned to missing device d{d}"
                )));
            }
            if seen.contains(&d) {
                return Err(RingError::Invalid(format!(
                    "partition {p} has two replicas on device d{d}"
                )));
            }
            seen.push(d);
        }
    }
    Ok(())
}
