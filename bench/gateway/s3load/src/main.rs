//! `s3load`: a native S3 load generator, a drop-in for `bench/gateway/loadgen.py`.
//!
//! Same flags, same phases, same `--json-out` rows and the same `# loadgen {meta}` line and
//! per-phase table on stdout, so `run.sh` and `compare.py` take either. What differs is the
//! client: loadgen.py spends 3–10 ms of CPU per request in boto3, which on a 2-core machine
//! competes with the server; here a request costs a SigV4 signature (the payload hash of a
//! size is computed once, since every object of a size has the same bytes) and an HTTP/1.1
//! exchange on a kept-alive hyper connection.
//!
//! For every size and concurrency `conc`: a PUT phase writes COUNT new objects, split among
//! `conc` tokio tasks (keys `i, i+conc, …`, one connection each), then a GET phase reads every
//! written object back in full; each phase stops issuing requests after `--max-seconds`, and
//! every request is bounded by `--op-timeout`. Objects (and the bucket, if created here) are
//! deleted at the end unless `--keep`. The runtime has 2 worker threads. Unlike boto3, which
//! connects on its first request, each worker opens its connection before the phase's clock
//! starts (on loopback that is a fraction of a millisecond either way).
//!
//! Exit status: 0, 1 if some measured request failed (as loadgen.py), 2 if the run could not
//! start (bad flags, endpoint unreachable, bucket not creatable).

// A benchmark's product is its printed report.
#![allow(clippy::print_stdout)]

mod client;
mod procstat;
mod sigv4;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

use crate::client::{Endpoint, S3Client};

/// Tokio worker threads: the machine this is written for has 2 cores.
const RUNTIME_THREADS: usize = 2;
/// Concurrency of the clean-up DELETE phase (as loadgen.py).
const DELETE_CONCURRENCY: usize = 16;
/// Longest wait for the workers to open their connections before a phase starts.
const WARM_UP_MAX: Duration = Duration::from_secs(10);
/// Tries at deleting the bucket at the end, and the pause between them.
const BUCKET_DELETE_ATTEMPTS: u32 = 10;
const BUCKET_DELETE_RETRY: Duration = Duration::from_millis(500);
/// Grace after `--max-seconds + --op-timeout` before a phase's stragglers are abandoned.
const PHASE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(
    name = "s3load",
    about = "Bounded S3 PUT/GET load generator (native drop-in for bench/gateway/loadgen.py)"
)]
struct Args {
    /// S3 endpoint, http://host:port (default: $S3_ENDPOINT, else http://$S3_HOST:$S3_PORT).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, env = "S3_MAIN_ACCESS_KEY", default_value = "test:tester")]
    access_key: String,
    #[arg(
        long,
        env = "S3_MAIN_SECRET_KEY",
        default_value = "testing",
        hide_env_values = true
    )]
    secret_key: String,
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    region: String,
    /// Existing or new bucket (default: loadgen-<random>, created and removed).
    #[arg(long)]
    bucket: Option<String>,
    /// SIZE:COUNT,...
    #[arg(long, default_value = "4KiB:2000,1MiB:500,64MiB:16")]
    sizes: String,
    #[arg(long, default_value = "1,16")]
    concurrency: String,
    #[arg(long, default_value = "put,get")]
    ops: String,
    /// Bound on each phase, seconds.
    #[arg(long, default_value_t = 120.0)]
    max_seconds: f64,
    /// Bound on each request (send to last body byte), seconds.
    #[arg(long, default_value_t = 120.0)]
    op_timeout: f64,
    /// PIDs (comma list) or dirs of *.pid files; their process trees' CPU is reported.
    #[arg(long, default_value = "")]
    cpu_pids: String,
    /// Alias of --cpu-pids for one dir.
    #[arg(long, default_value = "")]
    cpu_pids_dir: String,
    #[arg(long, default_value = "")]
    json_out: String,
    /// Do not delete objects/bucket.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Delete,
}

impl Op {
    fn parse(s: &str) -> Result<Op> {
        Ok(match s {
            "put" => Op::Put,
            "get" => Op::Get,
            "delete" => Op::Delete,
            _ => bail!("unknown op {s:?} (put, get, delete)"),
        })
    }
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
        }
    }
}

/// `meta` of the JSON output (loadgen.py's keys, with `client` instead of the Python versions).
#[derive(Debug, Serialize)]
struct Meta {
    date: String,
    endpoint: String,
    bucket: String,
    host: String,
    cpus: usize,
    client: String,
    label: String,
    cpu_pids: Vec<u32>,
    max_seconds: f64,
    op_timeout: f64,
    loadavg_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loadavg_end: Option<String>,
}

/// One phase's result: exactly loadgen.py's row keys, in its order.
#[derive(Debug, Serialize)]
struct Row {
    op: &'static str,
    size: u64,
    size_h: String,
    concurrency: usize,
    requested: usize,
    ok: usize,
    errors: usize,
    wall_s: f64,
    ops_per_s: Option<f64>,
    mib_per_s: Option<f64>,
    /// `null` (loadgen.py: NaN) when no request succeeded.
    lat_ms_p50: Option<f64>,
    lat_ms_p99: Option<f64>,
    lat_ms_mean: Option<f64>,
    lat_ms_max: Option<f64>,
    server_cpu_pct: Option<f64>,
    client_cpu_pct: Option<f64>,
    /// Whole machine, all CPUs: 100 % = one core busy (so 2 cores = 200 %).
    machine_cpu_pct: Option<f64>,
    loadavg_1m_end: String,
    first_error: Option<String>,
    timed_out: bool,
}

/// What one worker did.
#[derive(Debug, Default)]
struct WorkerResult {
    lat_s: Vec<f64>,
    errors: usize,
    bytes: u64,
    first_error: Option<String>,
    done: Vec<String>,
}

/// What every worker of a phase shares.
#[derive(Debug)]
struct PhaseSpec {
    op: Op,
    bucket: String,
    size: u64,
    payload: Bytes,
    payload_sha256: String,
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let i = s.trim_end_matches(|c: char| !c.is_ascii_digit()).len();
    let (num, unit) = s.split_at(i);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "kb" => 1000,
        "mib" | "m" => 1 << 20,
        "mb" => 1_000_000,
        "gib" | "g" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => bail!("unknown size unit in {s:?}"),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((n * mult as f64) as u64)
}

fn human(n: u64) -> String {
    for (unit, div) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= div && n.is_multiple_of(div) {
            return format!("{}{unit}", n / div);
        }
    }
    format!("{n}B")
}

/// Linear interpolation between closest ranks (loadgen.py's `pct`).
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = (sorted.len() - 1) as f64 * p / 100.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = k as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo as f64))
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

async fn worker(
    mut client: S3Client,
    spec: Arc<PhaseSpec>,
    keys: Vec<String>,
    mut start: tokio::sync::watch::Receiver<Option<Instant>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> WorkerResult {
    client.warm_up().await;
    let _ = ready.send(()).await;
    let deadline = match start.wait_for(Option::is_some).await {
        Ok(d) => *d,
        Err(_) => None,
    };
    let Some(deadline) = deadline else {
        return WorkerResult::default();
    };
    let mut r = WorkerResult {
        lat_s: Vec::with_capacity(keys.len()),
        ..WorkerResult::default()
    };
    for key in keys {
        if Instant::now() > deadline {
            break;
        }
        let t0 = Instant::now();
        let res = match spec.op {
            Op::Put => client
                .put_object(
                    &spec.bucket,
                    &key,
                    spec.payload.clone(),
                    &spec.payload_sha256,
                )
                .await
                .map(|()| spec.size),
            Op::Get => match client.get_object(&spec.bucket, &key).await {
                Ok(n) if n == spec.size => Ok(n),
                Ok(n) => Err(anyhow::anyhow!(
                    "GET {key}: short read {n} != {}",
                    spec.size
                )),
                Err(e) => Err(e),
            },
            Op::Delete => client.delete_object(&spec.bucket, &key).await.map(|()| 0),
        };
        match res {
            Ok(n) => {
                r.lat_s.push(t0.elapsed().as_secs_f64());
                r.bytes += n;
                if spec.op == Op::Put {
                    r.done.push(key);
                }
            }
            Err(e) => {
                r.errors += 1;
                if r.first_error.is_none() {
                    let mut msg = format!("{e:#}");
                    if let Some((cut, _)) = msg.char_indices().nth(300) {
                        msg.truncate(cut);
                    }
                    r.first_error = Some(msg);
                }
            }
        }
    }
    r
}

/// Shared by all phases of a run.
#[derive(Debug)]
struct Ctx {
    endpoint: Arc<Endpoint>,
    op_timeout: Duration,
    max_seconds: f64,
    cpu_pids: Vec<u32>,
    ticks_per_s: f64,
    cpus: usize,
}

async fn run_phase(
    ctx: &Ctx,
    spec: PhaseSpec,
    keys: &[String],
    conc: usize,
    cpu_pids: &[u32],
) -> (Row, Vec<String>) {
    let conc = conc.min(keys.len()).max(1);
    let spec = Arc::new(spec);
    let (start_tx, start_rx) = tokio::sync::watch::channel(None);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(conc);
    let mut handles = Vec::with_capacity(conc);
    for i in 0..conc {
        let shard: Vec<String> = keys.iter().skip(i).step_by(conc).cloned().collect();
        let client = S3Client::new(Arc::clone(&ctx.endpoint), ctx.op_timeout);
        handles.push(tokio::spawn(worker(
            client,
            Arc::clone(&spec),
            shard,
            start_rx.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let warm_until = tokio::time::Instant::now() + WARM_UP_MAX;
    for _ in 0..conc {
        if tokio::time::timeout_at(warm_until, ready_rx.recv())
            .await
            .is_err()
        {
            break;
        }
    }

    let srv0 = procstat::tree_cpu_ticks(cpu_pids);
    let cli0 = procstat::self_cpu_ticks();
    let m0 = procstat::machine_cpu();
    let t0 = Instant::now();
    let max_phase = Duration::from_secs_f64(ctx.max_seconds);
    let _ = start_tx.send(Some(t0 + max_phase));
    let hard_end = tokio::time::Instant::now() + max_phase + ctx.op_timeout + PHASE_GRACE;

    let mut results = Vec::with_capacity(conc);
    for h in &mut handles {
        match tokio::time::timeout_at(hard_end, h).await {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => results.push(WorkerResult {
                first_error: Some(format!("worker task failed: {e}")),
                ..WorkerResult::default()
            }),
            Err(_) => break,
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    // Own ticks before walking /proc (and after it at the start), so the walks are not
    // counted as client CPU.
    let cli1 = procstat::self_cpu_ticks();
    let m1 = procstat::machine_cpu();
    let srv1 = procstat::tree_cpu_ticks(cpu_pids);
    for h in &handles {
        h.abort();
    }

    let mut lat: Vec<f64> = results
        .iter()
        .flat_map(|r| r.lat_s.iter().copied())
        .collect();
    lat.sort_by(f64::total_cmp);
    let errors: usize = results.iter().map(|r| r.errors).sum();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let done: Vec<String> = results.into_iter().flat_map(|r| r.done).collect();
    let ok = lat.len();
    let hz = ctx.ticks_per_s;
    let per_wall = |x: f64| (wall > 0.0).then(|| x / wall);
    let ms = |x: Option<f64>| x.map(|v| round(v * 1000.0, 2));
    let row = Row {
        op: spec.op.name(),
        size: spec.size,
        size_h: human(spec.size),
        concurrency: conc,
        requested: keys.len(),
        ok,
        errors,
        wall_s: round(wall, 3),
        ops_per_s: per_wall(ok as f64).map(|v| round(v, 2)),
        mib_per_s: per_wall(bytes as f64 / f64::from(1u32 << 20)).map(|v| round(v, 2)),
        lat_ms_p50: ms(pct(&lat, 50.0)),
        lat_ms_p99: ms(pct(&lat, 99.0)),
        lat_ms_mean: ms((!lat.is_empty()).then(|| lat.iter().sum::<f64>() / ok as f64)),
        lat_ms_max: ms(lat.last().copied()),
        server_cpu_pct: if cpu_pids.is_empty() {
            None
        } else {
            per_wall(100.0 * srv1.saturating_sub(srv0) as f64 / hz).map(|v| round(v, 1))
        },
        client_cpu_pct: per_wall(100.0 * cli1.saturating_sub(cli0) as f64 / hz)
            .map(|v| round(v, 1)),
        machine_cpu_pct: (m1.1 > m0.1).then(|| {
            round(
                100.0 * ctx.cpus as f64 * m1.0.saturating_sub(m0.0) as f64 / (m1.1 - m0.1) as f64,
                1,
            )
        }),
        loadavg_1m_end: procstat::loadavg(),
        first_error,
        timed_out: ok + errors < keys.len(),
    };
    (row, done)
}

/// Delete the (emptied) bucket. A listing may lag the object deletes that were just
/// acknowledged, so `BucketNotEmpty` is retried for a few seconds (and said so on stderr).
async fn delete_bucket_patiently(admin: &mut S3Client, bucket: &str) {
    for attempt in 1..=BUCKET_DELETE_ATTEMPTS {
        match admin.delete_bucket(bucket).await {
            Ok(()) => {
                if attempt > 1 {
                    eprintln!(
                        "deleted bucket {bucket} at attempt {attempt} (earlier: BucketNotEmpty \
                         although every object delete had succeeded)"
                    );
                }
                return;
            }
            Err(e)
                if format!("{e:#}").contains("BucketNotEmpty")
                    && attempt < BUCKET_DELETE_ATTEMPTS =>
            {
                tokio::time::sleep(BUCKET_DELETE_RETRY).await;
            }
            Err(e) => {
                eprintln!("could not delete bucket {bucket}: {e:#}");
                return;
            }
        }
    }
}

/// Python's `%s` of an optional number.
fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "None".to_owned(), |v| format!("{v:?}"))
}

/// Python's `%.1f` of an optional number.
fn opt1(x: Option<f64>) -> String {
    x.map_or_else(|| "nan".to_owned(), |v| format!("{v:.1}"))
}

async fn run(args: Args) -> Result<bool> {
    let endpoint_url = match &args.endpoint {
        Some(e) => e.clone(),
        None => std::env::var("S3_ENDPOINT").unwrap_or_else(|_| {
            format!(
                "http://{}:{}",
                std::env::var("S3_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned()),
                std::env::var("S3_PORT").unwrap_or_else(|_| "8080".to_owned())
            )
        }),
    };
    let endpoint = Arc::new(Endpoint::parse(
        &endpoint_url,
        &args.access_key,
        &args.secret_key,
        &args.region,
    )?);
    let mut sizes = Vec::new();
    for part in args.sizes.split(',').filter(|p| !p.trim().is_empty()) {
        let (s, n) = part
            .split_once(':')
            .with_context(|| format!("--sizes: {part:?} is not SIZE:COUNT"))?;
        sizes.push((
            parse_size(s)?,
            n.trim()
                .parse::<usize>()
                .with_context(|| format!("bad count in {part:?}"))?,
        ));
    }
    let concs: Vec<usize> = args
        .concurrency
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .with_context(|| format!("bad concurrency {c:?}"))
        })
        .collect::<Result<_>>()?;
    let ops: Vec<Op> = args
        .ops
        .split(',')
        .map(|o| Op::parse(o.trim()))
        .collect::<Result<_>>()?;
    if !(args.max_seconds > 0.0 && args.op_timeout > 0.0) {
        bail!("--max-seconds and --op-timeout must be positive");
    }
    let pid_spec: Vec<&str> = [args.cpu_pids.as_str(), args.cpu_pids_dir.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let cpu_pids = procstat::read_pids(&pid_spec.join(","))?;
    let op_timeout = Duration::from_secs_f64(args.op_timeout);

    let mut admin = S3Client::new(Arc::clone(&endpoint), op_timeout);
    let bucket = match &args.bucket {
        Some(b) => b.clone(),
        None => format!(
            "loadgen-{:012x}",
            rand::thread_rng().r#gen::<u64>() & 0xffff_ffff_ffff
        ),
    };
    let mut created = false;
    if !admin.head_bucket(&bucket).await.unwrap_or(false) {
        admin
            .create_bucket(&bucket)
            .await
            .with_context(|| format!("creating bucket {bucket}"))?;
        created = true;
    }

    let ctx = Ctx {
        endpoint,
        op_timeout,
        max_seconds: args.max_seconds,
        cpu_pids: cpu_pids.clone(),
        ticks_per_s: procstat::clock_ticks_per_s() as f64,
        cpus: procstat::cpu_count(),
    };
    let mut meta = Meta {
        date: sigv4::iso_date(sigv4::now_unix()),
        endpoint: endpoint_url,
        bucket: bucket.clone(),
        host: hostname(),
        cpus: ctx.cpus,
        client: format!(
            "cairn-s3load {} (Rust, hyper 1, tokio {RUNTIME_THREADS} worker threads, \
             one HTTP/1.1 keep-alive connection per concurrent client)",
            env!("CARGO_PKG_VERSION")
        ),
        label: args.label.clone(),
        cpu_pids,
        max_seconds: args.max_seconds,
        op_timeout: args.op_timeout,
        loadavg_start: procstat::loadavg(),
        total_s: None,
        loadavg_end: None,
    };
    println!("# loadgen {}", serde_json::to_string(&meta)?);
    println!(
        "| op | size | conc | ok/req | err | wall s | ops/s | MiB/s | p50 ms | p99 ms \
         | server CPU % | client CPU % | machine CPU % | load1 |"
    );
    println!("|{}", "---|".repeat(14));

    let mut rows: Vec<Row> = Vec::new();
    let t_all = Instant::now();
    for &(size, count) in &sizes {
        let (payload, payload_sha256) = if ops.contains(&Op::Put) {
            let len = usize::try_from(size).context("object size does not fit in memory")?;
            let mut buf = vec![0u8; len];
            rand::rngs::StdRng::seed_from_u64(size).fill_bytes(&mut buf);
            let hash = sigv4::sha256_hex(&buf);
            (Bytes::from(buf), hash)
        } else {
            (Bytes::new(), sigv4::EMPTY_SHA256.to_owned())
        };
        for &conc in &concs {
            let keys: Vec<String> = (0..count)
                .map(|i| format!("{}/c{conc}/obj-{i:06}", human(size)))
                .collect();
            let mut written: Vec<String> = Vec::new();
            for &op in &ops {
                let keys_now = if op == Op::Get && ops.contains(&Op::Put) {
                    &written // read back only what the PUT phase stored
                } else {
                    &keys
                };
                if keys_now.is_empty() {
                    continue;
                }
                let spec = PhaseSpec {
                    op,
                    bucket: bucket.clone(),
                    size,
                    payload: payload.clone(),
                    payload_sha256: payload_sha256.clone(),
                };
                let (r, done) = run_phase(&ctx, spec, keys_now, conc, &ctx.cpu_pids).await;
                println!(
                    "| {} | {} | {} | {}/{} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.op.to_ascii_uppercase(),
                    r.size_h,
                    r.concurrency,
                    r.ok,
                    r.requested,
                    r.errors,
                    r.wall_s,
                    opt1(r.ops_per_s),
                    opt1(r.mib_per_s),
                    opt1(r.lat_ms_p50),
                    opt1(r.lat_ms_p99),
                    opt(r.server_cpu_pct),
                    opt(r.client_cpu_pct),
                    opt(r.machine_cpu_pct),
                    r.loadavg_1m_end
                );
                if let Some(e) = &r.first_error {
                    eprintln!("  first error: {e}");
                }
                if op == Op::Put {
                    written = done;
                }
                rows.push(r);
            }
            if !args.keep && !written.is_empty() {
                let spec = PhaseSpec {
                    op: Op::Delete,
                    bucket: bucket.clone(),
                    size: 0,
                    payload: Bytes::new(),
                    payload_sha256: sigv4::EMPTY_SHA256.to_owned(),
                };
                let (r, _) = run_phase(&ctx, spec, &written, DELETE_CONCURRENCY, &[]).await;
                if let Some(e) = &r.first_error {
                    eprintln!(
                        "  clean-up: {} of {} deletes failed; first error: {e}",
                        r.errors, r.requested
                    );
                }
                if r.timed_out {
                    eprintln!(
                        "  clean-up: stopped at --max-seconds; {} of {} objects left in {bucket}",
                        r.requested - r.ok - r.errors,
                        r.requested
                    );
                }
            }
        }
    }
    if created && !args.keep {
        delete_bucket_patiently(&mut admin, &bucket).await;
    }
    meta.total_s = Some(round(t_all.elapsed().as_secs_f64(), 1));
    meta.loadavg_end = Some(procstat::loadavg());
    if !args.json_out.is_empty() {
        #[derive(Serialize)]
        struct Out<'a> {
            meta: &'a Meta,
            results: &'a [Row],
        }
        let text = serde_json::to_string_pretty(&Out {
            meta: &meta,
            results: &rows,
        })?;
        std::fs::write(&args.json_out, text + "\n")
            .with_context(|| format!("writing {}", args.json_out))?;
    }
    Ok(rows.iter().any(|r| r.errors > 0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3load: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(e) => {
            eprintln!("s3load: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(human(4096), "4KiB");
        assert_eq!(human(64 << 20), "64MiB");
        assert_eq!(human(1000), "1000B");
    }

    #[test]
    fn percentiles_like_python() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(pct(&v, 50.0), Some(2.5));
        assert!((pct(&v, 99.0).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(pct(&[7.0], 99.0), Some(7.0));
        assert_eq!(pct(&[], 50.0), None);
    }
}
