//! Authentication: passwords, tokens and the viewer of a request.
//!
//! Knows the database (sessions) but not GraphQL: resolvers ask
//! [`RequestAuth::viewer`] and get an [`ApiError::Unauthenticated`] to map.

pub mod client;
pub mod hasher;
pub mod password;
pub mod token;

use tokio::sync::OnceCell;

use crate::db::pool::run;
use crate::db::{DbPool, users};
use crate::domain::{SessionId, UserId};
use crate::error::{ApiError, ApiResult};
use token::TokenKeys;

/// The signed-in user making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// The user.
    pub user_id: UserId,
    /// The session the access token belongs to.
    pub session_id: SessionId,
    /// Access token expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// What a request presented, resolved lazily: the token is checked (signature,
/// expiry) when the request arrives, the session (revocation) only when a
/// resolver first needs the viewer, and at most once per request.
pub struct RequestAuth {
    presented: Presented,
    checked: OnceCell<ApiResult<Viewer>>,
}

enum Presented {
    Nothing,
    Invalid(String),
    Valid(token::Claims),
}

impl RequestAuth {
    /// Reads an `Authorization` header value (`Bearer <jwt>`); `None` when absent.
    pub fn from_header(value: Option<&str>, keys: &TokenKeys) -> Self {
        let presented = match value.map(str::trim) {
            None | Some("") => Presented::Nothing,
            Some(v) => match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => match keys.verify(token.trim()) {
                    Ok(claims) => Presented::Valid(claims),
                    Err(e) => Presented::Invalid(format!("invalid access token: {e}")),
                },
                _ => Presented::Invalid("the Authorization header must be `Bearer <token>`".into()),
            },
        };
        Self {
            presented,
            checked: OnceCell::new(),
        }
    }

    /// The viewer, or UNAUTHENTICATED when no valid, unrevoked token came with the request.
    pub async fn viewer(&self, pool: &DbPool) -> ApiResult<Viewer> {
        self.checked
            .get_or_init(|| async {
                let claims = match &self.presented {
                    Presented::Nothing => {
                        return Err(ApiError::Unauthenticated(
                            "sign in: this operation needs an access token".into(),
                        ));
                    }
                    Presented::Invalid(reason) => {
                        tracing::debug!(reason = %reason, "rejected access token");
                        return Err(ApiError::Unauthenticated(
                            "the access token is invalid or expired".into(),
                        ));
                    }
                    Presented::Valid(c) => c,
                };
                let user = run!(pool, ApiError, async |conn| {
                    Ok(users::active_session_user(conn, claims.sid).await?)
                })?;
                match user {
                    Some(user) if user == claims.sub => Ok(Viewer {
                        user_id: claims.sub,
                        session_id: claims.sid,
                        expires_at: claims.exp,
                    }),
                    _ => Err(ApiError::Unauthenticated("the session has ended; sign in again".into())),
                }
            })
            .await
            .as_ref()
            .map(|v| *v)
            .map_err(clone_error)
    }
}

/// ApiError is not Clone (it carries anyhow errors); the cached auth result only
/// ever holds these variants, and the rest collapse to UNAVAILABLE.
fn clone_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unauthenticated(m) => ApiError::Unauthenticated(m.clone()),
        ApiError::Internal(_) => ApiError::Internal(anyhow::anyhow!("session check failed")),
        _ => ApiError::Unavailable(anyhow::anyhow!("session check failed")),
    }
}
