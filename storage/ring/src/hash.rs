//! Name → partition. A keyed hash so that nobody without the cluster's secret can aim names
//! at one partition (Swift uses MD5 over prefix+path+suffix for the same reason).

use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// Hashes object paths with the cluster's secret prefix and suffix.
///
/// SipHash-2-4 is a PRF designed for exactly this (hash-flooding resistance) and costs tens of
/// nanoseconds for a short path, where MD5 costs hundreds.
#[derive(Clone)]
pub struct PathHasher {
    key: (u64, u64),
}

impl std::fmt::Debug for PathHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a cluster secret: never print it.
        f.debug_struct("PathHasher").finish_non_exhaustive()
    }
}

impl PathHasher {
    /// Derives the 128-bit SipHash key from the cluster's hash prefix and suffix.
    pub fn new(prefix: &str, suffix: &str) -> Self {
        let mut h = blake3::Hasher::new_derive_key("cairn 2026 ring path hash key v1");
        h.update(&(prefix.len() as u64).to_le_bytes());
        h.update(prefix.as_bytes());
        h.update(suffix.as_bytes());
        let digest = h.finalize();
        let b = digest.as_bytes();
        let k0 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let k1 = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        Self { key: (k0, k1) }
    }

    /// 64-bit keyed hash of a path such as `/account/container/object`.
    pub fn hash_path(&self, path: &str) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.key.0, self.key.1);
        h.write(path.as_bytes());
        h.finish()
    }

    /// Path of an account, container or object, as hashed: `/a`, `/a/c`, `/a/c/o`.
    pub fn path_of(account: &str, container: Option<&str>, object: Option<&str>) -> String {
        let mut p = String::with_capacity(
            3 + account.len() + container.map_or(0, str::len) + object.map_or(0, str::len),
        );
        p.push('/');
        p.push_str(account);
        if let Some(c) = container {
            p.push('/');
            p.push_str(c);
            if let Some(o) = object {
                p.push('/');
                p.push_str(o);
            }
        }
        p
    }
}

/// The partition of a hash is its top `part_power` bits.
///
/// # Panics
/// If `part_power` is outside `1..=PART_POWER_MAX`: rings never have such a power.
pub fn partition_of_hash(hash: u64, part_power: u8) -> u32 {
    assert!(
        (1..=crate::limits::PART_POWER_MAX).contains(&part_power),
        "part power {part_power} is out of range"
    );
    // part_power <= 22, so the shifted value fits in u32.
    u32::try_from(hash >> (64 - u32::from(part_power))).unwrap_or(u32::MAX)
}
