//! Password policy and Argon2id hashing.
//!
//! Policy after NIST SP 800-63B section 5.1.1.2 (memorized secrets): at least
//! [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_CHARS`] (long
//! enough for passphrases, short enough that hashing cannot be abused), no
//! composition rules, and a check against commonly used passwords and the
//! account's own email.
//!
//! Hashing is Argon2id with OWASP's minimum parameters by default (19 MiB, 2
//! iterations, 1 lane) and runs on tokio's blocking pool: a hash takes tens of
//! milliseconds of CPU, which must not stall the async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{ApiError, ApiResult};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Common passwords refused outright (a short list of the most used ones of
/// acceptable length; a breach corpus would be better, but must ship offline).
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "0123456789",
    "1111111111",
    "0000000000",
    "qwertyuiop",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou123",
    "abcdefghij",
    "abc1234567",
    "qwerty1234",
    "qwerty12345",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "letmein123",
    "welcome123",
    "administrator",
    "football123",
    "baseball123",
    "superman123",
    "princess123",
    "sunshine123",
    "trustno1234",
    "changeme123",
    "podforge123",
    "passwordpassword",
];

/// Checks `password` against the policy. `email` is the normalised account email.
///
/// Errors: BAD_USER_INPUT on `input.password` saying which rule failed.
pub fn check_policy(password: &str, email: &str) -> ApiResult<()> {
    let chars = password.chars().count();
    let bad = |m: &str| Err(ApiError::bad_input("input.password", m));
    if chars < MIN_PASSWORD_CHARS {
        return bad(&format!("password must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return bad(&format!("password must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    let lower = password.to_lowercase();
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first) {
        return bad("password must not repeat one character");
    }
    if COMMON.contains(&lower.as_str()) {
        return bad("password is too common");
    }
    let local = email.split('@').next().unwrap_or_default();
    if local.chars().count() >= 4 && lower.contains(local) {
        return bad("password must not contain the email address");
    }
    Ok(())
}

/// Argon2id settings.
#[derive(Debug, Clone, Copy)]
pub struct HashParams {
    /// Memory cost, KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
}

fn argon2(params: HashParams) -> ApiResult<Argon2<'static>> {
    let p = Params::new(params.memory_kib, params.iterations, 1, None)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=...`), off the async runtime.
pub async fn hash(password: String, params: HashParams) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = argon2(params)?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing task: {e}")))?
}

/// Checks `password` against a PHC string, off the async runtime.
/// The parameters stored in the hash are used, whatever the current settings.
pub async fn verify(password: String, phc: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("verify task: {e}")))?
}

/// A hash of a random password, verified against when the email is unknown so
/// that a login's timing does not reveal whether an account exists.
pub async fn dummy_hash(params: HashParams) -> ApiResult<String> {
    hash(format!("{:x}", rand::random::<u128>()), params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_weak_and_oversized_passwords() {
        let email = "ada@example.com";
        assert!(check_policy("short", email).is_err());
        assert!(check_policy(&"x".repeat(129), email).is_err());
        assert!(check_policy("aaaaaaaaaaaa", email).is_err());
        assert!(check_policy("Password123", email).is_err());
        assert!(check_policy("ada-is-my-name", "ada.lovelace@example.com").is_ok());
        assert!(check_policy("hello-lovelace-99", "lovelace@example.com").is_err());
        assert!(check_policy("correct horse battery", email).is_ok());
        assert!(check_policy(&"é".repeat(MAX_PASSWORD_CHARS - 1).replacen('é', "a", 1), email).is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify_round_trip() {
        let params = HashParams {
            memory_kib: 1024,
            iterations: 1,
        };
        let h = hash("correct horse battery".into(), params).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!verify("wrong horse battery".into(), h).await.unwrap());
    }
}
