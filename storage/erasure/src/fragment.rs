//! Fragments: one shard of one segment's stripe, with a self-describing, checksummed header.
//!
//! Encoded form (all integers little-endian), [`HEADER_LEN`] bytes of header then the shard:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CEFR` |
//! | 4 | 1 | format version ([`FORMAT_VERSION`]) |
//! | 5 | 1 | codec ([`CodecId::wire_byte`]) |
//! | 6 | 1 | k |
//! | 7 | 1 | m |
//! | 8 | 1 | fragment index (0..k data, k..k+m parity) |
//! | 9 | 3 | reserved, zero |
//! | 12 | 8 | segment length (real bytes, before padding) |
//! | 20 | 4 | CRC32C of the whole segment (real bytes) |
//! | 24 | 4 | shard length |
//! | 28 | 4 | CRC32C of bytes 0..28 and of the shard |
//!
//! The decoder checks everything it can before trusting a length: magic, version, codec,
//! reserved bytes, parameters, index, that the shard length follows from the segment length
//! and k ([`crate::shard_len`]), the exact total length, then the checksum.

use bytes::Bytes;

use crate::codec::{CodecId, EcParams};
use crate::error::{EcError, Result};
use crate::stripe::{MAX_SEGMENT_BYTES, shard_len};

/// First four bytes of every fragment.
pub const MAGIC: [u8; 4] = *b"CEFR";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of header before the shard.
pub const HEADER_LEN: usize = 32;
/// Header bytes the fragment checksum covers (everything before the checksum itself).
const CHECKED_HEADER_LEN: usize = 28;

/// CRC32C (Castagnoli), the checksum every stored chunk in Cairn uses.
pub fn crc32c(data: &[u8]) -> u32 {
    low32(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data))
}

/// Crc32Iscsi is a 32-bit algorithm: the u64 result always fits.
fn low32(v: u64) -> u32 {
    (v & 0xffff_ffff) as u32
}

/// One shard of a stripe plus what is needed to decode it with its siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Position in the stripe: `0..k` data, `k..k+m` parity.
    pub index: u8,
    /// The codec that computed the parity.
    pub codec: CodecId,
    /// The stripe's k and m.
    pub params: EcParams,
    /// Real bytes in the segment (the data shards hold them, zero-padded).
    pub segment_len: u64,
    /// CRC32C of the segment's real bytes: checked after decoding, so fragments decoded with
    /// the wrong codec or parameters are caught.
    pub segment_crc32c: u32,
    /// The shard.
    pub shard: Bytes,
    /// CRC32C over the header (without this field) and the shard.
    pub crc32c: u32,
}

impl Fragment {
    /// A fragment for `shard`, with its checksum computed.
    pub fn new(
        index: u8,
        codec: CodecId,
        params: EcParams,
        segment_len: u64,
        segment_crc32c: u32,
        shard: Bytes,
    ) -> Fragment {
        let mut f = Fragment {
            index,
            codec,
            params,
            segment_len,
            segment_crc32c,
            shard,
            crc32c: 0,
        };
        f.crc32c = f.compute_crc32c();
        f
    }

    /// Whether this is a data shard (index below k).
    pub fn is_data(&self) -> bool {
        usize::from(self.index) < self.params.k
    }

    /// The checksum the fields and shard call for now.
    pub fn compute_crc32c(&self) -> u32 {
        let header = self.header();
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        digest.update(&header[..CHECKED_HEADER_LEN]);
        digest.update(&self.shard);
        low32(digest.finalize())
    }

    /// Checks the fields against each other (parameters, index, layout) and the checksum.
    pub fn verify(&self) -> Result<()> {
        self.check_fields()?;
        let computed = self.compute_crc32c();
        if computed != self.crc32c {
            return Err(EcError::ChecksumMismatch {
                index: self.index,
                stored: self.crc32c,
                computed,
            });
        }
        Ok(())
    }

    fn check_fields(&self) -> Result<()> {
        self.codec.validate(self.params)?;
        if usize::from(self.index) >= self.params.total() {
            return Err(EcError::IndexOutOfRange {
                index: self.index,
                total: self.params.total(),
            });
        }
        if self.segment_len > MAX_SEGMENT_BYTES {
            return Err(EcError::SegmentTooLarge {
                len: self.segment_len,
                max: MAX_SEGMENT_BYTES,
            });
        }
        let expected = shard_len(self.segment_len, self.params.k) as u64;
        if self.shard.len() as u64 != expected {
            return Err(EcError::LayoutMismatch {
                expected,
                got: self.shard.len() as u64,
            });
        }
        Ok(())
    }

    /// The encoded header. Fields are written as they are; [`Fragment::verify`] first if they
    /// may be inconsistent. k and m above 255 cannot be valid and are written as 0.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = FORMAT_VERSION;
        h[5] = self.codec.wire_byte();
        h[6] = u8::try_from(self.params.k).unwrap_or(0);
        h[7] = u8::try_from(self.params.m).unwrap_or(0);
        h[8] = self.index;
        h[12..20].copy_from_slice(&self.segment_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.segment_crc32c.to_le_bytes());
        let shard_len = u32::try_from(self.shard.len()).unwrap_or(u32::MAX);
        h[24..28].copy_from_slice(&shard_len.to_le_bytes());
        h[28..32].copy_from_slice(&self.crc32c.to_le_bytes());
        h
    }

    /// Length of [`Fragment::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.shard.len()
    }

    /// Header followed by the shard.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.shard);
        out
    }

    /// Parses and verifies an encoded fragment; the shard shares `buf`'s memory.
    pub fn from_bytes(buf: Bytes) -> Result<Fragment> {
        let mut f = parse_header(&buf)?;
        f.shard = buf.slice(HEADER_LEN..);
        f.verify()?;
        Ok(f)
    }

    /// Parses and verifies an encoded fragment, copying the shard.
    pub fn from_slice(buf: &[u8]) -> Result<Fragment> {
        let mut f = parse_header(buf)?;
        f.shard = Bytes::copy_from_slice(&buf[HEADER_LEN..]);
        f.verify()?;
        Ok(f)
    }
}

/// Checks everything but the checksum and returns the fields with an empty shard; `buf` is
/// known to be exactly `HEADER_LEN + shard length` bytes on success.
fn parse_header(buf: &[u8]) -> Result<Fragment> {
    let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
        return Err(EcError::Truncated {
            needed: HEADER_LEN,
            got: buf.len(),
        });
    };
    let field4 = |at: usize| [h[at], h[at + 1], h[at + 2], h[at + 3]];
    let magic = field4(0);
    if magic != MAGIC {
        return Err(EcError::BadMagic { found: magic });
    }
    if h[4] != FORMAT_VERSION {
        return Err(EcError::UnsupportedVersion(h[4]));
    }
    let codec = CodecId::from_wire_byte(h[5])?;
    let params = EcParams::new(usize::from(h[6]), usize::from(h[7]));
    codec.validate(params)?;
    let index = h[8];
    if h[9..12] != [0, 0, 0] {
        return Err(EcError::ReservedNotZero);
    }
    if usize::from(index) >= params.total() {
        return Err(EcError::IndexOutOfRange {
            index,
            total: params.total(),
        });
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&h[12..20]);
    let segment_len = u64::from_le_bytes(len8);
    if segment_len > MAX_SEGMENT_BYTES {
        return Err(EcError::SegmentTooLarge {
            len: segment_len,
            max: MAX_SEGMENT_BYTES,
        });
    }
    let segment_crc32c = u32::from_le_bytes(field4(20));
    let stored_shard_len = u32::from_le_bytes(field4(24));
    let expected = shard_len(segment_len, params.k);
    if u64::from(stored_shard_len) != expected as u64 {
        return Err(EcError::LayoutMismatch {
            expected: expected as u64,
            got: u64::from(stored_shard_len),
        });
    }
    let total = HEADER_LEN + expected;
    if buf.len() < total {
        return Err(EcError::Truncated {
            needed: total,
            got: buf.len(),
        });
    }
    if buf.len() > total {
        return Err(EcError::TrailingBytes {
            extra: buf.len() - total,
        });
    }
    Ok(Fragment {
        index,
        codec,
        params,
        segment_len,
        segment_crc32c,
        shard: Bytes::new(),
        crc32c: u32::from_le_bytes(field4(28)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fragment {
        let params = EcParams::new(4, 2);
        let len = shard_len(1000, 4);
        Fragment::new(
            5,
            CodecId::RsSimd,
            params,
            1000,
            0xdead_beef,
            Bytes::from(vec![7u8; len]),
        )
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn round_trip() {
        let f = sample();
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), f.encoded_len());
        assert_eq!(Fragment::from_slice(&bytes).unwrap(), f);
        assert_eq!(Fragment::from_bytes(Bytes::from(bytes)).unwrap(), f);
    }

    #[test]
    fn precise_errors() {
        let good = sample().to_bytes();
        let at = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            Fragment::from_slice(&b).unwrap_err()
        };
        assert!(matches!(at(0, b'X'), EcError::BadMagic { .. }));
        assert_eq!(at(4, 9), EcError::UnsupportedVersion(9));
        assert_eq!(at(5, 77), EcError::UnknownCodec(77));
        assert!(matches!(at(6, 0), EcError::InvalidParams { .. }));
        assert!(matches!(at(7, 0), EcError::InvalidParams { .. }));
        assert!(matches!(
            at(8, 6),
            EcError::IndexOutOfRange { index: 6, .. }
        ));
        assert_eq!(at(10, 1), EcError::ReservedNotZero);
        assert!(matches!(at(12, 0), EcError::LayoutMismatch { .. }));
        assert!(matches!(at(25, 0), EcError::LayoutMismatch { .. }));
        assert!(matches!(at(21, 0), EcError::ChecksumMismatch { .. }));
        assert!(matches!(
            at(40, 8),
            EcError::ChecksumMismatch { index: 5, .. }
        ));
        assert!(matches!(at(30, 0), EcError::ChecksumMismatch { .. }));
        assert!(matches!(
            Fragment::from_slice(&good[..10]).unwrap_err(),
            EcError::Truncated {
                needed: HEADER_LEN,
                got: 10
            }
        ));
        assert!(matches!(
            Fragment::from_slice(&good[..good.len() - 1]).unwrap_err(),
            EcError::Truncated { .. }
        ));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            Fragment::from_slice(&long).unwrap_err(),
            EcError::TrailingBytes { extra: 1 }
        );
    }
}
