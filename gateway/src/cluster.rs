//! Creating a cluster in the control plane: its record (id, hash secrets), its certificate
//! authority and the admin project, user and S3 key. Used by `cairn init` and `cairn up`.

use anyhow::Context;
use cairn_meta::identity::Role;
use cairn_meta::{AnyMetaStore, Compare, IdentityStore, MetaStore, Txn, TxnOp};
use cairn_net::ClusterCa;
use serde::{Deserialize, Serialize};

/// The cluster record's key.
pub const CLUSTER_KEY: &str = "/cairn/cluster";
/// The CA record's key (certificate and private key).
pub const CA_KEY: &str = "/cairn/ca";

/// The cluster record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub format: u32,
    pub name: String,
    pub id: String,
    pub created_unix_ms: u64,
    pub hash_prefix: String,
    pub hash_suffix: String,
}

/// What creating a cluster hands back once: the secrets are not kept in clear anywhere.
#[derive(Debug)]
pub struct NewCluster {
    pub record: ClusterRecord,
    pub ca: ClusterCa,
    /// Encrypts S3 secrets at rest; kept out of the store.
    pub identity_master_key: [u8; 32],
    pub admin: AdminCredentials,
}

/// The first administrator's credentials.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminCredentials {
    pub project_id: String,
    pub project_name: String,
    pub user_name: String,
    pub password: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("project", &self.project_name)
            .field("user", &self.user_name)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

pub fn unix_ms() -> anyhow::Result<u64> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    Ok(u64::try_from(ms)?)
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

/// Creates the cluster record, CA and admin identity. Refuses if the store already holds a
/// cluster: a second init must never replace a cluster's secrets.
pub async fn create_cluster(store: &AnyMetaStore, name: &str) -> anyhow::Result<NewCluster> {
    let ca = ClusterCa::generate(name)?;
    let record = ClusterRecord {
        format: 1,
        name: name.to_string(),
        id: random_hex(16)?,
        created_unix_ms: unix_ms()?,
        hash_prefix: random_hex(16)?,
        hash_suffix: random_hex(16)?,
    };
    let ca_record =
        serde_json::json!({ "format": 1, "cert_pem": ca.cert_pem, "key_pem": ca.key_pem });
    let txn = Txn::new().when([Compare::absent(CLUSTER_KEY)]).and_then([
        TxnOp::put(CLUSTER_KEY, serde_json::to_vec(&record)?),
        TxnOp::put(CA_KEY, serde_json::to_vec(&ca_record)?),
    ]);
    anyhow::ensure!(
        store.txn(txn).await?.succeeded,
        "the store already holds a cluster; not touching it"
    );
    let mut master = [0u8; 32];
    getrandom::fill(&mut master).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let identity = IdentityStore::new(store.clone(), master);
    let project = identity
        .create_project("admin", "cluster administrators")
        .await?;
    let password = random_hex(16)?;
    let user = identity
        .create_user("admin", &password, Some(&project.id))
        .await?;
    identity
        .grant_role(&user.id, &project.id, Role::Admin)
        .await?;
    let s3 = identity.create_s3_key(&user.id, &project.id).await?;
    Ok(NewCluster {
        record,
        ca,
        identity_master_key: master,
        admin: AdminCredentials {
            project_id: project.id,
            project_name: project.name,
            user_name: user.name,
            password,
            access_key: s3.access_key,
            secret_key: s3.secret_key,
        },
    })
}

/// The cluster record and CA from the store.
pub async fn load_cluster(store: &AnyMetaStore) -> anyhow::Result<(ClusterRecord, ClusterCa)> {
    let cluster = store
        .get(CLUSTER_KEY.as_bytes())
        .await?
        .context("no cluster in the store: run `cairn init` first")?;
    let record: ClusterRecord =
        serde_json::from_slice(&cluster.value).context("the cluster record is malformed")?;
    let ca = store
        .get(CA_KEY.as_bytes())
        .await?
        .context("the cluster has no CA record")?;
    #[derive(Deserialize)]
    struct CaRecord {
        cert_pem: String,
        key_pem: String,
    }
    let ca: CaRecord = serde_json::from_slice(&ca.value).context("the CA record is malformed")?;
    let ca = ClusterCa::from_pem(&record.name, &ca.cert_pem, &ca.key_pem)?;
    Ok((record, ca))
}

/// Parses the identity master key file (64 hex digits).
pub fn parse_master_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).context("the identity key is not hex")?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("the identity key must be 32 bytes (64 hex digits)"))
}
