//! The codec trait, its parameters and the registry of implementations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{EcError, Result};
use crate::{rs_erasure, rs_simd};

/// Most shards (k + m) in one stripe, whatever the codec: a fragment records its index in one
/// byte, so indexes run 0..=255.
pub const MAX_TOTAL_SHARDS: usize = 256;

/// Most shards for [`CodecId::RsErasureGf8`]: its Vandermonde-derived matrix lives in GF(2^8),
/// which has 256 elements, so it cannot tell more than 256 rows apart.
pub const RS_ERASURE_GF8_MAX_TOTAL_SHARDS: usize = 256;

/// Most shards for [`CodecId::RsSimd`]: the crate works in GF(2^16) and accepts up to 32,768
/// data or parity shards, far above [`MAX_TOTAL_SHARDS`], so the fragment format is the bound.
pub const RS_SIMD_MAX_TOTAL_SHARDS: usize = MAX_TOTAL_SHARDS;

/// Which Reed-Solomon implementation coded a stripe. The two produce different parity for the
/// same data, so every stored stripe records this, and a stripe must be decoded with the codec
/// that encoded it.
///
/// The serde and display names are stable (stored in policies and metadata), and so is each
/// variant's [`CodecId::wire_byte`] (stored in fragment headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CodecId {
    /// `reed-solomon-erasure` over GF(2^8) (Backblaze/klauspost-style systematic matrix),
    /// built with its `simd-accel` C kernels.
    #[serde(rename = "rs-erasure-gf8")]
    RsErasureGf8,
    /// `reed-solomon-simd`: FFT-based (Leopard-style) coding over GF(2^16).
    #[serde(rename = "rs-simd")]
    RsSimd,
}

impl CodecId {
    /// Every codec, in wire-byte order.
    pub const ALL: [CodecId; 2] = [CodecId::RsErasureGf8, CodecId::RsSimd];

    /// The stable name (same as serde's).
    pub fn name(self) -> &'static str {
        match self {
            CodecId::RsErasureGf8 => "rs-erasure-gf8",
            CodecId::RsSimd => "rs-simd",
        }
    }

    /// The byte that identifies the codec in a fragment header. Never reuse a value.
    pub fn wire_byte(self) -> u8 {
        match self {
            CodecId::RsErasureGf8 => 1,
            CodecId::RsSimd => 2,
        }
    }

    /// The inverse of [`CodecId::wire_byte`].
    pub fn from_wire_byte(byte: u8) -> Result<Self> {
        match byte {
            1 => Ok(CodecId::RsErasureGf8),
            2 => Ok(CodecId::RsSimd),
            other => Err(EcError::UnknownCodec(other)),
        }
    }

    /// Most shards (k + m) this codec takes in one stripe.
    pub fn max_total_shards(self) -> usize {
        match self {
            CodecId::RsErasureGf8 => RS_ERASURE_GF8_MAX_TOTAL_SHARDS,
            CodecId::RsSimd => RS_SIMD_MAX_TOTAL_SHARDS,
        }
    }

    /// Checks `params` against this codec's limits.
    pub fn validate(self, params: EcParams) -> Result<()> {
        let (k, m) = (params.k, params.m);
        let invalid = |reason| EcError::InvalidParams {
            codec: self,
            k,
            m,
            reason,
        };
        if k == 0 {
            return Err(invalid("k must be at least 1"));
        }
        if m == 0 {
            return Err(invalid("m must be at least 1"));
        }
        let total = k.checked_add(m).ok_or(invalid("k + m overflows"))?;
        if total > MAX_TOTAL_SHARDS {
            return Err(invalid("k + m above 256 (fragment indexes are one byte)"));
        }
        if total > self.max_total_shards() {
            return Err(invalid("k + m above the codec's limit"));
        }
        Ok(())
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CodecId {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        CodecId::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown erasure codec {s:?} (known: rs-erasure-gf8, rs-simd)"))
    }
}

/// k data shards plus m parity shards: any k of the k + m recover the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EcParams {
    /// Data shards.
    pub k: usize,
    /// Parity shards.
    pub m: usize,
}

impl EcParams {
    /// `k`+`m`, unchecked (see [`CodecId::validate`]).
    pub fn new(k: usize, m: usize) -> Self {
        EcParams { k, m }
    }

    /// k + m.
    pub fn total(self) -> usize {
        self.k + self.m
    }
}

impl fmt::Display for EcParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

/// One Reed-Solomon implementation with fixed parameters.
///
/// Shards are numbered `0..k` (data) then `k..k+m` (parity). All shards of one call have the
/// same non-empty length; [`CodecId::RsSimd`] also needs it even (the stripe layer pads every
/// shard to a multiple of [`crate::SHARD_ALIGN`], which suits both).
pub trait ErasureCodec: fmt::Debug {
    /// Which implementation this is.
    fn id(&self) -> CodecId;

    /// Its parameters.
    fn params(&self) -> EcParams;

    /// Computes the m parity shards of `data_shards` (exactly k of them).
    fn encode(&self, data_shards: &[&[u8]]) -> Result<Vec<Vec<u8>>>;

    /// Fills every `None` in `shards` (exactly k + m entries, data first) from any k present
    /// ones. Present shards are not checked against each other: corrupt input gives corrupt
    /// output, which is why fragments carry checksums.
    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()>;

    /// Like [`ErasureCodec::reconstruct`] but fills only the missing data shards (what a
    /// degraded read needs); missing parity shards may stay `None`.
    fn reconstruct_data(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        self.reconstruct(shards)
    }
}

/// Builds the codec `id` for `params`, after [`CodecId::validate`].
pub fn codec(id: CodecId, params: EcParams) -> Result<Box<dyn ErasureCodec + Send + Sync>> {
    id.validate(params)?;
    Ok(match id {
        CodecId::RsErasureGf8 => Box::new(rs_erasure::RsErasureGf8::new(params)?),
        CodecId::RsSimd => Box::new(rs_simd::RsSimd::new(params)),
    })
}

/// Shared argument checks: `data` holds exactly `k` shards of one valid length.
pub(crate) fn check_data_shards(codec: CodecId, params: EcParams, data: &[&[u8]]) -> Result<usize> {
    if data.len() != params.k {
        return Err(EcError::ShardCount {
            expected: params.k,
            got: data.len(),
        });
    }
    let len = data.first().map_or(0, |s| s.len());
    if data.iter().any(|s| s.len() != len) {
        return Err(EcError::ShardLen {
            len,
            reason: "data shards differ in length",
        });
    }
    check_shard_len(codec, len)?;
    Ok(len)
}

/// Shared argument checks for reconstruction: k + m entries, at least k present, one length.
/// Returns the shard length.
pub(crate) fn check_reconstruct(
    codec: CodecId,
    params: EcParams,
    shards: &[Option<Vec<u8>>],
) -> Result<usize> {
    if shards.len() != params.total() {
        return Err(EcError::ShardCount {
            expected: params.total(),
            got: shards.len(),
        });
    }
    let present: Vec<usize> = shards.iter().flatten().map(Vec::len).collect();
    if present.len() < params.k {
        return Err(EcError::TooFewShards {
            present: present.len(),
            needed: params.k,
        });
    }
    let len = present.first().copied().unwrap_or(0);
    if present.iter().any(|&l| l != len) {
        return Err(EcError::ShardLen {
            len,
            reason: "present shards differ in length",
        });
    }
    check_shard_len(codec, len)?;
    Ok(len)
}

fn check_shard_len(codec: CodecId, len: usize) -> Result<()> {
    if len == 0 {
        return Err(EcError::ShardLen {
            len,
            reason: "shards must not be empty",
        });
    }
    if codec == CodecId::RsSimd && !len.is_multiple_of(2) {
        return Err(EcError::ShardLen {
            len,
            reason: "rs-simd needs an even shard length",
        });
    }
    Ok(())
}
