//! Image headers in the control plane: one JSON record per image under
//! `/cairn/block/images/<name>`, changed only by compare-and-swap on its revision, so two
//! administrators (or an administrator and a writer) never lose each other's change.

use bytes::Bytes;
use cairn_meta::{Compare, CompareOp, KeyRange, MetaStore, Txn, TxnOp};

use crate::error::{BlockError, Result};
use crate::header::ImageHeader;
use crate::limits::IMAGES_LISTED_MAX;

const PREFIX: &str = "/cairn/block/images/";
/// Compare-and-swap attempts before giving up on a contended header.
const CAS_ATTEMPTS_MAX: usize = 32;

#[derive(Debug, Clone)]
pub struct ImageCatalog<S> {
    store: S,
}

fn key(name: &str) -> Bytes {
    Bytes::from(format!("{PREFIX}{name}"))
}

fn decode(name: &str, value: &[u8]) -> Result<ImageHeader> {
    serde_json::from_slice(value).map_err(|e| BlockError::Corrupt(format!("image {name:?}: {e}")))
}

fn encode(h: &ImageHeader) -> Result<Bytes> {
    serde_json::to_vec(h)
        .map(Bytes::from)
        .map_err(|e| BlockError::Corrupt(format!("cannot encode image {:?}: {e}", h.name)))
}

impl<S: MetaStore> ImageCatalog<S> {
    pub fn new(store: S) -> Self {
        ImageCatalog { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The header and its revision (for compare-and-swap).
    pub async fn get(&self, name: &str) -> Result<Option<(ImageHeader, u64)>> {
        match self.store.get(&key(name)).await? {
            Some(v) => Ok(Some((decode(name, &v.value)?, v.mod_revision))),
            None => Ok(None),
        }
    }

    pub async fn require(&self, name: &str) -> Result<(ImageHeader, u64)> {
        self.get(name)
            .await?
            .ok_or_else(|| BlockError::NoSuchImage(name.to_string()))
    }

    /// Creates the header; fails if the name is taken.
    pub async fn create(&self, header: &ImageHeader) -> Result<()> {
        let k = key(&header.name);
        let txn = Txn::new()
            .when([Compare::absent(k.clone())])
            .and_then([TxnOp::put(k, encode(header)?)]);
        if self.store.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(BlockError::ImageExists(header.name.clone()))
        }
    }

    /// Applies `change` to the current header and stores it if nobody changed it meanwhile,
    /// retrying on conflict. Returns the stored header.
    pub async fn update(
        &self,
        name: &str,
        mut change: impl FnMut(&mut ImageHeader) -> Result<()>,
    ) -> Result<ImageHeader> {
        for _ in 0..CAS_ATTEMPTS_MAX {
            let (mut header, rev) = self.require(name).await?;
            change(&mut header)?;
            let k = key(name);
            let txn = Txn::new()
                .when([Compare::mod_revision(k.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(k, encode(&header)?)]);
            if self.store.txn(txn).await?.succeeded {
                return Ok(header);
            }
        }
        Err(BlockError::Conflict(format!(
            "image {name:?} kept changing under {CAS_ATTEMPTS_MAX} attempts to update it"
        )))
    }

    /// Deletes the header if it is still at revision `rev`.
    pub async fn delete(&self, name: &str, rev: u64) -> Result<()> {
        let k = key(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(k.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(k)]);
        if self.store.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(BlockError::Conflict(format!(
                "image {name:?} changed while being deleted; try again"
            )))
        }
    }

    pub async fn list(&self) -> Result<Vec<ImageHeader>> {
        let kvs = self
            .store
            .range(&KeyRange::prefix(Bytes::from(PREFIX)), IMAGES_LISTED_MAX)
            .await?;
        kvs.iter()
            .map(|kv| {
                let name = String::from_utf8_lossy(&kv.key[PREFIX.len()..]).to_string();
                decode(&name, &kv.value)
            })
            .collect()
    }
}
