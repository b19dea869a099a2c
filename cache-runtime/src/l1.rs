//! The memory tier (L1) of the two-tier engine.
//!
//! Built on `quick_cache` (S3-FIFO, sharded, read-mostly locks), chosen over
//! moka by measurement: see BENCHMARKS.md, "Two-tier". Each entry keeps the
//! codec bytes and, beside them, the last decoded value with its `TypeId`, so
//! a typed hit clones a ready value instead of decoding MessagePack again.
//!
//! Expiry is per entry and checked on read (an expired entry is a miss and is
//! dropped); eviction is by entry count. The clock is quanta's: the TSC where
//! it is reliable, so the check costs a few nanoseconds, not a clock_gettime.

use quanta::Instant;
use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A decoded value, tagged with its type.
struct Decoded {
    type_id: TypeId,
    value: Box<dyn Any + Send + Sync>,
}

/// One L1 entry.
pub(crate) struct Entry {
    /// The codec bytes (before compression / encryption).
    pub(crate) bytes: Arc<[u8]>,
    expires: Option<Instant>,
    decoded: OnceLock<Decoded>,
}

impl Entry {
    fn new(bytes: Arc<[u8]>, ttl: Option<Duration>) -> Self {
        Entry {
            bytes,
            expires: ttl.and_then(|t| Instant::now().checked_add(t)),
            decoded: OnceLock::new(),
        }
    }

    /// The cached decoded value, if it was decoded as a `T`.
    #[inline]
    pub(crate) fn decoded<T: Any + Clone>(&self) -> Option<T> {
        let d = self.decoded.get()?;
        if d.type_id == TypeId::of::<T>() {
            d.value.downcast_ref::<T>().cloned()
        } else {
            None
        }
    }

    /// Keeps `value` beside the bytes (first type wins).
    pub(crate) fn remember<T: Any + Send + Sync>(&self, value: T) {
        let _ = self.decoded.set(Decoded {
            type_id: TypeId::of::<T>(),
            value: Box::new(value),
        });
    }

    #[inline]
    fn expired(&self) -> bool {
        self.expires.is_some_and(|at| at <= Instant::now())
    }
}

/// Collects evicted keys during one insert, reported after the shard lock is released.
#[derive(Default)]
pub(crate) struct Evicted(Vec<String>);

/// Sends evictions to the `Evicted` state.
#[derive(Clone, Default)]
pub(crate) struct EvictHook;

impl quick_cache::Lifecycle<String, Arc<Entry>> for EvictHook {
    type RequestState = Evicted;

    fn on_evict(&self, state: &mut Evicted, key: String, _val: Arc<Entry>) {
        state.0.push(key);
    }
}

type Store =
    quick_cache::sync::Cache<String, Arc<Entry>, quick_cache::UnitWeighter, quick_cache::DefaultHashBuilder, EvictHook>;

/// The memory tier: bounded by entry count, per-entry TTL, coherence epoch.
pub(crate) struct L1 {
    store: Store,
    /// Bumped on every invalidation; a Redis read started before a bump does
    /// not fill L1 (its value may be the one just invalidated).
    epoch: AtomicU64,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("entries", &self.store.len())
            .field("capacity", &self.store.capacity())
            .finish()
    }
}

impl L1 {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        L1 {
            store: Store::with(
                capacity,
                capacity as u64,
                quick_cache::UnitWeighter,
                quick_cache::DefaultHashBuilder::default(),
                EvictHook,
            ),
            epoch: AtomicU64::new(0),
        }
    }

    /// The live entry under `key`; an expired one is dropped and missed.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let entry = self.store.get(key)?;
        if entry.expired() {
            self.store.remove_if(key, |e| Arc::ptr_eq(e, &entry));
            return None;
        }
        Some(entry)
    }

    /// Stores `bytes` (and optionally its decoded form) for at most `ttl`.
    /// Returns the keys evicted to make room.
    pub(crate) fn insert(&self, key: &str, bytes: Arc<[u8]>, ttl: Option<Duration>) -> (Arc<Entry>, Vec<String>) {
        let entry = Arc::new(Entry::new(bytes, ttl));
        let mut evicted = Evicted::default();
        self.store
            .insert_with_lifecycle(key.to_owned(), entry.clone(), &mut evicted);
        (entry, evicted.0)
    }

    /// Fills L1 from a Redis read, unless an invalidation arrived since `epoch`.
    pub(crate) fn fill(
        &self,
        key: &str,
        bytes: Arc<[u8]>,
        ttl: Option<Duration>,
        epoch: u64,
    ) -> Option<(Arc<Entry>, Vec<String>)> {
        if self.epoch.load(Relaxed) != epoch {
            return None;
        }
        let filled = self.insert(key, bytes, ttl);
        // An invalidation that raced with the insert wins.
        if self.epoch.load(Relaxed) != epoch {
            self.store.remove_if(key, |e| Arc::ptr_eq(e, &filled.0));
            return None;
        }
        Some(filled)
    }

    /// The epoch to pass to [`L1::fill`], read before asking Redis.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// Drops `key`; true if it was held (expired or not).
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.store.remove(key).is_some()
    }

    /// Makes Redis reads in flight not fill L1 (a local write is landing).
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Relaxed);
    }

    /// Drops `key` because another instance changed it.
    pub(crate) fn invalidate(&self, key: &str) {
        self.epoch.fetch_add(1, Relaxed);
        self.store.remove(key);
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Relaxed);
        self.store.clear();
    }

    /// Live entries (expired ones not yet dropped included).
    pub(crate) fn len(&self) -> u64 {
        self.store.len() as u64
    }

    /// Bytes held by values.
    pub(crate) fn bytes(&self) -> u64 {
        self.store.iter().map(|(_, e)| e.bytes.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_expires_and_decoded_values_are_typed() {
        let l1 = L1::new(10);
        let (entry, _) = l1.insert("a", Arc::from(&b"x"[..]), Some(Duration::from_millis(30)));
        entry.remember(5u32);
        let got = l1.get("a").unwrap();
        assert_eq!(got.decoded::<u32>(), Some(5));
        assert_eq!(got.decoded::<u64>(), None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(l1.get("a").is_none());
        assert_eq!(l1.len(), 0);
    }

    #[test]
    fn evictions_are_reported_and_bounded() {
        let l1 = L1::new(40);
        let mut evicted = 0;
        for i in 0..200 {
            evicted += l1.insert(&format!("k{i}"), Arc::from(&b"v"[..]), None).1.len();
        }
        assert!(l1.len() <= 40, "{}", l1.len());
        assert_eq!(evicted as u64 + l1.len(), 200);
    }

    #[test]
    fn fill_loses_to_a_concurrent_invalidation() {
        let l1 = L1::new(10);
        let epoch = l1.epoch();
        l1.invalidate("k");
        assert!(l1.fill("k", Arc::from(&b"old"[..]), None, epoch).is_none());
        assert!(l1.get("k").is_none());
        let epoch = l1.epoch();
        assert!(l1.fill("k", Arc::from(&b"new"[..]), None, epoch).is_some());
    }
}
