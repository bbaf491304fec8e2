//! A mock server of the OpenAI speech protocol for tests: `POST
//! /v1/audio/speech` over real HTTP on 127.0.0.1, on a free port.
//!
//! It answers with a real tone whose pitch depends on the voice
//! ([`tone_hz`]) and whose length grows with the text (60 ms a character,
//! 0.3 to 20 s), as a 16-bit WAV at 24 kHz (or raw PCM when asked for
//! `pcm`). It counts calls per (voice, text) and applies scripted faults in
//! order: 429 with `Retry-After`, 500, a stall, a 200 with an empty body, a
//! 200 with a 44-byte (header-only) WAV, a 200 with all-silent audio, 401.
//! Input over 4,096 characters, an empty input or a missing field is a 400
//! with an OpenAI-style error body, as the real service answers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::providers::speech::Clip;

/// Sample rate of the mock's audio, Hz.
pub const MOCK_RATE: u32 = 24_000;
/// Longest input the mock accepts, characters (OpenAI's limit).
pub const MOCK_MAX_CHARS: usize = 4096;

/// A scripted misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeechFault {
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// HTTP 500.
    ServerError,
    /// Wait this long, then answer normally.
    Stall(Duration),
    /// 200 with an empty body.
    EmptyBody,
    /// 200 with a 44-byte WAV: a header and no samples.
    HeaderOnlyWav,
    /// 200 with a well-formed WAV of silence.
    Silent,
    /// 401 with an OpenAI-style error.
    Unauthorized,
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechCall {
    /// `model`.
    pub model: String,
    /// `voice`.
    pub voice: String,
    /// `input`.
    pub input: String,
    /// `response_format`.
    pub format: String,
    /// `speed`.
    pub speed: f64,
    /// Whether a bearer key was sent.
    pub authorized: bool,
    /// The fault applied, if any.
    pub fault: Option<SpeechFault>,
}

#[derive(Default)]
struct MockState {
    faults: Mutex<VecDeque<(SpeechFault, u32)>>,
    calls: Mutex<Vec<SpeechCall>>,
    counts: Mutex<HashMap<(String, String), usize>>,
}

/// The running mock; stops when dropped.
pub struct MockSpeech {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockSpeech {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tone's frequency for `voice`, Hz: 110 to 330, fixed per voice (a
/// hash of the id), so tests can tell voices apart by pitch.
pub fn tone_hz(voice: &str) -> f32 {
    // FNV-1a: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in voice.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    110.0 + (h % 221) as f32
}

/// The audio the mock sends for (`voice`, `input`): a tone at
/// [`tone_hz`]`(voice)`, 60 ms per character (0.3 to 20 s), amplitude 0.3,
/// with 10 ms fades.
pub fn tone(voice: &str, input: &str) -> Clip {
    let secs = (input.chars().count() as f64 * 0.06).clamp(0.3, 20.0);
    let n = (secs * f64::from(MOCK_RATE)) as usize;
    let hz = tone_hz(voice);
    let fade = (MOCK_RATE / 100) as usize;
    let samples = (0..n)
        .map(|i| {
            let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            0.3 * env * (2.0 * std::f32::consts::PI * hz * i as f32 / MOCK_RATE as f32).sin()
        })
        .collect();
    Clip::new(samples, MOCK_RATE)
}

impl MockSpeech {
    /// Starts the mock on 127.0.0.1, on a free port.
    ///
    /// Errors: when no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .route("/v1/audio/speech", post(speech))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Base URL for the client (ends before `/audio/speech`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Applies `fault` to the next `times` calls (faults apply in the order
    /// scripted).
    pub fn fault(&self, fault: SpeechFault, times: u32) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((fault, times));
    }

    /// Calls received for (`voice`, `input`), faulted ones included.
    pub fn calls_for(&self, voice: &str, input: &str) -> usize {
        self.state
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(voice.to_owned(), input.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<SpeechCall> {
        self.state.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn take_fault(state: &MockState) -> Option<SpeechFault> {
    let mut faults = state.faults.lock().unwrap_or_else(PoisonError::into_inner);
    let (fault, remaining) = faults.front_mut()?;
    let fault = fault.clone();
    *remaining -= 1;
    if *remaining == 0 {
        faults.pop_front();
    }
    Some(fault)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": null}})),
    )
        .into_response()
}

fn audio(clip: &Clip, format: &str) -> Response {
    if format == "pcm" {
        let bytes: Vec<u8> = clip
            .samples
            .iter()
            .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
            .collect();
        return ([(header::CONTENT_TYPE, "audio/pcm")], bytes).into_response();
    }
    match clip.to_wav() {
        Ok(wav) => ([(header::CONTENT_TYPE, "audio/wav")], wav).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    }
}

async fn speech(State(state): State<Arc<MockState>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "body is not JSON");
    };
    let field = |k: &str| req.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let (model, voice, input) = (field("model"), field("voice"), field("input"));
    let format = req
        .get("response_format")
        .and_then(|v| v.as_str())
        .unwrap_or("mp3")
        .to_owned();
    let fault = take_fault(&state);
    *state
        .counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((voice.clone(), input.clone()))
        .or_default() += 1;
    state
        .calls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(SpeechCall {
            model: model.clone(),
            voice: voice.clone(),
            input: input.clone(),
            format: format.clone(),
            speed: req.get("speed").and_then(|v| v.as_f64()).unwrap_or(1.0),
            authorized: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer ")),
            fault: fault.clone(),
        });
    if model.is_empty() || voice.is_empty() || input.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model, voice and input are required",
        );
    }
    if input.chars().count() > MOCK_MAX_CHARS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "string too long: input must be at most 4096 characters",
        );
    }
    if !matches!(format.as_str(), "wav" | "pcm") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the mock speaks only wav and pcm",
        );
    }
    match fault {
        Some(SpeechFault::RateLimited(secs)) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "slow down");
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Some(SpeechFault::ServerError) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "boom"),
        Some(SpeechFault::Unauthorized) => error(StatusCode::UNAUTHORIZED, "invalid_api_key", "bad key"),
        Some(SpeechFault::Stall(d)) => {
            tokio::time::sleep(d).await;
            audio(&tone(&voice, &input), &format)
        }
        Some(SpeechFault::EmptyBody) => ([(header::CONTENT_TYPE, "audio/wav")], Vec::<u8>::new()).into_response(),
        Some(SpeechFault::HeaderOnlyWav) => audio(&Clip::new(Vec::new(), MOCK_RATE), "wav"),
        Some(SpeechFault::Silent) => audio(&Clip::silence(1.0, MOCK_RATE), &format),
        None => audio(&tone(&voice, &input), &format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_differ_by_voice_and_grow_with_text() {
        assert_ne!(tone_hz("alloy"), tone_hz("onyx"));
        assert_eq!(tone_hz("alloy"), tone_hz("alloy"));
        assert!((110.0..=330.0).contains(&tone_hz("x")));
        let short = tone("alloy", "hi");
        let long = tone("alloy", &"word ".repeat(40));
        assert!((short.duration_secs() - 0.3).abs() < 1e-6);
        assert!((long.duration_secs() - 12.0).abs() < 1e-6);
        assert!(!long.is_silent());
    }
}
