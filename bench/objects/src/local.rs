//! One device, no network: `RocksEngine` and the plain-filesystem baseline.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use cairn_engine::{
    BlobCommit, BlobKey, BlobReader, BlobWriter, HybridClock, StorageEngine, WriteOutcome,
};
use cairn_engine_rocksdb::RocksEngine;

use crate::measure::{Load, Sample, run_async, run_threads};

/// Partitions the engine keys are spread over (a device holds many).
const PARTITIONS: usize = 1024;

fn wall_micros() -> u64 {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    u64::try_from(us).unwrap_or(u64::MAX)
}

fn key(tag: &str, i: usize) -> BlobKey {
    let partition = u32::try_from(i % PARTITIONS).unwrap_or(0);
    BlobKey::new(partition, format!("/bench/{tag}/obj-{i:08}"))
}

/// An open engine and the clock its writes are stamped with.
#[derive(Debug, Clone)]
pub struct EngineUnderTest {
    pub engine: RocksEngine,
    clock: Arc<Mutex<HybridClock>>,
}

impl EngineUnderTest {
    pub fn new(engine: RocksEngine) -> EngineUnderTest {
        EngineUnderTest {
            engine,
            clock: Arc::new(Mutex::new(HybridClock::new(1))),
        }
    }

    fn now(&self) -> cairn_engine::Timestamp {
        let wall = wall_micros();
        match self.clock.lock() {
            Ok(mut c) => c.now(wall),
            Err(poisoned) => poisoned.into_inner().now(wall),
        }
    }

    /// PUT `ops` blobs of `data` under `tag`.
    pub async fn put(&self, tag: &str, load: Load, data: Bytes) -> Result<Sample> {
        let me = self.clone();
        let tag = tag.to_owned();
        let len = data.len();
        run_async(load.ops, load.conc, len, load.limit, move |_, i| {
            let me = me.clone();
            let data = data.clone();
            let key = key(&tag, i);
            async move {
                let size = u64::try_from(data.len())?;
                let mut w = me.engine.begin_blob(key, Some(size)).await?;
                w.write(data).await?;
                let outcome = w
                    .commit(BlobCommit {
                        timestamp: me.now(),
                        content_type: "application/octet-stream".into(),
                        user_meta: BTreeMap::new(),
                        etag: None,
                    })
                    .await?;
                ensure!(
                    outcome == WriteOutcome::Applied,
                    "write not applied: {outcome:?}"
                );
                Ok(())
            }
        })
        .await
    }

    /// GET (whole body) the `ops` blobs a `put` with the same `tag` wrote.
    pub async fn get(&self, tag: &str, load: Load, len: usize) -> Result<Sample> {
        let me = self.clone();
        let tag = tag.to_owned();
        run_async(load.ops, load.conc, len, load.limit, move |_, i| {
            let me = me.clone();
            let key = key(&tag, i);
            async move {
                let Some((_meta, mut reader)) = me.engine.read_blob(&key, None).await? else {
                    bail!("{} not found", key.name);
                };
                let mut got = 0usize;
                // Every chunk holds at least one byte: at most `len` chunks, plus the end.
                for _ in 0..=len {
                    match reader.next_chunk().await? {
                        Some(chunk) => got += chunk.len(),
                        None => break,
                    }
                }
                ensure!(got == len, "{}: read {got} of {len} bytes", key.name);
                Ok(())
            }
        })
        .await
    }
}

/// Files in one directory, written and read with plain blocking syscalls on OS threads.
#[derive(Debug)]
pub struct FsUnderTest {
    pub dir: PathBuf,
}

impl FsUnderTest {
    fn path(&self, tag: &str, i: usize) -> PathBuf {
        self.dir.join(format!("{tag}-obj-{i:08}"))
    }

    /// create + write + fsync the file (+ fsync the directory when `dir_fsync`).
    pub fn put(&self, tag: &str, load: Load, data: &[u8], dir_fsync: bool) -> Result<Sample> {
        run_threads(load.ops, load.conc, data.len(), load.limit, |i| {
            let mut f = File::create(self.path(tag, i))?;
            f.write_all(data)?;
            f.sync_all()?;
            if dir_fsync {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })
    }

    /// open + read the whole file.
    pub fn get(&self, tag: &str, load: Load, len: usize) -> Result<Sample> {
        run_threads(load.ops, load.conc, len, load.limit, |i| {
            let v = std::fs::read(self.path(tag, i))?;
            ensure!(v.len() == len, "read {} of {len} bytes", v.len());
            Ok(())
        })
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
