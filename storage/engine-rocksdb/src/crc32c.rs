//! RocksDB's CRC32C, computed with the CPU's carry-less multiply instead of a lookup table.
//!
//! Debian builds `librocksdb` portable, without SSE4.2, so its `rocksdb::crc32c::Extend` runs
//! a table-driven loop: measured on this machine it was 60% of a storage node's CPU under
//! sequential block writes (every byte is checksummed in the WAL and again in a blob file) and
//! 19% under 4 KiB random reads. The library calls `Extend` through its PLT (37 call sites),
//! so a definition in the executable takes precedence for every caller, as defining `malloc`
//! in a program replaces libc's. The function below is that definition: the same CRC (the
//! Castagnoli polynomial, reflected, inverted in and out), from `crc-fast`.
//!
//! The mangled name encodes the C++ signature `uint32_t Extend(uint32_t, const char*, size_t)`,
//! so a library whose function took other arguments would not bind to it. If the linker did
//! not export it, RocksDB would keep its own loop: slower, never wrong. [`interposed`] says
//! which one the process uses; the engine logs it when it opens a device.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

/// `rocksdb::crc32c::Extend(init_crc, data, n)`: the CRC32C of `data[..n]` continued from
/// `init_crc`, the CRC32C of whatever came before (0 for nothing).
///
/// # Safety
/// `data` must point to `n` readable bytes (or `n` must be 0), as RocksDB's callers guarantee.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _ZN7rocksdb6crc32c6ExtendEjPKcm(
    init_crc: u32,
    data: *const c_char,
    n: usize,
) -> u32 {
    if n == 0 || data.is_null() {
        return init_crc;
    }
    // SAFETY: the caller passes a buffer of `n` bytes that it keeps alive for this call.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n) };
    extend(init_crc, bytes)
}

/// The CRC32C of `prefix || bytes`, given `crc` = the CRC32C of `prefix`.
pub fn extend(crc: u32, bytes: &[u8]) -> u32 {
    let mut d = crc_fast::Digest::new_with_init_state(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        u64::from(crc ^ 0xffff_ffff),
    );
    d.update(bytes);
    // Crc32Iscsi is a 32-bit algorithm: the u64 result always fits.
    (d.finalize() & 0xffff_ffff) as u32
}

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// Whether RocksDB's `Extend` resolves to the function above in this process.
pub fn interposed() -> bool {
    // glibc's RTLD_DEFAULT: search the global scope in load order, the executable first.
    let rtld_default = std::ptr::null_mut();
    let name = c"_ZN7rocksdb6crc32c6ExtendEjPKcm";
    // SAFETY: dlsym with a NUL-terminated name only looks the symbol up.
    let found = unsafe { dlsym(rtld_default, name.as_ptr()) };
    let ours = _ZN7rocksdb6crc32c6ExtendEjPKcm as *const () as *mut c_void;
    std::ptr::eq(found, ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_castagnoli_check_value_and_extends() {
        assert_eq!(extend(0, b"123456789"), 0xe306_9283);
        let whole = cairn_engine::chunk::crc32c(b"hello, extended world");
        let (a, b) = b"hello, extended world".split_at(7);
        assert_eq!(extend(extend(0, a), b), whole);
        assert_eq!(extend(0x1234_5678, b""), 0x1234_5678);
        // SAFETY: a null pointer with n = 0, as RocksDB may pass for an empty slice.
        assert_eq!(
            unsafe { _ZN7rocksdb6crc32c6ExtendEjPKcm(7, std::ptr::null(), 0) },
            7
        );
    }

    #[test]
    fn rocksdb_uses_this_function_in_test_binaries() {
        assert!(
            interposed(),
            "the linker did not export rocksdb::crc32c::Extend from this test binary"
        );
    }
}
