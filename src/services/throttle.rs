//! Sign-in throttling: `login`, `register` and `refreshToken` attempts per
//! account and per client address.
//!
//! The state is in PostgreSQL ([`crate::db::throttle`]), so every instance
//! counts against the same buckets. Each attempt takes one unit from its
//! client address's bucket (all three operations together) and one from its
//! account's (per operation: `login:<email>`, `register:<email>`,
//! `refresh:<user id>`), before any password is hashed. A refused attempt is
//! RATE_LIMITED with the wait in `extensions.retryAfter`; it takes nothing,
//! so a client that keeps hammering gets exactly the limit per window, and
//! the right password is refused like a wrong one while the account's bucket
//! is empty (otherwise guessing would go on and only the hits be answered).

use crate::app::App;
use crate::auth::client::ClientAddr;
use crate::db::{AsyncPgConnection, throttle};
use crate::error::{ApiError, ApiResult};

/// Takes one attempt from `from`'s address bucket (when the address is known).
///
/// Errors: RATE_LIMITED with the wait.
pub async fn address(app: &App, conn: &mut AsyncPgConnection, from: Option<ClientAddr>) -> ApiResult<()> {
    let t = &app.config.auth.throttle;
    let Some(from) = from else { return Ok(()) };
    if t.address_limit == 0 {
        return Ok(());
    }
    match throttle::take(
        conn,
        &format!("address:{}", from.bucket_key()),
        t.address_limit,
        t.address_window,
    )
    .await?
    {
        None => Ok(()),
        Some(wait) => Err(ApiError::rate_limited(
            format!(
                "too many sign-in attempts from your address; try again in {} s",
                crate::error::whole_seconds(wait)
            ),
            Some(wait),
        )),
    }
}

/// Takes one attempt from the account bucket `bucket` (e.g. `login:<email>`).
///
/// Errors: RATE_LIMITED with the wait.
pub async fn account(app: &App, conn: &mut AsyncPgConnection, bucket: &str) -> ApiResult<()> {
    let t = &app.config.auth.throttle;
    if t.account_limit == 0 {
        return Ok(());
    }
    match throttle::take(conn, bucket, t.account_limit, t.account_window).await? {
        None => Ok(()),
        Some(wait) => Err(ApiError::rate_limited(
            format!(
                "too many sign-in attempts for this account; try again in {} s",
                crate::error::whole_seconds(wait)
            ),
            Some(wait),
        )),
    }
}
