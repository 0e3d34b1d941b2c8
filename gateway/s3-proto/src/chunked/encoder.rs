//! Producing `aws-chunked` bodies, as an SDK would.

use super::{ChunkedMode, TRAILER_SIGNATURE_NAME};

/// Encode `data` as an `aws-chunked` body.
///
/// Chunk sizes are taken from `chunk_sizes` in order, the last one
/// repeating (an empty slice means one chunk; 0 is treated as 1).
/// `trailers` are written in the trailer modes and ignored in
/// [`ChunkedMode::Signed`], which has no trailer section.
pub fn encode_chunked(
    mode: &ChunkedMode,
    data: &[u8],
    chunk_sizes: &[usize],
    trailers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 256);
    let ctx = mode.context();
    let mut previous = ctx.map(|c| c.seed_signature.clone()).unwrap_or_default();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let want = chunk_sizes
            .get(i)
            .or(chunk_sizes.last())
            .copied()
            .unwrap_or(rest.len())
            .max(1);
        i += 1;
        let (chunk, tail) = rest.split_at(want.min(rest.len()));
        rest = tail;
        write_header(&mut out, chunk.len(), ctx, &mut previous, chunk);
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    write_header(&mut out, 0, ctx, &mut previous, b"");
    if mode.has_trailers() {
        let mut canonical = Vec::new();
        for (name, value) in trailers {
            let name = name.to_ascii_lowercase();
            out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            canonical.extend_from_slice(format!("{name}:{}\n", value.trim()).as_bytes());
        }
        if let Some(ctx) = ctx {
            let sig = ctx.trailer_signature(&previous, &canonical);
            out.extend_from_slice(format!("{TRAILER_SIGNATURE_NAME}:{sig}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn write_header(
    out: &mut Vec<u8>,
    len: usize,
    ctx: Option<&crate::sigv4::SigningContext>,
    previous: &mut String,
    chunk: &[u8],
) {
    match ctx {
        Some(ctx) => {
            let sig = ctx.chunk_signature(previous, chunk);
            out.extend_from_slice(format!("{len:x};chunk-signature={sig}\r\n").as_bytes());
            *previous = sig;
        }
        None => out.extend_from_slice(format!("{len:x}\r\n").as_bytes()),
    }
}
