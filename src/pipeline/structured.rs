//! Calling the language model for structured output, and treating what comes
//! back as untrusted input.
//!
//! The answer must parse against the stage's type and pass the stage's
//! checks. One wrapper is stripped first (a leading `<think>` block, then
//! Markdown code fences); if it still fails, the model gets exactly one
//! repair turn showing its answer and the error; after that the stage fails
//! with SCRIPT_INVALID. An answer cut off at the token cap (`finish_reason:
//! length`) is never parsed, even when it happens to be valid JSON: the
//! repair turn asks for a shorter answer, and a second cut-off fails the
//! stage with OUTPUT_TRUNCATED. A context-length error is returned to the
//! stage, which must shrink the prompt: the same request is never sent again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{StageContext, StageError, Usage};
use crate::domain::FailureCode;
use crate::providers::{
    CallObserver, ChatMessage, ChatRequest, FinishReason, JsonSchema, LanguageModel, ProviderError,
};

/// Removes one wrapper around a JSON answer: a leading `<think>...</think>`
/// block, then a Markdown code fence (```` ```json ... ``` ````).
pub fn strip_wrapper(raw: &str) -> &str {
    let mut s = raw.trim();
    if s.starts_with("<think>")
        && let Some(end) = s.find("</think>")
    {
        s = s[end + "</think>".len()..].trim();
    }
    if let Some(rest) = s.strip_prefix("```") {
        let rest = rest.split_once('\n').map_or("", |(_, body)| body);
        s = rest.trim_end().strip_suffix("```").unwrap_or(rest).trim();
    }
    s
}

/// Why a structured call did not produce a value.
#[derive(Debug)]
pub enum CallError {
    /// The prompt does not fit: shrink it and call again.
    ContextLength,
    /// The stage fails with this error.
    Stage(StageError),
}

impl From<StageError> for CallError {
    fn from(e: StageError) -> Self {
        Self::Stage(e)
    }
}

/// The stage error for a provider failure.
pub fn stage_error(e: ProviderError) -> StageError {
    let code = e.code();
    let message = e.to_string();
    match e {
        ProviderError::RateLimited { retry_after } => StageError {
            code,
            message,
            retryable: true,
            retry_after,
        },
        ProviderError::Unavailable(_) | ProviderError::InvalidResponse(_) => StageError::retryable(code, message),
        _ => StageError::fatal(code, message),
    }
}

/// Emits a RETRYING event for each provider retry of one stage.
pub struct StageObserver<'a> {
    ctx: &'a StageContext<'a>,
    label: String,
    count: AtomicU32,
}

impl<'a> StageObserver<'a> {
    /// An observer labelling its events with `label` (e.g. `segment 3`).
    pub fn new(ctx: &'a StageContext<'a>, label: impl Into<String>) -> Self {
        Self {
            ctx,
            label: label.into(),
            count: AtomicU32::new(0),
        }
    }
}

#[async_trait::async_trait]
impl CallObserver for StageObserver<'_> {
    async fn retrying(&self, attempt: u32, delay: Duration, code: FailureCode) {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        let key = format!("{}:{}:{n}", self.ctx.attempt, self.label);
        let message = format!(
            "{} call for {} failed ({code}); retry {attempt} in {:.1} s",
            self.ctx.stage.as_str(),
            self.label,
            delay.as_secs_f64()
        );
        if let Err(e) = self.ctx.retrying(&key, message, delay).await {
            tracing::warn!(error = %e, "recording a RETRYING event failed");
        }
    }
}

/// Accumulates the usage of a stage's calls.
#[derive(Default)]
pub struct UsageMeter(Mutex<Usage>);

impl UsageMeter {
    /// Adds one call.
    pub fn add(&self, prompt: u64, completion: u64, latency: Duration) {
        let mut u = self.0.lock().unwrap_or_else(|e| e.into_inner());
        u.add(Usage {
            calls: 1,
            prompt_tokens: prompt,
            completion_tokens: completion,
            latency_ms: latency.as_millis() as u64,
        });
    }

    /// The total so far.
    pub fn total(&self) -> Usage {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One structured call: request, parse, check, and at most one repair turn.
///
/// `check` runs on the parsed value and returns what is wrong in words the
/// model can act on.
pub async fn call<T: DeserializeOwned>(
    model: &dyn LanguageModel,
    observer: &dyn CallObserver,
    meter: &UsageMeter,
    schema: JsonSchema,
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    check: &(dyn Fn(&T) -> Result<(), String> + Sync),
) -> Result<T, CallError> {
    let mut request = ChatRequest {
        messages,
        schema: Some(schema),
        max_tokens,
        temperature: 0.7,
    };
    let mut last_problem = String::new();
    let mut truncated = false;
    for turn in 0..2 {
        let response = match model.complete(&request, observer).await {
            Ok(r) => r,
            Err(ProviderError::ContextLength) => return Err(CallError::ContextLength),
            Err(e) => return Err(CallError::Stage(stage_error(e))),
        };
        meter.add(response.usage.prompt, response.usage.completion, response.latency);
        truncated = response.finish == FinishReason::Length;
        let problem = if truncated {
            format!("the answer was cut off at the {max_tokens}-token limit; answer more briefly")
        } else {
            match serde_json::from_str::<T>(strip_wrapper(&response.content)) {
                Ok(value) => match check(&value) {
                    Ok(()) => return Ok(value),
                    Err(problem) => problem,
                },
                Err(e) => format!("the answer is not valid JSON for the schema: {e}"),
            }
        };
        tracing::warn!(turn, problem = %problem, bytes = response.content.len(), "model output rejected");
        last_problem = problem.clone();
        if turn == 0 {
            request.messages.push(ChatMessage::assistant(response.content));
            request.messages.push(ChatMessage::user(format!(
                "That answer cannot be used: {problem}. Reply again with only the corrected JSON object, \
                 matching the schema exactly, with no commentary or code fences."
            )));
        }
    }
    if truncated {
        return Err(CallError::Stage(StageError::fatal(
            FailureCode::OutputTruncated,
            format!(
                "the model's answer was cut off at the {max_tokens}-token limit (finish_reason length), \
                 again after it was asked for a shorter one"
            ),
        )));
    }
    Err(CallError::Stage(StageError::fatal(
        FailureCode::ScriptInvalid,
        format!("the model's output stayed invalid after a repair attempt: {last_problem}"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wrapper_is_stripped() {
        assert_eq!(strip_wrapper("  {\"a\":1} "), "{\"a\":1}");
        assert_eq!(strip_wrapper("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_wrapper("```\n{\"a\":1}```"), "{\"a\":1}");
        assert_eq!(strip_wrapper("<think>let me see</think>\n{\"a\":1}"), "{\"a\":1}");
        assert_eq!(strip_wrapper("<think>hmm</think>```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(
            strip_wrapper("Here you go: {\"a\":1}"),
            "Here you go: {\"a\":1}",
            "prose is not a wrapper"
        );
    }
}
