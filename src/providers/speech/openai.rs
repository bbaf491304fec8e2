//! The OpenAI speech protocol: `POST {base}/audio/speech` with JSON
//! `{model, voice, input, response_format, speed}` and an optional bearer
//! key, answered with the audio file. One client serves OpenAI and
//! compatibles (Kokoro-FastAPI, LocalAI, openedai-speech) by base URL.
//!
//! We ask for `wav` (or raw `pcm`: 16-bit little-endian mono at 24 kHz, as
//! OpenAI documents) so no decoder for compressed formats is needed. Every
//! answer is checked before it counts: an empty body, a header-only WAV, a
//! file that does not parse or audio that is all silence is
//! `TTS_BAD_AUDIO`, retried like a 5xx, and never a success.
//!
//! Retries reuse the chat clients' policy ([`crate::providers::http`]): 429
//! (waiting `Retry-After`), 5xx, 408/409/425 and timeouts are retried with
//! backoff; 401/403 and other 4xx fail at once. Text longer than the input
//! limit (4,096 characters at OpenAI) is split at sentence boundaries and
//! the pieces' audio joined.

use serde::Serialize;

use super::text::{Limit, split_sentences};
use super::{CallObserver, Clip, Gender, InputLimit, SpeechError, SpeechProvider, SpeechRequest, VoiceInfo};
use crate::providers::ProviderError;
use crate::providers::http::{self, HttpPolicy};

/// The format asked of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// A RIFF/WAVE file.
    Wav,
    /// Raw 16-bit little-endian mono PCM at [`OpenAiSpeechConfig::pcm_rate`].
    Pcm,
}

impl AudioFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }
}

/// Settings of an OpenAI-compatible speech endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiSpeechConfig {
    /// Base URL ending before `/audio/speech`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Bearer key; local servers need none.
    pub api_key: Option<String>,
    /// Model, e.g. `tts-1`, `gpt-4o-mini-tts`, `kokoro`.
    pub model: String,
    /// The voices to offer; empty means OpenAI's built-in set ([`openai_voices`]).
    pub voices: Vec<VoiceInfo>,
    /// Characters per request (OpenAI: 4,096).
    pub max_chars: usize,
    /// Format asked for.
    pub format: AudioFormat,
    /// Sample rate of `pcm` answers, Hz (OpenAI: 24,000).
    pub pcm_rate: u32,
    /// Deadlines and retries.
    pub http: HttpPolicy,
}

impl OpenAiSpeechConfig {
    /// OpenAI's defaults for `base_url` and `model`: WAV, 4,096 characters,
    /// the default HTTP policy, OpenAI's voices.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            voices: Vec::new(),
            max_chars: 4096,
            format: AudioFormat::Wav,
            pcm_rate: 24_000,
            http: HttpPolicy::default(),
        }
    }
}

/// OpenAI's built-in voices. They speak many languages; they are listed
/// with the languages OpenAI says they are tuned for (English) plus the
/// ones its documentation lists as supported by the models, so
/// [`super::voice_speaks`] answers usefully.
pub fn openai_voices() -> Vec<VoiceInfo> {
    let langs: Vec<String> = [
        "en", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "ja", "zh", "ko", "hi", "ar", "tr", "sv",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    [
        ("alloy", None),
        ("ash", Some(Gender::Male)),
        ("coral", Some(Gender::Female)),
        ("echo", Some(Gender::Male)),
        ("fable", None),
        ("nova", Some(Gender::Female)),
        ("onyx", Some(Gender::Male)),
        ("sage", Some(Gender::Female)),
        ("shimmer", Some(Gender::Female)),
    ]
    .into_iter()
    .map(|(id, gender)| VoiceInfo {
        id: id.to_owned(),
        name: id.to_owned(),
        languages: langs.clone(),
        gender,
        provider: "openai".to_owned(),
    })
    .collect()
}

/// The client.
pub struct OpenAiSpeech {
    config: OpenAiSpeechConfig,
    voices: Vec<VoiceInfo>,
    client: reqwest::Client,
}

impl OpenAiSpeech {
    /// A client for `config`. Installs ring as rustls's process-wide crypto
    /// provider if none is installed yet (reqwest is built with
    /// `rustls-no-provider`).
    ///
    /// Errors: when the HTTP client cannot be built.
    pub fn new(config: OpenAiSpeechConfig) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = config.http.client()?;
        let voices = if config.voices.is_empty() {
            openai_voices()
        } else {
            config.voices.clone()
        };
        Ok(Self { config, voices, client })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    voice: &'a str,
    input: &'a str,
    response_format: &'a str,
    speed: f32,
}

/// Maps the shared HTTP layer's errors to speech errors. The only
/// `InvalidResponse` this client makes is unusable audio.
fn to_speech(e: ProviderError) -> SpeechError {
    match e {
        ProviderError::RateLimited { retry_after } => SpeechError::RateLimited { retry_after },
        ProviderError::Unavailable(m) => SpeechError::Unavailable(m),
        ProviderError::Unauthorized(s) => SpeechError::Unauthorized(s),
        ProviderError::InvalidResponse(m) => SpeechError::BadAudio(m),
        ProviderError::QuotaExhausted => SpeechError::Rejected("the account has no quota left".into()),
        ProviderError::ContextLength => SpeechError::Rejected("the input is too long".into()),
        ProviderError::ContentFiltered(m) | ProviderError::Rejected(m) | ProviderError::NotConfigured(m) => {
            SpeechError::Rejected(m)
        }
        ProviderError::Cancelled => SpeechError::Unavailable("cancelled".into()),
    }
}

/// Decodes raw 16-bit little-endian mono PCM.
fn from_pcm(bytes: &[u8], rate: u32) -> Clip {
    Clip::new(
        bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect(),
        rate,
    )
}

impl OpenAiSpeech {
    /// One request for one piece, checked; errors as the HTTP layer's.
    async fn attempt(&self, voice: &str, input: &str, speed: f32) -> Result<Clip, ProviderError> {
        let url = format!("{}/audio/speech", self.config.base_url.trim_end_matches('/'));
        let body = Body {
            model: &self.config.model,
            voice,
            input,
            response_format: self.config.format.as_str(),
            speed,
        };
        let mut req = self.client.post(&url).json(&body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| http::transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = http::retry_after(&resp);
            let text = resp.text().await.unwrap_or_default();
            return Err(http::status_error(status, retry_after, &text));
        }
        let bytes = resp.bytes().await.map_err(|e| http::transport_error(&e))?;
        let clip = match self.config.format {
            AudioFormat::Wav => Clip::from_wav(&bytes),
            AudioFormat::Pcm if bytes.len() < 2 => Err(crate::media::MediaError::Empty),
            AudioFormat::Pcm => Ok(from_pcm(&bytes, self.config.pcm_rate)),
        }
        .and_then(|c| c.check().map(|()| c));
        clip.map_err(|e| ProviderError::InvalidResponse(e.to_string()))
    }
}

#[async_trait::async_trait]
impl SpeechProvider for OpenAiSpeech {
    fn name(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn voices(&self) -> Vec<VoiceInfo> {
        self.voices.clone()
    }

    fn max_input(&self) -> InputLimit {
        InputLimit::Chars(self.config.max_chars)
    }

    async fn synthesize_observed(
        &self,
        request: SpeechRequest,
        observer: &dyn CallObserver,
    ) -> Result<Clip, SpeechError> {
        if !self.voices.iter().any(|v| v.id == request.voice) {
            return Err(SpeechError::VoiceUnknown(request.voice));
        }
        let pieces = split_sentences(&request.text, Limit::Chars(self.config.max_chars.max(1)));
        if !request.text.chars().any(char::is_alphanumeric) || pieces.is_empty() {
            return Err(SpeechError::EmptyText);
        }
        let speed = if request.speed.is_finite() {
            request.speed.clamp(0.25, 4.0)
        } else {
            1.0
        };
        let mut clip = Clip::default();
        for piece in &pieces {
            let (result, elapsed) = http::with_retries(&self.config.http, observer, || {
                self.attempt(&request.voice, piece, speed)
            })
            .await;
            let part = result.map_err(to_speech)?;
            tracing::debug!(
                tts.model = %self.config.model,
                tts.voice = %request.voice,
                chars = piece.chars().count(),
                audio_ms = (part.duration_secs() * 1000.0) as u64,
                duration_ms = elapsed.as_millis() as u64,
                "speech synthesized"
            );
            clip.append(&part)?;
        }
        Ok(clip)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::media::analysis::median_f0;
    use crate::testing::mock_speech::{MockSpeech, SpeechFault, tone_hz};

    /// Records each retry's delay and code.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Duration, String)>>);

    #[async_trait::async_trait]
    impl CallObserver for Recorder {
        async fn retrying(&self, _attempt: u32, delay: Duration, code: crate::domain::FailureCode) {
            self.0.lock().unwrap().push((delay, code.to_string()));
        }
    }

    fn client(mock: &MockSpeech, retries: u32) -> OpenAiSpeech {
        let mut config = OpenAiSpeechConfig::new(mock.base_url(), "tts-1");
        config.api_key = Some("sk-test".into());
        config.http = HttpPolicy {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_millis(400),
            request_timeout: Duration::from_millis(400),
            max_retries: retries,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5),
        };
        OpenAiSpeech::new(config).unwrap()
    }

    const TEXT: &str = "Hello there, this is a test.";

    #[tokio::test]
    async fn speaks_a_tone_per_voice_and_sends_the_protocol() {
        let mock = MockSpeech::start().await.unwrap();
        let c = client(&mock, 0);
        let a = c.synthesize(SpeechRequest::new("alloy", TEXT)).await.unwrap();
        let b = c.synthesize(SpeechRequest::new("onyx", TEXT)).await.unwrap();
        assert_eq!(a.sample_rate, 24_000);
        assert!((a.duration_secs() - TEXT.len() as f64 * 0.06).abs() < 0.01);
        let fa = median_f0(&a.samples, a.sample_rate).unwrap();
        let fb = median_f0(&b.samples, b.sample_rate).unwrap();
        assert!((fa - tone_hz("alloy")).abs() < 3.0, "{fa} vs {}", tone_hz("alloy"));
        assert!((fb - tone_hz("onyx")).abs() < 3.0, "{fb} vs {}", tone_hz("onyx"));
        let calls = mock.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].authorized && calls[0].format == "wav" && calls[0].model == "tts-1");
        assert_eq!(mock.calls_for("alloy", TEXT), 1);
        let err = c.synthesize(SpeechRequest::new("nobody", TEXT)).await.unwrap_err();
        assert_eq!(err.code(), "VOICE_UNKNOWN");
        let err = c.synthesize(SpeechRequest::new("alloy", " ... ")).await.unwrap_err();
        assert_eq!(err.code(), "TTS_EMPTY_TEXT");
        assert_eq!(mock.calls().len(), 2, "no request for an unknown voice or empty text");
    }

    #[tokio::test]
    async fn pcm_answers_decode_too() {
        let mock = MockSpeech::start().await.unwrap();
        let mut config = OpenAiSpeechConfig::new(mock.base_url(), "tts-1");
        config.format = AudioFormat::Pcm;
        let c = OpenAiSpeech::new(config).unwrap();
        let clip = c.synthesize(SpeechRequest::new("nova", TEXT)).await.unwrap();
        assert!((clip.duration_secs() - TEXT.len() as f64 * 0.06).abs() < 0.01);
        assert!(!mock.calls()[0].authorized);
    }

    #[tokio::test]
    async fn rate_limits_wait_for_retry_after_then_succeed() {
        let mock = MockSpeech::start().await.unwrap();
        mock.fault(SpeechFault::RateLimited(1), 1);
        let rec = Recorder::default();
        let started = Instant::now();
        let clip = client(&mock, 2)
            .synthesize_observed(SpeechRequest::new("alloy", TEXT), &rec)
            .await
            .unwrap();
        assert!(!clip.is_silent());
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(
            *rec.0.lock().unwrap(),
            [(Duration::from_secs(1), "PROVIDER_RATE_LIMITED".to_owned())]
        );
        assert_eq!(mock.calls_for("alloy", TEXT), 2);
    }

    #[tokio::test]
    async fn server_errors_and_stalls_are_retried_then_fail_unavailable() {
        let mock = MockSpeech::start().await.unwrap();
        mock.fault(SpeechFault::ServerError, 1);
        mock.fault(SpeechFault::Stall(Duration::from_secs(3)), 1);
        let c = client(&mock, 2);
        c.synthesize(SpeechRequest::new("alloy", TEXT)).await.unwrap();
        assert_eq!(mock.calls_for("alloy", TEXT), 3);

        mock.fault(SpeechFault::ServerError, 2);
        let err = client(&mock, 1)
            .synthesize(SpeechRequest::new("echo", TEXT))
            .await
            .unwrap_err();
        assert_eq!((err.code().as_str(), err.retryable()), ("TTS_UNAVAILABLE", true));
        assert_eq!(mock.calls_for("echo", TEXT), 2);

        mock.fault(SpeechFault::Stall(Duration::from_secs(3)), 10);
        let err = client(&mock, 0)
            .synthesize(SpeechRequest::new("fable", TEXT))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "TTS_UNAVAILABLE");
        assert!(err.to_string().contains("in time"), "{err}");
    }

    #[tokio::test]
    async fn bad_audio_is_never_a_success() {
        for fault in [SpeechFault::EmptyBody, SpeechFault::HeaderOnlyWav, SpeechFault::Silent] {
            let mock = MockSpeech::start().await.unwrap();
            // Once: retried, then the real audio.
            mock.fault(fault.clone(), 1);
            let clip = client(&mock, 1)
                .synthesize(SpeechRequest::new("sage", TEXT))
                .await
                .unwrap();
            assert!(!clip.is_silent(), "{fault:?}");
            assert_eq!(mock.calls_for("sage", TEXT), 2, "{fault:?}");
            // Always: a clear error after the retries.
            mock.fault(fault.clone(), 10);
            let err = client(&mock, 2)
                .synthesize(SpeechRequest::new("coral", TEXT))
                .await
                .unwrap_err();
            assert_eq!(
                (err.code().as_str(), err.retryable()),
                ("TTS_BAD_AUDIO", true),
                "{fault:?}: {err}"
            );
            assert_eq!(mock.calls_for("coral", TEXT), 3, "{fault:?}");
        }
    }

    #[tokio::test]
    async fn client_errors_fail_fast() {
        let mock = MockSpeech::start().await.unwrap();
        mock.fault(SpeechFault::Unauthorized, 5);
        let err = client(&mock, 3)
            .synthesize(SpeechRequest::new("alloy", TEXT))
            .await
            .unwrap_err();
        assert_eq!((err.code().as_str(), err.retryable()), ("TTS_UNAUTHORIZED", false));
        assert_eq!(mock.calls().len(), 1);

        // A server with a smaller limit than the client's: 400, not retried.
        let mut config = OpenAiSpeechConfig::new(mock.base_url(), "tts-1");
        config.max_chars = 10_000;
        let long = "word ".repeat(1000);
        let err = OpenAiSpeech::new(config)
            .unwrap()
            .synthesize(SpeechRequest::new("alloy", long.trim()))
            .await
            .unwrap_err();
        assert_eq!((err.code().as_str(), err.retryable()), ("TTS_REJECTED", false));
        assert!(err.to_string().contains("4096"), "{err}");
    }

    #[tokio::test]
    async fn long_text_is_split_under_the_limit_and_joined() {
        let mock = MockSpeech::start().await.unwrap();
        let sentence = "This sentence is about fifty characters long, ok. ";
        let text = sentence.repeat(100);
        let clip = client(&mock, 0)
            .synthesize(SpeechRequest::new("alloy", text.trim()))
            .await
            .unwrap();
        let calls = mock.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.input.chars().count() <= 4096));
        let joined: Vec<&str> = calls.iter().flat_map(|c| c.input.split_whitespace()).collect();
        assert_eq!(joined, text.split_whitespace().collect::<Vec<_>>());
        assert!(clip.duration_secs() > 20.0);
    }
}
