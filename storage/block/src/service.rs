//! Images as a service: create, list, resize, delete, snapshots, clones, diffs, and open
//! handles. One `BlockService` per process; it shares one writer handle per image among
//! everyone in the process (NBD connections, management calls), so a snapshot of an image
//! being written goes through its writer and takes a consistent tag.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_engine::{ExtentChange, ExtentWriteOpts, WriteTag};
use cairn_meta::{Acquire, Held, MetaStore, WriterLeases};
use cairn_node::ClusterClient;
use futures::StreamExt;
use futures::stream;
use rand::Rng;
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::ImageCatalog;
use crate::error::{BlockError, Result};
use crate::header::{self, ImageHeader, ParentRef, Snapshot};
use crate::image::{Image, WriterState};
use crate::layer::{self, Layer};
use crate::layout;
use crate::limits::{
    MAINTENANCE_PARALLELISM, OBJECTS_PER_SCAN_STEP, ORDER_DEFAULT, SNAPSHOTS_MAX,
    WRITER_LEASE_TTL_SECS,
};

/// What `info` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    #[serde(flatten)]
    pub header: ImageHeader,
    pub object_size: u64,
    pub objects: u64,
    /// Bytes holding data at the head (the image's own objects, not its parent's).
    pub allocated_bytes: u64,
    /// Who holds the writer lease, if anyone.
    pub writer: Option<String>,
}

/// A changed stretch between two points in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DiffExtent {
    pub offset: u64,
    pub len_bytes: u64,
    /// Holds data at the later point (otherwise it reads as zeros there).
    pub data: bool,
}

#[derive(Debug)]
struct OpenWriter {
    image: Weak<Image>,
    held: Held,
}

/// The block layer over a cluster client and a control-plane store.
#[derive(Debug)]
pub struct BlockService<S: MetaStore + Clone> {
    client: Arc<ClusterClient>,
    catalog: ImageCatalog<S>,
    leases: WriterLeases<S>,
    holder: String,
    writers: Mutex<HashMap<String, OpenWriter>>,
    /// Serializes opening writers: connections arriving together (multi-conn clients) must
    /// share one lease hold, not race for it.
    open_lock: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lease_name(image_id: &str) -> String {
    format!("block/{image_id}")
}

impl<S: MetaStore + Clone> BlockService<S> {
    /// `holder` names this process in writer leases (host and pid are a good choice).
    pub fn new(client: Arc<ClusterClient>, store: S, holder: impl Into<String>) -> Arc<Self> {
        Arc::new(BlockService {
            client,
            catalog: ImageCatalog::new(store.clone()),
            leases: WriterLeases::new(store),
            holder: holder.into(),
            writers: Mutex::new(HashMap::new()),
            open_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn client(&self) -> &Arc<ClusterClient> {
        &self.client
    }

    pub async fn create(
        &self,
        name: &str,
        size_bytes: u64,
        order: Option<u8>,
    ) -> Result<ImageHeader> {
        header::check_name("image", name)?;
        header::check_size(size_bytes)?;
        let order = order.unwrap_or(ORDER_DEFAULT);
        header::check_order(order)?;
        let header = ImageHeader {
            name: name.to_string(),
            id: new_id(),
            size_bytes,
            order,
            features: vec!["layering".into(), "exclusive-lock".into()],
            created_unix_ms: now_ms(),
            snapshots: Vec::new(),
            parent: None,
        };
        self.catalog.create(&header).await?;
        info!(image = name, size_bytes, order, "image created");
        Ok(header)
    }

    pub async fn list(&self) -> Result<Vec<ImageHeader>> {
        self.catalog.list().await
    }

    pub async fn header(&self, name: &str) -> Result<ImageHeader> {
        Ok(self.catalog.require(name).await?.0)
    }

    pub async fn info(&self, name: &str) -> Result<ImageInfo> {
        let header = self.header(name).await?;
        let objects = layout::object_count(header.order, header.size_bytes);
        let mut allocated = 0;
        let mut start = 0;
        while start < objects {
            let end = (start + OBJECTS_PER_SCAN_STEP as u64).min(objects);
            let nos: Vec<u64> = (start..end).collect();
            for metas in self.client.extent_metas(&header.id, &nos).await? {
                allocated += layer::allocated_bytes(&metas, header.object_size(), None);
            }
            start = end;
        }
        let writer = self
            .leases
            .holder(&lease_name(&header.id))
            .await?
            .map(|(h, e)| format!("{h} (epoch {e})"));
        Ok(ImageInfo {
            object_size: header.object_size(),
            objects,
            allocated_bytes: allocated,
            writer,
            header,
        })
    }

    /// The read path of `header` as of `upto`, down its chain of parents.
    async fn layer_of(&self, header: &ImageHeader, upto: Option<WriteTag>) -> Result<Arc<Layer>> {
        let mut chain: Vec<(ImageHeader, Option<WriteTag>)> = vec![(header.clone(), upto)];
        let mut next = header.parent.clone();
        // Bounded: a parent chain longer than the number of images would be a cycle.
        for _ in 0..crate::limits::IMAGES_LISTED_MAX {
            let Some(p) = next else { break };
            let (ph, _) = self.catalog.require(&p.image).await?;
            if ph.id != p.image_id {
                return Err(BlockError::Corrupt(format!(
                    "parent {:?} of a clone was replaced by another image",
                    p.image
                )));
            }
            next = ph.parent.clone();
            chain.push((ph, Some(p.tag)));
        }
        // Built from the bottom: each layer's parent is the one below, seen through the
        // overlap its own header records.
        let mut below: Option<Arc<Layer>> = None;
        for (h, upto) in chain.into_iter().rev() {
            let parent = match (below.take(), &h.parent) {
                (Some(l), Some(p)) => Some((l, p.overlap_bytes)),
                _ => None,
            };
            below = Some(Arc::new(Layer {
                image_id: h.id.clone(),
                order: h.order,
                upto,
                parent,
            }));
        }
        below.ok_or_else(|| BlockError::Corrupt("empty layer chain".into()))
    }

    /// Opens the image for writing, sharing the handle this process already has.
    pub async fn open_write(&self, name: &str) -> Result<Arc<Image>> {
        if let Some(image) = self.open_writer(name) {
            return Ok(image);
        }
        let _serial = self.open_lock.lock().await;
        if let Some(image) = self.open_writer(name) {
            return Ok(image);
        }
        // A handle closed moments ago may still hold the lease (its renewal task releases it
        // a little later): release it now so this open does not find itself busy.
        let stale = {
            let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            w.remove(name).map(|o| o.held)
        };
        if let Some(held) = stale {
            self.leases.release(&held).await?;
        }
        let (header, _) = self.catalog.require(name).await?;
        let lease = lease_name(&header.id);
        let ttl = Duration::from_secs(WRITER_LEASE_TTL_SECS);
        let held = match self.leases.acquire(&lease, &self.holder, ttl).await? {
            Acquire::Held(h) => h,
            Acquire::Busy(b) => {
                return Err(BlockError::Busy {
                    image: name.to_string(),
                    holder: b.holder,
                    epoch: b.epoch,
                });
            }
        };
        // Before the first write: no change of an older epoch can reach a quorum after this.
        if let Err(e) = self.client.fence_image(&header.id, held.epoch).await {
            let _ = self.leases.release(&held).await;
            return Err(e.into());
        }
        let writer = Arc::new(WriterState::new(held.epoch, header.keep_tags()));
        let layer = self.layer_of(&header, None).await?;
        let image = Arc::new(Image::new(
            self.client.clone(),
            header,
            layer,
            Some(writer.clone()),
            name.to_string(),
        ));
        let existing = {
            let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            match w.get(name).and_then(|o| o.image.upgrade()) {
                Some(existing) => Some(existing),
                None => {
                    w.insert(
                        name.to_string(),
                        OpenWriter {
                            image: Arc::downgrade(&image),
                            held: held.clone(),
                        },
                    );
                    None
                }
            }
        };
        if let Some(existing) = existing {
            // Lost a race with another opener in this process: use theirs.
            let _ = self.leases.release(&held).await;
            return Ok(existing);
        }
        info!(image = name, epoch = held.epoch, "opened for writing");
        self.spawn_renewal(Arc::downgrade(&image), writer, held);
        Ok(image)
    }

    fn open_writer(&self, name: &str) -> Option<Arc<Image>> {
        let w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        w.get(name).and_then(|o| o.image.upgrade())
    }

    /// Keeps the writer lease while the image is open; releases it once the last handle is
    /// gone (after a final flush), or marks the writer fenced if the lease is lost.
    fn spawn_renewal(&self, image: Weak<Image>, writer: Arc<WriterState>, held: Held) {
        let leases = self.leases.clone();
        let every = Duration::from_secs(WRITER_LEASE_TTL_SECS) / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if image.strong_count() == 0 {
                    if let Err(e) = leases.release(&held).await {
                        warn!(lease = held.name, error = %e, "releasing writer lease failed; it will expire");
                    }
                    return;
                }
                if let Err(e) = leases.renew(&held).await {
                    warn!(lease = held.name, error = %e, "writer lease lost; no more writes through this handle");
                    writer.mark_fenced();
                    return;
                }
            }
        });
    }

    /// Flushes and gives up the writer lease now (explicit handover), if this process holds it
    /// and nobody else in the process uses the handle.
    pub async fn close_write(&self, image: Arc<Image>) -> Result<()> {
        image.flush().await?;
        let name = image.name().to_string();
        drop(image);
        let released = {
            let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            if w.get(&name).is_some_and(|o| o.image.strong_count() == 0) {
                w.remove(&name).map(|o| o.held)
            } else {
                None
            }
        };
        if let Some(held) = released {
            self.leases.release(&held).await?;
        }
        Ok(())
    }

    /// Gives up the writer leases of images nobody in this process has open any more (a
    /// server stopping gracefully calls it after its connections closed, so the next writer
    /// need not wait for the leases to expire).
    pub async fn release_idle_writers(&self) -> Result<()> {
        let idle: Vec<Held> = {
            let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<String> = w
                .iter()
                .filter(|(_, o)| o.image.strong_count() == 0)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .iter()
                .filter_map(|n| w.remove(n).map(|o| o.held))
                .collect()
        };
        for held in idle {
            self.leases.release(&held).await?;
        }
        Ok(())
    }

    /// Opens a read-only view: a snapshot, or the head.
    pub async fn open_read(&self, name: &str, snapshot: Option<&str>) -> Result<Arc<Image>> {
        let (mut header, _) = self.catalog.require(name).await?;
        let upto = match snapshot {
            Some(s) => {
                let snap =
                    header
                        .snapshot(s)
                        .cloned()
                        .ok_or_else(|| BlockError::NoSuchSnapshot {
                            image: name.to_string(),
                            snap: s.to_string(),
                        })?;
                header.size_bytes = snap.size_bytes;
                Some(snap.tag)
            }
            None => None,
        };
        let layer = self.layer_of(&header, upto).await?;
        let label = match snapshot {
            Some(s) => format!("{name}@{s}"),
            None => name.to_string(),
        };
        Ok(Arc::new(Image::new(
            self.client.clone(),
            header,
            layer,
            None,
            label,
        )))
    }

    /// Runs `f` with a writer handle: this process's open one, or one opened for the call.
    async fn with_writer<T>(
        &self,
        name: &str,
        f: impl AsyncFnOnce(&Arc<Image>) -> Result<T>,
    ) -> Result<T> {
        let image = self.open_write(name).await?;
        let out = f(&image).await;
        let flushed = image.flush().await;
        self.close_write(image).await?;
        let out = out?;
        flushed?;
        Ok(out)
    }

    /// Re-reads the header into an open writer (after a management change).
    async fn refresh(&self, image: &Arc<Image>) -> Result<()> {
        let (header, _) = self.catalog.require(image.name()).await?;
        let layer = self.layer_of(&header, None).await?;
        if let Some(w) = image.writer() {
            w.set_keep(header.keep_tags());
        }
        image.set_header(header, layer);
        Ok(())
    }

    pub async fn resize(&self, name: &str, size_bytes: u64) -> Result<ImageHeader> {
        header::check_size(size_bytes)?;
        self.with_writer(name, async |image| {
            let old = image.size();
            if size_bytes < old {
                // Free what lies past the new end; snapshots keep their data (keep tags).
                image.trim(size_bytes, old - size_bytes, false).await?;
            }
            let header = self
                .catalog
                .update(name, |h| {
                    h.size_bytes = size_bytes;
                    if let Some(p) = &mut h.parent {
                        p.overlap_bytes = p.overlap_bytes.min(size_bytes);
                    }
                    Ok(())
                })
                .await?;
            self.refresh(image).await?;
            Ok(header)
        })
        .await
    }

    /// Deletes the image and frees its objects. Refused while it has snapshots or clones.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let (header, _) = self.catalog.require(name).await?;
        if !header.snapshots.is_empty() {
            return Err(BlockError::Conflict(format!(
                "image {name:?} has {} snapshots; remove them first",
                header.snapshots.len()
            )));
        }
        if let Some(child) = self.children(name, None).await?.first() {
            return Err(BlockError::Conflict(format!(
                "image {name:?} has a clone {child:?}"
            )));
        }
        self.with_writer(name, async |image| {
            let w = image
                .writer()
                .ok_or_else(|| BlockError::ReadOnly(name.to_string()))?;
            let objects = self.existing_objects(&header).await?;
            let client = self.client.clone();
            let epoch = w.epoch;
            let results: Vec<Result<()>> = stream::iter(objects)
                .map(|o| {
                    let client = client.clone();
                    let id = header.id.clone();
                    async move {
                        client
                            .change_extent(
                                &id,
                                o,
                                ExtentChange::DeleteObject,
                                WriteTag {
                                    epoch,
                                    seq: u64::MAX,
                                },
                                &ExtentWriteOpts {
                                    durable: true,
                                    ..ExtentWriteOpts::default()
                                },
                            )
                            .await
                            .map(|_| ())
                            .map_err(BlockError::from)
                    }
                })
                .buffer_unordered(MAINTENANCE_PARALLELISM)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
            Ok(())
        })
        .await?;
        let (_, rev) = self.catalog.require(name).await?;
        self.catalog.delete(name, rev).await?;
        info!(image = name, "image deleted");
        Ok(())
    }

    /// Object numbers that hold any piece (up to the larger of the image's and its snapshots'
    /// sizes).
    async fn existing_objects(&self, header: &ImageHeader) -> Result<Vec<u64>> {
        let size = header
            .snapshots
            .iter()
            .map(|s| s.size_bytes)
            .chain([header.size_bytes])
            .max()
            .unwrap_or(0);
        let count = layout::object_count(header.order, size);
        let mut out = Vec::new();
        let mut start = 0;
        while start < count {
            let end = (start + OBJECTS_PER_SCAN_STEP as u64).min(count);
            let nos: Vec<u64> = (start..end).collect();
            let metas = self.client.extent_metas(&header.id, &nos).await?;
            out.extend(
                nos.into_iter()
                    .zip(metas)
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(o, _)| o),
            );
            start = end;
        }
        Ok(out)
    }

    async fn children(&self, name: &str, snapshot: Option<&str>) -> Result<Vec<String>> {
        Ok(self
            .catalog
            .list()
            .await?
            .into_iter()
            .filter(|h| {
                h.parent
                    .as_ref()
                    .is_some_and(|p| p.image == name && snapshot.is_none_or(|s| p.snapshot == s))
            })
            .map(|h| h.name)
            .collect())
    }

    pub async fn snap_create(&self, name: &str, snap: &str) -> Result<Snapshot> {
        header::check_name("snapshot", snap)?;
        self.with_writer(name, async |image| {
            let current = self.catalog.require(name).await?.0;
            if current.snapshot(snap).is_some() {
                return Err(BlockError::SnapshotExists {
                    image: name.to_string(),
                    snap: snap.to_string(),
                });
            }
            if current.snapshots.len() >= SNAPSHOTS_MAX {
                return Err(BlockError::Conflict(format!(
                    "image {name:?} has {SNAPSHOTS_MAX} snapshots, the most allowed"
                )));
            }
            let w = image
                .writer()
                .ok_or_else(|| BlockError::ReadOnly(name.to_string()))?;
            // Writes acknowledged before the tag are in the snapshot; later ones keep its data.
            image.flush().await?;
            let tag = w.snapshot_tag();
            let snapshot = Snapshot {
                name: snap.to_string(),
                tag,
                size_bytes: image.size(),
                protected: false,
                created_unix_ms: now_ms(),
            };
            let s2 = snapshot.clone();
            let stored = self
                .catalog
                .update(name, move |h| {
                    if h.snapshot(&s2.name).is_some() {
                        return Err(BlockError::SnapshotExists {
                            image: h.name.clone(),
                            snap: s2.name.clone(),
                        });
                    }
                    h.snapshots.push(s2.clone());
                    Ok(())
                })
                .await;
            if let Err(e) = stored {
                self.refresh(image).await?;
                return Err(e);
            }
            self.refresh(image).await?;
            info!(image = name, snapshot = snap, ?tag, "snapshot created");
            Ok(snapshot)
        })
        .await
    }

    pub async fn snap_list(&self, name: &str) -> Result<Vec<Snapshot>> {
        Ok(self.header(name).await?.snapshots)
    }

    /// Deletes a snapshot: only the header changes; the pieces it alone kept are freed by later
    /// writes to their objects, so client I/O never waits for it.
    pub async fn snap_remove(&self, name: &str, snap: &str) -> Result<()> {
        let header = self.header(name).await?;
        let s = header
            .snapshot(snap)
            .ok_or_else(|| BlockError::NoSuchSnapshot {
                image: name.to_string(),
                snap: snap.to_string(),
            })?;
        if s.protected {
            return Err(BlockError::Conflict(format!(
                "snapshot {name}@{snap} is protected; unprotect it first"
            )));
        }
        self.catalog
            .update(name, |h| {
                h.snapshots.retain(|s| s.name != snap);
                Ok(())
            })
            .await?;
        if let Some(image) = self.open_writer(name) {
            self.refresh(&image).await?;
        }
        Ok(())
    }

    pub async fn snap_protect(&self, name: &str, snap: &str, protect: bool) -> Result<()> {
        if !protect && let Some(child) = self.children(name, Some(snap)).await?.first() {
            return Err(BlockError::Conflict(format!(
                "snapshot {name}@{snap} has a clone {child:?}; flatten or remove it first"
            )));
        }
        self.catalog
            .update(name, |h| {
                let s = h
                    .snapshots
                    .iter_mut()
                    .find(|s| s.name == snap)
                    .ok_or_else(|| BlockError::NoSuchSnapshot {
                        image: name.to_string(),
                        snap: snap.to_string(),
                    })?;
                s.protected = protect;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Makes the head equal to the snapshot again (rewriting what changed since, under new
    /// tags, so later snapshots stay intact).
    pub async fn snap_rollback(&self, name: &str, snap: &str) -> Result<()> {
        self.with_writer(name, async |image| {
            let header = self.header(name).await?;
            let s = header
                .snapshot(snap)
                .cloned()
                .ok_or_else(|| BlockError::NoSuchSnapshot {
                    image: name.to_string(),
                    snap: snap.to_string(),
                })?;
            let objects = self.existing_objects(&header).await?;
            let view = self.open_read(name, Some(snap)).await?;
            let object = header.object_size();
            // The head takes the snapshot's size first, so every rewrite is in range.
            self.catalog
                .update(name, |h| {
                    h.size_bytes = s.size_bytes;
                    Ok(())
                })
                .await?;
            self.refresh(image).await?;
            let results: Vec<Result<()>> = stream::iter(objects)
                .map(|o| {
                    let (image, view) = (image.clone(), view.clone());
                    async move {
                        let start = o * object;
                        if start >= s.size_bytes {
                            return Ok(());
                        }
                        let len = object.min(s.size_bytes - start);
                        copy_view(&view, &image, start, len).await
                    }
                })
                .buffer_unordered(MAINTENANCE_PARALLELISM)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
            info!(image = name, snapshot = snap, "rolled back");
            Ok(())
        })
        .await
    }

    /// Creates `child` as a clone of `parent@snap` (which must be protected).
    pub async fn clone_image(&self, parent: &str, snap: &str, child: &str) -> Result<ImageHeader> {
        header::check_name("image", child)?;
        let ph = self.header(parent).await?;
        let s = ph
            .snapshot(snap)
            .ok_or_else(|| BlockError::NoSuchSnapshot {
                image: parent.to_string(),
                snap: snap.to_string(),
            })?;
        if !s.protected {
            return Err(BlockError::Conflict(format!(
                "snapshot {parent}@{snap} must be protected before cloning (cairn image snap protect)"
            )));
        }
        let header = ImageHeader {
            name: child.to_string(),
            id: new_id(),
            size_bytes: s.size_bytes,
            order: ph.order,
            features: ph.features.clone(),
            created_unix_ms: now_ms(),
            snapshots: Vec::new(),
            parent: Some(ParentRef {
                image: parent.to_string(),
                image_id: ph.id.clone(),
                snapshot: snap.to_string(),
                tag: s.tag,
                overlap_bytes: s.size_bytes,
            }),
        };
        self.catalog.create(&header).await?;
        info!(image = child, parent, snapshot = snap, "clone created");
        Ok(header)
    }

    /// Copies every byte the clone still reads from its parent into the clone, then drops
    /// the parent link.
    pub async fn flatten(&self, name: &str) -> Result<()> {
        self.with_writer(name, async |image| {
            let header = self.header(name).await?;
            let Some(parent) = header.parent.clone() else {
                return Ok(());
            };
            let object = header.object_size();
            let count = layout::object_count(header.order, parent.overlap_bytes);
            let layer = self.layer_of(&header, None).await?;
            let results: Vec<Result<()>> = stream::iter(0..count)
                .map(|o| {
                    let (image, layer) = (image.clone(), layer.clone());
                    let client = self.client.clone();
                    async move {
                        let start = o * object;
                        let len = object.min(parent.overlap_bytes - start);
                        // Only stretches the clone never wrote come from the parent: read the
                        // clone's own pieces, copy the parent's bytes into the gaps.
                        let own = client.read_extent(&layer.image_id, o, 0, len, None).await?;
                        let mut at = 0;
                        let mut gaps = Vec::new();
                        for p in &own.pieces {
                            if p.offset > at {
                                gaps.push((at, p.offset));
                            }
                            at = p.end();
                        }
                        if at < len {
                            gaps.push((at, len));
                        }
                        if let Some((pl, _)) = &layer.parent {
                            for (s, e) in gaps {
                                let (spans, _) = pl.read(&client, start + s, e - s, None).await?;
                                image.write_spans(start + s, spans, true).await?;
                            }
                        }
                        Ok(())
                    }
                })
                .buffer_unordered(MAINTENANCE_PARALLELISM)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
            image.flush().await?;
            self.catalog
                .update(name, |h| {
                    h.parent = None;
                    Ok(())
                })
                .await?;
            self.refresh(image).await?;
            info!(image = name, "flattened");
            Ok(())
        })
        .await
    }

    /// What changed between snapshot `from` (or the beginning) and snapshot `to` (or the head),
    /// in image offsets, merged. The image's own changes only (not a parent's).
    pub async fn diff(
        &self,
        name: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<DiffExtent>> {
        let header = self.header(name).await?;
        let tag_of = |s: &str| {
            header
                .snapshot(s)
                .map(|s| s.tag)
                .ok_or_else(|| BlockError::NoSuchSnapshot {
                    image: name.to_string(),
                    snap: s.to_string(),
                })
        };
        let after = from.map(tag_of).transpose()?;
        let upto = to.map(tag_of).transpose()?;
        let size = match to {
            Some(s) => header
                .snapshot(s)
                .map_or(header.size_bytes, |s| s.size_bytes),
            None => header.size_bytes,
        };
        let object = header.object_size();
        let count = layout::object_count(header.order, size);
        let mut out: Vec<DiffExtent> = Vec::new();
        let mut start = 0;
        while start < count {
            let end = (start + OBJECTS_PER_SCAN_STEP as u64).min(count);
            let nos: Vec<u64> = (start..end).collect();
            let metas = self.client.extent_metas(&header.id, &nos).await?;
            for (o, metas) in nos.into_iter().zip(metas) {
                let base = o * object;
                let limit = object.min(size - base);
                for (s, e) in layer::changed_ranges(&metas, after, upto) {
                    let (s, e) = (s.min(limit), e.min(limit));
                    if s >= e {
                        continue;
                    }
                    // Split each changed stretch by what it holds at the later point.
                    for (ps, pe, p) in cairn_engine::extent::paint(&metas, s, e - s, upto) {
                        let data = p.is_some_and(|p| p.data);
                        let ext = DiffExtent {
                            offset: base + ps,
                            len_bytes: pe - ps,
                            data,
                        };
                        match out.last_mut() {
                            Some(l) if l.offset + l.len_bytes == ext.offset && l.data == data => {
                                l.len_bytes += ext.len_bytes
                            }
                            _ => out.push(ext),
                        }
                    }
                }
            }
            start = end;
        }
        Ok(out)
    }
}

/// Makes `[start, start + len)` of `to` equal to `from`'s view of it.
async fn copy_view(from: &Image, to: &Image, start: u64, len: u64) -> Result<()> {
    let spans = from.read(start, len).await?;
    to.write_spans(start, spans, false).await
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
