//! [`MemoryCache`]: an in-process cache with an entry bound and per-entry TTL.

use crate::cache::{Cache, CorruptEntryPolicy};
use crate::codec::{Codec, MsgPack};
use crate::error::{CacheError, Result};
use crate::keys::{effective_ttl, Prefix};
use crate::stats::CacheStats;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stored value and how long it may live.
#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Option<Duration>,
}

/// Tells moka each entry's own TTL.
struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(&self, _: &String, entry: &Entry, _: Instant, _: Option<Duration>) -> Option<Duration> {
        entry.ttl
    }
}

/// An in-process cache, bounded by entry count, with a TTL per entry.
///
/// Built on moka with LRU eviction, so the newest write always lands (moka's
/// default TinyLFU may refuse a new key, which surprises cache-aside code that
/// reads right after it writes). Entries are stored encoded, exactly as a Redis
/// engine would store them, so swapping engines changes no behaviour.
///
/// ```
/// use memorix_runtime::{Cache, CacheExt, MemoryCache};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = MemoryCache::builder().max_entries(10_000).prefix("app:").build()?;
/// cache.set("answer", &42u32, None).await?;
/// assert_eq!(cache.get::<u32>("answer").await?, Some(42));
/// # Ok::<_, memorix_runtime::CacheError>(())
/// # }).unwrap();
/// ```
pub struct MemoryCache {
    store: moka::sync::Cache<String, Entry>,
    prefix: Prefix,
    codec: Arc<dyn Codec>,
    default_ttl: Option<Duration>,
    on_corrupt: CorruptEntryPolicy,
    stats: CacheStats,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("prefix", &self.prefix.get())
            .field("entries", &self.store.entry_count())
            .field("max_entries", &self.store.policy().max_capacity())
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

/// Builds a [`MemoryCache`].
#[must_use]
pub struct MemoryCacheBuilder {
    max_entries: u64,
    prefix: String,
    codec: Arc<dyn Codec>,
    default_ttl: Option<Duration>,
    on_corrupt: CorruptEntryPolicy,
}

impl fmt::Debug for MemoryCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCacheBuilder")
            .field("max_entries", &self.max_entries)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryCacheBuilder {
    fn default() -> Self {
        MemoryCacheBuilder {
            max_entries: 10_000,
            prefix: String::new(),
            codec: Arc::new(MsgPack),
            default_ttl: None,
            on_corrupt: CorruptEntryPolicy::Error,
        }
    }
}

impl MemoryCacheBuilder {
    /// The most entries kept; the least recently used go first (default 10 000).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// Key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Codec for typed values (default: [`MsgPack`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// TTL used when a write passes `None`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// What typed reads do with entries that do not decode.
    pub fn on_corrupt_entry(mut self, policy: CorruptEntryPolicy) -> Self {
        self.on_corrupt = policy;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<MemoryCache> {
        if self.max_entries == 0 {
            return Err(CacheError::config("max_entries", "must be at least 1"));
        }
        if self.default_ttl.is_some_and(|t| t.is_zero()) {
            return Err(CacheError::config("default_ttl", "must be greater than zero"));
        }
        let store = moka::sync::Cache::builder()
            .max_capacity(self.max_entries)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .expire_after(PerEntryTtl)
            .build();
        Ok(MemoryCache {
            store,
            prefix: Prefix::new(self.prefix),
            codec: self.codec,
            default_ttl: self.default_ttl,
            on_corrupt: self.on_corrupt,
            stats: CacheStats::default(),
        })
    }
}

impl MemoryCache {
    /// A cache of at most `max_entries` entries (at least 1), MessagePack, no prefix.
    pub fn new(max_entries: u64) -> Self {
        Self::builder()
            .max_entries(max_entries.max(1))
            .build()
            .unwrap_or_else(|_| unreachable!("max_entries >= 1 and no TTL always build"))
    }

    /// A builder with the defaults.
    pub fn builder() -> MemoryCacheBuilder {
        MemoryCacheBuilder::default()
    }

    /// Number of live entries, after pending evictions have run.
    pub fn len(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.entry_count()
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, key: &str) -> Option<Vec<u8>> {
        let found = self.store.get(&self.prefix.apply(key)).map(|e| e.bytes.to_vec());
        match found {
            Some(_) => self.stats.record_hit(),
            None => self.stats.record_miss(),
        }
        found
    }

    fn insert(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let ttl = effective_ttl(ttl, self.default_ttl)?;
        self.store.insert(
            self.prefix.apply(key),
            Entry {
                bytes: Arc::from(value),
                ttl,
            },
        );
        Ok(())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lookup(key))
    }

    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.insert(key, value, ttl)
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(keys.iter().map(|k| self.lookup(k)).collect())
    }

    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        effective_ttl(ttl, self.default_ttl)?;
        entries.iter().try_for_each(|(k, v)| self.insert(k, v, ttl))
    }

    async fn has(&self, key: &str) -> Result<bool> {
        Ok(self.store.contains_key(&self.prefix.apply(key)))
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        Ok(self.store.remove(&self.prefix.apply(key)).is_some())
    }

    async fn purge(&self) -> Result<()> {
        let prefix = self.prefix.get();
        let doomed: Vec<Arc<String>> = self
            .store
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k)
            .collect();
        for key in doomed {
            self.store.invalidate(key.as_str());
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.store.invalidate_all();
        Ok(())
    }

    fn prefix(&self) -> String {
        self.prefix.get()
    }

    fn set_prefix(&self, prefix: &str) {
        self.prefix.set(prefix);
    }

    fn codec(&self) -> &dyn Codec {
        self.codec.as_ref()
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }

    fn corrupt_entry_policy(&self) -> CorruptEntryPolicy {
        self.on_corrupt
    }
}
