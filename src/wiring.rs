//! Wiring: which providers and pipeline a configuration asks for.
//!
//! The one place that turns [`Config`]'s provider settings into clients
//! (OpenAI-compatible, Perplexity, the embedded model) and assembles the
//! pipeline from them. It sits above `providers` and `pipeline` so that
//! neither needs to know the other's configuration, and below `app`.

use std::sync::Arc;

use crate::config::Config;
use crate::pipeline::Pipeline;

/// Builds the generation pipeline the configuration asks for: the standard
/// stages over an OpenAI-compatible model (and Perplexity research when
/// configured), or, with no language model, a pipeline that fails every
/// generation with PROVIDER_NOT_CONFIGURED rather than invent content.
///
/// Errors: when a provider client cannot be built.
pub fn pipeline_from_config(config: &Config) -> anyhow::Result<Pipeline> {
    use crate::config::LlmChoice;
    use crate::providers::http::HttpPolicy;
    let p = &config.providers;
    let http = HttpPolicy {
        connect_timeout: p.connect_timeout,
        read_timeout: p.read_timeout,
        request_timeout: p.request_timeout,
        max_retries: p.max_retries,
        backoff_base: p.backoff_base,
        ..HttpPolicy::default()
    };
    let llm: Option<Arc<dyn crate::providers::LanguageModel>> = match p.llm {
        LlmChoice::OpenAi => Some(Arc::new(crate::providers::openai::OpenAiClient::new(
            crate::providers::openai::OpenAiConfig {
                base_url: p.openai_base_url.clone(),
                api_key: p.openai_api_key.clone(),
                model: p.llm_model.clone(),
                context_tokens: p.llm_context_tokens,
                http: http.clone(),
            },
        )?)),
        LlmChoice::Local => {
            let model_path = p
                .model_path
                .clone()
                .unwrap_or_else(|| crate::providers::local_llm::default_model_path(&p.data_dir));
            match crate::providers::local_llm::LocalLlm::load(crate::providers::local_llm::LocalLlmConfig {
                model_path,
                context_tokens: p.local_context_tokens,
                temperature: 0.4,
                seed: 7,
            }) {
                Ok(model) => Some(Arc::new(model)),
                Err(e) => {
                    tracing::warn!(error = %e, "the local model is unavailable: generations will fail with MODEL_MISSING");
                    return Ok(Pipeline::unavailable(
                        crate::domain::FailureCode::ModelMissing,
                        e.to_string(),
                    ));
                }
            }
        }
        LlmChoice::None => None,
    };
    let Some(llm) = llm else {
        tracing::warn!("no language model configured: generations will fail with PROVIDER_NOT_CONFIGURED");
        return Ok(Pipeline::unconfigured());
    };
    let research: Option<Arc<dyn crate::providers::ResearchProvider>> = match &p.perplexity_base_url {
        Some(base) => Some(Arc::new(crate::providers::perplexity::PerplexityClient::new(
            crate::providers::perplexity::PerplexityConfig {
                base_url: base.clone(),
                api_key: p.perplexity_api_key.clone(),
                model: p.research_model.clone(),
                http,
            },
        )?)),
        None => None,
    };
    tracing::info!(llm.model = %llm.name(), research = research.is_some(), "generation pipeline ready");
    Ok(Pipeline::standard(crate::pipeline::stages::Providers {
        llm: Some(llm),
        research,
        fetch: crate::sources::FetchLimits {
            max_bytes: p.fetch_max_bytes,
            timeout: p.fetch_timeout,
            allow_private: p.allow_private_urls,
            ..crate::sources::FetchLimits::default()
        },
        script_concurrency: p.script_concurrency,
    }))
}
