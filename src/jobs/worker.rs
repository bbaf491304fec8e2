//! Worker slots: claim, heartbeat, run, finish.
//!
//! Each of `concurrency` slots loops: claim a job (or wait for a wake-up, a
//! poll tick or shutdown), run it on its own task so a panic is caught as a
//! failed attempt, renew the lease every third of its length meanwhile, then
//! record the outcome, conditional on still owning the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::queue::{self, Finish, Job};
use super::{Failure, JobHandler, JobOutcome};
use crate::backoff::Backoff;
use crate::db::DbPool;
use crate::db::pool::run;

/// Waits of a slot whose claims fail (the database is down): 200 ms growing
/// to 5 s, jittered so the slots of many processes do not return together.
const CLAIM_BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(200), Duration::from_secs(5));

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How long shutdown waits for running jobs to reach a safe point.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Why a running job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its owner cancelled it.
    Cancelled,
    /// The process is shutting down; the job is handed back and resumes elsewhere.
    Shutdown,
    /// The lease expired and another worker may have the job now.
    LeaseLost,
}

/// What a handler gets besides the job.
#[derive(Clone)]
pub struct JobContext {
    /// The worker's id (the lease owner), for [`queue::holds_lease`] checks.
    pub worker_id: Uuid,
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl JobContext {
    /// Resolves when the job should stop; see [`Self::stop_reason`].
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Why the job should stop, or `None` while it may go on.
    pub fn stop_reason(&self) -> Option<StopReason> {
        if self.token.is_cancelled() {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            None
        }
    }

    fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        // The first reason wins: a cancel that races a shutdown stays a cancel.
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.token.cancel();
    }
}

/// The worker pool of one process.
pub struct Workers {
    /// This process's lease-owner id.
    pub id: Uuid,
    pool: DbPool,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    running: Mutex<HashMap<Uuid, JobContext>>,
}

impl Workers {
    /// A pool running `handlers`. Nothing runs until [`Self::run`].
    pub fn new(pool: DbPool, handlers: Vec<Arc<dyn JobHandler>>, config: WorkerConfig) -> Arc<Self> {
        Arc::new(Self {
            id: Uuid::now_v7(),
            pool,
            handlers: handlers.into_iter().map(|h| (h.kind(), h)).collect(),
            config,
            wake: Arc::new(Notify::new()),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Wakes idle slots (a job was enqueued).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Asks the job `id`, if it runs here, to stop for its owner.
    pub fn cancel_local(&self, id: Uuid) {
        if let Some(ctx) = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            ctx.stop(StopReason::Cancelled);
        }
    }

    /// Runs the slots until `shutdown`; then asks running jobs to stop and
    /// waits up to the grace period for them to hand back their leases.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.config.concurrency {
            let me = self.clone();
            let shutdown = shutdown.clone();
            slots.spawn(async move { me.slot(slot, shutdown).await });
        }
        shutdown.cancelled().await;
        for ctx in self.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
            ctx.stop(StopReason::Shutdown);
        }
        if tokio::time::timeout(self.config.shutdown_grace, async {
            while slots.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("jobs did not stop within the grace period; their leases will expire");
            slots.abort_all();
        }
    }

    async fn slot(self: Arc<Self>, slot: usize, shutdown: CancellationToken) {
        let kinds: Vec<String> = self.handlers.keys().map(|k| (*k).to_owned()).collect();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            // Register for wake-ups before looking, so an enqueue between the
            // claim and the wait is not missed.
            let notified = self.wake.notified();
            let claimed = run!(self.pool, anyhow::Error, async |conn| {
                Ok(queue::claim(conn, self.id, &kinds, self.config.lease).await?)
            });
            match claimed {
                Ok(Some(job)) => {
                    failures = 0;
                    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts, worker.slot = slot);
                    self.execute(job).instrument(span).await;
                }
                Ok(None) => {
                    failures = 0;
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    // Database down: back off, keep trying.
                    failures += 1;
                    let delay = CLAIM_BACKOFF.delay(failures);
                    tracing::warn!(error = %e, "claiming a job failed; retrying in {delay:?}");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    async fn execute(&self, job: Job) {
        let Some(handler) = self.handlers.get(job.kind.as_str()).cloned() else {
            return;
        };
        if job.attempts > job.max_attempts {
            // Claimed again after its last attempt's worker died.
            let failure = Failure {
                code: job.last_error_code.clone(),
                message: format!(
                    "gave up after {} attempts; last error: {}",
                    job.max_attempts,
                    job.last_error.as_deref().unwrap_or("the worker stopped responding")
                ),
            };
            tracing::error!(reason = %failure, "job failed");
            // Recorded under the lease just claimed, then the job is finished.
            handler.on_gave_up(&job, &self.context(), &failure).await;
            self.record(&job, Record::Finish(Finish::Failed, Some(&failure))).await;
            return;
        }
        let started = std::time::Instant::now();
        let (outcome, ctx) = self.attempt(&handler, &job).await;
        self.settle(&handler, &job, &ctx, outcome, started.elapsed().as_millis() as u64)
            .await;
    }

    /// A fresh context for a job this worker holds.
    fn context(&self) -> JobContext {
        JobContext {
            worker_id: self.id,
            token: CancellationToken::new(),
            reason: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs one attempt on its own task (a panic is caught as a failed
    /// attempt) with the lease renewed meanwhile.
    async fn attempt(&self, handler: &Arc<dyn JobHandler>, job: &Job) -> (JobOutcome, JobContext) {
        let ctx = self.context();
        if job.cancel_requested {
            ctx.stop(StopReason::Cancelled);
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id, ctx.clone());
        let heartbeat = tokio::spawn(heartbeat(
            self.pool.clone(),
            job.id,
            self.id,
            self.config.lease,
            ctx.clone(),
        ));

        let run = {
            let (handler, job, ctx) = (handler.clone(), job.clone(), ctx.clone());
            tokio::spawn(async move { handler.run(&job, ctx).await }.in_current_span())
        };
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => {
                let message = e
                    .into_panic()
                    .downcast::<String>()
                    .map(|s| *s)
                    .or_else(|p| p.downcast::<&'static str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|_| "unknown panic".to_owned());
                JobOutcome::Retry {
                    error: Failure::new(format!("the job panicked: {message}")),
                    after: None,
                }
            }
            Err(e) => JobOutcome::Retry {
                error: Failure::new(format!("the job task was aborted: {e}")),
                after: None,
            },
        };
        heartbeat.abort();
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job.id);

        (outcome, ctx)
    }

    /// Records how an attempt ended: success, cancel, hand-back, a retry
    /// after backoff (or the failure's own delay), or failure for good.
    async fn settle(
        &self,
        handler: &Arc<dyn JobHandler>,
        job: &Job,
        ctx: &JobContext,
        outcome: JobOutcome,
        duration_ms: u64,
    ) {
        match outcome {
            JobOutcome::Succeeded => {
                if self.record(job, Record::Finish(Finish::Succeeded, None)).await {
                    tracing::info!(duration_ms, "job succeeded");
                }
            }
            JobOutcome::Stopped => match ctx.stop_reason() {
                Some(StopReason::Cancelled) => {
                    self.record(job, Record::Finish(Finish::Cancelled, None)).await;
                    tracing::info!(duration_ms, "job cancelled");
                }
                Some(StopReason::Shutdown) | None => {
                    self.record(job, Record::Release).await;
                    tracing::info!(duration_ms, "job handed back for shutdown");
                }
                Some(StopReason::LeaseLost) => tracing::warn!("job stopped: lease lost"),
            },
            JobOutcome::Retry { error, after } => {
                if job.attempts >= job.max_attempts {
                    tracing::error!(error = %error, duration_ms, "job failed for good");
                    let failure = Failure {
                        message: format!("gave up after {} attempts: {}", job.attempts, error.message),
                        code: error.code,
                    };
                    // Recorded while the lease is still ours, then the job is finished.
                    handler.on_gave_up(job, ctx, &failure).await;
                    self.record(job, Record::Finish(Finish::Failed, Some(&failure))).await;
                } else {
                    let schedule = Backoff::doubling(self.config.backoff_base, self.config.backoff_max);
                    let delay = after.unwrap_or_else(|| schedule.delay(u32::try_from(job.attempts).unwrap_or(1)));
                    let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "job attempt failed; retrying");
                    if self.record(job, Record::RetryAt(at, &error)).await {
                        handler.on_retry(job, &error, at).await;
                    }
                }
            }
            JobOutcome::Failed(error) => {
                tracing::warn!(error = %error, duration_ms, "job failed");
                self.record(job, Record::Finish(Finish::Failed, Some(&error))).await;
            }
        }
    }

    /// Runs one lease-conditional write; false (and a log line) when the lease
    /// was lost or the database failed.
    async fn record(&self, job: &Job, action: Record<'_>) -> bool {
        let result = run!(self.pool, anyhow::Error, async |c| {
            Ok(match action {
                Record::Finish(how, error) => queue::finish(c, job.id, self.id, how, error).await,
                Record::RetryAt(at, error) => queue::retry_at(c, job.id, self.id, at, error).await,
                Record::Release => queue::release(c, job.id, self.id).await,
            }?)
        });
        match result {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!("the job's lease was lost; another worker owns it");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "recording the job's outcome failed; its lease will expire");
                false
            }
        }
    }
}

/// A lease-conditional write of a job's outcome.
enum Record<'a> {
    Finish(Finish, Option<&'a Failure>),
    RetryAt(chrono::DateTime<chrono::Utc>, &'a Failure),
    Release,
}

/// Renews the lease every third of its length until aborted; stops the job
/// when the lease is lost or its owner asked to cancel.
async fn heartbeat(pool: DbPool, job: Uuid, worker: Uuid, lease: Duration, ctx: JobContext) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let result = run!(pool, anyhow::Error, async |conn| {
            Ok(queue::heartbeat(conn, job, worker, lease).await?)
        });
        match result {
            Ok(Some(false)) => {}
            Ok(Some(true)) => ctx.stop(StopReason::Cancelled),
            Ok(None) => {
                ctx.stop(StopReason::LeaseLost);
                return;
            }
            // A missed beat is fine; the lease has two more before it expires.
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
    }
}
