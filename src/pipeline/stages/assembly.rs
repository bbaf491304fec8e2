//! Assembly: intro and outro written by the model, then everything a listing
//! needs computed by the program: word count, estimated duration, chapters,
//! and show notes in Markdown whose numbered source links match the
//! citations of the turns.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use std::collections::HashMap;

use super::super::episode::{Assembly, Chapter, Outline, Research, Script, Turn};
use super::super::finish::{self, Framing as Part};
use super::super::grounding::{self, SourceIndex};
use super::super::quality::{self, Measured};
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

/// The model's framing turns made speech, by hosts only, citations checked.
fn clean_framing(turns: &[Turn], host_names: &[String], titles: &[String], index: &SourceIndex) -> Vec<Turn> {
    turns
        .iter()
        .filter_map(|t| {
            let speaker = host_names
                .iter()
                .find(|h| h.eq_ignore_ascii_case(t.speaker.trim()))?
                .clone();
            let (text, inline) = finish::finish_turn_text(&t.text, host_names, titles);
            let cited: Vec<u32> = t.citations.iter().chain(inline.iter()).copied().collect();
            let mut citations: Vec<u32> = cited.into_iter().filter(|n| index.supports(&text, *n)).collect();
            citations.dedup();
            (!text.is_empty()).then_some(Turn {
                speaker,
                text,
                citations,
            })
        })
        .collect()
}

/// Tags that are content terms of the topic and the sources: the model's
/// tags whose every word occurs there (stop words never), then the topic's
/// content words, then the sources' most frequent content words (four
/// letters or more, or CJK bigrams); 3 to 6, lower case, distinct.
pub fn content_tags(topic: &str, research: &Research, model_tags: &[String], hosts: &[String]) -> Vec<String> {
    let topic_words: Vec<String> = crate::sources::terms(topic)
        .into_iter()
        .filter(|w| grounding::content_words(w, hosts).contains(w))
        .collect();
    let mut freq: HashMap<String, usize> = HashMap::new();
    for s in &research.sources {
        let head: String = s.content.chars().take(200_000).collect();
        for w in crate::sources::terms(&format!("{} {head}", s.title)) {
            let long = w.chars().any(crate::pipeline::text::is_cjk) || w.chars().count() >= 4;
            if long && !w.chars().all(|c| c.is_ascii_digit()) && !grounding::is_stop_word(&w) {
                *freq.entry(w).or_default() += 1;
            }
        }
    }
    for w in &topic_words {
        freq.entry(w.clone()).or_insert(1);
    }
    let mut by_freq: Vec<(&String, &usize)> = freq.iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let known = |w: &str| freq.contains_key(w) || topic_words.iter().any(|t| t == w);
    let mut tags: Vec<String> = Vec::new();
    let push = |t: String, tags: &mut Vec<String>| {
        if !t.is_empty() && tags.len() < 6 && !tags.contains(&t) {
            tags.push(t);
        }
    };
    for t in model_tags {
        let t = t.trim().to_lowercase();
        let words = crate::sources::terms(&t);
        if !words.is_empty() && words.len() <= 3 && words.iter().all(|w| !grounding::is_stop_word(w) && known(w)) {
            push(words.join(" "), &mut tags);
        }
    }
    for w in &topic_words {
        push(w.clone(), &mut tags);
    }
    for (w, _) in by_freq {
        if tags.len() >= 6 {
            break;
        }
        push(w.clone(), &mut tags);
    }
    tags
}

/// The model's title when it speaks of the topic or the sources (shares a
/// content word with them) and is clean, else the outline's, else the topic.
fn episode_title(model: &str, outline_title: &str, topic: &str, research: &Research, hosts: &[String]) -> String {
    let mut about = grounding::content_words(topic, hosts);
    for s in &research.sources {
        about.extend(grounding::content_words(&s.title, hosts));
    }
    let ok = |t: &str| {
        let t = t.trim();
        !t.is_empty()
            && !finish::has_leak(t, hosts, &[])
            && (about.is_empty() || grounding::content_words(t, hosts).iter().any(|w| about.contains(w)))
    };
    let pick = [model, outline_title].into_iter().find(|t| ok(t)).unwrap_or(topic);
    pick.trim().chars().take(120).collect()
}

/// The model's description, complete sentences without leaks, when it
/// mentions the topic; else the topic followed by the segment titles.
fn episode_description(model: &str, topic: &str, titles: &[String], hosts: &[String]) -> String {
    let (sentences, _) = finish::split_sentences(model);
    let kept: Vec<String> = sentences
        .into_iter()
        .filter(|s| !finish::is_leak(s, hosts, &[]))
        .collect();
    let text = kept.join(" ");
    let topic_words = grounding::content_words(topic, hosts);
    let mentions = grounding::content_words(&text, hosts)
        .iter()
        .any(|w| topic_words.contains(w));
    if !text.is_empty() && (mentions || topic_words.is_empty()) {
        return text;
    }
    let topic = topic.trim().trim_end_matches(['.', '!', '?']);
    format!("{topic}: {}.", titles.join("; "))
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
        let assembly = assemble(ctx, &research, &outline, &script, &framing, &host_names);
        if let Some(q) = &assembly.quality
            && !q.floors_missed.is_empty()
        {
            ctx.warn(
                "quality",
                "QUALITY_FLOOR",
                format!("the episode misses quality floors: {}", q.floors_missed.join("; ")),
            )
            .await
            .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        }
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
    // Nothing to check: the program completes and cleans what comes back.
    let check = |_: &Framing| -> Result<(), String> { Ok(()) };
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
        // The framing is the program's to complete: an answer that stayed
        // unusable leaves it to the templates rather than failing the episode.
        Err(CallError::Stage(e)) if matches!(e.code, FailureCode::ScriptInvalid | FailureCode::OutputTruncated) => {
            tracing::warn!(code = %e.code, "the model's framing was unusable; the program frames the episode");
            Ok(Framing {
                title: String::new(),
                description: String::new(),
                tags: Vec::new(),
                intro: Vec::new(),
                outro: Vec::new(),
            })
        }
        Err(CallError::ContextLength) => Err(StageError::fatal(
            FailureCode::SourceTooLong,
            "the assembly prompt does not fit the model's context",
        )),
        Err(CallError::Stage(e)) => Err(e),
    }
}

/// The finished episode from its parts: intro and outro completed to at
/// least two turns with every host speaking and nothing said twice,
/// chapters at the spoken times of each segment's words, word count and
/// duration estimates, the cited sources, a title and description about
/// the topic, content tags, show notes, and the quality report.
fn assemble(
    ctx: &StageContext<'_>,
    research: &Research,
    outline: &Outline,
    script: &Script,
    framing: &Framing,
    host_names: &[String],
) -> Assembly {
    let p = ctx.podcast;
    let language = p.language.as_str();
    let index = SourceIndex::new(research, host_names);
    let titles: Vec<String> = script.segments.iter().map(|s| s.title.clone()).collect();
    let mut said = finish::Said::new();
    for s in &script.segments {
        said.remember(&s.turns);
    }
    let intro = said.admit_framing(clean_framing(&framing.intro, host_names, &titles, &index));
    let intro = finish::complete_framing(intro, Part::Intro, host_names, language, &p.topic, &mut said);
    let outro = said.admit_framing(clean_framing(&framing.outro, host_names, &titles, &index));
    let outro = finish::complete_framing(outro, Part::Outro, host_names, language, &p.topic, &mut said);
    // Sentences may have gone since the citations were checked.
    let recheck = |mut turns: Vec<Turn>| {
        for t in &mut turns {
            t.citations.retain(|n| index.supports(&t.text, *n));
        }
        turns
    };
    let (intro, outro) = (recheck(intro), recheck(outro));
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
    let (title, _) = text::clean_turn_text(&framing.title, host_names);
    let title = episode_title(&title, &outline.title, &p.topic, research, host_names);
    let description = episode_description(&framing.description, &p.topic, &titles, host_names);
    let tags = content_tags(&p.topic, research, &framing.tags, host_names);
    let notes = show_notes(&title, &description, &chapters, research, &cited);
    let target_words = (p.target_duration_seconds.max(60) as u32) * text::words_per_minute(language) / 60;
    let report = quality::measure(&Measured {
        intro: &intro,
        segments: &script.segments,
        outro: &outro,
        hosts: host_names,
        research,
        target_words,
    });
    Assembly {
        quality: Some(report),
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
