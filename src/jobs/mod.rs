//! A generic durable job queue on PostgreSQL and the workers that run it.
//!
//! Knows nothing of podcasts: a [`JobHandler`] registered for a job kind
//! does the work. The table protocol is in [`queue`]; [`Workers`] claims jobs,
//! keeps their leases alive, catches panics, retries with growing backoff and
//! hands jobs back on shutdown.

pub mod queue;
mod worker;

use std::time::Duration;

pub use queue::{Job, NewJob};
pub use worker::{JobContext, StopReason, WorkerConfig, Workers};

/// How a handler's run ended.
#[derive(Debug)]
pub enum JobOutcome {
    /// Done.
    Succeeded,
    /// Stopped because [`JobContext::stop_reason`] said so (owner's cancel,
    /// shutdown or a lost lease); the worker acts on the reason.
    Stopped,
    /// Failed; worth another attempt (after backoff, or `after` if given).
    Retry {
        /// What went wrong (stored in `last_error`, logged).
        error: anyhow::Error,
        /// A delay the failure itself asks for (e.g. a provider's Retry-After).
        after: Option<Duration>,
    },
    /// Failed for good; the handler has already recorded why.
    Failed(anyhow::Error),
}

/// Runs jobs of one kind.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `kind` this handler runs (stable: it is stored in rows).
    fn kind(&self) -> &'static str;

    /// Runs one attempt. Long work should watch `ctx` (cancellation) at safe points.
    async fn run(&self, job: &Job, ctx: JobContext) -> JobOutcome;

    /// The queue will run the job again at `at` after `error` (attempt
    /// `job.attempts` of `job.max_attempts` failed).
    async fn on_retry(&self, job: &Job, error: &str, at: chrono::DateTime<chrono::Utc>);

    /// The queue gave up on the job (attempts exhausted, or a worker kept
    /// dying), for a reason the handler has not recorded itself.
    async fn on_gave_up(&self, job: &Job, reason: &str);
}
