//! `ecbench`: erasure-coding codec throughput per core, both codecs side by side.
//!
//! For 4+2 and 8+3 over one segment (1 MiB by default), measures on one thread:
//! - **encode**: the m parity shards from the k data shards ([`ErasureCodec::encode`]);
//! - **decode, 1 lost** / **decode, m lost**: restoring 1 or m missing *data* shards from the
//!   k remaining shards ([`ErasureCodec::reconstruct_data`], what a degraded read does);
//! - **segment put** / **segment get, 1 lost**: the whole [`Striper`] path, i.e. split + pad +
//!   segment CRC32C + encode + fragment CRC32Cs, and fragment verification + decode + copy +
//!   segment CRC32C check.
//!
//! Throughput is segment bytes (data, not parity) per second of this thread's CPU time, read
//! from `/proc/thread-self/schedstat`, so other load on a shared machine does not count
//! against a codec; the wall-clock figure is printed next to it. Every cell is measured in
//! several interleaved rounds (all cells of round 1, then of round 2, …) and the median
//! round is reported. Each codec's output is checked before it is timed.

// A benchmark's product is its printed report.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cairn_erasure::{CodecId, EcParams, ErasureCodec, Striper, codec, shard_len};
use clap::Parser;
use rand::RngCore;

#[derive(Debug, Parser)]
#[command(
    about = "Erasure-coding codec throughput per core, reed-solomon-erasure vs reed-solomon-simd"
)]
struct Args {
    /// Segment size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    segment_bytes: usize,
    /// Time per cell per round, in milliseconds.
    #[arg(long, default_value_t = 400)]
    cell_ms: u64,
    /// Interleaved rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// This thread's CPU time so far, from the scheduler's own accounting (nanoseconds).
fn thread_cpu() -> Result<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let ns: u64 = s
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()
        .context("parsing schedstat")?;
    Ok(Duration::from_nanos(ns))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Encode,
    Decode1,
    DecodeM,
    SegmentPut,
    SegmentGet1,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Encode,
        Op::Decode1,
        Op::DecodeM,
        Op::SegmentPut,
        Op::SegmentGet1,
    ];

    fn label(self, m: usize) -> String {
        match self {
            Op::Encode => "encode".into(),
            Op::Decode1 => "decode, 1 data shard lost".into(),
            Op::DecodeM => format!("decode, {m} data shards lost"),
            Op::SegmentPut => "segment put (split+CRC+encode)".into(),
            Op::SegmentGet1 => "segment get, 1 lost (verify+decode+CRC)".into(),
        }
    }
}

/// One codec at one k+m, with its inputs ready.
struct Subject {
    codec: Box<dyn ErasureCodec + Send + Sync>,
    striper: Striper,
    segment: Vec<u8>,
    data: Vec<Vec<u8>>,
    parity: Vec<Vec<u8>>,
    fragments: Vec<cairn_erasure::Fragment>,
}

impl Subject {
    fn new(id: CodecId, params: EcParams, segment: &[u8]) -> Result<Self> {
        let codec = codec(id, params)?;
        let striper = Striper::new(id, params, segment.len() as u64)?;
        let len = shard_len(segment.len() as u64, params.k);
        let data: Vec<Vec<u8>> = (0..params.k)
            .map(|i| {
                let mut s = segment
                    [(i * len).min(segment.len())..((i + 1) * len).min(segment.len())]
                    .to_vec();
                s.resize(len, 0);
                s
            })
            .collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let parity = codec.encode(&refs)?;
        let fragments = striper.encode_segment(segment)?;
        Ok(Subject {
            codec,
            striper,
            segment: segment.to_vec(),
            data,
            parity,
            fragments,
        })
    }

    /// Shards with data shards `0..lost` missing and exactly k present.
    fn degraded(&self, lost: usize) -> Vec<Option<Vec<u8>>> {
        let k = self.data.len();
        let mut shards: Vec<Option<Vec<u8>>> = Vec::new();
        shards.extend(
            self.data
                .iter()
                .enumerate()
                .map(|(i, d)| (i >= lost).then(|| d.clone())),
        );
        shards.extend(
            self.parity
                .iter()
                .enumerate()
                .map(|(j, p)| (j < lost).then(|| p.clone())),
        );
        debug_assert_eq!(shards.iter().flatten().count(), k);
        shards
    }

    fn check(&self, op: Op) -> Result<()> {
        let m = self.parity.len();
        match op {
            Op::Encode => {
                let refs: Vec<&[u8]> = self.data.iter().map(Vec::as_slice).collect();
                ensure!(
                    self.codec.encode(&refs)? == self.parity,
                    "encode not deterministic"
                );
            }
            Op::Decode1 | Op::DecodeM => {
                let lost = if op == Op::Decode1 { 1 } else { m };
                let mut shards = self.degraded(lost);
                self.codec.reconstruct_data(&mut shards)?;
                for (i, d) in self.data.iter().enumerate() {
                    ensure!(
                        shards[i].as_ref() == Some(d),
                        "decode restored shard {i} wrongly"
                    );
                }
            }
            Op::SegmentPut => {
                ensure!(self.striper.encode_segment(&self.segment)? == self.fragments)
            }
            Op::SegmentGet1 => {
                ensure!(self.striper.decode_segment(&self.fragments[1..])? == self.segment)
            }
        }
        Ok(())
    }

    /// Runs `op` for about `budget` of wall time; returns (iterations, cpu, wall).
    fn run(&self, op: Op, budget: Duration) -> Result<(u64, Duration, Duration)> {
        let m = self.parity.len();
        let refs: Vec<&[u8]> = self.data.iter().map(Vec::as_slice).collect();
        let lost = if op == Op::Decode1 { 1 } else { m };
        let mut shards = self.degraded(lost);
        let (cpu0, wall0) = (thread_cpu()?, Instant::now());
        let mut iters = 0u64;
        while wall0.elapsed() < budget || iters == 0 {
            match op {
                Op::Encode => {
                    std::hint::black_box(self.codec.encode(&refs)?);
                }
                Op::Decode1 | Op::DecodeM => {
                    for s in &mut shards[..lost] {
                        *s = None;
                    }
                    self.codec.reconstruct_data(&mut shards)?;
                    std::hint::black_box(&shards);
                }
                Op::SegmentPut => {
                    std::hint::black_box(self.striper.encode_segment(&self.segment)?);
                }
                Op::SegmentGet1 => {
                    std::hint::black_box(self.striper.decode_segment(&self.fragments[1..])?);
                }
            }
            iters += 1;
        }
        Ok((iters, thread_cpu()? - cpu0, wall0.elapsed()))
    }
}

fn gib_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-9) / f64::from(1u32 << 30)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let mut segment = vec![0u8; args.segment_bytes];
    rand::thread_rng().fill_bytes(&mut segment);
    let shapes = [EcParams::new(4, 2), EcParams::new(8, 3)];
    let codecs = [CodecId::RsErasureGf8, CodecId::RsSimd];

    let mut subjects = Vec::new();
    for &params in &shapes {
        for &id in &codecs {
            let s = Subject::new(id, params, &segment)?;
            for op in Op::ALL {
                s.check(op)
                    .with_context(|| format!("{id} {params} {op:?}"))?;
            }
            subjects.push((params, id, s));
        }
    }

    // results[(subject, op)] = per-round (cpu GiB/s, wall GiB/s)
    let budget = Duration::from_millis(args.cell_ms);
    let mut cpu_rates = vec![vec![Vec::new(); Op::ALL.len()]; subjects.len()];
    let mut wall_rates = cpu_rates.clone();
    let started = Instant::now();
    for round in 0..args.rounds {
        eprintln!("round {} of {}", round + 1, args.rounds);
        for (si, (_, _, s)) in subjects.iter().enumerate() {
            for (oi, &op) in Op::ALL.iter().enumerate() {
                let (iters, cpu, wall) = s.run(op, budget)?;
                let bytes = iters * args.segment_bytes as u64;
                cpu_rates[si][oi].push(gib_per_s(bytes, cpu));
                wall_rates[si][oi].push(gib_per_s(bytes, wall));
            }
        }
    }

    let mut out = String::new();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(
        out,
        "ecbench: segment {} bytes, {} rounds × {} ms per cell, median round; {:.0} s in all; \
         load average before the table: {}",
        args.segment_bytes,
        args.rounds,
        args.cell_ms,
        started.elapsed().as_secs_f64(),
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| k+m | operation | rs-erasure-gf8 GiB/s | rs-simd GiB/s | rs-simd ÷ rs-erasure-gf8 | wall GiB/s (erasure / simd) |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|")?;
    for &params in &shapes {
        let idx = |id: CodecId| {
            subjects
                .iter()
                .position(|(p, c, _)| *p == params && *c == id)
                .context("subject missing")
        };
        let (a, b) = (idx(CodecId::RsErasureGf8)?, idx(CodecId::RsSimd)?);
        for (oi, op) in Op::ALL.iter().enumerate() {
            let ca = median(&mut cpu_rates[a][oi]);
            let cb = median(&mut cpu_rates[b][oi]);
            let wa = median(&mut wall_rates[a][oi]);
            let wb = median(&mut wall_rates[b][oi]);
            writeln!(
                out,
                "| {params} | {} | {ca:.2} | {cb:.2} | {:.2} | {wa:.2} / {wb:.2} |",
                op.label(params.m),
                cb / ca
            )?;
        }
    }
    print!("{out}");
    Ok(())
}
