//! The per-function typed front of the tier: values of one return type,
//! stored inline under a 128-bit hash of the key.
//!
//! The shared [`LocalTier`](super::tier::LocalTier) is authoritative; this is
//! a copy that costs one cache line per hit (no key or value allocation to
//! chase). Every entry carries the tier's [`epoch`](super::tier::epoch) at the
//! time it was copied: any removal, purge or early overwrite in any tier
//! advances the epoch, so a copy never outlives the value it mirrors. Entries
//! also keep the tier entry's expiry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// The key is already a hash: use its bits as they are.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

struct Entry<S> {
    value: S,
    fresh_until: Option<Instant>,
    epoch: u64,
}

type Shard<S> = RwLock<HashMap<u128, Entry<S>, BuildHasherDefault<PassThrough>>>;

/// Typed copies of one function's tier entries.
pub(crate) struct TypedFront<S> {
    shards: Box<[Shard<S>]>,
    per_shard: usize,
}

/// 128-bit hash of a cache key (xxh3).
#[inline]
pub(crate) fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

impl<S: Clone> TypedFront<S> {
    pub(crate) fn new(capacity: usize) -> Self {
        TypedFront {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    #[inline]
    fn shard(&self, hash: u128) -> &Shard<S> {
        &self.shards[((hash >> 122) as usize) % SHARDS]
    }

    /// The value under `hash`, if copied at `epoch` and still fresh.
    #[inline]
    pub(crate) fn get(&self, hash: u128, epoch: u64) -> Option<S> {
        let shard = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(&hash)?;
        if entry.epoch != epoch {
            return None;
        }
        match entry.fresh_until {
            Some(until) if Instant::now() >= until => None,
            _ => Some(entry.value.clone()),
        }
    }

    /// Copies a tier value that has `remaining` time to live.
    pub(crate) fn insert(&self, hash: u128, value: S, remaining: Option<Duration>, epoch: u64) {
        let fresh_until = match remaining {
            Some(r) => match Instant::now().checked_add(r) {
                Some(until) => Some(until),
                None => return,
            },
            None => None,
        };
        let mut shard = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, e| e.epoch == epoch && e.fresh_until.is_none_or(|u| Instant::now() < u));
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            hash,
            Entry {
                value,
                fresh_until,
                epoch,
            },
        );
    }
}
