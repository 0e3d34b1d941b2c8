//! Ring and builder files: what goes in the payload of each (see [`crate::file`] for the
//! container), and the checks a loaded payload must pass before anyone uses it.

use serde::{Deserialize, Serialize};

use crate::builder::{RingBuilder, row_lengths};
use crate::device::{Device, DeviceId};
use crate::error::{Result, RingError};
use crate::file::{self, FileKind, PayloadReader, PayloadWriter};
use crate::limits;
use crate::ring::PartitionRing;

#[derive(Serialize, Deserialize)]
struct RingRecord {
    version: u64,
    part_power: u8,
    replicas: f64,
    devices: Vec<Option<Device>>,
}

#[derive(Serialize, Deserialize)]
struct BuilderRecord {
    version: u64,
    part_power: u8,
    replicas: f64,
    min_part_hours: u32,
    overload: f64,
    dirty: bool,
    devices: Vec<Option<Device>>,
    pending_removal: Vec<DeviceId>,
}

impl PartitionRing {
    /// Serializes the ring into its file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = PayloadWriter::new();
        w.record(
            FileKind::Ring,
            &RingRecord {
                version: self.version,
                part_power: self.part_power,
                replicas: self.replicas,
                devices: self.devices.clone(),
            },
        )?;
        for row in &self.rows {
            w.u16s(row);
        }
        file::seal(FileKind::Ring, &w.buf)
    }

    /// Loads a ring file, refusing anything corrupt, truncated, foreign or inconsistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let payload = file::open(FileKind::Ring, bytes)?;
        let mut r = PayloadReader::new(FileKind::Ring, &payload);
        let rec: RingRecord = r.record()?;
        check_shape(&r, rec.part_power, rec.replicas, &rec.devices)?;
        let rows = row_lengths(rec.part_power, rec.replicas)
            .into_iter()
            .map(|len| r.u16s(len as usize))
            .collect::<Result<Vec<_>>>()?;
        r.finish()?;
        let ring =
            PartitionRing::from_parts(rec.version, rec.part_power, rec.replicas, rec.devices, rows);
        ring.validate().map_err(|e| RingError::Corrupt {
            kind: "ring",
            reason: e.to_string(),
        })?;
        Ok(ring)
    }
}

impl RingBuilder {
    /// Serializes the builder into its file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = PayloadWriter::new();
        w.record(
            FileKind::Builder,
            &BuilderRecord {
                version: self.version,
                part_power: self.part_power,
                replicas: self.replicas,
                min_part_hours: self.min_part_hours,
                overload: self.overload,
                dirty: self.dirty,
                devices: self.devices.clone(),
                pending_removal: self.pending_removal.clone(),
            },
        )?;
        for row in &self.assignment {
            w.u16s(row);
        }
        for row in &self.last_moved {
            w.u32s(row);
        }
        file::seal(FileKind::Builder, &w.buf)
    }

    /// Loads a builder file, refusing anything corrupt, truncated, foreign or inconsistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let payload = file::open(FileKind::Builder, bytes)?;
        let mut r = PayloadReader::new(FileKind::Builder, &payload);
        let rec: BuilderRecord = r.record()?;
        check_shape(&r, rec.part_power, rec.replicas, &rec.devices)?;
        if !(rec.overload.is_finite() && (0.0..=limits::OVERLOAD_MAX).contains(&rec.overload)) {
            return Err(r.corrupt("overload out of range"));
        }
        let lens = row_lengths(rec.part_power, rec.replicas);
        let assignment = lens
            .iter()
            .map(|&l| r.u16s(l as usize))
            .collect::<Result<Vec<_>>>()?;
        let last_moved = lens
            .iter()
            .map(|&l| r.u32s(l as usize))
            .collect::<Result<Vec<_>>>()?;
        r.finish()?;
        let b = RingBuilder {
            part_power: rec.part_power,
            replicas: rec.replicas,
            min_part_hours: rec.min_part_hours,
            overload: rec.overload,
            devices: rec.devices,
            pending_removal: rec.pending_removal,
            assignment,
            last_moved,
            version: rec.version,
            dirty: rec.dirty,
        };
        b.validate(false).map_err(|e| RingError::Corrupt {
            kind: "builder",
            reason: e.to_string(),
        })?;
        Ok(b)
    }
}

fn check_shape(
    r: &PayloadReader<'_>,
    part_power: u8,
    replicas: f64,
    devices: &[Option<Device>],
) -> Result<()> {
    if part_power == 0 || part_power > limits::PART_POWER_MAX {
        return Err(r.corrupt(&format!("part power {part_power} out of range")));
    }
    if !(replicas.is_finite() && (1.0..=limits::REPLICAS_MAX).contains(&replicas)) {
        return Err(r.corrupt(&format!("replica count {replicas} out of range")));
    }
    if devices.len() > limits::DEVICES_MAX {
        return Err(r.corrupt("too many devices"));
    }
    for (i, d) in devices.iter().enumerate() {
        if let Some(d) = d
            && usize::from(d.id) != i
        {
            return Err(r.corrupt(&format!("device at index {i} has id {}", d.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Payloads that pass the container checks (valid digest) but hold garbage reach the
        /// decoder itself: it must refuse them, never panic or allocate without bound.
        #[test]
        fn garbage_behind_a_valid_digest_is_refused(payload in prop::collection::vec(any::<u8>(), 0..4096)) {
            let ring = file::seal(FileKind::Ring, &payload).unwrap();
            prop_assert!(PartitionRing::from_bytes(&ring).is_err());
            let builder = file::seal(FileKind::Builder, &payload).unwrap();
            prop_assert!(RingBuilder::from_bytes(&builder).is_err());
        }

        /// Arbitrary bytes, with or without a correct magic, are refused.
        #[test]
        fn arbitrary_bytes_are_refused(mut bytes in prop::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
            if magic && bytes.len() >= 8 {
                bytes[..8].copy_from_slice(b"CAIRNRNG");
            }
            prop_assert!(PartitionRing::from_bytes(&bytes).is_err());
            prop_assert!(RingBuilder::from_bytes(&bytes).is_err());
        }
    }

    /// A file whose device records break the rules `add_device` enforces is refused: a digest
    /// proves integrity, not that the writer was sane.
    #[test]
    fn devices_that_break_the_rules_are_refused() {
        let dev = Device {
            id: 0,
            region: 1,
            zone: 1,
            ip: "10.0.0.1".into(),
            port: 6200,
            replication_ip: "10.0.0.1".into(),
            replication_port: 6200,
            device: "sda".into(),
            weight: f64::NAN,
            meta: String::new(),
        };
        for bad in [
            dev.clone(),
            Device {
                weight: 1.0,
                port: 0,
                ..dev.clone()
            },
            Device {
                weight: 1.0,
                device: "a/b".into(),
                ..dev.clone()
            },
        ] {
            let mut w = PayloadWriter::new();
            let record = RingRecord {
                version: 1,
                part_power: 2,
                replicas: 1.0,
                devices: vec![Some(bad)],
            };
            w.record(FileKind::Ring, &record).unwrap();
            w.u16s(&[0, 0, 0, 0]);
            assert!(
                PartitionRing::from_bytes(&file::seal(FileKind::Ring, &w.buf).unwrap()).is_err()
            );
        }
    }

    /// A well-formed record whose tables disagree with its devices is refused too.
    #[test]
    fn inconsistent_tables_are_refused() {
        let mut w = PayloadWriter::new();
        w.record(
            FileKind::Ring,
            &RingRecord {
                version: 1,
                part_power: 2,
                replicas: 1.0,
                devices: vec![],
            },
        )
        .unwrap();
        w.u16s(&[0, 0, 0, 0]); // device 0 does not exist
        let err =
            PartitionRing::from_bytes(&file::seal(FileKind::Ring, &w.buf).unwrap()).unwrap_err();
        assert!(err.to_string().contains("missing device"), "{err}");
    }
}
