//! `objbench`: object PUT/GET throughput and latency, side by side in one run.
//!
//! Measures, for 4 KiB and 1 MiB objects at concurrency 1 and 16 (closed loop: each worker
//! issues its next operation when the previous one returns):
//!
//! 1. **One device**: `RocksEngine` (`IoChoice::Auto`, i.e. io_uring where the kernel allows,
//!    and `IoChoice::Plain`) against the same work done directly on the filesystem in the same
//!    directory tree: PUT = create + write + fsync (and a second baseline that also fsyncs the
//!    directory, as the engine does for large blobs), GET = open + read the whole file.
//! 2. **Cluster**: three `cairn node` processes on 127.x.y.{1,2,3} (3 replicas, TCP + TLS), driven
//!    by an in-process `ClusterClient`: the cost of replication ×3 and the network hop.
//! 3. **Peer**: OpenStack Swift (`--swift-url`, started by `run.sh` with the shared
//!    `peers/swift/setup.sh`) through its native API with a Rust keep-alive HTTP client.
//!
//! Phases are interleaved (for each size and concurrency, every system runs its PUT then GET)
//! so that drift on the VM hits all systems alike. Prints markdown tables with ops/s, MiB/s,
//! p50/p99 latency and throughput ratios (> 1 means the row is faster than the peer).

// A benchmark's product is its printed report.
#![allow(clippy::print_stdout)]

mod cluster;
mod local;
mod measure;
mod swift;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};
use clap::Parser;
use rand::RngCore;

use crate::local::{EngineUnderTest, FsUnderTest};
use crate::measure::{Load, Sample};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Object PUT/GET benchmark: RocksEngine vs filesystem, Cairn cluster vs Swift.
#[derive(Debug, Parser)]
struct Args {
    /// Directory the engine, filesystem and cluster data go under (a fresh temp dir inside).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// The `cairn` binary (built by `cargo build --release -p cairn-gateway`).
    #[arg(long, env = "CAIRN_BIN")]
    cairn_bin: Option<PathBuf>,
    /// Operations per row for 4 KiB objects.
    #[arg(long, default_value_t = 2000)]
    small_ops: usize,
    /// Operations per row for 1 MiB objects.
    #[arg(long, default_value_t = 200)]
    large_ops: usize,
    /// A phase (one system, one operation, size and concurrency) stops issuing operations after
    /// this many seconds, so slow systems run fewer (the tables show how many ran).
    #[arg(long, default_value_t = 15)]
    phase_seconds: u64,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    concurrency: Vec<usize>,
    /// Swift proxy (`http://127.0.0.1:PORT`); without it there are no Swift rows.
    #[arg(long, env = "SWIFT_URL")]
    swift_url: Option<String>,
    #[arg(long, default_value = "test:tester")]
    swift_user: String,
    #[arg(long, default_value = "testing")]
    swift_key: String,
    /// Skip the cluster (and Swift) rows.
    #[arg(long)]
    local_only: bool,
}

/// Which system a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    FsFsync,
    FsFsyncDir,
    FsRead,
    EngineAuto,
    EnginePlain,
    Cluster,
    Swift,
}

impl System {
    fn label(self, uring: bool) -> String {
        match self {
            System::FsFsync => "fs: create+write+fsync".into(),
            System::FsFsyncDir => "fs: create+write+fsync+dirfsync".into(),
            System::FsRead => "fs: open+read".into(),
            System::EngineAuto if uring => "engine Auto (io_uring)".into(),
            System::EngineAuto => "engine Auto (fell back to plain)".into(),
            System::EnginePlain => "engine Plain".into(),
            System::Cluster => "Cairn cluster (3 nodes, ×3)".into(),
            System::Swift => "Swift (4 nodes, ×3, proxy)".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

#[derive(Debug)]
struct Row {
    op: Op,
    size: usize,
    conc: usize,
    system: System,
    sample: Sample,
}

fn human(size: usize) -> String {
    if size >= MIB {
        format!("{} MiB", size / MIB)
    } else {
        format!("{} KiB", size / KIB)
    }
}

fn random_bytes(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    Bytes::from(v)
}

fn progress(row: &Row, uring: bool) {
    eprintln!(
        "[objbench] {:?} {:>6} c={:<2} {:<36} {:>9.1} ops/s {:>8.1} MiB/s p50 {:>7.2} ms p99 {:>7.2} ms",
        row.op,
        human(row.size),
        row.conc,
        row.system.label(uring),
        row.sample.ops_per_s(),
        row.sample.mib_per_s(),
        row.sample.percentile_ms(50),
        row.sample.percentile_ms(99),
    );
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let work = tempfile::Builder::new()
        .prefix("cairn-bench-objects.")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a temp dir in {}", args.dir.display()))?;
    let started = Instant::now();

    // ---- systems under test
    let auto_dir = work.path().join("engine-auto");
    let plain_dir = work.path().join("engine-plain");
    let fs_dir = work.path().join("fs");
    std::fs::create_dir_all(&fs_dir)?;
    let (auto, plain) = rt.block_on(async {
        let auto = RocksEngine::open(EngineOptions {
            dir: auto_dir,
            io: IoChoice::Auto,
        })
        .await?;
        let plain = RocksEngine::open(EngineOptions {
            dir: plain_dir,
            io: IoChoice::Plain,
        })
        .await?;
        anyhow::Ok((EngineUnderTest::new(auto), EngineUnderTest::new(plain)))
    })?;
    let uring = auto.engine.uses_io_uring();
    let fs = FsUnderTest { dir: fs_dir };

    let mut notes = Vec::new();
    let cluster = if args.local_only {
        None
    } else {
        let bin = match &args.cairn_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable has no directory")?
                .join("cairn"),
        };
        let c = cluster::Cluster::start(&bin, work.path(), 3, 8)?;
        let client = rt.block_on(async { c.client() })?;
        Some((c, Arc::new(client)))
    };
    let max_conc = args.concurrency.iter().copied().max().unwrap_or(1);
    let swift = match (&args.swift_url, args.local_only) {
        (Some(url), false) => {
            match rt.block_on(swift::Swift::connect(
                url,
                &args.swift_user,
                &args.swift_key,
                "cairn-bench-objects",
                max_conc,
            )) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    notes.push(format!("Swift at {url} unusable, no Swift rows: {e:#}"));
                    None
                }
            }
        }
        _ => {
            notes.push("no --swift-url: no Swift rows".into());
            None
        }
    };

    // ---- the run
    let run_id = std::process::id();
    let limit = Duration::from_secs(args.phase_seconds);
    let mut rows = Vec::new();
    let sizes = [(4 * KIB, args.small_ops), (MIB, args.large_ops)];
    for &(size, ops) in &sizes {
        let data = random_bytes(size);
        for &conc in &args.concurrency {
            let tag = format!("r{run_id}-s{size}-c{conc}");
            let push = |rows: &mut Vec<Row>, op, system, sample| {
                let row = Row {
                    op,
                    size,
                    conc,
                    system,
                    sample,
                };
                progress(&row, uring);
                rows.push(row);
            };
            let load = Load { ops, conc, limit };
            // GET reads back what the PUT wrote (all of it, unless the time limit cut it short).
            let read = |put: &Sample| Load {
                ops: put.ops,
                ..load
            };
            let s = fs.put(&format!("{tag}-a"), load, &data, false)?;
            push(&mut rows, Op::Put, System::FsFsync, s);
            let s = fs.put(&format!("{tag}-b"), load, &data, true)?;
            let get = read(&s);
            push(&mut rows, Op::Put, System::FsFsyncDir, s);
            let s = fs.get(&format!("{tag}-b"), get, size)?;
            push(&mut rows, Op::Get, System::FsRead, s);
            for (system, engine) in [(System::EngineAuto, &auto), (System::EnginePlain, &plain)] {
                let s = rt.block_on(engine.put(&tag, load, data.clone()))?;
                let get = read(&s);
                push(&mut rows, Op::Put, system, s);
                let s = rt.block_on(engine.get(&tag, get, size))?;
                push(&mut rows, Op::Get, system, s);
            }
            if let Some((_, client)) = &cluster {
                let s = rt.block_on(cluster::put(client, &tag, load, data.clone()))?;
                let get = read(&s);
                push(&mut rows, Op::Put, System::Cluster, s);
                let s = rt.block_on(cluster::get(client, &tag, get, size))?;
                push(&mut rows, Op::Get, System::Cluster, s);
            }
            if let Some(sw) = &swift {
                let s = rt.block_on(swift::put(sw, &tag, load, data.clone()))?;
                let get = read(&s);
                push(&mut rows, Op::Put, System::Swift, s);
                let s = rt.block_on(swift::get(sw, &tag, get, size))?;
                push(&mut rows, Op::Get, System::Swift, s);
            }
        }
    }
    let elapsed = started.elapsed();
    rt.block_on(async {
        auto.engine.close().await;
        plain.engine.close().await;
    });
    drop(cluster);

    // ---- the report
    println!("{}", report(&args, &rows, &sizes, uring, &notes, elapsed));
    Ok(())
}

fn find(rows: &[Row], op: Op, size: usize, conc: usize, system: System) -> Option<&Sample> {
    rows.iter()
        .find(|r| r.op == op && r.size == size && r.conc == conc && r.system == system)
        .map(|r| &r.sample)
}

fn ratio(a: Option<&Sample>, b: Option<&Sample>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.ops_per_s() > 0.0 => {
            format!("{:.2}×", a.ops_per_s() / b.ops_per_s())
        }
        _ => "—".into(),
    }
}

fn report(
    args: &Args,
    rows: &[Row],
    sizes: &[(usize, usize)],
    uring: bool,
    notes: &[String],
    elapsed: std::time::Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}", machine());
    let _ = writeln!(
        out,
        "Data under {}; ops per row: 4 KiB × {}, 1 MiB × {}, each phase cut at {} s; concurrency {:?}; engine Auto uses io_uring: {uring}; measured in {:.0} s.",
        args.dir.display(),
        args.small_ops,
        args.large_ops,
        args.phase_seconds,
        args.concurrency,
        elapsed.as_secs_f64()
    );
    for n in notes {
        let _ = writeln!(out, "Note: {n}");
    }
    let _ = writeln!(
        out,
        "Ratios are throughput (ops/s) of the row ÷ the named peer: > 1 means the row is faster."
    );
    for &(size, _) in sizes {
        for &conc in &args.concurrency {
            for op in [Op::Put, Op::Get] {
                let (fs_cols, fs_systems): (&[&str], Vec<System>) = match op {
                    Op::Put => (
                        &["vs fs fsync", "vs fs fsync+dir"],
                        vec![System::FsFsync, System::FsFsyncDir],
                    ),
                    Op::Get => (&["vs fs read"], vec![System::FsRead]),
                };
                let _ = writeln!(
                    out,
                    "\n### {op:?} {} objects, concurrency {conc}\n",
                    human(size)
                );
                let _ = writeln!(
                    out,
                    "| system | ops | ops/s | MiB/s | p50 ms | p99 ms | {} | vs engine Auto | vs Swift |",
                    fs_cols.join(" | ")
                );
                let _ = writeln!(
                    out,
                    "|---|---:|---:|---:|---:|---:|{}---:|---:|",
                    "---:|".repeat(fs_cols.len())
                );
                for r in rows
                    .iter()
                    .filter(|r| r.op == op && r.size == size && r.conc == conc)
                {
                    let s = &r.sample;
                    let fs_ratios: Vec<String> = fs_systems
                        .iter()
                        .map(|&f| ratio(Some(s), find(rows, op, size, conc, f)))
                        .collect();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
                        r.system.label(uring),
                        s.ops,
                        s.ops_per_s(),
                        s.mib_per_s(),
                        s.percentile_ms(50),
                        s.percentile_ms(99),
                        fs_ratios.join(" | "),
                        ratio(Some(s), find(rows, op, size, conc, System::EngineAuto)),
                        ratio(Some(s), find(rows, op, size, conc, System::Swift)),
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "\n### Summary (throughput ratios)\n");
    let _ = writeln!(
        out,
        "| op | size | conc | engine Auto ÷ fs | engine Plain ÷ fs | cluster ÷ engine Auto | cluster ÷ fs | Cairn cluster ÷ Swift |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for &(size, _) in sizes {
        for &conc in &args.concurrency {
            for op in [Op::Put, Op::Get] {
                // PUT compares with the baseline that makes the same promise as the engine for
                // large blobs (file and directory durable).
                let fs = match op {
                    Op::Put => System::FsFsyncDir,
                    Op::Get => System::FsRead,
                };
                let f = |s| find(rows, op, size, conc, s);
                let _ = writeln!(
                    out,
                    "| {op:?} | {} | {conc} | {} | {} | {} | {} | {} |",
                    human(size),
                    ratio(f(System::EngineAuto), f(fs)),
                    ratio(f(System::EnginePlain), f(fs)),
                    ratio(f(System::Cluster), f(System::EngineAuto)),
                    ratio(f(System::Cluster), f(fs)),
                    ratio(f(System::Cluster), f(System::Swift)),
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n(PUT \"÷ fs\" is against create+write+fsync+dirfsync.)"
    );
    out
}
