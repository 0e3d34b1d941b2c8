//! Identity records: the public types and their stored JSON forms (`"format": 1`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::IdentityError;

/// The record format this code writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// A role a user holds on a project. The set is fixed (Keystone's default roles); each role
/// implies the ones below it only by the gateway's policy, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full control of the project.
    Admin,
    /// Read and write.
    Member,
    /// Read only.
    Reader,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Reader];

    /// The role's name, as used in keys and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Reader => "reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Invalid {
                what: "role",
                reason: format!("{s:?} is not one of admin, member, reader"),
            })
    }
}

/// Whether a project or user is usable or on its way out. A delete first marks the record
/// `Deleting` (so nothing new can reference it), removes its dependents, then the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Active,
    Deleting,
}

/// A project: an S3 owner and a Swift account (`AUTH_<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Random 32-hex-digit id; never reused.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time, Unix milliseconds.
    pub created_at_unix_ms: u64,
}

impl Project {
    /// The Swift account name the gateway serves this project as.
    pub fn swift_account(&self) -> String {
        format!("AUTH_{}", self.id)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProjectRecord {
    pub(crate) format: u32,
    #[serde(flatten)]
    pub(crate) project: Project,
    pub(crate) state: State,
}

/// A user, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Random 32-hex-digit id; never reused.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Project a password login is scoped to when none is asked for.
    pub default_project: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub(crate) format: u32,
    #[serde(flatten)]
    pub(crate) user: User,
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    pub(crate) state: State,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .field("state", &self.state)
            .finish()
    }
}

/// Who a request acts as, once authenticated: the user, the project it is scoped to (if any)
/// and the roles it holds there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user_name: String,
    /// The project the credential is scoped to.
    pub project_id: Option<String>,
    /// The user's current roles on that project (sorted; empty when unscoped or when every
    /// role was revoked — authorisation is the caller's job).
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the principal holds `role` on its project.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A new S3 key pair. The secret is shown only here, once; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credential {
    /// The access key id (20 uppercase alphanumerics).
    pub access_key: String,
    /// The secret key (40 characters).
    pub secret_key: String,
    /// Owner.
    pub user_id: String,
    /// Project the key acts in.
    pub project_id: String,
}

impl fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("project_id", &self.project_id)
            .finish()
    }
}

/// An S3 secret key recovered for signature checking. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Secret(pub String);

impl S3Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for S3Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("S3Secret(<redacted>)")
    }
}

/// An S3 key as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3KeyInfo {
    /// The access key id.
    pub access_key: String,
    /// Owner.
    pub user_id: String,
    /// Project.
    pub project_id: String,
    /// Creation time, Unix milliseconds.
    pub created_at_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct S3CredentialRecord {
    pub(crate) format: u32,
    pub(crate) access_key: String,
    pub(crate) user_id: String,
    pub(crate) project_id: String,
    pub(crate) created_at_unix_ms: u64,
    /// Fingerprint of the master key the secret is encrypted under.
    pub(crate) key_id: String,
    /// `"chacha20poly1305"`.
    pub(crate) cipher: String,
    /// Hex.
    pub(crate) nonce: String,
    /// Hex, tag included.
    pub(crate) ciphertext: String,
}

/// A Swift token, shown once when issued. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SwiftToken {
    /// The token (`AUTH_tk` and 64 hex digits), for `X-Auth-Token`.
    pub token: String,
    /// When it stops being valid, Unix milliseconds.
    pub expires_at_unix_ms: u64,
}

impl fmt::Debug for SwiftToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftToken")
            .field("token", &"<redacted>")
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) format: u32,
    pub(crate) user_id: String,
    pub(crate) project_id: String,
    pub(crate) issued_at_unix_ms: u64,
    pub(crate) expires_at_unix_ms: u64,
}

/// The value of a reverse-index key that names the other party (user or project id).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RefRecord {
    pub(crate) format: u32,
    pub(crate) id: String,
}
