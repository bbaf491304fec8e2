//! Assembly: intro and outro written by the model, then everything a listing
//! needs computed by the program: word count, estimated duration, chapters,
//! and show notes in Markdown whose numbered source links match the
//! citations of the turns.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::super::episode::{Assembly, Chapter, Outline, Research, Script, Turn};
use super::super::structured::{self, CallError, StageObserver, UsageMeter};
use super::super::text;
use super::super::{Stage, StageContext, StageError, StageKind, StageOutput};
use super::{Providers, format_name, hosts, previous};
use crate::domain::FailureCode;
use crate::pipeline::{prompts, schemas};

/// The assembly stage.
pub struct AssemblyStage(pub Arc<Providers>);

#[derive(Debug, Deserialize)]
struct Framing {
    title: String,
    description: String,
    tags: Vec<String>,
    intro: Vec<Turn>,
    outro: Vec<Turn>,
}

fn clock(seconds: i32) -> String {
    format!("{:02}:{:02}", seconds / 60, seconds % 60)
}

/// Show notes: title, description, chapters with start times, and the
/// numbered sources (linked when they have a URL), marking those cited.
pub fn show_notes(title: &str, description: &str, chapters: &[Chapter], research: &Research, cited: &[u32]) -> String {
    let mut md = format!("# {title}\n\n{description}\n\n## Chapters\n\n");
    for c in chapters {
        let _ = writeln!(md, "- {} {}", clock(c.start_seconds), c.title);
    }
    md.push_str("\n## Sources\n\n");
    if research.sources.is_empty() {
        md.push_str("No sources: this episode rests on general knowledge.\n");
    }
    for s in &research.sources {
        let name = s.title.replace(['[', ']'], "");
        let entry = match &s.url {
            Some(url) => format!("[{name}]({url})"),
            None => format!("{name} (provided text)"),
        };
        let mark = if cited.contains(&s.number) {
            ""
        } else {
            " (background, not cited)"
        };
        let _ = writeln!(md, "{}. {entry}{mark}", s.number);
    }
    md
}

fn clean_framing(turns: &[Turn], host_names: &[String], research: &Research) -> Vec<Turn> {
    turns
        .iter()
        .filter_map(|t| {
            let speaker = host_names
                .iter()
                .find(|h| h.eq_ignore_ascii_case(t.speaker.trim()))?
                .clone();
            let (text, inline) = text::clean_turn_text(&t.text, host_names);
            let mut citations: Vec<u32> = t
                .citations
                .iter()
                .chain(inline.iter())
                .copied()
                .filter(|n| research.has(*n))
                .collect();
            citations.dedup();
            (!text.is_empty()).then_some(Turn {
                speaker,
                text,
                citations,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl Stage for AssemblyStage {
    fn kind(&self) -> StageKind {
        StageKind::Assembly
    }

    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let llm = self.0.llm()?;
        let research: Research = previous(ctx, StageKind::Research)?;
        let outline: Outline = previous(ctx, StageKind::Outline)?;
        let script: Script = previous(ctx, StageKind::Script)?;
        let host_names: Vec<String> = hosts(ctx).iter().map(|h| h.name.clone()).collect();
        let meter = UsageMeter::default();
        let framing = frame(ctx, llm.as_ref(), &meter, &research, &outline, &host_names).await?;
        let assembly = assemble(&ctx.podcast.language, &research, &script, &framing, &host_names);
        let output =
            serde_json::to_value(&assembly).map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        Ok(StageOutput {
            output,
            usage: meter.total(),
        })
    }
}

/// Asks the model for the episode's framing: title, description, tags,
/// intro and outro (each at least one turn by a host).
async fn frame(
    ctx: &StageContext<'_>,
    llm: &dyn crate::providers::LanguageModel,
    meter: &UsageMeter,
    research: &Research,
    outline: &Outline,
    host_names: &[String],
) -> Result<Framing, StageError> {
    let p = ctx.podcast;
    let intro_budget = outline.framing_word_budget / 2;
    let outro_budget = outline.framing_word_budget - intro_budget;
    let numbers: Vec<u32> = research.sources.iter().map(|s| s.number).collect();
    let context = json!({
        "topic": p.topic,
        "title": outline.title,
        "hook": outline.hook,
        "format": format_name(p.format),
        "hosts": hosts(ctx),
        "language": p.language,
        "language_name": prompts::language_name(&p.language),
        "segments": outline.segments.iter().map(|s| json!({"title": s.title, "summary": s.goal})).collect::<Vec<_>>(),
        "intro_budget": intro_budget,
        "outro_budget": outro_budget,
        "sources": research.sources.iter().map(|s| json!({"number": s.number, "title": s.title})).collect::<Vec<_>>(),
    });
    let messages = prompts::render(prompts::ASSEMBLY, context)
        .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
    let observer = StageObserver::new(ctx, "assembly");
    // Intro and outro each get half the framing budget: about one turn per
    // 45 words, each about as long as its share allows.
    let framing_turns = ((intro_budget / 45) as usize + 1).clamp(1, 4);
    let turn_chars = ((intro_budget as usize / framing_turns) * 7).clamp(120, 600);
    let names = host_names.to_vec();
    let check = move |f: &Framing| -> Result<(), String> {
        if f.title.trim().is_empty() || f.description.trim().is_empty() {
            return Err("the title and description must not be empty".into());
        }
        if clean_framing(&f.intro, &names, research).is_empty() || clean_framing(&f.outro, &names, research).is_empty()
        {
            return Err(format!(
                "the intro and the outro each need at least one turn by {names:?}"
            ));
        }
        Ok(())
    };
    let max_tokens = (outline.framing_word_budget * 3 + 600).min(4_000);
    match structured::call::<Framing>(
        llm,
        &observer,
        meter,
        schemas::assembly(host_names, &numbers, framing_turns, turn_chars),
        messages,
        max_tokens,
        &check,
    )
    .await
    {
        Ok(f) => Ok(f),
        Err(CallError::ContextLength) => Err(StageError::fatal(
            FailureCode::SourceTooLong,
            "the assembly prompt does not fit the model's context",
        )),
        Err(CallError::Stage(e)) => Err(e),
    }
}

/// The finished episode from its parts: chapters at the spoken times of
/// each segment's words, word count and duration estimates, the cited
/// sources, cleaned metadata and show notes.
fn assemble(
    language: &str,
    research: &Research,
    script: &Script,
    framing: &Framing,
    host_names: &[String],
) -> Assembly {
    let intro = clean_framing(&framing.intro, host_names, research);
    let outro = clean_framing(&framing.outro, host_names, research);
    let words = |turns: &[Turn]| turns.iter().map(|t| text::count_words(&t.text)).sum::<usize>();
    let mut chapters = vec![Chapter {
        title: "Intro".into(),
        start_seconds: 0,
    }];
    let mut elapsed_words = words(&intro);
    for s in &script.segments {
        chapters.push(Chapter {
            title: s.title.clone(),
            start_seconds: text::spoken_seconds(elapsed_words, language),
        });
        elapsed_words += words(&s.turns);
    }
    chapters.push(Chapter {
        title: "Outro".into(),
        start_seconds: text::spoken_seconds(elapsed_words, language),
    });
    let word_count = elapsed_words + words(&outro);
    let mut cited: Vec<u32> = intro
        .iter()
        .chain(script.segments.iter().flat_map(|s| s.turns.iter()))
        .chain(outro.iter())
        .flat_map(|t| t.citations.iter().copied())
        .collect();
    cited.sort_unstable();
    cited.dedup();
    let title = framing.title.trim().chars().take(120).collect::<String>();
    let description = framing.description.trim().to_owned();
    let mut tags: Vec<String> = framing
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .take(8)
        .collect();
    tags.dedup();
    let notes = show_notes(&title, &description, &chapters, research, &cited);
    Assembly {
        title,
        description,
        tags,
        intro,
        outro,
        chapters,
        show_notes: notes,
        word_count: word_count as i32,
        estimated_duration_seconds: text::spoken_seconds(word_count, language),
    }
}
