//! The five real stages and what they share: the providers, the request's
//! settings, and choosing source passages within a token budget.

pub mod assembly;
pub mod outline;
pub mod research;
pub mod script;
pub mod synthesis;

use std::sync::Arc;

use serde::Serialize;

use super::episode::{Research, Source};
use super::{Pipeline, Stage, StageContext, StageError, StageKind};
use crate::domain::FailureCode;
use crate::domain::{Host, PodcastFormat};
use crate::providers::{LanguageModel, ResearchProvider};
use crate::sources::{self, FetchLimits};

/// What the stages call out to.
#[derive(Clone)]
pub struct Providers {
    /// The language model (required for outline, script and assembly).
    pub llm: Option<Arc<dyn LanguageModel>>,
    /// Web research; without it, research uses only the user's sources.
    pub research: Option<Arc<dyn ResearchProvider>>,
    /// Limits for fetching user URLs.
    pub fetch: FetchLimits,
    /// Segments written at once.
    pub script_concurrency: usize,
    /// Speech and media storage; without them episodes end at the script
    /// (no synthesis stage).
    pub audio: Option<synthesis::Audio>,
}

impl Pipeline {
    /// The real pipeline over `providers`: research, outline, script,
    /// assembly, and synthesis when `providers.audio` is set.
    pub fn standard(providers: Providers) -> Self {
        let llm = providers.llm.clone();
        let audio = providers.audio.clone();
        let p = Arc::new(providers);
        let mut stages = vec![
            Arc::new(research::ResearchStage(p.clone())) as Arc<dyn Stage>,
            Arc::new(outline::OutlineStage(p.clone())),
            Arc::new(script::ScriptStage(p.clone())),
            Arc::new(assembly::AssemblyStage(p)),
        ];
        if let Some(audio) = audio {
            stages.push(Arc::new(synthesis::SynthesisStage(Arc::new(audio))));
        }
        Self {
            llm,
            unavailable: None,
            stages,
        }
    }
}

impl Providers {
    /// The language model, or PROVIDER_NOT_CONFIGURED.
    pub fn llm(&self) -> Result<&Arc<dyn LanguageModel>, StageError> {
        self.llm.as_ref().ok_or_else(|| {
            StageError::fatal(
                FailureCode::ProviderNotConfigured,
                "no language model is configured: set OPENAI_API_KEY (or OPENAI_BASE_URL), or fetch the local model",
            )
        })
    }
}

/// How each format should sound, for prompts.
pub fn format_guidance(format: PodcastFormat) -> &'static str {
    match format {
        PodcastFormat::DeepDive => {
            "the hosts explore the topic in depth, one explaining and the others questioning, connecting ideas and examples"
        }
        PodcastFormat::Brief => "a short, brisk summary of the essentials, no digressions",
        PodcastFormat::Interview => {
            "the first host interviews the others as experts, asking open questions and follow-ups"
        }
        PodcastFormat::Debate => "the hosts take opposing positions, argue them with evidence, then weigh them fairly",
        PodcastFormat::Monologue => "a single host speaks directly to the listener, like a well-told lecture",
        PodcastFormat::Narrative => {
            "the story is told in scenes, with tension and resolution, the hosts narrating in turn"
        }
    }
}

/// Human name of a format.
pub fn format_name(format: PodcastFormat) -> &'static str {
    match format {
        PodcastFormat::DeepDive => "deep dive",
        PodcastFormat::Brief => "brief",
        PodcastFormat::Interview => "interview",
        PodcastFormat::Debate => "debate",
        PodcastFormat::Monologue => "monologue",
        PodcastFormat::Narrative => "narrative",
    }
}

/// The request's hosts.
pub fn hosts(ctx: &StageContext<'_>) -> Vec<Host> {
    serde_json::from_value(ctx.podcast.hosts.clone()).unwrap_or_default()
}

/// A stage's previous output, typed.
pub fn previous<T: serde::de::DeserializeOwned>(ctx: &StageContext<'_>, kind: StageKind) -> Result<T, StageError> {
    let value = ctx.previous.get(&kind).cloned().ok_or_else(|| {
        StageError::fatal(
            FailureCode::CheckpointMissing,
            format!("the {} stage's output is missing", kind.as_str()),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        StageError::fatal(
            FailureCode::CheckpointInvalid,
            format!("the {} stage's stored output is unreadable: {e}", kind.as_str()),
        )
    })
}

/// A source passage as prompts show it.
#[derive(Debug, Clone, Serialize)]
pub struct Passage {
    /// Source number.
    pub number: u32,
    /// Title.
    pub title: String,
    /// URL.
    pub url: Option<String>,
    /// The chosen text.
    pub passage: String,
}

/// The most relevant passages of `sources` for `query`, within
/// `budget_tokens` shared evenly between the sources (a short source leaves
/// its unused share to the others). Long sources are chunked; chunks are
/// ranked with BM25 and kept in document order.
pub fn passages(sources: &[&Source], query: &str, budget_tokens: usize) -> Vec<Passage> {
    if sources.is_empty() {
        return Vec::new();
    }
    let mut remaining = budget_tokens;
    let mut out = Vec::with_capacity(sources.len());
    // Smallest first, so leftovers flow to the longer ones.
    let mut order: Vec<&&Source> = sources.iter().collect();
    order.sort_by_key(|s| sources::estimate_tokens(&s.content));
    let mut left = order.len();
    for s in order {
        let share = remaining / left.max(1);
        left -= 1;
        let text = if sources::estimate_tokens(&s.content) <= share {
            s.content.clone()
        } else {
            let chunks = sources::chunk(&s.content, 400.min(share.max(50)));
            let picked = sources::select(&chunks, query, share);
            picked.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join("\n…\n")
        };
        remaining = remaining.saturating_sub(sources::estimate_tokens(&text));
        out.push(Passage {
            number: s.number,
            title: s.title.clone(),
            url: s.url.clone(),
            passage: text,
        });
    }
    out.sort_by_key(|p| p.number);
    out
}

/// Sources by number, in the given order, ignoring unknown numbers.
pub fn pick<'a>(research: &'a Research, numbers: &[u32]) -> Vec<&'a Source> {
    let mut picked: Vec<&Source> = numbers
        .iter()
        .filter_map(|n| research.sources.iter().find(|s| s.number == *n))
        .collect();
    picked.dedup_by_key(|s| s.number);
    picked
}

/// The context budget left for source passages: the model's window minus the
/// completion and the prompt's fixed text, capped to keep prompts focused.
pub fn source_budget(context_tokens: usize, completion_tokens: u32, fixed_prompt_tokens: usize) -> usize {
    context_tokens
        .saturating_sub(completion_tokens as usize + fixed_prompt_tokens + 256)
        .min(12_000)
}
