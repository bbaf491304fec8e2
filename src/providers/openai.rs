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
//!
//! The stream is decoded into whole events before anything is read from
//! them (`eventsource-stream`, which follows the HTML event-stream grammar
//! and holds back the bytes of a UTF-8 character or a line until the rest
//! arrives): network reads end anywhere, inside a `data:` line or inside a
//! character. An error in the stream (an `error` event, or a `data:` line
//! carrying `{"error": {...}}`) fails the call with the provider's message
//! and code ([`http::stream_error`]; server errors and overload are retried).
//! A `finish_reason` of `length` is reported as [`FinishReason::Length`],
//! which callers must not take as a complete answer (the structured caller
//! asks once for a shorter one, then fails with OUTPUT_TRUNCATED).

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
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
    /// An error reported mid-stream (`{"error": {"message", "type", "code"}}`).
    #[serde(default)]
    error: Option<serde_json::Value>,
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

/// Accumulates a streamed completion from its events.
#[derive(Default)]
struct StreamState {
    content: String,
    refusal: String,
    finish: Option<String>,
    usage: Option<TokenUsage>,
    done: bool,
}

impl StreamState {
    /// Takes one whole server-sent event: a `chat.completion.chunk`, the
    /// `[DONE]` marker, or an error.
    fn event(&mut self, event: &Event) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if event.event == "error" {
            // `data` is an error object, `{"error": {...}}`, or plain text.
            let value: serde_json::Value = serde_json::from_str(data).unwrap_or_else(|_| json!({"message": data}));
            let error = value.get("error").filter(|e| e.is_object()).unwrap_or(&value);
            return Err(http::stream_error(error));
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|_| ProviderError::InvalidResponse("a streamed event is not valid JSON".into()))?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(http::stream_error(&error));
        }
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

/// Reads a streamed completion from the body's bytes, split anywhere: the
/// bytes are decoded into whole events first. `idle` is the longest silence
/// allowed; `transport` maps a read error.
async fn read_stream<S, B, E>(
    body: S,
    idle: Duration,
    transport: impl Fn(E) -> ProviderError,
) -> Result<(String, FinishReason, TokenUsage), ProviderError>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut events = std::pin::pin!(body.eventsource());
    let mut state = StreamState::default();
    loop {
        match tokio::time::timeout(idle, events.next()).await {
            Err(_) => {
                return Err(ProviderError::Unavailable(format!(
                    "the stream stalled for {} s",
                    idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(EventStreamError::Transport(e)))) => return Err(transport(e)),
            Ok(Some(Err(EventStreamError::Utf8(_)))) => {
                return Err(ProviderError::InvalidResponse("the stream is not valid UTF-8".into()));
            }
            Ok(Some(Err(EventStreamError::Parser(_)))) => {
                return Err(ProviderError::InvalidResponse(
                    "the stream is not a valid event stream".into(),
                ));
            }
            Ok(Some(Ok(event))) => {
                state.event(&event)?;
                if state.done {
                    break;
                }
            }
        }
    }
    state.finish()
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
            read_stream(response.bytes_stream(), idle, |e| http::transport_error(&e)).await
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
    use proptest::prelude::*;

    use super::*;

    /// Decodes a stream delivered in `reads`.
    fn decode(reads: Vec<Vec<u8>>) -> Result<(String, FinishReason, TokenUsage), ProviderError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let body = futures_util::stream::iter(reads.into_iter().map(Ok::<_, std::convert::Infallible>));
        rt.block_on(read_stream(body, Duration::from_secs(5), |e| match e {}))
    }

    /// The event stream an OpenAI-compatible server sends for `text`, in
    /// content pieces of `piece` characters, with `\r\n` line ends if `crlf`.
    fn sse_bytes(text: &str, piece: usize, crlf: bool) -> Vec<u8> {
        let chars: Vec<char> = text.chars().collect();
        let mut events: Vec<serde_json::Value> = chars
            .chunks(piece)
            .map(|c| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": c.iter().collect::<String>()}, "finish_reason": null}]}))
            .collect();
        events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
        events.push(json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}));
        let end = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for e in events {
            // serde_json writes non-ASCII characters as raw UTF-8, as servers do.
            out.push_str(&format!("data: {e}{end}{end}"));
        }
        out.push_str(&format!(": keep-alive comment{end}{end}data: [DONE]{end}{end}"));
        out.into_bytes()
    }

    #[test]
    fn streams_are_assembled_and_cut_offs_refused() {
        let whole = b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\\\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\":1}\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let (c, f, u) = decode(vec![whole[..70].to_vec(), whole[70..].to_vec()]).unwrap();
        assert_eq!(
            (c.as_str(), f, u.prompt, u.completion),
            ("{\"a\":1}", FinishReason::Stop, 5, 2)
        );
        let cut = b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\"}}]}\n\n".to_vec();
        assert!(matches!(decode(vec![cut]), Err(ProviderError::Unavailable(_))));
        let invalid = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}\n\n".to_vec();
        assert!(matches!(decode(vec![invalid]), Err(ProviderError::InvalidResponse(_))));
    }

    #[test]
    fn errors_in_the_stream_fail_the_call() {
        let error_event = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\nevent: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(
            decode(vec![error_event.to_vec()]),
            Err(ProviderError::Unavailable("Overloaded (overloaded_error)".into()))
        );
        let anthropic =
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal\"}}\n\n";
        assert_eq!(
            decode(vec![anthropic.to_vec()]),
            Err(ProviderError::Unavailable("Internal (api_error)".into()))
        );
        let plain = b"event: error\ndata: upstream went away\n\n";
        assert_eq!(
            decode(vec![plain.to_vec()]),
            Err(ProviderError::Rejected("upstream went away (no code)".into()))
        );
        let in_data = b"data: {\"error\":{\"message\":\"Bad schema\",\"type\":\"invalid_request_error\",\"code\":\"invalid_schema\"}}\n\n";
        assert_eq!(
            decode(vec![in_data.to_vec()]),
            Err(ProviderError::Rejected("Bad schema (invalid_schema)".into()))
        );
        let length = b"data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"a\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(decode(vec![length.to_vec()]).unwrap().1, FinishReason::Length);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            proptest::collection::vec(
                prop_oneof![
                    Just('猫'),
                    Just('是'),
                    Just('。'),
                    Just('é'),
                    Just('🎉'),
                    Just('\u{1F469}'),
                    Just('\u{200D}'),
                    Just('\n'),
                    Just('"'),
                    Just('\\'),
                    Just(' '),
                    any::<char>(),
                ],
                0..120
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever the text (CJK, emoji, escapes) and wherever the network
        /// cuts the stream's bytes, the decoded answer is the text.
        #[test]
        fn any_text_survives_any_chunking_of_its_stream(
            text in text(),
            piece in 1usize..30,
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..64),
            crlf in any::<bool>(),
        ) {
            let bytes = sse_bytes(&text, piece, crlf);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            at.dedup();
            let reads: Vec<Vec<u8>> = at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect();
            let (content, finish, usage) = decode(reads).unwrap();
            prop_assert_eq!(content, text);
            prop_assert_eq!(finish, FinishReason::Stop);
            prop_assert_eq!(usage.prompt, 5);
        }
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
