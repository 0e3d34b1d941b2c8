//! Reading and durably writing builder and ring files.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cairn_ring::{PartitionRing, RingBuilder};

/// Which kind of file is at a path, by its magic bytes.
pub enum RingFile {
    Builder(RingBuilder),
    Ring(PartitionRing),
}

pub fn load_builder(path: &Path) -> Result<RingBuilder> {
    let bytes = read(path)?;
    RingBuilder::from_bytes(&bytes)
        .with_context(|| format!("cannot load builder {}", path.display()))
}

pub fn load_any(path: &Path) -> Result<RingFile> {
    let bytes = read(path)?;
    if bytes.starts_with(b"CAIRNRNG") {
        let ring = PartitionRing::from_bytes(&bytes)
            .with_context(|| format!("cannot load ring {}", path.display()))?;
        Ok(RingFile::Ring(ring))
    } else {
        let b = RingBuilder::from_bytes(&bytes)
            .with_context(|| format!("cannot load builder {}", path.display()))?;
        Ok(RingFile::Builder(b))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{} does not exist: create a builder with `ring-tool {} create <part_power> <replicas> <min_part_hours>`",
                path.display(),
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot read {}: {e}", path.display())
        }
    })
}

/// The ring file that goes with a builder: `object.builder` → `object.ring`.
pub fn ring_path_for(builder: &Path) -> PathBuf {
    if builder.extension().is_some_and(|e| e == "builder") {
        builder.with_extension("ring")
    } else {
        let mut s = builder.as_os_str().to_owned();
        s.push(".ring");
        PathBuf::from(s)
    }
}

/// Writes `bytes` so that a crash leaves either the old or the new file: a temporary file in
/// the same directory, fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> Result<()> {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename onto {}", path.display()))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync directory {}", dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Keeps a copy of the current file in `backups/<unix time>.<name>` next to it, as
/// swift-ring-builder does: losing a builder file means rebuilding the ring from scratch.
pub fn backup(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let dir = parent_dir(path).join("backups");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Nanoseconds, so two saves within a second keep two backups.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    write_atomic(&dir.join(format!("{stamp}.{name}")), &bytes)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Minutes since the Unix epoch, the clock the ring builder records moves in.
pub fn now_minutes() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs / 60).unwrap_or(u32::MAX)
}
