//! The embedded model behind the same [`LanguageModel`] trait as hosted ones.
//!
//! Every request the stages make carries a JSON schema; the local engine
//! ([`super::local`]) emits the schema's structure itself and lets the model
//! fill in values, so answers are schema-valid by construction. Generation is
//! CPU-bound and runs on tokio's blocking pool; dropping the call's future
//! (a cancelled generation) stops it at the next token.
//!
//! Engine choice (measured on this 2-core machine, see README): candle (pure
//! Rust) builds with no system packages in about 8 minutes of CPU and runs
//! SmolLM2-135M at 21 to 28 tokens/s on one thread after re-quantizing to
//! Q8_0, 250 to 310 MB peak; llama.cpp through `llama-cpp-2` runs 40 to 53
//! tokens/s but needs cmake, clang and libclang-dev and 16 minutes of CPU in
//! every fresh CI clone. Candle wins for a default that must build anywhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::local::{self, GuidedRequest, LocalError, LocalModel, LocalModelOptions};
use super::{CallObserver, ChatRequest, ChatResponse, FinishReason, LanguageModel, ProviderError, Role, TokenUsage};

/// Longest string the local model is asked to write in one field: its
/// output drifts less in short turns, and the stages split budgets into
/// turns anyway.
const MAX_FIELD_CHARS: u64 = 360;

/// Settings of the embedded model.
#[derive(Debug, Clone)]
pub struct LocalLlmConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Context window to plan prompts for (at most the model's), tokens.
    pub context_tokens: usize,
    /// Sampling temperature (0.3 to 0.4 keeps the small model on topic).
    pub temperature: f32,
    /// Seed, for reproducible output.
    pub seed: u64,
}

/// The embedded model as a [`LanguageModel`].
pub struct LocalLlm {
    model: Arc<LocalModel>,
    config: LocalLlmConfig,
    name: String,
    generated: Arc<AtomicU64>,
}

/// The path of the default model under `data_dir`.
pub fn default_model_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join(local::DEFAULT_MODEL_FILE)
}

impl LocalLlm {
    /// Loads the model (about 1.5 s).
    ///
    /// Errors: a missing file gives one line saying how to fetch it.
    pub fn load(config: LocalLlmConfig) -> anyhow::Result<Self> {
        if !config.model_path.exists() {
            anyhow::bail!(
                "the local model is missing at {}: run `podforge model fetch` (or set PODFORGE_MODEL_PATH, or configure OPENAI_API_KEY)",
                config.model_path.display()
            );
        }
        let model = LocalModel::load(&config.model_path, LocalModelOptions::default())?;
        let name = format!("{} (local)", model.name());
        tracing::info!(llm.model = %name, load_ms = model.load_elapsed().as_millis() as u64, threads = model.threads(), "local model loaded");
        Ok(Self {
            model: Arc::new(model),
            config,
            name,
            generated: Arc::new(AtomicU64::new(0)),
        })
    }
}

/// Caps string lengths in a schema for the small model.
fn shorten(schema: &serde_json::Value) -> serde_json::Value {
    match schema {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = if k == "maxLength" {
                    serde_json::Value::from(v.as_u64().unwrap_or(MAX_FIELD_CHARS).min(MAX_FIELD_CHARS))
                } else {
                    shorten(v)
                };
                (k.clone(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(items) => items.iter().map(shorten).collect::<Vec<_>>().into(),
        other => other.clone(),
    }
}

/// Sets a flag when dropped: the blocking generation polls it.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl LanguageModel for LocalLlm {
    fn name(&self) -> &str {
        &self.name
    }

    fn context_tokens(&self) -> usize {
        self.config.context_tokens.min(self.model.context_length())
    }

    fn tokens_generated(&self) -> Option<u64> {
        Some(self.generated.load(Ordering::Relaxed))
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        _observer: &dyn CallObserver,
    ) -> Result<ChatResponse, ProviderError> {
        let Some(schema) = &request.schema else {
            return Err(ProviderError::Rejected(
                "the local model answers structured requests only".into(),
            ));
        };
        let messages = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => local::Role::System,
                    Role::User => local::Role::User,
                    Role::Assistant => local::Role::Assistant,
                };
                local::ChatMessage::new(role, m.content.clone())
            })
            .collect();
        let guided = GuidedRequest {
            messages,
            schema: shorten(&schema.schema),
            max_tokens: request.max_tokens,
            temperature: self.config.temperature,
            seed: self.config.seed,
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let (model, generated) = (self.model.clone(), self.generated.clone());
        let flag = cancelled.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut last = 0u32;
            let mut on_token = |n: u32| {
                if n > last {
                    generated.fetch_add(u64::from(n - last), Ordering::Relaxed);
                }
                last = n;
            };
            model.generate(&guided, &|| flag.load(Ordering::SeqCst), &mut on_token)
        })
        .await
        .map_err(|e| ProviderError::Unavailable(format!("the local model's task failed: {e}")))?;
        let response = result.map_err(|e| match e.downcast_ref::<LocalError>() {
            Some(LocalError::ContextLength { .. }) => ProviderError::ContextLength,
            Some(LocalError::Cancelled) => ProviderError::Cancelled,
            Some(other) => ProviderError::Rejected(other.to_string()),
            None => ProviderError::Unavailable(format!("the local model failed: {e:#}")),
        })?;
        tracing::debug!(
            llm.model = %self.name,
            tokens.prompt = response.prompt_tokens,
            tokens.completion = response.completion_tokens,
            duration_ms = response.elapsed.as_millis() as u64,
            "local completion"
        );
        Ok(ChatResponse {
            content: response.value.to_string(),
            finish: FinishReason::Stop,
            usage: TokenUsage {
                prompt: u64::from(response.prompt_tokens),
                completion: u64::from(response.completion_tokens),
            },
            latency: response.elapsed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_fields_are_shortened_for_the_small_model() {
        let s = json!({"type": "object", "properties": {"text": {"type": "string", "maxLength": 1200}, "t": {"type": "string", "maxLength": 80}}});
        assert_eq!(shorten(&s)["properties"]["text"]["maxLength"], 360);
        assert_eq!(shorten(&s)["properties"]["t"]["maxLength"], 80);
    }

    #[test]
    fn a_missing_model_is_one_clear_line() {
        let err = LocalLlm::load(LocalLlmConfig {
            model_path: PathBuf::from("/nonexistent/model.gguf"),
            context_tokens: 4096,
            temperature: 0.4,
            seed: 1,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("podforge model fetch") && !err.contains('\n'), "{err}");
    }
}
