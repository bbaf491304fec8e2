//! Access tokens (JWT, HS256) and refresh tokens (random, stored hashed).
//!
//! Access tokens follow RFC 7519 with the algorithm pinned to HS256 (RFC 8725
//! section 3.1: never let the token choose its algorithm, so `alg: none` and
//! RS/ES confusion are refused), `exp` required and checked with a small
//! leeway, and `iss` checked. The `sid` claim names the session, so revoking
//! the session revokes the token before it expires.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{SessionId, UserId};

/// The `iss` of every access token.
pub const ISSUER: &str = "podforge";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The session.
    pub sid: SessionId,
    /// Issuer, always [`ISSUER`].
    pub iss: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
}

/// Signs and checks access tokens with one HMAC secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl TokenKeys {
    /// Keys from `secret` (non-empty). `leeway` is the tolerated clock skew on `exp`.
    pub fn new(secret: &[u8], access_ttl: Duration, leeway: Duration) -> anyhow::Result<Self> {
        let encoding = EncodingKey::from_secret(secret)?;
        let decoding = DecodingKey::from_secret(secret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_exp = true;
        validation.leeway = leeway.as_secs();
        Ok(Self {
            encoding,
            decoding,
            validation,
            access_ttl,
        })
    }

    /// Access token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// A signed access token for `user` in `session`, and its expiry.
    pub fn issue(&self, user: UserId, session: SessionId) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let exp = now + chrono::Duration::from_std(self.access_ttl)?;
        let claims = Claims {
            sub: user,
            sid: session,
            iss: ISSUER.into(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, exp))
    }

    /// Checks signature, algorithm, issuer and expiry. Any failure is `Err` with
    /// a short reason (logged, not shown).
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

/// A new refresh token: 32 random bytes, base64url (43 characters).
pub fn new_refresh_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// SHA-256 of a refresh token, the only form stored. A fast hash suffices: the
/// token has 256 bits of entropy, so it cannot be guessed from its hash.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let (user, session) = (UserId::new(), SessionId::new());
        let (t, _) = k.issue(user, session).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!((c.sub, c.sid), (user, session));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let k = keys();
        let (t, _) = k.issue(UserId::new(), SessionId::new()).unwrap();
        // Wrong secret.
        let other = TokenKeys::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap();
        assert!(other.verify(&t).is_err());
        // alg: none with the same claims.
        let mut parts = t.split('.');
        let (_, payload) = (parts.next().unwrap(), parts.next().unwrap());
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{none_header}.{payload}.")).is_err());
        // HS512 with the right secret: the algorithm is pinned.
        let claims = k.verify(&t).unwrap();
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
        )
        .unwrap();
        assert!(k.verify(&hs512).is_err());
    }

    #[test]
    fn expired_tokens_are_refused_after_the_leeway() {
        let k = keys();
        let now = Utc::now().timestamp();
        let make = |exp: i64| {
            let c = Claims {
                sub: UserId::new(),
                sid: SessionId::new(),
                iss: ISSUER.into(),
                iat: now - 100,
                exp,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap(),
            )
            .unwrap()
        };
        assert!(k.verify(&make(now - 60)).is_err());
        assert!(k.verify(&make(now - 2)).is_ok(), "within the 5 s leeway");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
    }
}
