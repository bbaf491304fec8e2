//! The one error type of the `sources` module and its stable codes.

use std::fmt;

use crate::domain::FailureCode;

/// Why a source could not be turned into a [`super::Document`].
///
/// Every variant maps to a stable, machine-readable code through [`SourceError::code`]; the
/// `Display` text is for people (logs, API error messages) and may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The URL's host is, or resolves to, an address the service must not contact (loopback,
    /// private, link-local, unspecified, multicast, broadcast, CGNAT, documentation/reserved
    /// ranges, or IPv6 forms embedding such an IPv4 address), checked on the first request, on
    /// every redirect hop and on every DNS answer. The string names the host or address.
    /// Code `SOURCE_FORBIDDEN`.
    Forbidden(String),
    /// The body is larger than the configured limit (in bytes, as received on the wire; no
    /// compression is negotiated). Code `SOURCE_TOO_LARGE`.
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The content type (or URL scheme) is not one we can read. The string is the offending
    /// media type or scheme. Code `SOURCE_UNSUPPORTED`.
    UnsupportedType(String),
    /// The overall fetch deadline passed (connect + redirects + headers + body).
    /// Code `SOURCE_TIMEOUT`.
    Timeout,
    /// The server answered with a non-success status (after following redirects).
    /// Code `SOURCE_HTTP_ERROR`.
    Http {
        /// The HTTP status code, e.g. 404.
        status: u16,
    },
    /// Connection, DNS, TLS or protocol failure, or too many redirects. The string is a
    /// human-readable cause. Code `SOURCE_UNREACHABLE`.
    Network(String),
    /// The input is not a valid absolute URL. The string is the parser's complaint.
    /// Code `SOURCE_INVALID_URL`.
    InvalidUrl(String),
    /// Fetching worked but no readable text was left after extraction and cleaning.
    /// Code `SOURCE_EMPTY`.
    Empty,
}

impl SourceError {
    /// The stable code for this error, for API responses and metrics: one of
    /// `SOURCE_FORBIDDEN`, `SOURCE_TOO_LARGE`, `SOURCE_UNSUPPORTED`, `SOURCE_TIMEOUT`,
    /// `SOURCE_HTTP_ERROR`, `SOURCE_UNREACHABLE`, `SOURCE_INVALID_URL`, `SOURCE_EMPTY`.
    pub fn code(&self) -> FailureCode {
        match self {
            SourceError::Forbidden(_) => FailureCode::SourceForbidden,
            SourceError::TooLarge { .. } => FailureCode::SourceTooLarge,
            SourceError::UnsupportedType(_) => FailureCode::SourceUnsupported,
            SourceError::Timeout => FailureCode::SourceTimeout,
            SourceError::Http { .. } => FailureCode::SourceHttpError,
            SourceError::Network(_) => FailureCode::SourceUnreachable,
            SourceError::InvalidUrl(_) => FailureCode::SourceInvalidUrl,
            SourceError::Empty => FailureCode::SourceEmpty,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Forbidden(what) => write!(f, "source address is not allowed: {what}"),
            SourceError::TooLarge { limit } => write!(f, "source is larger than the {limit}-byte limit"),
            SourceError::UnsupportedType(t) => write!(f, "unsupported source type: {t}"),
            SourceError::Timeout => f.write_str("fetching the source timed out"),
            SourceError::Http { status } => write!(f, "source server answered HTTP {status}"),
            SourceError::Network(cause) => write!(f, "source is unreachable: {cause}"),
            SourceError::InvalidUrl(cause) => write!(f, "invalid source URL: {cause}"),
            SourceError::Empty => f.write_str("source has no readable text"),
        }
    }
}

impl std::error::Error for SourceError {}
