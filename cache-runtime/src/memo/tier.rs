//! The typed in-process tier of memoized functions.
//!
//! When the cache behind a memoized function lives in this process (a
//! [`MemoryCache`](crate::MemoryCache) given to [`init`](super::init) or
//! [`register`](super::register), or the embedded default), memoized values are
//! also kept decoded, next to the encoded bytes. A hit then costs a key build,
//! one sharded read lock and a `clone()`: no codec, no boxing, no async.
//!
//! The tier is keyed by the cache key, so `#[cache_put]` and `#[cache_evict]`
//! on one function update what `#[cached]` on another serves. The cache the
//! registry hands out ([`default_cache`](super::default_cache)) is a
//! [`Tiered`] wrapper: writes, removes and purges made through it drop the
//! decoded copies too, so the two views never disagree.

use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Result;
use crate::stats::CacheStats;
use async_trait::async_trait;
use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// Advances whenever a tier entry is removed, purged, evicted for room or
/// replaced while still fresh: the per-function typed fronts drop every copy
/// made before.
static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The current tier epoch.
#[inline]
pub(crate) fn epoch() -> u64 {
    EPOCH.load(std::sync::atomic::Ordering::Acquire)
}

pub(crate) fn advance_epoch() {
    EPOCH.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

/// Default bound on decoded entries per cache.
pub const DEFAULT_TIER_CAPACITY: usize = 100_000;

/// One decoded value.
pub(crate) struct TierEntry {
    value: Box<dyn Any + Send + Sync>,
    /// Fresh until (logical expiry); `None` = no expiry.
    fresh_until: Option<Instant>,
    /// Kept until: fresh_until plus the stale-if-error window.
    keep_until: Option<Instant>,
    /// How long the body took, for early refresh.
    pub(crate) compute: Duration,
}

/// What the tier knows about a key.
pub(crate) enum TierLookup<S> {
    /// A fresh value, the instant it stops being fresh (None = never) and
    /// the body's compute time.
    Fresh(S, Option<Instant>, Duration),
    /// Past its TTL but inside the stale-if-error window.
    Stale(S),
    /// Nothing usable.
    Miss,
}

/// The entries of one shard.
#[derive(Default)]
struct Entries {
    map: HashMap<Box<str>, TierEntry, foldhash::fast::RandomState>,
    /// No entry is kept past this instant before a sweep (`None`: none
    /// expires). A full shard sweeps out expired entries only once one may
    /// have expired: sweeping on every insert made each miss of a full tier
    /// walk the whole shard.
    soonest: Option<Instant>,
}

impl Entries {
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops expired entries when one may have expired.
    fn sweep(&mut self, now: Instant) {
        if self.soonest.is_none_or(|s| now < s) {
            return;
        }
        self.map.retain(|_, e| e.keep_until.is_none_or(|k| now < k));
        self.soonest = self.map.values().filter_map(|e| e.keep_until).min();
    }
}

type Shard = RwLock<Entries>;

/// Decoded values by key, sharded, bounded.
pub(crate) struct LocalTier {
    shards: Box<[Shard]>,
    per_shard: usize,
    shard_seed: u64,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, Entries> {
    shard.read().unwrap_or_else(|e| e.into_inner())
}

fn write(shard: &Shard) -> std::sync::RwLockWriteGuard<'_, Entries> {
    shard.write().unwrap_or_else(|e| e.into_inner())
}

impl LocalTier {
    pub(crate) fn new(capacity: usize) -> Self {
        LocalTier {
            shards: (0..SHARDS).map(|_| RwLock::new(Entries::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shard_seed: foldhash::fast::RandomState::default().hash_one(0x6d65_6d6f_u64),
        }
    }

    /// Picks a shard with a hash independent of the maps' own hasher: if both
    /// used one function, every key of a shard would share the top bits the
    /// map uses as probe tags, and lookups would compare keys over and over.
    #[inline]
    fn shard(&self, key: &str) -> &Shard {
        let mut h = self.shard_seed;
        for chunk in key.as_bytes().chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Looks `key` up as an `S`. A value of another type is a miss.
    #[inline]
    pub(crate) fn get<S: Clone + 'static>(&self, key: &str) -> TierLookup<S> {
        let shard = read(self.shard(key));
        let Some(entry) = shard.map.get(key) else {
            return TierLookup::Miss;
        };
        let Some(value) = entry.value.downcast_ref::<S>() else {
            return TierLookup::Miss;
        };
        match entry.fresh_until {
            None => TierLookup::Fresh(value.clone(), None, entry.compute),
            Some(fresh_until) => {
                let now = Instant::now();
                if now < fresh_until {
                    TierLookup::Fresh(value.clone(), Some(fresh_until), entry.compute)
                } else if entry.keep_until.is_some_and(|k| now < k) {
                    TierLookup::Stale(value.clone())
                } else {
                    TierLookup::Miss
                }
            }
        }
    }

    /// Stores a decoded value. `ttl`: time fresh; `stale`: extra time kept for
    /// stale-if-error.
    pub(crate) fn insert<S: Send + Sync + 'static>(
        &self,
        key: &str,
        value: S,
        ttl: Option<Duration>,
        stale: Option<Duration>,
        compute: Duration,
    ) {
        let now = Instant::now();
        let fresh_until = ttl.and_then(|t| now.checked_add(t));
        let keep_until = match (fresh_until, stale) {
            (Some(f), Some(s)) => f.checked_add(s),
            (f, _) => f,
        };
        let entry = TierEntry {
            value: Box::new(value),
            fresh_until,
            keep_until,
            compute,
        };
        let mut shard = write(self.shard(key));
        if shard.len() >= self.per_shard && !shard.map.contains_key(key) {
            shard.sweep(now);
            if shard.len() >= self.per_shard {
                // Full of live entries: drop an arbitrary one (approximate bound).
                if let Some(victim) = shard.map.keys().next().cloned() {
                    shard.map.remove(&victim);
                }
            }
            advance_epoch();
        }
        if let Some(keep_until) = keep_until {
            shard.soonest = Some(shard.soonest.map_or(keep_until, |s| s.min(keep_until)));
        }
        if let Some(old) = shard.map.insert(key.into(), entry) {
            if old.fresh_until.is_none_or(|f| now < f) {
                advance_epoch();
            }
        }
    }

    pub(crate) fn remove(&self, key: &str) {
        write(self.shard(key)).map.remove(key);
        advance_epoch();
    }

    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            shard.map.clear();
            shard.soonest = None;
        }
        advance_epoch();
    }
}

/// A [`Cache`] that keeps the memo tier coherent with its engine: every write,
/// remove or purge made through it also drops the decoded copies.
///
/// This is what [`default_cache`](super::default_cache) and
/// [`named_cache`](super::named_cache) return for in-process engines.
#[derive(Debug)]
pub struct Tiered {
    pub(crate) inner: Arc<dyn Cache>,
    pub(crate) tier: Arc<LocalTier>,
}

#[async_trait]
impl Cache for Tiered {
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_bytes(key).await
    }

    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.tier.remove(key);
        self.inner.set_bytes(key, value, ttl).await
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many_bytes(keys).await
    }

    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        for (key, _) in entries {
            self.tier.remove(key);
        }
        self.inner.set_many_bytes(entries, ttl).await
    }

    async fn has(&self, key: &str) -> Result<bool> {
        self.inner.has(key).await
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        self.tier.remove(key);
        self.inner.remove(key).await
    }

    async fn purge(&self) -> Result<()> {
        self.tier.clear();
        self.inner.purge().await
    }

    async fn close(&self) -> Result<()> {
        self.tier.clear();
        self.inner.close().await
    }

    fn prefix(&self) -> String {
        self.inner.prefix()
    }

    fn set_prefix(&self, prefix: &str) {
        self.tier.clear();
        self.inner.set_prefix(prefix);
    }

    fn codec(&self) -> &dyn Codec {
        self.inner.codec()
    }

    fn stats(&self) -> &CacheStats {
        self.inner.stats()
    }

    fn corrupt_entry_policy(&self) -> crate::cache::CorruptEntryPolicy {
        self.inner.corrupt_entry_policy()
    }

    fn redis_connection(&self) -> Option<crate::RedisConnection> {
        self.inner.redis_connection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_expire_and_stay_for_stale_window() {
        let tier = LocalTier::new(100);
        tier.insert(
            "a",
            7u32,
            Some(Duration::from_millis(1)),
            Some(Duration::from_secs(60)),
            Duration::ZERO,
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(tier.get::<u32>("a"), TierLookup::Stale(7)));
        assert!(matches!(tier.get::<String>("a"), TierLookup::Miss));
        tier.insert("b", 1u8, None, None, Duration::ZERO);
        assert!(matches!(tier.get::<u8>("b"), TierLookup::Fresh(1, None, _)));
        tier.remove("b");
        assert!(matches!(tier.get::<u8>("b"), TierLookup::Miss));
    }

    #[test]
    fn capacity_is_bounded() {
        let tier = LocalTier::new(64);
        for i in 0..10_000u32 {
            tier.insert(&i.to_string(), i, None, None, Duration::ZERO);
        }
        let total: usize = tier.shards.iter().map(|s| read(s).len()).sum();
        assert!(total <= 64, "{total}");
    }
}
