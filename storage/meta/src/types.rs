//! The values that cross the [`MetaStore`](crate::MetaStore) trait. They follow etcd's v3 data
//! model (revisions, versions, compares) so the etcd backend maps one to one.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits::{KEY_MAX_BYTES, RANGE_LIMIT_MAX, TXN_OPS_MAX, VALUE_MAX_BYTES};

/// A store-wide revision: it increases by one with every committed change (a put, a delete that
/// removed something, a transaction with writes, a lease expiry that removed keys). 0 means
/// "never" (the create revision of an absent key).
pub type Revision = u64;

/// A lease's id. Positive; ids are never reused by either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A key's current value and its history counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// Revision that created the key (since it was last absent).
    pub create_revision: Revision,
    /// Revision of the last change to the key.
    pub mod_revision: Revision,
    /// Number of puts since the key was created: 1 after the first.
    pub version: u64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// One key with its value, as returned by `range` and carried by watch events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value (empty in delete events).
    pub value: Bytes,
    /// See [`Versioned::create_revision`]; 0 in delete events.
    pub create_revision: Revision,
    /// See [`Versioned::mod_revision`]; the deleting revision in delete events.
    pub mod_revision: Revision,
    /// See [`Versioned::version`]; 0 in delete events.
    pub version: u64,
    /// See [`Versioned::lease`].
    pub lease: Option<LeaseId>,
}

impl KeyValue {
    /// Joins a key and its versioned value.
    pub fn new(key: Bytes, v: Versioned) -> Self {
        KeyValue {
            key,
            value: v.value,
            create_revision: v.create_revision,
            mod_revision: v.mod_revision,
            version: v.version,
            lease: v.lease,
        }
    }

    /// The versioned value without the key.
    pub fn versioned(&self) -> Versioned {
        Versioned {
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// Which keys a `range` covers. Results are always in ascending byte order of key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Every key starting with these bytes (all keys if empty).
    Prefix(Bytes),
    /// Keys `k` with `start <= k < end`.
    Between {
        /// Inclusive start.
        start: Bytes,
        /// Exclusive end.
        end: Bytes,
    },
}

impl KeyRange {
    /// Keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        KeyRange::Prefix(prefix.into())
    }

    /// Keys in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange::Between {
            start: start.into(),
            end: end.into(),
        }
    }

    /// The range as `[start, end)`, `end == None` meaning unbounded.
    pub fn bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            KeyRange::Prefix(p) => (p.to_vec(), prefix_end(p)),
            KeyRange::Between { start, end } => (start.to_vec(), Some(end.to_vec())),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Prefix(p) => key.starts_with(p),
            KeyRange::Between { start, end } => key >= &start[..] && key < &end[..],
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's "range end" for a
/// prefix), or `None` if there is none (empty prefix or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// How a [`Compare`] relates the stored and the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Stored == given.
    Equal,
    /// Stored != given.
    NotEqual,
    /// Stored > given.
    Greater,
    /// Stored < given.
    Less,
}

impl CompareOp {
    fn holds<T: Ord + ?Sized>(self, stored: &T, given: &T) -> bool {
        match self {
            CompareOp::Equal => stored == given,
            CompareOp::NotEqual => stored != given,
            CompareOp::Greater => stored > given,
            CompareOp::Less => stored < given,
        }
    }
}

/// What a [`Compare`] looks at, with the value to compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value. On an absent key a value compare is false whatever the operator (etcd's rule).
    Value(Bytes),
    /// The version; 0 for an absent key.
    Version(u64),
    /// The create revision; 0 for an absent key, so `CreateRevision(0)` + `Equal` means absent.
    CreateRevision(Revision),
    /// The mod revision; 0 for an absent key.
    ModRevision(Revision),
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Bytes,
    /// The operator.
    pub op: CompareOp,
    /// The field and the value compared with.
    pub target: CompareTarget,
}

impl Compare {
    /// Compares the value.
    pub fn value(key: impl Into<Bytes>, op: CompareOp, value: impl Into<Bytes>) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Value(value.into()),
        }
    }

    /// Compares the version.
    pub fn version(key: impl Into<Bytes>, op: CompareOp, version: u64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Version(version),
        }
    }

    /// Compares the create revision.
    pub fn create_revision(key: impl Into<Bytes>, op: CompareOp, rev: Revision) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::CreateRevision(rev),
        }
    }

    /// Compares the mod revision.
    pub fn mod_revision(key: impl Into<Bytes>, op: CompareOp, rev: Revision) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::ModRevision(rev),
        }
    }

    /// True when the key is absent.
    pub fn absent(key: impl Into<Bytes>) -> Self {
        Compare::create_revision(key, CompareOp::Equal, 0)
    }

    /// Evaluates the compare against the key's current state. Both backends' semantics; the
    /// embedded backend uses it directly.
    pub fn evaluate(&self, current: Option<&Versioned>) -> bool {
        match (&self.target, current) {
            (CompareTarget::Value(_), None) => false,
            (CompareTarget::Value(given), Some(v)) => self.op.holds(&v.value[..], &given[..]),
            (CompareTarget::Version(given), cur) => {
                self.op.holds(&cur.map_or(0, |v| v.version), given)
            }
            (CompareTarget::CreateRevision(given), cur) => {
                self.op.holds(&cur.map_or(0, |v| v.create_revision), given)
            }
            (CompareTarget::ModRevision(given), cur) => {
                self.op.holds(&cur.map_or(0, |v| v.mod_revision), given)
            }
        }
    }
}

/// One operation in a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Reads a key (sees earlier writes of the same branch).
    Get(Bytes),
    /// Writes a key, optionally attached to a lease.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// Lease to attach the key to.
        lease: Option<LeaseId>,
    },
    /// Deletes a key.
    Delete(Bytes),
}

impl TxnOp {
    /// A put without a lease.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A put attached to `lease`.
    pub fn put_with_lease(key: impl Into<Bytes>, value: impl Into<Bytes>, lease: LeaseId) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }

    /// A get.
    pub fn get(key: impl Into<Bytes>) -> Self {
        TxnOp::Get(key.into())
    }

    /// A delete.
    pub fn delete(key: impl Into<Bytes>) -> Self {
        TxnOp::Delete(key.into())
    }
}

/// A compare-and-swap transaction: if every compare holds, run `success`, else `failure`. All of
/// it happens atomically at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations when they do.
    pub success: Vec<TxnOp>,
    /// Operations when they don't.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Txn::default()
    }

    /// Adds conditions.
    pub fn when(mut self, compare: impl IntoIterator<Item = Compare>) -> Self {
        self.compare.extend(compare);
        self
    }

    /// Adds operations to the success branch.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to the failure branch.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Checks the bounds every backend enforces.
    pub fn validate(&self) -> Result<()> {
        for c in &self.compare {
            check_key(&c.key)?;
            if let CompareTarget::Value(v) = &c.target {
                check_value(v)?;
            }
        }
        for branch in [&self.success, &self.failure] {
            if self.compare.len() + branch.len() > TXN_OPS_MAX {
                return Err(Error::InvalidArgument(format!(
                    "transaction has more than {TXN_OPS_MAX} compares and operations"
                )));
            }
            for op in branch {
                match op {
                    TxnOp::Get(k) | TxnOp::Delete(k) => check_key(k)?,
                    TxnOp::Put { key, value, .. } => {
                        check_key(key)?;
                        check_value(value)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The result of one [`TxnOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A get's result.
    Get(Option<Versioned>),
    /// A put happened.
    Put,
    /// A delete; `true` if the key existed.
    Delete(bool),
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (so `success` ran).
    pub succeeded: bool,
    /// The store revision after the transaction: its own revision if it wrote anything.
    pub revision: Revision,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or changed.
    Put,
    /// Deleted (explicitly, or because its lease expired or was revoked).
    Delete,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after a put; for a delete the key with `mod_revision` = the deleting revision.
    pub kv: KeyValue,
    /// The revision of the change.
    pub revision: Revision,
}

/// Checks a key's size.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("empty key".into()));
    }
    if key.len() > KEY_MAX_BYTES {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes exceeds {KEY_MAX_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value's size.
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > VALUE_MAX_BYTES {
        return Err(Error::InvalidArgument(format!(
            "value of {} bytes exceeds {VALUE_MAX_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a range limit.
pub fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > RANGE_LIMIT_MAX {
        return Err(Error::InvalidArgument(format!(
            "range limit {limit} not in 1..={RANGE_LIMIT_MAX}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_rolls_over_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn compare_on_absent_key_follows_etcd() {
        assert!(!Compare::value("k", CompareOp::NotEqual, "x").evaluate(None));
        assert!(Compare::absent("k").evaluate(None));
        assert!(Compare::version("k", CompareOp::Less, 1).evaluate(None));
    }
}
