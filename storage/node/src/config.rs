//! `node.toml`: one typed config, unknown keys rejected, validated with clear messages.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Which node-to-node transport to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// `cairn-net`'s measured default.
    #[default]
    Default,
    Tcp,
    Quic,
}

/// Which data-file I/O the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoChoiceConfig {
    /// io_uring where the kernel allows it, else plain files.
    #[default]
    Auto,
    Uring,
    Plain,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique per node in the cluster: it goes into every timestamp this node issues.
    pub node_id: u32,
    /// The node's name in the control plane (default `node-<node_id>`).
    #[serde(default)]
    pub name: Option<String>,
    /// RPC listen address; the ring lists the node's devices at this address (or `advertise`).
    pub listen: SocketAddr,
    /// The address the ring lists, if it differs from `listen` (e.g. `0.0.0.0` binds).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    #[serde(default)]
    pub transport: TransportChoice,
    /// Prometheus metrics at `http://<metrics_listen>/metrics`.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    pub cluster: ClusterSection,
    pub tls: TlsSection,
    #[serde(rename = "device")]
    pub devices: Vec<DeviceSection>,
    #[serde(default)]
    pub replicator: ReplicatorSection,
    #[serde(default)]
    pub auditor: AuditorSection,
    #[serde(default)]
    pub engine: EngineSection,
    /// The control-plane store. With it the node registers and heartbeats, and takes published
    /// rings without a restart; without it, it runs on the ring files alone.
    #[serde(default)]
    pub meta: Option<cairn_meta::MetaConfig>,
    /// Heartbeat lease TTL in the control plane; the node counts as down this long after it dies.
    #[serde(default = "default_heartbeat_ttl_s")]
    pub heartbeat_ttl_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub hash_prefix: String,
    pub hash_suffix: String,
    pub object_ring: PathBuf,
    /// Defaults to the object ring.
    #[serde(default)]
    pub container_ring: Option<PathBuf>,
    /// Defaults to the container ring. Must be the container ring for now: a device's listing
    /// digests cover every listing in a partition, so both kinds of listing must be placed by
    /// one ring for the replicator to pair them with the right peers.
    #[serde(default)]
    pub account_ring: Option<PathBuf>,
    /// Storage policies besides replication (`[[cluster.policy]]`), see [`crate::policy`].
    #[serde(default, rename = "policy")]
    pub policies: Vec<crate::policy::PolicySection>,
    /// The policy of containers created without naming one (default: policy 0).
    #[serde(default)]
    pub default_policy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// The device name as the ring lists it.
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicatorSection {
    #[serde(default = "default_replicator_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorSection {
    #[serde(default = "default_audit_rate")]
    pub objects_per_second: u32,
    /// Pause after a full walk of a device.
    #[serde(default = "default_audit_pause_ms")]
    pub pause_ms: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    #[serde(default)]
    pub io: IoChoiceConfig,
    /// Tombstones older than this are dropped (Swift's `reclaim_age`, default one week).
    #[serde(default = "default_reclaim_age_s")]
    pub reclaim_age_s: u64,
}

fn default_heartbeat_ttl_s() -> u64 {
    10
}

fn default_true() -> bool {
    true
}
fn default_replicator_interval_ms() -> u64 {
    5_000
}
fn default_audit_rate() -> u32 {
    50
}
fn default_audit_pause_ms() -> u64 {
    30_000
}
fn default_reclaim_age_s() -> u64 {
    7 * 24 * 3600
}

impl Default for ReplicatorSection {
    fn default() -> Self {
        ReplicatorSection {
            interval_ms: default_replicator_interval_ms(),
            enabled: true,
        }
    }
}
impl Default for AuditorSection {
    fn default() -> Self {
        AuditorSection {
            objects_per_second: default_audit_rate(),
            pause_ms: default_audit_pause_ms(),
            enabled: true,
        }
    }
}
impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            io: IoChoiceConfig::Auto,
            reclaim_age_s: default_reclaim_age_s(),
        }
    }
}

impl NodeConfig {
    /// Reads, parses and validates a config file; relative paths are taken from its directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = NodeConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.cluster.object_ring);
        if let Some(p) = self.cluster.container_ring.as_mut() {
            fix(p);
        }
        if let Some(p) = self.cluster.account_ring.as_mut() {
            fix(p);
        }
        for policy in &mut self.cluster.policies {
            if let Some(p) = policy.ring.as_mut() {
                fix(p);
            }
        }
        fix(&mut self.tls.ca_cert);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        for d in &mut self.devices {
            fix(&mut d.path);
        }
        if let Some(cairn_meta::MetaConfig::Embedded { dir }) = self.meta.as_mut() {
            fix(dir);
        }
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.devices.is_empty() {
            return Err(
                "no [[device]] configured: a storage node serves at least one device".into(),
            );
        }
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for d in &self.devices {
            if d.name.is_empty() || d.name.contains('/') {
                return Err(format!(
                    "device name {:?} must be non-empty and contain no '/'",
                    d.name
                ));
            }
            if !names.insert(d.name.clone()) {
                return Err(format!("device {:?} is configured twice", d.name));
            }
            if !paths.insert(d.path.clone()) {
                return Err(format!(
                    "device path {} is used by two devices",
                    d.path.display()
                ));
            }
        }
        if self.cluster.hash_prefix.is_empty() && self.cluster.hash_suffix.is_empty() {
            return Err("cluster.hash_prefix and cluster.hash_suffix are both empty: set a secret so names cannot be aimed at partitions".into());
        }
        if let Some(account) = &self.cluster.account_ring {
            let container = self
                .cluster
                .container_ring
                .as_ref()
                .unwrap_or(&self.cluster.object_ring);
            if account != container {
                return Err(format!(
                    "cluster.account_ring ({}) must be the container ring ({}): separate account rings are not supported yet",
                    account.display(),
                    container.display()
                ));
            }
        }
        self.policies()?;
        if !(3..=3600).contains(&self.heartbeat_ttl_s) {
            return Err(format!(
                "heartbeat_ttl_s = {} must be within 3..=3600",
                self.heartbeat_ttl_s
            ));
        }
        if self.replicator.interval_ms == 0 {
            return Err("replicator.interval_ms must be > 0".into());
        }
        if self.auditor.objects_per_second == 0 {
            return Err(
                "auditor.objects_per_second must be > 0 (disable the auditor with enabled = false)"
                    .into(),
            );
        }
        if self.advertised().ip().is_unspecified() {
            return Err(format!(
                "listen is {} (unspecified address): set `advertise` to the address the ring lists",
                self.listen
            ));
        }
        Ok(())
    }

    /// The storage policies the config defines (checked by [`NodeConfig::validate`]).
    pub fn policies(&self) -> Result<crate::policy::Policies, String> {
        crate::policy::Policies::from_sections(
            &self.cluster.policies,
            self.cluster.default_policy.as_deref(),
        )
    }

    /// The node's name in the control plane.
    pub fn node_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.node_id))
    }

    /// The address the ring lists for this node's devices.
    pub fn advertised(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
listen = "127.0.0.1:6001"
[cluster]
hash_prefix = "p"
hash_suffix = "s"
object_ring = "object.ring"
[tls]
ca_cert = "ca.pem"
cert = "node.pem"
key = "node.key"
[[device]]
name = "d1"
path = "d1"
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = NodeConfig::parse(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.replicator.interval_ms, 5_000);
        assert_eq!(c.transport, TransportChoice::Default);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = NodeConfig::parse(&format!("{GOOD}\nbogus = 1\n")).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = NodeConfig::parse(&GOOD.replace("path = \"d1\"", "path = \"d1\"\nsize = 3"))
            .unwrap_err();
        assert!(err.contains("size"), "{err}");
    }

    #[test]
    fn meta_section_parses_for_both_backends_and_rejects_unknown_keys() {
        let etcd = format!(
            "{GOOD}\n[meta]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n"
        );
        assert!(NodeConfig::parse(&etcd).unwrap().meta.is_some());
        let embedded = format!("{GOOD}\n[meta]\nbackend = \"embedded\"\ndir = \"meta\"\n");
        let mut c = NodeConfig::parse(&embedded).unwrap();
        c.resolve_paths(std::path::Path::new("/etc/cairn"));
        assert_eq!(
            c.meta,
            Some(cairn_meta::MetaConfig::Embedded {
                dir: "/etc/cairn/meta".into()
            })
        );
        let bad = format!("{GOOD}\n[meta]\nbackend = \"etcd\"\nendpoint = \"x\"\n");
        assert!(NodeConfig::parse(&bad).is_err());
    }

    #[test]
    fn policies_parse_and_bad_ones_are_refused() {
        let text = GOOD.replace(
            "object_ring = \"object.ring\"",
            "object_ring = \"object.ring\"\ndefault_policy = \"ec42\"\n\
             [[cluster.policy]]\nindex = 1\nname = \"ec42\"\ntype = \"ec\"\nring = \"ec.ring\"\nec_data = 4\nec_parity = 2\n",
        );
        let mut c = NodeConfig::parse(&text).unwrap();
        c.resolve_paths(std::path::Path::new("/etc/cairn"));
        c.validate().unwrap();
        let p = c.policies().unwrap();
        assert_eq!(p.default_policy().name, "ec42");
        assert_eq!(p.get(1).unwrap().ring, Some("/etc/cairn/ec.ring".into()));
        let bad = text.replace("ec_parity = 2", "ec_parity = 0");
        let err = NodeConfig::parse(&bad).unwrap().validate().unwrap_err();
        assert!(err.contains("at least 1"), "{err}");
        let bad = text.replace("ec_parity = 2", "ec_parity = 2\nparity = 3");
        assert!(NodeConfig::parse(&bad).unwrap_err().contains("parity"));
    }

    #[test]
    fn duplicate_devices_are_refused() {
        let text = format!("{GOOD}\n[[device]]\nname = \"d1\"\npath = \"other\"\n");
        let err = NodeConfig::parse(&text).unwrap().validate().unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
