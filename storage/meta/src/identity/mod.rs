//! The identity store: projects, users, roles, role assignments, S3 keys and Swift tokens —
//! the records the gateway authenticates against (DESIGN §6, Keystone's model compactly),
//! written once over [`MetaStore`] so both backends behave alike.
//!
//! Secrets are never stored in the clear: passwords as argon2id PHC strings, S3 secrets
//! encrypted with ChaCha20-Poly1305 under a caller-supplied [`IdentityMasterKey`] (SigV4 needs
//! the secret back), Swift tokens as SHA-256 digests on a store lease with the token's TTL.
//! Key layout and invariants: "Identity records" in `docs/meta.md`.
//!
//! Invariants are kept with transactions: a name index is created with its record under a
//! `create_revision == 0` compare (unique names); every write that references a user or
//! project compares the referenced record's `mod_revision`, so it cannot slip in while that
//! record is being deleted. A delete first marks the record `deleting`, then removes its
//! dependents in bounded batches, then the record and its name index; an interrupted delete is
//! finished by calling delete again, and readers treat `deleting` records as absent.

mod crypto;
mod error;
mod keys;
pub mod limits;
mod model;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::store::{MetaStore, lease_ttl_secs};
use crate::types::{Compare, CompareOp, KeyRange, KeyValue, TxnOp, Versioned, prefix_end};
use crate::{Error, Txn};

pub use crypto::{IdentityMasterKey, PasswordParams};
pub use error::{IdentityError, IdentityResult};
pub use keys::IDENTITY_PREFIX;
pub use model::{Principal, Project, Role, S3Credential, S3KeyInfo, S3Secret, SwiftToken, User};

use model::{FORMAT, ProjectRecord, RefRecord, S3CredentialRecord, State, TokenRecord, UserRecord};

/// Value of an assignment key: existence is the fact.
const ASSIGNMENT_VALUE: &[u8] = b"{}";
/// Name of the AEAD in credential records.
const CIPHER_NAME: &str = "chacha20poly1305";

/// How an [`IdentityStore`] hashes passwords and tells time.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// argon2id costs for new password hashes.
    pub password_params: PasswordParams,
    /// Clock for creation times and token expiry (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            password_params: PasswordParams::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Identity records over a [`MetaStore`]. Cheap to clone when the store is.
#[derive(Clone)]
pub struct IdentityStore<S> {
    store: S,
    master_key: IdentityMasterKey,
    options: IdentityOptions,
    // A hash of a random password, verified against when the user is unknown so that an
    // unknown user costs the same argon2 work as a wrong password.
    dummy_hash: Arc<OnceLock<String>>,
}

impl<S: fmt::Debug> fmt::Debug for IdentityStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityStore")
            .field("store", &self.store)
            .field("master_key", &self.master_key)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A record with a format number.
trait Record: Serialize + DeserializeOwned {
    fn format(&self) -> u32;
}
macro_rules! record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn format(&self) -> u32 {
                self.format
            }
        }
    )*};
}
record!(
    ProjectRecord,
    UserRecord,
    S3CredentialRecord,
    TokenRecord,
    RefRecord
);

fn encode<T: Record>(key: &str, v: &T) -> IdentityResult<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| IdentityError::Corrupt {
            key: key.to_owned(),
            reason: format!("encoding: {e}"),
        })
}

fn decode<T: Record>(key: &[u8], value: &[u8]) -> IdentityResult<T> {
    let corrupt = |reason: String| IdentityError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let v: T = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
    if v.format() != FORMAT {
        return Err(corrupt(format!("unknown format {}", v.format())));
    }
    Ok(v)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn not_found(kind: &'static str, id: &str) -> IdentityError {
    IdentityError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// Runs CPU-heavy hashing off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> IdentityResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IdentityError::Task(e.to_string()))
}

impl<S: MetaStore> IdentityStore<S> {
    /// An identity store over `store`, encrypting S3 secrets under `master_key`, with
    /// production argon2id costs and the system clock.
    pub fn new(store: S, master_key: impl Into<IdentityMasterKey>) -> Self {
        IdentityStore::with_options(store, master_key, IdentityOptions::default())
    }

    /// An identity store with explicit hashing costs and clock.
    pub fn with_options(
        store: S,
        master_key: impl Into<IdentityMasterKey>,
        options: IdentityOptions,
    ) -> Self {
        IdentityStore {
            store,
            master_key: master_key.into(),
            options,
            dummy_hash: Arc::new(OnceLock::new()),
        }
    }

    /// The underlying metadata store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn now_ms(&self) -> u64 {
        self.options.clock.now_unix_ms()
    }

    async fn get_record<T: Record>(&self, key: &str) -> IdentityResult<Option<(T, Versioned)>> {
        match self.store.get(key.as_bytes()).await? {
            None => Ok(None),
            Some(v) => Ok(Some((decode(key.as_bytes(), &v.value)?, v))),
        }
    }

    async fn txn(&self, txn: Txn) -> IdentityResult<bool> {
        Ok(self.store.txn(txn).await?.succeeded)
    }

    async fn range_prefix(&self, prefix: &str, limit: usize) -> IdentityResult<Vec<KeyValue>> {
        Ok(self
            .store
            .range(&KeyRange::prefix(prefix.to_owned()), limit)
            .await?)
    }

    /// An active project's record and version.
    async fn active_project(&self, id: &str) -> IdentityResult<Option<(ProjectRecord, Versioned)>> {
        keys::check_id("project id", id)?;
        Ok(self
            .get_record::<ProjectRecord>(&keys::project(id))
            .await?
            .filter(|(r, _)| r.state == State::Active))
    }

    /// An active user's record and version.
    async fn active_user(&self, id: &str) -> IdentityResult<Option<(UserRecord, Versioned)>> {
        keys::check_id("user id", id)?;
        Ok(self
            .get_record::<UserRecord>(&keys::user(id))
            .await?
            .filter(|(r, _)| r.state == State::Active))
    }

    /// Active records under `prefix` with ids after `after`, up to `limit`.
    async fn list_active<T: Record>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        active: impl Fn(&T) -> bool,
    ) -> IdentityResult<Vec<T>> {
        if limit == 0 || limit > limits::LIST_LIMIT_MAX {
            return Err(IdentityError::Invalid {
                what: "list limit",
                reason: format!("{limit} not in 1..={}", limits::LIST_LIMIT_MAX),
            });
        }
        let end = prefix_end(prefix.as_bytes()).unwrap_or_default();
        let mut start = match after {
            Some(a) => format!("{prefix}{a}\0").into_bytes(),
            None => prefix.as_bytes().to_vec(),
        };
        let mut out = Vec::new();
        // Records being deleted are skipped, so keep reading until the page is full.
        loop {
            let kvs = self
                .store
                .range(&KeyRange::between(start.clone(), end.clone()), limit)
                .await?;
            let exhausted = kvs.len() < limit;
            for kv in &kvs {
                let r: T = decode(&kv.key, &kv.value)?;
                if active(&r) && out.len() < limit {
                    out.push(r);
                }
            }
            match kvs.last() {
                Some(last) if !exhausted && out.len() < limit => {
                    start = last.key.to_vec();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    // ---- projects ----

    /// Creates a project with a unique `name`.
    pub async fn create_project(&self, name: &str, description: &str) -> IdentityResult<Project> {
        keys::check_name("project name", name)?;
        keys::check_description(description)?;
        let project = Project {
            id: crypto::new_id(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_at_unix_ms: self.now_ms(),
        };
        let key = keys::project(&project.id);
        let name_key = keys::project_name(name);
        let record = ProjectRecord {
            format: FORMAT,
            project: project.clone(),
            state: State::Active,
        };
        let txn = Txn::new()
            .when([
                Compare::absent(name_key.clone()),
                Compare::absent(key.clone()),
            ])
            .and_then([
                TxnOp::put(name_key, project.id.clone()),
                TxnOp::put(key.clone(), encode(&key, &record)?),
            ]);
        if !self.txn(txn).await? {
            return Err(IdentityError::NameTaken {
                kind: "project",
                name: name.to_owned(),
            });
        }
        tracing::info!(project = %project.id, name, "project created");
        Ok(project)
    }

    /// The project, unless absent or being deleted.
    pub async fn get_project(&self, id: &str) -> IdentityResult<Option<Project>> {
        Ok(self.active_project(id).await?.map(|(r, _)| r.project))
    }

    /// The project named `name`.
    pub async fn find_project(&self, name: &str) -> IdentityResult<Option<Project>> {
        keys::check_name("project name", name)?;
        let Some(id) = self.store.get(keys::project_name(name).as_bytes()).await? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id.value).into_owned();
        self.get_project(&id).await
    }

    /// Up to `limit` (1..=[`LIST_LIMIT_MAX`](limits::LIST_LIMIT_MAX)) projects in id order,
    /// starting after id `after`: page by passing the last id returned.
    pub async fn list_projects(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> IdentityResult<Vec<Project>> {
        Ok(self
            .list_active::<ProjectRecord>(&keys::projects(), after, limit, |r| {
                r.state == State::Active
            })
            .await?
            .into_iter()
            .map(|r| r.project)
            .collect())
    }

    /// Deletes a project with its name, role assignments, S3 keys and Swift tokens. `false`
    /// if there was no such project. Calling it again finishes an interrupted delete.
    pub async fn delete_project(&self, id: &str) -> IdentityResult<bool> {
        keys::check_id("project id", id)?;
        let key = keys::project(id);
        let Some(mark_rev) = self
            .mark_deleting::<ProjectRecord>(&key, |r| &mut r.state)
            .await?
        else {
            return Ok(false);
        };
        // Assignments: key …/assignments/<project>/<user>/<role>.
        self.sweep(&keys::assignments_in_project(id), |kv| {
            let (user, role) = keys::last_two_components(&kv.key)?;
            let role: Role = role.parse().ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::assignment_by_user(user, id, role).into_bytes(),
            ])
        })
        .await?;
        self.sweep(&keys::credentials_by_project(id), |kv| {
            let ak = keys::last_component(&kv.key)?;
            let user: RefRecord = decode(&kv.key, &kv.value).ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::credential(ak).into_bytes(),
                keys::credential_by_user(&user.id, ak).into_bytes(),
            ])
        })
        .await?;
        self.sweep(&keys::tokens_by_project(id), |kv| {
            let digest = keys::last_component(&kv.key)?;
            let user: RefRecord = decode(&kv.key, &kv.value).ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::token(digest).into_bytes(),
                keys::token_by_user(&user.id, digest).into_bytes(),
            ])
        })
        .await?;
        self.finish_delete::<ProjectRecord>(&key, mark_rev, |r| {
            keys::project_name(&r.project.name)
        })
        .await?;
        tracing::info!(project = id, "project deleted");
        Ok(true)
    }

    /// Marks the record at `key` as deleting (if not already). Returns the record's
    /// `mod_revision` after marking, or `None` if it is absent.
    async fn mark_deleting<T: Record>(
        &self,
        key: &str,
        state: impl Fn(&mut T) -> &mut State,
    ) -> IdentityResult<Option<u64>> {
        for _ in 0..limits::CAS_RETRIES_MAX {
            let Some((mut rec, v)) = self.get_record::<T>(key).await? else {
                return Ok(None);
            };
            if *state(&mut rec) == State::Deleting {
                return Ok(Some(v.mod_revision));
            }
            *state(&mut rec) = State::Deleting;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.to_owned(),
                    CompareOp::Equal,
                    v.mod_revision,
                )])
                .and_then([TxnOp::put(key.to_owned(), encode(key, &rec)?)]);
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                return Ok(Some(resp.revision));
            }
        }
        Err(IdentityError::Conflict("marking a record deleted"))
    }

    /// Deletes a `deleting` record and its name index, if nobody changed it since it was
    /// marked (a concurrent delete may already have).
    async fn finish_delete<T: Record>(
        &self,
        key: &str,
        mark_rev: u64,
        name_key: impl Fn(&T) -> String,
    ) -> IdentityResult<()> {
        let Some((rec, v)) = self.get_record::<T>(key).await? else {
            return Ok(());
        };
        if v.mod_revision != mark_rev {
            return Err(IdentityError::Conflict("deleting a record"));
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.to_owned(),
                CompareOp::Equal,
                mark_rev,
            )])
            .and_then([TxnOp::delete(key.to_owned()), TxnOp::delete(name_key(&rec))]);
        // Failure means a concurrent delete finished first: the outcome is the same.
        self.txn(txn).await?;
        Ok(())
    }

    /// Deletes, in bounded transactions, every key under `prefix` together with the keys
    /// `related` names for it (the other halves of its indexes). Nothing can add keys under
    /// `prefix` meanwhile: the owner is marked deleting and writers compare its revision.
    ///
    /// Token keys sit on their own leases; those are revoked after their keys are gone, so
    /// they don't linger (and count against the store's lease limit) until their TTL.
    async fn sweep(
        &self,
        prefix: &str,
        related: impl Fn(&KeyValue) -> Option<Vec<Vec<u8>>>,
    ) -> IdentityResult<()> {
        loop {
            let kvs = self.range_prefix(prefix, limits::SWEEP_BATCH_ITEMS).await?;
            if kvs.is_empty() {
                return Ok(());
            }
            let mut ops = Vec::new();
            for kv in &kvs {
                // An index entry that doesn't parse is still removed, alone.
                let keys = related(kv).unwrap_or_else(|| vec![kv.key.to_vec()]);
                ops.extend(keys.into_iter().map(TxnOp::delete));
            }
            self.store.txn(Txn::new().and_then(ops)).await?;
            for lease in kvs.iter().filter_map(|kv| kv.lease) {
                self.revoke_lease(lease).await;
            }
        }
    }

    // ---- users ----

    /// Creates a user with a unique `name`, hashing `password` with argon2id.
    /// `default_project`, if given, must exist; a password login without a project is scoped
    /// to it.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        default_project: Option<&str>,
    ) -> IdentityResult<User> {
        keys::check_name("user name", name)?;
        check_password(password)?;
        let password_hash = self.hash(password).await?;
        let id = crypto::new_id();
        let key = keys::user(&id);
        let name_key = keys::user_name(name);
        for _ in 0..limits::CAS_RETRIES_MAX {
            let mut compare = vec![
                Compare::absent(name_key.clone()),
                Compare::absent(key.clone()),
            ];
            if let Some(p) = default_project {
                let (_, pv) = self
                    .active_project(p)
                    .await?
                    .ok_or_else(|| not_found("project", p))?;
                compare.push(Compare::mod_revision(
                    keys::project(p),
                    CompareOp::Equal,
                    pv.mod_revision,
                ));
            }
            let user = User {
                id: id.clone(),
                name: name.to_owned(),
                default_project: default_project.map(str::to_owned),
                created_at_unix_ms: self.now_ms(),
            };
            let record = UserRecord {
                format: FORMAT,
                user: user.clone(),
                password_hash: password_hash.clone(),
                state: State::Active,
            };
            let txn = Txn::new().when(compare).and_then([
                TxnOp::put(name_key.clone(), id.clone()),
                TxnOp::put(key.clone(), encode(&key, &record)?),
            ]);
            if self.txn(txn).await? {
                tracing::info!(user = %id, name, "user created");
                return Ok(user);
            }
            if self.store.get(name_key.as_bytes()).await?.is_some() {
                return Err(IdentityError::NameTaken {
                    kind: "user",
                    name: name.to_owned(),
                });
            }
            // Otherwise the default project changed under us: look again.
        }
        Err(IdentityError::Conflict("creating a user"))
    }

    /// The user, unless absent or being deleted.
    pub async fn get_user(&self, id: &str) -> IdentityResult<Option<User>> {
        Ok(self.active_user(id).await?.map(|(r, _)| r.user))
    }

    /// The user named `name`.
    pub async fn find_user(&self, name: &str) -> IdentityResult<Option<User>> {
        keys::check_name("user name", name)?;
        Ok(self.user_by_name(name).await?.map(|(r, _)| r.user))
    }

    async fn user_by_name(&self, name: &str) -> IdentityResult<Option<(UserRecord, Versioned)>> {
        let Some(id) = self.store.get(keys::user_name(name).as_bytes()).await? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id.value).into_owned();
        self.active_user(&id).await
    }

    /// Up to `limit` users in id order after id `after` (see [`Self::list_projects`]).
    pub async fn list_users(&self, after: Option<&str>, limit: usize) -> IdentityResult<Vec<User>> {
        Ok(self
            .list_active::<UserRecord>(&keys::users(), after, limit, |r| r.state == State::Active)
            .await?
            .into_iter()
            .map(|r| r.user)
            .collect())
    }

    /// Deletes a user with its name, role assignments, S3 keys and Swift tokens. `false` if
    /// there was no such user. Calling it again finishes an interrupted delete.
    pub async fn delete_user(&self, id: &str) -> IdentityResult<bool> {
        keys::check_id("user id", id)?;
        let key = keys::user(id);
        let Some(mark_rev) = self
            .mark_deleting::<UserRecord>(&key, |r| &mut r.state)
            .await?
        else {
            return Ok(false);
        };
        // Reverse assignments: key …/assignments-by-user/<user>/<project>/<role>.
        self.sweep(&keys::assignments_by_user(id), |kv| {
            let (project, role) = keys::last_two_components(&kv.key)?;
            let role: Role = role.parse().ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::assignment(project, id, role).into_bytes(),
            ])
        })
        .await?;
        self.sweep(&keys::credentials_by_user(id), |kv| {
            let ak = keys::last_component(&kv.key)?;
            let project: RefRecord = decode(&kv.key, &kv.value).ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::credential(ak).into_bytes(),
                keys::credential_by_project(&project.id, ak).into_bytes(),
            ])
        })
        .await?;
        self.sweep(&keys::tokens_by_user(id), |kv| {
            let digest = keys::last_component(&kv.key)?;
            let project: RefRecord = decode(&kv.key, &kv.value).ok()?;
            Some(vec![
                kv.key.to_vec(),
                keys::token(digest).into_bytes(),
                keys::token_by_project(&project.id, digest).into_bytes(),
            ])
        })
        .await?;
        self.finish_delete::<UserRecord>(&key, mark_rev, |r| keys::user_name(&r.user.name))
            .await?;
        tracing::info!(user = id, "user deleted");
        Ok(true)
    }

    /// Replaces the user's password hash.
    pub async fn set_password(&self, user_id: &str, password: &str) -> IdentityResult<()> {
        check_password(password)?;
        let password_hash = self.hash(password).await?;
        let key = keys::user(user_id);
        for _ in 0..limits::CAS_RETRIES_MAX {
            let (mut rec, v) = self
                .active_user(user_id)
                .await?
                .ok_or_else(|| not_found("user", user_id))?;
            rec.password_hash = password_hash.clone();
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    v.mod_revision,
                )])
                .and_then([TxnOp::put(key.clone(), encode(&key, &rec)?)]);
            if self.txn(txn).await? {
                tracing::info!(user = user_id, "password changed");
                return Ok(());
            }
        }
        Err(IdentityError::Conflict("setting a password"))
    }

    async fn hash(&self, password: &str) -> IdentityResult<String> {
        let params = self.options.password_params;
        let password = password.as_bytes().to_vec();
        blocking(move || crypto::hash_password(params, &password)).await?
    }

    // ---- roles ----

    /// Grants `role` on `project` to `user` (idempotent).
    pub async fn grant_role(
        &self,
        user_id: &str,
        project_id: &str,
        role: Role,
    ) -> IdentityResult<()> {
        for _ in 0..limits::CAS_RETRIES_MAX {
            let (_, uv) = self
                .active_user(user_id)
                .await?
                .ok_or_else(|| not_found("user", user_id))?;
            let (_, pv) = self
                .active_project(project_id)
                .await?
                .ok_or_else(|| not_found("project", project_id))?;
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(keys::user(user_id), CompareOp::Equal, uv.mod_revision),
                    Compare::mod_revision(
                        keys::project(project_id),
                        CompareOp::Equal,
                        pv.mod_revision,
                    ),
                ])
                .and_then([
                    TxnOp::put(
                        keys::assignment(project_id, user_id, role),
                        ASSIGNMENT_VALUE,
                    ),
                    TxnOp::put(
                        keys::assignment_by_user(user_id, project_id, role),
                        ASSIGNMENT_VALUE,
                    ),
                ]);
            if self.txn(txn).await? {
                tracing::info!(user = user_id, project = project_id, %role, "role granted");
                return Ok(());
            }
        }
        Err(IdentityError::Conflict("granting a role"))
    }

    /// Revokes `role`; `true` if it was held.
    pub async fn revoke_role(
        &self,
        user_id: &str,
        project_id: &str,
        role: Role,
    ) -> IdentityResult<bool> {
        keys::check_id("user id", user_id)?;
        keys::check_id("project id", project_id)?;
        let resp = self
            .store
            .txn(Txn::new().and_then([
                TxnOp::delete(keys::assignment(project_id, user_id, role)),
                TxnOp::delete(keys::assignment_by_user(user_id, project_id, role)),
            ]))
            .await?;
        let held = matches!(resp.results.first(), Some(crate::TxnOpResult::Delete(true)));
        if held {
            tracing::info!(user = user_id, project = project_id, %role, "role revoked");
        }
        Ok(held)
    }

    /// The user's roles on the project, sorted.
    pub async fn roles_of(&self, user_id: &str, project_id: &str) -> IdentityResult<Vec<Role>> {
        keys::check_id("user id", user_id)?;
        keys::check_id("project id", project_id)?;
        let kvs = self
            .range_prefix(&keys::assignments_of(project_id, user_id), Role::ALL.len())
            .await?;
        let mut roles: Vec<Role> = kvs
            .iter()
            .filter_map(|kv| keys::last_component(&kv.key)?.parse().ok())
            .collect();
        roles.sort();
        Ok(roles)
    }

    /// Every (project id, role) the user holds, in project id order (at most
    /// [`LIST_LIMIT_MAX`](limits::LIST_LIMIT_MAX)).
    pub async fn assignments_of_user(&self, user_id: &str) -> IdentityResult<Vec<(String, Role)>> {
        keys::check_id("user id", user_id)?;
        let kvs = self
            .range_prefix(&keys::assignments_by_user(user_id), limits::LIST_LIMIT_MAX)
            .await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let (p, r) = keys::last_two_components(&kv.key)?;
                Some((p.to_owned(), r.parse().ok()?))
            })
            .collect())
    }

    /// One assignment key of the user on the project, to compare its existence in a
    /// transaction (so a credential is only created while some role is held).
    async fn some_assignment(&self, user_id: &str, project_id: &str) -> IdentityResult<String> {
        let role = self
            .roles_of(user_id, project_id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| IdentityError::NoRoleOnProject {
                user: user_id.to_owned(),
                project: project_id.to_owned(),
            })?;
        Ok(keys::assignment(project_id, user_id, role))
    }

    /// The principal for a user on a project, if both are active.
    async fn principal(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> IdentityResult<Option<Principal>> {
        let Some((user, _)) = self.active_user(user_id).await? else {
            return Ok(None);
        };
        if self.active_project(project_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(Principal {
            user_id: user_id.to_owned(),
            user_name: user.user.name,
            project_id: Some(project_id.to_owned()),
            roles: self.roles_of(user_id, project_id).await?,
        }))
    }

    // ---- password authentication ----

    /// Checks a password. Scoped to the user's default project if it exists and the user has
    /// a role there, else unscoped. Wrong password and unknown user fail alike, after the same
    /// argon2 work.
    pub async fn authenticate_password(
        &self,
        user_name: &str,
        password: &str,
    ) -> IdentityResult<Principal> {
        let user = self.verify_login(user_name, password).await?;
        let mut principal = Principal {
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            project_id: None,
            roles: Vec::new(),
        };
        if let Some(p) = &user.default_project
            && let Some(scoped) = self.principal(&user.id, p).await?
            && !scoped.roles.is_empty()
        {
            principal = scoped;
        }
        Ok(principal)
    }

    /// Checks a password and scopes the result to `project_id`, on which the user must hold
    /// a role (`NoRoleOnProject` otherwise — reported only after the password checked out).
    pub async fn authenticate_password_scoped(
        &self,
        user_name: &str,
        password: &str,
        project_id: &str,
    ) -> IdentityResult<Principal> {
        let user = self.verify_login(user_name, password).await?;
        let no_role = || IdentityError::NoRoleOnProject {
            user: user.id.clone(),
            project: project_id.to_owned(),
        };
        let principal = self
            .principal(&user.id, project_id)
            .await?
            .ok_or_else(no_role)?;
        if principal.roles.is_empty() {
            return Err(no_role());
        }
        Ok(principal)
    }

    async fn verify_login(&self, user_name: &str, password: &str) -> IdentityResult<User> {
        let found = if keys::check_name("user name", user_name).is_ok() {
            self.user_by_name(user_name).await?
        } else {
            None
        };
        if found.is_none() {
            // A known user costs two reads (name index, record); do the second read for an
            // unknown one too, so store latency doesn't tell them apart either.
            self.store
                .get(keys::user(&"0".repeat(32)).as_bytes())
                .await?;
        }
        let (phc, user) = match found {
            Some((rec, _)) => (rec.password_hash, Some(rec.user)),
            None => (self.dummy_hash().await?, None),
        };
        // Over-long passwords are refused without hashing, whoever the user: it reveals
        // nothing about the user and keeps argon2 from being fed megabytes.
        if password.len() > limits::PASSWORD_MAX_BYTES {
            return Err(IdentityError::AuthenticationFailed);
        }
        let password = password.as_bytes().to_vec();
        let ok = blocking(move || crypto::verify_password(&phc, &password)).await?;
        match user {
            Some(u) if ok => Ok(u),
            _ => {
                tracing::info!(user_name, "password authentication failed");
                Err(IdentityError::AuthenticationFailed)
            }
        }
    }

    async fn dummy_hash(&self) -> IdentityResult<String> {
        if let Some(h) = self.dummy_hash.get() {
            return Ok(h.clone());
        }
        let params = self.options.password_params;
        let random = crypto::new_id();
        let h = blocking(move || crypto::hash_password(params, random.as_bytes())).await??;
        Ok(self.dummy_hash.get_or_init(|| h).clone())
    }

    // ---- S3 keys ----

    /// Creates an S3 key pair for the user in the project, on which the user must hold a
    /// role. The secret is returned only here; the store keeps it encrypted.
    pub async fn create_s3_key(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> IdentityResult<S3Credential> {
        let held = self
            .range_prefix(
                &keys::credentials_by_user(user_id),
                limits::S3_KEYS_PER_USER_MAX,
            )
            .await?;
        if held.len() >= limits::S3_KEYS_PER_USER_MAX {
            return Err(IdentityError::Invalid {
                what: "S3 key count",
                reason: format!("user already has {} keys", limits::S3_KEYS_PER_USER_MAX),
            });
        }
        for _ in 0..limits::CAS_RETRIES_MAX {
            let (_, uv) = self
                .active_user(user_id)
                .await?
                .ok_or_else(|| not_found("user", user_id))?;
            let (_, pv) = self
                .active_project(project_id)
                .await?
                .ok_or_else(|| not_found("project", project_id))?;
            let assignment = self.some_assignment(user_id, project_id).await?;
            let access_key = crypto::new_access_key();
            let secret_key = crypto::new_secret_key();
            let sealed = crypto::seal(
                &self.master_key,
                secret_key.as_bytes(),
                &s3_aad(&access_key, user_id, project_id),
            )?;
            let key = keys::credential(&access_key);
            let record = S3CredentialRecord {
                format: FORMAT,
                access_key: access_key.clone(),
                user_id: user_id.to_owned(),
                project_id: project_id.to_owned(),
                created_at_unix_ms: self.now_ms(),
                key_id: self.master_key.key_id(),
                cipher: CIPHER_NAME.to_owned(),
                nonce: crypto::hex(&sealed.nonce),
                ciphertext: crypto::hex(&sealed.ciphertext),
            };
            let by_user = keys::credential_by_user(user_id, &access_key);
            let by_project = keys::credential_by_project(project_id, &access_key);
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(keys::user(user_id), CompareOp::Equal, uv.mod_revision),
                    Compare::mod_revision(
                        keys::project(project_id),
                        CompareOp::Equal,
                        pv.mod_revision,
                    ),
                    Compare::create_revision(assignment, CompareOp::Greater, 0),
                    Compare::absent(key.clone()),
                ])
                .and_then([
                    TxnOp::put(key.clone(), encode(&key, &record)?),
                    TxnOp::put(
                        by_user.clone(),
                        encode(
                            &by_user,
                            &RefRecord {
                                format: FORMAT,
                                id: project_id.to_owned(),
                            },
                        )?,
                    ),
                    TxnOp::put(
                        by_project.clone(),
                        encode(
                            &by_project,
                            &RefRecord {
                                format: FORMAT,
                                id: user_id.to_owned(),
                            },
                        )?,
                    ),
                ]);
            if self.txn(txn).await? {
                tracing::info!(
                    user = user_id,
                    project = project_id,
                    access_key,
                    "S3 key created"
                );
                return Ok(S3Credential {
                    access_key,
                    secret_key,
                    user_id: user_id.to_owned(),
                    project_id: project_id.to_owned(),
                });
            }
        }
        Err(IdentityError::Conflict("creating an S3 key"))
    }

    /// The principal and decrypted secret for an access key, for SigV4 verification. `None`
    /// if the key, its user or its project does not exist. `WrongMasterKey` if the secret was
    /// encrypted under another master key; `Tampered` if it fails authentication.
    pub async fn s3_secret(
        &self,
        access_key: &str,
    ) -> IdentityResult<Option<(Principal, S3Secret)>> {
        if !crypto::is_access_key(access_key) {
            return Ok(None);
        }
        let key = keys::credential(access_key);
        let Some((rec, _)) = self.get_record::<S3CredentialRecord>(&key).await? else {
            return Ok(None);
        };
        let store_key_id = self.master_key.key_id();
        if rec.key_id != store_key_id {
            return Err(IdentityError::WrongMasterKey {
                access_key: access_key.to_owned(),
                record_key_id: rec.key_id,
                store_key_id,
            });
        }
        let corrupt = |reason: &str| IdentityError::Corrupt {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        if rec.cipher != CIPHER_NAME {
            return Err(corrupt("unknown cipher"));
        }
        let nonce = crypto::unhex(&rec.nonce)
            .and_then(|n| <[u8; crypto::NONCE_BYTES]>::try_from(n).ok())
            .ok_or_else(|| corrupt("bad nonce"))?;
        let ciphertext = crypto::unhex(&rec.ciphertext).ok_or_else(|| corrupt("bad ciphertext"))?;
        let plain = crypto::open(
            &self.master_key,
            &crypto::Sealed { nonce, ciphertext },
            &s3_aad(access_key, &rec.user_id, &rec.project_id),
        )
        .ok_or_else(|| IdentityError::Tampered(access_key.to_owned()))?;
        let secret = String::from_utf8(plain).map_err(|_| corrupt("secret is not UTF-8"))?;
        Ok(self
            .principal(&rec.user_id, &rec.project_id)
            .await?
            .map(|p| (p, S3Secret(secret))))
    }

    /// The user's S3 keys (without secrets), in access key order.
    pub async fn list_s3_keys(&self, user_id: &str) -> IdentityResult<Vec<S3KeyInfo>> {
        keys::check_id("user id", user_id)?;
        let kvs = self
            .range_prefix(
                &keys::credentials_by_user(user_id),
                limits::S3_KEYS_PER_USER_MAX * 2,
            )
            .await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Some(ak) = keys::last_component(&kv.key) else {
                continue;
            };
            if let Some((rec, _)) = self
                .get_record::<S3CredentialRecord>(&keys::credential(ak))
                .await?
            {
                out.push(S3KeyInfo {
                    access_key: rec.access_key,
                    user_id: rec.user_id,
                    project_id: rec.project_id,
                    created_at_unix_ms: rec.created_at_unix_ms,
                });
            }
        }
        Ok(out)
    }

    /// Deletes an S3 key; `true` if it existed.
    pub async fn delete_s3_key(&self, access_key: &str) -> IdentityResult<bool> {
        if !crypto::is_access_key(access_key) {
            return Ok(false);
        }
        let key = keys::credential(access_key);
        for _ in 0..limits::CAS_RETRIES_MAX {
            let Some((rec, v)) = self.get_record::<S3CredentialRecord>(&key).await? else {
                return Ok(false);
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    v.mod_revision,
                )])
                .and_then([
                    TxnOp::delete(key.clone()),
                    TxnOp::delete(keys::credential_by_user(&rec.user_id, access_key)),
                    TxnOp::delete(keys::credential_by_project(&rec.project_id, access_key)),
                ]);
            if self.txn(txn).await? {
                tracing::info!(access_key, "S3 key deleted");
                return Ok(true);
            }
        }
        Err(IdentityError::Conflict("deleting an S3 key"))
    }

    // ---- Swift tokens ----

    /// Issues a Swift token for the user on the project (the user must hold a role there),
    /// valid for `ttl` (1 s – 24 h). The token is returned only here; the store keeps its
    /// SHA-256 on a lease of the same TTL, so it disappears by itself.
    pub async fn issue_swift_token(
        &self,
        user_id: &str,
        project_id: &str,
        ttl: Duration,
    ) -> IdentityResult<SwiftToken> {
        let ttl_ms = ms(ttl);
        if !(limits::TOKEN_TTL_MIN_MS..=limits::TOKEN_TTL_MAX_MS).contains(&ttl_ms) {
            return Err(IdentityError::Invalid {
                what: "token TTL",
                reason: format!(
                    "{ttl_ms} ms not in {}..={} ms",
                    limits::TOKEN_TTL_MIN_MS,
                    limits::TOKEN_TTL_MAX_MS
                ),
            });
        }
        // The lease is whole seconds (rounded up): it may outlive the token slightly, which
        // validation covers by checking the expiry itself.
        let lease_ttl = Duration::from_secs(lease_ttl_secs(ttl)?);
        for _ in 0..limits::CAS_RETRIES_MAX {
            let (_, uv) = self
                .active_user(user_id)
                .await?
                .ok_or_else(|| not_found("user", user_id))?;
            let (_, pv) = self
                .active_project(project_id)
                .await?
                .ok_or_else(|| not_found("project", project_id))?;
            let assignment = self.some_assignment(user_id, project_id).await?;
            let token = crypto::new_token();
            let digest = crypto::token_digest(&token);
            let now = self.now_ms();
            let record = TokenRecord {
                format: FORMAT,
                user_id: user_id.to_owned(),
                project_id: project_id.to_owned(),
                issued_at_unix_ms: now,
                expires_at_unix_ms: now.saturating_add(ttl_ms),
            };
            let key = keys::token(&digest);
            let by_user = keys::token_by_user(user_id, &digest);
            let by_project = keys::token_by_project(project_id, &digest);
            let lease = self.store.grant(lease_ttl).await?;
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(keys::user(user_id), CompareOp::Equal, uv.mod_revision),
                    Compare::mod_revision(
                        keys::project(project_id),
                        CompareOp::Equal,
                        pv.mod_revision,
                    ),
                    Compare::create_revision(assignment, CompareOp::Greater, 0),
                    Compare::absent(key.clone()),
                ])
                .and_then([
                    TxnOp::put_with_lease(key.clone(), encode(&key, &record)?, lease),
                    TxnOp::put_with_lease(
                        by_user.clone(),
                        encode(
                            &by_user,
                            &RefRecord {
                                format: FORMAT,
                                id: project_id.to_owned(),
                            },
                        )?,
                        lease,
                    ),
                    TxnOp::put_with_lease(
                        by_project.clone(),
                        encode(
                            &by_project,
                            &RefRecord {
                                format: FORMAT,
                                id: user_id.to_owned(),
                            },
                        )?,
                        lease,
                    ),
                ]);
            let committed = self.txn(txn).await;
            match committed {
                Ok(true) => {
                    tracing::info!(user = user_id, project = project_id, "Swift token issued");
                    return Ok(SwiftToken {
                        token,
                        expires_at_unix_ms: record.expires_at_unix_ms,
                    });
                }
                other => {
                    // The lease holds nothing: end it now rather than at its TTL.
                    self.revoke_lease(lease).await;
                    other?;
                }
            }
        }
        Err(IdentityError::Conflict("issuing a Swift token"))
    }

    async fn revoke_lease(&self, lease: crate::LeaseId) {
        match self.store.revoke(lease).await {
            Ok(()) | Err(Error::LeaseNotFound(_)) => {}
            // Not fatal: the lease ends at its TTL anyway.
            Err(e) => tracing::warn!(%lease, error = %e, "revoking a token lease failed"),
        }
    }

    /// The principal a Swift token stands for, or `None` if it is unknown, expired (by the
    /// injected clock, even if the store has not yet removed it) or revoked, or its user or
    /// project is gone.
    pub async fn validate_swift_token(&self, token: &str) -> IdentityResult<Option<Principal>> {
        let Some(rec) = self.token_record(token).await?.map(|(r, _)| r) else {
            return Ok(None);
        };
        if self.now_ms() >= rec.expires_at_unix_ms {
            return Ok(None);
        }
        self.principal(&rec.user_id, &rec.project_id).await
    }

    async fn token_record(&self, token: &str) -> IdentityResult<Option<(TokenRecord, Versioned)>> {
        // Cheap shape check first; an arbitrary header value never reaches the store.
        if !token.starts_with(crypto::TOKEN_PREFIX)
            || token.len() != crypto::TOKEN_PREFIX.len() + 64
        {
            return Ok(None);
        }
        self.get_record::<TokenRecord>(&keys::token(&crypto::token_digest(token)))
            .await
    }

    /// Swift v1 auth (tempauth style: `X-Auth-User: <project>:<user>`, `X-Auth-Key:
    /// <password>`): checks the password, scopes it to the project named `project_name` (a
    /// role there is required) and issues a token for `ttl`. Wrong password, unknown user and
    /// unknown project all give `AuthenticationFailed`, as tempauth answers 401 for each.
    pub async fn swift_v1_auth(
        &self,
        project_name: &str,
        user_name: &str,
        password: &str,
        ttl: Duration,
    ) -> IdentityResult<(SwiftToken, Principal)> {
        let user = self.verify_login(user_name, password).await?;
        let project = match keys::check_name("project name", project_name) {
            Ok(()) => self.find_project(project_name).await?,
            Err(_) => None,
        }
        .ok_or(IdentityError::AuthenticationFailed)?;
        let principal = self
            .principal(&user.id, &project.id)
            .await?
            .filter(|p| !p.roles.is_empty())
            .ok_or_else(|| IdentityError::NoRoleOnProject {
                user: user.id.clone(),
                project: project.id.clone(),
            })?;
        let token = self.issue_swift_token(&user.id, &project.id, ttl).await?;
        Ok((token, principal))
    }

    /// Revokes a Swift token; `true` if it was live.
    pub async fn revoke_swift_token(&self, token: &str) -> IdentityResult<bool> {
        let Some((rec, v)) = self.token_record(token).await? else {
            return Ok(false);
        };
        let digest = crypto::token_digest(token);
        let key = keys::token(&digest);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                v.mod_revision,
            )])
            .and_then([
                TxnOp::delete(key),
                TxnOp::delete(keys::token_by_user(&rec.user_id, &digest)),
                TxnOp::delete(keys::token_by_project(&rec.project_id, &digest)),
            ]);
        let revoked = self.txn(txn).await?;
        if let Some(lease) = v.lease {
            self.revoke_lease(lease).await;
        }
        Ok(revoked)
    }
}

/// What an S3 secret's ciphertext is bound to: moving it to another record fails to decrypt.
fn s3_aad(access_key: &str, user_id: &str, project_id: &str) -> Vec<u8> {
    format!("cairn s3 secret v1\0{access_key}\0{user_id}\0{project_id}").into_bytes()
}

fn check_password(password: &str) -> IdentityResult<()> {
    let n = password.len();
    if !(limits::PASSWORD_MIN_BYTES..=limits::PASSWORD_MAX_BYTES).contains(&n) {
        return Err(IdentityError::Invalid {
            what: "password",
            reason: format!(
                "length {n} not in {}..={} bytes",
                limits::PASSWORD_MIN_BYTES,
                limits::PASSWORD_MAX_BYTES
            ),
        });
    }
    Ok(())
}
