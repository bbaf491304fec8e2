//! Script: one model call per segment, segments written concurrently
//! (bounded), each given the whole outline, its neighbours' summaries for
//! continuity, its word budget and its sources' most relevant passages.
//!
//! Every finished segment is published as an ARTIFACT (so clients watch the
//! episode take shape) and is reused when a resumed job runs the stage again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::json;

use super::super::episode::{Outline, Research, Script, ScriptSegment, Turn};
use super::super::structured::{self, CallError, StageObserver, UsageMeter};
use super::super::text;
use super::super::{Stage, StageContext, StageError, StageKind, StageOutput};
use super::{Providers, format_guidance, format_name, hosts, passages, pick, previous, source_budget};
use crate::domain::FailureCode;
use crate::pipeline::{prompts, schemas};
use crate::sources::estimate_tokens;

/// The script stage.
pub struct ScriptStage(pub Arc<Providers>);

/// Words per turn the prompts aim at.
const WORDS_PER_TURN: u32 = 45;

#[derive(Debug, Deserialize)]
struct Written {
    turns: Vec<Turn>,
}

/// Turns to ask for: about one per 45 words, 2 to 16.
pub fn turns_hint(word_budget: u32) -> usize {
    (word_budget / WORDS_PER_TURN).clamp(2, 16) as usize
}

/// Bounds on turns for a segment: `(min, max, max characters per turn)`.
/// They keep a model that ignores the word budget (the small local one) close
/// to it: a few turns either side of the hint, each about the length the
/// budget allows (about 6 characters a word, with some slack).
pub fn turn_bounds(word_budget: u32, hosts: usize) -> (usize, usize, usize) {
    let hint = turns_hint(word_budget);
    let min = if hosts > 1 {
        hint.saturating_sub(1).max(2)
    } else {
        hint.saturating_sub(1).max(1)
    };
    let per_turn = (word_budget as usize / hint) * 7;
    (min, hint + 1, per_turn.clamp(160, 1200))
}

/// Cleans and checks turns: speakers must be hosts, text must be speech.
/// Returns the cleaned turns and the unknown citation numbers dropped.
fn clean(turns: &[Turn], host_names: &[String], research: &Research) -> Result<(Vec<Turn>, Vec<u32>), String> {
    let mut out = Vec::with_capacity(turns.len());
    let mut unknown = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        let Some(speaker) = host_names.iter().find(|h| h.eq_ignore_ascii_case(t.speaker.trim())) else {
            return Err(format!(
                "turn {} has speaker {:?}; the speakers are exactly {host_names:?}",
                i + 1,
                t.speaker
            ));
        };
        let (text, inline) = text::clean_turn_text(&t.text, host_names);
        if text.is_empty() {
            continue;
        }
        let mut citations = Vec::new();
        for n in t.citations.iter().chain(inline.iter()) {
            if research.has(*n) {
                if !citations.contains(n) {
                    citations.push(*n);
                }
            } else if !unknown.contains(n) {
                unknown.push(*n);
            }
        }
        out.push(Turn {
            speaker: speaker.clone(),
            text,
            citations,
        });
    }
    if out.is_empty() {
        return Err("the segment has no spoken text".into());
    }
    Ok((out, unknown))
}

struct SegmentJob<'a> {
    ctx: &'a StageContext<'a>,
    providers: &'a Providers,
    outline: &'a Outline,
    research: &'a Research,
    index: usize,
    meter: &'a UsageMeter,
}

impl SegmentJob<'_> {
    /// Writes the segment: prompt, call, clean, check the language. A prompt
    /// that does not fit the context is rebuilt with half the source
    /// passages (never resent unchanged); a segment in the wrong language is
    /// asked for once more with a reminder, then kept with a warning.
    async fn write(&self) -> Result<ScriptSegment, StageError> {
        let llm = self.providers.llm()?;
        let seg = &self.outline.segments[self.index];
        let host_names: Vec<String> = hosts(self.ctx).iter().map(|h| h.name.clone()).collect();
        let mut chosen = pick(self.research, &seg.sources);
        if chosen.is_empty() {
            chosen = self.research.sources.iter().collect();
        }
        let numbers: Vec<u32> = chosen.iter().map(|s| s.number).collect();
        let query = format!("{} {} {}", seg.title, seg.goal, seg.key_points.join(" "));
        let max_tokens = (seg.word_budget * 3 + 400).min(8_000);
        let observer = StageObserver::new(self.ctx, format!("segment {}", self.index + 1));
        let fixed = 900 + estimate_tokens(&query) + self.outline.segments.len() * 40;
        let mut budget = source_budget(llm.context_tokens(), max_tokens, fixed);
        let mut language_reminder = false;
        loop {
            let chosen_passages = passages(&chosen, &query, budget);
            let used: usize = chosen_passages.iter().map(|p| estimate_tokens(&p.passage)).sum();
            let messages = self.prompt(chosen_passages, language_reminder)?;
            let prompt_tokens: usize = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
            let (research, names, budget_words) = (self.research, host_names.clone(), seg.word_budget as usize);
            let check = move |w: &Written| -> Result<(), String> {
                let (turns, _) = clean(&w.turns, &names, research)?;
                let words: usize = turns.iter().map(|t| text::count_words(&t.text)).sum();
                if words * 5 < budget_words * 2 {
                    return Err(format!("the segment has {words} words; write about {budget_words}"));
                }
                Ok(())
            };
            let result = if prompt_tokens + max_tokens as usize <= llm.context_tokens() {
                structured::call::<Written>(
                    llm.as_ref(),
                    &observer,
                    self.meter,
                    schemas::segment(&host_names, &numbers, turn_bounds(seg.word_budget, host_names.len())),
                    messages,
                    max_tokens,
                    &check,
                )
                .await
            } else {
                Err(CallError::ContextLength)
            };
            let written = match result {
                Ok(w) => w,
                // Never resend the same prompt: halve what the sources took.
                Err(CallError::ContextLength) if used > 100 => {
                    budget = used / 2;
                    continue;
                }
                Err(CallError::ContextLength) => {
                    return Err(StageError::fatal(
                        FailureCode::SourceTooLong,
                        "a segment's prompt does not fit the model's context even with minimal source passages",
                    ));
                }
                Err(CallError::Stage(e)) => return Err(e),
            };
            let (turns, unknown) = clean(&written.turns, &host_names, self.research)
                .map_err(|e| StageError::fatal(FailureCode::ScriptInvalid, e))?;
            if self.wrong_language(&turns) && !language_reminder {
                // One more try with an explicit reminder, then a warning.
                language_reminder = true;
                continue;
            }
            self.report(&turns, &unknown).await?;
            return Ok(ScriptSegment {
                index: self.index,
                title: seg.title.clone(),
                turns,
            });
        }
    }

    /// The segment's prompt over `sources`, with a reminder of the language
    /// when an earlier answer was in another one.
    fn prompt(
        &self,
        sources: Vec<impl serde::Serialize>,
        language_reminder: bool,
    ) -> Result<Vec<crate::providers::ChatMessage>, StageError> {
        let p = self.ctx.podcast;
        let seg = &self.outline.segments[self.index];
        let summary = |i: usize| self.outline.segments.get(i).map(|s| format!("{}: {}", s.title, s.goal));
        let context = json!({
            "topic": p.topic,
            "title": self.outline.title,
            "format": format_name(p.format),
            "format_guidance": format_guidance(p.format),
            "hosts": hosts(self.ctx),
            "language": p.language,
            "language_name": prompts::language_name(&p.language),
            "audience": p.audience,
            "tone": p.tone,
            "instructions": p.instructions,
            "outline": self.outline.segments.iter().enumerate().map(|(i, s)| json!({"number": i + 1, "title": s.title, "goal": s.goal})).collect::<Vec<_>>(),
            "segment": {"number": self.index + 1, "title": seg.title, "goal": seg.goal, "key_points": seg.key_points},
            "count": self.outline.segments.len(),
            "previous": self.index.checked_sub(1).and_then(summary),
            "next": summary(self.index + 1),
            "word_budget": seg.word_budget,
            "turns_hint": turns_hint(seg.word_budget),
            "sources": sources,
        });
        let mut messages = prompts::render(prompts::SCRIPT, context)
            .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        if language_reminder {
            messages.push(crate::providers::ChatMessage::user(format!(
                "Reminder: write every turn in {}, even where the sources use another language.",
                prompts::language_name(&p.language)
            )));
        }
        Ok(messages)
    }

    /// True when the turns read as a language other than the episode's.
    fn wrong_language(&self, turns: &[Turn]) -> bool {
        let spoken: String = turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        text::detect_language(&spoken).is_some_and(|found| !text::language_matches(&self.ctx.podcast.language, found))
    }

    /// Warns about what the segment kept despite its flaws: a language other
    /// than the episode's, citations of sources that do not exist.
    async fn report(&self, turns: &[Turn], unknown: &[u32]) -> Result<(), StageError> {
        let language = &self.ctx.podcast.language;
        let spoken: String = turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        if let Some(found) = text::detect_language(&spoken)
            && !text::language_matches(language, found)
        {
            self.ctx
                .warn(
                    &format!("language:{}", self.index),
                    "LANGUAGE_MISMATCH",
                    format!("segment {} reads as {found}, not {language}", self.index + 1),
                )
                .await
                .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        }
        if !unknown.is_empty() {
            self.ctx
                .warn(
                    &format!("citations:{}", self.index),
                    "UNKNOWN_CITATION",
                    format!(
                        "segment {} cited sources that do not exist ({unknown:?}); the citations were dropped",
                        self.index + 1
                    ),
                )
                .await
                .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Stage for ScriptStage {
    fn kind(&self) -> StageKind {
        StageKind::Script
    }

    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        self.0.llm()?;
        let outline: Outline = previous(ctx, StageKind::Outline)?;
        let research: Research = previous(ctx, StageKind::Research)?;
        let total = outline.segments.len();
        // Segments finished by an earlier attempt of this run are reused.
        let mut done: Vec<ScriptSegment> = ctx
            .finished_artifacts()
            .await
            .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?
            .into_iter()
            .filter(|(k, _)| k.starts_with("segment:"))
            .filter_map(|(_, v)| serde_json::from_value::<ScriptSegment>(v).ok())
            .filter(|s| s.index < total)
            .collect();
        let todo: Vec<usize> = (0..total).filter(|i| !done.iter().any(|s| s.index == *i)).collect();
        let meter = UsageMeter::default();
        let finished = AtomicUsize::new(done.len());
        let results: Vec<Result<ScriptSegment, StageError>> = stream::iter(todo)
            .map(|index| {
                let (outline, research, meter, finished) = (&outline, &research, &meter, &finished);
                async move {
                    let job = SegmentJob {
                        ctx,
                        providers: &self.0,
                        outline,
                        research,
                        index,
                        meter,
                    };
                    let segment = job.write().await?;
                    let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    let data = serde_json::to_value(&segment)
                        .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
                    ctx.artifact(
                        &format!("segment:{index}"),
                        &format!("segment {} of {total} written: {}", index + 1, segment.title),
                        data,
                        n as f32 / total as f32,
                    )
                    .await
                    .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
                    Ok(segment)
                }
            })
            .buffer_unordered(self.0.script_concurrency.max(1))
            .collect()
            .await;
        for r in results {
            done.push(r?);
        }
        done.sort_by_key(|s| s.index);
        let script = Script { segments: done };
        let output =
            serde_json::to_value(&script).map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        Ok(StageOutput {
            output,
            usage: meter.total(),
        })
    }
}
