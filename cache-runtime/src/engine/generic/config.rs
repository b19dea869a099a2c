//! [`GenericRedisCacheBuilder`]: the knobs of the two-tier cache, with the
//! defaults users of the Python `GenericRedisCache` know.

use super::security::SecurityConfig;
use super::GenericRedisCache;
use crate::cache::CorruptEntryPolicy;
use crate::codec::{Codec, MsgPack};
use crate::compression::{Compression, DEFAULT_MAX_DECOMPRESSED};
use crate::connection::RedisConfig;
use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Settings fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) default_ttl: Duration,
    pub(crate) enable_l1: bool,
    pub(crate) l1_size: usize,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) coherence: bool,
    pub(crate) namespace: String,
    pub(crate) fail_on_connection_error: bool,
    pub(crate) breaker_threshold: u32,
    pub(crate) probe_interval: Duration,
    pub(crate) slow_threshold: Duration,
    pub(crate) max_pending: usize,
    pub(crate) on_corrupt: CorruptEntryPolicy,
    pub(crate) operation_ttls: HashMap<String, Duration>,
    pub(crate) hash_keys_longer_than: Option<usize>,
}

/// Builds a [`GenericRedisCache`]. Defaults: `REDIS_URL` (else
/// `127.0.0.1:6379`), `default_ttl` 3600 s, L1 on with 100 entries,
/// compression above 1000 bytes at level 6, MessagePack, no prefix,
/// `fail_on_connection_error` off.
///
/// `connect()` validates every field; a bad value is a [`CacheError::Config`]
/// naming it.
#[must_use]
pub struct GenericRedisCacheBuilder {
    pub(crate) redis_url: Option<String>,
    pub(crate) redis: Option<RedisConfig>,
    pub(crate) default_ttl: Duration,
    pub(crate) enable_l1: bool,
    pub(crate) l1_size: usize,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) compression_threshold: usize,
    pub(crate) compression_level: u32,
    pub(crate) max_decompressed: usize,
    pub(crate) compression: bool,
    pub(crate) prefix: String,
    pub(crate) namespace: Option<String>,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) cipher: Option<Arc<dyn Transform>>,
    pub(crate) fail_on_connection_error: bool,
    pub(crate) coherence: bool,
    pub(crate) breaker_threshold: u32,
    pub(crate) probe_interval: Duration,
    pub(crate) slow_threshold: Duration,
    pub(crate) max_pending: usize,
    pub(crate) security: Option<SecurityConfig>,
    pub(crate) on_corrupt: CorruptEntryPolicy,
    pub(crate) operation_ttls: HashMap<String, Duration>,
    pub(crate) hash_keys_longer_than: Option<usize>,
}

impl Default for GenericRedisCacheBuilder {
    fn default() -> Self {
        GenericRedisCacheBuilder {
            redis_url: None,
            redis: None,
            default_ttl: Duration::from_secs(3600),
            enable_l1: true,
            l1_size: 100,
            l1_ttl: None,
            compression_threshold: 1000,
            compression_level: 6,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            compression: true,
            prefix: String::new(),
            namespace: None,
            codec: Arc::new(MsgPack),
            cipher: None,
            fail_on_connection_error: false,
            coherence: true,
            breaker_threshold: 3,
            probe_interval: Duration::from_millis(100),
            slow_threshold: Duration::from_millis(100),
            max_pending: 10_000,
            security: None,
            on_corrupt: CorruptEntryPolicy::Error,
            operation_ttls: HashMap::new(),
            hash_keys_longer_than: None,
        }
    }
}

impl fmt::Debug for GenericRedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericRedisCacheBuilder")
            .field("redis", &self.redis)
            .field("redis_url_set", &self.redis_url.is_some())
            .field("default_ttl", &self.default_ttl)
            .field("enable_l1_cache", &self.enable_l1)
            .field("l1_cache_size", &self.l1_size)
            .field("compression_threshold", &self.compression_threshold)
            .field("compression_level", &self.compression_level)
            .field("prefix", &self.prefix)
            .field("codec", &self.codec.name())
            .field("encrypted", &self.cipher.is_some())
            .field("security", &self.security)
            .field("fail_on_connection_error", &self.fail_on_connection_error)
            .finish_non_exhaustive()
    }
}

impl GenericRedisCacheBuilder {
    /// Redis URL (`redis://`, `rediss://`, `unix://`); parsed in `connect()`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self.redis = None;
        self
    }

    /// Redis connection settings.
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self.redis_url = None;
        self
    }

    /// TTL of writes that pass `None` (default 3600 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Use the in-memory L1 tier in front of Redis (default on). With it off,
    /// memory still holds writes while Redis is unreachable.
    pub fn enable_l1_cache(mut self, enable: bool) -> Self {
        self.enable_l1 = enable;
        self
    }

    /// Most entries L1 holds (default 100).
    pub fn l1_cache_size(mut self, entries: usize) -> Self {
        self.l1_size = entries;
        self
    }

    /// Longest time an entry stays in L1, whatever its Redis TTL (default: the
    /// entry's own TTL; cross-instance invalidation keeps L1 fresh).
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Values larger than this many bytes are zlib-compressed (default 1000).
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = bytes;
        self
    }

    /// zlib level 1..=9 (default 6).
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level;
        self
    }

    /// Turns compression on or off (default on).
    pub fn compression(mut self, enable: bool) -> Self {
        self.compression = enable;
        self
    }

    /// Largest decompressed value accepted (default 64 MiB); a bigger one, such
    /// as a zlib bomb, fails with [`CacheError::Compression`].
    pub fn max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// Key prefix, e.g. `"app:"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Name of the invalidation channel's namespace (default: the prefix).
    /// Instances that share keys must share it.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Codec (default MessagePack).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Encrypts stored values with this cipher stage (after compression).
    pub fn cipher(mut self, cipher: Arc<dyn Transform>) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// Fail `connect()` when Redis is unreachable, instead of starting in
    /// memory-only mode (default off).
    pub fn fail_on_connection_error(mut self, fail: bool) -> Self {
        self.fail_on_connection_error = fail;
        self
    }

    /// Cross-instance L1 invalidation through Redis pub/sub (default on).
    pub fn l1_coherence(mut self, enable: bool) -> Self {
        self.coherence = enable;
        self
    }

    /// Consecutive Redis failures that open the circuit breaker (default 3).
    pub fn circuit_breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures;
        self
    }

    /// How often the background probe tries Redis while it is down (default 100 ms).
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.probe_interval = every;
        self
    }

    /// Operations slower than this are logged and counted (default 100 ms).
    pub fn slow_operation_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }

    /// Most writes kept for replay while Redis is down (default 10 000).
    /// A write beyond it is counted (`dropped_writes` in
    /// [`stats`](super::GenericRedisCache::stats)) and its key is removed from
    /// Redis on recovery instead of replayed, so no stale value survives.
    pub fn max_pending_writes(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// Authentication and TLS settings, applied over the Redis settings.
    pub fn security(mut self, security: SecurityConfig) -> Self {
        self.security = Some(security);
        self
    }

    /// What typed reads do with entries that do not decode.
    pub fn on_corrupt_entry(mut self, policy: CorruptEntryPolicy) -> Self {
        self.on_corrupt = policy;
        self
    }

    /// TTL of one kind of operation, for [`GenericRedisCache::set_for`].
    pub fn operation_ttl(mut self, operation: impl Into<String>, ttl: Duration) -> Self {
        self.operation_ttls.insert(operation.into(), ttl);
        self
    }

    /// Keys longer than this are replaced by a SHA-256 digest (plus a readable
    /// head), so long prompts make short keys.
    pub fn hash_keys_longer_than(mut self, chars: usize) -> Self {
        self.hash_keys_longer_than = Some(chars);
        self
    }

    /// Connects (or starts in memory-only mode) and builds the cache.
    pub async fn connect(self) -> Result<GenericRedisCache> {
        GenericRedisCache::from_builder(self).await
    }

    pub(crate) fn validate(&self) -> Result<(RedisConfig, Compression, Settings)> {
        if self.default_ttl.is_zero() {
            return Err(CacheError::config("default_ttl", "must be greater than zero"));
        }
        if self.l1_size == 0 || self.l1_size > 10_000_000 {
            return Err(CacheError::config(
                "l1_cache_size",
                format!("must be between 1 and 10000000, got {}", self.l1_size),
            ));
        }
        if self.l1_ttl.is_some_and(|t| t.is_zero()) {
            return Err(CacheError::config("l1_ttl", "must be greater than zero"));
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(CacheError::config(
                "compression_level",
                format!("must be between 1 and 9, got {}", self.compression_level),
            ));
        }
        if self.max_decompressed == 0 {
            return Err(CacheError::config("max_decompressed_size", "must be greater than zero"));
        }
        if self.breaker_threshold == 0 {
            return Err(CacheError::config("circuit_breaker_threshold", "must be at least 1"));
        }
        if self.probe_interval.is_zero() {
            return Err(CacheError::config("probe_interval", "must be greater than zero"));
        }
        if self.operation_ttls.values().any(|t| t.is_zero()) {
            return Err(CacheError::config("operation_ttl", "must be greater than zero"));
        }
        if self.hash_keys_longer_than.is_some_and(|n| n < 16) {
            return Err(CacheError::config("hash_keys_longer_than", "must be at least 16"));
        }
        let mut redis = match (&self.redis, &self.redis_url) {
            (Some(config), _) => config.clone(),
            (None, Some(url)) => RedisConfig::from_url(url)?,
            (None, None) => match std::env::var("REDIS_URL") {
                Ok(url) => RedisConfig::from_url(&url)?,
                Err(_) => RedisConfig::default(),
            },
        };
        if let Some(security) = &self.security {
            redis = security.apply(redis)?;
        }
        redis.validate()?;
        let compression = Compression::new()
            .threshold(if self.compression {
                self.compression_threshold
            } else {
                usize::MAX
            })
            .level(self.compression_level)
            .max_decompressed(self.max_decompressed)
            .build()?;
        let settings = Settings {
            default_ttl: self.default_ttl,
            enable_l1: self.enable_l1,
            l1_size: self.l1_size,
            l1_ttl: self.l1_ttl,
            coherence: self.coherence,
            namespace: self.namespace.clone().unwrap_or_else(|| self.prefix.clone()),
            fail_on_connection_error: self.fail_on_connection_error,
            breaker_threshold: self.breaker_threshold,
            probe_interval: self.probe_interval,
            slow_threshold: self.slow_threshold,
            max_pending: self.max_pending,
            on_corrupt: self.on_corrupt,
            operation_ttls: self.operation_ttls.clone(),
            hash_keys_longer_than: self.hash_keys_longer_than,
        };
        Ok((redis, compression, settings))
    }
}
