//! The identity store's error type.

/// Result alias for the identity store.
pub type IdentityResult<T, E = IdentityError> = std::result::Result<T, E>;

/// Everything an identity operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The underlying metadata store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A name, id, password, role or TTL broke a documented rule.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (`"project name"`, `"password"`, ...).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Another record already has this name.
    #[error("{kind} name {name:?} is already taken")]
    NameTaken {
        /// `"project"` or `"user"`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The record does not exist (or is being deleted).
    #[error("{kind} {id} not found")]
    NotFound {
        /// `"project"`, `"user"`, ...
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The user has no role on the project, so it cannot get credentials or tokens for it.
    #[error("user {user} has no role on project {project}")]
    NoRoleOnProject {
        /// The user's id.
        user: String,
        /// The project's id.
        project: String,
    },
    /// Wrong password or unknown user: deliberately the same error for both.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// A stored secret was encrypted under a different identity master key than the one this
    /// store was opened with. Nothing was decrypted.
    #[error(
        "S3 secret of access key {access_key} is encrypted under master key {record_key_id}, \
         not this store's master key {store_key_id}: wrong identity master key"
    )]
    WrongMasterKey {
        /// The access key whose secret could not be decrypted.
        access_key: String,
        /// Fingerprint of the key the record was encrypted under.
        record_key_id: String,
        /// Fingerprint of the key this store uses.
        store_key_id: String,
    },
    /// A stored secret failed authenticated decryption under the right key: the record was
    /// altered.
    #[error("S3 secret of access key {0} fails authentication: the record was tampered with")]
    Tampered(String),
    /// A stored identity record does not decode.
    #[error("corrupt identity record at {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A read-compare-write kept losing races with concurrent writers.
    #[error("{0}: too many concurrent modifications, try again")]
    Conflict(&'static str),
    /// Password hashing failed (bad parameters, out of memory).
    #[error("password hashing: {0}")]
    Hashing(String),
    /// A blocking hashing task was cancelled or panicked.
    #[error("hashing task failed: {0}")]
    Task(String),
}
