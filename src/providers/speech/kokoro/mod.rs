//! Embedded speech: Kokoro-82M (Apache-2.0, int8 ONNX, 92 MB) on ONNX
//! Runtime's CPU backend, with text phonemized by the `espeak-ng` program.
//!
//! # What this module owns and must not know
//! It owns loading ONNX Runtime and the model, phonemizing ([`phonemize`]),
//! voice packs ([`voices`]), chunking text to the model's 510-token window
//! and running inference. It knows nothing of podcasts, mixing or files
//! other than its own assets, which [`super::fetch`] installs.
//!
//! # Runtime
//! `libonnxruntime.so.1.32.0` (from the PyPI wheel `onnxruntime` 1.32.0, MIT)
//! is loaded at run time through `ort`'s `load-dynamic` (`ort::init_from` with
//! the full path, after checking the file exists, because ort's error drops
//! dlopen's reason). ONNX Runtime allows one environment per process, so it
//! is created once and kept in a process-wide slot; every provider shares it.
//!
//! # Threads
//! Inference is CPU-bound and blocking: [`KokoroProvider::synthesize`] runs
//! it on tokio's blocking pool. `Session::run` takes `&mut self`, so one
//! inference runs at a time per provider (a mutex); phonemizing (a child
//! process) happens outside the lock. The intra-op thread count is
//! configurable (default 1, [`KokoroConfig::threads`]); spinning is off
//! because on a 2-core machine shared with other work a spinning pool burns
//! the other core for nothing.
//!
//! # Text to audio
//! Text is split at sentence boundaries into pieces of at most
//! [`CHUNK_CHARS`] characters; each piece is phonemized and, if it still has
//! more than [`MAX_PHONEMES`] ids, split again. Each chunk is one model call
//! with tokens `[0] + ids + [0]`, style = row N of the voice pack (N = number
//! of ids) and speed; the 24 kHz outputs are concatenated, each with its
//! edge silence trimmed to [`CHUNK_EDGE`].

pub mod phonemize;
pub mod voices;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use self::phonemize::Vocab;
pub use self::voices::{KokoroVoice, catalog};
use super::text::{Limit, split_sentences};
use super::{CallObserver, Clip, InputLimit, SpeechError, SpeechProvider, SpeechRequest, VoiceInfo, fetch};

/// Output sample rate of Kokoro, Hz.
pub const SAMPLE_RATE: u32 = 24_000;
/// Token ids per call including the two padding ids.
pub const MAX_TOKENS: usize = 510;
/// Phoneme ids per call (without padding).
pub const MAX_PHONEMES: usize = MAX_TOKENS - 2;
/// Characters of text per chunk before phonemizing: English IPA runs about
/// one phoneme per character, so this stays well under [`MAX_PHONEMES`] and
/// keeps each call about one or two sentences (which Kokoro reads best).
pub const CHUNK_CHARS: usize = 300;
/// Silence kept at each end of a chunk's audio: Kokoro pads each call with
/// 0.3 to 0.6 s, so two chunks joined as they come would pause about a second
/// mid-turn; trimmed, a join pauses at most twice this (a sentence break).
pub const CHUNK_EDGE: Duration = Duration::from_millis(150);
/// Level under which chunk edges count as silence (about -46 dBFS).
pub const EDGE_THRESHOLD: f32 = 0.005;

/// Where the engine's files are and how it runs.
#[derive(Debug, Clone)]
pub struct KokoroConfig {
    /// `kokoro-v1.0.int8.onnx`.
    pub model: PathBuf,
    /// `vocab.json` (phoneme symbol -> token id).
    pub vocab: PathBuf,
    /// Directory of `<voice>.bin` packs.
    pub voices_dir: PathBuf,
    /// `libonnxruntime.so.1.32.0`.
    pub runtime: PathBuf,
    /// The espeak-ng program (a name looked up in `PATH`, or a path).
    pub espeak: PathBuf,
    /// Intra-op threads of the session (default 1).
    pub threads: usize,
}

impl KokoroConfig {
    /// The files as `podforge model fetch` lays them out under `speech_dir`
    /// (`<data_dir>/speech`), espeak-ng from `PATH`, one thread.
    pub fn in_dir(speech_dir: &Path) -> Self {
        let assets = fetch::SpeechAssets::in_dir(speech_dir);
        Self {
            model: assets.model,
            vocab: assets.vocab,
            voices_dir: assets.voices_dir,
            runtime: assets.runtime,
            espeak: PathBuf::from("espeak-ng"),
            threads: 1,
        }
    }
}

/// The process's ONNX Runtime environment (one per process is allowed).
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

fn engine(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Engine(e.to_string())
}

/// Loads ONNX Runtime from `runtime` once per process and returns the
/// environment (later calls return the same one, whatever the path).
///
/// Errors: [`SpeechError::ModelMissing`] when the file is missing,
/// [`SpeechError::Engine`] when it cannot be loaded.
pub fn environment(runtime: &Path) -> Result<Environment, SpeechError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    if !runtime.is_file() {
        return Err(SpeechError::ModelMissing(format!(
            "ONNX Runtime is missing at {}: run `podforge model fetch`",
            runtime.display()
        )));
    }
    let env = ort::init_from(runtime)
        .map_err(|e| engine(format!("loading ONNX Runtime from {}: {e}", runtime.display())))?
        .with_name("podforge")
        .build()
        .map_err(|e| engine(format!("creating the ONNX Runtime environment: {e}")))?;
    *slot = Some(env.clone());
    Ok(env)
}

struct Inner {
    config: KokoroConfig,
    session: Mutex<Session>,
    tokens_input: String,
    vocab: Vocab,
    packs: Mutex<HashMap<&'static str, Arc<Vec<f32>>>>,
}

/// Kokoro as a [`SpeechProvider`] (name `kokoro`, model `kokoro-v1.0-int8`).
pub struct KokoroProvider {
    inner: Arc<Inner>,
    load_elapsed: Duration,
}

impl KokoroProvider {
    /// Loads ONNX Runtime (once per process), the model and the symbol
    /// table; voice packs load on first use. Blocking, about 0.5 s: call it
    /// from `spawn_blocking` in async code.
    ///
    /// Errors: [`SpeechError::ModelMissing`] (one line naming the file and
    /// `podforge model fetch`) when a file is missing; [`SpeechError::Engine`]
    /// when ONNX Runtime or the model fails to load.
    pub fn load(config: KokoroConfig) -> Result<Self, SpeechError> {
        let started = Instant::now();
        if !config.model.is_file() {
            return Err(SpeechError::ModelMissing(format!(
                "the Kokoro model is missing at {}: run `podforge model fetch`",
                config.model.display()
            )));
        }
        let vocab = Vocab::load(&config.vocab)?;
        let env = environment(&config.runtime)?;
        let session = Session::builder(&env)
            .map_err(engine)?
            .with_intra_threads(config.threads.max(1))
            .map_err(engine)?
            .with_inter_threads(1)
            .map_err(engine)?
            .with_intra_op_spinning(false)
            .map_err(engine)?
            .commit_from_file(&config.model)
            .map_err(|e| engine(format!("loading {}: {e}", config.model.display())))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        let tokens_input = ["tokens", "input_ids"]
            .into_iter()
            .find(|n| names.contains(n))
            .ok_or_else(|| engine(format!("the model's inputs {names:?} have no tokens input")))?
            .to_owned();
        if !names.contains(&"style") || !names.contains(&"speed") {
            return Err(engine(format!("the model's inputs {names:?} lack style or speed")));
        }
        let load_elapsed = started.elapsed();
        tracing::info!(
            tts.model = "kokoro-v1.0-int8",
            load_ms = load_elapsed.as_millis() as u64,
            threads = config.threads.max(1),
            "speech model loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                session: Mutex::new(session),
                tokens_input,
                vocab,
                packs: Mutex::new(HashMap::new()),
            }),
            load_elapsed,
        })
    }

    /// Time [`KokoroProvider::load`] took (runtime, model, vocab).
    pub fn load_elapsed(&self) -> Duration {
        self.load_elapsed
    }

    /// Intra-op threads of the session.
    pub fn threads(&self) -> usize {
        self.inner.config.threads.max(1)
    }

    /// The IPA Kokoro reads for `text` in `voice` (for checks and debugging).
    /// Blocking: runs espeak-ng.
    ///
    /// Errors: [`SpeechError::VoiceUnknown`], or as [`phonemize::phonemize`].
    pub fn phonemes(&self, voice: &str, text: &str) -> Result<String, SpeechError> {
        let v = voices::find(voice)?;
        phonemize::phonemize(&self.inner.config.espeak, v.espeak, v.is_us_english(), text)
    }

    /// Synthesizes on the calling thread (blocking; what
    /// [`SpeechProvider::synthesize`] runs on the blocking pool). Returns the
    /// unchecked clip at 24 kHz.
    ///
    /// Errors: as [`SpeechProvider::synthesize`].
    pub fn synthesize_blocking(&self, request: &SpeechRequest) -> Result<Clip, SpeechError> {
        let voice = voices::find(&request.voice)?;
        self.inner.speak(voice, &request.text, request.speed)
    }
}

impl Inner {
    fn pack(&self, voice: &'static KokoroVoice) -> Result<Arc<Vec<f32>>, SpeechError> {
        if let Some(p) = self.packs.lock().unwrap_or_else(PoisonError::into_inner).get(voice.id) {
            return Ok(p.clone());
        }
        let path = self.config.voices_dir.join(format!("{}.bin", voice.id));
        let pack = Arc::new(voices::load_pack(&path)?);
        self.packs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(voice.id, pack.clone());
        Ok(pack)
    }

    /// Token-id chunks (without padding) of `text`, each at most
    /// [`MAX_PHONEMES`]; pieces that phonemize to more are split again.
    fn chunks(
        &self,
        voice: &KokoroVoice,
        text: &str,
        chars: usize,
        out: &mut Vec<Vec<i64>>,
    ) -> Result<(), SpeechError> {
        for piece in split_sentences(text, Limit::Chars(chars)) {
            let ipa = phonemize::phonemize(&self.config.espeak, voice.espeak, voice.is_us_english(), &piece)?;
            let mut ids = self.vocab.encode(&ipa);
            if ids.is_empty() {
                continue;
            }
            if ids.len() > MAX_PHONEMES {
                let shorter = (piece.chars().count() / 2).max(1);
                if shorter >= 16 && split_sentences(&piece, Limit::Chars(shorter)).len() > 1 {
                    self.chunks(voice, &piece, shorter, out)?;
                    continue;
                }
                tracing::warn!(
                    phonemes = ids.len(),
                    "an unsplittable piece exceeds Kokoro's window; cut"
                );
                ids.truncate(MAX_PHONEMES);
            }
            out.push(ids);
        }
        Ok(())
    }

    fn infer(&self, ids: &[i64], style: &[f32], speed: f32) -> Result<Vec<f32>, SpeechError> {
        let mut tokens = Vec::with_capacity(ids.len() + 2);
        tokens.push(0);
        tokens.extend_from_slice(ids);
        tokens.push(0);
        let n = tokens.len();
        let tokens = Tensor::from_array(([1usize, n], tokens)).map_err(engine)?;
        let style = Tensor::from_array(([1usize, voices::STYLE_DIM], style.to_vec())).map_err(engine)?;
        let speed = Tensor::from_array(([1usize], vec![speed])).map_err(engine)?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs![
                self.tokens_input.as_str() => tokens,
                "style" => style,
                "speed" => speed,
            ])
            .map_err(|e| engine(format!("inference: {e}")))?;
        if outputs.len() == 0 {
            return Err(engine("the model returned no output"));
        }
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(engine)?;
        Ok(audio.to_vec())
    }

    fn speak(&self, voice: &'static KokoroVoice, text: &str, speed: f32) -> Result<Clip, SpeechError> {
        if !text.chars().any(char::is_alphanumeric) {
            return Err(SpeechError::EmptyText);
        }
        let started = Instant::now();
        let pack = self.pack(voice)?;
        let mut chunks = Vec::new();
        self.chunks(voice, text, CHUNK_CHARS, &mut chunks)?;
        if chunks.is_empty() {
            return Err(SpeechError::EmptyText);
        }
        let phonemized = started.elapsed();
        let speed = if speed.is_finite() { speed.clamp(0.5, 2.0) } else { 1.0 };
        let mut clip = Clip::new(Vec::new(), SAMPLE_RATE);
        for ids in &chunks {
            let mut audio = Clip::new(
                self.infer(ids, voices::style_row(&pack, ids.len()), speed)?,
                SAMPLE_RATE,
            );
            audio.trim_silence(EDGE_THRESHOLD, CHUNK_EDGE);
            clip.samples.extend(audio.samples);
        }
        let elapsed = started.elapsed();
        tracing::debug!(
            tts.voice = voice.id,
            chunks = chunks.len(),
            chars = text.chars().count(),
            audio_ms = (clip.duration_secs() * 1000.0) as u64,
            phonemize_ms = phonemized.as_millis() as u64,
            duration_ms = elapsed.as_millis() as u64,
            "kokoro synthesized"
        );
        Ok(clip)
    }
}

#[async_trait::async_trait]
impl SpeechProvider for KokoroProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn voices(&self) -> Vec<VoiceInfo> {
        voice_infos()
    }

    fn max_input(&self) -> InputLimit {
        InputLimit::PhonemeTokens(MAX_TOKENS)
    }

    async fn synthesize_observed(
        &self,
        request: SpeechRequest,
        _observer: &dyn CallObserver,
    ) -> Result<Clip, SpeechError> {
        let voice = voices::find(&request.voice)?;
        let inner = self.inner.clone();
        let clip = tokio::task::spawn_blocking(move || inner.speak(voice, &request.text, request.speed))
            .await
            .map_err(|e| engine(format!("the synthesis task failed: {e}")))??;
        clip.check()?;
        Ok(clip)
    }
}

/// [`SpeechProvider::name`] of the engine, loaded or not.
pub const PROVIDER_NAME: &str = "kokoro";
/// [`SpeechProvider::model`] of the engine (the int8 ONNX export of v1.0).
pub const MODEL_NAME: &str = "kokoro-v1.0-int8";

/// The catalog's voices as [`VoiceInfo`]s.
fn voice_infos() -> Vec<VoiceInfo> {
    catalog().iter().map(KokoroVoice::info).collect()
}

/// Kokoro loaded on first use: the service starts at once (loading takes
/// about half a second and 300 MB), lists voices without the model, and a
/// process that never speaks never loads it. A failed load is reported to
/// the caller and tried again on the next call (e.g. after `podforge model
/// fetch`).
pub struct LazyKokoro {
    config: KokoroConfig,
    loaded: tokio::sync::OnceCell<KokoroProvider>,
}

impl LazyKokoro {
    /// A provider that loads `config` when it first synthesizes.
    pub fn new(config: KokoroConfig) -> Self {
        Self {
            config,
            loaded: tokio::sync::OnceCell::new(),
        }
    }

    /// The loaded engine, loading it now (on the blocking pool) if needed.
    ///
    /// Errors: as [`KokoroProvider::load`].
    pub async fn engine(&self) -> Result<&KokoroProvider, SpeechError> {
        self.loaded
            .get_or_try_init(|| async {
                let config = self.config.clone();
                tokio::task::spawn_blocking(move || KokoroProvider::load(config))
                    .await
                    .map_err(|e| engine(format!("the loading task failed: {e}")))?
            })
            .await
    }

    /// The missing file, if one of the engine's files is missing (checked
    /// without loading anything).
    pub fn missing(&self) -> Option<SpeechError> {
        [&self.config.model, &self.config.vocab, &self.config.runtime]
            .into_iter()
            .find(|p| !p.is_file())
            .map(|p| {
                SpeechError::ModelMissing(format!(
                    "the speech engine's file {} is missing: run `podforge model fetch`",
                    p.display()
                ))
            })
    }
}

#[async_trait::async_trait]
impl SpeechProvider for LazyKokoro {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn voices(&self) -> Vec<VoiceInfo> {
        voice_infos()
    }

    fn max_input(&self) -> InputLimit {
        InputLimit::PhonemeTokens(MAX_TOKENS)
    }

    async fn synthesize_observed(
        &self,
        request: SpeechRequest,
        observer: &dyn CallObserver,
    ) -> Result<Clip, SpeechError> {
        self.engine().await?.synthesize_observed(request, observer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_assets_say_how_to_fetch() {
        let dir = std::env::temp_dir().join(format!("podforge-kokoro-missing-{}", std::process::id()));
        let err = KokoroProvider::load(KokoroConfig::in_dir(&dir)).err().unwrap();
        assert_eq!(err.code(), "MODEL_MISSING");
        assert!(err.to_string().contains("podforge model fetch"), "{err}");
        let err = environment(&dir.join("libonnxruntime.so.1.32.0")).err();
        // Either already loaded by another test in this process, or missing.
        if let Some(err) = err {
            assert_eq!(err.code(), "MODEL_MISSING");
            assert!(err.to_string().contains("podforge model fetch"), "{err}");
        }
    }
}
