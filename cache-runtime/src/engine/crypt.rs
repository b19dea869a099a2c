//! [`CryptRedisCache`]: a Redis cache whose values are encrypted at rest.

use crate::cache::{Cache, CorruptEntryPolicy};
use crate::codec::{Codec, Pickle};
use crate::connection::{RedisConfig, RedisConnection};
use crate::crypto::{Algorithm, Keyring};
use crate::engine::{RedisCache, RedisCacheBuilder};
use crate::error::{CacheError, Result};
use crate::keys::Prefix;
use crate::pipeline::{Pipeline, Transform};
use crate::stats::CacheStats;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// How many times [`CryptRedisCache::rotate`] retries when the entry changes
/// between its read and its compare-and-set write.
const ROTATE_ATTEMPTS: usize = 8;

/// How many keys one SCAN step asks for in [`CryptRedisCache::rotate_all`].
const SCAN_BATCH: usize = 500;

/// Replaces `KEYS[1]` with `ARGV[2]` only if it still holds `ARGV[1]`, keeping
/// its remaining TTL (PTTL + PX works on every Redis version, unlike KEEPTTL).
static ROTATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
",
    )
});

/// What [`CryptRedisCache::rotate`] did to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The key holds no value.
    Missing,
    /// The entry was already encrypted under the primary key: left untouched.
    Current,
    /// The entry was re-encrypted under the primary key (same timestamp, same TTL).
    Rotated,
}

/// Totals of [`CryptRedisCache::rotate_all`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationSummary {
    /// Entries re-encrypted under the primary key.
    pub rotated: u64,
    /// Entries already under the primary key.
    pub current: u64,
    /// Entries that expired or were removed while the scan ran.
    pub missing: u64,
}

/// A [`RedisCache`] whose values are encrypted and authenticated at rest:
/// rick's `CryptRedisCache`.
///
/// Values go codec -> (compression, if added) -> encryption on write and back
/// on read, through the one [`Pipeline`] of the inner `RedisCache`; keys, TTLs,
/// prefixes, batches, `purge` and the rest are the `RedisCache` ones.
///
/// With the defaults (Fernet256, [`Pickle`], no prefix) entries are
/// interchangeable with rick's: a value rick's `CryptRedisCache(key=K)` set is
/// read here with the same `K`, and the other way round.
///
/// A tampered entry, one written under another key, or a plaintext value is
/// [`CacheError::Crypto`], never returned as data.
///
/// ```no_run
/// use memorix_runtime::{CacheExt, CryptRedisCache, RedisConfig};
/// use std::time::Duration;
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let key = std::env::var("CACHE_KEY").expect("64-character key");
/// let cache = CryptRedisCache::new(&key, RedisConfig::from_url("redis://127.0.0.1/0")?).await?;
/// cache.set("api_token", &("secret123", 2025), Some(Duration::from_secs(3600))).await?;
/// let token: Option<(String, u32)> = cache.get("api_token").await?;
/// # let _ = token; Ok(()) }
/// ```
pub struct CryptRedisCache {
    inner: RedisCache,
    keyring: Keyring,
}

impl fmt::Debug for CryptRedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptRedisCache")
            .field("inner", &self.inner)
            .field("keys", &self.keyring.keys().len())
            .field("algorithm", &self.keyring.primary().algorithm())
            .finish()
    }
}

/// Builds a [`CryptRedisCache`].
///
/// ```no_run
/// use memorix_runtime::crypto::Algorithm;
/// use memorix_runtime::{CryptRedisCache, Json, RedisConfig};
/// use std::time::Duration;
///
/// # async fn demo(new_key: &str, old_key: &str) -> memorix_runtime::Result<()> {
/// let cache = CryptRedisCache::builder()
///     .config(RedisConfig::from_url("redis://127.0.0.1/0")?)
///     .key(new_key)          // encrypts and decrypts
///     .old_key(old_key)      // only decrypts, during a rotation
///     .algorithm(Algorithm::Fernet256)
///     .codec(Json)
///     .prefix("session:")
///     .default_ttl(Duration::from_secs(3600))
///     .connect()
///     .await?;
/// # let _ = cache; Ok(()) }
/// ```
#[must_use]
pub struct CryptRedisCacheBuilder {
    redis: RedisCacheBuilder,
    algorithm: Algorithm,
    key: Option<Zeroizing<String>>,
    old_keys: Vec<Zeroizing<String>>,
    keyring: Option<Keyring>,
    max_age: Option<Duration>,
    transforms: Vec<Arc<dyn Transform>>,
}

impl Default for CryptRedisCacheBuilder {
    fn default() -> Self {
        CryptRedisCacheBuilder {
            redis: RedisCache::builder().codec(Pickle),
            algorithm: Algorithm::default(),
            key: None,
            old_keys: Vec::new(),
            keyring: None,
            max_age: None,
            transforms: Vec::new(),
        }
    }
}

impl fmt::Debug for CryptRedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptRedisCacheBuilder")
            .field("redis", &self.redis)
            .field("algorithm", &self.algorithm)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("old_keys", &self.old_keys.len())
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl CryptRedisCacheBuilder {
    /// Where to connect (default: `127.0.0.1:6379`).
    pub fn config(mut self, config: RedisConfig) -> Self {
        self.redis = self.redis.config(config);
        self
    }

    /// Use a connection you built instead of opening one (rick's `backend=`).
    pub fn connection(mut self, connection: impl Into<RedisConnection>) -> Self {
        self.redis = self.redis.connection(connection);
        self
    }

    /// Key prefix, e.g. `"session:"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis = self.redis.prefix(prefix);
        self
    }

    /// Codec for typed values (default: [`Pickle`], what rick's
    /// `CryptRedisCache` always uses).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.redis = self.redis.codec(codec);
        self
    }

    /// TTL used when a write passes `None`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.redis = self.redis.default_ttl(ttl);
        self
    }

    /// What typed reads do with entries that do not decrypt or decode.
    pub fn on_corrupt_entry(mut self, policy: CorruptEntryPolicy) -> Self {
        self.redis = self.redis.on_corrupt_entry(policy);
        self
    }

    /// Strict start: `connect()` returns the connection error when Redis is
    /// unreachable (default `false`: the cache starts degraded, failing fast
    /// until the background connect succeeds; see
    /// [`RedisCacheBuilder::fail_on_connection_error`]). A bad key is an
    /// error either way.
    pub fn fail_on_connection_error(mut self, fail: bool) -> Self {
        self.redis = self.redis.fail_on_connection_error(fail);
        self
    }

    /// Adds a byte transform that runs before encryption on write (and after
    /// decryption on read), e.g. compression: compressing ciphertext is useless.
    pub fn transform(mut self, stage: Arc<dyn Transform>) -> Self {
        self.transforms.push(stage);
        self
    }

    /// The algorithm of the key strings (default: [`Algorithm::Fernet256`]).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The key that encrypts (and decrypts). For Fernet256, a string of 64
    /// UTF-8 bytes, as rick requires; for standard Fernet, url-safe base64 of
    /// 32 bytes. Checked in [`CryptRedisCacheBuilder::connect`].
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(Zeroizing::new(key.to_owned()));
        self
    }

    /// A previous key that still decrypts, for rotation. May be repeated.
    pub fn old_key(mut self, key: &str) -> Self {
        self.old_keys.push(Zeroizing::new(key.to_owned()));
        self
    }

    /// A ready keyring instead of [`key`](Self::key) / [`old_key`](Self::old_key)
    /// (e.g. keys of both algorithms).
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Rejects entries whose token is older than `max_age` (rick's `ttl` of
    /// `Fernet256.decrypt`), as [`CacheError::Crypto`].
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    fn build_keyring(&self) -> Result<Keyring> {
        let keyring = match (&self.keyring, &self.key) {
            (Some(_), Some(_)) => {
                return Err(CacheError::config(
                    "key",
                    "give either `key` (with `old_key`) or `keyring`, not both",
                ))
            }
            (Some(_), None) if !self.old_keys.is_empty() => {
                return Err(CacheError::config(
                    "key",
                    "`old_key` is for `key`; add old keys to the keyring with `Keyring::with_old_key`",
                ))
            }
            (Some(ring), None) => ring.clone(),
            (None, None) => {
                return Err(CacheError::config(
                    "key",
                    "a CryptRedisCache needs a key: `.key(..)`, e.g. from `memorix::crypto::generate_key()`",
                ))
            }
            (None, Some(key)) => {
                let keys: Vec<&str> = std::iter::once(key.as_str())
                    .chain(self.old_keys.iter().map(|k| k.as_str()))
                    .collect();
                Keyring::from_keys(self.algorithm, &keys)?
            }
        };
        Ok(match self.max_age {
            Some(max_age) => keyring.with_max_age(max_age),
            None => keyring,
        })
    }

    /// Checks the keys, connects and builds the cache. A bad key is
    /// [`CacheError::Config`] with `field: "key"`, before any connection.
    pub async fn connect(self) -> Result<CryptRedisCache> {
        let keyring = self.build_keyring()?;
        let mut redis = self.redis;
        for stage in self.transforms {
            redis = redis.transform(stage);
        }
        let inner = redis.transform(Arc::new(keyring.clone())).connect().await?;
        Ok(CryptRedisCache { inner, keyring })
    }
}

impl CryptRedisCache {
    /// rick's `CryptRedisCache(key, **config)`: Fernet256 with `key` (a string
    /// of 64 UTF-8 bytes), the [`Pickle`] codec, no prefix.
    ///
    /// A key of any other length is [`CacheError::Config`] with `field: "key"`.
    pub async fn new(key: &str, config: RedisConfig) -> Result<Self> {
        Self::builder().key(key).config(config).connect().await
    }

    /// A builder: Fernet256, [`Pickle`], `127.0.0.1:6379`, no prefix; a key is required.
    pub fn builder() -> CryptRedisCacheBuilder {
        CryptRedisCacheBuilder::default()
    }

    /// Reads, decrypts and decodes `key`, exactly as [`CacheExt::get`] does,
    /// minus the boxed futures of the object-safe [`Cache`] trait (this is
    /// the method `cache.get(..)` resolves to on a `CryptRedisCache`).
    ///
    /// [`CacheExt::get`]: crate::CacheExt::get
    pub async fn get<T: DeserializeOwned + Send>(&self, key: &str) -> Result<Option<T>> {
        self.inner.get(key).await
    }

    /// The underlying connection, for pipelines, scripts, `INFO` and the rest.
    /// What it reads and writes directly is not encrypted.
    pub fn client(&self) -> Result<RedisConnection> {
        self.inner.client()
    }

    /// The redis-rs `Client` the cache opened its connections with.
    pub fn redis_client(&self) -> Option<&redis::Client> {
        self.inner.redis_client()
    }

    /// The keys this cache encrypts and decrypts with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The byte pipeline between the codec and Redis; encryption is its last stage.
    pub fn pipeline(&self) -> &Pipeline {
        self.inner.pipeline()
    }

    /// Deletes every key in the current database, whatever its prefix: rick's
    /// `purge()`. Prefer [`Cache::purge`], which removes only this cache's keys.
    pub async fn flush_db(&self) -> Result<()> {
        self.inner.flush_db().await
    }

    /// Remaining time to live of `key`.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.inner.ttl(key).await
    }

    /// Re-encrypts the entry under `key` with the primary key, keeping its
    /// token timestamp and its TTL. The write is a compare-and-set: a value
    /// written meanwhile by someone else is never overwritten with the old one.
    ///
    /// An entry no key of the keyring decrypts is [`CacheError::Crypto`] and
    /// is left as it is.
    pub async fn rotate(&self, key: &str) -> Result<Rotation> {
        let full_key = format!("{}{}", self.inner.prefix(), key);
        self.rotate_full_key(full_key.as_bytes()).await
    }

    /// [`rotate`](Self::rotate) for every key under this cache's prefix
    /// (SCAN, never KEYS). Stops at the first entry that does not decrypt,
    /// with an error naming its key.
    pub async fn rotate_all(&self) -> Result<RotationSummary> {
        let pattern = Prefix::new(self.inner.prefix()).scan_pattern();
        let mut conn = self.client()?;
        let mut summary = RotationSummary::default();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await?;
            for full_key in keys {
                match self.rotate_full_key(&full_key).await {
                    Ok(Rotation::Rotated) => summary.rotated += 1,
                    Ok(Rotation::Current) => summary.current += 1,
                    Ok(Rotation::Missing) => summary.missing += 1,
                    Err(CacheError::Crypto(reason)) => {
                        let shown = String::from_utf8_lossy(&full_key);
                        return Err(CacheError::Crypto(format!("entry `{shown}`: {reason}")));
                    }
                    Err(other) => return Err(other),
                }
            }
            if next == 0 {
                return Ok(summary);
            }
            cursor = next;
        }
    }

    async fn rotate_full_key(&self, full_key: &[u8]) -> Result<Rotation> {
        let mut conn = self.client()?;
        for _ in 0..ROTATE_ATTEMPTS {
            let stored: Option<Vec<u8>> = redis::cmd("GET").arg(full_key).query_async(&mut conn).await?;
            let Some(stored) = stored else {
                return Ok(Rotation::Missing);
            };
            let Some(rotated) = self.keyring.reencrypt(&stored)? else {
                return Ok(Rotation::Current);
            };
            let swapped: i64 = ROTATE_SCRIPT
                .key(full_key)
                .arg(&stored)
                .arg(&rotated)
                .invoke_async(&mut conn)
                .await?;
            if swapped == 1 {
                return Ok(Rotation::Rotated);
            }
        }
        // Rewritten by someone else on every attempt: a writer is active, and
        // with the current keys it writes under the primary key anyway.
        Ok(Rotation::Current)
    }
}

#[async_trait]
impl Cache for CryptRedisCache {
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        // The inner engine's read itself: one boxed future per call, not two.
        self.inner.read(key).await
    }

    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.set_bytes(key, value, ttl).await
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many_bytes(keys).await
    }

    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        self.inner.set_many_bytes(entries, ttl).await
    }

    async fn has(&self, key: &str) -> Result<bool> {
        self.inner.has(key).await
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        self.inner.remove(key).await
    }

    async fn purge(&self) -> Result<()> {
        self.inner.purge().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn prefix(&self) -> String {
        self.inner.prefix()
    }

    fn set_prefix(&self, prefix: &str) {
        self.inner.set_prefix(prefix);
    }

    fn codec(&self) -> &dyn Codec {
        self.inner.codec()
    }

    fn stats(&self) -> &CacheStats {
        self.inner.stats()
    }

    fn corrupt_entry_policy(&self) -> CorruptEntryPolicy {
        self.inner.corrupt_entry_policy()
    }

    fn redis_connection(&self) -> Option<RedisConnection> {
        self.inner.redis_connection()
    }
}
