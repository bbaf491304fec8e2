//! Wiring: which providers and pipeline a configuration asks for.
//!
//! The one place that turns [`Config`]'s provider settings into clients
//! (OpenAI-compatible, Perplexity, the embedded model) and assembles the
//! pipeline from them, and its speech settings into a speech provider. It
//! sits above `providers` and `pipeline` so that neither needs to know the
//! other's configuration, and below `app`.

use std::sync::Arc;

use crate::config::Config;
use crate::media::store::MediaStore;
use crate::pipeline::Pipeline;
use crate::pipeline::stages::synthesis::Audio;
use crate::providers::speech::SpeechProvider;

/// Builds the generation pipeline the configuration asks for: the standard
/// stages over an OpenAI-compatible model (and Perplexity research when
/// configured), or, with no language model, a pipeline that fails every
/// generation with PROVIDER_NOT_CONFIGURED rather than invent content.
///
/// With `audio` (a speech provider and a media store), the pipeline ends
/// with the synthesis stage.
///
/// Errors: when a provider client cannot be built.
pub fn pipeline_from_config(config: &Config, audio: Option<Audio>) -> anyhow::Result<Pipeline> {
    use crate::config::LlmChoice;
    let p = &config.providers;
    let http = http_policy(config);
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
        audio,
    }))
}

/// Deadlines and retries of provider HTTP calls, from the configuration.
fn http_policy(config: &Config) -> crate::providers::http::HttpPolicy {
    let p = &config.providers;
    crate::providers::http::HttpPolicy {
        connect_timeout: p.connect_timeout,
        read_timeout: p.read_timeout,
        request_timeout: p.request_timeout,
        max_retries: p.max_retries,
        backoff_base: p.backoff_base,
        ..crate::providers::http::HttpPolicy::default()
    }
}

/// The speech provider `PODFORGE_TTS` asks for: the embedded Kokoro engine
/// (loaded on first use, from `<data dir>/speech`), an OpenAI-compatible
/// server, or none (episodes then complete without audio).
///
/// A missing embedded asset is not an error here: it is logged once and
/// each synthesis fails with MODEL_MISSING naming the file and the fix.
///
/// Errors: when the HTTP client cannot be built.
pub fn speech_from_config(config: &Config) -> anyhow::Result<Option<Arc<dyn SpeechProvider>>> {
    use crate::config::TtsChoice;
    use crate::providers::speech::{kokoro, openai};
    let s = &config.speech;
    Ok(match s.tts {
        TtsChoice::None => {
            tracing::info!("speech is off (PODFORGE_TTS=none): episodes complete without audio");
            None
        }
        TtsChoice::Local => {
            let dir = crate::providers::speech::SpeechAssets::under_data_dir(&config.providers.data_dir).dir;
            let engine = kokoro::LazyKokoro::new(kokoro::KokoroConfig {
                threads: s.threads,
                ..kokoro::KokoroConfig::in_dir(&dir)
            });
            if let Some(missing) = engine.missing() {
                tracing::warn!(error = %missing, "the speech engine is unavailable: synthesis will fail with MODEL_MISSING");
            }
            Some(Arc::new(engine))
        }
        TtsChoice::OpenAi => {
            let mut c = openai::OpenAiSpeechConfig::new(s.openai_base_url.clone(), s.openai_model.clone());
            c.api_key = s.openai_api_key.clone();
            c.max_chars = s.openai_max_chars;
            c.http = http_policy(config);
            Some(Arc::new(openai::OpenAiSpeech::new(c)?))
        }
    })
}

/// The synthesis settings for `speech` and `store` from `PODFORGE_TTS_*`.
pub fn audio_from_config(config: &Config, speech: Arc<dyn SpeechProvider>, store: MediaStore) -> Audio {
    let s = &config.speech;
    Audio {
        concurrency: s.concurrency,
        speed: s.speed,
        attempts: s.attempts,
        ..Audio::new(speech, store)
    }
}
