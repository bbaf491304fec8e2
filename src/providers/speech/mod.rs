//! Speech synthesis behind one trait: the embedded Kokoro-82M engine
//! ([`kokoro`]) and OpenAI-compatible `/audio/speech` servers ([`openai`]);
//! a mock server of that protocol for tests lives in `testing::mock_speech`.
//!
//! # What this module owns and must not know
//! It owns the [`SpeechProvider`] trait and its value types (voices, input
//! limits, requests, [`Clip`]s of mono PCM, [`SpeechError`] with stable
//! codes), choosing default voices for a language, making script text
//! speakable ([`text`]), and fetching the embedded engine's assets
//! ([`fetch`]). It knows nothing of podcasts, stages, hosts' names, the
//! database or GraphQL: callers pass text and a voice id and get audio back.
//! Mixing, loudness and encoding are [`crate::media`]'s.
//!
//! # Input limits
//! Every provider accepts text of any length: it splits the text at sentence
//! boundaries into pieces within its own limit ([`SpeechProvider::max_input`],
//! counted in the unit that provider counts: characters, bytes or phoneme
//! tokens), synthesizes them in order and returns one clip. The limit is
//! reported for planning (cost, latency), never as a trap.

pub mod fetch;
pub mod kokoro;
pub mod openai;
pub mod text;

use std::time::Duration;

pub use fetch::{SpeechAssets, fetch_speech_assets};
pub use text::{Limit, speakable, split_sentences};

use super::{CallObserver, NoObserver};
use crate::domain::FailureCode;

/// A voice's gender, where the provider states one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    /// A female voice.
    Female,
    /// A male voice.
    Male,
}

/// One voice a provider offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceInfo {
    /// The id passed in [`SpeechRequest::voice`], e.g. `af_heart`.
    pub id: String,
    /// A display name, e.g. `Heart`.
    pub name: String,
    /// BCP-47 tags of the languages the voice speaks well, most specific
    /// first, e.g. `["en-US"]`. Empty when the provider does not say (such a
    /// voice is taken to speak nothing in particular, see [`voice_speaks`]).
    pub languages: Vec<String>,
    /// Gender, where known.
    pub gender: Option<Gender>,
    /// The provider's name ([`SpeechProvider::name`]).
    pub provider: String,
}

/// The most text one underlying synthesis call takes, in the unit the
/// provider counts. Providers split longer text themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLimit {
    /// Unicode scalar values (`str::chars`), as OpenAI counts (4,096).
    Chars(usize),
    /// UTF-8 bytes (some cloud APIs count these: a CJK character is 3).
    Bytes(usize),
    /// Phoneme tokens after phonemization (Kokoro: 510 including the two
    /// padding tokens).
    PhonemeTokens(usize),
}

/// What to say and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    /// Voice id, one of [`SpeechProvider::voices`].
    pub voice: String,
    /// The text read aloud, as is (run it through [`speakable`] first to drop
    /// citation markers and markdown).
    pub text: String,
    /// Speaking rate, 1.0 normal; providers clamp it to their range (0.5 to 2.0
    /// for Kokoro, 0.25 to 4.0 for OpenAI).
    pub speed: f32,
}

impl SpeechRequest {
    /// A request at normal speed.
    pub fn new(voice: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            voice: voice.into(),
            text: text.into(),
            speed: 1.0,
        }
    }
}

pub use crate::media::clip::{Clip, SILENCE_PEAK};

/// A speech failure, each with a stable code ([`SpeechError::code`]) and
/// whether trying again may help ([`SpeechError::retryable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    /// 5xx, a timeout, a dropped connection, after the client's retries.
    #[error("the speech provider is unavailable: {0}")]
    Unavailable(String),
    /// 429 after the client's retries.
    #[error("the speech provider is rate limiting us")]
    RateLimited {
        /// What the provider asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// 401/403: the key is wrong or lacks access.
    #[error("the speech provider refused our credentials (HTTP {0})")]
    Unauthorized(u16),
    /// The provider refused this request (4xx other than 401/403/408/429).
    #[error("the speech provider rejected the request: {0}")]
    Rejected(String),
    /// The provider answered success with unusable audio: an empty body, a
    /// header-only WAV, an unparsable file, silence. Never a success.
    #[error("the speech provider returned unusable audio: {0}")]
    BadAudio(String),
    /// The voice id is not one the provider offers.
    #[error("unknown voice {0:?}")]
    VoiceUnknown(String),
    /// No voice of the provider speaks this language.
    #[error("no voice speaks {0:?}")]
    LanguageUnsupported(String),
    /// There is nothing to say (empty or only whitespace and symbols).
    #[error("the text to speak is empty")]
    EmptyText,
    /// A file or program the embedded engine needs is missing.
    #[error("{0}")]
    ModelMissing(String),
    /// The embedded engine failed (phonemizer or inference error).
    #[error("the speech engine failed: {0}")]
    Engine(String),
}

impl From<crate::media::MediaError> for SpeechError {
    /// Audio that a provider returned but that cannot be used (not a WAV,
    /// header only, silent) is the provider's bad audio.
    fn from(e: crate::media::MediaError) -> Self {
        Self::BadAudio(e.to_string())
    }
}

impl SpeechError {
    /// Stable code, shown as the podcast's `error.code` when audio fails.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::Unavailable(_) => FailureCode::TtsUnavailable,
            Self::RateLimited { .. } => FailureCode::TtsRateLimited,
            Self::Unauthorized(_) => FailureCode::TtsUnauthorized,
            Self::Rejected(_) => FailureCode::TtsRejected,
            Self::BadAudio(_) => FailureCode::TtsBadAudio,
            Self::VoiceUnknown(_) => FailureCode::VoiceUnknown,
            Self::LanguageUnsupported(_) => FailureCode::VoiceLanguageUnsupported,
            Self::EmptyText => FailureCode::TtsEmptyText,
            Self::ModelMissing(_) => FailureCode::ModelMissing,
            Self::Engine(_) => FailureCode::TtsEngineFailed,
        }
    }

    /// Whether the same call may succeed later. Remote providers' clients
    /// retry these themselves first (bad audio included: servers do send a
    /// truncated file now and then); a job may retry the stage after that.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::RateLimited { .. } | Self::BadAudio(_)
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

/// Text to speech.
#[async_trait::async_trait]
pub trait SpeechProvider: Send + Sync {
    /// Provider name for logs and [`VoiceInfo::provider`], e.g. `kokoro`.
    fn name(&self) -> &str;

    /// Model name, e.g. `kokoro-v1.0-int8` or `tts-1`.
    fn model(&self) -> &str;

    /// The voices offered.
    fn voices(&self) -> Vec<VoiceInfo>;

    /// The most text one underlying call takes (the provider splits longer
    /// text itself at sentence boundaries).
    fn max_input(&self) -> InputLimit;

    /// Speaks `request.text` in `request.voice`, any length; transient
    /// failures are retried inside and each wait reported to `observer`.
    /// The clip is checked ([`Clip::check`]): silence is an error, never a
    /// success.
    async fn synthesize_observed(
        &self,
        request: SpeechRequest,
        observer: &dyn CallObserver,
    ) -> Result<Clip, SpeechError>;

    /// [`SpeechProvider::synthesize_observed`] with nobody told of retries.
    async fn synthesize(&self, request: SpeechRequest) -> Result<Clip, SpeechError> {
        self.synthesize_observed(request, &NoObserver).await
    }
}

/// Normalises a language tag for comparison: lower case, `_` as `-`, and
/// the macro-language aliases Kokoro's table uses (`cmn` is `zh`).
fn tag_parts(tag: &str) -> (String, Option<String>) {
    let tag = tag.trim().replace('_', "-").to_ascii_lowercase();
    let mut parts = tag.split('-').filter(|p| !p.is_empty());
    let primary = match parts.next().unwrap_or_default() {
        "cmn" | "yue" => "zh".to_owned(),
        p => p.to_owned(),
    };
    // The region is the first 2-letter or 3-digit subtag after the language.
    let region = parts
        .find(|p| {
            (p.len() == 2 && p.chars().all(|c| c.is_ascii_alphabetic()))
                || (p.len() == 3 && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_owned);
    (primary, region)
}

/// Whether `voice` speaks the language of `language_tag` (BCP-47, e.g. `en`,
/// `en-GB`, `pt-PT`): its primary language matches one of the voice's. A
/// region is a preference, not a requirement (a US voice speaks `en-GB`), so
/// [`default_voices`] ranks voices of the right region first.
pub fn voice_speaks(voice: &VoiceInfo, language_tag: &str) -> bool {
    let (want, _) = tag_parts(language_tag);
    !want.is_empty() && voice.languages.iter().any(|l| tag_parts(l).0 == want)
}

/// Whether the voice's region matches the tag's (false when the tag has none).
fn region_matches(voice: &VoiceInfo, language_tag: &str) -> bool {
    let (want_lang, want_region) = tag_parts(language_tag);
    let Some(want_region) = want_region else {
        return false;
    };
    voice.languages.iter().any(|l| {
        let (lang, region) = tag_parts(l);
        lang == want_lang && region.as_deref() == Some(want_region.as_str())
    })
}

/// Kokoro's best voice per language and gender, in the order hosts get them
/// (chosen by kokoro's own quality grades and by ear: `af_heart` is grade A).
const PREFERRED: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "af_heart",
            "am_michael",
            "bf_emma",
            "bm_george",
            "af_bella",
            "am_fenrir",
            "bf_isabella",
            "bm_fable",
        ],
    ),
    ("es", &["ef_dora", "em_alex"]),
    ("fr", &["ff_siwis"]),
    ("it", &["if_sara", "im_nicola"]),
    ("pt", &["pf_dora", "pm_alex"]),
    ("hi", &["hf_alpha", "hm_omega"]),
];

/// Picks one voice per host (`hosts` >= 1) from `voices` for `language_tag`:
/// distinct voices while there are enough, alternating genders (female,
/// male, ...), voices of the tag's region first (`en-GB` gets `bf_emma`,
/// `bm_george` first), then the provider's remaining voices that speak the
/// language. With fewer voices than hosts, voices repeat in the same order.
/// For Kokoro and `en`: `af_heart`, `am_michael`, `bf_emma`, `bm_george`.
///
/// Errors: [`SpeechError::LanguageUnsupported`] when no voice speaks it.
pub fn default_voices(voices: &[VoiceInfo], language_tag: &str, hosts: usize) -> Result<Vec<VoiceInfo>, SpeechError> {
    let (primary, _) = tag_parts(language_tag);
    let speaking: Vec<&VoiceInfo> = voices.iter().filter(|v| voice_speaks(v, language_tag)).collect();
    if speaking.is_empty() {
        return Err(SpeechError::LanguageUnsupported(language_tag.to_owned()));
    }
    let preferred: &[&str] = PREFERRED
        .iter()
        .find(|(l, _)| *l == primary)
        .map(|(_, ids)| *ids)
        .unwrap_or(&[]);
    // Rank: region match first, then the preference list's order, then the
    // provider's order.
    let rank = |v: &VoiceInfo| {
        let pref = preferred.iter().position(|id| *id == v.id).unwrap_or(usize::MAX);
        (!region_matches(v, language_tag), pref)
    };
    let mut ranked = speaking.clone();
    ranked.sort_by_key(|v| rank(v));
    // Alternate genders: take the best voice of the gender that is due, if any.
    let mut order: Vec<&VoiceInfo> = Vec::with_capacity(ranked.len());
    let mut pool = ranked;
    let mut want = Gender::Female;
    while !pool.is_empty() {
        let i = pool.iter().position(|v| v.gender == Some(want)).unwrap_or(0);
        let v = pool.remove(i);
        want = match v.gender {
            Some(Gender::Female) => Gender::Male,
            Some(Gender::Male) => Gender::Female,
            None => want,
        };
        order.push(v);
    }
    Ok((0..hosts.max(1)).map(|i| order[i % order.len()].clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(id: &str, lang: &str, gender: Gender) -> VoiceInfo {
        VoiceInfo {
            id: id.into(),
            name: id.into(),
            languages: vec![lang.into()],
            gender: Some(gender),
            provider: "test".into(),
        }
    }

    fn kokoro_like() -> Vec<VoiceInfo> {
        kokoro::catalog().iter().map(|v| v.info()).collect()
    }

    #[test]
    fn english_defaults_are_distinct_and_alternate() {
        let v = default_voices(&kokoro_like(), "en", 4).unwrap();
        let ids: Vec<_> = v.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["af_heart", "am_michael", "bf_emma", "bm_george"]);
        let gb = default_voices(&kokoro_like(), "en-GB", 2).unwrap();
        let ids: Vec<_> = gb.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["bf_emma", "bm_george"]);
    }

    #[test]
    fn defaults_repeat_when_short_and_fail_for_unknown_languages() {
        let fr = default_voices(&kokoro_like(), "fr-FR", 2).unwrap();
        assert_eq!(fr[0].id, "ff_siwis");
        assert_eq!(fr[1].id, "ff_siwis");
        let es = default_voices(&kokoro_like(), "es-MX", 2).unwrap();
        assert_eq!((es[0].id.as_str(), es[1].id.as_str()), ("ef_dora", "em_alex"));
        let err = default_voices(&kokoro_like(), "ja", 2).unwrap_err();
        assert_eq!(err.code(), "VOICE_LANGUAGE_UNSUPPORTED");
    }

    #[test]
    fn voice_language_matching() {
        let heart = voice("af_heart", "en-US", Gender::Female);
        assert!(voice_speaks(&heart, "en"));
        assert!(voice_speaks(&heart, "en-GB"));
        assert!(voice_speaks(&heart, "EN_us"));
        assert!(!voice_speaks(&heart, "es"));
        assert!(!voice_speaks(&heart, ""));
        let zh = voice("zf", "cmn", Gender::Female);
        assert!(voice_speaks(&zh, "zh-Hans-CN"));
        assert!(region_matches(&heart, "en-US"));
        assert!(!region_matches(&heart, "en"));
    }

    #[test]
    fn error_codes_and_retryability() {
        let cases = [
            (SpeechError::Unavailable("x".into()), "TTS_UNAVAILABLE", true),
            (SpeechError::RateLimited { retry_after: None }, "TTS_RATE_LIMITED", true),
            (SpeechError::Unauthorized(401), "TTS_UNAUTHORIZED", false),
            (SpeechError::Rejected("x".into()), "TTS_REJECTED", false),
            (SpeechError::BadAudio("x".into()), "TTS_BAD_AUDIO", true),
            (SpeechError::VoiceUnknown("x".into()), "VOICE_UNKNOWN", false),
            (
                SpeechError::LanguageUnsupported("x".into()),
                "VOICE_LANGUAGE_UNSUPPORTED",
                false,
            ),
            (SpeechError::EmptyText, "TTS_EMPTY_TEXT", false),
            (SpeechError::ModelMissing("x".into()), "MODEL_MISSING", false),
            (SpeechError::Engine("x".into()), "TTS_ENGINE_FAILED", false),
        ];
        for (e, code, retry) in cases {
            assert_eq!(e.code(), code);
            assert_eq!(e.retryable(), retry, "{code}");
        }
    }

    #[test]
    fn wav_round_trip_and_bad_wavs() {
        let tone: Vec<f32> = (0..2400).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let clip = Clip::new(tone, 24_000);
        let wav = clip.to_wav().unwrap();
        let back = Clip::from_wav(&wav).unwrap();
        assert_eq!(back.sample_rate, 24_000);
        assert_eq!(back.samples.len(), 2400);
        assert!((back.samples[100] - clip.samples[100]).abs() < 1e-3);
        back.check().unwrap();

        let header_only = Clip::new(vec![], 24_000).to_wav().unwrap();
        assert_eq!(header_only.len(), 44);
        let bad = |bytes: &[u8]| SpeechError::from(Clip::from_wav(bytes).unwrap_err()).code();
        assert_eq!(bad(&header_only), "TTS_BAD_AUDIO");
        assert_eq!(bad(b""), "TTS_BAD_AUDIO");
        assert_eq!(bad(b"not a wav at all"), "TTS_BAD_AUDIO");
        let mut padded = Clip::new(vec![0.0; 1000], 1000);
        padded.samples[400..600].fill(0.5);
        padded.trim_silence(0.01, Duration::from_millis(50));
        assert_eq!(padded.samples.len(), 300);
        assert_eq!(padded.samples[50], 0.5);
        let silent = Clip::new(vec![0.0; 1000], 24_000);
        assert_eq!(SpeechError::from(silent.check().unwrap_err()).code(), "TTS_BAD_AUDIO");
        assert!(silent.is_silent());
        let mut still = silent.clone();
        still.trim_silence(0.01, Duration::ZERO);
        assert_eq!(still, silent);
    }
}
