//! [`Fernet256`]: rick's Fernet with a 512-bit key (HMAC-SHA256 + AES-256-CBC).

use super::token::{self, b64_encode, Reject, FERNET256_VERSION, HEADER_LEN, MAC_LEN};
use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::Aes256;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

type HmacSha256 = Hmac<Sha256>;
type Encryptor = cbc::Encryptor<Aes256>;
type Decryptor = cbc::Decryptor<Aes256>;

/// Length of a Fernet256 key in bytes.
const KEY_LEN: usize = 64;

const NAME: &str = "Fernet256";

/// rick's `Fernet256`: Fernet with a 64-byte key, AES-256-CBC and HMAC-SHA256.
///
/// A token is the url-safe base64 (with `=` padding) of
/// `0x81 | u64 big-endian timestamp | 16-byte IV | AES-256-CBC PKCS7 ciphertext | HMAC-SHA256`,
/// the tag covering everything before it. The first 32 key bytes sign, the
/// last 32 encrypt. For the same key, time and IV the token is byte-identical
/// to the one `rick.crypto.Fernet256` makes.
///
/// Three ways to build one:
/// - [`Fernet256::new`]: rick's `CryptRedisCache(key=...)` contract, a string
///   whose 64 UTF-8 bytes are the key;
/// - [`Fernet256::from_base64_key`]: rick's `Fernet256(key)` contract, the
///   url-safe base64 of 64 bytes (what `Fernet256.generate_key()` returns);
/// - [`Fernet256::from_bytes`]: the 64 raw bytes.
///
/// The key is zeroized on drop and never printed: `Debug` shows `<redacted>`.
///
/// ```
/// use memorix_runtime::crypto::Fernet256;
///
/// let f = Fernet256::new("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")?;
/// let token = f.encrypt_with_iv(b"hi", 1_700_000_000, [7; 16]);
/// assert!(token.starts_with("gQAAAABlU"));
/// assert_eq!(f.decrypt(&token)?, b"hi");
/// assert_eq!(f.extract_timestamp(&token)?, 1_700_000_000);
/// assert!(Fernet256::new("too short").unwrap_err().is_config());
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Clone)]
pub struct Fernet256 {
    signing_key: [u8; 32],
    /// The expanded AES-256 key, computed once; the `aes` crate zeroizes it on
    /// drop (feature `zeroize`). Boxed: it is ~1 KB.
    cipher: Box<Aes256>,
}

impl Drop for Fernet256 {
    fn drop(&mut self) {
        self.signing_key.zeroize();
    }
}

impl fmt::Debug for Fernet256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fernet256").field("key", &"<redacted>").finish()
    }
}

impl Fernet256 {
    /// rick's `CryptRedisCache` key: a string whose UTF-8 encoding is exactly
    /// 64 bytes. Like rick, the rule counts bytes: 64 ASCII characters, or fewer
    /// characters when some are multi-byte. Anything else is
    /// [`CacheError::Config`] with `field: "key"`.
    pub fn new(key: &str) -> Result<Self> {
        if key.len() != KEY_LEN {
            return Err(CacheError::config(
                "key",
                format!(
                    "a Fernet256 key must be exactly 64 bytes of UTF-8 (64 ASCII characters, as rick requires; \
                     e.g. from `memorix::crypto::generate_key()` or Python's `secrets.token_hex(32)`), \
                     got {} characters / {} bytes",
                    key.chars().count(),
                    key.len()
                ),
            ));
        }
        Self::from_bytes(key.as_bytes())
    }

    /// rick's `Fernet256(key)` key: the url-safe base64 of 64 bytes, as
    /// `Fernet256.generate_key()` in Python returns.
    pub fn from_base64_key(key: &str) -> Result<Self> {
        let bytes =
            Zeroizing::new(token::b64_decode(key.trim().as_bytes()).ok_or_else(|| {
                CacheError::config("key", "a Fernet256 base64 key must be url-safe base64 of 64 bytes")
            })?);
        if bytes.len() != KEY_LEN {
            return Err(CacheError::config(
                "key",
                format!(
                    "a Fernet256 base64 key must decode to 64 bytes, got {} bytes",
                    bytes.len()
                ),
            ));
        }
        Self::from_bytes(&bytes)
    }

    /// The 64 raw key bytes: the first 32 sign, the last 32 encrypt.
    pub fn from_bytes(key: &[u8]) -> Result<Self> {
        if key.len() != KEY_LEN {
            return Err(CacheError::config(
                "key",
                format!("a Fernet256 key must be exactly 64 bytes, got {}", key.len()),
            ));
        }
        let cipher = Aes256::new_from_slice(&key[32..])
            .map_err(|_| CacheError::config("key", "the AES-256 half of a Fernet256 key must be 32 bytes"))?;
        let mut signing_key = [0u8; 32];
        signing_key.copy_from_slice(&key[..32]);
        Ok(Fernet256 {
            signing_key,
            cipher: Box::new(cipher),
        })
    }

    /// A fresh random key for [`Fernet256::new`]: 64 url-safe base64
    /// characters (48 random bytes, 384 bits).
    pub fn generate_key() -> Result<String> {
        let mut random = Zeroizing::new([0u8; 48]);
        getrandom::getrandom(random.as_mut()).map_err(|_| Reject::Rng.into_error(NAME))?;
        Ok(b64_encode(random.as_ref()))
    }

    /// A fresh random key for [`Fernet256::from_base64_key`]: the url-safe
    /// base64 of 64 random bytes, like Python's `Fernet256.generate_key()`.
    pub fn generate_base64_key() -> Result<String> {
        let mut random = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::getrandom(random.as_mut()).map_err(|_| Reject::Rng.into_error(NAME))?;
        Ok(b64_encode(random.as_ref()))
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
        let iv = token::random_iv().map_err(|r| r.into_error(NAME))?;
        Ok(self.encrypt_with_iv(data, timestamp, iv))
    }

    /// Encrypts with a given timestamp and IV: deterministic, for known-answer
    /// tests and interop checks. Never reuse an IV with one key in production;
    /// use [`Fernet256::encrypt`].
    pub fn encrypt_with_iv(&self, data: &[u8], timestamp: u64, iv: [u8; 16]) -> String {
        b64_encode(&self.seal_raw(data, timestamp, &iv))
    }

    /// Verifies and decrypts a token (as `str` or bytes), whatever its age.
    pub fn decrypt(&self, token: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), None)
    }

    /// Verifies and decrypts a token no older than `max_age` (rick's
    /// `decrypt(token, ttl)`); also rejects tokens stamped more than 60 s ahead.
    pub fn decrypt_with_max_age(&self, token: impl AsRef<[u8]>, max_age: Duration) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), Some((max_age, token::now())))
    }

    /// [`Fernet256::decrypt_with_max_age`] with the current time given, in
    /// seconds since the Unix epoch: for tests.
    pub fn decrypt_at_time(&self, token: impl AsRef<[u8]>, max_age: Duration, now: u64) -> Result<Vec<u8>> {
        self.decrypt_inner(token.as_ref(), Some((max_age, now)))
    }

    /// The timestamp a token was made at, after verifying its HMAC.
    pub fn extract_timestamp(&self, token: impl AsRef<[u8]>) -> Result<u64> {
        let raw = self.verified(token.as_ref()).map_err(|r| r.into_error(NAME))?;
        Ok(token::timestamp(&raw))
    }

    fn decrypt_inner(&self, token: &[u8], age: Option<(Duration, u64)>) -> Result<Vec<u8>> {
        token::decode(token)
            .and_then(|raw| self.open_raw(raw, age))
            .map_err(|r| r.into_error(NAME))
    }

    fn verified(&self, token: &[u8]) -> Result<Vec<u8>, Reject> {
        let raw = token::decode(token)?;
        if raw[0] != FERNET256_VERSION {
            return Err(Reject::Version(raw[0]));
        }
        self.verify_mac(&raw)?;
        Ok(raw)
    }

    /// `0x81 | ts | iv | ciphertext | mac`, not yet base64-encoded.
    pub(crate) fn seal_raw(&self, data: &[u8], timestamp: u64, iv: &[u8; 16]) -> Vec<u8> {
        let padded_len = (data.len() / 16 + 1) * 16;
        let body_len = HEADER_LEN + padded_len;
        let mut out = vec![0u8; body_len + MAC_LEN];
        out[0] = FERNET256_VERSION;
        out[1..9].copy_from_slice(&timestamp.to_be_bytes());
        out[9..HEADER_LEN].copy_from_slice(iv);
        out[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        let encrypted = Encryptor::inner_iv_init(Aes256::clone(&self.cipher), iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut out[HEADER_LEN..body_len], data.len())
            .map(<[u8]>::len);
        // The buffer holds exactly the padded length, so padding cannot fail.
        debug_assert_eq!(encrypted.ok(), Some(padded_len));
        let tag = self.mac(&out[..body_len]);
        out[body_len..].copy_from_slice(&tag);
        out
    }

    /// Verifies and decrypts a decoded token whose layout was checked.
    pub(crate) fn open_raw(&self, raw: Vec<u8>, age: Option<(Duration, u64)>) -> Result<Vec<u8>, Reject> {
        self.verify_raw(&raw, age)?;
        self.decrypt_verified(raw)
    }

    /// Version byte, HMAC (constant time), then age: the checks that say
    /// whether this key made the token.
    pub(crate) fn verify_raw(&self, raw: &[u8], age: Option<(Duration, u64)>) -> Result<(), Reject> {
        if raw[0] != FERNET256_VERSION {
            return Err(Reject::Version(raw[0]));
        }
        self.verify_mac(raw)?;
        if let Some((max_age, now)) = age {
            token::check_age(token::timestamp(raw), max_age, now)?;
        }
        Ok(())
    }

    /// Decrypts a token that passed [`Fernet256::verify_raw`], in place: the
    /// plaintext reuses the decoded token's buffer.
    pub(crate) fn decrypt_verified(&self, mut raw: Vec<u8>) -> Result<Vec<u8>, Reject> {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&raw[9..HEADER_LEN]);
        let end = raw.len() - MAC_LEN;
        let len = Decryptor::inner_iv_init(Aes256::clone(&self.cipher), &iv.into())
            .decrypt_padded_mut::<Pkcs7>(&mut raw[HEADER_LEN..end])
            .map_err(|_| Reject::Padding)?
            .len();
        raw.truncate(HEADER_LEN + len);
        raw.drain(..HEADER_LEN);
        Ok(raw)
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.signing_key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison of the token's tag with the one computed.
    fn verify_mac(&self, raw: &[u8]) -> Result<(), Reject> {
        let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.signing_key).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| Reject::Mac)
    }
}

impl Transform for Fernet256 {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let iv = token::random_iv().map_err(|r| r.into_error(NAME))?;
        let raw = self.seal_raw(plain, token::now(), &iv);
        Ok(b64_encode(&raw).into_bytes())
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_inner(stored, None)
    }

    fn open_owned(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        token::decode_owned(stored)
            .and_then(|raw| self.open_raw(raw, None))
            .map_err(|r| r.into_error(NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// Made by rick 0.8.6: `Fernet256(urlsafe_b64encode(KEY))._encrypt_from_parts(b"hello", 1700000000, IV)`.
    const HELLO: &str =
        "gQAAAABlU_EAAAECAwQFBgcICQoLDA0ODzGDUpebmFelfbTh-UUl7QwOoD6h-pLw_c0Re3FCLAqcw7d45DGYHaIWEcQAo2qQhw==";

    #[test]
    fn known_answer_from_rick() {
        let f = Fernet256::new(KEY).unwrap();
        assert_eq!(f.encrypt_with_iv(b"hello", 1_700_000_000, IV), HELLO);
        assert_eq!(f.decrypt(HELLO).unwrap(), b"hello");
        assert_eq!(f.extract_timestamp(HELLO).unwrap(), 1_700_000_000);
    }

    #[test]
    fn transform_round_trip_and_fresh_iv() {
        let f = Fernet256::new(&Fernet256::generate_key().unwrap()).unwrap();
        let a = f.seal(b"payload").unwrap();
        let b = f.seal(b"payload").unwrap();
        assert_ne!(a, b, "every token gets a fresh IV");
        assert_eq!(f.open(&a).unwrap(), b"payload");
    }

    #[test]
    fn debug_redacts_the_key() {
        let f = Fernet256::new(KEY).unwrap();
        let shown = format!("{f:?}");
        assert_eq!(shown, r#"Fernet256 { key: "<redacted>" }"#);
    }

    #[test]
    fn base64_key_matches_raw_key() {
        let raw = Fernet256::new(KEY).unwrap();
        let b64 = Fernet256::from_base64_key(&b64_encode(KEY.as_bytes())).unwrap();
        assert_eq!(b64.encrypt_with_iv(b"x", 1, IV), raw.encrypt_with_iv(b"x", 1, IV));
        assert!(Fernet256::from_base64_key(&b64_encode(&[0u8; 32]))
            .unwrap_err()
            .is_config());
        assert!(Fernet256::from_base64_key("***").unwrap_err().is_config());
        assert_eq!(Fernet256::generate_base64_key().unwrap().len(), 88);
    }
}
