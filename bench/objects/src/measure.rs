//! Closed-loop load: `concurrency` workers take operation indices from a shared counter until
//! `ops` have been issued, each timing its own operations. Async workers are tokio tasks;
//! blocking workers (the filesystem baseline) are OS threads. A phase also stops issuing new
//! operations once `limit` has passed (every operation already issued completes), so the slow
//! rows stay within the run's time budget; the indices run are always `0..sample.ops`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// How much load one phase offers: at most `ops` operations from `conc` workers, issued for at
/// most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub ops: usize,
    pub conc: usize,
    pub limit: Duration,
}

/// What one phase (one system, one operation, one size, one concurrency) measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ops: usize,
    pub bytes_per_op: usize,
    pub wall: Duration,
    /// Sorted ascending.
    pub latencies: Vec<Duration>,
}

impl Sample {
    fn new(bytes_per_op: usize, wall: Duration, mut latencies: Vec<Duration>) -> Sample {
        latencies.sort_unstable();
        Sample {
            ops: latencies.len(),
            bytes_per_op,
            wall,
            latencies,
        }
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn mib_per_s(&self) -> f64 {
        self.ops_per_s() * self.bytes_per_op as f64 / (1024.0 * 1024.0)
    }

    /// Nearest-rank percentile in milliseconds.
    pub fn percentile_ms(&self, p: usize) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (p * self.latencies.len()).div_ceil(100);
        let idx = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[idx].as_secs_f64() * 1e3
    }
}

/// Runs `op(worker, index)` for every index in `0..ops` on `concurrency` tokio tasks.
pub async fn run_async<F, Fut>(
    ops: usize,
    concurrency: usize,
    bytes_per_op: usize,
    limit: Duration,
    op: F,
) -> Result<Sample>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = op.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(ops / concurrency.max(1) + 1);
            // Bounded: every iteration takes a fresh index and stops once `ops` are issued.
            loop {
                if Instant::now() >= deadline {
                    return Ok(lat);
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                op(worker, i)
                    .await
                    .with_context(|| format!("operation {i}"))?;
                lat.push(t.elapsed());
            }
        });
    }
    let mut all = Vec::with_capacity(ops);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.map_err(|e| anyhow!("worker task failed: {e}"))??);
    }
    Ok(Sample::new(bytes_per_op, start.elapsed(), all))
}

/// Runs `op(index)` for every index in `0..ops` on `concurrency` OS threads.
pub fn run_threads<F>(
    ops: usize,
    concurrency: usize,
    bytes_per_op: usize,
    limit: Duration,
    op: F,
) -> Result<Sample>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let deadline = start + limit;
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::with_capacity(ops / concurrency.max(1) + 1);
                    loop {
                        if Instant::now() >= deadline {
                            return Ok(lat);
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ops {
                            return Ok(lat);
                        }
                        let t = Instant::now();
                        op(i).with_context(|| format!("operation {i}"))?;
                        lat.push(t.elapsed());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("worker thread panicked")))
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut all = Vec::with_capacity(ops);
    for r in results {
        all.extend(r?);
    }
    Ok(Sample::new(bytes_per_op, wall, all))
}
