//! An image's header: what the control plane stores about it (pure types and rules).

use cairn_engine::WriteTag;
use serde::{Deserialize, Serialize};

use crate::error::{BlockError, Result};
use crate::limits::{IMAGE_SIZE_MAX_BYTES, NAME_MAX_BYTES, ORDER_MAX, ORDER_MIN};

/// An image: its data lives in extent objects named by `id` (so the name can change) and
/// object number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHeader {
    pub name: String,
    pub id: String,
    pub size_bytes: u64,
    /// Objects are 2^order bytes.
    pub order: u8,
    pub features: Vec<String>,
    pub created_unix_ms: u64,
    pub snapshots: Vec<Snapshot>,
    /// Set for a clone until it is flattened.
    pub parent: Option<ParentRef>,
}

/// A point-in-time view: every piece tagged at or below `tag` (see DESIGN §3: extents resolve
/// by (epoch, seq), so a snapshot is a tag, and writes keep what snapshots still see).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub tag: WriteTag,
    pub size_bytes: u64,
    pub protected: bool,
    pub created_unix_ms: u64,
}

/// Where a clone's unwritten bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub image: String,
    pub image_id: String,
    pub snapshot: String,
    pub tag: WriteTag,
    /// Bytes of the parent visible through the clone (shrinking the clone lowers it).
    pub overlap_bytes: u64,
}

impl ImageHeader {
    pub fn object_size(&self) -> u64 {
        1 << self.order
    }

    pub fn snapshot(&self, name: &str) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.name == name)
    }

    /// The tags writes must keep pieces for.
    pub fn keep_tags(&self) -> Vec<WriteTag> {
        self.snapshots.iter().map(|s| s.tag).collect()
    }
}

/// Image and snapshot names: printable, no '/', '@' or whitespace (NBD export names are
/// `image` and `image@snapshot`).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES {
        return Err(BlockError::Invalid(format!(
            "{what} name must be 1..={NAME_MAX_BYTES} bytes"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '\\'))
    {
        return Err(BlockError::Invalid(format!(
            "{what} name {name:?} contains {c:?}; names may not contain whitespace, '/', '@' or '\\'"
        )));
    }
    Ok(())
}

pub fn check_size(size_bytes: u64) -> Result<()> {
    if size_bytes == 0 || size_bytes > IMAGE_SIZE_MAX_BYTES {
        return Err(BlockError::Invalid(format!(
            "image size must be 1..={IMAGE_SIZE_MAX_BYTES} bytes, got {size_bytes}"
        )));
    }
    if !size_bytes.is_multiple_of(512) {
        return Err(BlockError::Invalid(format!(
            "image size must be a multiple of 512 bytes, got {size_bytes}"
        )));
    }
    Ok(())
}

pub fn check_order(order: u8) -> Result<()> {
    if !(ORDER_MIN..=ORDER_MAX).contains(&order) {
        return Err(BlockError::Invalid(format!(
            "object order must be {ORDER_MIN}..={ORDER_MAX} (4 KiB..32 MiB objects), got {order}"
        )));
    }
    Ok(())
}

/// Parses sizes as `10G`, `512M`, `4096`, `1.5T` (binary units, as qemu-img and rbd do).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => {
                    return Err(BlockError::Invalid(format!(
                        "unknown size unit in {text:?}"
                    )));
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| BlockError::Invalid(format!("not a size: {text:?}")))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(BlockError::Invalid(format!("not a size: {text:?}")));
    }
    let bytes = value * mult as f64;
    if bytes > IMAGE_SIZE_MAX_BYTES as f64 {
        return Err(BlockError::Invalid(format!("size {text:?} is too large")));
    }
    // In range (checked above) and non-negative: the conversion only drops the fraction.
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(check_name("image", "vm-1.disk").is_ok());
        assert!(check_name("image", "a@b").is_err());
        assert!(check_name("image", "").is_err());
        assert!(check_size(1000).is_err());
        assert!(check_order(11).is_err() && check_order(22).is_ok());
    }
}
