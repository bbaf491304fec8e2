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

use std::collections::HashSet;

use super::super::episode::{Outline, Research, Script, ScriptSegment, Turn};
use super::super::finish;
use super::super::grounding::{self, Fact, SourceIndex};
use super::super::quality;
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

/// Facts shown in a segment's prompt (the others complete it if needed).
const PROMPT_FACTS: usize = 6;

/// The episode's segments made one whole: in outline order, sentences and
/// turns already said in an earlier segment are dropped and the overlap
/// with earlier segments is bounded ([`finish::Said`]); each segment is
/// completed again with its facts not yet spoken ([`fit_segment`]), then,
/// when still short (its own sources were too small for its budget), with
/// facts from any source not yet given to a segment (`taken` holds those
/// given). Citations are checked once more on the final text.
fn finish_episode(
    segments: Vec<ScriptSegment>,
    outline: &Outline,
    research: &Research,
    facts: Vec<Vec<Fact>>,
    taken: &mut HashSet<String>,
    host_names: &[String],
    index: &SourceIndex,
) -> Vec<ScriptSegment> {
    let mut said = finish::Said::new();
    let mut out = Vec::with_capacity(segments.len());
    for s in segments {
        let budget = outline.segments.get(s.index).map_or(100, |o| o.word_budget as usize);
        let mut turns = said.filter_segment(s.turns);
        let mut left = facts.get(s.index).cloned().unwrap_or_default();
        let spoken: HashSet<String> = turns
            .iter()
            .flat_map(|t| finish::split_sentences(&t.text).0)
            .map(|x| finish::repeat_key(&x))
            .collect();
        let seen = |x: &str| said.has_said(x) || spoken.contains(&finish::repeat_key(x));
        fit_segment(&mut turns, &mut left, host_names, budget, &seen);
        if finish::words(&turns) * 10 < budget * 9
            && let Some(plan) = outline.segments.get(s.index)
        {
            let all: Vec<&super::super::episode::Source> = research.sources.iter().collect();
            let query = format!("{} {} {}", plan.title, plan.goal, plan.key_points.join(" "));
            let mut more = grounding::key_sentences(&all, &query, budget / 15 + 3, taken);
            fit_segment(&mut turns, &mut more, host_names, budget, &seen);
        }
        let mut turns = said.filter_segment(turns);
        for t in &mut turns {
            t.citations = index.checked_citations(&t.text, &t.citations).0;
        }
        said.record_segment(&turns);
        out.push(ScriptSegment { turns, ..s });
    }
    out
}

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

/// Checks turns for the repair loop: every speaker must be a host. Length
/// and content are the program's to hold (see [`finish_turns`] and
/// [`fit_segment`]), so a short or empty answer is never an error.
fn check_speakers(turns: &[Turn], host_names: &[String]) -> Result<(), String> {
    for (i, t) in turns.iter().enumerate() {
        if !host_names.iter().any(|h| h.eq_ignore_ascii_case(t.speaker.trim())) {
            return Err(format!(
                "turn {} has speaker {:?}; the speakers are exactly {host_names:?}",
                i + 1,
                t.speaker
            ));
        }
    }
    Ok(())
}

/// What finishing a model's turns found besides the turns.
#[derive(Debug, Default)]
struct Finished {
    turns: Vec<Turn>,
    /// Citations of sources that do not exist.
    unknown: Vec<u32>,
    /// Citations the cited passage does not support.
    unsupported: usize,
}

/// The model's turns made speech (see [`finish::finish_turn_text`]) with
/// checked citations: unknown sources and unsupported citations dropped,
/// supported turns attributed (see [`SourceIndex::checked_citations`]).
/// Turns by unknown speakers and turns left without speech are dropped.
fn finish_turns(
    turns: &[Turn],
    host_names: &[String],
    titles: &[String],
    research: &Research,
    index: &SourceIndex,
) -> Finished {
    let mut out = Finished::default();
    for t in turns {
        let Some(speaker) = host_names.iter().find(|h| h.eq_ignore_ascii_case(t.speaker.trim())) else {
            continue;
        };
        let (text, inline) = finish::finish_turn_text(&t.text, host_names, titles);
        if text.is_empty() {
            continue;
        }
        let mut cited = Vec::new();
        for n in t.citations.iter().chain(inline.iter()) {
            if !research.has(*n) {
                if !out.unknown.contains(n) {
                    out.unknown.push(*n);
                }
            } else if !cited.contains(n) {
                cited.push(*n);
            }
        }
        let (citations, dropped) = index.checked_citations(&text, &cited);
        out.unsupported += dropped.len();
        out.turns.push(Turn {
            speaker: speaker.clone(),
            text,
            citations,
        });
    }
    out
}

/// The host after `speaker` in `hosts` (the first when `speaker` is none).
fn next_host(hosts: &[String], speaker: Option<&str>) -> String {
    let i = speaker
        .and_then(|s| hosts.iter().position(|h| h == s))
        .map_or(0, |i| i + 1);
    hosts.get(i % hosts.len().max(1)).cloned().unwrap_or_default()
}

/// A turn that restates `fact` verbatim, cited.
fn fact_turn(speaker: String, fact: &Fact) -> Turn {
    Turn {
        speaker,
        text: fact.text.clone(),
        citations: vec![fact.source],
    }
}

/// Takes the fact from `facts` whose words are closest to `want` without
/// exceeding `room`, skipping facts already said.
fn take_fact(facts: &mut Vec<Fact>, want: usize, room: usize, said: &dyn Fn(&str) -> bool) -> Option<Fact> {
    facts.retain(|f| !said(&f.text));
    let best = facts
        .iter()
        .enumerate()
        .filter(|(_, f)| text::count_words(&f.text) <= room)
        .min_by_key(|(_, f)| text::count_words(&f.text).abs_diff(want))
        .map(|(i, _)| i)?;
    Some(facts.remove(best))
}

/// Holds a segment's length and grounding with the facts left (each used
/// once, verbatim and cited, so supported by construction):
/// 1. while fewer than [`quality::floors::CITATION_COVERAGE`] of the turns
///    carry a supported citation, the last unsupported turn is replaced by a
///    fact of about its length, same speaker;
/// 2. while the segment is under its budget, fact turns are appended
///    (alternating hosts), never past 110% of the budget;
/// 3. past 110%, unsupported turns go from the end, then last sentences
///    (at least two turns are kept).
///
/// `said` tells facts already spoken elsewhere.
fn fit_segment(
    turns: &mut Vec<Turn>,
    facts: &mut Vec<Fact>,
    hosts: &[String],
    budget: usize,
    said: &dyn Fn(&str) -> bool,
) {
    let max = budget + budget / 10;
    let covered = |turns: &[Turn]| turns.iter().filter(|t| !t.citations.is_empty()).count();
    let mut guard = 0;
    while !turns.is_empty()
        && (covered(turns) as f64) < quality::floors::CITATION_COVERAGE * turns.len() as f64
        && guard < 64
    {
        guard += 1;
        let Some(i) = turns.iter().rposition(|t| t.citations.is_empty()) else {
            break;
        };
        let words = text::count_words(&turns[i].text);
        let room = max.saturating_sub(finish::words(turns) - words).max(words);
        let Some(f) = take_fact(facts, words, room, said) else {
            break;
        };
        turns[i] = fact_turn(turns[i].speaker.clone(), &f);
    }
    while finish::words(turns) < budget {
        let room = max - finish::words(turns).min(max);
        let want = (budget - finish::words(turns)).min(45);
        let Some(f) = take_fact(facts, want, room, said) else {
            break;
        };
        let speaker = next_host(hosts, turns.last().map(|t| t.speaker.as_str()));
        turns.push(fact_turn(speaker, &f));
    }
    while finish::words(turns) > max && turns.len() > 2 {
        let Some(i) = turns.iter().rposition(|t| t.citations.is_empty()) else {
            break;
        };
        if finish::words(turns) - text::count_words(&turns[i].text) < budget * 9 / 10 {
            break;
        }
        turns.remove(i);
    }
    finish::trim_to(turns, max, 2);
}

struct SegmentJob<'a> {
    ctx: &'a StageContext<'a>,
    providers: &'a Providers,
    outline: &'a Outline,
    research: &'a Research,
    index: &'a SourceIndex,
    facts: &'a [Fact],
    index_in_outline: usize,
    meter: &'a UsageMeter,
}

impl SegmentJob<'_> {
    /// Writes the segment: prompt (with the segment's facts), call, finish
    /// the turns, check the language; rewrites once when no turn is
    /// supported, asks once to continue when it is short, then completes it
    /// with facts ([`fit_segment`]). A prompt that does not fit the context
    /// is rebuilt with half the source passages (never resent unchanged); a
    /// segment in the wrong language is asked for once more with a
    /// reminder, then kept with a warning.
    async fn write(&self) -> Result<ScriptSegment, StageError> {
        let llm = self.providers.llm()?;
        let seg = &self.outline.segments[self.index_in_outline];
        let host_names: Vec<String> = hosts(self.ctx).iter().map(|h| h.name.clone()).collect();
        let titles: Vec<String> = self.outline.segments.iter().map(|s| s.title.clone()).collect();
        let mut chosen = pick(self.research, &seg.sources);
        if chosen.is_empty() {
            chosen = self.research.sources.iter().collect();
        }
        let numbers: Vec<u32> = self.research.sources.iter().map(|s| s.number).collect();
        let query = format!("{} {} {}", seg.title, seg.goal, seg.key_points.join(" "));
        let observer = StageObserver::new(self.ctx, format!("segment {}", self.index_in_outline + 1));
        let shown_facts: Vec<&Fact> = self.facts.iter().take(PROMPT_FACTS).collect();
        let fixed = 900
            + estimate_tokens(&query)
            + self.outline.segments.len() * 40
            + shown_facts.iter().map(|f| estimate_tokens(&f.text) + 4).sum::<usize>();
        let budget_words = seg.word_budget as usize;
        let mut turns: Vec<Turn> = Vec::new();
        let mut unknown = Vec::new();
        let mut unsupported = 0;
        let mut language_reminder = false;
        let mut rewritten = false;
        let mut continued = false;
        loop {
            let remaining = budget_words.saturating_sub(finish::words(&turns));
            let ask_words = if turns.is_empty() {
                budget_words
            } else {
                remaining.max(20)
            };
            let max_tokens = (ask_words as u32 * 3 + 400).min(8_000);
            let mut source_tokens = source_budget(llm.context_tokens(), max_tokens, fixed);
            let written = loop {
                let chosen_passages = passages(&chosen, &query, source_tokens);
                let used: usize = chosen_passages.iter().map(|p| estimate_tokens(&p.passage)).sum();
                let messages = self.prompt(
                    chosen_passages,
                    &shown_facts,
                    &turns,
                    ask_words,
                    language_reminder,
                    rewritten && turns.is_empty(),
                )?;
                let prompt_tokens: usize = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
                let names = host_names.clone();
                let check = move |w: &Written| check_speakers(&w.turns, &names);
                let result = if prompt_tokens + max_tokens as usize <= llm.context_tokens() {
                    structured::call::<Written>(
                        llm.as_ref(),
                        &observer,
                        self.meter,
                        schemas::segment(&host_names, &numbers, turn_bounds(ask_words as u32, host_names.len())),
                        messages,
                        max_tokens,
                        &check,
                    )
                    .await
                } else {
                    Err(CallError::ContextLength)
                };
                match result {
                    Ok(w) => break w,
                    // Never resend the same prompt: halve what the sources took.
                    Err(CallError::ContextLength) if used > 100 => source_tokens = used / 2,
                    Err(CallError::ContextLength) => {
                        return Err(StageError::fatal(
                            FailureCode::SourceTooLong,
                            "a segment's prompt does not fit the model's context even with minimal source passages",
                        ));
                    }
                    Err(CallError::Stage(e)) => return Err(e),
                }
            };
            let finished = finish_turns(&written.turns, &host_names, &titles, self.research, self.index);
            for n in finished.unknown {
                if !unknown.contains(&n) {
                    unknown.push(n);
                }
            }
            unsupported += finished.unsupported;
            if turns.is_empty() {
                if self.wrong_language(&finished.turns) && !language_reminder {
                    // One more try with an explicit reminder, then a warning.
                    language_reminder = true;
                    continue;
                }
                let grounded = finished.turns.iter().any(|t| !t.citations.is_empty());
                if !self.research.sources.is_empty() && !grounded && !rewritten {
                    // No turn says what a source says: rewrite once.
                    rewritten = true;
                    continue;
                }
                turns = finished.turns;
            } else {
                turns.extend(finished.turns);
            }
            // Keep only what is new within the segment.
            turns = finish::Said::new().filter_segment(turns);
            if finish::words(&turns) * 10 < budget_words * 9 && !continued {
                continued = true;
                continue;
            }
            break;
        }
        let mut facts = self.facts.to_vec();
        let said_here: std::collections::HashSet<String> = turns
            .iter()
            .flat_map(|t| finish::split_sentences(&t.text).0)
            .map(|s| finish::repeat_key(&s))
            .collect();
        let said = |s: &str| said_here.contains(&finish::repeat_key(s));
        fit_segment(&mut turns, &mut facts, &host_names, budget_words, &said);
        self.report(&turns, &unknown, unsupported).await?;
        Ok(ScriptSegment {
            index: self.index_in_outline,
            title: seg.title.clone(),
            turns,
        })
    }

    /// The segment's prompt over `sources` and `facts`, continuing `so_far`
    /// (when not empty) with about `words` words; with a reminder of the
    /// language when an earlier answer was in another one, and of the facts
    /// when an earlier answer restated none.
    fn prompt(
        &self,
        sources: Vec<impl serde::Serialize>,
        facts: &[&Fact],
        so_far: &[Turn],
        words: usize,
        language_reminder: bool,
        facts_reminder: bool,
    ) -> Result<Vec<crate::providers::ChatMessage>, StageError> {
        let p = self.ctx.podcast;
        let seg = &self.outline.segments[self.index_in_outline];
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
            "segment": {"number": self.index_in_outline + 1, "title": seg.title, "goal": seg.goal, "key_points": seg.key_points},
            "count": self.outline.segments.len(),
            "previous": self.index_in_outline.checked_sub(1).and_then(summary),
            "next": summary(self.index_in_outline + 1),
            "word_budget": words,
            "turns_hint": turns_hint(words as u32),
            "sources": sources,
            "facts": facts,
            "so_far": so_far.iter().map(|t| json!({"speaker": t.speaker, "text": t.text})).collect::<Vec<_>>(),
        });
        let mut messages = prompts::render(prompts::SCRIPT, context)
            .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        if language_reminder {
            messages.push(crate::providers::ChatMessage::user(format!(
                "Reminder: write every turn in {}, even where the sources use another language.",
                prompts::language_name(&p.language)
            )));
        }
        if facts_reminder {
            messages.push(crate::providers::ChatMessage::user(
                "Reminder: each turn restates one of the facts listed, in plain words, and cites its number.",
            ));
        }
        Ok(messages)
    }

    /// True when the turns read as a language other than the episode's.
    fn wrong_language(&self, turns: &[Turn]) -> bool {
        let spoken: String = turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        text::detect_language(&spoken).is_some_and(|found| !text::language_matches(&self.ctx.podcast.language, found))
    }

    /// Warns about what the segment kept despite its flaws or dropped: a
    /// language other than the episode's, citations of sources that do not
    /// exist, citations their source does not support.
    async fn report(&self, turns: &[Turn], unknown: &[u32], unsupported: usize) -> Result<(), StageError> {
        let language = &self.ctx.podcast.language;
        let i = self.index_in_outline;
        let spoken: String = turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        let warn = |key: String, code: &'static str, message: String| async move {
            self.ctx
                .warn(&key, code, message)
                .await
                .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))
        };
        if let Some(found) = text::detect_language(&spoken)
            && !text::language_matches(language, found)
        {
            warn(
                format!("language:{i}"),
                "LANGUAGE_MISMATCH",
                format!("segment {} reads as {found}, not {language}", i + 1),
            )
            .await?;
        }
        if !unknown.is_empty() {
            warn(
                format!("citations:{i}"),
                "UNKNOWN_CITATION",
                format!(
                    "segment {} cited sources that do not exist ({unknown:?}); the citations were dropped",
                    i + 1
                ),
            )
            .await?;
        }
        if unsupported > 0 {
            warn(
                format!("unsupported:{i}"),
                "UNSUPPORTED_CITATION",
                format!(
                    "segment {}: {unsupported} citations were dropped because the cited passage does not support the turn",
                    i + 1
                ),
            )
            .await?;
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
        let host_names: Vec<String> = hosts(ctx).iter().map(|h| h.name.clone()).collect();
        let index = SourceIndex::new(&research, &host_names);
        // Facts per segment, disjoint, in outline order (the same on a resume).
        let mut taken = HashSet::new();
        let facts: Vec<Vec<Fact>> = outline
            .segments
            .iter()
            .map(|seg| {
                let mut chosen = pick(&research, &seg.sources);
                if chosen.is_empty() {
                    chosen = research.sources.iter().collect();
                }
                let query = format!("{} {} {}", seg.title, seg.goal, seg.key_points.join(" "));
                let want = (seg.word_budget as usize / 15 + 3).min(40);
                grounding::key_sentences(&chosen, &query, want, &mut taken)
            })
            .collect();
        let meter = UsageMeter::default();
        let finished = AtomicUsize::new(done.len());
        let results: Vec<Result<ScriptSegment, StageError>> = stream::iter(todo)
            .map(|index_in_outline| {
                let (outline, research, meter, finished, index, facts) =
                    (&outline, &research, &meter, &finished, &index, &facts);
                async move {
                    let job = SegmentJob {
                        ctx,
                        providers: &self.0,
                        outline,
                        research,
                        index,
                        facts: &facts[index_in_outline],
                        index_in_outline,
                        meter,
                    };
                    let segment = job.write().await?;
                    let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    let data = serde_json::to_value(&segment)
                        .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
                    ctx.artifact(
                        &format!("segment:{index_in_outline}"),
                        &format!("segment {} of {total} written: {}", index_in_outline + 1, segment.title),
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
        let script = Script {
            segments: finish_episode(done, &outline, &research, facts, &mut taken, &host_names, &index),
        };
        let output =
            serde_json::to_value(&script).map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        Ok(StageOutput {
            output,
            usage: meter.total(),
        })
    }
}
