//! The cluster client: object PUT/GET/HEAD/DELETE and container listings through the rings,
//! with write quorums, read quorums and handoffs. Everything above the storage nodes (the S3
//! and Swift gateway, the block layer) talks to storage through this type.
//!
//! The decisions (which devices, when a write or read is done, which answer wins) are made by
//! the pure state machines in [`crate::core`]; this module only performs the calls.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use cairn_engine::limits::SMALL_BLOB_MAX_BYTES;
use cairn_engine::{
    BlobKey, BlobMeta, HybridClock, ListItem, ListPage, ListQuery, ListingEntry, ListingInfo,
    ListingKey, ListingStats, MetaValue, Timestamp,
};
use cairn_net::{Body, BodySender, RequestId};
use cairn_ring::{DeviceId, PathHasher};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{debug, warn};

use crate::body_digest::{BodyDigest, BodyDigestCell, BodyDigester};
use crate::core::{
    ReadOutcome, ReadQuorum, Version, WriteOutcome, WriteQuorum, choose_targets, fetch_order,
};
use crate::limits::{
    BLOB_CALL_TIMEOUT_MS, CACHED_COPY_GRACE_MS, CONTAINER_POLICY_CACHE_MAX, CONTAINER_POLICY_TTL,
    EMPTINESS_PAGES_MAX, LIST_PAGE_ITEMS_MAX, SMALL_CALL_TIMEOUT_MS,
};
use crate::peers::{DeviceAddr, PeerError, Peers, RingKind, Rings};
use crate::policy::{CONTAINER_POLICY_KEY, Policies, StoragePolicy};
use crate::rpc::{ListingTarget, NodeRequest, NodeResponse, RemoteError};

pub mod ec;
pub mod extents;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Fewer replicas than the quorum answered.
    #[error("quorum not reached: {0}")]
    NoQuorum(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("range not satisfiable: object is {size_bytes} bytes")]
    RangeNotSatisfiable { size_bytes: u64 },
    #[error("disk full on every device tried")]
    DiskFull,
    #[error("reading the request body: {0}")]
    Body(String),
    #[error("not found")]
    NotFound,
    #[error("the container still holds {objects} objects")]
    NotEmpty { objects: u64 },
    /// An extent change carried an epoch older than a replica has seen: another writer took
    /// the image over.
    #[error("fenced: a replica has seen epoch {seen}, newer than this writer's")]
    Fenced { seen: u64 },
}

/// A new object's description; its bytes come as a [`Body`].
#[derive(Clone, Debug)]
pub struct ObjectPut {
    pub account: String,
    pub container: String,
    pub object: String,
    pub size_bytes: u64,
    pub content_type: String,
    pub user_meta: BTreeMap<String, String>,
    /// Where the body's producer leaves the body's digest before it finishes the stream (the
    /// gateway hashes every body anyway); `None`: the client hashes the body itself.
    pub digest: Option<BodyDigestCell>,
}

/// A container as a read quorum of its replicas sees it.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub info: ListingInfo,
    pub stats: ListingStats,
}

/// A finished write.
#[derive(Clone, Debug)]
pub struct Written {
    pub timestamp: Timestamp,
    /// W acknowledgements came from primaries (read-after-write holds at once).
    pub strict: bool,
}

/// Reads and writes through the rings.
#[derive(Debug)]
pub struct ClusterClient {
    peers: Arc<Peers>,
    clock: Mutex<HybridClock>,
    policies: Arc<Policies>,
    /// Containers' policy indexes as lately read from their records (a container keeps its
    /// policy for life, so only a deleted and re-created container can make an entry stale).
    container_policies: Mutex<HashMap<(String, String), (u16, Instant)>>,
}

type CallResult = (DeviceId, Result<(NodeResponse, Body), PeerError>);

impl ClusterClient {
    /// `node_id` makes this client's timestamps unique in the cluster.
    pub fn new(peers: Arc<Peers>, node_id: u32) -> ClusterClient {
        ClusterClient {
            peers,
            clock: Mutex::new(HybridClock::new(node_id)),
            policies: Arc::new(Policies::default()),
            container_policies: Mutex::new(HashMap::new()),
        }
    }

    /// The same client with the cluster's storage policies (default: replication only).
    pub fn with_policies(mut self, policies: Policies) -> ClusterClient {
        self.policies = Arc::new(policies);
        self
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The policy index a container record names (0 when it names none).
    pub fn policy_of_record(info: &ListingInfo) -> u16 {
        info.metadata
            .get(CONTAINER_POLICY_KEY)
            .and_then(|v| v.value.as_deref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The storage policy of a container's objects, from its record (cached for
    /// [`CONTAINER_POLICY_TTL`]). A container that does not exist gets policy 0.
    pub async fn container_policy(
        &self,
        account: &str,
        container: &str,
    ) -> Result<StoragePolicy, ClientError> {
        if self.policies.iter().count() == 1 {
            return Ok(self.policies.default_policy().clone());
        }
        let key = (account.to_string(), container.to_string());
        let cached = match self.container_policies.lock() {
            Ok(c) => c
                .get(&key)
                .filter(|(_, at)| at.elapsed() < CONTAINER_POLICY_TTL)
                .map(|(i, _)| *i),
            Err(_) => None,
        };
        let index = match cached {
            Some(i) => i,
            None => {
                let info = self.container_info(account, container).await?;
                let index = info.as_ref().map_or(0, Self::policy_of_record);
                if info.is_some()
                    && let Ok(mut c) = self.container_policies.lock()
                {
                    if c.len() >= CONTAINER_POLICY_CACHE_MAX {
                        c.clear();
                    }
                    c.insert(key, (index, Instant::now()));
                }
                index
            }
        };
        self.policies.get(index).cloned().ok_or_else(|| {
            ClientError::Invalid(format!(
                "container /{account}/{container} uses storage policy {index}, which this cluster's config does not define"
            ))
        })
    }

    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    fn now(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let wall = u64::try_from(wall).unwrap_or(u64::MAX);
        match self.clock.lock() {
            Ok(mut c) => c.now(wall),
            Err(poisoned) => poisoned.into_inner().now(wall),
        }
    }

    fn targets(
        &self,
        rings: &Rings,
        kind: RingKind,
        partition: u32,
    ) -> (Vec<DeviceId>, Vec<DeviceId>, Vec<DeviceId>) {
        let (primaries, handoffs) = self.peers.placement(rings, kind, partition);
        let is_down = |d: DeviceId| match self.peers.resolve(rings, kind, d) {
            Some(addr) => self.peers.is_down(&addr),
            None => true,
        };
        let (targets, spare) = choose_targets(&primaries, &handoffs, is_down);
        (primaries, targets, spare)
    }

    /// The container listing device each object replica updates: replica i → listing replica
    /// i mod n, as Swift pairs them, so every listing replica hears of every write.
    fn listing_targets(&self, rings: &Rings, account: &str, container: &str) -> Vec<ListingTarget> {
        let path = PathHasher::path_of(account, Some(container), None);
        let partition = rings.container.partition_for(&rings.hasher, &path);
        let (primaries, _) = self.peers.placement(rings, RingKind::Container, partition);
        primaries
            .iter()
            .filter_map(|&d| self.peers.resolve(rings, RingKind::Container, d))
            .map(|a| ListingTarget {
                key: ListingKey::new(partition, path.clone()),
                addr: a.addr,
                device: a.device,
            })
            .collect()
    }

    /// Stores an object: streams the body to the replica set at once and answers when a write
    /// quorum has made it durable.
    #[tracing::instrument(name = "put_object", skip_all, fields(account = %put.account, container = %put.container, object = %put.object, request_id = tracing::field::Empty))]
    pub async fn put_object(&self, put: ObjectPut, body: Body) -> Result<Written, ClientError> {
        let policy = self.container_policy(&put.account, &put.container).await?;
        if let Some(scheme) = policy.ec() {
            return self.put_ec(put, &policy, scheme, body).await;
        }
        let rings = self.peers.rings();
        let name = PathHasher::path_of(&put.account, Some(&put.container), Some(&put.object));
        let partition = rings.object.partition_for(&rings.hasher, &name);
        let (primaries, targets, spare) = self.targets(&rings, RingKind::Object, partition);
        let listings = self.listing_targets(&rings, &put.account, &put.container);
        let timestamp = self.now();
        // Reads go to the first target that holds the version (see `head_quorum`): the other
        // copies need not fill the page cache.
        let reader = targets.first().copied();
        let (quorum, send) = WriteQuorum::start_with(&primaries, &targets, spare);
        // A body in hand can be re-sent to a handoff; a stream is teed to the first targets only.
        // Either way it ends with the metadata trailer carrying the body's digest.
        let (body, pump) = match body {
            Body::Empty => (
                WriteBody::Replayable(with_digest_trailer(Bytes::new())?),
                None,
            ),
            Body::Full(b) => (WriteBody::Replayable(with_digest_trailer(b)?), None),
            stream @ Body::Stream(_) => {
                let (senders, bodies): (Vec<_>, Vec<_>) =
                    send.iter().map(|_| Body::channel()).unzip();
                (
                    WriteBody::Teed(bodies),
                    Some(tokio::spawn(tee(stream, put.digest.clone(), senders))),
                )
            }
        };
        let req_for = |device: DeviceId, replica: usize| {
            let addr = self.peers.resolve(&rings, RingKind::Object, device)?;
            let req = NodeRequest::PutBlob {
                device: addr.device.clone(),
                key: BlobKey::new(partition, name.clone()),
                timestamp,
                size_bytes: put.size_bytes,
                content_type: put.content_type.clone(),
                user_meta: put.user_meta.clone(),
                listing: listings.get(replica % listings.len().max(1)).cloned(),
                meta_trailer: true,
                write_around: Some(device) != reader,
            };
            Some((addr, req))
        };
        let (outcome, last_error) = self
            .drive_write(quorum, send, body, BLOB_CALL_TIMEOUT_MS, &req_for)
            .await;
        if let Some(pump) = pump
            && let Ok(Err(e)) = pump.await
            && outcome.is_none()
        {
            return Err(ClientError::Body(e));
        }
        match outcome {
            Some(WriteOutcome::Succeeded { strict }) => Ok(Written { timestamp, strict }),
            _ if last_error.contains("disk full") => Err(ClientError::DiskFull),
            _ => Err(ClientError::NoQuorum(last_error)),
        }
    }

    /// Deletes an object (a tombstone at a quorum of replicas).
    #[tracing::instrument(name = "delete_object", skip(self), fields(request_id = tracing::field::Empty))]
    pub async fn delete_object(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> Result<Written, ClientError> {
        let policy = self.container_policy(account, container).await?;
        if let Some(scheme) = policy.ec() {
            return self
                .delete_ec(account, container, object, &policy, scheme)
                .await;
        }
        let rings = self.peers.rings();
        let name = PathHasher::path_of(account, Some(container), Some(object));
        let partition = rings.object.partition_for(&rings.hasher, &name);
        let (primaries, targets, spare) = self.targets(&rings, RingKind::Object, partition);
        let listings = self.listing_targets(&rings, account, container);
        let timestamp = self.now();
        let (quorum, send) = WriteQuorum::start_with(&primaries, &targets, spare);
        let req_for = |device: DeviceId, replica: usize| {
            let addr = self.peers.resolve(&rings, RingKind::Object, device)?;
            let req = NodeRequest::DeleteBlob {
                device: addr.device.clone(),
                key: BlobKey::new(partition, name.clone()),
                timestamp,
                listing: listings.get(replica % listings.len().max(1)).cloned(),
            };
            Some((addr, req))
        };
        let body = WriteBody::Replayable(Bytes::new());
        let (outcome, last_error) = self
            .drive_write(quorum, send, body, SMALL_CALL_TIMEOUT_MS, &req_for)
            .await;
        match outcome {
            Some(WriteOutcome::Succeeded { strict }) => Ok(Written { timestamp, strict }),
            _ => Err(ClientError::NoQuorum(last_error)),
        }
    }

    /// Sends a write to its targets and feeds the answers to the quorum until it decides;
    /// failed targets are replaced by the handoffs the quorum names (when the body can be
    /// replayed). Returns the outcome (`None`: every call ended undecided) and the last error.
    async fn drive_write(
        &self,
        mut quorum: WriteQuorum,
        send: Vec<DeviceId>,
        body: WriteBody,
        timeout_ms: u64,
        req_for: &(dyn Fn(DeviceId, usize) -> Option<(DeviceAddr, NodeRequest)> + Sync),
    ) -> (Option<WriteOutcome>, String) {
        let request_id = RequestId::random();
        tracing::Span::current().record("request_id", tracing::field::display(request_id));
        let (replay, teed) = match body {
            WriteBody::Replayable(bytes) => (Some(bytes), Vec::new()),
            WriteBody::Teed(bodies) => (None, bodies),
        };
        let mut to_send: VecDeque<(DeviceId, Option<Body>)> = send
            .into_iter()
            .zip(
                teed.into_iter()
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .collect();
        let mut calls = FuturesUnordered::new();
        let mut replica = 0;
        let mut last_error = String::from("no target answered");
        let mut outcome = quorum.outcome();
        loop {
            while let Some((device, teed)) = to_send.pop_front() {
                let body = teed.or_else(|| replay.clone().map(Body::Full));
                let call =
                    body.and_then(|b| req_for(device, replica).map(|(addr, req)| (addr, req, b)));
                match call {
                    Some((addr, req, b)) => {
                        replica += 1;
                        calls.push(self.call_owned(device, addr, req, b, timeout_ms, request_id));
                    }
                    None => {
                        // Not in the ring any more, or a streamed body that cannot be replayed.
                        let (o, substitute) = quorum.on_failure(device);
                        outcome = o;
                        to_send.extend(substitute.map(|h| (h, None)));
                    }
                }
            }
            if outcome.is_some() {
                break;
            }
            let Some((device, result)) = calls.next().await else {
                break;
            };
            match result {
                Ok((NodeResponse::Written { .. } | NodeResponse::Done, _)) => {
                    outcome = quorum.on_ack(device)
                }
                other => {
                    last_error = describe(&other);
                    let (o, substitute) = quorum.on_failure(device);
                    outcome = o;
                    to_send.extend(substitute.map(|h| (h, None)));
                }
            }
        }
        // Stragglers finish in the background; the replicator repairs any that fail.
        tokio::spawn(async move { while calls.next().await.is_some() {} });
        (outcome, last_error)
    }

    /// The newest version among a read quorum (`None`: absent or deleted), and the devices that
    /// hold exactly it, in the order to fetch its bytes from (`for_bytes`: the caller will).
    async fn head_quorum(
        &self,
        account: &str,
        container: &str,
        object: &str,
        for_bytes: bool,
    ) -> Result<(u32, String, Option<(BlobMeta, Vec<DeviceId>)>), ClientError> {
        let rings = self.peers.rings();
        let name = PathHasher::path_of(account, Some(container), Some(object));
        let partition = rings.object.partition_for(&rings.hasher, &name);
        let (primaries, targets, spare) = self.targets(&rings, RingKind::Object, partition);
        let request_id = RequestId::random();
        tracing::Span::current().record("request_id", tracing::field::display(request_id));
        let (mut quorum, send) = ReadQuorum::<BlobMeta>::start_with(&primaries, &targets, spare);
        let req_for = |device: DeviceId| {
            let addr = self.peers.resolve(&rings, RingKind::Object, device)?;
            let req = NodeRequest::HeadBlob {
                device: addr.device.clone(),
                key: BlobKey::new(partition, name.clone()),
            };
            Some((addr, req))
        };
        let mut to_send: VecDeque<DeviceId> = send.into();
        let mut asked: Vec<DeviceId> = Vec::new();
        let mut calls = FuturesUnordered::new();
        let mut holders: BTreeMap<Timestamp, Vec<DeviceId>> = BTreeMap::new();
        let mut answered: Vec<DeviceId> = Vec::new();
        let mut last_error = String::from("no replica answered");
        let mut outcome = None;
        loop {
            while let Some(device) = to_send.pop_front() {
                match req_for(device) {
                    Some((addr, req)) => {
                        asked.push(device);
                        calls.push(self.call_owned(
                            device,
                            addr,
                            req,
                            Body::Empty,
                            SMALL_CALL_TIMEOUT_MS,
                            request_id,
                        ));
                    }
                    None => {
                        let (o, substitute) = quorum.on_failure(device);
                        outcome = outcome.or(o);
                        to_send.extend(substitute);
                    }
                }
            }
            if outcome.is_some() {
                break;
            }
            let Some((device, result)) = calls.next().await else {
                break;
            };
            match result {
                Ok((NodeResponse::Meta(meta), _)) => {
                    answered.push(device);
                    let held = meta.map(|m| {
                        holders.entry(m.timestamp).or_default().push(device);
                        (
                            Version {
                                timestamp: m.timestamp,
                                tombstone: m.tombstone,
                            },
                            m,
                        )
                    });
                    outcome = quorum.on_answer(device, held);
                }
                other => {
                    last_error = describe(&other);
                    let (o, substitute) = quorum.on_failure(device);
                    outcome = o;
                    to_send.extend(substitute);
                }
            }
        }
        // A large object's bytes are best read from the first target's cached copy: give its
        // HEAD a moment if it is the one still out (a hung device costs only the grace).
        let large = matches!(&outcome, Some(ReadOutcome::Answered { newest: Some((_, v, m)), .. })
            if !v.tombstone && m.size_bytes > SMALL_BLOB_MAX_BYTES);
        if let Some(first) = targets.first().copied()
            && for_bytes
            && large
            && asked.contains(&first)
            && !answered.contains(&first)
        {
            let grace = Duration::from_millis(CACHED_COPY_GRACE_MS);
            let _ = tokio::time::timeout(grace, async {
                while let Some((device, result)) = calls.next().await {
                    if let Ok((NodeResponse::Meta(meta), _)) = result {
                        answered.push(device);
                        if let Some(m) = meta {
                            holders.entry(m.timestamp).or_default().push(device);
                        }
                    }
                    if device == first {
                        break;
                    }
                }
            })
            .await;
        }
        finish_in_background(calls);
        match outcome {
            Some(ReadOutcome::Answered { newest, .. }) => {
                let found = newest.filter(|(_, v, _)| !v.tombstone).map(|(_, v, meta)| {
                    let held = holders.remove(&v.timestamp).unwrap_or_default();
                    let order = fetch_order(&held, &asked, &answered, targets.first().copied());
                    (meta, order)
                });
                Ok((partition, name, found))
            }
            _ => Err(ClientError::NoQuorum(last_error)),
        }
    }

    /// An object's metadata, or `None` if it does not exist (or was deleted).
    pub async fn head_object(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> Result<Option<BlobMeta>, ClientError> {
        let policy = self.container_policy(account, container).await?;
        if let Some(scheme) = policy.ec() {
            return Ok(self
                .head_ec(account, container, object, &policy, scheme)
                .await?
                .map(|(m, _)| m));
        }
        Ok(self
            .head_quorum(account, container, object, false)
            .await?
            .2
            .map(|(m, _)| m))
    }

    /// An object's metadata and bytes (`range` is `[start, end)`), streamed from one replica
    /// holding the newest version; a replica whose copy fails its checksum is skipped.
    #[tracing::instrument(name = "get_object", skip(self), fields(request_id = tracing::field::Empty))]
    pub async fn get_object(
        &self,
        account: &str,
        container: &str,
        object: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<(BlobMeta, Body)>, ClientError> {
        let Some(reader) = self.open_object(account, container, object).await? else {
            return Ok(None);
        };
        let meta = reader.meta.clone();
        Ok(Some((meta, reader.read(range).await?)))
    }

    /// Finds the newest version of an object (a read quorum of HEADs) without reading it yet,
    /// so a caller can check conditions and resolve ranges against its size first.
    pub async fn open_object(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> Result<Option<ObjectReader>, ClientError> {
        let policy = self.container_policy(account, container).await?;
        if let Some(scheme) = policy.ec() {
            return Ok(self
                .head_ec(account, container, object, &policy, scheme)
                .await?
                .map(|(meta, fetch)| ObjectReader {
                    meta,
                    fetch: Fetch::Fragments(fetch),
                }));
        }
        let (partition, name, found) = self.head_quorum(account, container, object, true).await?;
        let Some((meta, holders)) = found else {
            return Ok(None);
        };
        let rings = self.peers.rings();
        let holders: std::collections::VecDeque<DeviceAddr> = holders
            .into_iter()
            .filter_map(|d| self.peers.resolve(&rings, RingKind::Object, d))
            .collect();
        let fetch = ReplicaFetch {
            peers: self.peers.clone(),
            key: BlobKey::new(partition, name),
            timestamp: meta.timestamp,
            holders,
        };
        Ok(Some(ObjectReader {
            meta,
            fetch: Fetch::Replicas(fetch),
        }))
    }

    /// One page of a container listing, merged from a read quorum of listing replicas.
    pub async fn list_objects(
        &self,
        account: &str,
        container: &str,
        query: ListQuery,
    ) -> Result<ListPage, ClientError> {
        let path = PathHasher::path_of(account, Some(container), None);
        self.list_listing(RingKind::Container, path, query).await
    }

    /// One page of an account's containers, merged from a read quorum of account replicas.
    pub async fn list_containers(
        &self,
        account: &str,
        query: ListQuery,
    ) -> Result<ListPage, ClientError> {
        let path = PathHasher::path_of(account, None, None);
        self.list_listing(RingKind::Account, path, query).await
    }

    #[tracing::instrument(name = "list", skip(self, query), fields(request_id = tracing::field::Empty))]
    async fn list_listing(
        &self,
        kind: RingKind,
        path: String,
        query: ListQuery,
    ) -> Result<ListPage, ClientError> {
        // Replicas also return deletions, so one replica's newer deletion hides another's
        // older entry in the merge (read-after-write for listings, deletes included).
        let query = ListQuery {
            include_deleted: true,
            ..query
        };
        let wire = crate::rpc::WireListQuery::from(query.clone());
        let answers = self
            .read_answers(kind, &path, |device, key| NodeRequest::List {
                device,
                key,
                query: wire.clone(),
            })
            .await?;
        let pages = answers
            .into_iter()
            .filter_map(|a| match a {
                NodeResponse::Page(p) => Some(ListPage::from(p)),
                _ => None,
            })
            .collect();
        Ok(merge_pages(pages, &query))
    }

    /// Asks a listing's replicas (on `kind`'s ring) and returns the answers of a read quorum.
    async fn read_answers(
        &self,
        kind: RingKind,
        path: &str,
        make: impl Fn(String, ListingKey) -> NodeRequest,
    ) -> Result<Vec<NodeResponse>, ClientError> {
        let rings = self.peers.rings();
        let partition = rings
            .ring(kind)
            .ok_or_else(|| ClientError::Invalid(format!("no {kind:?} ring")))?
            .partition_for(&rings.hasher, path);
        let (primaries, targets, spare) = self.targets(&rings, kind, partition);
        let (mut quorum, send) = ReadQuorum::<()>::start_with(&primaries, &targets, spare);
        let key = ListingKey::new(partition, path);
        let request_id = RequestId::random();
        tracing::Span::current().record("request_id", tracing::field::display(request_id));
        let req_for = |device: DeviceId| {
            let addr = self.peers.resolve(&rings, kind, device)?;
            let req = make(addr.device.clone(), key.clone());
            Some((addr, req))
        };
        let mut to_send: VecDeque<DeviceId> = send.into();
        let mut calls = FuturesUnordered::new();
        let mut answers = Vec::new();
        let mut last_error = String::from("no replica answered");
        let mut done = false;
        loop {
            while let Some(device) = to_send.pop_front() {
                match req_for(device) {
                    Some((addr, req)) => calls.push(self.call_owned(
                        device,
                        addr,
                        req,
                        Body::Empty,
                        SMALL_CALL_TIMEOUT_MS,
                        request_id,
                    )),
                    None => {
                        let (o, substitute) = quorum.on_failure(device);
                        done |= o.is_some();
                        to_send.extend(substitute);
                    }
                }
            }
            if done {
                break;
            }
            let Some((device, result)) = calls.next().await else {
                break;
            };
            match result {
                Ok((answer, _)) if !matches!(answer, NodeResponse::Refused(_)) => {
                    answers.push(answer);
                    // The quorum only counts answers here; callers merge them.
                    done = quorum.on_answer(device, None).is_some();
                }
                other => {
                    last_error = describe(&other);
                    let (o, substitute) = quorum.on_failure(device);
                    done = o.is_some();
                    to_send.extend(substitute);
                }
            }
        }
        finish_in_background(calls);
        if answers.len() < crate::core::read_quorum(primaries.len()) {
            return Err(ClientError::NoQuorum(last_error));
        }
        Ok(answers)
    }

    /// Writes to a quorum of a listing's replicas (requests without a body).
    async fn write_listing(
        &self,
        kind: RingKind,
        path: &str,
        make: impl Fn(String, ListingKey) -> NodeRequest + Sync,
    ) -> Result<bool, ClientError> {
        let rings = self.peers.rings();
        let partition = rings
            .ring(kind)
            .ok_or_else(|| ClientError::Invalid(format!("no {kind:?} ring")))?
            .partition_for(&rings.hasher, path);
        let (primaries, targets, spare) = self.targets(&rings, kind, partition);
        let (quorum, send) = WriteQuorum::start_with(&primaries, &targets, spare);
        let key = ListingKey::new(partition, path);
        let req_for = |device: DeviceId, _replica: usize| {
            let addr = self.peers.resolve(&rings, kind, device)?;
            let req = make(addr.device.clone(), key.clone());
            Some((addr, req))
        };
        let body = WriteBody::Replayable(Bytes::new());
        match self
            .drive_write(quorum, send, body, SMALL_CALL_TIMEOUT_MS, &req_for)
            .await
        {
            (Some(WriteOutcome::Succeeded { strict }), _) => Ok(strict),
            (_, last_error) => Err(ClientError::NoQuorum(last_error)),
        }
    }

    /// Creates a container (or updates its metadata) and enters it in the account's listing.
    /// Creating an existing container keeps its objects, as in Swift.
    #[tracing::instrument(name = "put_container", skip(self, metadata), fields(request_id = tracing::field::Empty))]
    pub async fn put_container(
        &self,
        account: &str,
        container: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<Written, ClientError> {
        let timestamp = self.now();
        let info = ListingInfo {
            created: Some(timestamp),
            deleted: None,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        MetaValue {
                            timestamp,
                            value: Some(v),
                        },
                    )
                })
                .collect(),
        };
        self.record_container(account, container, timestamp, info)
            .await
    }

    /// Sets and removes metadata keys of a container's record (Swift's container POST),
    /// leaving the rest and its creation time alone. The caller checks the container exists.
    pub async fn update_container_meta(
        &self,
        account: &str,
        container: &str,
        set: BTreeMap<String, String>,
        remove: std::collections::BTreeSet<String>,
    ) -> Result<Written, ClientError> {
        let timestamp = self.now();
        let info = ListingInfo {
            created: None,
            deleted: None,
            metadata: meta_changes(timestamp, set, remove),
        };
        let path = PathHasher::path_of(account, Some(container), None);
        let strict = self.merge_info(RingKind::Container, &path, &info).await?;
        Ok(Written { timestamp, strict })
    }

    /// Sets and removes metadata keys of an account's record (Swift's account POST).
    pub async fn update_account_meta(
        &self,
        account: &str,
        set: BTreeMap<String, String>,
        remove: std::collections::BTreeSet<String>,
    ) -> Result<Written, ClientError> {
        let timestamp = self.now();
        let info = ListingInfo {
            created: None,
            deleted: None,
            metadata: meta_changes(timestamp, set, remove),
        };
        let path = PathHasher::path_of(account, None, None);
        let strict = self.merge_info(RingKind::Account, &path, &info).await?;
        Ok(Written { timestamp, strict })
    }

    /// An account's record (metadata) and its container count, merged from a read quorum. An
    /// account that never had a record reads as an empty one: accounts exist with their project.
    pub async fn account_info(&self, account: &str) -> Result<ContainerInfo, ClientError> {
        let path = PathHasher::path_of(account, None, None);
        let info = self.merged_info(RingKind::Account, &path).await?;
        let stats = self.largest_stats(RingKind::Account, &path).await?;
        Ok(ContainerInfo { info, stats })
    }

    /// Merges `info` into a listing's record on a write quorum of its replicas.
    async fn merge_info(
        &self,
        kind: RingKind,
        path: &str,
        info: &ListingInfo,
    ) -> Result<bool, ClientError> {
        self.write_listing(kind, path, |device, key| NodeRequest::MergeListingInfo {
            device,
            key,
            info: info.clone(),
        })
        .await
    }

    /// A listing's record merged from a read quorum of its replicas.
    async fn merged_info(&self, kind: RingKind, path: &str) -> Result<ListingInfo, ClientError> {
        let mut info = ListingInfo::default();
        for a in self
            .read_answers(kind, path, |device, key| NodeRequest::GetListingInfo {
                device,
                key,
            })
            .await?
        {
            if let NodeResponse::Info(Some(i)) = a {
                info.merge(&i);
            }
        }
        Ok(info)
    }

    /// A listing's count and bytes: the largest a replica of a read quorum reports (a replica
    /// behind on updates only ever reports less).
    async fn largest_stats(&self, kind: RingKind, path: &str) -> Result<ListingStats, ClientError> {
        Ok(self
            .read_answers(kind, path, |device, key| NodeRequest::ListingStats {
                device,
                key,
            })
            .await?
            .into_iter()
            .filter_map(|a| match a {
                NodeResponse::Stats(s) => Some(s),
                _ => None,
            })
            .max_by_key(|s| (s.object_count, s.bytes))
            .unwrap_or_default())
    }

    /// Deletes an empty container; `NotEmpty` if a read quorum shows objects in it.
    #[tracing::instrument(name = "delete_container", skip(self), fields(request_id = tracing::field::Empty))]
    pub async fn delete_container(
        &self,
        account: &str,
        container: &str,
    ) -> Result<Written, ClientError> {
        let Some(found) = self.head_container(account, container).await? else {
            return Err(ClientError::NotFound);
        };
        if found.stats.object_count > 0 && self.lists_an_object(account, container).await? {
            return Err(ClientError::NotEmpty {
                objects: found.stats.object_count,
            });
        }
        let timestamp = self.now();
        let info = ListingInfo {
            created: None,
            deleted: Some(timestamp),
            metadata: BTreeMap::new(),
        };
        self.record_container(account, container, timestamp, info)
            .await
    }

    /// Whether the container listing, merged from a read quorum (newest entry wins, deletions
    /// included), shows a live object. A replica's object count lags a deletion that another
    /// replica already holds (an object write's last replica, and so its listing update, may
    /// still be in flight after the quorum answered), so counts alone would refuse to delete a
    /// container whose objects were all deleted. Conservative when the deletions to skip over
    /// run past [`EMPTINESS_PAGES_MAX`] pages.
    async fn lists_an_object(&self, account: &str, container: &str) -> Result<bool, ClientError> {
        let mut marker = None;
        for _ in 0..EMPTINESS_PAGES_MAX {
            let query = ListQuery {
                marker: marker.take(),
                limit: LIST_PAGE_ITEMS_MAX,
                ..ListQuery::default()
            };
            let page = self.list_objects(account, container, query).await?;
            if !page.items.is_empty() {
                return Ok(true);
            }
            if !page.truncated {
                return Ok(false);
            }
            let Some(next) = page.next_marker else {
                return Ok(true);
            };
            marker = Some(next);
        }
        Ok(true)
    }

    /// Merges a container's record on its replicas, then its entry in the account listing
    /// (deleted when the record says so). Both merges are idempotent, so a failed call can be
    /// retried as a whole.
    async fn record_container(
        &self,
        account: &str,
        container: &str,
        timestamp: Timestamp,
        info: ListingInfo,
    ) -> Result<Written, ClientError> {
        let deleted = info.deleted == Some(timestamp);
        let path = PathHasher::path_of(account, Some(container), None);
        let strict = self.merge_info(RingKind::Container, &path, &info).await?;
        self.account_entry(account, container, timestamp, deleted)
            .await?;
        Ok(Written { timestamp, strict })
    }

    async fn account_entry(
        &self,
        account: &str,
        container: &str,
        timestamp: Timestamp,
        deleted: bool,
    ) -> Result<bool, ClientError> {
        let entry = ListingEntry {
            name: container.to_string(),
            timestamp,
            deleted,
            size_bytes: 0,
            etag: String::new(),
            content_type: String::new(),
        };
        let path = PathHasher::path_of(account, None, None);
        self.write_listing(RingKind::Account, &path, |device, key| {
            NodeRequest::MergeListing {
                device,
                key,
                entries: vec![entry.clone()],
            }
        })
        .await
    }

    /// A container's record merged from a read quorum, without its stats (one round trip
    /// fewer than [`Self::head_container`]); `None` if it does not exist.
    pub async fn container_info(
        &self,
        account: &str,
        container: &str,
    ) -> Result<Option<ListingInfo>, ClientError> {
        let path = PathHasher::path_of(account, Some(container), None);
        let info = self.merged_info(RingKind::Container, &path).await?;
        Ok(info.exists().then_some(info))
    }

    /// A container's record (merged from a read quorum) and its object count and bytes (the
    /// largest a replica reports); `None` if it does not exist.
    pub async fn head_container(
        &self,
        account: &str,
        container: &str,
    ) -> Result<Option<ContainerInfo>, ClientError> {
        let path = PathHasher::path_of(account, Some(container), None);
        let info = self.merged_info(RingKind::Container, &path).await?;
        if !info.exists() {
            return Ok(None);
        }
        let stats = self.largest_stats(RingKind::Container, &path).await?;
        Ok(Some(ContainerInfo { info, stats }))
    }

    fn call_owned(
        &self,
        device: DeviceId,
        addr: DeviceAddr,
        req: NodeRequest,
        body: Body,
        timeout_ms: u64,
        request_id: RequestId,
    ) -> impl std::future::Future<Output = CallResult> + Send + 'static {
        let peers = self.peers.clone();
        async move {
            let r = peers
                .call(
                    &addr,
                    &req,
                    body,
                    Duration::from_millis(timeout_ms),
                    Some(request_id),
                )
                .await;
            if let Err(e) = &r {
                debug!(device = %addr.device, peer = %addr.addr, error = %e, "replica call failed");
            }
            (device, r)
        }
    }
}

/// An object version found by [`ClusterClient::open_object`], not read yet.
#[derive(Debug)]
pub struct ObjectReader {
    pub meta: BlobMeta,
    fetch: Fetch,
}

/// Where an object's bytes come from.
#[derive(Debug)]
enum Fetch {
    /// Whole copies: any holder serves any range.
    Replicas(ReplicaFetch),
    /// Fragment archives of an erasure-coded object.
    Fragments(ec::FragmentFetch),
}

impl ObjectReader {
    /// Streams `range` (`[start, end)`, or the whole object) from a holder of this version. A
    /// copy can fail its checksum mid-stream (the node refuses to send bad bytes and ends the
    /// stream with an error): the read resumes from the next holder at the byte reached, so
    /// the caller sees one clean body.
    pub async fn read(self, range: Option<(u64, u64)>) -> Result<Body, ClientError> {
        let (start, end) = range.unwrap_or((0, self.meta.size_bytes));
        let mut fetch = match self.fetch {
            Fetch::Replicas(f) => f,
            Fetch::Fragments(f) => {
                if start > end || end > self.meta.size_bytes {
                    return Err(ClientError::RangeNotSatisfiable {
                        size_bytes: self.meta.size_bytes,
                    });
                }
                return Ok(f.read(start, end));
            }
        };
        let (_, mut body) = fetch.open(Some((start, end))).await?;
        let (mut tx, out) = Body::channel();
        tokio::spawn(async move {
            let mut pos = start;
            loop {
                match body.next_chunk().await {
                    Some(Ok(chunk)) => {
                        pos += chunk.len() as u64;
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = tx.finish().await;
                        return;
                    }
                    Some(Err(e)) => {
                        warn!(object = %fetch.key.name, at = pos, error = %e, "replica stream failed; resuming from another");
                        match fetch.open(Some((pos, end))).await {
                            Ok((_, next)) => body = next,
                            Err(e) => {
                                tx.abort(cairn_net::NetError::Remote(e.to_string())).await;
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(out)
    }
}

/// Opens a byte range of one object version from its holders, one after another.
#[derive(Debug)]
struct ReplicaFetch {
    peers: Arc<Peers>,
    key: BlobKey,
    timestamp: Timestamp,
    holders: std::collections::VecDeque<DeviceAddr>,
}

impl ReplicaFetch {
    /// The next holder that serves the range of exactly this version.
    async fn open(&mut self, range: Option<(u64, u64)>) -> Result<(BlobMeta, Body), ClientError> {
        let mut last_error = String::from("no replica holds the newest version");
        while let Some(addr) = self.holders.pop_front() {
            let req = NodeRequest::GetBlob {
                device: addr.device.clone(),
                key: self.key.clone(),
                range,
            };
            let timeout = Duration::from_millis(BLOB_CALL_TIMEOUT_MS);
            match self
                .peers
                .call(&addr, &req, Body::Empty, timeout, None)
                .await
            {
                Ok((NodeResponse::Blob(Some(m)), body)) if m.timestamp == self.timestamp => {
                    return Ok((m, body));
                }
                Ok((NodeResponse::Blob(_), _)) => {
                    last_error = format!("{} changed underneath", addr.addr)
                }
                Err(PeerError::Refused(RemoteError::RangeNotSatisfiable { size_bytes })) => {
                    return Err(ClientError::RangeNotSatisfiable { size_bytes });
                }
                Err(e) => {
                    warn!(device = %addr.device, peer = %addr.addr, error = %e, "GET from replica failed; trying another");
                    last_error = e.to_string();
                }
                Ok((other, _)) => last_error = format!("unexpected answer {other:?}"),
            }
        }
        Err(ClientError::NoQuorum(last_error))
    }
}

/// How a write's body reaches its targets.
#[derive(Debug)]
enum WriteBody {
    /// In hand: every target (handoffs included) gets a copy.
    Replayable(Bytes),
    /// Streamed: one channel per first target, fed by [`tee`]; not replayable.
    Teed(Vec<Body>),
}

/// Copies a streamed body to every replica's channel, then the metadata trailer with the body's
/// digest (the producer's from `digest`, else hashed here). A replica that stops reading is
/// dropped (its call fails, the quorum decides); the source is read to the end either way.
async fn tee(
    body: Body,
    digest: Option<BodyDigestCell>,
    mut senders: Vec<BodySender>,
) -> Result<(), String> {
    let mut body = body;
    let mut digester = digest.is_none().then(BodyDigester::new);
    let abort_all = |senders: Vec<BodySender>, why: String| async move {
        for s in senders {
            s.abort(cairn_net::NetError::Remote(why.clone())).await;
        }
    };
    while let Some(chunk) = body.next_chunk().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                abort_all(senders, format!("client body failed: {e}")).await;
                return Err(e.to_string());
            }
        };
        if let Some(d) = &mut digester {
            d.update(&chunk);
        }
        let mut alive = Vec::with_capacity(senders.len());
        for mut s in senders {
            if s.send(chunk.clone()).await.is_ok() {
                alive.push(s);
            }
        }
        senders = alive;
    }
    let (digest, meta) = match digester {
        Some(d) => (d.finish(), BTreeMap::new()),
        None => match digest.and_then(|cell| cell.get().map(|d| (d, cell.meta()))) {
            Some(found) => found,
            None => {
                let why = "the body ended without its producer's digest".to_string();
                abort_all(senders, why.clone()).await;
                return Err(why);
            }
        },
    };
    let trailer = match digest_trailer(digest, meta) {
        Ok(t) => t,
        Err(e) => {
            abort_all(senders, e.to_string()).await;
            return Err(e.to_string());
        }
    };
    for mut s in senders {
        if s.send(trailer.clone()).await.is_ok() {
            let _ = s.finish().await;
        }
    }
    Ok(())
}

/// The `PutBlob` metadata trailer: a body's digest and metadata to store with the object.
fn digest_trailer(
    digest: BodyDigest,
    mut trailer: BTreeMap<String, String>,
) -> Result<Bytes, ClientError> {
    digest.insert_into(&mut trailer);
    postcard::to_allocvec(&trailer)
        .map(Bytes::from)
        .map_err(|e| ClientError::Invalid(format!("encoding the metadata trailer: {e}")))
}

/// A body in hand followed by its digest trailer.
fn with_digest_trailer(body: Bytes) -> Result<Bytes, ClientError> {
    let mut digester = BodyDigester::new();
    digester.update(&body);
    let trailer = digest_trailer(digester.finish(), BTreeMap::new())?;
    let mut out = BytesMut::with_capacity(body.len() + trailer.len());
    out.extend_from_slice(&body);
    out.extend_from_slice(&trailer);
    Ok(out.freeze())
}

fn describe(r: &Result<(NodeResponse, Body), PeerError>) -> String {
    match r {
        Ok((resp, _)) => format!("unexpected answer {resp:?}"),
        Err(PeerError::Refused(RemoteError::DiskFull)) => "disk full".to_string(),
        Err(e) => e.to_string(),
    }
}

/// Merges listing pages from several replicas: the union by name (newest entry wins), in
/// order, cut at the limit.
fn merge_pages(pages: Vec<ListPage>, query: &ListQuery) -> ListPage {
    let mut items: BTreeMap<String, ListItem> = BTreeMap::new();
    // A replica's page covers names up to its last marker; past the smallest such bound another
    // replica may know names this page did not reach, so the merged page stops there.
    let mut bound: Option<String> = None;
    for page in pages {
        if page.truncated
            && let Some(m) = page
                .next_marker
                .clone()
                .or_else(|| page.items.last().map(|i| i.marker().to_string()))
        {
            bound = Some(match bound {
                None => m,
                Some(b) if query.reverse => b.max(m),
                Some(b) => b.min(m),
            });
        }
        for item in page.items {
            let key = item.marker().to_string();
            match (items.get(&key), &item) {
                (Some(ListItem::Entry(old)), ListItem::Entry(new))
                    if old.timestamp >= new.timestamp => {}
                _ => {
                    items.insert(key, item);
                }
            }
        }
    }
    let mut ordered: Vec<ListItem> = items
        .into_values()
        .filter(|i| !matches!(i, ListItem::Entry(e) if e.deleted))
        .collect();
    if query.reverse {
        ordered.reverse();
    }
    let mut truncated = bound.is_some();
    if let Some(b) = &bound {
        ordered.retain(|i| {
            if query.reverse {
                i.marker() >= b.as_str()
            } else {
                i.marker() <= b.as_str()
            }
        });
    }
    let limit = if query.limit == 0 {
        ordered.len()
    } else {
        query.limit
    };
    if ordered.len() > limit {
        truncated = true;
        ordered.truncate(limit);
    }
    let next_marker = if truncated {
        ordered.last().map(|i| i.marker().to_string()).or(bound)
    } else {
        None
    };
    ListPage {
        items: ordered,
        truncated,
        next_marker,
    }
}

fn meta_changes(
    timestamp: Timestamp,
    set: BTreeMap<String, String>,
    remove: std::collections::BTreeSet<String>,
) -> BTreeMap<String, MetaValue> {
    let mut out: BTreeMap<String, MetaValue> = remove
        .into_iter()
        .map(|k| {
            (
                k,
                MetaValue {
                    timestamp,
                    value: None,
                },
            )
        })
        .collect();
    for (k, v) in set {
        out.insert(
            k,
            MetaValue {
                timestamp,
                value: Some(v),
            },
        );
    }
    out
}

/// Calls still in flight when a read quorum was reached run to completion in the background:
/// dropping one mid-call would cost its pooled connection (the peer's answer would have nowhere
/// to go, so the connection is torn down and the next call pays a new TLS handshake).
fn finish_in_background<F>(calls: FuturesUnordered<F>)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    if !calls.is_empty() {
        tokio::spawn(async move {
            let mut calls = calls;
            while calls.next().await.is_some() {}
        });
    }
}
