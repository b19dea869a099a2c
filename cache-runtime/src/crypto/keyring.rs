//! [`Keyring`]: several keys, encrypt with the first, decrypt with any.

use super::token::{self, b64_encode, Reject, FERNET256_VERSION, FERNET_VERSION};
use super::{Fernet, Fernet256};
use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use std::sync::Arc;
use std::time::Duration;

/// Which cipher a key string is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// rick's Fernet256 (the default): the key is a string of 64 UTF-8 bytes.
    #[default]
    Fernet256,
    /// Standard Fernet: the key is the url-safe base64 of 32 bytes.
    Fernet,
}

/// One key of either algorithm.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Cipher {
    /// rick's Fernet256.
    Fernet256(Fernet256),
    /// Standard Fernet.
    Fernet(Fernet),
}

impl Cipher {
    /// Parses `key` for `algorithm` (see [`Fernet256::new`] and [`Fernet::new`]).
    pub fn new(algorithm: Algorithm, key: &str) -> Result<Self> {
        Ok(match algorithm {
            Algorithm::Fernet256 => Cipher::Fernet256(Fernet256::new(key)?),
            Algorithm::Fernet => Cipher::Fernet(Fernet::new(key)?),
        })
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Cipher::Fernet256(_) => Algorithm::Fernet256,
            Cipher::Fernet(_) => Algorithm::Fernet,
        }
    }

    fn version(&self) -> u8 {
        match self {
            Cipher::Fernet256(_) => FERNET256_VERSION,
            Cipher::Fernet(_) => FERNET_VERSION,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Cipher::Fernet256(_) => "Fernet256",
            Cipher::Fernet(_) => "Fernet",
        }
    }

    /// Token bytes for `plain`, stamped `timestamp`, with a random IV.
    fn seal_at(&self, plain: &[u8], timestamp: u64) -> Result<Vec<u8>> {
        match self {
            Cipher::Fernet256(f) => {
                let iv = token::random_iv().map_err(|r| r.into_error(self.name()))?;
                Ok(b64_encode(&f.seal_raw(plain, timestamp, &iv)).into_bytes())
            }
            Cipher::Fernet(f) => Ok(f.encrypt_at_time(plain, timestamp)?.into_bytes()),
        }
    }
}

impl From<Fernet256> for Cipher {
    fn from(cipher: Fernet256) -> Self {
        Cipher::Fernet256(cipher)
    }
}

impl From<Fernet> for Cipher {
    fn from(cipher: Fernet) -> Self {
        Cipher::Fernet(cipher)
    }
}

impl Transform for Cipher {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        self.seal_at(plain, token::now())
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        match self {
            Cipher::Fernet256(f) => f.open(stored),
            Cipher::Fernet(f) => f.open(stored),
        }
    }

    fn open_owned(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        match self {
            Cipher::Fernet256(f) => f.open_owned(stored),
            Cipher::Fernet(f) => f.open(&stored),
        }
    }
}

/// Keys for rotation: the first (primary) encrypts, every key decrypts.
///
/// Keys of both algorithms may be mixed: a token's version byte says which
/// algorithm made it, so moving from standard Fernet to Fernet256 is a
/// rotation like any other. [`Keyring::reencrypt`] moves one token to the
/// primary key; `CryptRedisCache::rotate` does it for a stored entry.
///
/// A `Keyring` is a [`Transform`]: any engine takes it with
/// `.transform(Arc::new(keyring))`. Clones share the keys.
///
/// ```
/// use memorix_runtime::crypto::{Fernet256, Keyring};
///
/// let old = Fernet256::new(&Fernet256::generate_key()?)?;
/// let new = Fernet256::new(&Fernet256::generate_key()?)?;
/// let token = old.encrypt(b"v")?;
///
/// let ring = Keyring::new(new.clone()).with_old_key(old);
/// assert_eq!(ring.decrypt(token.as_bytes())?, b"v");
/// let moved = ring.reencrypt(token.as_bytes())?.expect("was under the old key");
/// assert_eq!(new.decrypt(&moved)?, b"v");
/// assert!(ring.reencrypt(&moved)?.is_none(), "already under the primary key");
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Arc<[Cipher]>,
    max_age: Option<Duration>,
}

impl Keyring {
    /// A keyring with one key, which encrypts and decrypts.
    pub fn new(primary: impl Into<Cipher>) -> Self {
        Keyring {
            keys: Arc::from(vec![primary.into()]),
            max_age: None,
        }
    }

    /// A keyring from key strings of one algorithm: the first encrypts.
    /// Fails with [`CacheError::Config`] (`field: "key"`) if there is no key
    /// or one is malformed; the error says which, never what it holds.
    pub fn from_keys<S: AsRef<str>>(algorithm: Algorithm, keys: &[S]) -> Result<Self> {
        let mut ciphers = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            ciphers.push(Cipher::new(algorithm, key.as_ref()).map_err(|err| match err {
                CacheError::Config { field, reason } if i > 0 => CacheError::Config {
                    field,
                    reason: format!("decryption key #{i}: {reason}"),
                },
                other => other,
            })?);
        }
        if ciphers.is_empty() {
            return Err(CacheError::config("key", "a keyring needs at least one key"));
        }
        Ok(Keyring {
            keys: Arc::from(ciphers),
            max_age: None,
        })
    }

    /// Adds a key that decrypts but does not encrypt (a previous key, during rotation).
    #[must_use]
    pub fn with_old_key(self, key: impl Into<Cipher>) -> Self {
        let mut keys = self.keys.to_vec();
        keys.push(key.into());
        Keyring {
            keys: Arc::from(keys),
            max_age: self.max_age,
        }
    }

    /// Rejects tokens older than `max_age` on decryption (rick's `ttl`), and
    /// tokens stamped more than 60 s in the future.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The key that encrypts.
    pub fn primary(&self) -> &Cipher {
        &self.keys[0]
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> &[Cipher] {
        &self.keys
    }

    /// The max age set with [`Keyring::with_max_age`].
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Encrypts with the primary key: the token's bytes (ASCII).
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>> {
        self.primary().seal_at(plain, token::now())
    }

    /// Decrypts with whichever key made the token.
    pub fn decrypt(&self, token: &[u8]) -> Result<Vec<u8>> {
        let raw = token::decode(token).map_err(|r| r.into_error(self.primary().name()))?;
        self.open_decoded(token, raw).map(|(plain, _)| plain)
    }

    /// Moves a token to the primary key, keeping its timestamp (like
    /// `MultiFernet.rotate`). `None` when the primary key already decrypts it.
    pub fn reencrypt(&self, token: &[u8]) -> Result<Option<Vec<u8>>> {
        let raw = token::decode(token).map_err(|r| r.into_error(self.primary().name()))?;
        let timestamp = token::timestamp(&raw);
        let (plain, index) = self.open_decoded(token, raw)?;
        if index == 0 {
            return Ok(None);
        }
        let plain = zeroize::Zeroizing::new(plain);
        self.primary().seal_at(&plain, timestamp).map(Some)
    }

    /// [`Keyring::decrypt`] reusing the token's buffer: decoded and decrypted
    /// in place. Standard Fernet checks the token text itself, so a keyring
    /// holding such a key takes the copying path.
    fn decrypt_owned(&self, token: Vec<u8>) -> Result<Vec<u8>> {
        if self.keys.iter().any(|k| !matches!(k, Cipher::Fernet256(_))) {
            return self.decrypt(&token);
        }
        let raw = token::decode_owned(token).map_err(|r| r.into_error(self.primary().name()))?;
        self.open_decoded(&[], raw).map(|(plain, _)| plain)
    }

    /// Plaintext and the index of the key that opened it.
    fn open_decoded(&self, token: &[u8], raw: Vec<u8>) -> Result<(Vec<u8>, usize)> {
        let age = self.max_age.map(|max| (max, token::now()));
        let version = raw[0];
        let mut first_reject = None;
        let mut tried = 0;
        for (index, cipher) in self.keys.iter().enumerate() {
            if cipher.version() != version {
                continue;
            }
            tried += 1;
            let verdict = match cipher {
                Cipher::Fernet256(f) => match f.verify_raw(&raw, age) {
                    Ok(()) => {
                        let plain = f.decrypt_verified(raw).map_err(|r| r.into_error(cipher.name()))?;
                        return Ok((plain, index));
                    }
                    Err(reject) => reject,
                },
                Cipher::Fernet(f) => match f.open_raw(token, &raw, age) {
                    Ok(plain) => return Ok((plain, index)),
                    Err(reject) => reject,
                },
            };
            // A key that authenticated the token (expired, bad padding) is the
            // one that made it: no other key will do better.
            if verdict != Reject::Mac {
                return Err(verdict.into_error(cipher.name()));
            }
            first_reject.get_or_insert((verdict, cipher.name()));
        }
        Err(match first_reject {
            None => {
                let kind = if version == FERNET256_VERSION { "Fernet256" } else { "Fernet" };
                CacheError::Crypto(format!(
                    "keyring: the token is {kind} (version byte 0x{version:02x}) but no {kind} key is in the keyring"
                ))
            }
            Some((reject, name)) if tried == 1 => reject.into_error(name),
            Some((_, name)) => CacheError::Crypto(format!(
                "{name}: HMAC mismatch under all {tried} keys of the keyring: wrong keys, or the token was tampered with"
            )),
        })
    }
}

impl From<Fernet256> for Keyring {
    fn from(cipher: Fernet256) -> Self {
        Keyring::new(cipher)
    }
}

impl From<Fernet> for Keyring {
    fn from(cipher: Fernet) -> Self {
        Keyring::new(cipher)
    }
}

impl Transform for Keyring {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        self.encrypt(plain)
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        self.decrypt(stored)
    }

    fn open_owned(&self, stored: Vec<u8>) -> Result<Vec<u8>> {
        self.decrypt_owned(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f256() -> Fernet256 {
        Fernet256::new(&Fernet256::generate_key().unwrap()).unwrap()
    }

    #[test]
    fn mixed_algorithms_rotate() {
        let old = Fernet::new(&Fernet::generate_key().unwrap()).unwrap();
        let new = f256();
        let token = old.encrypt_at_time(b"v", 1_000).unwrap();
        let ring = Keyring::new(new.clone()).with_old_key(old);
        assert_eq!(ring.decrypt(token.as_bytes()).unwrap(), b"v");
        let moved = ring.reencrypt(token.as_bytes()).unwrap().unwrap();
        assert_eq!(new.decrypt(&moved).unwrap(), b"v");
        assert_eq!(
            new.extract_timestamp(&moved).unwrap(),
            1_000,
            "rotation keeps the timestamp"
        );
    }

    #[test]
    fn errors_say_why() {
        let ring = Keyring::new(f256()).with_old_key(f256());
        let foreign = f256().encrypt(b"x").unwrap();
        let err = ring.decrypt(foreign.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("under all 2 keys"), "{err}");
        let fernet = Fernet::new(&Fernet::generate_key().unwrap())
            .unwrap()
            .encrypt(b"x")
            .unwrap();
        let err = ring.decrypt(fernet.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no Fernet key"), "{err}");
        let err = ring.decrypt(b"\x80\x04K\x01.").unwrap_err();
        assert!(err.to_string().contains("plaintext"), "{err}");
    }

    #[test]
    fn in_place_opening_matches_the_copying_one() {
        let (a, b) = (f256(), f256());
        let fernet = Fernet::new(&Fernet::generate_key().unwrap()).unwrap();
        let rings = [
            Keyring::new(a.clone()),
            Keyring::new(b.clone()).with_old_key(a.clone()),
            Keyring::new(a.clone()).with_old_key(fernet.clone()),
        ];
        let tokens = [
            a.encrypt(b"v").unwrap().into_bytes(),
            b.encrypt(b"w").unwrap().into_bytes(),
            fernet.encrypt(b"x").unwrap().into_bytes(),
            b"\x80\x04K\x01.".to_vec(),
            Vec::new(),
        ];
        for ring in &rings {
            for token in &tokens {
                let copied = ring.open(token).map_err(|e| e.to_string());
                let owned = ring.open_owned(token.clone()).map_err(|e| e.to_string());
                assert_eq!(copied, owned);
                let cipher = ring.primary();
                let copied = cipher.open(token).map_err(|e| e.to_string());
                assert_eq!(copied, cipher.open_owned(token.clone()).map_err(|e| e.to_string()));
            }
        }
    }

    #[test]
    fn max_age_applies_to_every_key() {
        let old = f256();
        let stale = old.encrypt_at_time(b"x", token::now() - 120).unwrap();
        let ring = Keyring::new(f256())
            .with_old_key(old)
            .with_max_age(Duration::from_secs(60));
        let err = ring.decrypt(stale.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn from_keys_validates_each_key() {
        assert!(Keyring::from_keys::<&str>(Algorithm::Fernet256, &[])
            .unwrap_err()
            .is_config());
        let good = Fernet256::generate_key().unwrap();
        let err = Keyring::from_keys(Algorithm::Fernet256, &[good.as_str(), "short"]).unwrap_err();
        assert!(err.to_string().contains("decryption key #1"), "{err}");
        assert!(!err.to_string().contains(&good));
        assert_eq!(
            Keyring::from_keys(Algorithm::Fernet256, &[&good]).unwrap().keys().len(),
            1
        );
    }
}
