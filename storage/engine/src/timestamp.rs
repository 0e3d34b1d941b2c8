//! Hybrid logical clock timestamps: the order in which writes to one name win.
//!
//! A timestamp is (wall time in microseconds, counter, node id). Ordering is lexicographic, so
//! two writers never tie (node ids differ) and a node whose wall clock stepped backwards still
//! issues increasing timestamps (the counter carries it past what it has seen).

use serde::{Deserialize, Serialize};

/// When a write happened, in a total order shared by the whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Wall-clock microseconds since the Unix epoch, as the issuing node last knew them.
    pub wall_micros: u64,
    /// Breaks ties between timestamps issued in the same microsecond (or after a clock step back).
    pub counter: u32,
    /// The issuing node, so two nodes never issue equal timestamps.
    pub node: u32,
}

impl Timestamp {
    /// Before every timestamp a clock issues.
    pub const ZERO: Timestamp = Timestamp {
        wall_micros: 0,
        counter: 0,
        node: 0,
    };

    /// Big-endian bytes: byte order equals timestamp order, so they sort correctly as key parts.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.wall_micros.to_be_bytes());
        out[8..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Inverse of [`Timestamp::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Timestamp {
        let [
            w0,
            w1,
            w2,
            w3,
            w4,
            w5,
            w6,
            w7,
            c0,
            c1,
            c2,
            c3,
            n0,
            n1,
            n2,
            n3,
        ] = bytes;
        Timestamp {
            wall_micros: u64::from_be_bytes([w0, w1, w2, w3, w4, w5, w6, w7]),
            counter: u32::from_be_bytes([c0, c1, c2, c3]),
            node: u32::from_be_bytes([n0, n1, n2, n3]),
        }
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:06}-{}-{}",
            self.wall_micros / 1_000_000,
            self.wall_micros % 1_000_000,
            self.counter,
            self.node
        )
    }
}

/// Issues increasing timestamps for one node. Pure: the caller passes the wall time in, so the
/// simulation can drive it with a simulated clock.
#[derive(Clone, Debug)]
pub struct HybridClock {
    node: u32,
    last: Timestamp,
}

impl HybridClock {
    pub fn new(node: u32) -> HybridClock {
        HybridClock {
            node,
            last: Timestamp::ZERO,
        }
    }

    /// A timestamp greater than every one this clock has issued or observed.
    pub fn now(&mut self, wall_micros: u64) -> Timestamp {
        let next = if wall_micros > self.last.wall_micros {
            Timestamp {
                wall_micros,
                counter: 0,
                node: self.node,
            }
        } else {
            // The wall clock has not moved past what we have seen: keep its time, bump the counter.
            Timestamp {
                wall_micros: self.last.wall_micros,
                counter: self.last.counter.saturating_add(1),
                node: self.node,
            }
        };
        debug_assert!(next > self.last);
        self.last = next;
        next
    }

    /// Remember a timestamp seen from elsewhere so later ones issued here are greater.
    pub fn observe(&mut self, seen: Timestamp) {
        if seen > self.last {
            self.last = Timestamp {
                node: self.node,
                ..seen
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_order_is_timestamp_order() {
        let a = Timestamp {
            wall_micros: 5,
            counter: 9,
            node: 1,
        };
        let b = Timestamp {
            wall_micros: 6,
            counter: 0,
            node: 0,
        };
        assert!(a < b && a.to_bytes() < b.to_bytes());
        assert_eq!(Timestamp::from_bytes(a.to_bytes()), a);
    }

    #[test]
    fn clock_stays_increasing_when_wall_time_steps_back() {
        let mut clock = HybridClock::new(3);
        let t1 = clock.now(1_000);
        let t2 = clock.now(900);
        clock.observe(Timestamp {
            wall_micros: 2_000,
            counter: 4,
            node: 9,
        });
        let t3 = clock.now(1_500);
        assert!(t1 < t2 && t2 < t3);
        assert_eq!(t3.wall_micros, 2_000);
        assert_eq!(t3.node, 3);
    }
}
