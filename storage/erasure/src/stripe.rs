//! Stripes: one segment split into k zero-padded data shards plus m parity shards, and back.

use bytes::Bytes;

use crate::codec::{CodecId, EcParams, ErasureCodec, codec};
use crate::error::{EcError, Result};
use crate::fragment::{Fragment, crc32c};

/// Segment size when a policy does not say: 1 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;
/// Largest segment: 256 MiB. Keeps one decode's memory bounded and every shard length well
/// inside the header's `u32`.
pub const MAX_SEGMENT_BYTES: u64 = 256 << 20;
/// Every shard length is a multiple of this: even (rs-simd needs it) and a whole number of
/// 64-byte SIMD blocks, so neither codec runs a scalar tail.
pub const SHARD_ALIGN: usize = 64;

/// Shard length of a segment of `segment_len` bytes cut into `k` data shards: the bytes per
/// shard rounded up to [`SHARD_ALIGN`], and at least one block (codecs refuse empty shards).
/// `k` must be at least 1 and `segment_len` at most [`MAX_SEGMENT_BYTES`].
pub fn shard_len(segment_len: u64, k: usize) -> usize {
    let k = k.max(1) as u64;
    let per_shard = segment_len.min(MAX_SEGMENT_BYTES).div_ceil(k);
    let aligned = per_shard.div_ceil(SHARD_ALIGN as u64) * SHARD_ALIGN as u64;
    // At most MAX_SEGMENT_BYTES + SHARD_ALIGN: fits usize on every supported target.
    usize::try_from(aligned.max(SHARD_ALIGN as u64)).unwrap_or(usize::MAX)
}

/// Encodes segments into fragments and decodes them back, for one codec and k+m.
#[derive(Debug)]
pub struct Striper {
    codec: Box<dyn ErasureCodec + Send + Sync>,
    segment_size: u64,
}

impl Striper {
    /// A striper for segments of at most `segment_size` bytes (1..=[`MAX_SEGMENT_BYTES`]).
    pub fn new(id: CodecId, params: EcParams, segment_size: u64) -> Result<Self> {
        if segment_size == 0 || segment_size > MAX_SEGMENT_BYTES {
            return Err(EcError::InvalidSegmentSize {
                size: segment_size,
                max: MAX_SEGMENT_BYTES,
            });
        }
        Ok(Striper {
            codec: codec(id, params)?,
            segment_size,
        })
    }

    /// The codec's id.
    pub fn codec_id(&self) -> CodecId {
        self.codec.id()
    }

    /// k and m.
    pub fn params(&self) -> EcParams {
        self.codec.params()
    }

    /// Largest segment accepted.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The codec itself.
    pub fn codec(&self) -> &(dyn ErasureCodec + Send + Sync) {
        self.codec.as_ref()
    }

    /// The k + m fragments of `segment`, in index order.
    pub fn encode_segment(&self, segment: &[u8]) -> Result<Vec<Fragment>> {
        let segment_len = segment.len() as u64;
        if segment_len > self.segment_size {
            return Err(EcError::SegmentTooLarge {
                len: segment_len,
                max: self.segment_size,
            });
        }
        let params = self.params();
        let len = shard_len(segment_len, params.k);
        let segment_crc = crc32c(segment);
        let mut data: Vec<Vec<u8>> = (0..params.k)
            .map(|i| {
                let start = (i * len).min(segment.len());
                let end = ((i + 1) * len).min(segment.len());
                let mut shard = Vec::with_capacity(len);
                shard.extend_from_slice(&segment[start..end]);
                shard.resize(len, 0);
                shard
            })
            .collect();
        let parity = {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            self.codec.encode(&refs)?
        };
        data.extend(parity);
        data.into_iter()
            .enumerate()
            .map(|(i, shard)| {
                let index = u8::try_from(i).map_err(|_| EcError::IndexOutOfRange {
                    index: u8::MAX,
                    total: params.total(),
                })?;
                Ok(Fragment::new(
                    index,
                    self.codec_id(),
                    params,
                    segment_len,
                    segment_crc,
                    Bytes::from(shard),
                ))
            })
            .collect()
    }

    /// [`decode_segment`], reusing this striper's codec when the fragments were made with it.
    pub fn decode_segment(&self, fragments: &[Fragment]) -> Result<Vec<u8>> {
        let sel = select(fragments)?;
        with_codec(self, &sel, |c| decode_selected(c, &sel))
    }

    /// [`rebuild_fragments`], reusing this striper's codec when the fragments were made with it.
    pub fn rebuild_fragments(
        &self,
        fragments: &[Fragment],
        indexes: &[u8],
    ) -> Result<Vec<Fragment>> {
        let sel = select(fragments)?;
        with_codec(self, &sel, |c| rebuild_selected(c, &sel, indexes))
    }
}

/// Decodes one segment from its fragments (any order, duplicates and strangers to the stripe
/// tolerated as described below), using the codec the fragments name.
///
/// - Fragments that fail [`Fragment::verify`] are treated as missing.
/// - Of fragments repeating an index, the first good one counts.
/// - Good fragments that disagree on codec, k, m or segment are an error
///   ([`EcError::Inconsistent`]): they come from different stripes.
/// - With all k data fragments good, the segment is their concatenation (no decoding);
///   otherwise any k good fragments are decoded.
/// - The result is checked against the segment CRC32C the fragments carry.
pub fn decode_segment(fragments: &[Fragment]) -> Result<Vec<u8>> {
    let sel = select(fragments)?;
    let c = codec(sel.codec, sel.params)?;
    decode_selected(c.as_ref(), &sel)
}

/// Recomputes the fragments at `indexes` (data or parity) from the good ones in `fragments`,
/// as a reconstructor does for fragments lost with a disk. The segment is decoded and checked
/// against its CRC32C first, so a rebuilt fragment is never made from bad data.
pub fn rebuild_fragments(fragments: &[Fragment], indexes: &[u8]) -> Result<Vec<Fragment>> {
    let sel = select(fragments)?;
    let c = codec(sel.codec, sel.params)?;
    rebuild_selected(c.as_ref(), &sel, indexes)
}

/// The good fragments of one stripe, by index.
struct Selection<'a> {
    codec: CodecId,
    params: EcParams,
    segment_len: u64,
    segment_crc32c: u32,
    slots: Vec<Option<&'a Fragment>>,
}

fn select(fragments: &[Fragment]) -> Result<Selection<'_>> {
    if fragments.is_empty() {
        return Err(EcError::NoFragments);
    }
    let mut sel: Option<Selection<'_>> = None;
    let (mut corrupt, mut duplicate) = (0, 0);
    for f in fragments {
        if f.verify().is_err() {
            corrupt += 1;
            continue;
        }
        let s = sel.get_or_insert_with(|| Selection {
            codec: f.codec,
            params: f.params,
            segment_len: f.segment_len,
            segment_crc32c: f.segment_crc32c,
            slots: vec![None; f.params.total()],
        });
        let what = if f.codec != s.codec {
            Some("codec")
        } else if f.params != s.params {
            Some("k and m")
        } else if f.segment_len != s.segment_len {
            Some("segment length")
        } else if f.segment_crc32c != s.segment_crc32c {
            Some("segment checksum")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(EcError::Inconsistent { what });
        }
        // verify() checked index < k + m.
        match s.slots.get_mut(usize::from(f.index)) {
            Some(slot @ None) => *slot = Some(f),
            _ => duplicate += 1,
        }
    }
    let good = sel.as_ref().map_or(0, |s| s.slots.iter().flatten().count());
    match sel {
        Some(s) if good >= s.params.k => Ok(s),
        _ => Err(EcError::NotEnoughFragments {
            good,
            corrupt,
            duplicate,
            // With no good fragment, k is what the (corrupt) first one claims: a hint only.
            needed: sel.map_or(fragments[0].params.k, |s| s.params.k),
        }),
    }
}

fn with_codec<T>(
    striper: &Striper,
    sel: &Selection<'_>,
    f: impl FnOnce(&dyn ErasureCodec) -> Result<T>,
) -> Result<T> {
    if striper.codec_id() == sel.codec && striper.params() == sel.params {
        f(striper.codec())
    } else {
        let c = codec(sel.codec, sel.params)?;
        f(c.as_ref())
    }
}

/// Concatenates the data shards' real bytes and checks the segment checksum.
fn assemble<'s>(sel: &Selection<'_>, data: impl Iterator<Item = &'s [u8]>) -> Result<Vec<u8>> {
    let want = usize::try_from(sel.segment_len).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(want);
    for shard in data {
        let take = (want - out.len()).min(shard.len());
        out.extend_from_slice(&shard[..take]);
    }
    let computed = crc32c(&out);
    if out.len() != want || computed != sel.segment_crc32c {
        return Err(EcError::SegmentChecksum {
            stored: sel.segment_crc32c,
            computed,
        });
    }
    Ok(out)
}

/// Copies exactly k good shards (data first) into a reconstruction buffer.
fn shards_for_decode(sel: &Selection<'_>) -> Vec<Option<Vec<u8>>> {
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; sel.params.total()];
    let mut given = 0;
    for (slot, f) in shards.iter_mut().zip(&sel.slots) {
        if given == sel.params.k {
            break;
        }
        if let Some(f) = f {
            *slot = Some(f.shard.to_vec());
            given += 1;
        }
    }
    shards
}

fn decode_selected(c: &dyn ErasureCodec, sel: &Selection<'_>) -> Result<Vec<u8>> {
    let k = sel.params.k;
    if sel.slots[..k].iter().all(Option::is_some) {
        return assemble(sel, sel.slots[..k].iter().flatten().map(|f| &f.shard[..]));
    }
    let mut shards = shards_for_decode(sel);
    c.reconstruct_data(&mut shards)?;
    assemble(sel, shards[..k].iter().flatten().map(Vec::as_slice))
}

fn rebuild_selected(
    c: &dyn ErasureCodec,
    sel: &Selection<'_>,
    indexes: &[u8],
) -> Result<Vec<Fragment>> {
    let total = sel.params.total();
    if let Some(&index) = indexes.iter().find(|&&i| usize::from(i) >= total) {
        return Err(EcError::IndexOutOfRange { index, total });
    }
    let mut shards = shards_for_decode(sel);
    c.reconstruct(&mut shards)?;
    assemble(
        sel,
        shards[..sel.params.k].iter().flatten().map(Vec::as_slice),
    )?;
    indexes
        .iter()
        .map(|&index| {
            let shard = shards[usize::from(index)]
                .clone()
                .ok_or(EcError::TooFewShards {
                    present: 0,
                    needed: sel.params.k,
                })?;
            Ok(Fragment::new(
                index,
                sel.codec,
                sel.params,
                sel.segment_len,
                sel.segment_crc32c,
                Bytes::from(shard),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_len_layout() {
        assert_eq!(shard_len(0, 4), SHARD_ALIGN);
        assert_eq!(shard_len(1, 4), SHARD_ALIGN);
        assert_eq!(shard_len(1 << 20, 4), 256 << 10);
        assert_eq!(shard_len(1 << 20, 8), 128 << 10);
        assert_eq!(shard_len((1 << 20) + 1, 8), (128 << 10) + SHARD_ALIGN);
        assert_eq!(shard_len(1000, 3), 384);
    }

    #[test]
    fn striper_rejects_bad_config() {
        let p = EcParams::new(4, 2);
        assert!(Striper::new(CodecId::RsSimd, p, 0).is_err());
        assert!(Striper::new(CodecId::RsSimd, p, MAX_SEGMENT_BYTES + 1).is_err());
        let s = Striper::new(CodecId::RsSimd, p, 100).unwrap();
        assert_eq!(
            s.encode_segment(&[0u8; 101]).unwrap_err(),
            EcError::SegmentTooLarge { len: 101, max: 100 }
        );
    }
}
