//! External capabilities behind traits: the language model and the research
//! provider, chosen by configuration and held as `Arc<dyn ...>`.
//!
//! Each client hides its HTTP protocol and maps every failure to a
//! [`ProviderError`] with a stable code. Transient failures (429, 5xx,
//! timeouts, cut-off responses) are retried inside the client with backoff
//! that honours `Retry-After`, and every wait is reported to a
//! [`CallObserver`] so the user sees a RETRYING event; auth, quota and
//! content-filter failures fail fast.

pub mod http;
pub mod local;
pub mod local_llm;
pub mod openai;
pub mod perplexity;
pub mod speech;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::FailureCode;

/// A chat role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The request.
    User,
    /// The model's earlier answer (used by the repair turn).
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What they say.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A JSON Schema the answer must satisfy (OpenAI structured outputs:
/// `response_format: {type: "json_schema", json_schema: {name, schema, strict}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchema {
    /// Schema name (letters, digits, `_`), e.g. `podcast_outline`.
    pub name: String,
    /// The schema (every object closed and fully required, as strict mode wants).
    pub schema: serde_json::Value,
}

/// A chat completion request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Structured output schema, if any.
    pub schema: Option<JsonSchema>,
    /// Cap on completion tokens.
    pub max_tokens: u32,
    /// Sampling temperature (0 to 2).
    pub temperature: f32,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The token cap cut it off.
    Length,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

/// A completion.
#[derive(Debug, Clone)]
pub struct ChatResponse {
    /// The answer text (JSON when a schema was given, possibly wrapped).
    pub content: String,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Wall time of the call including retries.
    pub latency: Duration,
}

/// Receives notice of retries, so they can be shown as RETRYING events.
#[async_trait::async_trait]
pub trait CallObserver: Send + Sync {
    /// Attempt `attempt` failed with `code`; the next starts after `delay`.
    async fn retrying(&self, attempt: u32, delay: Duration, code: FailureCode);
}

/// An observer that ignores retries.
pub struct NoObserver;

#[async_trait::async_trait]
impl CallObserver for NoObserver {
    async fn retrying(&self, _attempt: u32, _delay: Duration, _code: FailureCode) {}
}

/// A provider failure, each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 429 after all retries.
    #[error("the provider is rate limiting us")]
    RateLimited {
        /// What the provider asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// 5xx, a timeout, a dropped connection or a cut-off body, after all retries.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// 401/403: the key is wrong or lacks access.
    #[error("the provider refused our credentials (HTTP {0})")]
    Unauthorized(u16),
    /// The account's quota is used up (`insufficient_quota`).
    #[error("the provider account has no quota left")]
    QuotaExhausted,
    /// The provider refused to answer (content filter or refusal).
    #[error("the provider refused the content: {0}")]
    ContentFiltered(String),
    /// The prompt does not fit the model's context window.
    #[error("the prompt exceeds the model's context length")]
    ContextLength,
    /// The request was rejected for another reason (HTTP 400 and the like).
    #[error("the provider rejected the request: {0}")]
    Rejected(String),
    /// The answer was not in the protocol's shape.
    #[error("the provider answered in an unexpected shape: {0}")]
    InvalidResponse(String),
    /// No provider is configured for this capability.
    #[error("{0}")]
    NotConfigured(String),
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl ProviderError {
    /// Stable code, shown as the podcast's `error.code` when a stage fails.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::RateLimited { .. } => FailureCode::ProviderRateLimited,
            Self::Unavailable(_) => FailureCode::ProviderUnavailable,
            Self::Unauthorized(_) => FailureCode::ProviderUnauthorized,
            Self::QuotaExhausted => FailureCode::ProviderQuotaExhausted,
            Self::ContentFiltered(_) => FailureCode::ContentFiltered,
            Self::ContextLength => FailureCode::SourceTooLong,
            Self::Rejected(_) => FailureCode::ProviderRejected,
            Self::InvalidResponse(_) => FailureCode::ProviderInvalidResponse,
            Self::NotConfigured(_) => FailureCode::ProviderNotConfigured,
            Self::Cancelled => FailureCode::Cancelled,
        }
    }

    /// Whether the same call may succeed later (the client retries these
    /// itself first; the job retries the stage after that).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable(_) | Self::InvalidResponse(_)
        )
    }

    /// A delay the provider asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A language model speaking chat completions with structured output.
#[async_trait::async_trait]
pub trait LanguageModel: Send + Sync {
    /// Model name, for logs and usage.
    fn name(&self) -> &str;

    /// Usable context window, in tokens (prompt plus completion).
    fn context_tokens(&self) -> usize;

    /// One completion. Transient failures are retried inside (reported to
    /// `observer`); the error returned is final for this call.
    async fn complete(&self, request: &ChatRequest, observer: &dyn CallObserver)
    -> Result<ChatResponse, ProviderError>;

    /// Completion tokens generated in this process so far, for live rates;
    /// `None` when the model does not count them.
    fn tokens_generated(&self) -> Option<u64> {
        None
    }
}

/// A web source found by research.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSource {
    /// Page title (the URL when the provider gives none).
    pub title: String,
    /// Page URL.
    pub url: String,
    /// A passage from the page, when the provider gives one.
    pub snippet: Option<String>,
}

/// What research found: an answer with bracketed citations `[1]` and the sources they number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResearchResult {
    /// The provider's answer (its `[n]` markers number `sources` from 1).
    pub answer: String,
    /// Sources in citation order.
    pub sources: Vec<WebSource>,
    /// Tokens used.
    pub prompt_tokens: u64,
    /// Tokens used.
    pub completion_tokens: u64,
}

/// A web research provider (Perplexity's sonar models and compatibles).
#[async_trait::async_trait]
pub trait ResearchProvider: Send + Sync {
    /// Model name.
    fn name(&self) -> &str;

    /// Researches `question`, answering in `language` (BCP-47).
    async fn research(
        &self,
        question: &str,
        language: &str,
        observer: &dyn CallObserver,
    ) -> Result<ResearchResult, ProviderError>;
}
