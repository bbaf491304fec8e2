//! Outline: the narrative engine. The model plans the hook and 3 to 8
//! segments, each resting on numbered sources; the program sets each
//! segment's word budget from the target length and the language's speaking
//! rate.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::super::episode::{Outline, OutlineSegment, Research};
use super::super::structured::{self, CallError, StageObserver, UsageMeter};
use super::super::text;
use super::super::{Stage, StageContext, StageError, StageKind, StageOutput};
use super::{Providers, format_guidance, format_name, hosts, passages, previous, source_budget};
use crate::domain::FailureCode;
use crate::pipeline::{prompts, schemas};
use crate::sources::estimate_tokens;

/// The outline stage.
pub struct OutlineStage(pub Arc<Providers>);

/// Fewest and most segments.
pub const SEGMENTS: (usize, usize) = (3, 8);
/// Completion tokens allowed for an outline.
const MAX_TOKENS: u32 = 1_500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Planned {
    title: String,
    hook: String,
    segments: Vec<PlannedSegment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlannedSegment {
    title: String,
    goal: String,
    key_points: Vec<String>,
    sources: Vec<u32>,
}

/// Suggested segment count for a length in minutes.
pub fn suggested_segments(minutes: i32) -> usize {
    match minutes {
        ..=3 => 3,
        4..=8 => 4,
        9..=15 => 5,
        16..=30 => 6,
        _ => 8,
    }
}

/// Word budgets: `(framing, per segment)` for `minutes` in `language` with
/// `segments` segments. Intro and outro get a tenth of the words (at least
/// 40); the segments share the rest evenly.
pub fn word_budgets(minutes: i32, language: &str, segments: usize) -> (u32, Vec<u32>) {
    let total = (minutes.max(1) as u32) * text::words_per_minute(language);
    let framing = (total / 10).max(40).min(total / 3);
    let each = (total - framing) / segments.max(1) as u32;
    (framing, vec![each; segments])
}

fn check(plan: &Planned) -> Result<(), String> {
    if !(SEGMENTS.0..=SEGMENTS.1).contains(&plan.segments.len()) {
        return Err(format!(
            "there must be {} to {} segments, not {}",
            SEGMENTS.0,
            SEGMENTS.1,
            plan.segments.len()
        ));
    }
    if plan.title.trim().is_empty() || plan.hook.trim().is_empty() {
        return Err("the title and hook must not be empty".into());
    }
    for (i, s) in plan.segments.iter().enumerate() {
        if s.title.trim().is_empty() || s.goal.trim().is_empty() || s.key_points.iter().all(|p| p.trim().is_empty()) {
            return Err(format!("segment {} needs a title, a goal and key points", i + 1));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Stage for OutlineStage {
    fn kind(&self) -> StageKind {
        StageKind::Outline
    }

    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let llm = self.0.llm()?;
        let research: Research = previous(ctx, StageKind::Research)?;
        let meter = UsageMeter::default();
        let plan = plan(ctx, llm.as_ref(), &meter, &research).await?;
        let outline = shape(ctx, plan, &research).await?;
        let output =
            serde_json::to_value(&outline).map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        ctx.artifact(
            "outline",
            &format!("outline with {} segments", outline.segments.len()),
            output.clone(),
            1.0,
        )
        .await
        .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        Ok(StageOutput {
            output,
            usage: meter.total(),
        })
    }
}

/// Asks the model for the plan over the best source passages that fit; a
/// prompt over the context is rebuilt with half the passages, never resent.
async fn plan(
    ctx: &StageContext<'_>,
    llm: &dyn crate::providers::LanguageModel,
    meter: &UsageMeter,
    research: &Research,
) -> Result<Planned, StageError> {
    let p = ctx.podcast;
    let minutes = p.target_duration_seconds / 60;
    let numbers: Vec<u32> = research.sources.iter().map(|s| s.number).collect();
    let all: Vec<_> = research.sources.iter().collect();
    let query = format!("{} {}", p.topic, p.instructions.as_deref().unwrap_or_default());
    let observer = StageObserver::new(ctx, "outline");
    let fixed = 700 + estimate_tokens(&query) + research.notes.as_deref().map_or(0, estimate_tokens);
    let mut budget = source_budget(llm.context_tokens(), MAX_TOKENS, fixed);
    loop {
        let chosen = passages(&all, &query, budget);
        let used: usize = chosen.iter().map(|p| estimate_tokens(&p.passage)).sum();
        let context = json!({
            "topic": p.topic,
            "format": format_name(p.format),
            "format_guidance": format_guidance(p.format),
            "hosts": hosts(ctx),
            "minutes": minutes,
            "language": p.language,
            "language_name": prompts::language_name(&p.language),
            "audience": p.audience,
            "tone": p.tone,
            "instructions": p.instructions,
            "min_segments": SEGMENTS.0,
            "max_segments": SEGMENTS.1,
            "suggested_segments": suggested_segments(minutes),
            "sources": chosen,
            "notes": research.notes,
        });
        let messages = prompts::render(prompts::OUTLINE, context)
            .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        let prompt_tokens: usize = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
        let result = if prompt_tokens + MAX_TOKENS as usize <= llm.context_tokens() {
            structured::call::<Planned>(
                llm,
                &observer,
                meter,
                schemas::outline(&numbers, SEGMENTS.0, (suggested_segments(minutes) + 1).min(SEGMENTS.1)),
                messages,
                MAX_TOKENS,
                &check,
            )
            .await
        } else {
            Err(CallError::ContextLength)
        };
        match result {
            Ok(plan) => return Ok(plan),
            // Never resend the same prompt: halve what the sources took.
            Err(CallError::ContextLength) if used > 100 => budget = used / 2,
            Err(CallError::ContextLength) => {
                return Err(StageError::fatal(
                    FailureCode::SourceTooLong,
                    "the request does not fit the model's context even with minimal source passages",
                ));
            }
            Err(CallError::Stage(e)) => return Err(e),
        }
    }
}

/// The outline from the model's plan: trimmed text, word budgets per
/// segment, and only citations of sources that exist (a WARNING names the
/// others).
async fn shape(ctx: &StageContext<'_>, plan: Planned, research: &Research) -> Result<Outline, StageError> {
    let p = ctx.podcast;
    let (framing, budgets) = word_budgets(p.target_duration_seconds / 60, &p.language, plan.segments.len());
    let mut segments = Vec::with_capacity(plan.segments.len());
    for (i, (s, word_budget)) in plan.segments.into_iter().zip(budgets).enumerate() {
        let (mut known, unknown): (Vec<u32>, Vec<u32>) = s.sources.iter().partition(|n| research.has(**n));
        if !unknown.is_empty() {
            ctx.warn(
                &format!("outline-citations:{i}"),
                "UNKNOWN_CITATION",
                format!(
                    "the outline's segment {} cited sources that do not exist ({unknown:?}); they were dropped",
                    i + 1
                ),
            )
            .await
            .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        }
        known.dedup();
        segments.push(OutlineSegment {
            title: s.title.trim().to_owned(),
            goal: s.goal.trim().to_owned(),
            key_points: s
                .key_points
                .into_iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            sources: known,
            word_budget,
        });
    }
    distinct_titles(&mut segments);
    Ok(Outline {
        title: plan.title.trim().to_owned(),
        hook: plan.hook.trim().to_owned(),
        segments,
        framing_word_budget: framing,
    })
}

/// A short title from `text`: its first words (at most 8, at most 60
/// characters), without trailing punctuation, first letter upper case.
fn title_from(text: &str) -> String {
    let mut out = String::new();
    for w in text.split_whitespace().take(8) {
        if out.chars().count() + w.chars().count() > 60 {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    let out = out.trim_end_matches(|c: char| !c.is_alphanumeric()).to_owned();
    let mut chars = out.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// Makes segment titles distinct (letters and digits compared, case
/// aside): a title already used, or empty, becomes one drawn from the
/// segment's first key point or goal, else gets ` (part n)`.
pub fn distinct_titles(segments: &mut [OutlineSegment]) {
    let mut used: Vec<String> = Vec::new();
    for (i, segment) in segments.iter_mut().enumerate() {
        let key = |t: &str| super::super::finish::repeat_key(t);
        let mut title = segment.title.clone();
        if key(&title).is_empty() || used.contains(&key(&title)) {
            let s = &*segment;
            let candidates = s
                .key_points
                .iter()
                .chain(std::iter::once(&s.goal))
                .map(|t| title_from(t));
            title = candidates
                .into_iter()
                .find(|c| !key(c).is_empty() && !used.contains(&key(c)))
                .unwrap_or_else(|| {
                    let base = if title.trim().is_empty() {
                        format!("Part {}", i + 1)
                    } else {
                        title.clone()
                    };
                    (2..)
                        .map(|n| format!("{base} (part {n})"))
                        .find(|c| !used.contains(&key(c)))
                        .unwrap_or(base)
                });
        }
        used.push(key(&title));
        segment.title = title;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_made_distinct() {
        let seg = |title: &str, point: &str| OutlineSegment {
            title: title.into(),
            goal: "Understand it.".into(),
            key_points: vec![point.into()],
            sources: vec![],
            word_budget: 100,
        };
        let mut s = vec![
            seg("How It Works", "The opening handshake"),
            seg("How it works!", "Frames carry data, masked from client to server"),
            seg("How It Works", "The opening handshake"),
            seg("", ""),
        ];
        distinct_titles(&mut s);
        let keys: std::collections::HashSet<String> = s
            .iter()
            .map(|x| super::super::super::finish::repeat_key(&x.title))
            .collect();
        assert_eq!(keys.len(), 4, "{s:?}");
        assert_eq!(s[1].title, "Frames carry data, masked from client to server");
        assert!(s.iter().all(|x| !x.title.is_empty()));
    }

    #[test]
    fn budgets_follow_length_and_language() {
        let (framing, each) = word_budgets(10, "en", 5);
        assert_eq!(framing, 150);
        assert_eq!(each, vec![270; 5]);
        let (framing, each) = word_budgets(3, "zh-Hans", 3);
        assert_eq!(framing + each.iter().sum::<u32>(), 720);
        assert_eq!(suggested_segments(3), 3);
        assert_eq!(suggested_segments(45), 8);
    }
}
