//! The `generate_podcast` job: runs the pipeline's stages with checkpoints.
//!
//! Every write that ends or advances a generation (a stage's checkpoint, the
//! finished episode, FAILED, CANCELLED) happens in one transaction that
//! first locks the podcast, then checks that this worker still holds the
//! job's lease (`FOR UPDATE` on the job, so it cannot change hands before the
//! commit), then writes: the lock order of [`crate::db`] (podcast before job),
//! the one `cancelGeneration`, `retryGeneration` and `deletePodcast` follow,
//! so a cancel racing a checkpoint waits instead of deadlocking. A worker
//! that lost its lease writes nothing, failures and cancellations included.
//! The transactions run through [`crate::db::retry::transaction!`].

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};

use super::episode::EpisodeAudio;
use super::{EpisodeMetadata, EventSink, Pipeline, Stage, StageContext, StageError, StageKind, Usage};
use crate::db::pool::run;
use crate::db::retry::transaction;
use crate::db::{DbPool, generation, podcasts as podcast_rows};
use crate::domain::{FailureCode, PodcastId, PodcastStatus, UserId};
use crate::jobs::queue;
use crate::jobs::{Failure, Job, JobContext, JobHandler, JobOutcome, StopReason};
use crate::progress::hub::Hub;
use crate::progress::{Event, EventKind, LibraryChange, LibraryNotice, NewEvent};

/// Job kind of a generation.
pub const JOB_KIND: &str = "generate_podcast";

/// Job payload: ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratePodcastPayload {
    /// The podcast to generate.
    pub podcast_id: PodcastId,
}

/// The unique key of a podcast's job: one active generation per podcast.
pub fn job_key(podcast: PodcastId) -> String {
    format!("podcast:{podcast}")
}

/// Runs generations.
pub struct GeneratePodcast {
    pool: DbPool,
    hub: Arc<Hub>,
    pipeline: Arc<Pipeline>,
}

impl GeneratePodcast {
    /// A handler running `pipeline`.
    pub fn new(pool: DbPool, hub: Arc<Hub>, pipeline: Arc<Pipeline>) -> Arc<Self> {
        Arc::new(Self { pool, hub, pipeline })
    }
}

/// Emits events of one podcast: append, then publish after the commit.
struct PodcastEvents {
    pool: DbPool,
    hub: Arc<Hub>,
    podcast: PodcastId,
}

#[async_trait::async_trait]
impl EventSink for PodcastEvents {
    async fn emit(&self, event: NewEvent) -> anyhow::Result<()> {
        let appended = run!(self.pool, anyhow::Error, async |conn| {
            Ok(crate::progress::append(conn, self.podcast, &event).await?)
        })?;
        if let Some(e) = appended {
            self.hub.publish(e);
        }
        Ok(())
    }

    async fn artifacts(&self, prefix: &str) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        let events = run!(self.pool, anyhow::Error, async |conn| {
            Ok(crate::progress::with_key_prefix(conn, self.podcast, prefix).await?)
        })?;
        Ok(events.into_iter().filter_map(|(k, e)| e.data.map(|d| (k, d))).collect())
    }
}

/// What a lease-checked write stores besides its event.
enum Extra<'a> {
    /// A finished stage's output.
    Checkpoint {
        stage: StageKind,
        output: &'a serde_json::Value,
        usage: &'a serde_json::Value,
        started_at: DateTime<Utc>,
    },
    /// The finished episode's fields, and its audio when it has some (its
    /// object is already in the media store).
    Episode {
        metadata: &'a EpisodeMetadata,
        previous: &'a podcast_rows::Podcast,
        usage: &'a serde_json::Value,
        audio: Option<&'a EpisodeAudio>,
    },
}

impl Extra<'_> {
    async fn write(&self, conn: &mut AsyncPgConnection, id: PodcastId) -> QueryResult<()> {
        match self {
            Self::Checkpoint {
                stage,
                output,
                usage,
                started_at,
            } => generation::insert_checkpoint(conn, id, *stage, output, usage, *started_at).await,
            Self::Episode {
                metadata,
                previous,
                usage,
                audio,
            } => {
                if let Some(a) = audio {
                    let row = crate::db::media::Media {
                        podcast_id: id,
                        kind: crate::db::media::EPISODE.to_owned(),
                        key: a.key.clone(),
                        mime_type: a.mime_type.clone(),
                        bytes: i64::try_from(a.bytes).unwrap_or(i64::MAX),
                        sha256: a.sha256.clone(),
                        duration_seconds: a.duration_seconds,
                        loudness_lufs: a.loudness_lufs,
                        true_peak_dbtp: a.true_peak_dbtp,
                        created_at: Utc::now(),
                    };
                    crate::db::media::upsert(conn, &row).await?;
                }
                let fields = generation::EpisodeFields {
                    title: metadata.title.as_deref().or(previous.title.as_deref()),
                    description: metadata.description.as_deref().or(previous.description.as_deref()),
                    tags: &metadata.tags,
                    show_notes: metadata.show_notes.as_deref(),
                    word_count: metadata.word_count,
                    estimated_duration_seconds: metadata.estimated_duration_seconds,
                    usage: Some(usage),
                    quality: metadata.quality.as_ref(),
                };
                generation::publish_episode(conn, id, &fields).await
            }
        }
    }
}

/// Outcome of a checkpoint or terminal write.
enum Written {
    /// Written (the event is `None` when a dedupe key had already been used).
    Done(Option<Event>),
    /// Nothing written: the lease is another worker's now, or the podcast was
    /// deleted (whose delete cancels the job too).
    LeaseLost,
}

/// The lease-checked preamble of every runner write, in the lock order of
/// [`crate::db`]: the podcast's row, then the job's. `Some(status)` while this
/// worker holds the lease; `None` when the podcast is gone or the lease was lost.
async fn lock_leased(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    job: uuid::Uuid,
    worker: uuid::Uuid,
) -> QueryResult<Option<PodcastStatus>> {
    let Some(status) = podcast_rows::lock(conn, podcast).await? else {
        return Ok(None);
    };
    Ok(queue::holds_lease(conn, job, worker).await?.then_some(status))
}

impl GeneratePodcast {
    fn library(&self, owner: UserId, podcast: PodcastId) {
        self.hub.publish_library(LibraryNotice {
            user: owner,
            podcast,
            change: LibraryChange::Updated,
        });
    }

    async fn load(
        &self,
        podcast: PodcastId,
    ) -> anyhow::Result<
        Option<(
            podcast_rows::Podcast,
            i32,
            HashMap<StageKind, (serde_json::Value, Usage)>,
        )>,
    > {
        let found = run!(self.pool, anyhow::Error, async |conn| {
            let Some(row) = podcast_rows::find(conn, podcast).await? else {
                return Ok(None);
            };
            let run = podcast_rows::generation_run(conn, podcast).await?;
            let stages = generation::checkpoints(conn, podcast).await?;
            Ok(Some((row, run, stages)))
        })?;
        let Some((row, run, stages)) = found else {
            return Ok(None);
        };
        let mut outputs = HashMap::new();
        for (stage, output, usage) in stages {
            outputs.insert(stage, (output, serde_json::from_value(usage).unwrap_or_default()));
        }
        Ok(Some((row, run, outputs)))
    }

    /// Appends `event` in a transaction that first checks the lease and then
    /// writes `extra` (a checkpoint row or the episode's fields).
    async fn write_leased(
        &self,
        job: &Job,
        ctx: &JobContext,
        podcast: PodcastId,
        event: NewEvent,
        extra: Extra<'_>,
    ) -> anyhow::Result<Written> {
        let worker = ctx.worker_id;
        let job_id = job.id;
        let written = run!(self.pool, anyhow::Error, async |conn| {
            Ok(transaction!(conn, diesel::result::Error, async |conn| {
                if lock_leased(conn, podcast, job_id, worker).await?.is_none() {
                    return Ok(Written::LeaseLost);
                }
                extra.write(conn, podcast).await?;
                Ok(Written::Done(crate::progress::append(conn, podcast, &event).await?))
            })?)
        })?;
        if let Written::Done(Some(e)) = &written {
            self.hub.publish(e.clone());
        }
        Ok(written)
    }

    /// Marks the podcast FAILED with `error`, under the lease; a podcast that
    /// already ended (cancelled meanwhile) keeps its state.
    async fn mark_failed(
        &self,
        lease: Lease,
        podcast: PodcastId,
        owner: UserId,
        run: i32,
        error: &StageError,
    ) -> anyhow::Result<Written> {
        let event = NewEvent::new(EventKind::Failed, format!("{}: {}", error.code, error.message))
            .status(PodcastStatus::Failed)
            .data(serde_json::json!({ "code": error.code.as_str(), "retryable": error.retryable }))
            .dedupe(format!("failed:{run}"));
        self.write_terminal(lease, podcast, owner, &event, Some(error)).await
    }

    /// Marks the podcast CANCELLED, under the lease.
    async fn mark_cancelled(
        &self,
        lease: Lease,
        podcast: PodcastId,
        owner: UserId,
        run: i32,
    ) -> anyhow::Result<Written> {
        let event = NewEvent::new(EventKind::Cancelled, "cancelled by its owner")
            .status(PodcastStatus::Cancelled)
            .dedupe(format!("cancelled:{run}"));
        self.write_terminal(lease, podcast, owner, &event, None).await
    }

    /// A terminal write: the podcast's `error` (when failing), then `event`,
    /// in one lease-checked transaction (podcast, then job), skipped when the
    /// podcast already reached a terminal state; then the event and a library
    /// change are published.
    async fn write_terminal(
        &self,
        lease: Lease,
        podcast: PodcastId,
        owner: UserId,
        event: &NewEvent,
        error: Option<&StageError>,
    ) -> anyhow::Result<Written> {
        let written = run!(self.pool, anyhow::Error, async |conn| {
            Ok(transaction!(conn, diesel::result::Error, async |conn| {
                match lock_leased(conn, podcast, lease.job, lease.worker).await? {
                    None => Ok(Written::LeaseLost),
                    Some(status) if status.is_terminal() => Ok(Written::Done(None)),
                    Some(_) => {
                        if let Some(e) = error {
                            generation::set_error(conn, podcast, e.code, &e.message, e.retryable).await?;
                        }
                        Ok(Written::Done(crate::progress::append(conn, podcast, event).await?))
                    }
                }
            })?)
        })?;
        if let Written::Done(e) = &written {
            if let Some(e) = e {
                self.hub.publish(e.clone());
            }
            self.library(owner, podcast);
        }
        Ok(written)
    }

    /// The outcome of an attempt asked to stop; a cancel is recorded first.
    async fn stop(&self, at: &Attempt<'_>) -> JobOutcome {
        if at.ctx.stop_reason() == Some(StopReason::Cancelled) {
            let lease = Lease::of(at.job, at.ctx);
            match self
                .mark_cancelled(lease, at.podcast.id, at.podcast.owner_id, at.run)
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    return JobOutcome::Retry {
                        error: e.into(),
                        after: None,
                    };
                }
            }
        }
        JobOutcome::Stopped
    }

    async fn generate(&self, job: &Job, ctx: &JobContext) -> anyhow::Result<JobOutcome> {
        let payload: GeneratePodcastPayload = serde_json::from_value(job.payload.clone())?;
        let id = payload.podcast_id;
        let Some((podcast, run, mut outputs)) = self.load(id).await? else {
            tracing::info!(podcast.id = %id, "podcast deleted; nothing to generate");
            return Ok(JobOutcome::Succeeded);
        };
        if podcast.status.is_terminal() {
            return Ok(JobOutcome::Succeeded);
        }
        let attempt = Attempt {
            job,
            ctx,
            events: PodcastEvents {
                pool: self.pool.clone(),
                hub: self.hub.clone(),
                podcast: id,
            },
            podcast,
            run,
        };
        for stage in &self.pipeline.stages {
            if outputs.contains_key(&stage.kind()) {
                continue;
            }
            if ctx.stop_reason().is_some() {
                return Ok(self.stop(&attempt).await);
            }
            match self.run_stage(&attempt, stage.as_ref(), &outputs).await? {
                StageEnd::Done(out) => {
                    outputs.insert(stage.kind(), (out.output, out.usage));
                }
                StageEnd::Over(outcome) => return Ok(outcome),
            }
        }
        // A cancel that raced the last stage's end still wins: the owner
        // asked before the episode was published.
        if ctx.stop_reason().is_some() {
            return Ok(self.stop(&attempt).await);
        }
        self.publish(&attempt, &outputs).await
    }

    /// Runs one stage: its STAGE_STARTED event, the stage itself (stopped at
    /// its next await by a cancel, a shutdown or a lost lease), then its
    /// checkpoint with STAGE_COMPLETED, or the failure's outcome.
    async fn run_stage(&self, at: &Attempt<'_>, stage: &dyn Stage, outputs: &Outputs) -> anyhow::Result<StageEnd> {
        let (kind, id, run) = (stage.kind(), at.podcast.id, at.run);
        let (start, end) = kind.progress_span();
        at.events
            .emit(
                NewEvent::new(EventKind::StageStarted, format!("{kind} started"))
                    .stage(kind)
                    .status(kind.status())
                    .progress(start)
                    .dedupe(format!("stage_started:{run}:{kind}")),
            )
            .await?;
        self.library(at.podcast.owner_id, id);
        let started_at: DateTime<Utc> = Utc::now();
        let previous: HashMap<StageKind, serde_json::Value> =
            outputs.iter().map(|(k, (v, _))| (*k, v.clone())).collect();
        let sctx = StageContext {
            podcast: &at.podcast,
            previous: &previous,
            stage: kind,
            events: &at.events,
            run,
            attempt: at.job.attempts,
        };
        let result = tokio::select! {
            r = stage.run(&sctx) => r,
            () = at.ctx.stopped() => return Ok(StageEnd::Over(self.stop(at).await)),
        };
        match result {
            Ok(out) => {
                let usage_json = serde_json::to_value(out.usage)?;
                let event = NewEvent::new(EventKind::StageCompleted, format!("{kind} completed"))
                    .stage(kind)
                    .progress(end)
                    .dedupe(format!("stage_completed:{run}:{kind}"));
                let extra = Extra::Checkpoint {
                    stage: kind,
                    output: &out.output,
                    usage: &usage_json,
                    started_at,
                };
                match self.write_leased(at.job, at.ctx, id, event, extra).await? {
                    Written::LeaseLost => Ok(StageEnd::Over(JobOutcome::Stopped)),
                    Written::Done(_) => Ok(StageEnd::Done(out)),
                }
            }
            Err(e) if e.retryable => Ok(StageEnd::Over(JobOutcome::Retry {
                after: e.retry_after,
                error: Failure::coded(e.code.as_str(), e.message),
            })),
            Err(e) => {
                let lease = Lease::of(at.job, at.ctx);
                match self.mark_failed(lease, id, at.podcast.owner_id, run, &e).await? {
                    Written::LeaseLost => Ok(StageEnd::Over(JobOutcome::Stopped)),
                    Written::Done(_) => Ok(StageEnd::Over(JobOutcome::Failed(Failure::coded(
                        e.code.as_str(),
                        e.message,
                    )))),
                }
            }
        }
    }

    /// All stages done: writes the episode's fields with COMPLETED, under the lease.
    async fn publish(&self, at: &Attempt<'_>, outputs: &Outputs) -> anyhow::Result<JobOutcome> {
        let metadata: EpisodeMetadata = outputs
            .get(&StageKind::Assembly)
            .and_then(|(v, _)| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let usage: HashMap<&str, Usage> = outputs.iter().map(|(kind, (_, u))| (kind.as_str(), *u)).collect();
        let usage = serde_json::to_value(usage)?;
        let event = NewEvent::new(EventKind::Completed, "the episode is ready")
            .status(PodcastStatus::Completed)
            .progress(1.0)
            .dedupe(format!("completed:{}", at.run));
        let audio: Option<EpisodeAudio> = match outputs.get(&StageKind::Synthesis) {
            Some((v, _)) => Some(serde_json::from_value(v.clone())?),
            None => None,
        };
        let extra = Extra::Episode {
            metadata: &metadata,
            previous: &at.podcast,
            usage: &usage,
            audio: audio.as_ref(),
        };
        if let Written::LeaseLost = self.write_leased(at.job, at.ctx, at.podcast.id, event, extra).await? {
            return Ok(JobOutcome::Stopped);
        }
        self.library(at.podcast.owner_id, at.podcast.id);
        Ok(JobOutcome::Succeeded)
    }
}

/// Finished stages: output and usage.
type Outputs = HashMap<StageKind, (serde_json::Value, Usage)>;

/// Whose lease a write checks: the job and the worker that claimed it.
#[derive(Debug, Clone, Copy)]
struct Lease {
    job: uuid::Uuid,
    worker: uuid::Uuid,
}

impl Lease {
    fn of(job: &Job, ctx: &JobContext) -> Self {
        Self {
            job: job.id,
            worker: ctx.worker_id,
        }
    }
}

/// One attempt at one podcast's generation.
struct Attempt<'a> {
    job: &'a Job,
    ctx: &'a JobContext,
    events: PodcastEvents,
    podcast: podcast_rows::Podcast,
    run: i32,
}

/// How a stage ended for the runner.
enum StageEnd {
    /// Checkpointed; go on with the next stage.
    Done(super::StageOutput),
    /// The attempt is over (stopped, failed, to be retried, or lease lost).
    Over(JobOutcome),
}

#[async_trait::async_trait]
impl JobHandler for GeneratePodcast {
    fn kind(&self) -> &'static str {
        JOB_KIND
    }

    async fn run(&self, job: &Job, ctx: JobContext) -> JobOutcome {
        match self.generate(job, &ctx).await {
            Ok(outcome) => outcome,
            // Database trouble and the like: worth another attempt.
            Err(error) => JobOutcome::Retry {
                error: error.into(),
                after: None,
            },
        }
    }

    async fn on_retry(&self, job: &Job, failure: &Failure, at: DateTime<Utc>) {
        let Ok(payload) = serde_json::from_value::<GeneratePodcastPayload>(job.payload.clone()) else {
            return;
        };
        let events = PodcastEvents {
            pool: self.pool.clone(),
            hub: self.hub.clone(),
            podcast: payload.podcast_id,
        };
        let delay_ms = (at - Utc::now()).num_milliseconds().max(0);
        let code = failure
            .code
            .as_deref()
            .unwrap_or(FailureCode::TemporaryFailure.as_str());
        let run: i32 = run!(self.pool, anyhow::Error, async |conn| {
            Ok(podcast_rows::generation_run(conn, payload.podcast_id).await?)
        })
        .unwrap_or(0);
        let event = NewEvent::new(
            EventKind::Retrying,
            format!(
                "attempt {} of {} failed ({code}); retrying in {} s",
                job.attempts,
                job.max_attempts,
                (delay_ms + 999) / 1000
            ),
        )
        .data(serde_json::json!({ "code": code, "delayMs": delay_ms, "attempt": job.attempts }))
        .dedupe(format!("job_retry:{run}:{}:{}", job.id, job.attempts));
        if let Err(e) = events.emit(event).await {
            tracing::warn!(error = %e, "recording a RETRYING event failed");
        }
    }

    async fn on_gave_up(&self, job: &Job, ctx: &JobContext, failure: &Failure) {
        let Ok(payload) = serde_json::from_value::<GeneratePodcastPayload>(job.payload.clone()) else {
            return;
        };
        let loaded = self.load(payload.podcast_id).await;
        let Ok(Some((podcast, run, _))) = loaded else { return };
        if podcast.status.is_terminal() {
            return;
        }
        let error = StageError {
            code: failure
                .code
                .as_deref()
                .and_then(|c| c.parse().ok())
                .unwrap_or(FailureCode::GenerationFailed),
            message: format!("gave up after {} attempts", job.attempts.min(job.max_attempts)),
            retryable: true,
            retry_after: None,
        };
        match self
            .mark_failed(Lease::of(job, ctx), podcast.id, podcast.owner_id, run, &error)
            .await
        {
            Ok(Written::Done(_)) => {}
            Ok(Written::LeaseLost) => tracing::warn!("lease lost before the podcast could be marked failed"),
            Err(e) => tracing::error!(error = %e, "marking the podcast failed did not work"),
        }
    }
}
