//! The one error type of the crate.

use crate::codec::CodecId;

/// Everything that can go wrong while coding, framing or decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcError {
    /// `k`/`m` are outside what the codec (or the fragment format) supports.
    #[error("invalid erasure parameters {k}+{m} for {codec}: {reason}")]
    InvalidParams {
        /// The codec the parameters were checked for.
        codec: CodecId,
        /// Data shards asked for.
        k: usize,
        /// Parity shards asked for.
        m: usize,
        /// Which rule they break.
        reason: &'static str,
    },
    /// A segment size of zero or above [`crate::MAX_SEGMENT_BYTES`].
    #[error("invalid segment size {size}: must be 1..={max} bytes")]
    InvalidSegmentSize {
        /// The size asked for.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A segment longer than the stripe's segment size.
    #[error("segment of {len} bytes exceeds the segment size {max}")]
    SegmentTooLarge {
        /// Bytes given.
        len: u64,
        /// The configured segment size.
        max: u64,
    },
    /// The codec was handed the wrong number of shards.
    #[error("expected {expected} shards, got {got}")]
    ShardCount {
        /// Shards the parameters call for.
        expected: usize,
        /// Shards given.
        got: usize,
    },
    /// Shards of different lengths, or a length the codec cannot work with.
    #[error("bad shard length {len}: {reason}")]
    ShardLen {
        /// The offending length.
        len: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Fewer than `k` shards present in a reconstruction.
    #[error("cannot reconstruct: {present} shards present, {needed} needed")]
    TooFewShards {
        /// Shards present.
        present: usize,
        /// Shards needed (k).
        needed: usize,
    },
    /// The underlying Reed-Solomon crate refused the input (a bug in this crate if reached).
    #[error("{codec} backend error: {message}")]
    Backend {
        /// The codec that failed.
        codec: CodecId,
        /// Its own description of the failure.
        message: String,
    },

    // --- fragment framing ---
    /// Input ends before the header or the shard does.
    #[error("truncated fragment: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes the header says (or the header itself needs).
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// Extra bytes after the shard.
    #[error("fragment has {extra} trailing bytes after its shard")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// Not a fragment at all.
    #[error("bad fragment magic {found:02x?}")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A format version this build does not read.
    #[error("unsupported fragment format version {0}")]
    UnsupportedVersion(u8),
    /// A codec byte this build does not know.
    #[error("unknown codec id byte {0}")]
    UnknownCodec(u8),
    /// Reserved header bytes are not zero.
    #[error("reserved fragment header bytes are not zero")]
    ReservedNotZero,
    /// A fragment index outside `0..k+m`.
    #[error("fragment index {index} out of range for {total} fragments")]
    IndexOutOfRange {
        /// The index.
        index: u8,
        /// k + m.
        total: usize,
    },
    /// The header's shard length does not follow from its segment length and `k`.
    #[error("shard length {got} does not match segment layout (expected {expected})")]
    LayoutMismatch {
        /// What the layout gives.
        expected: u64,
        /// What the header says.
        got: u64,
    },
    /// Header + shard fail their CRC32C.
    #[error("fragment {index} checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    ChecksumMismatch {
        /// The fragment's index.
        index: u8,
        /// CRC32C recorded in the header.
        stored: u32,
        /// CRC32C of the bytes.
        computed: u32,
    },

    // --- segment decoding ---
    /// `decode_segment` got no fragment at all.
    #[error("no fragments given")]
    NoFragments,
    /// Fragments that verify but belong to different stripes.
    #[error("fragments disagree on {what}")]
    Inconsistent {
        /// The field that differs.
        what: &'static str,
    },
    /// Fewer than `k` fragments left once corrupt ones are dropped.
    #[error(
        "not enough good fragments: {good} good ({corrupt} corrupt, {duplicate} duplicate), {needed} needed"
    )]
    NotEnoughFragments {
        /// Distinct fragments that verified.
        good: usize,
        /// Fragments whose checksum failed.
        corrupt: usize,
        /// Fragments repeating an index already seen.
        duplicate: usize,
        /// k.
        needed: usize,
    },
    /// The decoded segment does not match the CRC32C every fragment records for it: the
    /// fragments were coded with another codec or parameters than they claim, or were
    /// corrupted before their own checksum was computed.
    #[error("decoded segment checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    SegmentChecksum {
        /// CRC32C of the segment recorded in the fragments.
        stored: u32,
        /// CRC32C of what decoding produced.
        computed: u32,
    },
    /// A byte range outside the object.
    #[error("range {start}..{end} is outside an object of {len} bytes")]
    RangeOutOfBounds {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Object length.
        len: u64,
    },
}

/// Result with [`EcError`].
pub type Result<T, E = EcError> = std::result::Result<T, E>;
