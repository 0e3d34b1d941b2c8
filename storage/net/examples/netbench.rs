//! QUIC vs TCP+TLS on loopback, side by side in one run.
//!
//! Measures, per transport: a streamed body upload and download (GiB/s), small-RPC latency
//! (64-byte request and response body) at concurrency 1 and 16 (p50/p99), and CPU seconds per
//! GiB moved (getrusage of this process, so client and server together).
//!
//! Run: `bench/net/run.sh` (release build), or
//! `cargo run --release -p cairn-net --example netbench -- [--gib N] [--rpcs N]`.
// A benchmark binary: prints its table, may panic on setup failure, casts measured floats.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use cairn_net::{
    Body, CallContext, CallOptions, ClientOptions, ClusterCa, Handler, HandlerError, Response,
    RpcClient, ServerOptions, TlsIdentity, TransportKind, decode_request,
};
use serde::{Deserialize, Serialize};

const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum BenchMsg {
    Echo,
    Sink,
    Source(u64),
}

#[derive(Debug, Serialize, Deserialize)]
enum BenchReply {
    Echo,
    Sunk(u64),
    Sourced,
}

#[derive(Debug, Clone)]
struct BenchHandler {
    chunk: Bytes,
}

impl Handler for BenchHandler {
    async fn handle(
        &self,
        _ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> Result<Response, HandlerError> {
        match decode_request::<BenchMsg>(&header)? {
            BenchMsg::Echo => Response::encode(&BenchReply::Echo, body),
            BenchMsg::Sink => {
                let n = body
                    .drain()
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                Response::encode(&BenchReply::Sunk(n), Body::Empty)
            }
            BenchMsg::Source(total) => {
                Response::encode(&BenchReply::Sourced, chunked(self.chunk.clone(), total))
            }
        }
    }
}

/// A streamed body of `total` bytes made of one shared chunk (no per-chunk allocation, so the
/// benchmark measures the transport rather than the producer).
fn chunked(chunk: Bytes, total: u64) -> Body {
    let (mut tx, body) = Body::channel();
    tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            if tx.send(chunk.slice(..n)).await.is_err() {
                return;
            }
            sent += n as u64;
        }
        let _ = tx.finish().await;
    });
    body
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

#[derive(Debug, Default, Clone)]
struct Numbers {
    up_gib_s: f64,
    up_cpu_s_per_gib: f64,
    down_gib_s: f64,
    down_cpu_s_per_gib: f64,
    c1_p50_us: f64,
    c1_p99_us: f64,
    c1_ops_s: f64,
    c16_p50_us: f64,
    c16_p99_us: f64,
    c16_ops_s: f64,
    udp_buffers: Option<(usize, usize)>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn latency(
    client: &RpcClient,
    peer: SocketAddr,
    concurrency: usize,
    rpcs: usize,
) -> Result<(f64, f64, f64)> {
    let payload = Bytes::from(vec![0x5au8; 64]);
    let per_task = rpcs / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let (_, body): (BenchReply, Body) = client
                    .call(peer, &BenchMsg::Echo, Body::Full(payload.clone()))
                    .await?;
                let echoed = body.collect(1024).await?;
                anyhow::ensure!(echoed.len() == 64, "bad echo");
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(rpcs);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Ok((
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len() as f64 / elapsed,
    ))
}

async fn run_kind(kind: TransportKind, ca: &ClusterCa, bytes: u64, rpcs: usize) -> Result<Numbers> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let server_id =
        TlsIdentity::from_pem(&ca.cert_pem, &ca.issue_node("bench-server", &[localhost])?)?;
    let client_id =
        TlsIdentity::from_pem(&ca.cert_pem, &ca.issue_node("bench-client", &[localhost])?)?;
    let chunk = Bytes::from(vec![0xa5u8; CHUNK_BYTES]);
    let server = cairn_net::serve(
        kind,
        &server_id,
        SocketAddr::new(localhost, 0),
        BenchHandler {
            chunk: chunk.clone(),
        },
        ServerOptions::default(),
    )
    .await?;
    let peer = server.local_addr();
    let quic = match kind {
        TransportKind::Quic => Some(cairn_net::QuicTransport::new(
            &client_id,
            ClientOptions::default(),
        )?),
        TransportKind::Tcp => None,
    };
    let transport: std::sync::Arc<dyn cairn_net::Transport> = match &quic {
        Some(q) => std::sync::Arc::new(q.clone()),
        None => cairn_net::client(kind, &client_id, ClientOptions::default())?,
    };
    let client = RpcClient::new(transport);
    let long = CallOptions {
        timeout: Duration::from_secs(600),
        ..Default::default()
    };
    let mut n = Numbers {
        udp_buffers: server.udp_buffers_bytes(),
        ..Default::default()
    };
    let gib = bytes as f64 / (1u64 << 30) as f64;

    // Warm up: connection, handshake, windows.
    latency(&client, peer, 4, 400).await?;
    client
        .call_with::<_, BenchReply>(
            peer,
            &BenchMsg::Sink,
            chunked(chunk.clone(), 64 << 20),
            long,
        )
        .await?;

    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (reply, _) = client
        .call_with::<_, BenchReply>(peer, &BenchMsg::Sink, chunked(chunk.clone(), bytes), long)
        .await
        .context("upload")?;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    anyhow::ensure!(
        matches!(reply, BenchReply::Sunk(b) if b == bytes),
        "upload lost bytes"
    );
    n.up_gib_s = gib / secs;
    n.up_cpu_s_per_gib = cpu / gib;

    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (_, body) = client
        .call_with::<_, BenchReply>(peer, &BenchMsg::Source(bytes), Body::Empty, long)
        .await
        .context("download")?;
    let got = body.drain().await?;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    anyhow::ensure!(got == bytes, "download lost bytes");
    n.down_gib_s = gib / secs;
    n.down_cpu_s_per_gib = cpu / gib;

    if let Some(summary) = quic.as_ref().and_then(|q| q.path_summary(peer)) {
        eprintln!("QUIC client after bulk transfers: {summary}");
    }
    (n.c1_p50_us, n.c1_p99_us, n.c1_ops_s) = latency(&client, peer, 1, rpcs).await?;
    (n.c16_p50_us, n.c16_p99_us, n.c16_ops_s) = latency(&client, peer, 16, rpcs * 4).await?;
    Ok(n)
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let gib = arg(&args, "--gib", 1.0);
    let rpcs = arg(&args, "--rpcs", 20_000.0) as usize;
    let threads = arg(&args, "--threads", 2.0) as usize;
    let bytes = (gib * (1u64 << 30) as f64) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ca = ClusterCa::generate("bench")?;
        let quic = run_kind(TransportKind::Quic, &ca, bytes, rpcs).await?;
        let tcp = run_kind(TransportKind::Tcp, &ca, bytes, rpcs).await?;
        println!("cairn-net loopback benchmark: {gib} GiB bodies in {} KiB chunks, {rpcs} RPCs at c=1, {} at c=16, {threads} runtime threads",
            CHUNK_BYTES / 1024, rpcs * 4);
        if let Some((r, s)) = quic.udp_buffers {
            println!("QUIC UDP socket buffers granted: recv {r} B, send {s} B (asked 8 MiB)");
        }
        println!();
        println!("| metric | QUIC | TCP+TLS | TCP/QUIC |");
        println!("|---|---:|---:|---:|");
        let row = |name: &str, q: f64, t: f64| println!("| {name} | {q:.2} | {t:.2} | {:.2} |", t / q);
        row("upload GiB/s", quic.up_gib_s, tcp.up_gib_s);
        row("download GiB/s", quic.down_gib_s, tcp.down_gib_s);
        row("upload CPU s/GiB", quic.up_cpu_s_per_gib, tcp.up_cpu_s_per_gib);
        row("download CPU s/GiB", quic.down_cpu_s_per_gib, tcp.down_cpu_s_per_gib);
        row("64 B RPC c=1 p50 µs", quic.c1_p50_us, tcp.c1_p50_us);
        row("64 B RPC c=1 p99 µs", quic.c1_p99_us, tcp.c1_p99_us);
        row("64 B RPC c=1 ops/s", quic.c1_ops_s, tcp.c1_ops_s);
        row("64 B RPC c=16 p50 µs", quic.c16_p50_us, tcp.c16_p50_us);
        row("64 B RPC c=16 p99 µs", quic.c16_p99_us, tcp.c16_p99_us);
        row("64 B RPC c=16 ops/s", quic.c16_ops_s, tcp.c16_ops_s);
        anyhow::Ok(())
    })
}
