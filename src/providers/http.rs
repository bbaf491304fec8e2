//! HTTP plumbing shared by provider clients: deadlines, error mapping, and
//! retries that honour `Retry-After`.
//!
//! The retry loop is ours rather than a retry crate's because each wait must
//! first be recorded durably (a RETRYING event through an async observer)
//! before sleeping, and the delay comes from the response (`Retry-After`).

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};

use super::{CallObserver, ProviderError};
use crate::backoff::Backoff;

/// Deadlines and retry settings of a provider client.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// TCP + TLS connect deadline.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Deadline of one attempt, end to end.
    pub request_timeout: Duration,
    /// Retries after the first attempt (transient failures only).
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    pub backoff_base: Duration,
    /// Longest single wait (also caps a provider's Retry-After).
    pub backoff_max: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(180),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl HttpPolicy {
    /// A reqwest client with these deadlines.
    ///
    /// Errors: when the TLS backend cannot be set up.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .timeout(self.request_timeout)
            .user_agent(concat!("podforge/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Maps a transport error (connect, timeout, body) to a provider error.
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Unavailable("the provider did not answer in time".into())
    } else if e.is_connect() {
        ProviderError::Unavailable("cannot connect to the provider".into())
    } else if e.is_body() || e.is_decode() {
        ProviderError::Unavailable("the provider's response was cut off".into())
    } else {
        ProviderError::Unavailable(format!("request failed: {e}"))
    }
}

/// The `code`, `type` and `message` of an error object (`{"code", "type",
/// "message"}`; a numeric code is written out), empty when absent.
fn error_fields(error: Option<&serde_json::Value>) -> (String, String, String) {
    let field = |name: &str| -> String {
        match error.and_then(|e| e.get(name)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    (field("code"), field("type"), field("message"))
}

/// The errors whose kind says what they are, whatever the status.
fn classified(code: &str, kind: &str, message: &str) -> Option<ProviderError> {
    let says = |needle: &str| code.contains(needle) || kind.contains(needle);
    if says("insufficient_quota") {
        return Some(ProviderError::QuotaExhausted);
    }
    if says("context_length") || message.contains("maximum context length") || message.contains("context window") {
        return Some(ProviderError::ContextLength);
    }
    if says("content_filter") || says("content_policy") {
        return Some(ProviderError::ContentFiltered(if message.is_empty() {
            "refused".into()
        } else {
            message.to_owned()
        }));
    }
    None
}

/// Maps a non-success status and its JSON error body (`{"error": {"code",
/// "type", "message"}}`, as OpenAI and compatibles send) to a provider error.
pub fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let (code, kind, message) = error_fields(json.as_ref().and_then(|j| j.get("error")));
    if let Some(e) = classified(&code, &kind, &message) {
        return e;
    }
    match status.as_u16() {
        401 | 403 => ProviderError::Unauthorized(status.as_u16()),
        429 => ProviderError::RateLimited { retry_after },
        408 | 409 | 425 | 500..=599 => ProviderError::Unavailable(format!("HTTP {status}")),
        _ => ProviderError::Rejected(if message.is_empty() {
            format!("HTTP {status}")
        } else {
            message
        }),
    }
}

/// Maps an error a provider reported inside a streamed answer (after its
/// 200): `error` is the error object (`{"message", "type", "code"}`, as
/// OpenAI sends in a `data:` line, or `{"type": "overloaded_error", ...}` in
/// an `error` event). The message keeps the provider's words and code.
/// Server errors, overload, timeouts and rate limits are transient (the
/// client retries them); anything else is a rejection of this request.
pub fn stream_error(error: &serde_json::Value) -> ProviderError {
    let (code, kind, message) = error_fields(Some(error));
    if let Some(e) = classified(&code, &kind, &message) {
        return e;
    }
    let label = [&code, &kind]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or_else(|| "no code".to_owned(), |s| s.to_owned());
    let text = format!(
        "{} ({label})",
        if message.is_empty() {
            "the provider reported an error mid-stream"
        } else {
            &message
        }
    );
    let says = |needles: &[&str]| needles.iter().any(|n| code.contains(n) || kind.contains(n));
    let status = code.parse::<u16>().ok();
    if says(&["rate_limit"]) || status == Some(429) {
        ProviderError::RateLimited { retry_after: None }
    } else if says(&[
        "server_error",
        "overloaded",
        "unavailable",
        "timeout",
        "internal",
        "api_error",
    ]) || status.is_some_and(|s| s >= 500)
    {
        ProviderError::Unavailable(text)
    } else {
        ProviderError::Rejected(text)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries run out.
/// Waits `Retry-After` when the provider gave one, else exponential backoff
/// with jitter; reports each wait to `observer` before sleeping. Returns the
/// result and the elapsed wall time.
pub async fn with_retries<T, F, Fut>(
    policy: &HttpPolicy,
    observer: &dyn CallObserver,
    mut attempt: F,
) -> (Result<T, ProviderError>, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return (Ok(v), started.elapsed()),
            Err(e) if e.is_transient() && tries < policy.max_retries => {
                tries += 1;
                let schedule = Backoff::doubling(policy.backoff_base, policy.backoff_max);
                let delay = e
                    .retry_after()
                    .unwrap_or_else(|| schedule.delay(tries))
                    .min(policy.backoff_max);
                tracing::warn!(
                    code = e.code().as_str(),
                    attempt = tries,
                    retry_in_ms = delay.as_millis() as u64,
                    "provider call failed; retrying"
                );
                observer.retrying(tries, delay, e.code()).await;
                tokio::time::sleep(delay).await;
            }
            Err(e) => return (Err(e), started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_map_to_codes() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, None, quota),
            ProviderError::QuotaExhausted
        );
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(2)), "{}"),
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
        assert_eq!(
            status_error(StatusCode::BAD_REQUEST, None, ctx),
            ProviderError::ContextLength
        );
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, None, ""),
            ProviderError::Unauthorized(401)
        );
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, None, "<html>"),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, None, "{}"),
            ProviderError::Rejected(_)
        ));
    }

    #[test]
    fn stream_errors_keep_the_providers_words_and_say_if_retryable() {
        let e = |v: serde_json::Value| stream_error(&v);
        assert_eq!(
            e(serde_json::json!({"message": "The server had an error", "type": "server_error", "code": null})),
            ProviderError::Unavailable("The server had an error (server_error)".into())
        );
        assert_eq!(
            e(serde_json::json!({"type": "overloaded_error", "message": "Overloaded"})),
            ProviderError::Unavailable("Overloaded (overloaded_error)".into())
        );
        assert_eq!(
            e(serde_json::json!({"message": "busy", "code": 503})),
            ProviderError::Unavailable("busy (503)".into())
        );
        assert_eq!(
            e(serde_json::json!({"message": "slow down", "type": "rate_limit_exceeded"})),
            ProviderError::RateLimited { retry_after: None }
        );
        assert_eq!(
            e(serde_json::json!({"message": "bad tool", "type": "invalid_request_error"})),
            ProviderError::Rejected("bad tool (invalid_request_error)".into())
        );
        assert_eq!(
            e(serde_json::json!({"code": "context_length_exceeded"})),
            ProviderError::ContextLength
        );
        assert_eq!(
            e(serde_json::json!({})),
            ProviderError::Rejected("the provider reported an error mid-stream (no code)".into())
        );
    }
}
