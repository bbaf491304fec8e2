//! The OpenAI chat-completions protocol with JSON-schema structured output.
//!
//! One client serves OpenAI, Ollama, vLLM, llama.cpp's server and other
//! compatibles by base URL (`OPENAI_BASE_URL`, default
//! `https://api.openai.com/v1`). Request: `POST {base}/chat/completions` with
//! `model`, `messages`, `max_tokens`, `temperature`, `stream: true` and
//! `response_format: {type: "json_schema", json_schema: {name, strict: true,
//! schema}}`.
//!
//! Answers are streamed (server-sent events) so that the idle-read deadline
//! means what it says: a generation may take minutes, but a server that
//! stops sending for `read_timeout` is stalled. The stream must end with a
//! `finish_reason`; one cut off before it is an error (retried), never a
//! short success. The protocol types are a few serde structs of our own: the
//! crates that model the whole OpenAI API (async-openai) bring far more code
//! and dependencies than these fields.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{self, HttpPolicy};
use super::{CallObserver, ChatRequest, ChatResponse, FinishReason, LanguageModel, ProviderError, TokenUsage};

/// Settings of an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL ending before `/chat/completions`, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// Bearer key; servers without auth (Ollama) need none.
    pub api_key: Option<String>,
    /// Model name.
    pub model: String,
    /// Context window to plan prompts for, tokens.
    pub context_tokens: usize,
    /// Deadlines and retries.
    pub http: HttpPolicy,
}

/// The client.
pub struct OpenAiClient {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAiClient {
    /// A client for `config`.
    ///
    /// Errors: when the HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> anyhow::Result<Self> {
        let client = config.http.client()?;
        Ok(Self { config, client })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [super::ChatMessage],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    stream_options: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
}

/// One server-sent chunk of a streamed completion.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// Accumulates a streamed completion from its `data:` lines.
#[derive(Default)]
struct StreamState {
    content: String,
    refusal: String,
    finish: Option<String>,
    usage: Option<TokenUsage>,
    done: bool,
    buffer: String,
}

impl StreamState {
    /// Feeds raw bytes; complete lines are parsed.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        while let Some(i) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=i).collect();
            let line = line.trim();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|_| ProviderError::InvalidResponse("a streamed chunk is not valid JSON".into()))?;
            if let Some(u) = chunk.usage {
                self.usage = Some(TokenUsage {
                    prompt: u.prompt_tokens,
                    completion: u.completion_tokens,
                });
            }
            for c in chunk.choices {
                if let Some(t) = c.delta.content {
                    self.content.push_str(&t);
                }
                if let Some(r) = c.delta.refusal {
                    self.refusal.push_str(&r);
                }
                if c.finish_reason.is_some() {
                    self.finish = c.finish_reason;
                }
            }
        }
        Ok(())
    }

    /// The completion once the stream has ended.
    fn finish(self) -> Result<(String, FinishReason, TokenUsage), ProviderError> {
        if !self.refusal.is_empty() {
            return Err(ProviderError::ContentFiltered(self.refusal));
        }
        let usage = self.usage.unwrap_or(TokenUsage {
            prompt: 0,
            completion: crate::sources::estimate_tokens(&self.content) as u64,
        });
        let finish = finish_reason(self.finish.as_deref())?;
        Ok((self.content, finish, usage))
    }
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
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
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Maps a `finish_reason`. A missing one means the answer was cut off
/// upstream: an error (retried), never a short success.
fn finish_reason(reason: Option<&str>) -> Result<FinishReason, ProviderError> {
    match reason {
        Some("stop") | Some("eos") | Some("tool_calls") => Ok(FinishReason::Stop),
        Some("length") => Ok(FinishReason::Length),
        Some("content_filter") => Err(ProviderError::ContentFiltered(
            "the content filter stopped the answer".into(),
        )),
        Some(other) => Err(ProviderError::InvalidResponse(format!(
            "unknown finish_reason {other:?}"
        ))),
        None => Err(ProviderError::Unavailable(
            "the answer ended without a finish reason (cut off)".into(),
        )),
    }
}

/// Interprets a completion body. A missing `finish_reason` means the answer
/// was cut off upstream: an error, never a short success.
fn parse_completion(text: &str) -> Result<(String, FinishReason, TokenUsage), ProviderError> {
    let completion: Completion = serde_json::from_str(text)
        .map_err(|_| ProviderError::Unavailable("the provider's response was cut off or malformed".into()))?;
    let usage = completion
        .usage
        .map(|u| TokenUsage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
        })
        .unwrap_or_default();
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::InvalidResponse("no choices in the completion".into()))?;
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(ProviderError::ContentFiltered(refusal));
    }
    let finish = finish_reason(choice.finish_reason.as_deref())?;
    Ok((choice.message.content.unwrap_or_default(), finish, usage))
}

#[async_trait::async_trait]
impl LanguageModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.config.model
    }

    fn context_tokens(&self) -> usize {
        self.config.context_tokens
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        observer: &dyn CallObserver,
    ) -> Result<ChatResponse, ProviderError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = Body {
            model: &self.config.model,
            messages: &request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream: true,
            stream_options: json!({"include_usage": true}),
            response_format: request.schema.as_ref().map(|s| {
                json!({"type": "json_schema", "json_schema": {"name": s.name, "strict": true, "schema": dialect(&s.schema)}})
            }),
        };
        let (result, latency) = http::with_retries(&self.config.http, observer, || async {
            let mut req = self.client.post(&url).json(&body);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let idle = self.config.http.read_timeout;
            let response = tokio::time::timeout(idle, req.send())
                .await
                .map_err(|_| ProviderError::Unavailable("the provider sent nothing in time".into()))?
                .map_err(|e| http::transport_error(&e))?;
            let status = response.status();
            let retry_after = http::retry_after(&response);
            if !status.is_success() {
                let text = response.text().await.map_err(|e| http::transport_error(&e))?;
                return Err(http::status_error(status, retry_after, &text));
            }
            let is_stream = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if !is_stream {
                // Servers that ignore `stream` answer with one JSON body.
                let text = response.text().await.map_err(|e| http::transport_error(&e))?;
                return parse_completion(&text);
            }
            let mut state = StreamState::default();
            let mut body = response.bytes_stream();
            loop {
                match tokio::time::timeout(idle, futures_util::StreamExt::next(&mut body)).await {
                    Err(_) => {
                        return Err(ProviderError::Unavailable(format!(
                            "the stream stalled for {} s",
                            idle.as_secs()
                        )));
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(http::transport_error(&e)),
                    Ok(Some(Ok(bytes))) => {
                        state.feed(&bytes)?;
                        if state.done {
                            break;
                        }
                    }
                }
            }
            state.finish()
        })
        .await;
        let (content, finish, usage) = result?;
        tracing::debug!(
            llm.model = %self.config.model,
            tokens.prompt = usage.prompt,
            tokens.completion = usage.completion,
            duration_ms = latency.as_millis() as u64,
            "completion"
        );
        Ok(ChatResponse {
            content,
            finish,
            usage,
            latency,
        })
    }
}

/// The schema in OpenAI's strict dialect: string length bounds are not
/// supported there (the request would be refused), so they are removed; the
/// stages check lengths themselves.
pub fn dialect(schema: &serde_json::Value) -> serde_json::Value {
    match schema {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "minLength" | "maxLength"))
            .map(|(k, v)| (k.clone(), dialect(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(dialect).collect::<Vec<_>>().into(),
        other => other.clone(),
    }
}

/// Default context window when the model's is unknown, tokens.
pub const DEFAULT_CONTEXT_TOKENS: usize = 16_000;

/// The `OPENAI_BASE_URL` default.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Converts a `Duration` to whole milliseconds for logs.
pub fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_assembled_and_cut_offs_refused() {
        let mut s = StreamState::default();
        s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\\\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\":1}\"},\"finish_reason\":\"stop\"}]}\n").unwrap();
        s.feed(b"\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
            .unwrap();
        assert!(s.done);
        let (c, f, u) = s.finish().unwrap();
        assert_eq!(
            (c.as_str(), f, u.prompt, u.completion),
            ("{\"a\":1}", FinishReason::Stop, 5, 2)
        );
        let mut cut = StreamState::default();
        cut.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\"}}]}\n\n")
            .unwrap();
        assert!(matches!(cut.finish(), Err(ProviderError::Unavailable(_))));
    }

    #[test]
    fn string_bounds_are_removed_for_strict_mode() {
        let s = json!({"type": "object", "properties": {"t": {"type": "string", "maxLength": 5, "minLength": 1}, "a": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 2}}}});
        assert_eq!(
            dialect(&s),
            json!({"type": "object", "properties": {"t": {"type": "string"}, "a": {"type": "array", "maxItems": 3, "items": {"type": "string"}}}})
        );
    }

    #[test]
    fn completions_are_parsed_and_cut_offs_refused() {
        let ok = r#"{"choices":[{"message":{"content":"{}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let (c, f, u) = parse_completion(ok).unwrap();
        assert_eq!(
            (c.as_str(), f, u.prompt, u.completion),
            ("{}", FinishReason::Stop, 3, 1)
        );
        let cut = r#"{"choices":[{"message":{"content":"{\"a\":"},"finish_reason":null}]}"#;
        assert!(matches!(parse_completion(cut), Err(ProviderError::Unavailable(_))));
        assert!(matches!(
            parse_completion(r#"{"choices":[{"message":{"con"#),
            Err(ProviderError::Unavailable(_))
        ));
        let refused =
            r#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that"},"finish_reason":"stop"}]}"#;
        assert!(matches!(
            parse_completion(refused),
            Err(ProviderError::ContentFiltered(_))
        ));
        let filtered = r#"{"choices":[{"message":{"content":""},"finish_reason":"content_filter"}]}"#;
        assert!(matches!(
            parse_completion(filtered),
            Err(ProviderError::ContentFiltered(_))
        ));
    }
}
