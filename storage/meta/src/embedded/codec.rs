//! On-disk encodings of the embedded store's records. Fixed-width little-endian headers: the
//! records are tiny and read on every operation, so they are not worth a serialization format.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::types::{LeaseId, Versioned};

const KV_HEADER_BYTES: usize = 32;
pub(super) const LEASE_RECORD_BYTES: usize = 16;

/// `create_revision | mod_revision | version | lease (0 = none) | value`.
pub(super) fn encode_kv(v: &Versioned) -> Vec<u8> {
    let mut out = Vec::with_capacity(KV_HEADER_BYTES + v.value.len());
    out.extend_from_slice(&v.create_revision.to_le_bytes());
    out.extend_from_slice(&v.mod_revision.to_le_bytes());
    out.extend_from_slice(&v.version.to_le_bytes());
    out.extend_from_slice(&v.lease.map_or(0, |l| l.0).to_le_bytes());
    out.extend_from_slice(&v.value);
    out
}

pub(super) fn decode_kv(raw: &[u8]) -> Result<Versioned> {
    if raw.len() < KV_HEADER_BYTES {
        return Err(Error::Corrupt(format!(
            "key-value record of {} bytes is shorter than its header",
            raw.len()
        )));
    }
    let lease = i64::from_le_bytes(word(raw, 3));
    Ok(Versioned {
        create_revision: u64::from_le_bytes(word(raw, 0)),
        mod_revision: u64::from_le_bytes(word(raw, 1)),
        version: u64::from_le_bytes(word(raw, 2)),
        lease: (lease != 0).then_some(LeaseId(lease)),
        value: Bytes::copy_from_slice(&raw[KV_HEADER_BYTES..]),
    })
}

/// A lease's persisted state: TTL and wall-clock deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeaseRecord {
    pub ttl_ms: u64,
    pub deadline_unix_ms: u64,
}

pub(super) fn encode_lease(l: LeaseRecord) -> [u8; LEASE_RECORD_BYTES] {
    let mut out = [0u8; LEASE_RECORD_BYTES];
    out[..8].copy_from_slice(&l.ttl_ms.to_le_bytes());
    out[8..].copy_from_slice(&l.deadline_unix_ms.to_le_bytes());
    out
}

pub(super) fn decode_lease(raw: &[u8]) -> Result<LeaseRecord> {
    if raw.len() != LEASE_RECORD_BYTES {
        return Err(Error::Corrupt(format!(
            "lease record of {} bytes",
            raw.len()
        )));
    }
    Ok(LeaseRecord {
        ttl_ms: u64::from_le_bytes(word(raw, 0)),
        deadline_unix_ms: u64::from_le_bytes(word(raw, 1)),
    })
}

fn word(raw: &[u8], i: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&raw[i * 8..i * 8 + 8]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_round_trips() {
        let v = Versioned {
            value: Bytes::from_static(b"hello"),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: Some(LeaseId(77)),
        };
        assert_eq!(decode_kv(&encode_kv(&v)).unwrap(), v);
        assert!(decode_kv(b"short").is_err());
        let l = LeaseRecord {
            ttl_ms: 2000,
            deadline_unix_ms: 123,
        };
        assert_eq!(decode_lease(&encode_lease(l)).unwrap(), l);
    }
}
