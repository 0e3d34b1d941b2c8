//! The conformance suite: behaviour every [`MetaStore`] backend must show. Backends run it with
//! [`conformance_tests!`](crate::conformance_tests), passing an async factory returning
//! `(store, TestEnv)`; the [`TestEnv`] says how lease time passes (a [`ManualClock`] moved
//! instantly, or real time) and keeps the backend's resources (temp dir, etcd process) alive.
//!
//! This is test-support code: it panics on any deviation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::*;

/// Generates one `#[tokio::test]` per conformance case, each calling `$factory().await`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            kv_basics, range_order_and_limits, txn_compare_and_swap, watch_replays_then_follows,
            watch_compacted_is_an_error, lease_expiry_deletes_keys, lease_keep_alive_and_revoke,
            writer_lease_acquire_busy_release, writer_lease_steal_after_expiry);
    };
    (@cases $factory:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, env) = $factory().await;
                $crate::conformance::$case(&store, &env).await;
            }
        )*
    };
}

/// How a test run's lease time passes, plus whatever must outlive the store.
pub struct TestEnv {
    clock: Option<ManualClock>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Lease time is `clock` (moved instantly by the suite).
    pub fn manual(clock: ManualClock, guard: impl Any + Send + Sync) -> Self {
        TestEnv {
            clock: Some(clock),
            _guard: Box::new(guard),
        }
    }

    /// Lease time is real time (the suite sleeps).
    pub fn real_time(guard: impl Any + Send + Sync) -> Self {
        TestEnv {
            clock: None,
            _guard: Box::new(guard),
        }
    }

    /// Lets `d` of lease time pass.
    pub async fn pass(&self, d: Duration) {
        match &self.clock {
            Some(c) => c.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(1);

/// Polls `check` until it is true, failing after a bound (lease expiry is asynchronous on
/// etcd).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next event of a watch, failing after a bound.
pub async fn next_event(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(WAIT, w.next_event())
        .await
        .expect("watch event in time")
        .expect("watch still open")
        .expect("watch event, not an error")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Put, get, delete, versions and revisions.
pub async fn kv_basics<S: MetaStore>(s: &S, _env: &TestEnv) {
    let r0 = s.revision().await.unwrap();
    assert_eq!(s.get(b"/kv/a").await.unwrap(), None);
    let r1 = s.put(b"/kv/a", b("one"), None).await.unwrap();
    assert!(r1 > r0, "a put bumps the revision");
    let v = s.get(b"/kv/a").await.unwrap().unwrap();
    assert_eq!(
        (
            v.value.clone(),
            v.create_revision,
            v.mod_revision,
            v.version,
            v.lease
        ),
        (b("one"), r1, r1, 1, None)
    );
    let r2 = s.put(b"/kv/a", b("two"), None).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let v = s.get(b"/kv/a").await.unwrap().unwrap();
    assert_eq!((v.create_revision, v.mod_revision, v.version), (r1, r2, 2));
    assert_eq!(s.revision().await.unwrap(), r2);

    assert!(s.delete(b"/kv/a").await.unwrap());
    let r3 = s.revision().await.unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(s.get(b"/kv/a").await.unwrap(), None);
    assert!(!s.delete(b"/kv/a").await.unwrap());
    assert_eq!(
        s.revision().await.unwrap(),
        r3,
        "deleting nothing changes nothing"
    );

    // Re-created: history counters restart.
    let r4 = s.put(b"/kv/a", b("three"), None).await.unwrap();
    let v = s.get(b"/kv/a").await.unwrap().unwrap();
    assert_eq!((v.create_revision, v.version), (r4, 1));

    // Bounds are enforced the same way everywhere.
    assert!(matches!(
        s.put(b"", b("x"), None).await,
        Err(Error::InvalidArgument(_))
    ));
    let big = Bytes::from(vec![0u8; limits::VALUE_MAX_BYTES + 1]);
    assert!(matches!(
        s.put(b"/kv/big", big, None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.put(b"/kv/l", b("x"), Some(LeaseId(0x7777_0000))).await,
        Err(Error::LeaseNotFound(_))
    ));
}

/// Ranges are ordered by key, honour limits and stay inside their bounds.
pub async fn range_order_and_limits<S: MetaStore>(s: &S, _env: &TestEnv) {
    for k in [
        "/r/c",
        "/r/a",
        "/r/e",
        "/r/b",
        "/r/d",
        "/r0",
        "/q/z",
        "/r/\u{ff}",
    ] {
        s.put(k.as_bytes(), b(k), None).await.unwrap();
    }
    let keys = |kvs: Vec<KeyValue>| -> Vec<String> {
        kvs.into_iter()
            .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
            .collect()
    };
    let all = s.range(&KeyRange::prefix("/r/"), 100).await.unwrap();
    assert_eq!(all[0].value, b("/r/a"));
    assert_eq!(
        keys(all),
        ["/r/a", "/r/b", "/r/c", "/r/d", "/r/e", "/r/\u{ff}"]
    );
    let two = s.range(&KeyRange::prefix("/r/"), 2).await.unwrap();
    assert_eq!(keys(two), ["/r/a", "/r/b"]);
    let mid = s
        .range(&KeyRange::between("/r/b", "/r/d"), 100)
        .await
        .unwrap();
    assert_eq!(keys(mid), ["/r/b", "/r/c"]);
    let everything = s.range(&KeyRange::prefix(""), 100).await.unwrap();
    assert_eq!(everything.len(), 8);
    assert!(everything.windows(2).all(|w| w[0].key < w[1].key));
    assert!(matches!(
        s.range(&KeyRange::prefix("/r/"), 0).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// Compare-and-swap on value, version, create and mod revision; both branches; one revision per
/// transaction.
pub async fn txn_compare_and_swap<S: MetaStore>(s: &S, _env: &TestEnv) {
    // Create-if-absent succeeds once.
    let create = || {
        Txn::new()
            .when([Compare::absent("/t/k")])
            .and_then([TxnOp::put("/t/k", "v1"), TxnOp::put("/t/other", "x")])
            .or_else([TxnOp::get("/t/k")])
    };
    let first = s.txn(create()).await.unwrap();
    assert!(first.succeeded);
    assert_eq!(first.results, [TxnOpResult::Put, TxnOpResult::Put]);
    let k = s.get(b"/t/k").await.unwrap().unwrap();
    let other = s.get(b"/t/other").await.unwrap().unwrap();
    assert_eq!(k.mod_revision, first.revision);
    assert_eq!(other.mod_revision, first.revision, "one revision per txn");

    let second = s.txn(create()).await.unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.results, [TxnOpResult::Get(Some(k.clone()))]);
    assert_eq!(
        second.revision, first.revision,
        "a read-only branch writes nothing"
    );

    // Mod-revision CAS: the stale writer loses.
    let cas = |rev| {
        Txn::new()
            .when([Compare::mod_revision("/t/k", CompareOp::Equal, rev)])
            .and_then([TxnOp::put("/t/k", "v2")])
    };
    assert!(s.txn(cas(k.mod_revision)).await.unwrap().succeeded);
    assert!(!s.txn(cas(k.mod_revision)).await.unwrap().succeeded);

    // Value, version and create-revision compares.
    let value_is = |v: &'static str| Txn::new().when([Compare::value("/t/k", CompareOp::Equal, v)]);
    assert!(s.txn(value_is("v2")).await.unwrap().succeeded);
    assert!(!s.txn(value_is("v1")).await.unwrap().succeeded);
    let ver = |op, n| Txn::new().when([Compare::version("/t/k", op, n)]);
    assert!(s.txn(ver(CompareOp::Equal, 2)).await.unwrap().succeeded);
    assert!(s.txn(ver(CompareOp::Greater, 1)).await.unwrap().succeeded);
    assert!(s.txn(ver(CompareOp::Less, 3)).await.unwrap().succeeded);
    assert!(!s.txn(ver(CompareOp::NotEqual, 2)).await.unwrap().succeeded);
    let created = Txn::new().when([Compare::create_revision(
        "/t/k",
        CompareOp::Equal,
        k.create_revision,
    )]);
    assert!(s.txn(created).await.unwrap().succeeded);

    // Absent keys: value compares fail, counters read as 0.
    let absent_value = Txn::new().when([Compare::value("/t/none", CompareOp::NotEqual, "x")]);
    assert!(!s.txn(absent_value).await.unwrap().succeeded);
    let absent_ver = Txn::new().when([Compare::version("/t/none", CompareOp::Equal, 0)]);
    assert!(s.txn(absent_ver).await.unwrap().succeeded);

    // Failure branch with a delete; all compares must hold.
    let mixed = Txn::new()
        .when([
            Compare::value("/t/k", CompareOp::Equal, "v2"),
            Compare::absent("/t/other"),
        ])
        .and_then([TxnOp::put("/t/k", "never")])
        .or_else([TxnOp::delete("/t/other"), TxnOp::delete("/t/none")]);
    let resp = s.txn(mixed).await.unwrap();
    assert!(!resp.succeeded);
    assert_eq!(
        resp.results,
        [TxnOpResult::Delete(true), TxnOpResult::Delete(false)]
    );
    assert_eq!(s.get(b"/t/other").await.unwrap(), None);
    assert_eq!(s.get(b"/t/k").await.unwrap().unwrap().value, b("v2"));
}

/// A watch from a past revision replays what happened since, then follows live changes;
/// events stay inside the prefix.
pub async fn watch_replays_then_follows<S: MetaStore>(s: &S, _env: &TestEnv) {
    let ra = s.put(b"/w/a", b("1"), None).await.unwrap();
    s.put(b"/elsewhere", b("x"), None).await.unwrap();
    let rb = s.put(b"/w/b", b("2"), None).await.unwrap();
    let mut w = s.watch(b"/w/", Some(ra)).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, &e.kv.key[..], e.revision),
        (EventKind::Put, &b"/w/a"[..], ra)
    );
    assert_eq!(e.kv.value, b("1"));
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, &e.kv.key[..], e.revision),
        (EventKind::Put, &b"/w/b"[..], rb)
    );

    let rc = s.put(b"/w/c", b("3"), None).await.unwrap();
    s.put(b"/other", b("x"), None).await.unwrap();
    assert!(s.delete(b"/w/a").await.unwrap());
    let rd = s.revision().await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, &e.kv.key[..], e.revision),
        (EventKind::Put, &b"/w/c"[..], rc)
    );
    assert_eq!(e.kv.version, 1);
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, &e.kv.key[..], e.revision),
        (EventKind::Delete, &b"/w/a"[..], rd)
    );
    assert_eq!(e.kv.mod_revision, rd);

    // A watch from now sees only later changes; a transaction's events share its revision.
    let mut now = s.watch(b"/w/", None).await.unwrap();
    let t = s
        .txn(Txn::new().and_then([TxnOp::put("/w/x", "x"), TxnOp::put("/w/y", "y")]))
        .await
        .unwrap();
    let (e1, e2) = (next_event(&mut now).await, next_event(&mut now).await);
    assert_eq!((&e1.kv.key[..], e1.revision), (&b"/w/x"[..], t.revision));
    assert_eq!((&e2.kv.key[..], e2.revision), (&b"/w/y"[..], t.revision));
}

/// Watching from compacted history fails with `Compacted` instead of skipping events.
pub async fn watch_compacted_is_an_error<S: MetaStore>(s: &S, _env: &TestEnv) {
    let r1 = s.put(b"/c/a", b("1"), None).await.unwrap();
    s.put(b"/c/a", b("2"), None).await.unwrap();
    let r3 = s.put(b"/c/a", b("3"), None).await.unwrap();
    s.compact(r3).await.unwrap();
    // The refusal may come from `watch` itself or as the stream's first item.
    let err = match s.watch(b"/c/", Some(r1)).await {
        Err(e) => e,
        Ok(mut w) => tokio::time::timeout(WAIT, w.next_event())
            .await
            .expect("compaction error in time")
            .expect("an item")
            .expect_err("compacted history must not be replayed"),
    };
    match err {
        Error::Compacted {
            requested,
            oldest_available,
        } => {
            assert_eq!(requested, r1);
            assert_eq!(oldest_available, r3);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // From the compaction revision on, the watch works.
    let mut w = s.watch(b"/c/", Some(r3)).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.revision, e.kv.value.clone()), (r3, b("3")));
}

/// Keys on a lease vanish when it expires; watchers see the deletes; the lease is gone.
pub async fn lease_expiry_deletes_keys<S: MetaStore>(s: &S, env: &TestEnv) {
    let lease = s.grant(TTL).await.unwrap();
    s.put(b"/l/a", b("1"), Some(lease)).await.unwrap();
    s.put(b"/l/b", b("2"), Some(lease)).await.unwrap();
    s.put(b"/l/keep", b("3"), None).await.unwrap();
    assert_eq!(s.get(b"/l/a").await.unwrap().unwrap().lease, Some(lease));
    let left = s.lease_remaining(lease).await.unwrap().unwrap();
    assert!(left <= TTL);
    let mut w = s.watch(b"/l/", None).await.unwrap();

    env.pass(TTL + Duration::from_millis(200)).await;
    eventually("lease expiry", || async {
        s.get(b"/l/a").await.unwrap().is_none()
    })
    .await;
    assert_eq!(s.get(b"/l/b").await.unwrap(), None);
    assert!(s.get(b"/l/keep").await.unwrap().is_some());
    let mut deleted: Vec<Bytes> = Vec::new();
    for _ in 0..2 {
        let e = next_event(&mut w).await;
        assert_eq!(e.kind, EventKind::Delete);
        deleted.push(e.kv.key);
    }
    deleted.sort();
    assert_eq!(deleted, [b("/l/a"), b("/l/b")]);

    assert_eq!(s.lease_remaining(lease).await.unwrap(), None);
    let kept = s.keep_alive(lease).await;
    assert!(
        matches!(kept, Err(Error::LeaseNotFound(id)) if id == lease),
        "keep-alive of an expired lease: {kept:?}"
    );
    assert!(matches!(
        s.put(b"/l/c", b("x"), Some(lease)).await,
        Err(Error::LeaseNotFound(_))
    ));
}

/// Keep-alive restarts the TTL; revoke deletes the keys at once.
pub async fn lease_keep_alive_and_revoke<S: MetaStore>(s: &S, env: &TestEnv) {
    let lease = s.grant(TTL).await.unwrap();
    s.put(b"/k/a", b("1"), Some(lease)).await.unwrap();
    env.pass(Duration::from_millis(600)).await;
    assert_eq!(s.keep_alive(lease).await.unwrap(), TTL);
    env.pass(Duration::from_millis(600)).await;
    assert!(
        s.get(b"/k/a").await.unwrap().is_some(),
        "kept alive past its first deadline"
    );
    // Moving a key off the lease detaches it.
    s.put(b"/k/b", b("2"), Some(lease)).await.unwrap();
    s.put(b"/k/b", b("2"), None).await.unwrap();

    let mut w = s.watch(b"/k/", None).await.unwrap();
    s.revoke(lease).await.unwrap();
    assert_eq!(s.get(b"/k/a").await.unwrap(), None);
    assert!(s.get(b"/k/b").await.unwrap().is_some());
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, &e.kv.key[..]), (EventKind::Delete, &b"/k/a"[..]));
    assert!(matches!(
        s.revoke(lease).await,
        Err(Error::LeaseNotFound(_))
    ));
}

/// Writer leases: one holder at a time, renew, release, and a higher epoch for every new hold.
pub async fn writer_lease_acquire_busy_release<S: MetaStore + Clone>(s: &S, _env: &TestEnv) {
    let wl = WriterLeases::new(s.clone());
    let ttl = Duration::from_secs(5);
    assert_eq!(wl.epoch("img-1").await.unwrap(), 0);
    let Acquire::Held(a) = wl.acquire("img-1", "node-a", ttl).await.unwrap() else {
        panic!("free lease must be acquired");
    };
    assert_eq!((a.epoch, a.holder.as_str()), (1, "node-a"));
    match wl.acquire("img-1", "node-b", ttl).await.unwrap() {
        Acquire::Busy(busy) => {
            assert_eq!((busy.holder.as_str(), busy.epoch), ("node-a", 1));
            assert!(busy.expires_in <= ttl && busy.expires_in > Duration::ZERO);
        }
        Acquire::Held(h) => panic!("double hold: {h:?}"),
    }
    // Holding again, even by the same holder, is refused.
    assert!(matches!(
        wl.acquire("img-1", "node-a", ttl).await.unwrap(),
        Acquire::Busy(_)
    ));
    // Another name is independent.
    let Acquire::Held(other) = wl.acquire("img-2", "node-b", ttl).await.unwrap() else {
        panic!("independent lease");
    };
    assert_eq!(other.epoch, 1);

    assert_eq!(wl.renew(&a).await.unwrap(), ttl);
    assert_eq!(
        wl.holder("img-1").await.unwrap(),
        Some(("node-a".to_string(), 1))
    );
    assert!(wl.release(&a).await.unwrap());
    assert!(!wl.release(&a).await.unwrap(), "second release is a no-op");
    assert_eq!(wl.holder("img-1").await.unwrap(), None);
    let renewed = wl.renew(&a).await;
    assert!(
        matches!(renewed, Err(Error::WriterLeaseLost { epoch: 1, .. })),
        "renew after release: {renewed:?}"
    );

    let Acquire::Held(b2) = wl.acquire("img-1", "node-b", ttl).await.unwrap() else {
        panic!("released lease must be acquirable");
    };
    assert_eq!(b2.epoch, 2);
    let Acquire::Held(a3) = ({
        assert!(wl.release(&b2).await.unwrap());
        wl.acquire("img-1", "node-a", ttl).await.unwrap()
    }) else {
        panic!("re-acquire");
    };
    assert_eq!(a3.epoch, 3, "epochs strictly increase across holders");
    assert_eq!(wl.epoch("img-1").await.unwrap(), 3);
    assert!(matches!(
        wl.acquire("", "x", ttl).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// Once a holder stops renewing, another takes over with a higher epoch, and the old holder
/// learns it lost the lease.
pub async fn writer_lease_steal_after_expiry<S: MetaStore + Clone>(s: &S, env: &TestEnv) {
    let wl = WriterLeases::with_prefix(s.clone(), "/fence/");
    let Acquire::Held(a) = wl.acquire("vol", "node-a", TTL).await.unwrap() else {
        panic!("free lease must be acquired");
    };
    assert!(matches!(
        wl.acquire("vol", "node-b", TTL).await.unwrap(),
        Acquire::Busy(_)
    ));
    env.pass(TTL + Duration::from_millis(200)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let b = loop {
        match wl.acquire("vol", "node-b", TTL).await.unwrap() {
            Acquire::Held(h) => break h,
            Acquire::Busy(busy) => {
                assert_eq!(busy.holder, "node-a");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out waiting for takeover after expiry"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(b.epoch > a.epoch, "steal must raise the epoch");
    assert!(matches!(
        wl.renew(&a).await,
        Err(Error::WriterLeaseLost { .. })
    ));
    assert!(
        !wl.release(&a).await.unwrap(),
        "stale release must not free the new hold"
    );
    assert_eq!(
        wl.holder("vol").await.unwrap(),
        Some(("node-b".to_string(), b.epoch))
    );
    wl.renew(&b).await.unwrap();
}
