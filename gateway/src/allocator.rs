//! The process's allocator: mimalloc for small blocks, the system allocator for large ones.
//!
//! Measured here (bench notes in `bench/RESULTS.md`): under 4 KiB block writes at queue depth,
//! glibc's `malloc`/`free` took ~13% of the process's CPU, and mimalloc raised random-write
//! IOPS by 8–15%; but with mimalloc for everything, 64 MiB S3 PUTs and GETs (1 MiB body chunks)
//! lost 15–25%. Each block goes to one of the two by its size alone, so `dealloc` and
//! `realloc` always reach the allocator that made the block.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks of at least this many bytes come from the system allocator.
const LARGE_BYTES: usize = 256 * 1024;

/// Routes each allocation by size: below [`LARGE_BYTES`] to mimalloc, else to the system.
pub struct SplitAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BYTES
}

// SAFETY: every method forwards to an allocator chosen by the block's size, which the caller
// passes unchanged to `dealloc` and `realloc` (GlobalAlloc's contract), so a block is always
// freed or resized by the allocator that made it. A `realloc` that crosses the threshold
// allocates from the other allocator, copies the smaller of the two sizes and frees the old
// block with its own allocator.
unsafe impl GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe {
            if is_large(layout.size()) {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if is_large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `layout` is the one the block was allocated with, so its size picks the
        // allocator that made it.
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout)
            } else {
                MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: within one allocator the call is forwarded as made; across the threshold the
        // new block is at least `min(old, new)` bytes, both blocks are live during the copy
        // and do not overlap, and the old block is freed with its own layout.
        unsafe {
            match (is_large(layout.size()), is_large(new_size)) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Blocks that grow and shrink across the threshold keep their bytes (the test binary runs
    /// on this allocator, as `cairn` does).
    #[test]
    fn resizing_across_the_threshold_keeps_the_bytes() {
        let mut v: Vec<u8> = (0..1000u32)
            .map(|i| u8::try_from(i % 251).unwrap_or(0))
            .collect();
        let expect = v.clone();
        v.reserve_exact(super::LARGE_BYTES * 2);
        assert_eq!(v, expect);
        v.extend(std::iter::repeat_n(7u8, super::LARGE_BYTES));
        v.truncate(1000);
        v.shrink_to_fit();
        assert_eq!(v, expect);
        let zeroed = vec![0u8; super::LARGE_BYTES + 1];
        assert!(zeroed.iter().all(|&b| b == 0));
    }
}
