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

/// Why an attempt failed, as stored in `jobs.last_error` and
/// `jobs.last_error_code`: a stable code when the handler knows one (the
/// queue does not interpret it), and the text for people and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The handler's stable code, e.g. `PROVIDER_UNAVAILABLE`.
    pub code: Option<String>,
    /// What went wrong, with its causes (`{error:#}`).
    pub message: String,
}

impl Failure {
    /// A failure without a code.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
        }
    }

    /// A failure with a stable code.
    pub fn coded(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::new(format!("{error:#}"))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

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
        /// What went wrong (stored in `last_error` and `last_error_code`, logged).
        error: Failure,
        /// A delay the failure itself asks for (e.g. a provider's Retry-After).
        after: Option<Duration>,
    },
    /// Failed for good; the handler has already recorded why.
    Failed(Failure),
}

/// Runs jobs of one kind.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `kind` this handler runs (stable: it is stored in rows).
    fn kind(&self) -> &'static str;

    /// Runs one attempt. Long work should watch `ctx` (cancellation) at safe points.
    async fn run(&self, job: &Job, ctx: JobContext) -> JobOutcome;

    /// The queue will run the job again at `at` after `failure` (attempt
    /// `job.attempts` of `job.max_attempts` failed).
    async fn on_retry(&self, job: &Job, failure: &Failure, at: chrono::DateTime<chrono::Utc>);

    /// The queue is giving up on the job (attempts exhausted, or a worker
    /// kept dying), for a reason the handler has not recorded itself;
    /// `failure` is the last attempt's (its code kept, its message prefixed
    /// with how many attempts were made). Called while this worker
    /// (`ctx.worker_id`) still holds the lease, just before the job is marked
    /// failed: check it ([`queue::holds_lease`]) in the transaction that
    /// records the failure, so a worker that lost the job records nothing.
    async fn on_gave_up(&self, job: &Job, ctx: &JobContext, failure: &Failure);
}
