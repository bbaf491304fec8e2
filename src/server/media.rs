//! Serving media: `GET`/`HEAD /media/<key>?expires=..&sig=..` (signed,
//! expiring URLs from [`crate::media::signing`]) and voice previews at
//! `GET /voices/<id>/preview.wav`.
//!
//! Byte ranges follow RFC 9110 §14: one `bytes=` range (`a-b`, `a-`, `-n`)
//! is answered 206 with `Content-Range`; a range that starts past the end is
//! 416 with `Content-Range: bytes */<size>`; a malformed or multi-range
//! header is ignored and the whole file sent (as the RFC allows), as is a
//! range whose `If-Range` does not match. `ETag` is strong (objects under a
//! key never change: keys are content hashes) and `If-None-Match` answers
//! 304. A missing, forged, altered or expired signature is 403 with the same
//! body whatever the reason, and is checked before the store is asked.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::HttpState;
use crate::app::App;
use crate::media::store::is_media_key;

/// The signature part of a media URL.
#[derive(Debug, Deserialize)]
pub(super) struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

fn status(code: StatusCode, text: &'static str) -> Response {
    (code, [(header::CACHE_CONTROL, "no-store")], text).into_response()
}

fn forbidden() -> Response {
    status(StatusCode::FORBIDDEN, "forbidden")
}

/// Content type by the key's extension.
fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("mp3") => "audio/mpeg",
        Some("wav") => "audio/wav",
        Some("json") => "application/json",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("srt") => "application/x-subrip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: send everything (no header, malformed, several ranges).
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part(Range<u64>),
    /// Nothing of the object satisfies the range (416).
    Unsatisfiable,
}

/// Parses one `Range` header value against `size` (RFC 9110 §14.1.2).
pub fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last `n` bytes.
        if !digits(last) {
            return RangeAsk::Whole;
        }
        let Ok(n) = last.parse::<u64>() else {
            return RangeAsk::Whole;
        };
        if n == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        return RangeAsk::Part(size.saturating_sub(n)..size);
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeAsk::Whole;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Unsatisfiable;
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= start => l.saturating_add(1).min(size),
            Ok(_) => return RangeAsk::Whole,
            Err(_) => size,
        }
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start..end)
}

/// The strong ETag of the object at `key` of `size` bytes: keys name
/// content (a hash), so the last path segment and the size identify it.
fn etag_of(key: &str, size: u64) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.split('.').next().unwrap_or(name);
    format!("\"{stem}-{size:x}\"")
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// `GET` and `HEAD /media/<key>`.
pub(super) async fn media(
    State(state): State<HttpState>,
    method: Method,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let app = &state.app;
    let (Some(expires), Some(sig)) = (signed.expires, signed.sig.as_deref()) else {
        return forbidden();
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = app.signer.verify(&key, expires, sig, now) {
        tracing::debug!(?why, "media URL refused");
        return forbidden();
    }
    if !is_media_key(&key) {
        return forbidden();
    }
    let cache = format!("private, max-age={}", (expires - now).max(0));
    serve_object(app, &method, &key, &headers, &cache).await
}

/// Serves the object at `key` with ranges, ETag and `cache` as Cache-Control.
async fn serve_object(app: &App, method: &Method, key: &str, headers: &HeaderMap, cache: &str) -> Response {
    let info = match app.media.head(key).await {
        Ok(Some(info)) => info,
        Ok(None) => return status(StatusCode::NOT_FOUND, "not found"),
        Err(e) => {
            tracing::error!(error = %e, "reading a media object failed");
            return status(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable");
        }
    };
    let size = info.bytes;
    let etag = etag_of(key, size);
    let mut base = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, cache);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag))
    {
        return base
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    base = base.header(header::CONTENT_TYPE, content_type(key));
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let ask = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok => parse_range(v, size),
        _ => RangeAsk::Whole,
    };
    let (code, range) = match ask {
        RangeAsk::Unsatisfiable => {
            return base
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
        RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeAsk::Whole => (StatusCode::OK, 0..size),
    };
    if code == StatusCode::PARTIAL_CONTENT {
        base = base.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end.saturating_sub(1)),
        );
    }
    base = base
        .status(code)
        .header(header::CONTENT_LENGTH, range.end - range.start);
    if method == Method::HEAD {
        return base.body(Body::empty()).unwrap_or_default();
    }
    let bytes = if code == StatusCode::OK {
        app.media.get(key).await
    } else {
        app.media.get_range(key, range).await
    };
    match bytes {
        Ok(b) => base.body(Body::from(b)).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "reading a media object failed");
            status(StatusCode::SERVICE_UNAVAILABLE, "media store unavailable")
        }
    }
}

/// What a preview says, in the voice's language where we have a line.
fn preview_line(language: &str, name: &str) -> String {
    let primary = language.split(['-', '_']).next().unwrap_or("en");
    match primary {
        "fr" => format!("Bonjour, je suis {name}. Voici ma voix pour votre podcast."),
        "es" => format!("Hola, soy {name}. Así suena mi voz en tu pódcast."),
        "it" => format!("Ciao, sono {name}. Ecco come suona la mia voce nel tuo podcast."),
        "pt" => format!("Olá, eu sou {name}. É assim que a minha voz soa no seu podcast."),
        "hi" => format!("नमस्ते, मैं {name} हूँ। आपके पॉडकास्ट में मेरी आवाज़ ऐसी सुनाई देगी।"),
        _ => format!("Hi, I'm {name}. This is how I sound reading your podcast."),
    }
}

/// `GET /voices/<id>/preview.wav`: a few seconds of the voice, synthesized
/// on first request and kept in the media store (one synthesis at a time
/// per process; at most one per voice ever, so it cannot be used to run up
/// synthesis). 404 for an unknown voice or when speech is off.
pub(super) async fn voice_preview(
    State(state): State<HttpState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let app: &Arc<App> = &state.app;
    let Some(speech) = app.speech.as_deref() else {
        return status(StatusCode::NOT_FOUND, "not found");
    };
    let Some(voice) = speech.voices().into_iter().find(|v| v.id == id) else {
        return status(StatusCode::NOT_FOUND, "not found");
    };
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let key = format!(
        "previews/{}/{}/{}.wav",
        safe(speech.name()),
        safe(speech.model()),
        safe(&voice.id)
    );
    let cache = "public, max-age=86400";
    let present = matches!(app.media.head(&key).await, Ok(Some(_)));
    if !present {
        let _turn = ONE_AT_A_TIME.lock().await;
        if !matches!(app.media.head(&key).await, Ok(Some(_))) {
            let language = voice.languages.first().map_or("en", String::as_str);
            let request =
                crate::providers::speech::SpeechRequest::new(voice.id.clone(), preview_line(language, &voice.name));
            let wav = match speech.synthesize(request).await.map(|c| c.to_wav()) {
                Ok(Ok(wav)) => wav,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, voice = %voice.id, "encoding a voice preview failed");
                    return status(StatusCode::SERVICE_UNAVAILABLE, "preview unavailable");
                }
                Err(e) => {
                    tracing::warn!(error = %e, voice = %voice.id, "synthesizing a voice preview failed");
                    return status(StatusCode::SERVICE_UNAVAILABLE, "preview unavailable");
                }
            };
            if let Err(e) = app.media.put(&key, wav).await {
                tracing::warn!(error = %e, "storing a voice preview failed");
                return status(StatusCode::SERVICE_UNAVAILABLE, "preview unavailable");
            }
        }
    }
    serve_object(app, &method, &key, &headers, cache).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let size = 1000;
        assert_eq!(parse_range("bytes=0-99", size), RangeAsk::Part(0..100));
        assert_eq!(parse_range("bytes=900-", size), RangeAsk::Part(900..1000));
        assert_eq!(parse_range("bytes=-100", size), RangeAsk::Part(900..1000));
        assert_eq!(parse_range("bytes=-5000", size), RangeAsk::Part(0..1000));
        assert_eq!(parse_range("bytes=990-5000", size), RangeAsk::Part(990..1000));
        assert_eq!(parse_range("bytes=1000-", size), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", size), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", size), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", size), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", size), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=a-b", size), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=-", size), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", size),
            RangeAsk::Unsatisfiable
        );
    }

    #[test]
    fn etags_match_weakly_for_if_none_match() {
        let etag = etag_of("podcasts/x/episode-abc.mp3", 255);
        assert_eq!(etag, "\"episode-abc-ff\"");
        assert!(none_match(&etag, &etag));
        assert!(none_match(&format!("W/{etag}"), &etag));
        assert!(none_match("\"other\", *", &etag));
        assert!(!none_match("\"other\"", &etag));
    }
}
