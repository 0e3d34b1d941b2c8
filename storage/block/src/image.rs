//! An open image: the head for its one writer, or a read-only view (a snapshot, or the head
//! opened for reading).
//!
//! Every change carries the writer's tag (lease epoch, sequence number) and the image's snapshot
//! tags (so replicas keep what snapshots still see). Changes are acknowledged by a write quorum
//! without an fsync unless FUA; `flush` syncs every device that acknowledged a change since the
//! last flush and fails unless each change is durable on a write quorum in the same incarnation
//! of those devices (a device that restarted in between may have lost it).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use cairn_engine::limits::EXTENT_IO_MAX_BYTES;
use cairn_engine::{ExtentChange, ExtentWriteOpts, WriteTag};
use cairn_node::{ClientError, ClusterClient, ExtentAck, ExtentReplica};
use futures::future::try_join_all;
use tracing::warn;

use crate::error::{BlockError, Result};
use crate::header::ImageHeader;
use crate::layer::{Allocation, Layer, ReadSpan};
use crate::layout::{self, ObjectRange};

/// The writer's identity for one hold of the image's lease.
#[derive(Debug)]
pub struct WriterState {
    pub epoch: u64,
    seq: AtomicU64,
    /// Set once a replica refused a change as fenced or the lease was lost: nothing more is
    /// written through this handle.
    fenced: AtomicBool,
    /// The snapshot tags writes keep; replaced together with taking a snapshot's tag.
    keep: RwLock<Vec<WriteTag>>,
}

impl WriterState {
    pub fn new(epoch: u64, keep: Vec<WriteTag>) -> WriterState {
        WriterState {
            epoch,
            seq: AtomicU64::new(1),
            fenced: AtomicBool::new(false),
            keep: RwLock::new(keep),
        }
    }

    /// A fresh tag and the keep list in force for it, taken together so a snapshot taken
    /// concurrently is either below the tag or in the list.
    fn next(&self) -> (WriteTag, Vec<WriteTag>) {
        let keep = match self.keep.read() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        let tag = WriteTag {
            epoch: self.epoch,
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
        };
        (tag, keep.clone())
    }

    /// Takes a snapshot's tag (every tag handed out so far is at or below it) and adds it to
    /// the keep list.
    pub fn snapshot_tag(&self) -> WriteTag {
        let mut keep = match self.keep.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        let tag = WriteTag {
            epoch: self.epoch,
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
        };
        keep.push(tag);
        tag
    }

    pub fn set_keep(&self, tags: Vec<WriteTag>) {
        match self.keep.write() {
            Ok(mut k) => *k = tags,
            Err(p) => *p.into_inner() = tags,
        }
    }

    pub fn mark_fenced(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }
}

/// Changes acknowledged since the last flush, as the distinct sets of replicas that
/// acknowledged them (few, whatever the number of writes) with their replica sets' sizes.
#[derive(Debug, Default)]
struct Unflushed {
    acks: HashMap<Vec<ExtentReplica>, usize>,
}

/// An open image.
#[derive(Debug)]
pub struct Image {
    client: Arc<ClusterClient>,
    name: String,
    header: RwLock<ImageHeader>,
    layer: RwLock<Arc<Layer>>,
    writer: Option<Arc<WriterState>>,
    unflushed: Mutex<Unflushed>,
    /// Serializes flushes so each sees a consistent set of acknowledgements.
    flush_lock: tokio::sync::Mutex<()>,
}

impl Image {
    pub fn new(
        client: Arc<ClusterClient>,
        header: ImageHeader,
        layer: Arc<Layer>,
        writer: Option<Arc<WriterState>>,
        name: String,
    ) -> Image {
        Image {
            client,
            name,
            header: RwLock::new(header),
            layer: RwLock::new(layer),
            writer,
            unflushed: Mutex::new(Unflushed::default()),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn header(&self) -> ImageHeader {
        match self.header.read() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_header(&self, header: ImageHeader, layer: Arc<Layer>) {
        match self.header.write() {
            Ok(mut h) => *h = header,
            Err(p) => *p.into_inner() = header,
        }
        match self.layer.write() {
            Ok(mut l) => *l = layer,
            Err(p) => *p.into_inner() = layer,
        }
    }

    fn layer(&self) -> Arc<Layer> {
        match self.layer.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn size(&self) -> u64 {
        self.header().size_bytes
    }

    pub fn order(&self) -> u8 {
        self.header().order
    }

    pub fn writer(&self) -> Option<&Arc<WriterState>> {
        self.writer.as_ref()
    }

    pub fn read_only(&self) -> bool {
        self.writer.is_none()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BlockError::Invalid(format!(
                "range {offset}+{len} is past the end of the {size}-byte image"
            ))),
        }
    }

    fn writer_state(&self) -> Result<&Arc<WriterState>> {
        let w = self
            .writer
            .as_ref()
            .ok_or_else(|| BlockError::ReadOnly(self.name.clone()))?;
        if w.is_fenced() {
            return Err(BlockError::Fenced {
                image: self.name.clone(),
                epoch: w.epoch,
                seen: w.epoch,
            });
        }
        Ok(w)
    }

    /// Reads a range. A writer that finds replicas disagreeing about changes of an earlier
    /// writer (one that died before they reached every replica) rewrites what it read under
    /// its own tag, so later reads cannot see those bytes come and go.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<ReadSpan>> {
        self.check_range(offset, len)?;
        let epoch = self.writer.as_ref().map(|w| w.epoch);
        let layer = self.layer();
        let (spans, unsettled) = layer.read(&self.client, offset, len, epoch).await?;
        if !unsettled.is_empty() {
            self.settle(&layer, &unsettled).await?;
            // Read again: the settled bytes now carry this writer's tag on a quorum.
            let (spans, _) = layer.read(&self.client, offset, len, None).await?;
            return Ok(spans);
        }
        Ok(spans)
    }

    async fn settle(&self, layer: &Arc<Layer>, parts: &[ObjectRange]) -> Result<()> {
        let order = layer.order;
        for part in parts {
            let start = (part.object_no << order) + part.offset;
            let (spans, _) = layer
                .read(&self.client, start, part.len_bytes, None)
                .await?;
            warn!(image = %self.name, object = part.object_no, "replicas disagree about an earlier writer's change; rewriting it under this writer's epoch");
            self.write_spans(start, spans, false).await?;
        }
        Ok(())
    }

    /// Writes `spans` at `offset`: data as data; zeros as trims, or not at all if `skip_zeros`.
    pub async fn write_spans(
        &self,
        offset: u64,
        spans: Vec<ReadSpan>,
        skip_zeros: bool,
    ) -> Result<()> {
        let mut at = offset;
        for span in spans {
            let n = span.len();
            match span {
                ReadSpan::Data(d) => self.write(at, d, false).await?,
                ReadSpan::Zero(_) if skip_zeros => {}
                ReadSpan::Zero(_) => self.trim(at, n, false).await?,
            }
            at += n;
        }
        Ok(())
    }

    fn record(&self, ack: ExtentAck) {
        let mut replicas = ack.replicas;
        replicas.sort();
        let mut u = match self.unflushed.lock() {
            Ok(u) => u,
            Err(p) => p.into_inner(),
        };
        u.acks.insert(replicas, ack.of);
    }

    async fn change(&self, part: ObjectRange, change: ExtentChange, durable: bool) -> Result<()> {
        let w = self.writer_state()?;
        let (tag, keep) = w.next();
        let image_id = self.layer().image_id.clone();
        let opts = ExtentWriteOpts {
            durable,
            keep,
            // Set per replica by the cluster client (the replicas that will not serve reads).
            write_around: false,
        };
        match self
            .client
            .change_extent(&image_id, part.object_no, change, tag, &opts)
            .await
        {
            Ok(ack) => {
                if !durable {
                    self.record(ack);
                }
                Ok(())
            }
            Err(ClientError::Fenced { seen }) => {
                w.mark_fenced();
                Err(BlockError::Fenced {
                    image: self.name.clone(),
                    epoch: w.epoch,
                    seen,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `data` at `offset`; `fua`: durable before this returns.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<()> {
        self.check_range(offset, data.len() as u64)?;
        let parts = layout::split_io(self.order(), offset, data.len() as u64, EXTENT_IO_MAX_BYTES);
        try_join_all(parts.into_iter().map(|p| {
            let from = usize::try_from(p.buffer_offset).unwrap_or(0);
            let to = from + usize::try_from(p.len_bytes).unwrap_or(0);
            let chunk = data.slice(from..to);
            self.change(
                p,
                ExtentChange::Write {
                    offset: p.offset,
                    data: chunk,
                },
                fua,
            )
        }))
        .await?;
        Ok(())
    }

    /// Makes `[offset, offset + len)` read as zeros and frees it (whole objects are deleted).
    pub async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let order = self.order();
        let object = 1u64 << order;
        try_join_all(layout::split(order, offset, len).into_iter().map(|p| {
            let change = if p.offset == 0 && p.len_bytes == object {
                ExtentChange::DeleteObject
            } else {
                ExtentChange::Trim {
                    offset: p.offset,
                    len_bytes: p.len_bytes,
                }
            };
            self.change(p, change, fua)
        }))
        .await?;
        Ok(())
    }

    /// Writes zeros: a trim, unless `allocate` asks for the range to stay allocated (NBD's
    /// NO_HOLE), which stores zero bytes.
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        allocate: bool,
        fua: bool,
    ) -> Result<()> {
        if !allocate {
            return self.trim(offset, len, fua).await;
        }
        self.check_range(offset, len)?;
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let n = (end - at).min(EXTENT_IO_MAX_BYTES);
            let zeros = Bytes::from(vec![0u8; usize::try_from(n).unwrap_or(0)]);
            self.write(at, zeros, fua).await?;
            at += n;
        }
        Ok(())
    }

    /// Makes every change acknowledged before this call durable on a write quorum.
    pub async fn flush(&self) -> Result<()> {
        if self.writer.is_none() {
            return Ok(());
        }
        let _serial = self.flush_lock.lock().await;
        let pending = {
            let mut u = match self.unflushed.lock() {
                Ok(u) => u,
                Err(p) => p.into_inner(),
            };
            std::mem::take(&mut u.acks)
        };
        if pending.is_empty() {
            return Ok(());
        }
        let devices: BTreeSet<(std::net::SocketAddr, String)> = pending
            .keys()
            .flatten()
            .map(|r| (r.addr, r.device.clone()))
            .collect();
        let devices: Vec<_> = devices.into_iter().collect();
        let synced: HashMap<(std::net::SocketAddr, String), Result<u64, String>> = self
            .client
            .sync_extent_replicas(&devices)
            .await
            .into_iter()
            .collect();
        for (replicas, of) in &pending {
            let durable = replicas
                .iter()
                .filter(|r| {
                    matches!(synced.get(&(r.addr, r.device.clone())), Some(Ok(inc)) if *inc == r.incarnation)
                })
                .count();
            let needed = *of / 2 + 1;
            if durable < needed {
                let why: Vec<String> = replicas
                    .iter()
                    .map(|r| match synced.get(&(r.addr, r.device.clone())) {
                        Some(Ok(inc)) if *inc == r.incarnation => format!("{} ok", r.device),
                        Some(Ok(_)) => format!("{} restarted since acknowledging", r.device),
                        Some(Err(e)) => format!("{}: {e}", r.device),
                        None => format!("{}: not asked", r.device),
                    })
                    .collect();
                return Err(BlockError::FlushFailed(format!(
                    "writes acknowledged by {} are durable on {durable} replicas, {needed} needed ({})",
                    replicas.len(),
                    why.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Allocation of `[offset, offset + len)` (data or hole), for NBD block status.
    pub async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>> {
        self.check_range(offset, len)?;
        self.layer().allocation(&self.client, offset, len).await
    }
}
