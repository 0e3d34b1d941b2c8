//! The identity store against both backends: the embedded store with a manual clock (token
//! expiry is instant) and a real etcd per test (real time, 1 s token TTLs). Password hashing
//! uses the test-only minimal argon2 costs so the suite stays fast.
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_meta::identity::{IDENTITY_PREFIX, IdentityOptions, PasswordParams, Principal, Role};
use cairn_meta::{
    Clock, EmbeddedStore, IdentityError, IdentityMasterKey, IdentityStore, KeyRange, ManualClock,
    MetaStore,
};

/// How time passes for a backend, plus what must outlive the store.
struct Env {
    manual: Option<ManualClock>,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Env {
    async fn pass(&self, d: Duration) {
        match &self.manual {
            Some(c) => c.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }
}

fn options(clock: Arc<dyn Clock>) -> IdentityOptions {
    IdentityOptions {
        password_params: PasswordParams::insecure_fast_for_tests(),
        clock,
    }
}

async fn embedded() -> (EmbeddedStore, Arc<dyn Clock>, Env) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let store = EmbeddedStore::open_with_clock(dir.path(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let env = Env {
        manual: Some(clock.clone()),
        _guard: Box::new(dir),
    };
    (store, Arc::new(clock), env)
}

#[cfg(feature = "etcd")]
mod etcd_backend {
    use std::sync::Arc;

    use cairn_meta::testing::EtcdProcess;
    use cairn_meta::{Clock, EtcdStore, SystemClock};

    use super::Env;

    pub(super) async fn etcd() -> (EtcdStore, Arc<dyn Clock>, Env) {
        let (process, store) = EtcdProcess::start().await;
        let env = Env {
            manual: None,
            _guard: Box::new(process),
        };
        (store, Arc::new(SystemClock), env)
    }
}

/// One `#[tokio::test]` per case for a backend factory.
macro_rules! identity_tests {
    ($factory:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, clock, env) = $factory().await;
                super::$case(store, clock, env).await;
            }
        )*
    };
}

macro_rules! all_cases {
    ($factory:path) => {
        identity_tests!($factory; crud_and_paging, concurrent_creation_has_one_winner,
            password_authentication, nothing_secret_at_rest, s3_keys_round_trip,
            swift_tokens_validate_expire_revoke, role_assignments, cascading_deletes,
            interrupted_delete_is_finished_by_deleting_again,
            delete_racing_writers_leaves_nothing_behind);
    };
}

mod embedded_backend {
    all_cases!(super::embedded);
}

#[cfg(feature = "etcd")]
mod etcd_tests {
    all_cases!(super::etcd_backend::etcd);
}

fn identity<S: MetaStore>(store: S, clock: Arc<dyn Clock>, key: [u8; 32]) -> IdentityStore<S> {
    IdentityStore::with_options(store, key, options(clock))
}

const KEY: [u8; 32] = [7u8; 32];

/// Every key-value under the identity prefix.
async fn raw_identity<S: MetaStore>(store: &S) -> Vec<(String, String)> {
    store
        .range(&KeyRange::prefix(IDENTITY_PREFIX), 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

async fn crud_and_paging<S: MetaStore>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let id = identity(store, clock, KEY);
    let mut projects = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        projects.push(id.create_project(name, "test project").await.unwrap());
    }
    let p = &projects[0];
    assert_eq!(id.get_project(&p.id).await.unwrap().as_ref(), Some(p));
    assert_eq!(id.find_project("alpha").await.unwrap().as_ref(), Some(p));
    assert_eq!(p.swift_account(), format!("AUTH_{}", p.id));
    assert!(matches!(
        id.create_project("alpha", "").await,
        Err(IdentityError::NameTaken { .. })
    ));
    for bad in ["", "a/b", "-x", "a b", "x:y"] {
        assert!(
            matches!(
                id.create_project(bad, "").await,
                Err(IdentityError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(id.create_project("ok", "bell\u{7}").await.is_err());

    // Paging one at a time visits every project once, in id order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = id.list_projects(after.as_deref(), 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page);
    }
    let mut expected = projects.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(seen, expected);
    assert!(id.list_projects(None, 0).await.is_err());

    let u = id
        .create_user("alice", "password-1", Some(&p.id))
        .await
        .unwrap();
    assert_eq!(id.get_user(&u.id).await.unwrap().as_ref(), Some(&u));
    assert_eq!(id.find_user("alice").await.unwrap().as_ref(), Some(&u));
    assert_eq!(id.list_users(None, 10).await.unwrap(), vec![u.clone()]);
    assert!(matches!(
        id.create_user("alice", "password-2", None).await,
        Err(IdentityError::NameTaken { .. })
    ));
    assert!(matches!(
        id.create_user("bob", "short", None).await,
        Err(IdentityError::Invalid { .. })
    ));
    let missing = "0".repeat(32);
    assert!(matches!(
        id.create_user("bob", "password-2", Some(&missing)).await,
        Err(IdentityError::NotFound { .. })
    ));

    assert!(id.delete_user(&u.id).await.unwrap());
    assert!(!id.delete_user(&u.id).await.unwrap());
    assert_eq!(id.get_user(&u.id).await.unwrap(), None);
    assert_eq!(id.find_user("alice").await.unwrap(), None);
    for p in &projects {
        assert!(id.delete_project(&p.id).await.unwrap());
    }
    assert!(id.list_projects(None, 10).await.unwrap().is_empty());
    // Names are free again once deleted.
    id.create_project("alpha", "again").await.unwrap();
    id.create_user("alice", "password-1", None).await.unwrap();
}

async fn concurrent_creation_has_one_winner<S: MetaStore + Clone>(
    store: S,
    clock: Arc<dyn Clock>,
    _env: Env,
) {
    let id = identity(store, clock, KEY);
    for round in 0..5 {
        let name = format!("race{round}");
        let (a, b) = {
            let (ia, ib) = (id.clone(), id.clone());
            let (na, nb) = (name.clone(), name.clone());
            let ta = tokio::spawn(async move { ia.create_project(&na, "a").await });
            let tb = tokio::spawn(async move { ib.create_project(&nb, "b").await });
            (ta.await.unwrap(), tb.await.unwrap())
        };
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        assert!(
            [a, b]
                .iter()
                .any(|r| matches!(r, Err(IdentityError::NameTaken { .. })))
        );
        let (ia, ib) = (id.clone(), id.clone());
        let (na, nb) = (name.clone(), name.clone());
        let ta = tokio::spawn(async move { ia.create_user(&na, "password-a", None).await });
        let tb = tokio::spawn(async move { ib.create_user(&nb, "password-b", None).await });
        let (a, b) = (ta.await.unwrap(), tb.await.unwrap());
        assert_eq!(
            [&a, &b].iter().filter(|r| r.is_ok()).count(),
            1,
            "users round {round}"
        );
    }
    assert_eq!(id.list_projects(None, 100).await.unwrap().len(), 5);
    assert_eq!(id.list_users(None, 100).await.unwrap().len(), 5);
}

async fn password_authentication<S: MetaStore>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let id = identity(store, clock, KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let other = id.create_project("other", "").await.unwrap();
    let u = id
        .create_user("alice", "correct horse", Some(&p.id))
        .await
        .unwrap();

    // No role on the default project yet: unscoped.
    let unscoped = id
        .authenticate_password("alice", "correct horse")
        .await
        .unwrap();
    assert_eq!(unscoped.project_id, None);
    id.grant_role(&u.id, &p.id, Role::Member).await.unwrap();
    let scoped = id
        .authenticate_password("alice", "correct horse")
        .await
        .unwrap();
    assert_eq!(
        scoped,
        Principal {
            user_id: u.id.clone(),
            user_name: "alice".into(),
            project_id: Some(p.id.clone()),
            roles: vec![Role::Member],
        }
    );

    let wrong = id.authenticate_password("alice", "wrong horse").await;
    let unknown = id.authenticate_password("mallory", "correct horse").await;
    let invalid_name = id.authenticate_password("no/such", "correct horse").await;
    for r in [&wrong, &unknown, &invalid_name] {
        assert!(
            matches!(r, Err(IdentityError::AuthenticationFailed)),
            "{r:?}"
        );
    }
    // Same error text: nothing tells an unknown user from a wrong password.
    assert_eq!(
        wrong.unwrap_err().to_string(),
        unknown.unwrap_err().to_string()
    );

    assert!(matches!(
        id.authenticate_password_scoped("alice", "correct horse", &other.id)
            .await,
        Err(IdentityError::NoRoleOnProject { .. })
    ));
    assert!(matches!(
        id.authenticate_password_scoped("alice", "wrong horse", &p.id)
            .await,
        Err(IdentityError::AuthenticationFailed)
    ));
    id.authenticate_password_scoped("alice", "correct horse", &p.id)
        .await
        .unwrap();

    id.set_password(&u.id, "battery staple").await.unwrap();
    assert!(
        id.authenticate_password("alice", "correct horse")
            .await
            .is_err()
    );
    id.authenticate_password("alice", "battery staple")
        .await
        .unwrap();
}

async fn nothing_secret_at_rest<S: MetaStore + Clone>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let password = "plaintext-password-42";
    let raw = store.clone();
    let id = identity(store, clock, KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let u = id.create_user("alice", password, None).await.unwrap();
    id.grant_role(&u.id, &p.id, Role::Admin).await.unwrap();
    let cred = id.create_s3_key(&u.id, &p.id).await.unwrap();
    let token = id
        .issue_swift_token(&u.id, &p.id, Duration::from_secs(60))
        .await
        .unwrap();

    let kvs = raw_identity(&raw).await;
    assert!(!kvs.is_empty());
    for (k, v) in &kvs {
        for secret in [password, &cred.secret_key, &token.token] {
            assert!(
                !k.contains(secret) && !v.contains(secret),
                "secret at rest in {k}"
            );
        }
    }
    let user_value = &kvs
        .iter()
        .find(|(k, _)| k.ends_with(&format!("/users/{}", u.id)))
        .unwrap()
        .1;
    assert!(user_value.contains("$argon2id$v=19$"), "{user_value}");
    assert!(user_value.contains("\"format\":1"));

    // Debug output never shows secrets either.
    let debug = format!("{cred:?} {token:?} {id:?}");
    assert!(!debug.contains(&cred.secret_key) && !debug.contains(&token.token));
    let (_, secret) = id.s3_secret(&cred.access_key).await.unwrap().unwrap();
    assert!(!format!("{secret:?}").contains(&cred.secret_key));
}

async fn s3_keys_round_trip<S: MetaStore + Clone>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let id = identity(store.clone(), clock.clone(), KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let u = id.create_user("alice", "password-1", None).await.unwrap();
    assert!(matches!(
        id.create_s3_key(&u.id, &p.id).await,
        Err(IdentityError::NoRoleOnProject { .. })
    ));
    id.grant_role(&u.id, &p.id, Role::Member).await.unwrap();
    let cred = id.create_s3_key(&u.id, &p.id).await.unwrap();
    assert_eq!(cred.access_key.len(), 20);
    assert!(
        cred.access_key
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert_eq!(cred.secret_key.len(), 40);

    let (principal, secret) = id.s3_secret(&cred.access_key).await.unwrap().unwrap();
    assert_eq!(secret.expose(), cred.secret_key);
    assert_eq!(principal.user_id, u.id);
    assert_eq!(principal.project_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(principal.roles, vec![Role::Member]);
    assert_eq!(id.s3_secret("AKIANOSUCHKEY0000000").await.unwrap(), None);
    assert_eq!(id.s3_secret("not a key").await.unwrap(), None);

    let listed = id.list_s3_keys(&u.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].access_key, cred.access_key);

    // Another master key: a clear error, never garbage.
    let wrong = identity(store.clone(), clock.clone(), [9u8; 32]);
    let err = wrong.s3_secret(&cred.access_key).await.unwrap_err();
    assert!(
        matches!(err, IdentityError::WrongMasterKey { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong identity master key"));

    // A ciphertext moved to or altered in the record fails authentication.
    let key = format!("{IDENTITY_PREFIX}credentials/{}", cred.access_key);
    let v = store.get(key.as_bytes()).await.unwrap().unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&v.value).unwrap();
    let ct = rec["ciphertext"].as_str().unwrap().to_owned();
    let flipped = if ct.starts_with('0') { "1" } else { "0" };
    rec["ciphertext"] = serde_json::Value::String(format!("{flipped}{}", &ct[1..]));
    store
        .put(
            key.as_bytes(),
            Bytes::from(serde_json::to_vec(&rec).unwrap()),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(
        id.s3_secret(&cred.access_key).await,
        Err(IdentityError::Tampered(_))
    ));

    let second = id.create_s3_key(&u.id, &p.id).await.unwrap();
    assert!(id.delete_s3_key(&cred.access_key).await.unwrap());
    assert!(!id.delete_s3_key(&cred.access_key).await.unwrap());
    assert_eq!(id.s3_secret(&cred.access_key).await.unwrap(), None);
    let listed = id.list_s3_keys(&u.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].access_key, second.access_key);
    // Revoking every role leaves the key resolvable but powerless.
    id.revoke_role(&u.id, &p.id, Role::Member).await.unwrap();
    let (principal, _) = id.s3_secret(&second.access_key).await.unwrap().unwrap();
    assert!(principal.roles.is_empty());
}

async fn swift_tokens_validate_expire_revoke<S: MetaStore + Clone>(
    store: S,
    clock: Arc<dyn Clock>,
    env: Env,
) {
    let id = identity(store.clone(), clock.clone(), KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let u = id.create_user("alice", "password-1", None).await.unwrap();
    assert!(matches!(
        id.issue_swift_token(&u.id, &p.id, Duration::from_secs(60))
            .await,
        Err(IdentityError::NoRoleOnProject { .. })
    ));
    id.grant_role(&u.id, &p.id, Role::Reader).await.unwrap();
    assert!(
        id.issue_swift_token(&u.id, &p.id, Duration::from_millis(10))
            .await
            .is_err()
    );

    let long = id
        .issue_swift_token(&u.id, &p.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(long.token.starts_with("AUTH_tk"));
    let principal = id.validate_swift_token(&long.token).await.unwrap().unwrap();
    assert_eq!(principal.user_id, u.id);
    assert_eq!(principal.project_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(principal.roles, vec![Role::Reader]);
    assert_eq!(id.validate_swift_token("AUTH_tkbogus").await.unwrap(), None);
    assert!(id.revoke_swift_token(&long.token).await.unwrap());
    assert!(!id.revoke_swift_token(&long.token).await.unwrap());
    assert_eq!(id.validate_swift_token(&long.token).await.unwrap(), None);

    // Swift v1 auth: project:user and password.
    let (v1, v1_principal) = id
        .swift_v1_auth("proj", "alice", "password-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(v1_principal.roles, vec![Role::Reader]);
    assert_eq!(
        id.validate_swift_token(&v1.token).await.unwrap(),
        Some(v1_principal)
    );
    for (proj, user, pw) in [
        ("proj", "alice", "password-2"),
        ("proj", "nobody", "password-1"),
        ("nope", "alice", "password-1"),
    ] {
        assert!(matches!(
            id.swift_v1_auth(proj, user, pw, Duration::from_secs(60))
                .await,
            Err(IdentityError::AuthenticationFailed)
        ));
    }
    id.revoke_swift_token(&v1.token).await.unwrap();

    let short = id
        .issue_swift_token(&u.id, &p.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        id.validate_swift_token(&short.token)
            .await
            .unwrap()
            .is_some()
    );
    env.pass(Duration::from_millis(1100)).await;
    // Expired by the clock, whether or not the store has removed it yet.
    assert_eq!(id.validate_swift_token(&short.token).await.unwrap(), None);
    // And the store's lease removes the record (etcd's leader checks every 500 ms).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = raw_identity(&store)
            .await
            .into_iter()
            .filter(|(k, _)| k.contains("/tokens"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "token keys not removed: {left:?}"
        );
        env.pass(Duration::from_millis(200)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn role_assignments<S: MetaStore>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let id = identity(store, clock, KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let q = id.create_project("other", "").await.unwrap();
    let u = id.create_user("alice", "password-1", None).await.unwrap();
    assert!(id.roles_of(&u.id, &p.id).await.unwrap().is_empty());
    id.grant_role(&u.id, &p.id, Role::Reader).await.unwrap();
    id.grant_role(&u.id, &p.id, Role::Admin).await.unwrap();
    id.grant_role(&u.id, &p.id, Role::Admin).await.unwrap();
    id.grant_role(&u.id, &q.id, Role::Member).await.unwrap();
    assert_eq!(
        id.roles_of(&u.id, &p.id).await.unwrap(),
        vec![Role::Admin, Role::Reader]
    );
    assert_eq!(id.roles_of(&u.id, &q.id).await.unwrap(), vec![Role::Member]);
    let mut all = id.assignments_of_user(&u.id).await.unwrap();
    all.sort();
    let mut expected = vec![
        (p.id.clone(), Role::Admin),
        (p.id.clone(), Role::Reader),
        (q.id.clone(), Role::Member),
    ];
    expected.sort();
    assert_eq!(all, expected);
    assert!(id.revoke_role(&u.id, &p.id, Role::Admin).await.unwrap());
    assert!(!id.revoke_role(&u.id, &p.id, Role::Admin).await.unwrap());
    assert_eq!(id.roles_of(&u.id, &p.id).await.unwrap(), vec![Role::Reader]);
    assert_eq!("member".parse::<Role>().unwrap(), Role::Member);
    assert!("root".parse::<Role>().is_err());

    let missing = "f".repeat(32);
    assert!(matches!(
        id.grant_role(&u.id, &missing, Role::Member).await,
        Err(IdentityError::NotFound { .. })
    ));
    assert!(matches!(
        id.grant_role("../etc", &p.id, Role::Member).await,
        Err(IdentityError::Invalid { .. })
    ));
}

async fn cascading_deletes<S: MetaStore + Clone>(store: S, clock: Arc<dyn Clock>, _env: Env) {
    let id = identity(store.clone(), clock, KEY);
    let a = id.create_project("a", "").await.unwrap();
    let b = id.create_project("b", "").await.unwrap();
    let alice = id
        .create_user("alice", "password-1", Some(&a.id))
        .await
        .unwrap();
    let bob = id.create_user("bob", "password-2", None).await.unwrap();
    for (u, p) in [(&alice, &a), (&alice, &b), (&bob, &a), (&bob, &b)] {
        id.grant_role(&u.id, &p.id, Role::Member).await.unwrap();
        id.grant_role(&u.id, &p.id, Role::Reader).await.unwrap();
    }
    let mut keys_a = Vec::new();
    let mut tokens_a = Vec::new();
    // More S3 keys than one sweep batch, so deletion has to page.
    for _ in 0..20 {
        keys_a.push(id.create_s3_key(&alice.id, &a.id).await.unwrap());
        keys_a.push(id.create_s3_key(&bob.id, &a.id).await.unwrap());
    }
    for u in [&alice, &bob] {
        tokens_a.push(
            id.issue_swift_token(&u.id, &a.id, Duration::from_secs(600))
                .await
                .unwrap(),
        );
    }
    let key_b = id.create_s3_key(&alice.id, &b.id).await.unwrap();
    let token_b = id
        .issue_swift_token(&bob.id, &b.id, Duration::from_secs(600))
        .await
        .unwrap();

    assert!(id.delete_project(&a.id).await.unwrap());
    assert!(!id.delete_project(&a.id).await.unwrap());
    for k in &keys_a {
        assert_eq!(id.s3_secret(&k.access_key).await.unwrap(), None);
    }
    for t in &tokens_a {
        assert_eq!(id.validate_swift_token(&t.token).await.unwrap(), None);
    }
    assert!(id.roles_of(&alice.id, &a.id).await.unwrap().is_empty());
    let leftovers: Vec<_> = raw_identity(&store)
        .await
        .into_iter()
        .filter(|(k, v)| k.contains(&a.id) || v.contains(&a.id))
        .filter(|(k, _)| !k.contains("/users/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Alice's default project is gone: her login is unscoped now.
    let p = id
        .authenticate_password("alice", "password-1")
        .await
        .unwrap();
    assert_eq!(p.project_id, None);
    // Project b is untouched.
    assert!(id.s3_secret(&key_b.access_key).await.unwrap().is_some());
    assert!(
        id.validate_swift_token(&token_b.token)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(id.list_s3_keys(&alice.id).await.unwrap().len(), 1);

    assert!(id.delete_user(&bob.id).await.unwrap());
    assert_eq!(id.validate_swift_token(&token_b.token).await.unwrap(), None);
    let leftovers: Vec<_> = raw_identity(&store)
        .await
        .into_iter()
        .filter(|(k, v)| k.contains(&bob.id) || v.contains(&bob.id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(matches!(
        id.create_s3_key(&bob.id, &b.id).await,
        Err(IdentityError::NotFound { .. })
    ));

    assert!(id.delete_user(&alice.id).await.unwrap());
    assert!(id.delete_project(&b.id).await.unwrap());
    assert_eq!(id.s3_secret(&key_b.access_key).await.unwrap(), None);
    let left = raw_identity(&store).await;
    assert!(left.is_empty(), "{left:?}");
}

async fn interrupted_delete_is_finished_by_deleting_again<S: MetaStore + Clone>(
    store: S,
    clock: Arc<dyn Clock>,
    _env: Env,
) {
    let id = identity(store.clone(), clock, KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let u = id.create_user("alice", "password-1", None).await.unwrap();
    id.grant_role(&u.id, &p.id, Role::Admin).await.unwrap();
    let cred = id.create_s3_key(&u.id, &p.id).await.unwrap();

    // What a delete that crashed after its first step leaves: the record marked `deleting`.
    let key = format!("{IDENTITY_PREFIX}projects/{}", p.id);
    let v = store.get(key.as_bytes()).await.unwrap().unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&v.value).unwrap();
    rec["state"] = serde_json::Value::String("deleting".into());
    store
        .put(
            key.as_bytes(),
            Bytes::from(serde_json::to_vec(&rec).unwrap()),
            None,
        )
        .await
        .unwrap();

    // Readers treat it as gone; nothing new can refer to it; its name stays taken.
    assert_eq!(id.get_project(&p.id).await.unwrap(), None);
    assert!(id.list_projects(None, 10).await.unwrap().is_empty());
    assert_eq!(id.s3_secret(&cred.access_key).await.unwrap(), None);
    assert!(matches!(
        id.grant_role(&u.id, &p.id, Role::Member).await,
        Err(IdentityError::NotFound { .. })
    ));
    assert!(matches!(
        id.create_project("proj", "").await,
        Err(IdentityError::NameTaken { .. })
    ));

    assert!(id.delete_project(&p.id).await.unwrap());
    let leftovers: Vec<_> = raw_identity(&store)
        .await
        .into_iter()
        .filter(|(k, v)| k.contains(&p.id) || v.contains(&p.id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    id.create_project("proj", "").await.unwrap();
}

async fn delete_racing_writers_leaves_nothing_behind<S: MetaStore + Clone>(
    store: S,
    clock: Arc<dyn Clock>,
    _env: Env,
) {
    let id = identity(store.clone(), clock, KEY);
    let p = id.create_project("proj", "").await.unwrap();
    let mut users = Vec::new();
    for i in 0..4 {
        let u = id
            .create_user(&format!("u{i}"), "password-1", None)
            .await
            .unwrap();
        id.grant_role(&u.id, &p.id, Role::Member).await.unwrap();
        users.push(u);
    }
    // Writers keep adding roles, keys and tokens while the project is deleted.
    let mut writers = Vec::new();
    for u in users.clone() {
        let (id, pid) = (id.clone(), p.id.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..10 {
                let _ = id.grant_role(&u.id, &pid, Role::Reader).await;
                let _ = id.create_s3_key(&u.id, &pid).await;
                let _ = id
                    .issue_swift_token(&u.id, &pid, Duration::from_secs(600))
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(id.delete_project(&p.id).await.unwrap());
    for w in writers {
        w.await.unwrap();
    }
    let leftovers: Vec<_> = raw_identity(&store)
        .await
        .into_iter()
        .filter(|(k, v)| k.contains(&p.id) || v.contains(&p.id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for u in &users {
        assert!(id.list_s3_keys(&u.id).await.unwrap().is_empty());
        assert!(id.assignments_of_user(&u.id).await.unwrap().is_empty());
    }
}

#[test]
fn master_key_debug_shows_only_a_fingerprint() {
    let k = IdentityMasterKey::from_bytes(KEY);
    let d = format!("{k:?}");
    assert!(d.contains(&k.key_id()));
    assert!(!d.contains("7, 7"));
}
