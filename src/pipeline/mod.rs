//! The generation pipeline: stages behind a trait, and the runner that
//! checkpoints them.
//!
//! A generation runs four stages in order: research, outline, script,
//! assembly. Each stage's output is stored (`podcast_stages`) in the same
//! transaction as its STAGE_COMPLETED event, before the next stage starts; a
//! resumed job (after a crash, a deploy or a retry) skips finished stages, and
//! a failing stage leaves earlier outputs intact. Stages report partial
//! results as ARTIFACT events with dedupe keys, which also lets a resumed
//! stage pick up its own finished parts.

pub mod episode;
pub mod finish;
pub mod grounding;
pub mod prompts;
pub mod quality;
pub mod runner;
pub mod schemas;
pub mod stages;
pub mod structured;
pub mod text;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::podcasts::Podcast;
use crate::domain::FailureCode;
pub use crate::domain::StageKind;
use crate::progress::{EventKind, NewEvent};

pub use runner::{GeneratePodcast, JOB_KIND};

/// Provider usage of one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Provider calls made.
    pub calls: u32,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Time spent in provider calls, milliseconds.
    pub latency_ms: u64,
}

impl Usage {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: Usage) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.latency_ms += other.latency_ms;
    }
}

/// What a finished stage hands the runner to store.
#[derive(Debug, Clone)]
pub struct StageOutput {
    /// The checkpoint (the stage's typed output as JSON).
    pub output: serde_json::Value,
    /// Provider usage.
    pub usage: Usage,
}

/// Why a stage failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    /// Stable code shown to the user, e.g. `PROVIDER_UNAVAILABLE`, `SCRIPT_INVALID`.
    pub code: FailureCode,
    /// Human-readable explanation (no secrets, no prompts).
    pub message: String,
    /// Whether running the stage again may succeed.
    pub retryable: bool,
    /// A delay the failure asks for before retrying (Retry-After).
    pub retry_after: Option<Duration>,
}

impl StageError {
    /// A failure that another attempt will not fix.
    pub fn fatal(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that another attempt may fix.
    pub fn retryable(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for StageError {}

/// Writes progress events for a running stage.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Appends `event` (skipped when its dedupe key was already used) and
    /// publishes it.
    async fn emit(&self, event: NewEvent) -> anyhow::Result<()>;

    /// Data of this stage's ARTIFACT events stored under keys starting with
    /// `prefix` (a resumed stage reuses its finished parts).
    async fn artifacts(&self, prefix: &str) -> anyhow::Result<Vec<(String, serde_json::Value)>>;
}

/// Everything a stage may use.
pub struct StageContext<'a> {
    /// The podcast being generated (the request settings are on it).
    pub podcast: &'a Podcast,
    /// Outputs of the stages already finished.
    pub previous: &'a HashMap<StageKind, serde_json::Value>,
    /// The stage running.
    pub stage: StageKind,
    /// Progress events.
    pub events: &'a dyn EventSink,
    /// The generation run (incremented by retryGeneration), for dedupe keys.
    pub run: i32,
    /// The job attempt running the stage, for dedupe keys of retries.
    pub attempt: i32,
}

impl StageContext<'_> {
    /// Overall progress for `fraction` (0 to 1) of this stage.
    pub fn progress_at(&self, fraction: f32) -> f32 {
        let (start, end) = self.stage.progress_span();
        start + (end - start) * fraction.clamp(0.0, 1.0)
    }

    /// Publishes a partial result once per `key` (e.g. `segment:3`).
    pub async fn artifact(
        &self,
        key: &str,
        message: &str,
        data: serde_json::Value,
        fraction: f32,
    ) -> anyhow::Result<()> {
        self.events
            .emit(
                NewEvent::new(EventKind::Artifact, message)
                    .stage(self.stage)
                    .data(data)
                    .progress(self.progress_at(fraction))
                    .dedupe(format!("artifact:{}:{}:{key}", self.run, self.stage.as_str())),
            )
            .await
    }

    /// This run's artifacts of this stage, keyed by the `key` given to [`Self::artifact`].
    pub async fn finished_artifacts(&self) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        let prefix = format!("artifact:{}:{}:", self.run, self.stage.as_str());
        Ok(self
            .events
            .artifacts(&prefix)
            .await?
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_owned(), v))
            .collect())
    }

    /// Reports a warning (once per `key`).
    pub async fn warn(&self, key: &str, code: &str, message: impl Into<String>) -> anyhow::Result<()> {
        self.events
            .emit(
                NewEvent::new(EventKind::Warning, message)
                    .stage(self.stage)
                    .data(serde_json::json!({ "code": code }))
                    .dedupe(format!("warning:{}:{}:{key}", self.run, self.stage.as_str())),
            )
            .await
    }

    /// Reports that a provider call will be retried after `delay`.
    pub async fn retrying(&self, key: &str, message: impl Into<String>, delay: Duration) -> anyhow::Result<()> {
        self.events
            .emit(
                NewEvent::new(EventKind::Retrying, message)
                    .stage(self.stage)
                    .data(serde_json::json!({ "delayMs": delay.as_millis() as u64 }))
                    .dedupe(format!("retrying:{}:{}:{key}", self.run, self.stage.as_str())),
            )
            .await
    }
}

/// One stage of the pipeline.
#[async_trait::async_trait]
pub trait Stage: Send + Sync {
    /// Which stage this is.
    fn kind(&self) -> StageKind;

    /// Produces the stage's output. Must be safe to drop at any await (a
    /// cancel stops it there); durable writes go through `ctx.events` only.
    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError>;
}

/// The stages a generation runs, in order.
#[derive(Clone)]
pub struct Pipeline {
    /// One per [`StageKind`], in order.
    pub stages: Vec<Arc<dyn Stage>>,
    /// The language model the stages use, if any (for names and live stats).
    pub llm: Option<Arc<dyn crate::providers::LanguageModel>>,
    /// Why generations cannot run (`(code, message)`), when no model is usable.
    pub unavailable: Option<(FailureCode, String)>,
}

impl Pipeline {
    /// Completion tokens the language model has generated in this process,
    /// when it counts them (the local model does).
    pub fn tokens_generated(&self) -> Option<u64> {
        self.llm.as_ref().and_then(|m| m.tokens_generated())
    }

    /// The language model's name.
    pub fn model_name(&self) -> Option<String> {
        self.llm.as_ref().map(|m| m.name().to_owned())
    }

    /// A pipeline whose every stage fails with PROVIDER_NOT_CONFIGURED: the
    /// service never invents content when no language model is available.
    pub fn unconfigured() -> Self {
        Self::unavailable(
            FailureCode::ProviderNotConfigured,
            "no language model is configured: set OPENAI_API_KEY (or OPENAI_BASE_URL), or PODFORGE_LLM=local with a fetched model",
        )
    }

    /// A pipeline whose every stage fails with `code` and `message` (no
    /// usable language model), so nothing is ever invented.
    pub fn unavailable(code: FailureCode, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self {
            stages: StageKind::ALL
                .iter()
                .map(|k| Arc::new(Unconfigured(*k, code, message.clone())) as Arc<dyn Stage>)
                .collect(),
            llm: None,
            unavailable: Some((code, message)),
        }
    }
}

struct Unconfigured(StageKind, FailureCode, String);

#[async_trait::async_trait]
impl Stage for Unconfigured {
    fn kind(&self) -> StageKind {
        self.0
    }

    async fn run(&self, _ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        Err(StageError::fatal(self.1, self.2.clone()))
    }
}

/// Fields the last stage may set on the podcast (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeMetadata {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Show notes, Markdown.
    pub show_notes: Option<String>,
    /// Words in the script.
    pub word_count: Option<i32>,
    /// Estimated length, seconds.
    pub estimated_duration_seconds: Option<i32>,
    /// The quality report ([`quality::QualityReport`] as JSON).
    pub quality: Option<serde_json::Value>,
}
