//! Research through Perplexity's chat-completions protocol (`sonar` models).
//!
//! `POST {base}/chat/completions` with `model` and `messages`; the answer is
//! `choices[0].message.content` with bracketed markers `[1]`, and its sources
//! come either as `citations` (a list of URLs) or as `search_results`
//! (objects with `title`, `url` and sometimes `snippet`), depending on the
//! API version. Both are read; `search_results` wins when present because it
//! carries titles.

use serde::Deserialize;
use serde_json::json;

use super::http::{self, HttpPolicy};
use super::{CallObserver, ProviderError, ResearchProvider, ResearchResult, WebSource};

/// Settings of a Perplexity-compatible endpoint.
#[derive(Debug, Clone)]
pub struct PerplexityConfig {
    /// Base URL before `/chat/completions` (default `https://api.perplexity.ai`).
    pub base_url: String,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Model (default `sonar`).
    pub model: String,
    /// Deadlines and retries.
    pub http: HttpPolicy,
}

/// The client.
pub struct PerplexityClient {
    config: PerplexityConfig,
    client: reqwest::Client,
}

impl PerplexityClient {
    /// A client for `config`.
    ///
    /// Errors: when the HTTP client cannot be built.
    pub fn new(config: PerplexityConfig) -> anyhow::Result<Self> {
        let client = config.http.client()?;
        Ok(Self { config, client })
    }
}

#[derive(Deserialize)]
struct Answer {
    choices: Vec<Choice>,
    #[serde(default)]
    citations: Option<Vec<String>>,
    #[serde(default)]
    search_results: Option<Vec<SearchResult>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct SearchResult {
    #[serde(default)]
    title: Option<String>,
    url: String,
    #[serde(default)]
    snippet: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Reads an answer body into a research result.
pub fn parse_answer(text: &str) -> Result<ResearchResult, ProviderError> {
    let answer: Answer = serde_json::from_str(text)
        .map_err(|_| ProviderError::Unavailable("the research response was cut off or malformed".into()))?;
    let choice = answer
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::InvalidResponse("no choices in the research answer".into()))?;
    match choice.finish_reason.as_deref() {
        Some("stop") | Some("length") => {}
        None => {
            return Err(ProviderError::Unavailable(
                "the research answer ended without a finish reason".into(),
            ));
        }
        Some(other) => {
            return Err(ProviderError::InvalidResponse(format!(
                "unknown finish_reason {other:?}"
            )));
        }
    }
    let sources = match (answer.search_results, answer.citations) {
        (Some(results), _) if !results.is_empty() => results
            .into_iter()
            .map(|r| WebSource {
                title: r.title.filter(|t| !t.is_empty()).unwrap_or_else(|| r.url.clone()),
                url: r.url,
                snippet: r.snippet,
            })
            .collect(),
        (_, Some(urls)) => urls
            .into_iter()
            .map(|u| WebSource {
                title: u.clone(),
                url: u,
                snippet: None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let usage = answer.usage.unwrap_or(Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
    });
    Ok(ResearchResult {
        answer: choice.message.content,
        sources,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    })
}

#[async_trait::async_trait]
impl ResearchProvider for PerplexityClient {
    fn name(&self) -> &str {
        &self.config.model
    }

    async fn research(
        &self,
        question: &str,
        language: &str,
        observer: &dyn CallObserver,
    ) -> Result<ResearchResult, ProviderError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": format!(
                    "You research topics for a podcast. Answer in the language with BCP-47 tag {language}. \
                     Give the key facts, figures, dates and disagreements, each with a citation marker like [1].")},
                {"role": "user", "content": question},
            ],
        });
        let (result, _) = http::with_retries(&self.config.http, observer, || async {
            let mut req = self.client.post(&url).json(&body);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let response = req.send().await.map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let retry_after = http::retry_after(&response);
            let text = response.text().await.map_err(|e| http::transport_error(&e))?;
            if !status.is_success() {
                return Err(http::status_error(status, retry_after, &text));
            }
            parse_answer(&text)
        })
        .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_come_from_citations_or_search_results() {
        let with_citations = r#"{"choices":[{"message":{"content":"Cats purr [1]."},"finish_reason":"stop"}],
            "citations":["https://a.example/cats"]}"#;
        let r = parse_answer(with_citations).unwrap();
        assert_eq!(
            r.sources,
            vec![WebSource {
                title: "https://a.example/cats".into(),
                url: "https://a.example/cats".into(),
                snippet: None
            }]
        );
        let with_results = r#"{"choices":[{"message":{"content":"Cats purr [1]."},"finish_reason":"stop"}],
            "search_results":[{"title":"Purring","url":"https://b.example/purr","snippet":"Cats purr at 25 Hz"}]}"#;
        let r = parse_answer(with_results).unwrap();
        assert_eq!(r.sources[0].title, "Purring");
        assert_eq!(r.sources[0].snippet.as_deref(), Some("Cats purr at 25 Hz"));
        assert!(parse_answer(r#"{"choices":[{"message":{"content":"x"},"finish_reason":null}]}"#).is_err());
    }
}
