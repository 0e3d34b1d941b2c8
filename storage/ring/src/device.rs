//! Devices: the unit a partition replica is assigned to, and the failure domains above it.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RingError};
use crate::limits;

/// Index of a device in the ring's device table; stable for the device's lifetime.
pub type DeviceId = u16;

/// Marks an unassigned slot in the assignment table.
pub const NO_DEVICE: DeviceId = u16::MAX;

/// One storage device (a disk on a node), as the ring sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub region: u32,
    pub zone: u32,
    /// Address (IP or host name) clients use; together with region and zone it names the node.
    pub ip: String,
    pub port: u16,
    /// Address for replication traffic; defaults to `ip`/`port`.
    pub replication_ip: String,
    pub replication_port: u16,
    /// Device name on the node, e.g. `sda`.
    pub device: String,
    pub weight: f64,
    /// Free-form operator note.
    pub meta: String,
}

/// What an operator supplies to add a device; the id may be chosen by the builder.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    pub id: Option<DeviceId>,
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: String,
    pub weight: f64,
    pub meta: String,
}

/// The four failure-domain levels below the root, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierLevel {
    Region,
    Zone,
    Node,
    Device,
}

impl TierLevel {
    pub const ALL: [TierLevel; 4] = [Self::Region, Self::Zone, Self::Node, Self::Device];

    pub fn name(self) -> &'static str {
        match self {
            Self::Region => "region",
            Self::Zone => "zone",
            Self::Node => "node",
            Self::Device => "device",
        }
    }
}

impl Device {
    /// The node a device belongs to is (region, zone, ip): two ports on one host share a fate.
    pub fn same_node(&self, other: &Device) -> bool {
        self.region == other.region && self.zone == other.zone && self.ip == other.ip
    }

    /// Human-readable tier label, e.g. `r1z2-10.0.0.1` for a node.
    pub fn tier_label(&self, level: TierLevel) -> String {
        match level {
            TierLevel::Region => format!("r{}", self.region),
            TierLevel::Zone => format!("r{}z{}", self.region, self.zone),
            TierLevel::Node => format!("r{}z{}-{}", self.region, self.zone, self.ip),
            TierLevel::Device => {
                format!(
                    "r{}z{}-{}/{} (d{})",
                    self.region, self.zone, self.ip, self.device, self.id
                )
            }
        }
    }

    /// `r1z1-127.0.0.1:6200/sda` — the notation swift-ring-builder uses.
    pub fn address(&self) -> String {
        format!(
            "r{}z{}-{}:{}/{}",
            self.region, self.zone, self.ip, self.port, self.device
        )
    }
}

/// Every field of a stored device, as `add_device` checks them: files are checked too.
pub(crate) fn validate_device(d: &Device) -> Result<()> {
    validate_weight(d.weight)?;
    validate_host("ip", &d.ip)?;
    validate_host("replication_ip", &d.replication_ip)?;
    validate_device_name(&d.device)?;
    validate_meta(&d.meta)?;
    if d.port == 0 || d.replication_port == 0 {
        return Err(RingError::InvalidDeviceField {
            field: "port",
            reason: "is 0".into(),
        });
    }
    Ok(())
}

pub(crate) fn validate_weight(weight: f64) -> Result<()> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(RingError::InvalidWeight(weight))
    }
}

pub(crate) fn validate_host(field: &'static str, host: &str) -> Result<()> {
    validate_token(field, host, limits::HOST_LEN_MAX)
}

pub(crate) fn validate_device_name(name: &str) -> Result<()> {
    validate_token("device", name, limits::DEVICE_NAME_LEN_MAX)
}

pub(crate) fn validate_meta(meta: &str) -> Result<()> {
    if meta.len() > limits::META_LEN_MAX {
        return Err(RingError::InvalidDeviceField {
            field: "meta",
            reason: format!("longer than {} bytes", limits::META_LEN_MAX),
        });
    }
    if meta.chars().any(char::is_control) {
        return Err(RingError::InvalidDeviceField {
            field: "meta",
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

fn validate_token(field: &'static str, value: &str, max_len: usize) -> Result<()> {
    let reason = if value.is_empty() {
        "is empty".to_string()
    } else if value.len() > max_len {
        format!("is longer than {max_len} bytes")
    } else if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        format!("contains {c:?}")
    } else {
        return Ok(());
    };
    Err(RingError::InvalidDeviceField {
        field,
        reason: format!("{value:?} {reason}"),
    })
}
