//! Signed, expiring media URLs: an `<audio>` element or a podcast app can
//! fetch an episode without sending headers, and only for as long as the
//! signature says.
//!
//! A URL is `/media/<key>?expires=<unix seconds>&sig=<base64url>`, where the
//! signature is HMAC-SHA256 (RFC 2104) over `"<key>\n<expires>"` with a key
//! derived from the service's secret. Verification is constant-time; a
//! forged, altered or expired signature is refused without saying which.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies media URLs.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

/// Why a signed URL was refused (kept for logs; clients see only 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The signature does not match the key and expiry.
    BadSignature,
    /// The URL expired.
    Expired,
}

impl UrlSigner {
    /// A signer whose key is derived from `secret` (the JWT secret), with a
    /// label so that a media signature can never pass for anything else.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_mac());
        mac.update(b"podforge media url signing v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, key: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_mac());
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=..&sig=..`) granting access to `key` until
    /// `expires` (unix seconds).
    pub fn sign(&self, key: &str, expires: i64) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(key, expires).finalize().into_bytes());
        format!("expires={expires}&sig={sig}")
    }

    /// Checks `sig` for `key` and `expires` at time `now` (unix seconds).
    pub fn verify(&self, key: &str, expires: i64, sig: &str, now: i64) -> Result<(), Refused> {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return Err(Refused::BadSignature);
        };
        self.mac(key, expires)
            .verify_slice(&sig)
            .map_err(|_| Refused::BadSignature)?;
        if now > expires {
            return Err(Refused::Expired);
        }
        Ok(())
    }
}

/// HMAC accepts keys of any length, so building one cannot fail.
fn unreachable_mac() -> HmacSha256 {
    unreachable!("HMAC-SHA256 takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (i64, String) {
        let mut expires = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap(),
                Some(("sig", v)) => sig = v.to_owned(),
                _ => {}
            }
        }
        (expires, sig)
    }

    #[test]
    fn a_signature_holds_for_its_key_until_it_expires() {
        let signer = UrlSigner::new(b"a secret of the service");
        let (expires, sig) = parts(&signer.sign("podcasts/a/episode.mp3", 1_000));
        assert_eq!(signer.verify("podcasts/a/episode.mp3", expires, &sig, 999), Ok(()));
        assert_eq!(signer.verify("podcasts/a/episode.mp3", expires, &sig, 1_000), Ok(()));
        assert_eq!(
            signer.verify("podcasts/a/episode.mp3", expires, &sig, 1_001),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn forged_or_altered_signatures_are_refused() {
        let signer = UrlSigner::new(b"a secret of the service");
        let (expires, sig) = parts(&signer.sign("podcasts/a/episode.mp3", 1_000));
        let refused = Err(Refused::BadSignature);
        assert_eq!(signer.verify("podcasts/b/episode.mp3", expires, &sig, 0), refused);
        assert_eq!(signer.verify("podcasts/a/episode.mp3", expires + 1, &sig, 0), refused);
        assert_eq!(signer.verify("podcasts/a/episode.mp3", expires, "AAAA", 0), refused);
        assert_eq!(
            signer.verify("podcasts/a/episode.mp3", expires, "not base64!", 0),
            refused
        );
        let other = UrlSigner::new(b"another secret");
        assert_eq!(other.verify("podcasts/a/episode.mp3", expires, &sig, 0), refused);
    }
}
