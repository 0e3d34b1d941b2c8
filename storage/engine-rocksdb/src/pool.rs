//! The bounded blocking pool: every RocksDB call and every plain-file syscall runs here, never on
//! a tokio worker thread. A semaphore bounds how many are queued or running at once so a burst of
//! requests waits instead of growing without limit.
//!
//! The pool keeps its own threads (at most [`POOL_THREADS_MAX`] per device) that take jobs from
//! one queue, instead of handing each job to tokio's blocking pool: under queue depth a busy
//! thread goes on to the next job without sleeping, where `spawn_blocking` woke (and put back to
//! sleep) a thread per job, and those context switches were a fifth of a 4 KiB read's CPU.
//! Threads hold no reference to the device, only to the queue, and leave after
//! [`POOL_THREAD_IDLE`] without work.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use cairn_engine::{Error, Result};
use tokio::sync::{Semaphore, oneshot};

use crate::limits::{BLOCKING_OPS_MAX, POOL_THREADS_MAX};

/// How long an idle pool thread waits for work before it exits.
const POOL_THREAD_IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock and the queue's fields change together: a panic cannot leave
        // it half-updated, so a poisoned lock is still consistent.
        match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct BlockingPool {
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.shared.lock();
        f.debug_struct("BlockingPool")
            .field("queued", &q.jobs.len())
            .field("threads", &q.threads)
            .field("idle", &q.idle)
            .finish()
    }
}

impl BlockingPool {
    pub(crate) fn new() -> BlockingPool {
        BlockingPool {
            permits: Arc::new(Semaphore::new(BLOCKING_OPS_MAX)),
            shared: Arc::new(Shared::default()),
        }
    }

    /// Runs `f` on a pool thread once a permit is free. A panic in `f` is resumed here.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Failed("blocking pool closed".into()))?;
        let (tx, rx) = oneshot::channel();
        // The permit goes with the job: a caller that stops waiting does not stop the job, so
        // the job must keep counting against the bound until it has run.
        self.submit(Box::new(move || {
            let _permit = permit;
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        }))?;
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(Error::Failed("blocking job dropped".into())),
        }
    }

    fn submit(&self, job: Job) -> Result<()> {
        let mut q = self.shared.lock();
        q.jobs.push_back(job);
        // `idle` counts threads already told to wake, too: wake one only if the idle threads
        // outnumber the queued jobs, otherwise start another thread (a job must not wait behind
        // a long one, say a compaction, while the pool may grow).
        if q.jobs.len() <= q.idle {
            drop(q);
            self.shared.work.notify_one();
            return Ok(());
        }
        if q.threads >= POOL_THREADS_MAX {
            // Every thread is busy; one takes the job when it finishes its own.
            return Ok(());
        }
        // Started under the lock, so a failure can still take this job back out.
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("cairn-engine-io".into())
            .spawn(move || serve(&shared));
        match spawned {
            Ok(_) => {
                q.threads += 1;
                Ok(())
            }
            // Other threads will run it: the job is queued, not failed.
            Err(_) if q.threads > 0 => Ok(()),
            Err(e) => {
                q.jobs.pop_back();
                Err(Error::Failed(format!("cannot start a pool thread: {e}")))
            }
        }
    }
}

/// A pool thread: runs queued jobs until it has been idle for [`POOL_THREAD_IDLE`].
fn serve(shared: &Shared) {
    let mut q = shared.lock();
    loop {
        if let Some(job) = q.jobs.pop_front() {
            drop(q);
            job();
            q = shared.lock();
            continue;
        }
        q.idle += 1;
        let (guard, timeout) = match shared.work.wait_timeout(q, POOL_THREAD_IDLE) {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        q = guard;
        q.idle -= 1;
        if timeout.timed_out() && q.jobs.is_empty() {
            q.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_many_jobs_on_a_bounded_number_of_threads() {
        let pool = BlockingPool::new();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..200u64).map(|i| {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(i * 2)
                })
                .await
            })
        });
        let mut sum = 0;
        for j in jobs.collect::<Vec<_>>() {
            sum += j.await.unwrap().unwrap();
        }
        assert_eq!(sum, (0..200u64).map(|i| i * 2).sum::<u64>());
        let most = most.load(Ordering::SeqCst);
        assert!((1..=POOL_THREADS_MAX).contains(&most), "{most} at once");
        assert!(pool.shared.lock().threads <= POOL_THREADS_MAX);
    }

    /// A job queued right behind a long one while the only thread is idle gets a thread of its
    /// own instead of waiting for the long one to end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_job_does_not_wait_behind_a_long_one() {
        let pool = BlockingPool::new();
        pool.run(|| Ok(())).await.unwrap();
        // Let the first thread go idle.
        for _ in 0..500 {
            if pool.shared.lock().idle == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(pool.shared.lock().idle, 1);
        // Back to back, as two requests arriving together: the idle thread is told to wake for
        // the first, and has not yet when the second comes.
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        pool.submit(Box::new(move || {
            std::thread::sleep(Duration::from_millis(500));
            let _ = tx.send("long");
        }))
        .unwrap();
        pool.submit(Box::new(move || {
            let _ = tx2.send("short");
        }))
        .unwrap();
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first, "short", "the short job waited for the long one");
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "long");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_panics_its_caller_and_the_pool_goes_on() {
        let pool = BlockingPool::new();
        let p = pool.clone();
        let failed =
            tokio::spawn(async move { p.run::<(), _>(|| panic!("job panicked on purpose")).await })
                .await;
        assert!(failed.unwrap_err().is_panic());
        assert_eq!(pool.run(|| Ok(7)).await.unwrap(), 7);
    }
}
