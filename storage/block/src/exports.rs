//! Images as NBD exports: `NAME` is the image's head, opened for writing (one writer per image:
//! every connection in this process shares the handle, so a FLUSH on any connection covers
//! writes acknowledged on all of them, which is what CAN_MULTI_CONN promises); `NAME@SNAP` is
//! a snapshot, read-only.

use std::sync::Arc;

use bytes::Bytes;
use cairn_meta::MetaStore;

use crate::error::BlockError;
use crate::image::Image;
use crate::layer::ReadSpan;
use crate::nbd::{Export, Exports, Extent, IoError, Span};
use crate::service::BlockService;

/// Preferred I/O size advertised to clients (and the largest single request).
const PREFERRED_BLOCK_BYTES: u32 = 4096;
const MAX_BLOCK_BYTES: u32 = 32 << 20;

/// One open export.
#[derive(Debug)]
pub struct ImageExport {
    image: Arc<Image>,
}

fn io_error(e: BlockError) -> IoError {
    match e {
        BlockError::Fenced { .. } => IoError::Fenced(e.to_string()),
        BlockError::ReadOnly(_) => IoError::ReadOnly,
        BlockError::Invalid(why) => IoError::Invalid(why),
        other => IoError::Io(other.to_string()),
    }
}

impl Export for ImageExport {
    fn size(&self) -> u64 {
        self.image.size()
    }

    fn read_only(&self) -> bool {
        self.image.read_only()
    }

    fn block_sizes(&self) -> (u32, u32, u32) {
        (1, PREFERRED_BLOCK_BYTES, MAX_BLOCK_BYTES)
    }

    fn multi_conn(&self) -> bool {
        true
    }

    async fn read(&self, offset: u64, len: u32) -> Result<Vec<Span>, IoError> {
        let spans = self
            .image
            .read(offset, u64::from(len))
            .await
            .map_err(io_error)?;
        Ok(spans
            .into_iter()
            .map(|s| match s {
                ReadSpan::Data(d) => Span::Data(d),
                ReadSpan::Zero(n) => Span::Hole(n),
            })
            .collect())
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), IoError> {
        self.image.write(offset, data, fua).await.map_err(io_error)
    }

    async fn trim(&self, offset: u64, len: u32, fua: bool) -> Result<(), IoError> {
        self.image
            .trim(offset, u64::from(len), fua)
            .await
            .map_err(io_error)
    }

    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        may_punch: bool,
        fua: bool,
    ) -> Result<(), IoError> {
        self.image
            .write_zeroes(offset, u64::from(len), !may_punch, fua)
            .await
            .map_err(io_error)
    }

    async fn flush(&self) -> Result<(), IoError> {
        self.image.flush().await.map_err(io_error)
    }

    async fn cache(&self, offset: u64, len: u32) -> Result<(), IoError> {
        // Nothing is cached client-side of the cluster; reading checks the range is readable.
        self.image
            .read(offset, u64::from(len))
            .await
            .map(|_| ())
            .map_err(io_error)
    }

    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, IoError> {
        let allocs = self
            .image
            .allocation(offset, u64::from(len))
            .await
            .map_err(io_error)?;
        Ok(allocs
            .into_iter()
            .map(|a| Extent {
                len: a.len_bytes,
                hole: !a.data,
                zero: !a.data,
            })
            .collect())
    }
}

/// Every image (and snapshot) of a [`BlockService`] as an export.
#[derive(Debug)]
pub struct ImageExports<S: MetaStore + Clone> {
    service: Arc<BlockService<S>>,
}

impl<S: MetaStore + Clone> ImageExports<S> {
    pub fn new(service: Arc<BlockService<S>>) -> ImageExports<S> {
        ImageExports { service }
    }
}

impl<S: MetaStore + Clone> Exports for ImageExports<S> {
    type Export = ImageExport;

    async fn open(&self, name: &str) -> Result<Arc<ImageExport>, String> {
        let image = match name.split_once('@') {
            Some((image, snap)) => self.service.open_read(image, Some(snap)).await,
            None => self.service.open_write(name).await,
        }
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(ImageExport { image }))
    }

    async fn list(&self) -> Vec<(String, String)> {
        let Ok(images) = self.service.list().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for h in images {
            out.push((h.name.clone(), format!("image, {} bytes", h.size_bytes)));
            for s in &h.snapshots {
                out.push((
                    format!("{}@{}", h.name, s.name),
                    format!("snapshot, {} bytes, read-only", s.size_bytes),
                ));
            }
        }
        out
    }
}
