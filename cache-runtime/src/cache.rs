//! The [`Cache`] trait every engine implements, and the typed [`CacheExt`] layer.
//!
//! `Cache` works on bytes and is object-safe, so engines swap freely behind
//! `Arc<dyn Cache>`: Redis in production, memory in development, nothing in
//! tests. `CacheExt` adds typed `get` / `set` on top of any `Cache`, encoding
//! with the engine's [`Codec`].

use crate::codec::{self, Codec};
use crate::connection::RedisConnection;
use crate::error::Result;
use crate::stats::CacheStats;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// What a typed `get` does when stored bytes do not decode (a foreign writer, a
/// changed struct, a wrong key, tampering).
///
/// Either way the entry is left in place: memorix never deletes data it could
/// not read, because the reader may be the one that is out of date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CorruptEntryPolicy {
    /// Return the codec / crypto / compression error (the default).
    #[default]
    Error,
    /// Treat the entry as a miss (`Ok(None)`) and count it in
    /// [`CacheStats::corrupt`].
    Miss,
}

/// An asynchronous key-value cache.
///
/// Keys are strings; every key is stored as `prefix + key`. Values are the
/// bytes a codec produced; use [`CacheExt`] for typed access.
///
/// ```
/// use memorix_runtime::{Cache, CacheExt, MemoryCache};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = MemoryCache::new(1_000);
/// cache.set("greeting", &"hello", Some(Duration::from_secs(60))).await?;
/// assert_eq!(cache.get::<String>("greeting").await?, Some("hello".into()));
/// assert!(cache.remove("greeting").await?);
/// assert!(!cache.has("greeting").await?);
/// # Ok::<_, memorix_runtime::CacheError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Cache: Send + Sync + Debug {
    /// Returns the bytes stored under `key`, or `None`.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key`. `ttl: None` means the engine's default TTL,
    /// or no expiry if it has none. A zero TTL is a config error.
    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Returns the values of many keys in one round trip, in the order asked.
    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Stores many entries in one round trip, all with the same TTL.
    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()>;

    /// True if `key` holds a value.
    async fn has(&self, key: &str) -> Result<bool>;

    /// Removes `key`. True only if it existed.
    async fn remove(&self, key: &str) -> Result<bool>;

    /// Removes every key under this cache's prefix, and nothing else.
    ///
    /// Redis engines scan in batches (SCAN + UNLINK), never `KEYS`, so a large
    /// database is not blocked, and match the prefix as a namespace: it must
    /// end in a separator (`app:` purges `app:*`, never a sibling `app2:*`);
    /// an empty prefix, or one ending in a letter or digit, is refused with
    /// [`CacheError::Config`](crate::CacheError::Config) (`flush_db()` empties
    /// a whole database). In-process engines with an empty prefix clear
    /// everything they hold.
    async fn purge(&self) -> Result<()>;

    /// Releases the connection. Later calls fail with [`crate::CacheError::Closed`].
    async fn close(&self) -> Result<()>;

    /// The current key prefix.
    fn prefix(&self) -> String;

    /// Changes the key prefix for all later calls.
    fn set_prefix(&self, prefix: &str);

    /// The codec that [`CacheExt`] uses for this engine.
    fn codec(&self) -> &dyn Codec;

    /// Hit and miss counters of this engine.
    fn stats(&self) -> &CacheStats;

    /// What typed reads do with entries that do not decode.
    fn corrupt_entry_policy(&self) -> CorruptEntryPolicy {
        CorruptEntryPolicy::Error
    }

    /// The Redis connection behind this engine, if it has one: distributed
    /// single-flight (`#[cached(lock = "distributed")]`) takes its leases on
    /// it. `None` for in-process engines, closed caches and engines running
    /// without Redis.
    fn redis_connection(&self) -> Option<RedisConnection> {
        None
    }

    /// Hits over gets, in `0.0..=1.0` (0 before the first get).
    fn hit_rate(&self) -> f64 {
        self.stats().hit_rate()
    }
}

/// Typed access to any [`Cache`], through its codec.
///
/// Implemented for every `Cache`, including `dyn Cache`.
pub trait CacheExt: Cache {
    /// Reads and decodes the value under `key`.
    fn get<T>(&self, key: &str) -> impl Future<Output = Result<Option<T>>> + Send
    where
        T: DeserializeOwned + Send,
    {
        async move { self.decode_found(self.get_bytes(key).await) }
    }

    /// Encodes `value` and stores it under `key`.
    fn set<T>(&self, key: &str, value: &T, ttl: Option<Duration>) -> impl Future<Output = Result<()>> + Send
    where
        T: Serialize + ?Sized + Sync,
    {
        async move {
            let bytes = codec::encode(self.codec(), value)?;
            self.set_bytes(key, &bytes, ttl).await
        }
    }

    /// Reads many keys in one round trip. An entry that does not decode follows
    /// the engine's [`CorruptEntryPolicy`].
    fn get_many<T>(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<T>>>> + Send
    where
        T: DeserializeOwned + Send,
    {
        async move {
            let raw = self.get_many_bytes(keys).await?;
            raw.into_iter().map(|entry| self.decode_found(Ok(entry))).collect()
        }
    }

    /// Encodes and stores many entries in one round trip.
    fn set_many<T>(&self, entries: &[(&str, T)], ttl: Option<Duration>) -> impl Future<Output = Result<()>> + Send
    where
        T: Serialize + Sync,
    {
        async move {
            let encoded = entries
                .iter()
                .map(|(k, v)| Ok((*k, codec::encode(self.codec(), v)?)))
                .collect::<Result<Vec<_>>>()?;
            let borrowed: Vec<(&str, &[u8])> = encoded.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            self.set_many_bytes(&borrowed, ttl).await
        }
    }

    /// Decodes what a read found, then applies the corrupt-entry policy: the
    /// one decode step of every typed read.
    #[doc(hidden)]
    fn decode_found<T: DeserializeOwned>(&self, found: Result<Option<Vec<u8>>>) -> Result<Option<T>> {
        let decoded = found.and_then(|bytes| bytes.map(|b| codec::decode(self.codec(), &b)).transpose());
        self.apply_corrupt_policy(decoded)
    }

    #[doc(hidden)]
    fn apply_corrupt_policy<T>(&self, decoded: Result<Option<T>>) -> Result<Option<T>> {
        match decoded {
            Err(err) if err.is_corrupt_entry() && self.corrupt_entry_policy() == CorruptEntryPolicy::Miss => {
                tracing::warn!(error = %err, "cache entry does not decode; treated as a miss");
                self.stats().record_corrupt();
                Ok(None)
            }
            other => other,
        }
    }
}

impl<C: Cache + ?Sized> CacheExt for C {}
