//! Where password hashes run: a small pool of dedicated threads, admitted by
//! a memory budget.
//!
//! Argon2id allocates its whole memory cost (19 MiB by default) for every
//! hash. On tokio's blocking pool, which starts a thread per waiting task up
//! to 512, a flood of sign-ins ran dozens of hashes at once; glibc gives each
//! new thread its own malloc arena and keeps what a thread freed there, so a
//! burst of 64 sign-ins grew the process by over a gigabyte that it never
//! returned (measured in `docs/BENCHMARKS.md`, `scripts/bench-signin.sh`).
//!
//! Here a hash first takes its memory cost from a semaphore holding the
//! budget (`PODFORGE_HASH_MEMORY_BUDGET_MIB`), so that memory cost × hashes
//! running ≤ budget and a flood waits in line (a few hundred bytes per
//! waiting request) instead of allocating; then it runs on one of
//! `budget / memory cost` threads started with the process, whose arenas are
//! reused hash after hash. Hashing is CPU-bound, so running more at once than
//! there are cores gains nothing anyway.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use crate::error::{ApiError, ApiResult};

/// The most hashing threads, whatever the budget.
pub const MAX_THREADS: usize = 32;

/// How long a hash may wait for room in the budget before the request is
/// answered UNAVAILABLE.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

/// The hashing pool of one process (see the module docs).
pub struct Hasher {
    /// The budget, one permit per KiB.
    budget: Arc<Semaphore>,
    budget_kib: u32,
    threads: usize,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("budget_kib", &self.budget_kib)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Threads for a budget: as many hashes of `memory_kib` as fit, at least one,
/// at most [`MAX_THREADS`].
pub fn threads_for(budget_kib: u32, memory_kib: u32) -> usize {
    (budget_kib / memory_kib.max(1)).clamp(1, MAX_THREADS as u32) as usize
}

impl Hasher {
    /// A pool admitting hashes within `budget_kib` of memory, with threads
    /// for as many hashes of `memory_kib` (the configured cost) as fit. A
    /// budget below one hash still admits one at a time.
    ///
    /// Errors: when a thread cannot be started.
    pub fn new(budget_kib: u32, memory_kib: u32) -> anyhow::Result<Self> {
        let budget_kib = budget_kib.max(memory_kib).max(1);
        let threads = threads_for(budget_kib, memory_kib);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("podforge-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the Hasher was dropped
                        }
                    }
                })?;
        }
        Ok(Self {
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
            threads,
            jobs: Mutex::new(tx),
        })
    }

    /// Hashing threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// KiB of the budget not taken by running or queued hashes.
    pub fn available_kib(&self) -> usize {
        self.budget.available_permits()
    }

    /// Runs `work`, which needs `memory_kib` of memory, once the budget has
    /// room for it, on a hashing thread.
    ///
    /// Errors: UNAVAILABLE after [`QUEUE_TIMEOUT`] without room; INTERNAL if
    /// the pool is gone or `work` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        memory_kib: u32,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permits = memory_kib.clamp(1, self.budget_kib);
        let permit = tokio::time::timeout(QUEUE_TIMEOUT, self.budget.clone().acquire_many_owned(permits))
            .await
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("password hashing is saturated")))?
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing budget closed: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            // Released before the caller hears of the result, so a caller
            // that goes on to hash again finds the budget whole.
            drop(permit);
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the hashing threads are gone")))?;
        rx.await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("a password hash panicked")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn threads_follow_the_budget() {
        assert_eq!(threads_for(64 * 1024, 19_456), 3);
        assert_eq!(threads_for(1024, 19_456), 1, "at least one");
        assert_eq!(threads_for(1 << 30, 1024), MAX_THREADS);
    }

    #[tokio::test]
    async fn no_more_hashes_run_at_once_than_the_budget_holds() {
        // Room for two hashes of 10 MiB.
        let hasher = Arc::new(Hasher::new(20 * 1024, 10 * 1024).unwrap());
        assert_eq!(hasher.threads(), 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (hasher, running, peak) = (hasher.clone(), running.clone(), peak.clone());
            tasks.spawn(async move {
                hasher
                    .run(10 * 1024, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(15));
                        running.fetch_sub(1, Ordering::SeqCst);
                        std::thread::current().name().unwrap_or_default().to_owned()
                    })
                    .await
                    .unwrap()
            });
        }
        let mut names = std::collections::HashSet::new();
        while let Some(name) = tasks.join_next().await {
            names.insert(name.unwrap());
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "the budget bounds concurrency");
        assert!(names.iter().all(|n| n.starts_with("podforge-hash-")), "{names:?}");
        assert_eq!(hasher.available_kib(), 20 * 1024, "every permit returned");
        // A hash costing more than the whole budget still runs (alone).
        assert_eq!(hasher.run(1 << 20, || 7).await.unwrap(), 7);
    }
}
