//! Research: numbered sources from the user's sources and the research provider.
//!
//! User sources come first (1, 2, ...) in the order given, then the research
//! provider's, in its citation order; the provider's answer is kept as notes
//! with its `[n]` markers renumbered to match.

use std::sync::Arc;

use serde_json::json;

use super::super::episode::{Research, Source};
use super::super::structured::{StageObserver, stage_error};
use super::super::{Stage, StageContext, StageError, StageKind, StageOutput, Usage};
use super::{Providers, format_name};
use crate::domain::FailureCode;
use crate::domain::SourceRequest;
use crate::pipeline::prompts;
use crate::sources;

/// The research stage.
pub struct ResearchStage(pub Arc<Providers>);

/// Longest content kept per source, characters (about 2 MB of JSON at most
/// across ten sources).
const MAX_CONTENT_CHARS: usize = 200_000;

/// The first sentences of `text`, up to about `max` characters.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max).collect();
    let end = cut
        .rfind(['.', '!', '?', '。', '！', '？'])
        .filter(|i| *i > max / 3)
        .map(|i| i + cut[i..].chars().next().map_or(1, char::len_utf8));
    match end {
        Some(i) => cut[..i].to_owned(),
        None => format!("{}…", cut.trim_end()),
    }
}

fn truncate(text: String) -> String {
    if text.chars().count() <= MAX_CONTENT_CHARS {
        text
    } else {
        text.chars().take(MAX_CONTENT_CHARS).collect()
    }
}

/// Rewrites `[k]` markers of a research answer by `map` (provider number to ours).
fn renumber(answer: &str, offset: u32) -> String {
    let Ok(re) = regex::Regex::new(r"\[(\d{1,3})\]") else {
        return answer.to_owned();
    };
    re.replace_all(answer, |c: &regex::Captures<'_>| {
        c[1].parse::<u32>()
            .map_or_else(|_| c[0].to_owned(), |n| format!("[{}]", n + offset))
    })
    .into_owned()
}

#[async_trait::async_trait]
impl Stage for ResearchStage {
    fn kind(&self) -> StageKind {
        StageKind::Research
    }

    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let providers = &self.0;
        let requested: Vec<SourceRequest> =
            serde_json::from_value(ctx.podcast.requested_sources.clone()).unwrap_or_default();
        let mut out = Research::default();
        let mut usage = Usage::default();
        let (user_sources, failures) = read_user_sources(ctx, &providers.fetch, &requested).await?;
        out.sources = user_sources;
        // Every user source failed and nothing else can ground the episode.
        if !requested.is_empty() && out.sources.is_empty() && providers.research.is_none() {
            let first = failures.first().map_or(FailureCode::SourceEmpty, |e| e.code());
            return Err(StageError::fatal(first, "none of the sources could be read"));
        }
        if let Some(research) = &providers.research {
            usage.add(web_research(ctx, research.as_ref(), &mut out).await?);
        }
        if out.sources.is_empty() {
            let _ = ctx
                .warn(
                    "no-sources",
                    "NO_SOURCES",
                    "no sources: the episode rests on the model's general knowledge and cites nothing",
                )
                .await;
        }
        let listing: Vec<_> = out
            .sources
            .iter()
            .map(|s| json!({"number": s.number, "title": s.title, "url": s.url, "excerpt": s.excerpt}))
            .collect();
        let _ = ctx
            .artifact(
                "sources",
                &format!("{} sources", out.sources.len()),
                json!({"sources": listing}),
                1.0,
            )
            .await;
        let output = serde_json::to_value(&out).map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
        Ok(StageOutput { output, usage })
    }
}

/// The user's sources as numbered [`Source`]s (from 1, in request order):
/// URLs fetched and reduced to text, pasted text cleaned. A source that
/// cannot be read is skipped with a WARNING and returned among the failures.
async fn read_user_sources(
    ctx: &StageContext<'_>,
    limits: &sources::FetchLimits,
    requested: &[SourceRequest],
) -> Result<(Vec<Source>, Vec<sources::SourceError>), StageError> {
    let client = sources::SourceClient::new(limits.clone())
        .map_err(|e| StageError::fatal(FailureCode::Internal, format!("cannot build the HTTP client: {e}")))?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for (i, request) in requested.iter().enumerate() {
        let number = out.len() as u32 + 1;
        let doc = match request {
            SourceRequest::Url { url } => match sources::fetch(&client, url).await {
                Ok(doc) => doc,
                Err(e) => {
                    let _ = ctx
                        .warn(
                            &format!("source:{i}"),
                            e.code().as_str(),
                            format!("source {} ({url}) was skipped: {e}", i + 1),
                        )
                        .await;
                    failures.push(e);
                    continue;
                }
            },
            SourceRequest::Text { title, text } => sources::Document {
                title: Some(title.clone()),
                text: sources::clean_text(text),
                content_type: "text/plain".into(),
                url: None,
            },
        };
        if doc.text.trim().is_empty() {
            let _ = ctx
                .warn(
                    &format!("source:{i}"),
                    FailureCode::SourceEmpty.as_str(),
                    format!("source {} has no readable text", i + 1),
                )
                .await;
            continue;
        }
        let url = match request {
            SourceRequest::Url { url } => Some(url.clone()),
            SourceRequest::Text { .. } => None,
        };
        let title = doc
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| url.clone().unwrap_or_else(|| format!("Source {number}")));
        out.push(Source {
            number,
            title,
            url,
            excerpt: excerpt(&doc.text, 300),
            content: truncate(doc.text),
            origin: "user".into(),
        });
    }
    Ok((out, failures))
}

/// Asks the research provider about the topic and appends its web sources
/// to `out` (numbered after the user's), each grounded by the sentences of
/// the answer that cite it; the answer, renumbered, becomes `out.notes`.
async fn web_research(
    ctx: &StageContext<'_>,
    research: &dyn crate::providers::ResearchProvider,
    out: &mut Research,
) -> Result<Usage, StageError> {
    let language = &ctx.podcast.language;
    let messages = prompts::render(
        prompts::RESEARCH,
        json!({
            "topic": ctx.podcast.topic,
            "format": format_name(ctx.podcast.format),
            "minutes": ctx.podcast.target_duration_seconds / 60,
            "language": language,
            "language_name": prompts::language_name(language),
            "audience": ctx.podcast.audience,
            "instructions": ctx.podcast.instructions,
        }),
    )
    .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?;
    let question = messages.last().map(|m| m.content.clone()).unwrap_or_default();
    let observer = StageObserver::new(ctx, "research");
    let started = std::time::Instant::now();
    let result = research
        .research(&question, language, &observer)
        .await
        .map_err(stage_error)?;
    let usage = Usage {
        calls: 1,
        prompt_tokens: result.prompt_tokens,
        completion_tokens: result.completion_tokens,
        latency_ms: started.elapsed().as_millis() as u64,
    };
    let offset = out.sources.len() as u32;
    for (i, web) in result.sources.iter().enumerate() {
        let content = web.snippet.clone().unwrap_or_default();
        out.sources.push(Source {
            number: offset + i as u32 + 1,
            title: web.title.clone(),
            url: Some(web.url.clone()),
            excerpt: excerpt(&content, 300),
            content,
            origin: "research".into(),
        });
    }
    // The answer grounds the research sources: give each the sentences citing it.
    let notes = renumber(&result.answer, offset);
    for s in out.sources.iter_mut().filter(|s| s.origin == "research") {
        let marker = format!("[{}]", s.number);
        let cited: Vec<&str> = notes
            .split_inclusive(['.', '!', '?', '。'])
            .filter(|sentence| sentence.contains(&marker))
            .collect();
        if !cited.is_empty() {
            let text = cited.join(" ");
            if s.content.is_empty() {
                s.excerpt = excerpt(&text, 300);
            }
            s.content = format!("{}\n{}", s.content, text).trim().to_owned();
        }
    }
    out.notes = Some(notes);
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_end_on_a_sentence() {
        let text = "Cats purr. They also meow at people, mostly to ask for food. ".repeat(20);
        let e = excerpt(&text, 100);
        assert!(e.ends_with('.') && e.chars().count() <= 100, "{e}");
        assert_eq!(excerpt("short", 100), "short");
        assert_eq!(renumber("A [1] and [2].", 3), "A [4] and [5].");
    }
}
