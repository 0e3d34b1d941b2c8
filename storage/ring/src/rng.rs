//! A tiny deterministic PRNG so that a rebalance replays exactly from its seed, independent of
//! any external crate's algorithm changes.

/// SplitMix64: 64 bits of state, passes BigCrush, trivially seedable.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// The order the rebalancer visits partitions in: sequential from a seeded starting point.
///
/// Partition numbers are hash ranges and carry no meaning, so a rotation is as fair as a
/// shuffle; unlike a shuffle it walks the assignment rows sequentially, which matters when
/// they are tens of megabytes (a strided order made a 2^20-partition rebalance twice as slow).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionOrder {
    start: u32,
    mask: u32,
}

impl PartitionOrder {
    pub(crate) fn new(rng: &mut SplitMix64, n: u32) -> Self {
        assert!(
            n.is_power_of_two(),
            "partition count must be a power of two"
        );
        let mask = n - 1;
        Self {
            start: rng.next_u32() & mask,
            mask,
        }
    }

    pub(crate) fn get(&self, i: u32) -> u32 {
        self.start.wrapping_add(i) & self.mask
    }
}
