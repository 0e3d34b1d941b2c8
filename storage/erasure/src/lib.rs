//! Erasure coding for Cairn's erasure-coded storage policy (DESIGN §4), as pure logic: no
//! I/O, no async, no clock.
//!
//! - [`ErasureCodec`]: Reed-Solomon k+m behind one small trait, with two implementations,
//!   [`CodecId::RsErasureGf8`] (`reed-solomon-erasure`, SIMD C kernels) and
//!   [`CodecId::RsSimd`] (`reed-solomon-simd`). Their parities differ, so everything stored
//!   records its [`CodecId`] and [`EcParams`]; build a codec with [`codec`].
//! - [`Striper`]: one segment (up to the segment size, 1 MiB by default) → k zero-padded data
//!   shards + m parity shards → [`Fragment`]s, each with its index, the codec, k, m, the real
//!   segment length and CRC32C, and a CRC32C over its header and shard; [`Fragment::to_bytes`]
//!   and [`Fragment::from_bytes`] frame them. [`decode_segment`] prefers the data fragments,
//!   decodes only when one is missing or corrupt, and checks the segment's CRC32C at the end;
//!   [`rebuild_fragments`] recomputes lost fragments for the reconstructor.
//! - [`segments_for_range`] and [`data_shards_for_range`]: what a ranged read has to fetch.

mod codec;
mod error;
mod fragment;
mod rs_erasure;
mod rs_simd;
mod segments;
mod stripe;

pub use codec::{
    CodecId, EcParams, ErasureCodec, MAX_TOTAL_SHARDS, RS_ERASURE_GF8_MAX_TOTAL_SHARDS,
    RS_SIMD_MAX_TOTAL_SHARDS, codec,
};
pub use error::{EcError, Result};
pub use fragment::{FORMAT_VERSION, Fragment, HEADER_LEN, MAGIC, crc32c};
pub use segments::{
    SegmentSlice, SegmentSlices, data_shards_for_range, segment_bounds, segment_count,
    segments_for_range,
};
pub use stripe::{
    DEFAULT_SEGMENT_BYTES, MAX_SEGMENT_BYTES, SHARD_ALIGN, Striper, decode_segment,
    rebuild_fragments, shard_len,
};
