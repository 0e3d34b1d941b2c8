//! Shared test fixtures: a cluster CA, identities, and handlers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_net::{
    Body, CallContext, ClusterCa, Handler, HandlerError, Response, TlsIdentity, TransportKind,
    decode_request,
};
use serde::{Deserialize, Serialize};

pub const KINDS: [TransportKind; 2] = [TransportKind::Quic, TransportKind::Tcp];
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn bind_any() -> SocketAddr {
    SocketAddr::new(LOCALHOST, 0)
}

pub struct Cluster {
    pub ca: ClusterCa,
}

impl Cluster {
    pub fn new(name: &str) -> Self {
        Cluster {
            ca: ClusterCa::generate(name).unwrap(),
        }
    }
    pub fn identity(&self, node: &str) -> TlsIdentity {
        let cert = self.ca.issue_node(node, &[LOCALHOST]).unwrap();
        TlsIdentity::from_pem(&self.ca.cert_pem, &cert).unwrap()
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    Echo(String),
    /// Sleep this many ms, then answer.
    Sleep(u64),
    /// Count the request body, answer with its length and checksum.
    Sink,
    /// Answer with a streamed body of this many bytes.
    Source(u64),
    /// Wait this many ms before reading the body, then count it.
    SlowSink(u64),
    Fail(String),
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Reply {
    Echo {
        text: String,
        request_id: u64,
        peer_name: String,
    },
    Slept,
    Sunk {
        bytes: u64,
        checksum: u64,
    },
    Sourced,
}

/// Deterministic content so both ends can check streamed bytes.
pub fn pattern_chunk(offset: u64, len: usize) -> Bytes {
    Bytes::from(
        (0..len as u64)
            .map(|i| ((offset + i) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

pub fn checksum(acc: u64, offset: u64, chunk: &[u8]) -> u64 {
    chunk.iter().enumerate().fold(acc, |a, (i, &b)| {
        a.wrapping_add((b as u64).wrapping_mul(offset + i as u64 + 1))
    })
}

pub async fn stream_pattern(total: u64, chunk_bytes: usize) -> Body {
    let (mut tx, body) = Body::channel();
    tokio::spawn(async move {
        let mut off = 0u64;
        while off < total {
            let n = chunk_bytes.min((total - off) as usize);
            if tx.send(pattern_chunk(off, n)).await.is_err() {
                return;
            }
            off += n as u64;
        }
        let _ = tx.finish().await;
    });
    body
}

pub async fn sink(mut body: Body) -> Result<(u64, u64), cairn_net::NetError> {
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(c) = body.next_chunk().await {
        let c = c?;
        sum = checksum(sum, n, &c);
        n += c.len() as u64;
    }
    Ok((n, sum))
}

#[derive(Debug, Default, Clone)]
pub struct TestHandler {
    pub calls: Arc<AtomicUsize>,
    pub active: Arc<AtomicUsize>,
    pub active_max: Arc<AtomicUsize>,
}

impl Handler for TestHandler {
    async fn handle(
        &self,
        ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> Result<Response, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.active_max.fetch_max(now, Ordering::SeqCst);
        let out = self.serve(ctx, header, body).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl TestHandler {
    async fn serve(
        &self,
        ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> Result<Response, HandlerError> {
        match decode_request::<Msg>(&header)? {
            Msg::Echo(text) => Response::encode(
                &Reply::Echo {
                    text,
                    request_id: ctx.request_id.0,
                    peer_name: ctx.peer_name.to_string(),
                },
                body,
            ),
            Msg::Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Response::encode(&Reply::Slept, Body::Empty)
            }
            Msg::Sink => {
                let (bytes, checksum) = sink(body)
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                Response::encode(&Reply::Sunk { bytes, checksum }, Body::Empty)
            }
            Msg::SlowSink(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let (bytes, checksum) = sink(body)
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                Response::encode(&Reply::Sunk { bytes, checksum }, Body::Empty)
            }
            Msg::Source(n) => {
                Response::encode(&Reply::Sourced, stream_pattern(n, 256 * 1024).await)
            }
            Msg::Fail(m) => Err(HandlerError::new(m)),
        }
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
pub mod raw;
