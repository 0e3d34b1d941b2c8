//! Buffers extent log reads land in, reused once the bytes read into them are dropped.
//!
//! A fresh buffer per read cost more than the read: the allocator zeroes it (the read then
//! overwrites every byte) and large ones come as fresh pages the kernel zeroes again — an eighth
//! of the CPU of a sequential read through NBD. A reused buffer holds an earlier read's bytes,
//! but a read only hands out bytes it has just filled.

use std::sync::{Arc, Mutex};

/// Smallest class: a block device's usual read.
const CLASS_MIN_SHIFT: u32 = 12;
/// Largest pooled class (1 MiB): bigger reads are rare and allocate.
const CLASS_MAX_SHIFT: u32 = 20;
const CLASSES: usize = (CLASS_MAX_SHIFT - CLASS_MIN_SHIFT + 1) as usize;
/// Free buffers kept per class: at most 8 × (4 KiB + … + 1 MiB) ≈ 16 MiB per device.
const FREE_PER_CLASS_MAX: usize = 8;

/// The free buffers of one device, by power-of-two size class.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffers {
    free: [Mutex<Vec<Vec<u8>>>; CLASSES],
}

/// The buffer size of class `class`.
fn class_bytes(class: usize) -> usize {
    (1usize << CLASS_MIN_SHIFT) << class
}

/// The class of a read of `len` bytes, if pooled.
fn class_of(len: usize) -> Option<usize> {
    let shift = len
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .max(CLASS_MIN_SHIFT);
    (shift <= CLASS_MAX_SHIFT).then(|| (shift - CLASS_MIN_SHIFT) as usize)
}

impl ReadBuffers {
    /// A buffer of at least `len` initialized bytes (contents unspecified).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let Some(class) = class_of(len) else {
            return vec![0u8; len];
        };
        let reused = self.free[class]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        reused.unwrap_or_else(|| vec![0u8; class_bytes(class)])
    }

    fn give_back(&self, buf: Vec<u8>) {
        // Only buffers this pool made (exactly a class's size) go back.
        let Some(class) = class_of(buf.len()).filter(|c| buf.len() == class_bytes(*c)) else {
            return;
        };
        let mut free = self.free[class].lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < FREE_PER_CLASS_MAX {
            free.push(buf);
        }
    }
}

/// The first `len` bytes of a pooled buffer, handed out as [`bytes::Bytes`]; the buffer goes
/// back to the pool when the last slice of it is dropped.
struct FilledBuffer {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<ReadBuffers>,
}

impl AsRef<[u8]> for FilledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for FilledBuffer {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// `buf`'s first `len` bytes (which the caller has just filled) as `Bytes`.
pub(crate) fn filled(pool: &Arc<ReadBuffers>, buf: Vec<u8>, len: usize) -> bytes::Bytes {
    assert!(len <= buf.len(), "a filled length past the buffer");
    bytes::Bytes::from_owner(FilledBuffer {
        buf,
        len,
        pool: pool.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_once_their_bytes_are_dropped() {
        let pool = Arc::new(ReadBuffers::default());
        let mut b = pool.take(5000);
        assert_eq!(b.len(), 8192);
        b[..5].copy_from_slice(b"hello");
        let bytes = filled(&pool, b, 5000);
        let slice = bytes.slice(0..5);
        drop(bytes);
        assert_eq!(&slice[..], b"hello");
        assert!(
            pool.free[class_of(8192).unwrap_or(0)]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        );
        drop(slice);
        let again = pool.take(8000);
        assert_eq!(&again[..5], b"hello", "the same buffer, reused");
        assert_eq!(
            pool.take(3 << 20).len(),
            3 << 20,
            "big reads are not pooled"
        );
        assert_eq!(class_of(1), Some(0));
        assert_eq!(class_of(4097), Some(1));
        assert_eq!(class_of(1 << 20), Some(8));
        assert_eq!(class_of((1 << 20) + 1), None);
    }
}
