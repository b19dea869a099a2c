//! [`Fernet`]: standard Fernet (AES-128-CBC + HMAC-SHA256) on the `fernet` crate.

use super::token::{self, Reject, FERNET_VERSION};
use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

const NAME: &str = "Fernet";

/// Standard Fernet, as specified at <https://github.com/fernet/spec> and
/// implemented by Python's `cryptography.fernet.Fernet`: a 32-byte key
/// (url-safe base64, 44 characters), AES-128-CBC, HMAC-SHA256, version byte
/// 0x80. Tokens are readable by any Fernet implementation.
///
/// Tokens are verified and decrypted by the `fernet` crate (RustCrypto
/// backend) and made here, so that a failing random source is an error rather
/// than the crate's panic. Both copies of the key are zeroized on drop.
/// `Debug` never shows the key.
///
/// ```
/// use memorix_runtime::crypto::Fernet;
///
/// let f = Fernet::new(&Fernet::generate_key()?)?;
/// let token = f.encrypt(b"secret")?;
/// assert!(token.starts_with("gAAAAA"));
/// assert_eq!(f.decrypt(&token)?, b"secret");
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Clone)]
pub struct Fernet {
    inner: fernet::Fernet,
    /// The key's 32 bytes: the first 16 sign, the last 16 encrypt.
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Fernet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fernet").field("key", &"<redacted>").finish()
    }
}

impl Fernet {
    /// A cipher for a standard Fernet key: url-safe base64 of 32 bytes, as
    /// `Fernet.generate_key()` returns in Python. Anything else is
    /// [`CacheError::Config`] with `field: "key"`.
    pub fn new(key: &str) -> Result<Self> {
        let raw = token::b64_decode(key.trim().as_bytes()).map(Zeroizing::new);
        let parts = raw.as_deref().and_then(|raw| <[u8; 32]>::try_from(raw.as_slice()).ok());
        fernet::Fernet::new(key.trim())
            .zip(parts)
            .map(|(inner, bytes)| Fernet {
                inner,
                key: Zeroizing::new(bytes),
            })
            .ok_or_else(|| {
                CacheError::config(
                    "key",
                    format!(
                        "a standard Fernet key must be the url-safe base64 of 32 bytes (44 characters, e.g. from \
                         `Fernet::generate_key()` or Python's `Fernet.generate_key()`), got {} characters",
                        key.chars().count()
                    ),
                )
            })
    }

    /// A fresh random standard Fernet key.
    pub fn generate_key() -> Result<String> {
        let mut random = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(random.as_mut()).map_err(|_| Reject::Rng.into_error(NAME))?;
        Ok(token::b64_encode(random.as_ref()))
    }

    /// Encrypts `data` with the current time and a random IV.
    ///
    /// Fails only if the operating system's random source does.
    pub fn encrypt(&self, data: &[u8]) -> Result<String> {
        self.encrypt_at_time(data, token::now())
    }

    /// Encrypts `data` stamped with `timestamp` (seconds since the Unix epoch)
    /// and a random IV.
    pub fn encrypt_at_time(&self, data: &[u8], timestamp: u64) -> Result<String> {
        self.encrypt_with(data, timestamp, token::random_iv)
    }

    /// Encrypts with a given timestamp and IV: deterministic, for known-answer
    /// tests. Never reuse an IV with one key in production; use [`Fernet::encrypt`].
    pub fn encrypt_with_iv(&self, data: &[u8], timestamp: u64, iv: [u8; 16]) -> Result<String> {
        self.encrypt_with(data, timestamp, || Ok(iv))
    }

    /// `0x80 | ts | iv | AES-128-CBC(data) | HMAC-SHA256`, base64; the IV from `iv`.
    fn encrypt_with(
        &self,
        data: &[u8],
        timestamp: u64,
        iv: impl FnOnce() -> Result<[u8; 16], Reject>,
    ) -> Result<String> {
        let fail = |r: Reject| r.into_error(NAME);
        let iv = iv().map_err(fail)?;
        let (signing_key, encryption_key) = self.key.split_at(16);
        let cipher = cbc::Encryptor::<aes::Aes128>::new_from_slices(encryption_key, &iv)
            .map_err(|_| CacheError::Crypto(format!("{NAME}: the encryption half of the key must be 16 bytes")))?;
        let mut raw = Vec::with_capacity(token::HEADER_LEN + data.len() + token::BLOCK_LEN + token::MAC_LEN);
        raw.push(FERNET_VERSION);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&iv);
        raw.extend_from_slice(&cipher.encrypt_padded_vec_mut::<Pkcs7>(data));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(signing_key)
            .map_err(|_| CacheError::Crypto(format!("{NAME}: the signing half of the key is unusable")))?;
        mac.update(&raw);
        raw.extend_from_slice(&mac.finalize().into_bytes());
        Ok(token::b64_encode(&raw))
    }

    /// Verifies and decrypts a token, whatever its age.
    pub fn decrypt(&self, token: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), None)
    }

    /// Verifies and decrypts a token no older than `max_age`.
    pub fn decrypt_with_max_age(&self, token: impl AsRef<[u8]>, max_age: Duration) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), Some((max_age, token::now())))
    }

    /// [`Fernet::decrypt_with_max_age`] at a given time: for tests.
    pub fn decrypt_at_time(&self, token: impl AsRef<[u8]>, max_age: Duration, now: u64) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), Some((max_age, now)))
    }

    /// The timestamp a token was made at, after verifying it.
    pub fn extract_timestamp(&self, token: impl AsRef<[u8]>) -> Result<u64> {
        let token = token.as_ref();
        let raw = token::decode(token).map_err(|r| r.into_error(NAME))?;
        self.open_raw(token, &raw, None).map_err(|r| r.into_error(NAME))?;
        Ok(token::timestamp(&raw))
    }

    fn decrypt_inner(&self, token: &[u8], age: Option<(Duration, u64)>) -> Result<Vec<u8>> {
        token::decode(token)
            .and_then(|raw| self.open_raw(token, &raw, age))
            .map_err(|r| r.into_error(NAME))
    }

    /// Verifies and decrypts `token`, whose decoded form `raw` passed the layout check.
    pub(crate) fn open_raw(&self, token: &[u8], raw: &[u8], age: Option<(Duration, u64)>) -> Result<Vec<u8>, Reject> {
        if raw[0] != FERNET_VERSION {
            return Err(Reject::Version(raw[0]));
        }
        // The layout check decoded it, so the token is ASCII.
        let text = std::str::from_utf8(token).map_err(|_| Reject::NotBase64)?;
        // The crate's one error covers a bad MAC and bad padding; with the
        // layout and version already checked, a bad MAC is what remains likely.
        // Its clock-skew check runs even without a TTL; a "now" of MAX - 60
        // turns it off (without overflow), and the age is checked below after
        // the MAC, as Python's `cryptography` does.
        let plain = self
            .inner
            .decrypt_at_time(text, None, u64::MAX - token::MAX_CLOCK_SKEW)
            .map_err(|_| Reject::Mac)?;
        if let Some((max_age, now)) = age {
            token::check_age(token::timestamp(raw), max_age, now)?;
        }
        Ok(plain)
    }
}

impl Transform for Fernet {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        self.encrypt(plain).map(String::into_bytes)
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_inner(stored, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first vector of the Fernet spec's `generate.json` / `verify.json`.
    const SPEC_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const SPEC_TOKEN: &str =
        "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
    const SPEC_NOW: u64 = 499_162_800; // 1985-10-26T01:20:00-07:00

    #[test]
    fn decrypts_the_spec_vector() {
        let f = Fernet::new(SPEC_KEY).unwrap();
        assert_eq!(f.decrypt(SPEC_TOKEN).unwrap(), b"hello");
        assert_eq!(
            f.decrypt_at_time(SPEC_TOKEN, Duration::from_secs(60), SPEC_NOW + 60)
                .unwrap(),
            b"hello"
        );
        let err = f
            .decrypt_at_time(SPEC_TOKEN, Duration::from_secs(60), SPEC_NOW + 61)
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert_eq!(f.extract_timestamp(SPEC_TOKEN).unwrap(), SPEC_NOW);
    }

    #[test]
    fn rejects_bad_keys_and_tokens() {
        assert!(Fernet::new("short").unwrap_err().is_config());
        let f = Fernet::new(&Fernet::generate_key().unwrap()).unwrap();
        let err = f.decrypt(SPEC_TOKEN).unwrap_err();
        assert!(err.to_string().contains("HMAC mismatch"), "{err}");
        let f256 = super::super::Fernet256::new(&super::super::generate_key().unwrap()).unwrap();
        let err = f.decrypt(f256.encrypt(b"x").unwrap()).unwrap_err();
        assert!(err.to_string().contains("version byte 0x81"), "{err}");
        assert_eq!(format!("{f:?}"), r#"Fernet { key: "<redacted>" }"#);
    }

    #[test]
    fn makes_the_spec_token() {
        let f = Fernet::new(SPEC_KEY).unwrap();
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(f.encrypt_with_iv(b"hello", SPEC_NOW, iv).unwrap(), SPEC_TOKEN);
    }

    #[test]
    fn a_failing_random_source_is_an_error_not_a_panic() {
        let f = Fernet::new(SPEC_KEY).unwrap();
        let err = f.encrypt_with(b"x", SPEC_NOW, || Err(Reject::Rng)).unwrap_err();
        assert!(matches!(err, CacheError::Crypto(_)), "{err}");
        assert!(err.to_string().contains("random source"), "{err}");
    }

    #[test]
    fn transform_round_trip() {
        let f = Fernet::new(&Fernet::generate_key().unwrap()).unwrap();
        let sealed = f.seal(b"abc").unwrap();
        assert_eq!(f.open(&sealed).unwrap(), b"abc");
        assert_eq!(
            f.decrypt_at_time(&sealed, Duration::from_secs(5), token::now())
                .unwrap(),
            b"abc"
        );
    }
}
