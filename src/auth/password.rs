//! Password policy and Argon2id hashing.
//!
//! Policy after NIST SP 800-63B section 5.1.1.2 (memorized secrets): at least
//! [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_CHARS`] (long
//! enough for passphrases, short enough that hashing cannot be abused), no
//! composition rules, and a check against commonly used passwords and the
//! account's own email.
//!
//! Hashing is Argon2id with OWASP's minimum parameters by default (19 MiB, 2
//! iterations, 1 lane) and runs on the [`Hasher`]'s threads, within its
//! memory budget: a hash takes tens of milliseconds of CPU, which must not
//! stall the async workers, and its memory cost, which a flood must not
//! multiply.

use std::cell::RefCell;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::hasher::Hasher;
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

fn argon2_params(params: HashParams) -> ApiResult<Params> {
    Params::new(params.memory_kib, params.iterations, 1, None)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2 parameters: {e}")))
}

thread_local! {
    /// This thread's Argon2 memory, kept from hash to hash (see [`with_memory`]).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with at least `blocks` Argon2 blocks (1 KiB each) of this
/// thread's memory.
///
/// Why keep it: argon2's own `hash_password` allocates and frees its memory
/// cost for every hash. glibc serves the first such block by mmap and, once
/// it is freed, raises its mmap threshold to the block's size, so later hashes
/// are carved out of the malloc arenas and their memory is retained there,
/// fragmented: measured, 64 hashes on 3 threads left the process 290 MB
/// larger (`docs/BENCHMARKS.md`). With one buffer per hashing thread, grown
/// to the largest cost seen and never freed, hashing allocates nothing and
/// holds at most threads × memory cost, which the hashing budget bounds.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            // Replace rather than grow: nothing to copy.
            *memory = vec![Block::default(); blocks];
        }
        f(&mut memory[..blocks])
    })
}

/// The Argon2 output for `password` and `salt` under the given settings,
/// computed in this thread's memory.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
    output_len: usize,
) -> password_hash::Result<Output> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    with_memory(params.block_count(), |blocks| {
        Output::init_with(output_len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut *blocks)?)
        })
    })
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=...`) on `hasher`.
///
/// Errors: UNAVAILABLE when the hashing budget stays full (see [`Hasher::run`]).
pub async fn hash(hasher: &Hasher, password: String, params: HashParams) -> ApiResult<String> {
    let argon2_params = argon2_params(params)?;
    hasher
        .run(params.memory_kib, move || {
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            let output = compute(
                Algorithm::Argon2id,
                Version::V0x13,
                &argon2_params,
                password.as_bytes(),
                salt.as_salt(),
                Params::DEFAULT_OUTPUT_LEN,
            )
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&argon2_params).map_err(|e| anyhow::anyhow!("argon2: {e}"))?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await?
}

/// Checks `password` against a PHC string on `hasher`. The parameters stored
/// in the hash are used, whatever the current settings, and its memory cost
/// is what it takes from the budget.
///
/// Errors: INTERNAL for a stored hash that is not an Argon2 PHC string;
/// UNAVAILABLE as [`hash`].
pub async fn verify(hasher: &Hasher, password: String, phc: String) -> ApiResult<bool> {
    let memory_kib = PasswordHash::new(&phc)
        .map_err(|e| anyhow::anyhow!("stored hash: {e}"))?
        .params
        .get_decimal("m")
        .unwrap_or(Params::DEFAULT_M_COST);
    hasher
        .run(memory_kib, move || {
            let stored = |e: password_hash::Error| ApiError::Internal(anyhow::anyhow!("stored hash: {e}"));
            let parsed = PasswordHash::new(&phc).map_err(stored)?;
            let algorithm = Algorithm::try_from(parsed.algorithm).map_err(stored)?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()
                .map_err(|e| stored(e.into()))?
                .unwrap_or_default();
            let params = Params::try_from(&parsed).map_err(stored)?;
            let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                return Err(stored(password_hash::Error::PhcStringField));
            };
            let computed = compute(algorithm, version, &params, password.as_bytes(), salt, expected.len())
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2: {e}")))?;
            // Output's equality is constant-time.
            Ok(computed == expected)
        })
        .await?
}

/// A hash of a random password, verified against when the email is unknown so
/// that a login's timing does not reveal whether an account exists.
pub async fn dummy_hash(hasher: &Hasher, params: HashParams) -> ApiResult<String> {
    hash(hasher, format!("{:x}", rand::random::<u128>()), params).await
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
        let hasher = Hasher::new(4096, params.memory_kib).unwrap();
        let h = hash(&hasher, "correct horse battery".into(), params).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(h.contains("m=1024"));
        assert!(
            verify(&hasher, "correct horse battery".into(), h.clone())
                .await
                .unwrap()
        );
        assert!(!verify(&hasher, "wrong horse battery".into(), h).await.unwrap());
        assert!(verify(&hasher, "x".into(), "not a hash".into()).await.is_err());
        // Hashes made by the argon2 crate's own API verify too, and the other way round.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery", &salt)
        .unwrap()
        .to_string();
        assert!(
            verify(&hasher, "correct horse battery".into(), theirs.clone())
                .await
                .unwrap()
        );
        assert!(!verify(&hasher, "wrong".into(), theirs).await.unwrap());
        let ours = hash(&hasher, "correct horse battery".into(), params).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
    }
}
