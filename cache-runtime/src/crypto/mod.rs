//! Encryption of stored values: Fernet256 (rick-compatible), standard Fernet, key rotation.
//!
//! Every cipher here is a [`Transform`](crate::Transform), so it plugs into the
//! one value pipeline of any engine: codec, then compression, then encryption.
//!
//! - [`Fernet256`]: rick's Fernet variant with a 64-byte key (HMAC-SHA256 key +
//!   AES-256-CBC key). Tokens are byte-identical to rick's
//!   `rick.crypto.Fernet256` for the same key, time and IV.
//! - [`Fernet`]: standard Fernet (AES-128-CBC), readable by Python's
//!   `cryptography.fernet.Fernet`.
//! - [`Keyring`]: several keys; encrypts with the first, decrypts with any,
//!   re-encrypts old tokens under the first ([`Keyring::reencrypt`]).
//!
//! Rejected tokens (tampered, truncated, wrong key, expired, not a token at all)
//! are a [`CacheError::Crypto`](crate::CacheError::Crypto) that says why; never
//! a panic, and never plaintext passed through.
//!
//! Keys are zeroized when dropped and never appear in `Debug` output or errors.
//!
//! ```
//! use memorix_runtime::crypto::{Fernet256, Keyring};
//!
//! let key = Fernet256::generate_key()?; // 64 url-safe characters
//! let cipher = Fernet256::new(&key)?;
//! let token = cipher.encrypt(b"secret")?;
//! assert_eq!(cipher.decrypt(&token)?, b"secret");
//!
//! // Rotation: the new key encrypts, the old one still decrypts.
//! let ring = Keyring::new(Fernet256::new(&Fernet256::generate_key()?)?).with_old_key(cipher);
//! assert_eq!(ring.decrypt(token.as_bytes())?, b"secret");
//! # Ok::<_, memorix_runtime::CacheError>(())
//! ```

mod fernet;
mod fernet256;
mod keyring;
mod token;

pub use self::fernet::Fernet;
pub use self::fernet256::Fernet256;
pub use self::keyring::{Algorithm, Cipher, Keyring};

/// A fresh random key for [`Fernet256::new`] and `CryptRedisCache`: 64
/// url-safe base64 characters (384 random bits), the same form rick accepts.
///
/// Fails only if the operating system's random source does.
pub fn generate_key() -> crate::Result<String> {
    Fernet256::generate_key()
}
