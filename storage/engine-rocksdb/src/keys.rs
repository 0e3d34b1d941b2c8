//! RocksDB key layout and record encodings. One keyspace, first byte says what a key is; every
//! multi-part key puts a NUL between variable-length parts (names never contain NUL) so byte
//! order equals the order the engine lists in.

use cairn_engine::extent::Tagged;
use cairn_engine::{BlobMeta, Error, PieceMeta, Result, Timestamp, WriteTag};
use serde::{Deserialize, Serialize};

pub(crate) const BLOB: u8 = b'b';
pub(crate) const QUARANTINE: u8 = b'q';
pub(crate) const LISTING_ENTRY: u8 = b'l';
pub(crate) const LISTING_INFO: u8 = b'i';
pub(crate) const LISTING_STATS: u8 = b's';
pub(crate) const EXTENT: u8 = b'e';
pub(crate) const EXTENT_DATA: u8 = b'x';
pub(crate) const FENCE: u8 = b'f';

/// Kinds of key that carry a partition number after the tag byte.
pub(crate) const PARTITIONED: [u8; 5] = [BLOB, LISTING_ENTRY, LISTING_INFO, EXTENT, EXTENT_DATA];

pub(crate) fn partition_prefix(tag: u8, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(tag);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

pub(crate) fn blob(partition: u32, name: &str) -> Vec<u8> {
    let mut k = partition_prefix(BLOB, partition);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Splits a blob key into (partition, name).
pub(crate) fn parse_blob(key: &[u8]) -> Result<(u32, String)> {
    match key {
        [BLOB, p0, p1, p2, p3, name @ ..] => Ok((
            u32::from_be_bytes([*p0, *p1, *p2, *p3]),
            String::from_utf8(name.to_vec())
                .map_err(|_| Error::Corrupt("blob key is not UTF-8".into()))?,
        )),
        _ => Err(Error::Corrupt("malformed blob key".into())),
    }
}

pub(crate) fn quarantine(partition: u32, name: &str, ts: Timestamp) -> Vec<u8> {
    let mut k = partition_prefix(QUARANTINE, partition);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&ts.to_bytes());
    k
}

/// Prefix of every entry of one listing.
pub(crate) fn listing_prefix(partition: u32, path: &str) -> Vec<u8> {
    let mut k = partition_prefix(LISTING_ENTRY, partition);
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k
}

pub(crate) fn listing_meta(tag: u8, partition: u32, path: &str) -> Vec<u8> {
    let mut k = partition_prefix(tag, partition);
    k.extend_from_slice(path.as_bytes());
    k
}

/// Prefix of every piece record of one extent object.
pub(crate) fn extent_prefix(partition: u32, image: &str, object_no: u64) -> Vec<u8> {
    extent_prefix_of(EXTENT, partition, image, object_no)
}

/// Prefix of the data chunks of one extent object; a chunk's key adds the piece's tag and the
/// chunk number, so a read fetches only the chunks it needs.
pub(crate) fn extent_data_prefix(partition: u32, image: &str, object_no: u64) -> Vec<u8> {
    extent_prefix_of(EXTENT_DATA, partition, image, object_no)
}

fn extent_prefix_of(kind: u8, partition: u32, image: &str, object_no: u64) -> Vec<u8> {
    let mut k = partition_prefix(kind, partition);
    k.extend_from_slice(image.as_bytes());
    k.push(0);
    k.extend_from_slice(&object_no.to_be_bytes());
    k
}

pub(crate) fn fence(image: &str) -> Vec<u8> {
    let mut k = vec![FENCE];
    k.extend_from_slice(image.as_bytes());
    k
}

/// Where a blob's checksummed body lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Location {
    /// Tombstones and empty blobs have no body.
    None,
    /// Packed at `offset` in segment file `id`.
    Segment { id: u64, offset: u64 },
    /// Alone in blob file `id`.
    File { id: u64 },
}

/// The index record of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobRecord {
    pub(crate) meta: BlobMeta,
    pub(crate) location: Location,
}

/// Where an extent piece's bytes are. The variant numbers are part of the record format: the
/// first two encode exactly as the `data: bool` field of records written before the extent log
/// (postcard writes `false`/`true` and variant 0/1 as the same byte), so those still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PieceData {
    /// A trim or delete: no bytes.
    None,
    /// In `EXTENT_DATA` chunk records of the index (each ≤ 64 KiB followed by its CRC32C): how
    /// pieces were stored before the extent log. Still read, and freed when hidden.
    Index,
    /// In extent log file `file`, starting at `offset` (see `extent_log`).
    Log { file: u64, offset: u64 },
    /// In aligned extent log file `file` (written around the page cache): the chunks start at
    /// `offset`, each padded to a page, and their CRCs at `crcs` (see `aligned_append`).
    Aligned { file: u64, offset: u64, crcs: u64 },
}

/// An extent piece as stored: the tag is in the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PieceRecord {
    pub(crate) offset: u64,
    pub(crate) len_bytes: u64,
    pub(crate) data: PieceData,
}

/// A decoded piece record with its tag: what the piece cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredPiece {
    pub(crate) meta: PieceMeta,
    pub(crate) data: PieceData,
}

impl StoredPiece {
    pub(crate) fn record(&self) -> PieceRecord {
        PieceRecord {
            offset: self.meta.offset,
            len_bytes: self.meta.len_bytes,
            data: self.data,
        }
    }
}

impl Tagged for StoredPiece {
    fn tag(&self) -> WriteTag {
        self.meta.tag
    }
    fn range(&self) -> (u64, u64) {
        self.meta.range()
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::Invalid(format!("cannot encode record: {e}")))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::Corrupt(format!("undecodable index record: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The record as written before the extent log.
    #[derive(Serialize)]
    struct PieceRecordV1 {
        offset: u64,
        len_bytes: u64,
        data: bool,
    }

    #[test]
    fn piece_records_written_before_the_extent_log_still_decode() {
        for (data, want) in [(false, PieceData::None), (true, PieceData::Index)] {
            let old = encode(&PieceRecordV1 {
                offset: 4096,
                len_bytes: 70_000,
                data,
            })
            .unwrap();
            let rec: PieceRecord = decode(&old).unwrap();
            assert_eq!((rec.offset, rec.len_bytes, rec.data), (4096, 70_000, want));
            // And the new encoding of such a record is the old one, byte for byte.
            assert_eq!(encode(&rec).unwrap(), old);
        }
        let rec = PieceRecord {
            offset: 1,
            len_bytes: 2,
            data: PieceData::Log {
                file: 7,
                offset: 1 << 40,
            },
        };
        let back: PieceRecord = decode(&encode(&rec).unwrap()).unwrap();
        assert_eq!(back.data, rec.data);
        let rec = PieceRecord {
            data: PieceData::Aligned {
                file: 9,
                offset: 1 << 30,
                crcs: 4096,
            },
            ..rec
        };
        let back: PieceRecord = decode(&encode(&rec).unwrap()).unwrap();
        assert_eq!(back.data, rec.data);
    }
}
