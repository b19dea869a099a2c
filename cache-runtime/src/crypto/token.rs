//! The token layout shared by Fernet (version 0x80) and Fernet256 (0x81):
//! `version | u64 BE timestamp | 16-byte IV | AES-CBC PKCS7 ciphertext | HMAC-SHA256`,
//! url-safe base64 with padding. Parsing, structural checks, and the reasons a
//! token is rejected.

use crate::error::CacheError;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version byte of standard Fernet tokens.
pub(crate) const FERNET_VERSION: u8 = 0x80;
/// Version byte of Fernet256 tokens.
pub(crate) const FERNET256_VERSION: u8 = 0x81;
/// Version, timestamp, IV.
pub(crate) const HEADER_LEN: usize = 1 + 8 + 16;
/// HMAC-SHA256 tag.
pub(crate) const MAC_LEN: usize = 32;
/// AES block size.
pub(crate) const BLOCK_LEN: usize = 16;
/// The shortest valid token: header, one block of ciphertext, tag.
pub(crate) const MIN_LEN: usize = HEADER_LEN + BLOCK_LEN + MAC_LEN;
/// Tokens stamped further than this in the future are rejected when a max age
/// is enforced (the value of `cryptography` and rick).
pub(crate) const MAX_CLOCK_SKEW: u64 = 60;

/// Url-safe base64 with `=` padding, as Python's `urlsafe_b64encode` writes.
/// `base64-simd`: tokens are base64-decoded on every encrypted read, and the
/// SIMD codec takes a third of the time of a scalar one there.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE.encode_to_string(bytes)
}

/// Reads url-safe base64 with or without padding; `None` if it is not base64.
pub(crate) fn b64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let engine = if text.len() % 4 == 0 {
        base64_simd::URL_SAFE
    } else {
        base64_simd::URL_SAFE_NO_PAD
    };
    engine.decode_to_vec(text).ok()
}

/// Why a token was rejected. Rendered into [`CacheError::Crypto`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    Empty,
    NotBase64,
    TooShort(usize),
    BadLength(usize),
    Version(u8),
    Mac,
    Padding,
    Expired { age: u64, max_age: u64 },
    FromFuture { ahead: u64 },
    Rng,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Empty => f.write_str("the stored value is empty, not a token"),
            Reject::NotBase64 => f.write_str(
                "the stored value is not url-safe base64, so not a token (a plaintext value under an encrypted cache?)",
            ),
            Reject::TooShort(len) => write!(f, "token truncated: {len} bytes, a token has at least {MIN_LEN}"),
            Reject::BadLength(len) => write!(
                f,
                "token truncated or padded: {len} bytes is not header + whole AES blocks + HMAC"
            ),
            Reject::Version(v) => write!(
                f,
                "unknown version byte 0x{v:02x} (Fernet256 is 0x81, standard Fernet 0x80)"
            ),
            Reject::Mac => f.write_str("HMAC mismatch: wrong key, or the token was tampered with"),
            Reject::Padding => f.write_str("bad PKCS7 padding after a valid HMAC: wrong encryption half of the key"),
            Reject::Expired { age, max_age } => write!(f, "token expired: {age} s old, max age {max_age} s"),
            Reject::FromFuture { ahead } => write!(
                f,
                "token timestamp is {ahead} s in the future (more than the {MAX_CLOCK_SKEW} s clock skew allowed)"
            ),
            Reject::Rng => f.write_str("the operating system's random source failed"),
        }
    }
}

impl Reject {
    /// The error a caller sees, naming the cipher that rejected the token.
    pub(crate) fn into_error(self, cipher: &str) -> CacheError {
        CacheError::Crypto(format!("{cipher}: {self}"))
    }
}

/// Decodes a stored token and checks its layout (not its MAC).
pub(crate) fn decode(token: &[u8]) -> Result<Vec<u8>, Reject> {
    if token.is_empty() {
        return Err(Reject::Empty);
    }
    let raw = b64_decode(token).ok_or(Reject::NotBase64)?;
    check_layout(&raw)?;
    Ok(raw)
}

/// [`decode`] in place: the token's own buffer receives the decoded bytes,
/// so an encrypted read allocates nothing for them.
pub(crate) fn decode_owned(mut token: Vec<u8>) -> Result<Vec<u8>, Reject> {
    if token.is_empty() {
        return Err(Reject::Empty);
    }
    let engine = if token.len() % 4 == 0 {
        base64_simd::URL_SAFE
    } else {
        base64_simd::URL_SAFE_NO_PAD
    };
    let len = engine.decode_inplace(&mut token).map_err(|_| Reject::NotBase64)?.len();
    token.truncate(len);
    check_layout(&token)?;
    Ok(token)
}

/// Length and block alignment; the version byte is checked by the caller.
pub(crate) fn check_layout(raw: &[u8]) -> Result<(), Reject> {
    if raw.is_empty() {
        return Err(Reject::Empty);
    }
    if raw[0] != FERNET_VERSION && raw[0] != FERNET256_VERSION {
        return Err(Reject::Version(raw[0]));
    }
    if raw.len() < MIN_LEN {
        return Err(Reject::TooShort(raw.len()));
    }
    if (raw.len() - HEADER_LEN - MAC_LEN) % BLOCK_LEN != 0 {
        return Err(Reject::BadLength(raw.len()));
    }
    Ok(())
}

/// The timestamp of a decoded token (unverified).
pub(crate) fn timestamp(raw: &[u8]) -> u64 {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[1..9]);
    u64::from_be_bytes(ts)
}

/// Rick's and `cryptography`'s age rule: older than `max_age`, or stamped more
/// than [`MAX_CLOCK_SKEW`] seconds ahead of `now`, is rejected.
pub(crate) fn check_age(timestamp: u64, max_age: Duration, now: u64) -> Result<(), Reject> {
    let max_age = max_age.as_secs();
    if timestamp.saturating_add(max_age) < now {
        return Err(Reject::Expired {
            age: now - timestamp,
            max_age,
        });
    }
    if now.saturating_add(MAX_CLOCK_SKEW) < timestamp {
        return Err(Reject::FromFuture { ahead: timestamp - now });
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh random IV.
pub(crate) fn random_iv() -> Result<[u8; 16], Reject> {
    let mut iv = [0u8; 16];
    getrandom::getrandom(&mut iv).map_err(|_| Reject::Rng)?;
    Ok(iv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_checks() {
        assert_eq!(decode(b""), Err(Reject::Empty));
        assert_eq!(decode(b"not base64!"), Err(Reject::NotBase64));
        assert_eq!(decode(b64_encode(&[0x81; 40]).as_bytes()), Err(Reject::TooShort(40)));
        assert_eq!(
            decode(b64_encode(&[0x81; MIN_LEN + 1]).as_bytes()),
            Err(Reject::BadLength(MIN_LEN + 1))
        );
        assert_eq!(
            decode(b64_encode(&[0x7f; MIN_LEN]).as_bytes()),
            Err(Reject::Version(0x7f))
        );
        assert!(decode(b64_encode(&[0x81; MIN_LEN]).as_bytes()).is_ok());
        // Padding is optional on read.
        let unpadded = b64_encode(&[0x81; MIN_LEN + 16]);
        assert!(unpadded.ends_with('='));
        assert!(decode(unpadded.trim_end_matches('=').as_bytes()).is_ok());
    }

    #[test]
    fn in_place_decoding_matches() {
        let token = b64_encode(&[0x81; MIN_LEN + 16]);
        assert_eq!(decode_owned(token.clone().into_bytes()), decode(token.as_bytes()));
        let unpadded = token.trim_end_matches('=').as_bytes().to_vec();
        assert_eq!(decode_owned(unpadded), decode(token.as_bytes()));
        for bad in [&b""[..], b"not base64!", b"gQAA"] {
            assert_eq!(decode_owned(bad.to_vec()), decode(bad));
        }
    }

    #[test]
    fn age_rule_matches_rick() {
        let max = Duration::from_secs(10);
        assert!(check_age(100, max, 110).is_ok());
        assert_eq!(check_age(100, max, 111), Err(Reject::Expired { age: 11, max_age: 10 }));
        assert!(check_age(160, max, 100).is_ok());
        assert_eq!(check_age(161, max, 100), Err(Reject::FromFuture { ahead: 61 }));
        assert!(check_age(u64::MAX, max, 0).is_err());
    }

    #[test]
    fn messages_name_the_cipher_and_the_reason() {
        let err = Reject::Mac.into_error("Fernet256");
        assert!(err.is_corrupt_entry());
        assert_eq!(
            err.to_string(),
            "crypto error: Fernet256: HMAC mismatch: wrong key, or the token was tampered with"
        );
    }
}
