//! The blob etag: hex MD5 of the body, computed while it streams in (S3 and Swift both use it).

use md5::{Digest, Md5};

/// Incremental MD5 of a streamed body.
#[derive(Debug, Default, Clone)]
pub struct EtagHasher {
    md5: Md5,
}

impl EtagHasher {
    pub fn new() -> EtagHasher {
        EtagHasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
    }

    /// Lowercase hex of the digest.
    pub fn finish_hex(self) -> String {
        use std::fmt::Write;
        let digest = self.md5.finalize();
        let mut out = String::with_capacity(32);
        for b in digest.iter() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}
