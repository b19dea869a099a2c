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
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

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

    /// Copies a tier value that stays fresh until `fresh_until`.
    pub(crate) fn insert(&self, hash: u128, value: S, fresh_until: Option<Instant>, epoch: u64) {
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

/// Nanoseconds since the process-wide clock base (never 0), for compact deadlines.
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `until` as nanoseconds past [`clock_base`]; 0 means no expiry.
fn deadline_nanos(until: Option<Instant>) -> u64 {
    match until {
        None => 0,
        Some(until) => u64::try_from(until.saturating_duration_since(clock_base()).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1),
    }
}

#[inline]
fn expired(until: u64) -> bool {
    until != 0 && deadline_nanos(Some(Instant::now())) >= until
}

/// One copy in an [`ArgFront`]: the owned arguments it was made for, the
/// value, and the tier entry's deadline.
struct ArgEntry<K, S> {
    key: K,
    value: S,
    /// Fresh until, nanoseconds past [`clock_base`]; 0 = no expiry.
    until: u64,
}

/// One shard: its entries were all copied at `epoch`.
struct ArgShard<K, S> {
    epoch: u64,
    map: HashMap<u64, ArgEntry<K, S>, BuildHasherDefault<PassThrough64>>,
}

/// The 64-bit argument hash is the map's hash as it is.
#[derive(Default)]
pub(crate) struct PassThrough64(u64);

impl Hasher for PassThrough64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// A shard on its own cache lines, so two threads reading neighbouring
/// shards do not bounce one line between cores.
#[repr(align(128))]
struct Padded<T>(T);

type ArgShardLock<K, S> = Padded<RwLock<ArgShard<K, S>>>;

/// Typed copies of one function's tier entries, keyed by its arguments
/// themselves (see [`KeyPart`](super::args::KeyPart)): a hit hashes the
/// arguments (foldhash), takes one read lock and compares them with the owned
/// copy. Each shard remembers the tier [`epoch`](super::tier::epoch) its
/// entries were copied at; once the epoch moves on, the shard answers nothing
/// until it is refilled.
pub(crate) struct ArgFront<K, S> {
    shards: Box<[ArgShardLock<K, S>]>,
    per_shard: usize,
    hasher: foldhash::fast::FixedState,
}

impl<K, S: Clone> ArgFront<K, S> {
    pub(crate) fn new(capacity: usize) -> Self {
        ArgFront {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(RwLock::new(ArgShard {
                        epoch: 0,
                        map: HashMap::default(),
                    }))
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_6d6f_7269_7821),
        }
    }

    /// The hash of a call's arguments.
    #[inline]
    pub(crate) fn hash<A: std::hash::Hash + ?Sized>(&self, args: &A) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(args)
    }

    /// Bits the map uses for neither its bucket index (low bits) nor its
    /// probe tags (top 7 bits).
    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<ArgShard<K, S>> {
        &self.shards[((hash >> 40) as usize) % SHARDS].0
    }

    /// The value copied for arguments equal to `args` at `epoch`, if fresh.
    #[inline]
    pub(crate) fn get(&self, hash: u64, epoch: u64, matches: impl FnOnce(&K) -> bool) -> Option<S> {
        let shard = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        if shard.epoch != epoch {
            return None;
        }
        let entry = shard.map.get(&hash)?;
        if !matches(&entry.key) || expired(entry.until) {
            return None;
        }
        Some(entry.value.clone())
    }

    /// Copies a tier value read at `epoch` (read before the tier was), fresh
    /// until `until`.
    pub(crate) fn insert(&self, hash: u64, key: K, value: S, until: Option<Instant>, epoch: u64) {
        let until = deadline_nanos(until);
        let mut shard = self.shard(hash).write().unwrap_or_else(|e| e.into_inner());
        if shard.epoch > epoch {
            // Copied before an invalidation this shard has already seen.
            return;
        }
        if shard.epoch < epoch {
            shard.map.clear();
            shard.epoch = epoch;
        }
        if shard.map.len() >= self.per_shard && !shard.map.contains_key(&hash) {
            shard.map.retain(|_, e| !expired(e.until));
            if shard.map.len() >= self.per_shard {
                if let Some(victim) = shard.map.keys().next().copied() {
                    shard.map.remove(&victim);
                }
            }
        }
        shard.map.insert(hash, ArgEntry { key, value, until });
    }

    /// True when a copy is kept under `hash`, whatever its epoch.
    #[cfg(test)]
    pub(crate) fn holds(&self, hash: u64) -> bool {
        self.shard(hash)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .contains_key(&hash)
    }
}
