//! Ring distribution through the store: a publisher stores a compiled ring file, nodes watch and
//! fetch it. The store never parses rings (it knows nothing of them); it keeps the file's bytes
//! with a BLAKE3 checksum and the version the publisher read from the file.
//!
//! Layout: the file's bytes go to immutable chunk keys `/cairn/rings/<kind>@<version>/<i>`
//! (each ≤ 512 KiB, one put each, so no request exceeds etcd's request size limit); then the
//! record `/cairn/rings/<kind>` = `{version, checksum, size, chunks}` is written by a
//! compare-and-swap on its `mod_revision`. The record is the commit point: a reader that sees it
//! finds every chunk; a publication that dies half-way leaves unreferenced chunks, never a
//! record pointing at missing data. Versions only grow: publishing a version not newer than the
//! current record is refused.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::MetaStore;
use crate::types::{Compare, CompareOp, KeyRange, Revision, Txn, TxnOp};

/// Where ring records live; watch this prefix to learn of new rings.
pub const RING_PREFIX: &str = "/cairn/rings/";
const CHUNK_BYTES_MAX: usize = 512 * 1024;
/// Chunks one ring may have (a 64 MiB ring file; compiled rings are far smaller).
const CHUNKS_MAX: usize = 128;

/// The current ring of one kind, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingRecord {
    pub format: u32,
    pub kind: String,
    pub version: u64,
    /// BLAKE3 of the whole ring file, hex.
    pub checksum: String,
    pub size_bytes: u64,
    pub chunks: u32,
}

/// The record key of a ring kind.
pub fn ring_key(kind: &str) -> String {
    format!("{RING_PREFIX}{kind}")
}

/// The ring kind a record key names, or `None` for chunk keys and foreign keys.
pub fn ring_kind_of(key: &[u8]) -> Option<&str> {
    let key = std::str::from_utf8(key).ok()?;
    let kind = key.strip_prefix(RING_PREFIX)?;
    (!kind.is_empty() && !kind.contains('@') && !kind.contains('/')).then_some(kind)
}

fn chunk_prefix(kind: &str, version: u64) -> String {
    format!("{RING_PREFIX}{kind}@{version:020}/")
}

fn validate_kind(kind: &str) -> Result<()> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("bad ring kind {kind:?}")))
    }
}

/// The current record of a kind and its key's `mod_revision`.
pub async fn ring_record<S: MetaStore>(
    store: &S,
    kind: &str,
) -> Result<Option<(RingRecord, Revision)>> {
    validate_kind(kind)?;
    let Some(v) = store.get(ring_key(kind).as_bytes()).await? else {
        return Ok(None);
    };
    let record: RingRecord = serde_json::from_slice(&v.value)
        .map_err(|e| Error::Corrupt(format!("ring record {kind}: {e}")))?;
    Ok(Some((record, v.mod_revision)))
}

/// Publishes a ring file of `version`. Refused (`InvalidArgument`) if the store already has this
/// version or a newer one, or if another publisher changed the record meanwhile.
pub async fn publish_ring<S: MetaStore>(
    store: &S,
    kind: &str,
    version: u64,
    file: &[u8],
) -> Result<Revision> {
    validate_kind(kind)?;
    let chunks: Vec<&[u8]> = file.chunks(CHUNK_BYTES_MAX).collect();
    if chunks.is_empty() || chunks.len() > CHUNKS_MAX {
        return Err(Error::InvalidArgument(format!(
            "ring file of {} bytes cannot be published",
            file.len()
        )));
    }
    let current = ring_record(store, kind).await?;
    if let Some((r, _)) = &current
        && r.version >= version
    {
        return Err(Error::InvalidArgument(format!(
            "ring {kind} version {version} is not newer than the published version {}",
            r.version
        )));
    }
    let prefix = chunk_prefix(kind, version);
    for (i, chunk) in chunks.iter().enumerate() {
        store
            .put(
                format!("{prefix}{i:04}").as_bytes(),
                Bytes::copy_from_slice(chunk),
                None,
            )
            .await?;
    }
    let record = RingRecord {
        format: 1,
        kind: kind.to_string(),
        version,
        checksum: blake3::hash(file).to_hex().to_string(),
        size_bytes: file.len() as u64,
        chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
    };
    let value = serde_json::to_vec(&record).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let key = ring_key(kind);
    let guard = match &current {
        Some((_, rev)) => Compare::mod_revision(key.clone(), CompareOp::Equal, *rev),
        None => Compare::absent(key.clone()),
    };
    let resp = store
        .txn(Txn::new().when([guard]).and_then([TxnOp::put(key, value)]))
        .await?;
    if !resp.succeeded {
        return Err(Error::InvalidArgument(format!(
            "ring {kind}: another publication won the race; retry"
        )));
    }
    // The previous version's chunks are garbage now; a failure here only leaves garbage.
    if let Some((old, _)) = current {
        let old_prefix = chunk_prefix(kind, old.version);
        for i in 0..old.chunks {
            let _ = store.delete(format!("{old_prefix}{i:04}").as_bytes()).await;
        }
    }
    Ok(resp.revision)
}

/// The current ring file of a kind, verified against its record's size and checksum.
pub async fn fetch_ring<S: MetaStore>(
    store: &S,
    kind: &str,
) -> Result<Option<(RingRecord, Bytes)>> {
    let Some((record, _)) = ring_record(store, kind).await? else {
        return Ok(None);
    };
    let chunks = usize::try_from(record.chunks).unwrap_or(usize::MAX);
    if chunks == 0 || chunks > CHUNKS_MAX {
        return Err(Error::Corrupt(format!(
            "ring {kind}: record names {chunks} chunks"
        )));
    }
    let prefix = chunk_prefix(kind, record.version);
    let kvs = store
        .range(&KeyRange::Prefix(Bytes::from(prefix.clone())), chunks)
        .await?;
    if kvs.len() != chunks {
        return Err(Error::Corrupt(format!(
            "ring {kind} v{}: {} of {chunks} chunks present",
            record.version,
            kvs.len()
        )));
    }
    let mut file = BytesMut::with_capacity(usize::try_from(record.size_bytes).unwrap_or(0));
    for kv in kvs {
        file.extend_from_slice(&kv.value);
    }
    let file = file.freeze();
    if file.len() as u64 != record.size_bytes
        || blake3::hash(&file).to_hex().as_str() != record.checksum
    {
        return Err(Error::Corrupt(format!(
            "ring {kind} v{}: bytes do not match the record's checksum",
            record.version
        )));
    }
    Ok(Some((record, file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn publish_fetch_and_refuse_older() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        publish_ring(&store, "object", 3, &big).await.unwrap();
        let (rec, bytes) = fetch_ring(&store, "object").await.unwrap().unwrap();
        assert_eq!((rec.version, rec.chunks, &bytes[..]), (3, 3, &big[..]));
        assert!(publish_ring(&store, "object", 3, b"again").await.is_err());
        assert!(publish_ring(&store, "object", 2, b"older").await.is_err());
        publish_ring(&store, "object", 4, b"small ring")
            .await
            .unwrap();
        let (rec, bytes) = fetch_ring(&store, "object").await.unwrap().unwrap();
        assert_eq!((rec.version, &bytes[..]), (4, &b"small ring"[..]));
        // The old version's chunks are gone; a damaged chunk is detected.
        let old = store
            .range(
                &KeyRange::Prefix(Bytes::from(chunk_prefix("object", 3))),
                10,
            )
            .await
            .unwrap();
        assert!(old.is_empty());
        store
            .put(
                format!("{}0000", chunk_prefix("object", 4)).as_bytes(),
                Bytes::from_static(b"tampered!!"),
                None,
            )
            .await
            .unwrap();
        assert!(matches!(
            fetch_ring(&store, "object").await,
            Err(Error::Corrupt(_))
        ));
        assert_eq!(ring_kind_of(b"/cairn/rings/object"), Some("object"));
        assert_eq!(
            ring_kind_of(b"/cairn/rings/object@00000000000000000004/0000"),
            None
        );
        assert!(publish_ring(&store, "../x", 9, b"r").await.is_err());
    }
}
