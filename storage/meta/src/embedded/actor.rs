//! The embedded store's state machine. It runs on one dedicated OS thread that owns the redb
//! database, so every operation is serialized (which makes them linearizable) and no blocking
//! database call ever runs on a tokio worker.
//!
//! Memory state (revision, leases and their keys, watch history, watchers) changes only after
//! the redb commit that makes it true has returned, so a failed commit leaves memory equal to
//! disk; the store is then poisoned rather than retried, because the commit's durability is
//! unknown.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::codec::{LeaseRecord, decode_kv, decode_lease, encode_kv, encode_lease};
use crate::clock::Clock;
use crate::error::{Error, Result, dberr};
use crate::limits::{LEASES_MAX, WATCH_CHANNEL_EVENTS_MAX, WATCH_HISTORY_EVENTS_MAX, WATCHERS_MAX};
use crate::types::{
    EventKind, KeyRange, KeyValue, LeaseId, Revision, Txn, TxnOp, TxnOpResult, TxnResponse,
    Versioned, WatchEvent,
};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_NEXT_LEASE: &str = "next_lease_id";

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;
pub(super) type WatchStart = (Vec<WatchEvent>, mpsc::Receiver<Result<WatchEvent>>);

/// A request to the store thread.
pub(super) enum Cmd {
    Get(Vec<u8>, Reply<Option<Versioned>>),
    Range(KeyRange, usize, Reply<Vec<KeyValue>>),
    Revision(Reply<Revision>),
    Txn(Txn, Reply<TxnResponse>),
    Watch(Vec<u8>, Option<Revision>, Reply<WatchStart>),
    Compact(Revision, Reply<()>),
    Grant(u64, Reply<LeaseId>),
    KeepAlive(LeaseId, Reply<Duration>),
    Revoke(LeaseId, Reply<()>),
    LeaseRemaining(LeaseId, Reply<Option<Duration>>),
    /// Expires due leases; answers the next deadline.
    Sweep(Reply<Option<u64>>),
    /// Closes the database, then answers.
    Shutdown(Reply<()>),
}

struct LeaseState {
    record: LeaseRecord,
    keys: BTreeSet<Vec<u8>>,
}

struct Watcher {
    prefix: Vec<u8>,
    min_revision: Revision,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

pub(super) struct Actor {
    db: Option<Database>,
    clock: Arc<dyn Clock>,
    revision: Revision,
    next_lease_id: i64,
    leases: HashMap<LeaseId, LeaseState>,
    /// `(deadline, lease)` for every lease, so finding due leases costs O(due), not O(leases).
    deadlines: BTreeSet<(u64, LeaseId)>,
    /// Recent events, oldest first; complete for every revision above `history_floor`.
    history: VecDeque<WatchEvent>,
    history_floor: Revision,
    watchers: Vec<Watcher>,
    poisoned: bool,
}

/// Changes a write transaction makes to memory once it has committed.
#[derive(Default)]
struct Pending {
    events: Vec<WatchEvent>,
    attach: Vec<(LeaseId, Vec<u8>)>,
    detach: Vec<(LeaseId, Vec<u8>)>,
}

impl Actor {
    /// Opens (creating if needed) the database file and loads the memory state.
    pub(super) fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Actor> {
        let db = Database::create(path).map_err(dberr)?;
        // Create the tables so read transactions can always open them.
        let wtx = db.begin_write().map_err(dberr)?;
        wtx.open_table(KV).map_err(dberr)?;
        wtx.open_table(LEASES).map_err(dberr)?;
        wtx.open_table(META).map_err(dberr)?;
        wtx.commit().map_err(dberr)?;

        let rtx = db.begin_read().map_err(dberr)?;
        let meta = rtx.open_table(META).map_err(dberr)?;
        let revision = meta
            .get(META_REVISION)
            .map_err(dberr)?
            .map_or(0, |g| g.value());
        let next_lease = meta
            .get(META_NEXT_LEASE)
            .map_err(dberr)?
            .map_or(1, |g| g.value());
        let next_lease_id = i64::try_from(next_lease)
            .map_err(|_| Error::Corrupt(format!("next lease id {next_lease}")))?;
        let mut leases = HashMap::new();
        for row in rtx
            .open_table(LEASES)
            .map_err(dberr)?
            .iter()
            .map_err(dberr)?
        {
            let (id, raw) = row.map_err(dberr)?;
            let record = decode_lease(raw.value())?;
            leases.insert(
                LeaseId(id.value()),
                LeaseState {
                    record,
                    keys: BTreeSet::new(),
                },
            );
        }
        // Lease → keys is derived from the key records rather than stored twice. The store holds
        // small metadata, so one scan at open is cheap.
        for row in rtx.open_table(KV).map_err(dberr)?.iter().map_err(dberr)? {
            let (k, raw) = row.map_err(dberr)?;
            if let Some(lease) = decode_kv(raw.value())?.lease {
                match leases.get_mut(&lease) {
                    Some(state) => {
                        state.keys.insert(k.value().to_vec());
                    }
                    None => {
                        return Err(Error::Corrupt(format!(
                            "a key is attached to lease {lease}, which has no record"
                        )));
                    }
                }
            }
        }
        drop(rtx);
        let deadlines = leases
            .iter()
            .map(|(id, l)| (l.record.deadline_unix_ms, *id))
            .collect();
        tracing::info!(path = %path.display(), revision, leases = leases.len(), "meta store opened");
        Ok(Actor {
            db: Some(db),
            clock,
            revision,
            next_lease_id,
            leases,
            deadlines,
            history: VecDeque::new(),
            // Nothing before the open is in memory: watches must start after it.
            history_floor: revision,
            watchers: Vec::new(),
            poisoned: false,
        })
    }

    /// Serves commands until every handle is gone or shutdown is asked for.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(cmd) = rx.blocking_recv() {
            if let Cmd::Shutdown(reply) = cmd {
                self.db = None;
                self.watchers.clear();
                let _ = reply.send(Ok(()));
                return;
            }
            self.handle(cmd);
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        // Leases are expired before every operation, not only by the background sweep: a
        // caller never observes a key whose lease deadline has passed.
        let ready = self.expire_due();
        match cmd {
            Cmd::Get(key, r) => reply(r, ready.and_then(|()| self.get(&key))),
            Cmd::Range(range, limit, r) => reply(r, ready.and_then(|()| self.range(&range, limit))),
            Cmd::Revision(r) => reply(r, ready.map(|()| self.revision)),
            Cmd::Txn(txn, r) => reply(r, ready.and_then(|()| self.txn(&txn))),
            Cmd::Watch(prefix, from, r) => reply(r, ready.and_then(|()| self.watch(prefix, from))),
            Cmd::Compact(rev, r) => reply(r, ready.and_then(|()| self.compact(rev))),
            Cmd::Grant(ttl_ms, r) => reply(r, ready.and_then(|()| self.grant(ttl_ms))),
            Cmd::KeepAlive(id, r) => reply(r, ready.and_then(|()| self.keep_alive(id))),
            Cmd::Revoke(id, r) => reply(r, ready.and_then(|()| self.revoke(id))),
            Cmd::LeaseRemaining(id, r) => {
                let now = self.clock.now_unix_ms();
                let left = self
                    .leases
                    .get(&id)
                    .map(|l| Duration::from_millis(l.record.deadline_unix_ms.saturating_sub(now)));
                reply(r, ready.map(|()| left));
            }
            Cmd::Sweep(r) => {
                let next = self
                    .leases
                    .values()
                    .map(|l| l.record.deadline_unix_ms)
                    .min();
                reply(r, ready.map(|()| next));
            }
            Cmd::Shutdown(r) => reply(r, Ok(())),
        }
    }

    fn database(&self) -> Result<&Database> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.db.as_ref().ok_or(Error::Closed)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let rtx = self.database()?.begin_read().map_err(dberr)?;
        let table = rtx.open_table(KV).map_err(dberr)?;
        let got = table.get(key).map_err(dberr)?;
        got.map(|g| decode_kv(g.value())).transpose()
    }

    fn range(&self, range: &KeyRange, limit: usize) -> Result<Vec<KeyValue>> {
        let rtx = self.database()?.begin_read().map_err(dberr)?;
        let table = rtx.open_table(KV).map_err(dberr)?;
        let (start, end) = range.bounds();
        let iter = match &end {
            Some(end) => table.range::<&[u8]>(&start[..]..&end[..]).map_err(dberr)?,
            None => table.range::<&[u8]>(&start[..]..).map_err(dberr)?,
        };
        let mut out = Vec::new();
        for row in iter.take(limit) {
            let (k, raw) = row.map_err(dberr)?;
            let key = Bytes::copy_from_slice(k.value());
            out.push(KeyValue::new(key, decode_kv(raw.value())?));
        }
        Ok(out)
    }

    fn txn(&mut self, txn: &Txn) -> Result<TxnResponse> {
        for op in txn.success.iter().chain(&txn.failure) {
            if let TxnOp::Put {
                lease: Some(id), ..
            } = op
                && !self.leases.contains_key(id)
            {
                // Checked up front (also for the branch that won't run) like etcd does.
                return Err(Error::LeaseNotFound(*id));
            }
        }
        let database = self.database()?;
        let wtx = database.begin_write().map_err(dberr)?;
        let new_revision = self.revision + 1;
        let mut pending = Pending::default();
        let mut results = Vec::new();
        let succeeded;
        {
            let mut kv = wtx.open_table(KV).map_err(dberr)?;
            let read = |kv: &redb::Table<&[u8], &[u8]>, key: &[u8]| -> Result<Option<Versioned>> {
                let got = kv.get(key).map_err(dberr)?;
                got.map(|g| decode_kv(g.value())).transpose()
            };
            let mut all = true;
            for c in &txn.compare {
                if !c.evaluate(read(&kv, &c.key)?.as_ref()) {
                    all = false;
                    break;
                }
            }
            succeeded = all;
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            for op in ops {
                match op {
                    TxnOp::Get(key) => results.push(TxnOpResult::Get(read(&kv, key)?)),
                    TxnOp::Put { key, value, lease } => {
                        let cur = read(&kv, key)?;
                        let next = Versioned {
                            value: value.clone(),
                            create_revision: cur
                                .as_ref()
                                .map_or(new_revision, |c| c.create_revision),
                            mod_revision: new_revision,
                            version: cur.as_ref().map_or(1, |c| c.version + 1),
                            lease: *lease,
                        };
                        kv.insert(&key[..], &encode_kv(&next)[..]).map_err(dberr)?;
                        let old_lease = cur.and_then(|c| c.lease);
                        if old_lease != *lease {
                            if let Some(old) = old_lease {
                                pending.detach.push((old, key.to_vec()));
                            }
                            if let Some(new) = lease {
                                pending.attach.push((*new, key.to_vec()));
                            }
                        }
                        pending.events.push(WatchEvent {
                            kind: EventKind::Put,
                            kv: KeyValue::new(key.clone(), next),
                            revision: new_revision,
                        });
                        results.push(TxnOpResult::Put);
                    }
                    TxnOp::Delete(key) => {
                        let cur = read(&kv, key)?;
                        if let Some(cur) = &cur {
                            kv.remove(&key[..]).map_err(dberr)?;
                            if let Some(old) = cur.lease {
                                pending.detach.push((old, key.to_vec()));
                            }
                            pending
                                .events
                                .push(delete_event(key.clone(), new_revision, cur.lease));
                        }
                        results.push(TxnOpResult::Delete(cur.is_some()));
                    }
                }
            }
            if !pending.events.is_empty() {
                wtx.open_table(META)
                    .map_err(dberr)?
                    .insert(META_REVISION, new_revision)
                    .map_err(dberr)?;
            }
        }
        if !pending.events.is_empty() {
            self.commit(wtx)?;
            self.revision = new_revision;
            self.apply(pending);
        } else {
            wtx.abort().map_err(dberr)?;
        }
        Ok(TxnResponse {
            succeeded,
            revision: self.revision,
            results,
        })
    }

    fn commit(&mut self, wtx: redb::WriteTransaction) -> Result<()> {
        wtx.commit().map_err(|e| {
            tracing::error!(error = %e, "meta store commit failed; poisoning the store");
            self.poisoned = true;
            dberr(e)
        })
    }

    fn apply(&mut self, pending: Pending) {
        for (lease, key) in pending.detach {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.remove(&key);
            }
        }
        for (lease, key) in pending.attach {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(key);
            }
        }
        self.publish(pending.events);
    }

    /// Records a revision's events in the history and fans them out to watchers.
    fn publish(&mut self, events: Vec<WatchEvent>) {
        let Some(revision) = events.first().map(|e| e.revision) else {
            return;
        };
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            let matching: Vec<&WatchEvent> = events
                .iter()
                .filter(|e| e.kv.key.starts_with(&w.prefix) && e.revision >= w.min_revision)
                .collect();
            if matching.is_empty() {
                return true;
            }
            // A revision is delivered whole or not at all, and one slot always stays free so the
            // lag error itself fits: the watcher learns exactly where to resume.
            if w.tx.capacity() < matching.len() + 1 {
                tracing::warn!(revision, "meta watcher lagging; closing its stream");
                let _ = w.tx.try_send(Err(Error::WatchLagged {
                    resume_revision: revision,
                }));
                return false;
            }
            matching
                .into_iter()
                .all(|e| w.tx.try_send(Ok(e.clone())).is_ok())
        });
        self.history.extend(events);
        while self.history.len() > WATCH_HISTORY_EVENTS_MAX {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = self.history_floor.max(old.revision);
            }
        }
        // Never keep part of a revision.
        while self
            .history
            .front()
            .is_some_and(|e| e.revision <= self.history_floor)
        {
            self.history.pop_front();
        }
    }

    fn watch(&mut self, prefix: Vec<u8>, from: Option<Revision>) -> Result<WatchStart> {
        self.watchers.retain(|w| !w.tx.is_closed());
        if self.watchers.len() >= WATCHERS_MAX {
            return Err(Error::LimitReached("watchers"));
        }
        let (backlog, min_revision) = match from {
            None => (Vec::new(), self.revision + 1),
            Some(r) if r <= self.history_floor => {
                return Err(Error::Compacted {
                    requested: r,
                    oldest_available: self.history_floor + 1,
                });
            }
            Some(r) => {
                let backlog = self
                    .history
                    .iter()
                    .filter(|e| e.revision >= r && e.kv.key.starts_with(&prefix))
                    .cloned()
                    .collect();
                (backlog, r.max(self.revision + 1))
            }
        };
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_EVENTS_MAX);
        self.watchers.push(Watcher {
            prefix,
            min_revision,
            tx,
        });
        Ok((backlog, rx))
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(Error::InvalidArgument(format!(
                "cannot compact to future revision {revision} (current {})",
                self.revision
            )));
        }
        self.history_floor = self.history_floor.max(revision.saturating_sub(1));
        while self
            .history
            .front()
            .is_some_and(|e| e.revision <= self.history_floor)
        {
            self.history.pop_front();
        }
        Ok(())
    }

    fn grant(&mut self, ttl_ms: u64) -> Result<LeaseId> {
        if self.leases.len() >= LEASES_MAX {
            return Err(Error::LimitReached("leases"));
        }
        let id = LeaseId(self.next_lease_id);
        let record = LeaseRecord {
            ttl_ms,
            deadline_unix_ms: self.clock.now_unix_ms().saturating_add(ttl_ms),
        };
        let next = u64::try_from(id.0 + 1).map_err(|_| Error::Corrupt("lease id".into()))?;
        let wtx = self.database()?.begin_write().map_err(dberr)?;
        wtx.open_table(LEASES)
            .map_err(dberr)?
            .insert(id.0, &encode_lease(record)[..])
            .map_err(dberr)?;
        wtx.open_table(META)
            .map_err(dberr)?
            .insert(META_NEXT_LEASE, next)
            .map_err(dberr)?;
        self.commit(wtx)?;
        self.next_lease_id += 1;
        self.deadlines.insert((record.deadline_unix_ms, id));
        self.leases.insert(
            id,
            LeaseState {
                record,
                keys: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    fn keep_alive(&mut self, id: LeaseId) -> Result<Duration> {
        let ttl_ms = self
            .leases
            .get(&id)
            .ok_or(Error::LeaseNotFound(id))?
            .record
            .ttl_ms;
        let record = LeaseRecord {
            ttl_ms,
            deadline_unix_ms: self.clock.now_unix_ms().saturating_add(ttl_ms),
        };
        let wtx = self.database()?.begin_write().map_err(dberr)?;
        wtx.open_table(LEASES)
            .map_err(dberr)?
            .insert(id.0, &encode_lease(record)[..])
            .map_err(dberr)?;
        self.commit(wtx)?;
        if let Some(l) = self.leases.get_mut(&id) {
            self.deadlines.remove(&(l.record.deadline_unix_ms, id));
            self.deadlines.insert((record.deadline_unix_ms, id));
            l.record = record;
        }
        Ok(Duration::from_millis(ttl_ms))
    }

    fn revoke(&mut self, id: LeaseId) -> Result<()> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(Error::LeaseNotFound(id));
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let new_revision = self.revision + 1;
        let mut events = Vec::new();
        let wtx = self.database()?.begin_write().map_err(dberr)?;
        {
            let mut kv = wtx.open_table(KV).map_err(dberr)?;
            for key in keys {
                if kv.remove(&key[..]).map_err(dberr)?.is_some() {
                    events.push(delete_event(Bytes::from(key), new_revision, Some(id)));
                }
            }
            wtx.open_table(LEASES)
                .map_err(dberr)?
                .remove(id.0)
                .map_err(dberr)?;
            if !events.is_empty() {
                wtx.open_table(META)
                    .map_err(dberr)?
                    .insert(META_REVISION, new_revision)
                    .map_err(dberr)?;
            }
        }
        self.commit(wtx)?;
        if let Some(l) = self.leases.remove(&id) {
            self.deadlines.remove(&(l.record.deadline_unix_ms, id));
        }
        // Like etcd, ending a lease that holds no keys changes no key, so no revision.
        if !events.is_empty() {
            self.revision = new_revision;
            self.publish(events);
        }
        Ok(())
    }

    /// Revokes every lease whose deadline has passed, one revision per lease (as etcd does).
    fn expire_due(&mut self) -> Result<()> {
        if self.db.is_none() {
            return Err(Error::Closed);
        }
        let now = self.clock.now_unix_ms();
        let due: Vec<LeaseId> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            tracing::debug!(lease = %id, "meta lease expired");
            self.revoke(id)?;
        }
        Ok(())
    }
}

fn delete_event(key: Bytes, revision: Revision, lease: Option<LeaseId>) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease,
        },
        revision,
    }
}

fn reply<T>(r: Reply<T>, value: Result<T>) {
    // The caller may have given up (timeout, cancelled future); the result is then unwanted.
    let _ = r.send(value);
}
