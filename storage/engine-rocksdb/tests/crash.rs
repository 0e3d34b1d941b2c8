//! Model-based crash test: random blob writes and deletes, with crashes injected at the
//! failpoints between durability steps; after each crash the engine is dropped without a clean
//! shutdown and reopened, and its contents are compared with a model of what was acknowledged
//! (must exist) and what was in flight (may exist).
//!
//! Run with `--features failpoints`. Seed: printed; set `CAIRN_CRASH_SEED` to replay one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panics are failures
#![cfg(feature = "failpoints")]

use std::collections::BTreeMap;

use cairn_engine::conformance::{body, get};
use cairn_engine::{BlobCommit, BlobKey, BlobWriter, StorageEngine, Timestamp, WriteOutcome};
use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};
use rand::{Rng, SeedableRng, rngs::StdRng};

const FAILPOINTS: &[&str] = &[
    "blob-after-data-fsync",
    "segment-mid-append",
    "large-before-rename",
    "large-after-rename",
    "index-before-write",
];

/// What a name holds: `None` = absent or tombstone; `Some((ts, seed, len))` = that body.
type State = Option<(u64, u8, usize)>;

async fn observe(e: &RocksEngine, name: &str) -> State {
    let key = BlobKey::new(0, name);
    match e.blob_meta(&key).await.unwrap() {
        None => None,
        Some(m) if m.tombstone => None,
        Some(m) => {
            let data = get(e, &key, None).await.unwrap();
            let len = data.len();
            let seed: u8 = m.user_meta["seed"].parse().unwrap();
            assert!(body(len, seed) == data, "{name}: torn body");
            Some((m.timestamp.wall_micros, seed, len))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_leave_old_or_new_never_torn() {
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed: {seed} (replay with CAIRN_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        dir: dir.path().to_path_buf(),
        io: IoChoice::Auto,
    };
    let mut engine = RocksEngine::open(options.clone()).await.unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("/a/c/{i}")).collect();
    let mut model: BTreeMap<String, State> = BTreeMap::new();
    let mut crashes = 0;
    for step in 0..200u64 {
        let name = &names[rng.gen_range(0..names.len())];
        let ts = step + 1;
        let delete = rng.gen_bool(0.2);
        let len = if rng.gen_bool(0.3) {
            rng.gen_range(300_000..700_000)
        } else {
            rng.gen_range(0..20_000)
        };
        let seed_byte: u8 = rng.r#gen();
        let crash_at = rng
            .gen_bool(0.3)
            .then(|| FAILPOINTS[rng.gen_range(0..FAILPOINTS.len())]);
        if let Some(fp) = crash_at {
            fail::cfg(fp, "return").unwrap();
        }
        let key = BlobKey::new(0, name.clone());
        if rng.gen_bool(0.1) {
            // Compaction moves live bodies; a crash inside it must not lose or tear any.
            if engine.compact().await.is_err() {
                assert!(
                    crash_at.is_some(),
                    "step {step}: compaction failed without a failpoint"
                );
                crashes += 1;
                drop(engine);
                let io = if rng.gen_bool(0.5) {
                    IoChoice::Uring
                } else {
                    IoChoice::Plain
                };
                engine = RocksEngine::open(EngineOptions {
                    io,
                    ..options.clone()
                })
                .await
                .unwrap();
                for (n, want) in &model {
                    assert_eq!(
                        &observe(&engine, n).await,
                        want,
                        "step {step}: compaction crash lost {n}"
                    );
                }
            }
            if let Some(fp) = crash_at {
                fail::remove(fp);
            }
            continue;
        }
        let result = if delete {
            engine
                .delete_blob(
                    key,
                    Timestamp {
                        wall_micros: ts,
                        counter: 0,
                        node: 0,
                    },
                )
                .await
        } else {
            let mut w = engine.begin_blob(key, Some(len as u64)).await.unwrap();
            w.write(bytes::Bytes::from(body(len, seed_byte)))
                .await
                .unwrap();
            w.commit(BlobCommit {
                timestamp: Timestamp {
                    wall_micros: ts,
                    counter: 0,
                    node: 0,
                },
                content_type: String::new(),
                user_meta: BTreeMap::from([("seed".to_string(), seed_byte.to_string())]),
                etag: None,
            })
            .await
        };
        let new_state: State = if delete {
            None
        } else {
            Some((ts, seed_byte, len))
        };
        if let Some(fp) = crash_at {
            fail::remove(fp);
        }
        match result {
            Ok(WriteOutcome::Applied) => {
                model.insert(name.clone(), new_state);
            }
            Ok(WriteOutcome::Lost { .. }) => panic!("timestamps only increase in this test"),
            Err(err) => {
                assert!(crash_at.is_some(), "step {step}: unexpected error {err}");
                // Crash: drop without shutdown, reopen, check every name.
                crashes += 1;
                drop(engine);
                // Reopen with either backend: the on-disk format does not depend on it.
                let io = if rng.gen_bool(0.5) {
                    IoChoice::Uring
                } else {
                    IoChoice::Plain
                };
                engine = RocksEngine::open(EngineOptions {
                    io,
                    ..options.clone()
                })
                .await
                .unwrap();
                let old = model.get(name).cloned().flatten();
                let now = observe(&engine, name).await;
                assert!(
                    now == old || now == new_state,
                    "step {step} ({fp:?}): {name} is {now:?}, expected {old:?} or {new_state:?}",
                    fp = crash_at
                );
                model.insert(name.clone(), now);
                for (n, want) in &model {
                    assert_eq!(
                        &observe(&engine, n).await,
                        want,
                        "step {step}: acknowledged state of {n} lost"
                    );
                }
                // No orphan files survive recovery beyond what the index references.
                let files = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
                let large = model
                    .values()
                    .flatten()
                    .filter(|(_, _, l)| *l > 262_144)
                    .count();
                assert_eq!(files, large, "step {step}: orphan or missing large files");
                assert_eq!(
                    std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
                    0
                );
            }
        }
    }
    for (n, want) in &model {
        assert_eq!(&observe(&engine, n).await, want);
    }
    eprintln!("crash test: {crashes} crashes survived");
    scenario.teardown();
}
