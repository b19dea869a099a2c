//! [`NullCache`]: a cache that stores nothing (rick's `CacheNull`).

use crate::cache::Cache;
use crate::codec::{Codec, MsgPack};
use crate::error::Result;
use crate::keys::{effective_ttl, Prefix};
use crate::stats::CacheStats;
use async_trait::async_trait;
use std::time::Duration;

/// Stores nothing: every get misses, `has` is false, writes and removes succeed
/// and do nothing. For tests, and for switching caching off without touching
/// the code that uses it. Invalid arguments (a zero TTL) are still rejected, so
/// a bug does not hide behind the null engine.
///
/// ```
/// use memorix_runtime::{Cache, CacheExt, NullCache};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = NullCache::new();
/// cache.set("k", &1u8, None).await?;
/// assert_eq!(cache.get::<u8>("k").await?, None);
/// # Ok::<_, memorix_runtime::CacheError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct NullCache {
    prefix: Prefix,
    codec: MsgPack,
    stats: CacheStats,
}

impl Default for NullCache {
    fn default() -> Self {
        NullCache {
            prefix: Prefix::new(""),
            codec: MsgPack,
            stats: CacheStats::default(),
        }
    }
}

impl NullCache {
    /// A null cache.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Cache for NullCache {
    async fn get_bytes(&self, _key: &str) -> Result<Option<Vec<u8>>> {
        self.stats.record_miss();
        Ok(None)
    }

    async fn set_bytes(&self, _key: &str, _value: &[u8], ttl: Option<Duration>) -> Result<()> {
        effective_ttl(ttl, None).map(drop)
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.stats.record_batch(0, keys.len() as u64);
        Ok(vec![None; keys.len()])
    }

    async fn set_many_bytes(&self, _entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        effective_ttl(ttl, None).map(drop)
    }

    async fn has(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }

    async fn remove(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }

    async fn purge(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn prefix(&self) -> String {
        self.prefix.get()
    }

    fn set_prefix(&self, prefix: &str) {
        self.prefix.set(prefix);
    }

    fn codec(&self) -> &dyn Codec {
        &self.codec
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}
