//! The bytes of a blob received and not yet written out, kept as the buffers they arrived in.
//!
//! Copying each arriving buffer into one contiguous `Vec` and then encoding that into what is
//! written copied every byte twice per replica (`memmove` was ~12% of a node's CPU under 64 MiB
//! PUTs, these copies among others). Encoding straight from the arrived buffers copies each
//! byte once.

use std::collections::VecDeque;

use bytes::Bytes;
use cairn_engine::chunk::{CRC_BYTES, Crc32cHasher};
use cairn_engine::limits::CHUNK_MAX_BYTES;

#[derive(Debug, Default)]
pub(crate) struct PendingBytes {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl PendingBytes {
    pub(crate) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.parts.push_back(data);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes the first `n` bytes (all of them if fewer) and hands them, encoded in chunks of
    /// [`CHUNK_MAX_BYTES`] each followed by its CRC32C (the layout of `cairn_engine::chunk`),
    /// to `out` as slices in order.
    pub(crate) fn encode_front(&mut self, n: usize, mut out: impl FnMut(&[u8])) {
        let mut left = n.min(self.len);
        while left > 0 {
            let chunk = left.min(CHUNK_MAX_BYTES);
            let mut crc = Crc32cHasher::new();
            self.take_front(chunk, |s| {
                crc.update(s);
                out(s);
            });
            out(&crc.finish().to_le_bytes()[..CRC_BYTES]);
            left -= chunk;
        }
    }

    /// Takes the first `n` bytes (`n ≤ len`) and hands them to `sink` as slices in order.
    fn take_front(&mut self, n: usize, mut sink: impl FnMut(&[u8])) {
        debug_assert!(n <= self.len);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            if front.len() <= left {
                sink(front);
                left -= front.len();
                self.len -= front.len();
                self.parts.pop_front();
            } else {
                sink(&front[..left]);
                *front = front.slice(left..);
                self.len -= left;
                left = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cairn_engine::chunk;

    use super::*;

    /// Encoding from the parts as they came gives the bytes `encode_body` gives for the same
    /// data in one piece, whatever the part boundaries and however much is taken at a time.
    #[test]
    fn encodes_as_one_contiguous_body_would() {
        let data: Vec<u8> = (0..(3 * CHUNK_MAX_BYTES + 1234))
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        for part_len in [
            1usize,
            7,
            4096,
            CHUNK_MAX_BYTES - 1,
            CHUNK_MAX_BYTES,
            100_000,
        ] {
            for take in [CHUNK_MAX_BYTES, 2 * CHUNK_MAX_BYTES, data.len()] {
                let mut pending = PendingBytes::default();
                for part in data.chunks(part_len) {
                    pending.push(Bytes::copy_from_slice(part));
                }
                assert_eq!(pending.len(), data.len());
                let mut encoded = Vec::new();
                while pending.len() > 0 {
                    pending.encode_front(take, |s| encoded.extend_from_slice(s));
                }
                assert_eq!(
                    encoded,
                    chunk::encode_body(&data),
                    "parts {part_len}, take {take}"
                );
            }
        }
    }
}
