//! Storage policies (DESIGN §4): how a container's objects are kept. Policy 0 is replication
//! over the object ring; every other policy is erasure-coded (k data + m parity fragments) over
//! its own ring with k+m replicas per partition. A container chooses its policy when it is
//! created and keeps it; the choice is the container record's [`CONTAINER_POLICY_KEY`].
//!
//! One device serves partitions of several rings, so stored blob keys carry the policy in the
//! top byte of their partition ([`stored_partition`]): ring partitions stay below 2^22 (the
//! ring's part-power limit), so the two never collide, and the replicator — which walks only
//! partitions below the object ring's count — never mistakes a fragment for a replica.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cairn_erasure::{CodecId, EcParams, Striper};
use serde::Deserialize;

/// The container-record metadata key holding its policy index (decimal).
pub const CONTAINER_POLICY_KEY: &str = "sys-storage-policy";
/// Policy indexes fit the top byte of a stored partition number.
pub const POLICY_INDEX_MAX: u16 = 255;
/// Ring partitions are below this (part power ≤ 22, see `cairn-ring`'s limits).
const PARTITION_BITS: u32 = 24;

/// The partition number a blob of `policy` is stored under on a device.
pub fn stored_partition(policy: u16, partition: u32) -> u32 {
    debug_assert!(partition < (1 << PARTITION_BITS));
    (u32::from(policy) << PARTITION_BITS) | partition
}

/// Staged fragment archives (written, not yet current) live in a partition of their own: the
/// stored partition with this bit set. No ring partition reaches it (part power ≤ 22), so
/// digests, the replicator and the reconstructor's rebuild never see staged archives.
pub const STAGED_BIT: u32 = 1 << 23;

/// Where a blob of stored partition `stored` is staged.
pub fn staged_partition(stored: u32) -> u32 {
    stored | STAGED_BIT
}

/// `(policy, ring partition)` of a stored (or staged) partition number.
pub fn split_stored_partition(stored: u32) -> (u16, u32) {
    ((stored >> PARTITION_BITS) as u16, stored & (STAGED_BIT - 1))
}

/// One `[[cluster.policy]]` entry of `node.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub index: u16,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    /// The policy's object ring (erasure-coded policies only; policy 0 uses `object_ring`).
    #[serde(default)]
    pub ring: Option<PathBuf>,
    #[serde(default)]
    pub ec_data: Option<usize>,
    #[serde(default)]
    pub ec_parity: Option<usize>,
    #[serde(default)]
    pub ec_codec: Option<String>,
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// Fragments that must be durable before a PUT is acknowledged (default k+1).
    #[serde(default)]
    pub write_quorum: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyType {
    Replicated,
    Ec,
}

/// An erasure-coded policy's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcScheme {
    pub codec: CodecId,
    pub params: EcParams,
    pub segment_bytes: u64,
    pub write_quorum: usize,
}

impl EcScheme {
    pub fn striper(&self) -> Result<Striper, cairn_erasure::EcError> {
        Striper::new(self.codec, self.params, self.segment_bytes)
    }
}

/// How a policy keeps objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Whole copies on the object ring's replicas.
    Replicated,
    Ec(EcScheme),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePolicy {
    pub index: u16,
    pub name: String,
    pub kind: PolicyKind,
    /// The ring file (erasure-coded policies).
    pub ring: Option<PathBuf>,
}

impl StoragePolicy {
    pub fn ec(&self) -> Option<&EcScheme> {
        match &self.kind {
            PolicyKind::Ec(s) => Some(s),
            PolicyKind::Replicated => None,
        }
    }

    /// `replicated` or `ec 4+2 rs-erasure-gf8`, for listings and logs.
    pub fn describe(&self) -> String {
        match &self.kind {
            PolicyKind::Replicated => "replicated".into(),
            PolicyKind::Ec(s) => format!("ec {}+{} {}", s.params.k, s.params.m, s.codec),
        }
    }
}

/// The cluster's policies, by index, and the one new containers get by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    by_index: BTreeMap<u16, StoragePolicy>,
    default: u16,
}

impl Default for Policies {
    /// Replication only.
    fn default() -> Self {
        let mut by_index = BTreeMap::new();
        by_index.insert(0, replicated_zero("replicated".into()));
        Policies {
            by_index,
            default: 0,
        }
    }
}

fn replicated_zero(name: String) -> StoragePolicy {
    StoragePolicy {
        index: 0,
        name,
        kind: PolicyKind::Replicated,
        ring: None,
    }
}

impl Policies {
    /// Builds and checks the policies a config lists. Without entries there is one policy,
    /// `replicated` (index 0).
    pub fn from_sections(
        sections: &[PolicySection],
        default: Option<&str>,
    ) -> Result<Policies, String> {
        let mut out = Policies::default();
        for s in sections {
            let policy = build(s)?;
            if out
                .by_index
                .values()
                .any(|p| p.index != s.index && p.name.eq_ignore_ascii_case(&s.name))
            {
                return Err(format!("storage policy name {:?} is used twice", s.name));
            }
            if s.index != 0 && out.by_index.contains_key(&s.index) {
                return Err(format!("storage policy index {} is used twice", s.index));
            }
            out.by_index.insert(s.index, policy);
        }
        if let Some(name) = default {
            out.default = out
                .by_name(name)
                .ok_or_else(|| {
                    format!(
                        "cluster.default_policy {name:?} is not a configured policy ({})",
                        out.names().join(", ")
                    )
                })?
                .index;
        }
        Ok(out)
    }

    pub fn get(&self, index: u16) -> Option<&StoragePolicy> {
        self.by_index.get(&index)
    }

    /// Policy names compare without regard to ASCII case, as Swift's do.
    pub fn by_name(&self, name: &str) -> Option<&StoragePolicy> {
        self.by_index
            .values()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn default_policy(&self) -> &StoragePolicy {
        // The default index is always one of ours (checked when built).
        self.by_index
            .get(&self.default)
            .or_else(|| self.by_index.values().next())
            .unwrap_or_else(|| unreachable!("policy 0 always exists"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &StoragePolicy> {
        self.by_index.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_index.values().map(|p| p.name.clone()).collect()
    }
}

fn build(s: &PolicySection) -> Result<StoragePolicy, String> {
    let what = format!("storage policy {:?} (index {})", s.name, s.index);
    if s.name.is_empty()
        || s.name.len() > 64
        || !s
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{what}: a name is 1–64 letters, digits, '-' or '_'"
        ));
    }
    if s.index > POLICY_INDEX_MAX {
        return Err(format!("{what}: index must be at most {POLICY_INDEX_MAX}"));
    }
    let ec_keys = s.ec_data.is_some()
        || s.ec_parity.is_some()
        || s.ec_codec.is_some()
        || s.segment_bytes.is_some()
        || s.write_quorum.is_some();
    match s.kind {
        PolicyType::Replicated => {
            if s.index != 0 {
                return Err(format!(
                    "{what}: only policy 0 may be replicated (it uses cluster.object_ring); other policies are erasure-coded"
                ));
            }
            if ec_keys || s.ring.is_some() {
                return Err(format!(
                    "{what}: a replicated policy takes no ring or ec_* settings"
                ));
            }
            Ok(replicated_zero(s.name.clone()))
        }
        PolicyType::Ec => {
            if s.index == 0 {
                return Err(format!(
                    "{what}: policy 0 is the replicated policy of cluster.object_ring"
                ));
            }
            let ring = s
                .ring
                .clone()
                .ok_or_else(|| format!("{what}: an erasure-coded policy needs `ring`"))?;
            let (Some(k), Some(m)) = (s.ec_data, s.ec_parity) else {
                return Err(format!("{what}: set ec_data (k) and ec_parity (m)"));
            };
            if k == 0 || m == 0 {
                return Err(format!("{what}: ec_data and ec_parity must be at least 1"));
            }
            let codec: CodecId = match &s.ec_codec {
                Some(c) => c.parse().map_err(|e| format!("{what}: {e}"))?,
                None => CodecId::RsErasureGf8,
            };
            let params = EcParams::new(k, m);
            codec.validate(params).map_err(|e| format!("{what}: {e}"))?;
            let segment_bytes = s
                .segment_bytes
                .unwrap_or(cairn_erasure::DEFAULT_SEGMENT_BYTES);
            if segment_bytes == 0 || segment_bytes > cairn_erasure::MAX_SEGMENT_BYTES {
                return Err(format!(
                    "{what}: segment_bytes must be within 1..={}",
                    cairn_erasure::MAX_SEGMENT_BYTES
                ));
            }
            let write_quorum = s.write_quorum.unwrap_or(k + 1);
            if write_quorum < k + 1 || write_quorum > k + m {
                return Err(format!(
                    "{what}: write_quorum {write_quorum} must be within k+1..=k+m ({}..={})",
                    k + 1,
                    k + m
                ));
            }
            Ok(StoragePolicy {
                index: s.index,
                name: s.name.clone(),
                kind: PolicyKind::Ec(EcScheme {
                    codec,
                    params,
                    segment_bytes,
                    write_quorum,
                }),
                ring: Some(ring),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(index: u16, name: &str) -> PolicySection {
        PolicySection {
            index,
            name: name.into(),
            kind: PolicyType::Ec,
            ring: Some("ec.ring".into()),
            ec_data: Some(4),
            ec_parity: Some(2),
            ec_codec: None,
            segment_bytes: None,
            write_quorum: None,
        }
    }

    #[test]
    fn stored_partitions_keep_policies_apart() {
        for (policy, part) in [(0u16, 0u32), (1, 5), (255, (1 << 22) - 1)] {
            let s = stored_partition(policy, part);
            assert_eq!(split_stored_partition(s), (policy, part));
        }
        assert!(stored_partition(1, 0) >= 1 << 22);
        let staged = staged_partition(stored_partition(3, 9));
        assert_eq!(split_stored_partition(staged), (3, 9));
        assert_ne!(staged, stored_partition(3, 9));
        assert_eq!(stored_partition(0, 77), 77);
    }

    #[test]
    fn policies_build_with_defaults_and_refuse_bad_entries() {
        let p = Policies::from_sections(&[ec(1, "ec42")], Some("EC42")).unwrap();
        assert_eq!(p.default_policy().index, 1);
        let s = p.get(1).unwrap().ec().copied().unwrap();
        assert_eq!((s.params.k, s.params.m, s.write_quorum), (4, 2, 5));
        assert_eq!(s.segment_bytes, 1 << 20);
        assert_eq!(p.by_name("replicated").unwrap().index, 0);

        let err = |sections: &[PolicySection], default: Option<&str>| {
            Policies::from_sections(sections, default).unwrap_err()
        };
        assert!(err(&[ec(1, "a"), ec(1, "b")], None).contains("twice"));
        assert!(err(&[ec(1, "a"), ec(2, "A")], None).contains("twice"));
        assert!(err(&[ec(0, "a")], None).contains("policy 0"));
        assert!(err(&[ec(1, "a b")], None).contains("name"));
        assert!(err(&[ec(1, "a")], Some("zzz")).contains("not a configured policy"));
        let mut bad = ec(1, "a");
        bad.write_quorum = Some(4);
        assert!(err(&[bad], None).contains("write_quorum"));
        let mut bad = ec(1, "a");
        bad.ring = None;
        assert!(err(&[bad], None).contains("ring"));
        let mut bad = ec(1, "a");
        bad.ec_codec = Some("zfec".into());
        assert!(err(&[bad], None).contains("a"));
        let mut rep = ec(2, "r");
        rep.kind = PolicyType::Replicated;
        rep.ring = None;
        rep.ec_data = None;
        rep.ec_parity = None;
        assert!(err(&[rep], None).contains("only policy 0"));
    }
}
