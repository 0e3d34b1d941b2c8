//! A large blob body streamed into its file around the page cache (`O_DIRECT`), for a copy that
//! will not serve reads soon (`BlobWriteOptions::write_around`): filling fresh page-cache pages
//! was half the CPU of a 64 MiB PUT on a VM whose memory balloon reports free pages (a host
//! fault per page), and a copy nobody reads soon gains nothing from being cached.
//!
//! `O_DIRECT` writes whole pages from page-aligned memory at page-aligned offsets, so the
//! encoded body is staged in an [`AlignedBuf`]: whole pages go out as they fill, a partial page
//! waits for more bytes or the end of the body; the last write is padded to a page and the file
//! is then cut to the body's exact length, so the file is byte for byte what a buffered write
//! makes. Durability is unchanged: the writer still fdatasyncs the file before the rename.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::aligned_append::{AlignedBuf, DIRECT_ALIGN};
use crate::extent_log::open_direct;

/// Staging room a body starts with: one streamed batch of encoded chunks and a page.
const STAGING_START_BYTES: usize = 1024 * 1024 + 64 * 1024;

#[derive(Debug)]
pub(crate) struct DirectAppend {
    /// A second, write-only descriptor of the file, opened with `O_DIRECT`.
    direct: File,
    /// Encoded bytes from file offset `base` on, not written yet.
    staged: AlignedBuf,
    base: u64,
    /// The filesystem refused an `O_DIRECT` write: the rest goes through the page cache.
    refused: bool,
}

impl DirectAppend {
    /// `None` where the filesystem does not do `O_DIRECT`.
    pub(crate) fn open(path: &Path) -> Option<DirectAppend> {
        Some(DirectAppend {
            direct: open_direct(path)?,
            staged: AlignedBuf::with_capacity(STAGING_START_BYTES),
            base: 0,
            refused: false,
        })
    }

    /// The staging buffer, with room for `additional` more bytes.
    pub(crate) fn staging(&mut self, additional: usize) -> &mut AlignedBuf {
        self.staged.reserve(additional);
        &mut self.staged
    }

    /// Whether a write was refused and went through the page cache instead.
    pub(crate) fn was_refused(&self) -> bool {
        self.refused
    }

    /// Writes the whole pages staged; with `last`, everything (the last page padded), and then
    /// cuts `buffered` (the same file, opened normally) to the exact length. Blocking.
    pub(crate) fn write_out(&mut self, buffered: &File, last: bool) -> io::Result<()> {
        let end = self.base + self.staged.len() as u64;
        if last {
            self.staged.pad_to_alignment();
        }
        let whole = self.staged.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if whole > 0 {
            self.write_pages(buffered, whole)?;
            self.base += whole as u64;
            self.staged.consume(whole);
        }
        if last {
            buffered.set_len(end)?;
            self.base = end;
        }
        Ok(())
    }

    fn write_pages(&mut self, buffered: &File, len: usize) -> io::Result<()> {
        let pages = &self.staged.as_slice()[..len];
        if !(pages.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
            && len.is_multiple_of(DIRECT_ALIGN)
            && self.base.is_multiple_of(DIRECT_ALIGN as u64))
        {
            debug_assert!(false, "an O_DIRECT write must be aligned");
            return Err(io::Error::other("unaligned O_DIRECT write (a bug)"));
        }
        if !self.refused {
            match self.direct.write_all_at(pages, self.base) {
                // A filesystem may accept the open and still refuse the write: the page cache
                // takes this write and the rest of the body's.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(error = %e, "O_DIRECT write of a blob refused; blobs are written through the page cache");
                    self.refused = true;
                }
                other => return other,
            }
        }
        buffered.write_all_at(pages, self.base)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fs::OpenOptions;

    use super::*;

    /// Streams `parts` through a `DirectAppend` and checks the file is exactly their bytes.
    fn append_parts(parts: &[usize]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut d = DirectAppend::open(&path).expect("the test directory does O_DIRECT");
        let mut expected = Vec::new();
        for (i, &len) in parts.iter().enumerate() {
            let part: Vec<u8> = (0..len).map(|b| (b * 7 + i).to_le_bytes()[0]).collect();
            d.staging(len).extend(&part);
            expected.extend_from_slice(&part);
            d.write_out(&buffered, false).unwrap();
            assert!(d.staged.len() < DIRECT_ALIGN, "whole pages go out at once");
        }
        d.write_out(&buffered, true).unwrap();
        assert!(!d.was_refused());
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn streamed_bytes_land_exactly_whatever_the_part_sizes() {
        append_parts(&[65_540; 17]);
        append_parts(&[1, 4095, 4096, 4097, 3 * 1024 * 1024 + 5]);
        append_parts(&[8192, 8192]);
        append_parts(&[10]);
        append_parts(&[]);
    }
}
