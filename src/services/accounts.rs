//! Accounts: registration, sign-in, refresh-token rotation and sign-out.
//!
//! `register`, `login` and `refresh` are throttled per client address and per
//! account before any password is hashed ([`super::throttle`]); hashes run
//! within the process's hashing budget ([`crate::auth::hasher`]).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use crate::app::App;
use crate::auth::client::ClientAddr;
use crate::auth::{Viewer, password, token};
use crate::db::pool::run;
use crate::db::users::{self, NewUser, User};
use crate::domain::{SessionId, UserId};
use crate::error::{ApiError, ApiResult};
use crate::services::throttle;

/// Longest accepted email, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Tokens handed to a client after register, login or refresh.
#[derive(Debug, Clone)]
pub struct AuthTokens {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// When the access token expires.
    pub access_token_expires_at: DateTime<Utc>,
    /// Single-use token for `refreshToken`.
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_token_expires_at: DateTime<Utc>,
    /// The signed-in user.
    pub user: User,
}

/// Trims and lower-cases an email and checks its shape (one `@`, non-empty
/// parts, a dot in the domain, no spaces, at most 254 bytes).
///
/// Errors: BAD_USER_INPUT on `input.email`.
pub fn normalize_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let bad = |m: &str| Err(ApiError::bad_input("input.email", m));
    if email.len() > MAX_EMAIL_BYTES {
        return bad("email must be at most 254 bytes");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("email must look like name@example.com");
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("email must look like name@example.com");
    }
    Ok(email)
}

async fn start_session(app: &App, conn: &mut crate::db::AsyncPgConnection, user: User) -> ApiResult<AuthTokens> {
    let session = SessionId::new();
    users::create_session(conn, session, user.id).await?;
    issue(app, conn, session, user).await
}

async fn issue(
    app: &App,
    conn: &mut crate::db::AsyncPgConnection,
    session: SessionId,
    user: User,
) -> ApiResult<AuthTokens> {
    let refresh_token = token::new_refresh_token();
    let refresh_expires =
        Utc::now() + chrono::Duration::from_std(app.config.auth.refresh_token_ttl).map_err(anyhow::Error::from)?;
    users::insert_refresh_token(
        conn,
        session,
        &token::hash_refresh_token(&refresh_token),
        refresh_expires,
    )
    .await?;
    let (access_token, access_expires) = app.tokens.issue(user.id, session)?;
    Ok(AuthTokens {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: refresh_expires,
        user,
    })
}

/// Creates an account and signs it in; `from` is the client's address.
///
/// Errors: BAD_USER_INPUT (email shape, password policy), CONFLICT (email
/// taken), RATE_LIMITED (too many attempts from `from` or for this email).
pub async fn register(
    app: &App,
    from: Option<ClientAddr>,
    email: &str,
    password_text: String,
) -> ApiResult<AuthTokens> {
    let email = run!(app.pool, ApiError, async |conn| {
        throttle::address(app, conn, from).await?;
        let email = normalize_email(email)?;
        password::check_policy(&password_text, &email)?;
        throttle::account(app, conn, &format!("register:{email}")).await?;
        Ok(email)
    })?;
    // No connection is held while the hash waits for room and runs.
    let hash = password::hash(&app.hasher, password_text, app.hash_params()).await?;
    run!(app.pool, ApiError, async |conn| conn
        .transaction(async |conn| {
            let user = users::insert(
                conn,
                &NewUser {
                    id: UserId::new(),
                    email: &email,
                    password_hash: &hash,
                },
            )
            .await?;
            start_session(app, conn, user).await
        })
        .await)
}

/// The account with `email`, registered with `password` if there is none
/// (the local user of `podforge generate`). No session is started.
///
/// Errors: as [`register`] when the account must be created.
pub async fn find_or_register(app: &App, email: &str, password_text: &str) -> ApiResult<User> {
    let normalized = normalize_email(email)?;
    let existing = run!(app.pool, ApiError, async |conn| Ok(users::find_by_email(
        conn,
        &normalized
    )
    .await?))?;
    match existing {
        Some(user) => Ok(user),
        None => Ok(register(app, None, &normalized, password_text.to_owned()).await?.user),
    }
}

/// Signs in with email and password; `from` is the client's address.
///
/// Errors: UNAUTHENTICATED for an unknown email or a wrong password (the same
/// message and similar timing for both, so accounts cannot be probed);
/// RATE_LIMITED for too many attempts from `from` or for this email, known
/// or not (so the throttle does not tell either).
pub async fn login(app: &App, from: Option<ClientAddr>, email: &str, password_text: String) -> ApiResult<AuthTokens> {
    let wrong = || ApiError::Unauthenticated("wrong email or password".into());
    let user = run!(app.pool, ApiError, async |conn| {
        throttle::address(app, conn, from).await?;
        // Oversized input cannot match a stored password; refuse before hashing it.
        if password_text.chars().count() > password::MAX_PASSWORD_CHARS || email.len() > MAX_EMAIL_BYTES * 2 {
            return Err(wrong());
        }
        let email = email.trim().to_lowercase();
        throttle::account(app, conn, &format!("login:{email}")).await?;
        Ok(users::find_by_email(conn, &email).await?)
    })?;
    let Some(user) = user else {
        // Spend the same work as a real check.
        let _ = password::verify(&app.hasher, password_text, app.dummy_hash().await?).await;
        return Err(wrong());
    };
    if !password::verify(&app.hasher, password_text, user.password_hash.clone()).await? {
        return Err(wrong());
    }
    run!(app.pool, ApiError, async |conn| {
        conn.transaction(async |conn| start_session(app, conn, user).await)
            .await
    })
}

/// Why a refresh failed; reuse is worth a warning in the logs.
enum Refusal {
    Unknown,
    Expired,
    Revoked,
    Reused(SessionId),
}

/// Exchanges a refresh token for new tokens (rotation: the old one is spent).
///
/// Presenting a token that was already exchanged means it was copied: the whole
/// session is revoked, including the token the legitimate client holds, and its
/// access tokens stop working (RFC 9700 section 4.14.2).
///
/// Errors: UNAUTHENTICATED for an unknown, expired, reused or revoked token;
/// RATE_LIMITED for too many attempts from `from` or for the token's account.
pub async fn refresh(app: &App, from: Option<ClientAddr>, refresh_token: &str) -> ApiResult<AuthTokens> {
    let outcome: Result<AuthTokens, Refusal> = run!(app.pool, ApiError, async |conn| {
        throttle::address(app, conn, from).await?;
        if refresh_token.len() > 256 {
            return Err(ApiError::Unauthenticated("the refresh token is invalid".into()));
        }
        let hash = token::hash_refresh_token(refresh_token.trim());
        conn.transaction::<_, ApiError, _>(async |conn| {
            let Some((row, user_id, revoked_at)) = users::lock_refresh_token(conn, &hash).await? else {
                return Ok(Err(Refusal::Unknown));
            };
            // Locks: refresh token, then (below) session, then the bucket.
            throttle::account(app, conn, &format!("refresh:{user_id}")).await?;
            if revoked_at.is_some() {
                return Ok(Err(Refusal::Revoked));
            }
            if row.used_at.is_some() {
                users::revoke_session(conn, row.session_id, "refresh_token_reuse").await?;
                return Ok(Err(Refusal::Reused(row.session_id)));
            }
            if row.expires_at <= Utc::now() {
                return Ok(Err(Refusal::Expired));
            }
            users::mark_refresh_token_used(conn, row.id).await?;
            let user = users::find(conn, user_id).await?.ok_or(ApiError::NotFound("user"))?;
            issue(app, conn, row.session_id, user).await.map(Ok)
        })
        .await
    })?;
    outcome.map_err(|refusal| {
        let message = match refusal {
            Refusal::Unknown => "the refresh token is invalid",
            Refusal::Expired => "the refresh token has expired; sign in again",
            Refusal::Revoked => "the session has ended; sign in again",
            Refusal::Reused(session) => {
                tracing::warn!(session.id = %session, "refresh token reused: session revoked");
                "the refresh token was already used; the session has been revoked"
            }
        };
        ApiError::Unauthenticated(message.into())
    })
}

/// Ends the viewer's session: its refresh token and access tokens stop working.
pub async fn logout(app: &App, viewer: &Viewer) -> ApiResult<bool> {
    run!(app.pool, ApiError, async |conn| {
        users::revoke_session(conn, viewer.session_id, "logout").await?;
        Ok(true)
    })
}

/// The viewer's account.
///
/// Errors: UNAUTHENTICATED when the account was deleted.
pub async fn me(app: &App, viewer: &Viewer) -> ApiResult<User> {
    run!(app.pool, ApiError, async |conn| {
        users::find(conn, viewer.user_id)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("the account no longer exists".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@example.com",
        ] {
            let err = normalize_email(bad).unwrap_err();
            assert!(
                matches!(err, ApiError::BadUserInput { ref field, .. } if field == "input.email"),
                "{bad}"
            );
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
