//! Reading an image view: its own extent objects first, then — for a clone — the parent's
//! snapshot for bytes the clone never wrote, down the chain of parents.

use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::extent::{self, ExtentPiece};
use cairn_engine::limits::EXTENT_IO_MAX_BYTES;
use cairn_engine::{PieceMeta, WriteTag};
use cairn_node::ClusterClient;
use futures::future::{BoxFuture, try_join_all};

use crate::error::Result;
use crate::layout::{self, ObjectRange};

/// One level of an image's read path.
#[derive(Clone, Debug)]
pub struct Layer {
    pub image_id: String,
    pub order: u8,
    /// `None`: the head (newest); `Some(tag)`: a snapshot.
    pub upto: Option<WriteTag>,
    /// The parent's view and how many bytes of it show through.
    pub parent: Option<(Arc<Layer>, u64)>,
}

/// A stretch of a read, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadSpan {
    Data(Bytes),
    /// Reads as zeros (never written, trimmed, or past the parent's overlap).
    Zero(u64),
}

impl ReadSpan {
    pub fn len(&self) -> u64 {
        match self {
            ReadSpan::Data(b) => b.len() as u64,
            ReadSpan::Zero(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Allocation of a stretch, for NBD block status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub len_bytes: u64,
    /// Holds data (otherwise a hole reading as zeros).
    pub data: bool,
}

/// What a read found in one object range, before the parent fills the gaps.
struct ObjectRead {
    pieces: Vec<ExtentPiece>,
    divergent_old_epoch: bool,
}

fn push_span(out: &mut Vec<ReadSpan>, span: ReadSpan) {
    if span.is_empty() {
        return;
    }
    match (out.last_mut(), span) {
        (Some(ReadSpan::Zero(n)), ReadSpan::Zero(m)) => *n += m,
        (_, span) => out.push(span),
    }
}

fn push_alloc(out: &mut Vec<Allocation>, a: Allocation) {
    if a.len_bytes == 0 {
        return;
    }
    match out.last_mut() {
        Some(last) if last.data == a.data => last.len_bytes += a.len_bytes,
        _ => out.push(a),
    }
}

impl Layer {
    /// Reads `[offset, offset + len)`; `epoch` (a writer's) reports whether some object
    /// answered divergently with pieces of an older epoch, which the writer must settle.
    pub fn read<'a>(
        self: &'a Arc<Self>,
        client: &'a ClusterClient,
        offset: u64,
        len: u64,
        epoch: Option<u64>,
    ) -> BoxFuture<'a, Result<(Vec<ReadSpan>, Vec<ObjectRange>)>> {
        Box::pin(async move {
            let parts = layout::split_io(self.order, offset, len, EXTENT_IO_MAX_BYTES);
            let reads =
                try_join_all(parts.iter().map(|p| self.read_object(client, p, epoch))).await?;
            let mut out = Vec::new();
            let mut unsettled = Vec::new();
            for (part, read) in parts.iter().zip(reads) {
                if read.divergent_old_epoch {
                    unsettled.push(*part);
                }
                let base = (part.object_no << self.order) + part.offset;
                for (s, e, piece) in extent::paint(&read.pieces, part.offset, part.len_bytes, None)
                {
                    match piece {
                        Some(p) => match &p.data {
                            Some(d) => {
                                let from = usize::try_from(s - p.offset).unwrap_or(0);
                                let to = usize::try_from(e - p.offset).unwrap_or(0);
                                push_span(&mut out, ReadSpan::Data(d.slice(from..to)));
                            }
                            None => push_span(&mut out, ReadSpan::Zero(e - s)),
                        },
                        None => {
                            let (img_s, img_e) = (base + s - part.offset, base + e - part.offset);
                            for span in self.read_parent(client, img_s, img_e).await? {
                                push_span(&mut out, span);
                            }
                        }
                    }
                }
            }
            Ok((out, unsettled))
        })
    }

    async fn read_object(
        &self,
        client: &ClusterClient,
        part: &ObjectRange,
        epoch: Option<u64>,
    ) -> Result<ObjectRead> {
        let view = client
            .read_extent(
                &self.image_id,
                part.object_no,
                part.offset,
                part.len_bytes,
                self.upto,
            )
            .await?;
        let divergent_old_epoch = match epoch {
            Some(e) => view.divergent && view.pieces.iter().any(|p| p.tag.epoch < e),
            None => false,
        };
        Ok(ObjectRead {
            pieces: view.pieces,
            divergent_old_epoch,
        })
    }

    /// Image bytes `[start, end)` this layer never wrote: the parent's, up to the overlap.
    async fn read_parent(
        &self,
        client: &ClusterClient,
        start: u64,
        end: u64,
    ) -> Result<Vec<ReadSpan>> {
        let mut out = Vec::new();
        match &self.parent {
            Some((parent, overlap)) if start < *overlap => {
                let through = end.min(*overlap);
                let (spans, _) = parent.read(client, start, through - start, None).await?;
                out.extend(spans);
                push_span(&mut out, ReadSpan::Zero(end - through));
            }
            _ => out.push(ReadSpan::Zero(end - start)),
        }
        Ok(out)
    }

    /// Which stretches of `[offset, offset + len)` hold data, from piece metadata only.
    pub fn allocation<'a>(
        self: &'a Arc<Self>,
        client: &'a ClusterClient,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Vec<Allocation>>> {
        Box::pin(async move {
            let parts = layout::split(self.order, offset, len);
            let objects: Vec<u64> = parts.iter().map(|p| p.object_no).collect();
            let metas = client.extent_metas(&self.image_id, &objects).await?;
            let mut out = Vec::new();
            for (part, metas) in parts.iter().zip(metas) {
                let base = part.object_no << self.order;
                for (s, e, piece) in extent::paint(&metas, part.offset, part.len_bytes, self.upto) {
                    match piece {
                        Some(p) => push_alloc(
                            &mut out,
                            Allocation {
                                len_bytes: e - s,
                                data: p.data,
                            },
                        ),
                        None => match &self.parent {
                            Some((parent, overlap)) if base + s < *overlap => {
                                let through = (base + e).min(*overlap);
                                for a in parent
                                    .allocation(client, base + s, through - base - s)
                                    .await?
                                {
                                    push_alloc(&mut out, a);
                                }
                                push_alloc(
                                    &mut out,
                                    Allocation {
                                        len_bytes: base + e - through,
                                        data: false,
                                    },
                                );
                            }
                            _ => push_alloc(
                                &mut out,
                                Allocation {
                                    len_bytes: e - s,
                                    data: false,
                                },
                            ),
                        },
                    }
                }
            }
            Ok(out)
        })
    }
}

/// Bytes holding data in an object's view as of `upto`, from its piece metadata.
pub fn allocated_bytes(metas: &[PieceMeta], object_size: u64, upto: Option<WriteTag>) -> u64 {
    extent::paint(metas, 0, object_size, upto)
        .into_iter()
        .filter(|(_, _, p)| p.is_some_and(|p| p.data))
        .map(|(s, e, _)| e - s)
        .sum()
}

/// Pieces tagged in `(after, upto]`: what changed between two snapshots.
pub fn changed_ranges(
    metas: &[PieceMeta],
    after: Option<WriteTag>,
    upto: Option<WriteTag>,
) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = metas
        .iter()
        .filter(|m| after.is_none_or(|a| m.tag > a) && upto.is_none_or(|u| m.tag <= u))
        .map(|m| (m.offset, m.end()))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}
