//! The service-boundary error: what a use-case can tell its caller.
//!
//! Layers: `db/` returns diesel's `QueryResult`; jobs, clients and the CLI use
//! `anyhow` with context; services return [`ApiError`]; the GraphQL layer maps
//! [`ApiError`] to `extensions.code` in exactly one place
//! (`graphql::error`). Library errors are mapped on purpose here: diesel's
//! `NotFound` to NOT_FOUND, a pool timeout to UNAVAILABLE, a named unique
//! constraint to CONFLICT.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;

use crate::db::retry::Transient;

/// A use-case failure, each variant one stable `extensions.code`.
///
/// Deliberately not `Display`/`std::error::Error`: async-graphql converts any
/// `Display` type into an error without a code, so a stray `?` would lose the
/// code. Without `Display`, the only conversion is the one in
/// `graphql::error`, which sets `extensions.code`. Use [`ApiError::message`]
/// for the text.
#[derive(Debug)]
pub enum ApiError {
    /// No valid credentials: missing, expired, forged or revoked token, or a wrong password.
    Unauthenticated(String),
    /// The thing does not exist, or is not the viewer's.
    NotFound(&'static str),
    /// An argument is invalid. `field` is the argument path, e.g. `input.email`.
    BadUserInput {
        /// Path of the offending argument.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The request conflicts with the current state (taken email, wrong status).
    Conflict(String),
    /// Too many requests or concurrent generations.
    RateLimited {
        /// What limit was hit and what to do.
        message: String,
        /// When trying again can succeed (`extensions.retryAfter`, whole
        /// seconds rounded up); `None` when it depends on something else
        /// (a generation finishing).
        retry_after: Option<std::time::Duration>,
    },
    /// A dependency (database) is down or saturated; retry later.
    Unavailable(anyhow::Error),
    /// A bug or an unexpected failure; details are logged, never returned.
    Internal(anyhow::Error),
}

impl ApiError {
    /// BAD_USER_INPUT for `field`.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// RATE_LIMITED with `message`, retryable after `retry_after` when known.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<std::time::Duration>) -> Self {
        Self::RateLimited {
            message: message.into(),
            retry_after,
        }
    }

    /// The message a client may see. Internal details never appear here.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::Conflict(m) | Self::RateLimited { message: m, .. } => m.clone(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::BadUserInput { field, message } => format!("{field}: {message}"),
            Self::Unavailable(_) => "service temporarily unavailable; retry shortly".into(),
            Self::Internal(_) => "internal server error".into(),
        }
    }

    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl From<DieselError> for ApiError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound("record"),
            // A deadlock victim or a serialisation failure that outlived
            // `db::retry::transaction`'s attempts: contention, not a bug.
            ref transient if transient.is_transient() => Self::Unavailable(
                anyhow::Error::new(e).context("the database aborted the transaction under contention"),
            ),
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                Self::Unavailable(anyhow::Error::new(e))
            }
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, ref info) => {
                let constraint = info.constraint_name().unwrap_or_default().to_owned();
                match constraint.as_str() {
                    crate::db::users::EMAIL_UNIQUE => {
                        Self::Conflict("an account with this email already exists".into())
                    }
                    crate::db::podcasts::IDEMPOTENCY_UNIQUE => {
                        Self::Conflict("a request with this idempotency key is being stored; repeat it".into())
                    }
                    _ => Self::Internal(anyhow::Error::new(e).context(format!("unique violation on {constraint}"))),
                }
            }
            // A transaction pooler the pool was not told about (logged
            // once with the fix by `DbPool::diagnose`): a deployment
            // problem to fix, not a bug in a request.
            ref lost if crate::db::pool::is_pooler_error(lost) => Self::Unavailable(
                anyhow::Error::new(e)
                    .context("prepared statement lost behind a transaction pooler; set PODFORGE_DB_POOLER=transaction"),
            ),
            // statement_timeout or a cancelled query: the database is saturated.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if info.message().contains("canceling statement due to statement timeout") =>
            {
                Self::Unavailable(anyhow::Error::new(e))
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl Transient for ApiError {
    /// A transient database error, as mapped by `From<DieselError>`.
    fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(inner) => inner.downcast_ref::<DieselError>().is_some_and(Transient::is_transient),
            _ => false,
        }
    }
}

impl crate::db::pool::DieselSource for ApiError {
    fn diesel(&self) -> Option<&DieselError> {
        match self {
            Self::Unavailable(inner) | Self::Internal(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        // Timeouts and failed connects mean the database is saturated or down.
        Self::Unavailable(anyhow::Error::new(e).context("no database connection"))
    }
}

impl From<ApiError> for anyhow::Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Internal(inner) | ApiError::Unavailable(inner) => inner,
            other => anyhow::anyhow!("{}: {}", other.code(), other.message()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

/// Result of a use-case.
pub type ApiResult<T> = Result<T, ApiError>;

/// Whole seconds to wait, rounded up, at least 1 (as HTTP's Retry-After and
/// `extensions.retryAfter` give it).
pub fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diesel_errors_map_on_purpose() {
        assert_eq!(ApiError::from(DieselError::NotFound).code(), "NOT_FOUND");
        assert_eq!(
            ApiError::from(DieselError::RollbackTransaction).code(),
            "INTERNAL_SERVER_ERROR"
        );
        let pool_timeout = PoolError::Timeout(deadpool::managed::TimeoutType::Wait);
        assert_eq!(ApiError::from(pool_timeout).code(), "UNAVAILABLE");
    }

    #[test]
    fn deadlocks_and_serialisation_failures_are_transient_and_unavailable() {
        let db = |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        for e in [
            db(DatabaseErrorKind::Unknown, "deadlock detected"),
            db(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize access due to concurrent update",
            ),
        ] {
            assert!(e.is_transient());
            let api = ApiError::from(e);
            assert_eq!(api.code(), "UNAVAILABLE");
            assert!(api.is_transient(), "the retry helper sees through the mapping");
        }
        let other = db(DatabaseErrorKind::Unknown, "division by zero");
        assert!(!other.is_transient());
        assert_eq!(ApiError::from(other).code(), "INTERNAL_SERVER_ERROR");
        assert!(!ApiError::Unavailable(anyhow::anyhow!("pool")).is_transient());
    }

    #[test]
    fn statements_lost_behind_a_transaction_pooler_are_unavailable() {
        use crate::db::pool::DieselSource;
        let db = |message: &str| DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()));
        for message in [
            "prepared statement \"s93\" does not exist",
            "prepared statement \"s7\" already exists",
        ] {
            let api = ApiError::from(db(message));
            assert_eq!(api.code(), "UNAVAILABLE");
            assert!(!api.is_transient(), "not retried blindly: the fix is a setting");
            assert!(format!("{:#}", anyhow::Error::from(api)).contains("PODFORGE_DB_POOLER=transaction"));
        }
        let api = ApiError::from(db("prepared statement \"s1\" does not exist"));
        assert!(
            api.diesel().is_some(),
            "the pool's diagnosis sees the diesel error inside"
        );
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        use std::time::Duration;
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(60)), 60);
    }

    #[test]
    fn every_variant_has_its_code() {
        let cases = [
            (ApiError::Unauthenticated("x".into()), "UNAUTHENTICATED"),
            (ApiError::NotFound("podcast"), "NOT_FOUND"),
            (ApiError::bad_input("input.email", "x"), "BAD_USER_INPUT"),
            (ApiError::Conflict("x".into()), "CONFLICT"),
            (ApiError::rate_limited("x", None), "RATE_LIMITED"),
            (ApiError::Unavailable(anyhow::anyhow!("x")), "UNAVAILABLE"),
            (
                ApiError::Internal(anyhow::anyhow!("secret detail")),
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
        }
        assert_eq!(
            ApiError::Internal(anyhow::anyhow!("secret detail")).message(),
            "internal server error"
        );
    }
}
