//! CRC32C per chunk: the on-disk unit of integrity shared by every implementation.
//!
//! A checksummed body is a sequence of chunks, each `CHUNK_MAX_BYTES` of data (the last may be
//! shorter) followed by the CRC32C of that data, little-endian. Fixed chunk sizes make a byte
//! range map to chunk numbers without an index.

use crate::limits::CHUNK_MAX_BYTES;

/// Bytes of checksum stored after each chunk.
pub const CRC_BYTES: usize = 4;

/// CRC32C (Castagnoli), as iSCSI and ext4 use.
pub fn crc32c(data: &[u8]) -> u32 {
    // Crc32Iscsi is a 32-bit algorithm: the u64 result always fits.
    (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) & 0xffff_ffff) as u32
}

/// CRC32C of data fed in pieces: the same value [`crc32c`] gives for their concatenation.
#[derive(Clone)]
pub struct Crc32cHasher(crc_fast::Digest);

impl Crc32cHasher {
    pub fn new() -> Crc32cHasher {
        Crc32cHasher(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(&self) -> u32 {
        (self.0.finalize() & 0xffff_ffff) as u32
    }
}

impl Default for Crc32cHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc32cHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc32cHasher({:08x})", self.finish())
    }
}

/// Encoded size of a body of `len_bytes` data bytes.
pub fn encoded_len_bytes(len_bytes: u64) -> u64 {
    let chunks = len_bytes.div_ceil(CHUNK_MAX_BYTES as u64);
    len_bytes + chunks * CRC_BYTES as u64
}

/// Appends `data` (at most one chunk) and its CRC to `out`.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(data.len() <= CHUNK_MAX_BYTES);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32c(data).to_le_bytes());
}

/// Encodes a whole body.
pub fn encode_body(data: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(usize::try_from(encoded_len_bytes(data.len() as u64)).unwrap_or(0));
    for chunk in data.chunks(CHUNK_MAX_BYTES) {
        encode_chunk(chunk, &mut out);
    }
    out
}

/// Where chunk `index` of a body starts, relative to the body's start.
pub fn chunk_offset_bytes(index: u64) -> u64 {
    index * (CHUNK_MAX_BYTES + CRC_BYTES) as u64
}

/// Data bytes in chunk `index` of a body of `len_bytes`.
pub fn chunk_data_len_bytes(index: u64, len_bytes: u64) -> usize {
    let start = index * CHUNK_MAX_BYTES as u64;
    let remaining = len_bytes.saturating_sub(start);
    // Bounded by CHUNK_MAX_BYTES, so it fits.
    usize::try_from(remaining.min(CHUNK_MAX_BYTES as u64)).unwrap_or(CHUNK_MAX_BYTES)
}

/// Checks one encoded chunk (data followed by CRC) and returns its data.
pub fn verify_chunk(encoded: &[u8]) -> Result<&[u8], String> {
    if encoded.len() < CRC_BYTES {
        return Err(format!(
            "chunk of {} bytes is shorter than its checksum",
            encoded.len()
        ));
    }
    let (data, crc) = encoded.split_at(encoded.len() - CRC_BYTES);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32c(data);
    if stored != actual {
        return Err(format!(
            "crc32c mismatch: stored {stored:08x}, computed {actual:08x}"
        ));
    }
    Ok(data)
}

/// Decodes and verifies a whole body of `len_bytes` data bytes.
pub fn decode_body(encoded: &[u8], len_bytes: u64) -> Result<Vec<u8>, String> {
    if encoded.len() as u64 != encoded_len_bytes(len_bytes) {
        return Err(format!(
            "body is {} bytes, expected {}",
            encoded.len(),
            encoded_len_bytes(len_bytes)
        ));
    }
    let mut out = Vec::with_capacity(encoded.len());
    for piece in encoded.chunks(CHUNK_MAX_BYTES + CRC_BYTES) {
        out.extend_from_slice(verify_chunk(piece)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_flip() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = encode_body(&data);
        assert_eq!(enc.len() as u64, encoded_len_bytes(data.len() as u64));
        assert_eq!(decode_body(&enc, data.len() as u64).unwrap(), data);
        enc[70_000] ^= 1;
        assert!(decode_body(&enc, data.len() as u64).is_err());
        // Known CRC32C test vector.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut h = Crc32cHasher::new();
        for piece in [&b"1234"[..], b"", b"56789"] {
            h.update(piece);
        }
        assert_eq!(h.finish(), 0xe306_9283);
    }
}
