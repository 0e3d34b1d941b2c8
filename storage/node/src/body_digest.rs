//! A body's digest, taken once where the bytes enter the cluster and carried to every replica.
//!
//! S3 and Swift name an object by the MD5 of its bytes (the ETag). Hashing MD5 costs ~1.5 ms of
//! CPU per MiB; the gateway hashes every body anyway (to answer with the ETag and check a
//! client's `Content-MD5`), so replicas need not hash it again. Instead the writer sends the MD5
//! together with a CRC32C of the same bytes in the `PutBlob` metadata trailer: each replica
//! computes the CRC32C of what it received (~50× cheaper than MD5) and refuses the write when it
//! differs, so a body mangled between the writer and the disk is never stored under the
//! writer's MD5.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use cairn_engine::chunk::Crc32cHasher;
use md5::{Digest, Md5};

/// Trailer key of the body's MD5 (32 lowercase hex digits).
pub const TRAILER_BODY_MD5: &str = "sys-body-md5";
/// Trailer key of the body's CRC32C (8 lowercase hex digits).
pub const TRAILER_BODY_CRC32C: &str = "sys-body-crc32c";

/// MD5 and CRC32C of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyDigest {
    pub md5: [u8; 16],
    pub crc32c: u32,
}

impl BodyDigest {
    /// The ETag form: lowercase hex MD5.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }

    /// Adds the digest to a `PutBlob` metadata trailer.
    pub fn insert_into(&self, trailer: &mut BTreeMap<String, String>) {
        trailer.insert(TRAILER_BODY_MD5.into(), self.md5_hex());
        trailer.insert(TRAILER_BODY_CRC32C.into(), format!("{:08x}", self.crc32c));
    }

    /// Removes the digest from a received trailer; `Err` names what is missing or malformed.
    pub fn take_from(trailer: &mut BTreeMap<String, String>) -> Result<BodyDigest, String> {
        let md5 = trailer
            .remove(TRAILER_BODY_MD5)
            .ok_or_else(|| format!("the metadata trailer has no {TRAILER_BODY_MD5}"))?;
        let crc = trailer
            .remove(TRAILER_BODY_CRC32C)
            .ok_or_else(|| format!("the metadata trailer has no {TRAILER_BODY_CRC32C}"))?;
        let md5: [u8; 16] = hex::decode(&md5)
            .ok()
            .and_then(|b| b.try_into().ok())
            .filter(|_| md5.bytes().all(|c| !c.is_ascii_uppercase()))
            .ok_or_else(|| format!("{TRAILER_BODY_MD5} {md5:?} is not 32 lowercase hex digits"))?;
        let crc32c = (crc.len() == 8 && crc.bytes().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(&crc, 16).ok())
            .flatten()
            .ok_or_else(|| format!("{TRAILER_BODY_CRC32C} {crc:?} is not 8 hex digits"))?;
        Ok(BodyDigest { md5, crc32c })
    }
}

/// Computes a [`BodyDigest`] over a body fed in pieces.
#[derive(Clone, Debug, Default)]
pub struct BodyDigester {
    md5: Md5,
    crc32c: Crc32cHasher,
}

impl BodyDigester {
    pub fn new() -> BodyDigester {
        BodyDigester::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.crc32c.update(data);
    }

    pub fn finish(self) -> BodyDigest {
        BodyDigest {
            md5: self.md5.finalize().into(),
            crc32c: self.crc32c.finish(),
        }
    }
}

/// Where the producer of a streamed body leaves its digest for the cluster client: set before
/// the stream is finished, read once the stream has ended (the body channel orders the two).
/// Metadata learned only from the body's end (an S3 checksum sent as a trailer) travels with
/// the digest, in the same `PutBlob` trailer, so it is stored with the object.
#[derive(Clone, Debug, Default)]
pub struct BodyDigestCell(Arc<OnceLock<(BodyDigest, BTreeMap<String, String>)>>);

impl BodyDigestCell {
    pub fn new() -> BodyDigestCell {
        BodyDigestCell::default()
    }

    /// Records the digest; a second call is ignored (the first one described the bytes).
    pub fn set(&self, digest: BodyDigest) {
        self.set_with_meta(digest, BTreeMap::new());
    }

    /// Records the digest and metadata to store with the object (keys must not be the
    /// digest's own trailer keys, which are refused).
    pub fn set_with_meta(&self, digest: BodyDigest, meta: BTreeMap<String, String>) {
        let meta = meta
            .into_iter()
            .filter(|(k, _)| k != TRAILER_BODY_MD5 && k != TRAILER_BODY_CRC32C)
            .collect();
        let _ = self.0.set((digest, meta));
    }

    pub fn get(&self) -> Option<BodyDigest> {
        self.0.get().map(|(d, _)| *d)
    }

    /// The metadata recorded with the digest (empty before it is set).
    pub fn meta(&self) -> BTreeMap<String, String> {
        self.0.get().map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_survives_the_trailer() {
        let mut d = BodyDigester::new();
        d.update(b"hel");
        d.update(b"lo");
        let digest = d.finish();
        assert_eq!(digest.md5_hex(), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(digest.crc32c, cairn_engine::chunk::crc32c(b"hello"));
        let mut trailer = BTreeMap::from([("other".to_string(), "x".to_string())]);
        digest.insert_into(&mut trailer);
        assert_eq!(BodyDigest::take_from(&mut trailer), Ok(digest));
        assert_eq!(trailer.len(), 1, "only the digest's keys are taken");
    }

    #[test]
    fn the_cell_carries_metadata_but_not_digest_keys() {
        let cell = BodyDigestCell::new();
        assert!(cell.get().is_none() && cell.meta().is_empty());
        let digest = BodyDigest {
            md5: [1; 16],
            crc32c: 7,
        };
        cell.set_with_meta(
            digest,
            BTreeMap::from([
                ("sys-checksum-crc32".to_string(), "AAAAAA==".to_string()),
                (TRAILER_BODY_MD5.to_string(), "forged".to_string()),
            ]),
        );
        cell.set(BodyDigest {
            md5: [2; 16],
            crc32c: 8,
        });
        assert_eq!(cell.get(), Some(digest), "the first digest stays");
        assert_eq!(
            cell.meta(),
            BTreeMap::from([("sys-checksum-crc32".to_string(), "AAAAAA==".to_string())])
        );
    }

    #[test]
    fn a_missing_or_malformed_digest_is_refused() {
        let good = BodyDigest {
            md5: [0xab; 16],
            crc32c: 0x0102_0304,
        };
        let mut t = BTreeMap::new();
        assert!(
            BodyDigest::take_from(&mut t)
                .unwrap_err()
                .contains("no sys-body-md5")
        );
        for (key, value) in [
            (TRAILER_BODY_MD5, "abab"),
            (TRAILER_BODY_MD5, "ABABABABABABABABABABABABABABABAB"),
            (TRAILER_BODY_MD5, "zbababababababababababababababab"),
            (TRAILER_BODY_CRC32C, "1020304"),
            (TRAILER_BODY_CRC32C, "0102030g"),
            (TRAILER_BODY_CRC32C, "+1020304"),
        ] {
            let mut t = BTreeMap::new();
            good.insert_into(&mut t);
            t.insert(key.to_string(), value.to_string());
            assert!(BodyDigest::take_from(&mut t).is_err(), "{key}={value}");
        }
    }
}
