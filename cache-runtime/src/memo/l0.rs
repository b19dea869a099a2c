//! The per-function typed fronts of the tier.
//!
//! - [`TypedFront`]: values of one return type, stored inline under a 128-bit
//!   hash of the key text (functions whose arguments are not plain values).
//! - [`ArgFront`]: values keyed by the arguments themselves (see
//!   [`KeyPart`](super::args::KeyPart)), read through a per-thread pinned
//!   snapshot: no key text, no string hash and no shared write on a hit.
//!
//! The shared [`LocalTier`](super::tier::LocalTier) is authoritative; these
//! are copies. Every copy is tied to the tier's [`epoch`](super::tier::epoch)
//! at the time it was made (read before the tier was): any removal, purge or
//! early overwrite in any tier, and any `init` / `register`, advances the
//! epoch, so a copy never outlives the value it mirrors. Copies also keep the
//! tier entry's expiry.

use arc_swap::ArcSwap;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, OnceLock, RwLock};
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

/// The process-wide base of compact deadlines.
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `until` as nanoseconds past [`clock_base`] (at least 1); 0 means no expiry.
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

/// A copy with a deadline in an [`ArgFront`]: what the front keeps of the
/// arguments it was made for, the value, and the tier entry's deadline.
#[derive(Clone)]
struct Timed<K, S> {
    key: K,
    value: S,
    /// Fresh until, nanoseconds past [`clock_base`] (never 0).
    until: u64,
}

type ArgMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough64>>;

/// The copies, all made at `epoch`. Copies without a deadline (the common
/// case) go in `forever`, whose entries are just arguments and value.
struct ArgTable<K, S> {
    epoch: u64,
    forever: ArgMap<(K, S)>,
    timed: ArgMap<Timed<K, S>>,
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

/// Typed copies of one function's tier entries, keyed by its arguments
/// themselves (see [`KeyPart`](super::args::KeyPart)): a hit hashes the
/// arguments (foldhash), loads the current snapshot and compares the
/// arguments with the owned copy. Each table remembers the tier
/// [`epoch`](super::tier::epoch) its copies were made at; once the epoch moves
/// on, it answers nothing until it is refilled.
///
/// Hits read an immutable snapshot that each thread keeps pinned (an `Arc`
/// in the function's `thread_local!` [`ThreadPin`], checked against the
/// [`PinSlot`] version with one plain load), so a hit writes no shared memory:
/// with a lock (even a sharded one), every hit wrote a lock word that the
/// other cores had just written, and moving that cache line between cores was
/// half the cost of a hit on two threads. Like `arc_swap::Cache`, a pin keeps
/// its snapshot alive until the thread reads this front again (or exits); any
/// snapshot is safe to read, since copies are only served at the epoch they
/// were made at and keep their tier entry's deadline.
///
/// New copies go to a small locked `recent` table first and are merged into a
/// new snapshot in batches (when `recent` reaches a quarter of the snapshot,
/// or after as many hits were served from it as an eighth of the snapshot),
/// so a copy costs a constant number of clones on average.
pub(crate) struct ArgFront<K, S> {
    snapshot: ArcSwap<ArgTable<K, S>>,
    recent: RwLock<ArgTable<K, S>>,
    /// Hits served by `recent` since the last merge.
    recent_hits: AtomicUsize,
    capacity: usize,
}

impl<K: Clone, S: Clone> ArgTable<K, S> {
    fn new(epoch: u64) -> Self {
        ArgTable {
            epoch,
            forever: ArgMap::default(),
            timed: ArgMap::default(),
        }
    }

    fn len(&self) -> usize {
        self.forever.len() + self.timed.len()
    }

    #[inline]
    fn get(&self, hash: u64, epoch: u64, matches: impl Fn(&K) -> bool) -> Option<&S> {
        if self.epoch != epoch {
            return None;
        }
        if let Some((key, value)) = self.forever.get(&hash) {
            if matches(key) {
                return Some(value);
            }
        }
        if self.timed.is_empty() {
            return None;
        }
        let entry = self.timed.get(&hash)?;
        if !matches(&entry.key) || expired(entry.until) {
            return None;
        }
        Some(&entry.value)
    }

    /// Files a copy (`until` from [`deadline_nanos`]), replacing any under `hash`.
    fn insert(&mut self, hash: u64, key: K, value: S, until: u64) {
        if until == 0 {
            self.timed.remove(&hash);
            self.forever.insert(hash, (key, value));
        } else {
            self.forever.remove(&hash);
            self.timed.insert(hash, Timed { key, value, until });
        }
    }

    fn clear(&mut self) {
        self.forever.clear();
        self.timed.clear();
    }

    /// Moves every copy of `other` in (they replace copies under equal hashes).
    fn absorb(&mut self, other: &mut ArgTable<K, S>) {
        for (hash, (key, value)) in other.forever.drain() {
            self.insert(hash, key, value, 0);
        }
        for (hash, entry) in other.timed.drain() {
            self.insert(hash, entry.key, entry.value, entry.until);
        }
    }

    /// Drops expired copies, then arbitrary ones, down to `capacity`.
    fn shrink_to(&mut self, capacity: usize) {
        if self.len() <= capacity {
            return;
        }
        self.timed.retain(|_, e| !expired(e.until));
        if self.len() > capacity {
            // Full of live copies: keep seven eighths (arbitrary ones; the
            // tier still has them all).
            let mut excess = self.len() - capacity / 8 * 7;
            let victims: Vec<u64> = self.timed.keys().take(excess).copied().collect();
            excess -= victims.len();
            for victim in victims {
                self.timed.remove(&victim);
            }
            let victims: Vec<u64> = self.forever.keys().take(excess).copied().collect();
            for victim in victims {
                self.forever.remove(&victim);
            }
        }
    }
}

impl<K: Clone, S: Clone> Clone for ArgTable<K, S> {
    fn clone(&self) -> Self {
        ArgTable {
            epoch: self.epoch,
            forever: self.forever.clone(),
            timed: self.timed.clone(),
        }
    }
}

/// The seed of argument hashes (strings, tuples); integer keys hash exactly.
pub(crate) const ARG_SEED: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6d65_6d6f_7269_7821);

/// The version of a function's front snapshot, kept in the function's
/// `Memo` so a hit needs neither the front nor a downcast of it.
#[derive(Debug, Default)]
pub(crate) struct PinSlot {
    /// Advances each time the front's snapshot is replaced (after the store).
    version: AtomicU64,
}

/// A thread's pinned snapshot of one memoized function's argument-keyed
/// front: the generated code declares one per function in a `thread_local!`
/// and hands it to [`Memo::lookup_args`](super::Memo::lookup_args).
#[derive(Debug, Default)]
pub struct ThreadPin(RefCell<Option<Pin>>);

impl ThreadPin {
    /// An empty pin.
    pub const fn new() -> Self {
        ThreadPin(RefCell::new(None))
    }
}

/// The `thread_local!` holding a function's [`ThreadPin`].
pub type PinKey = std::thread::LocalKey<ThreadPin>;

/// A pinned snapshot.
struct Pin {
    version: u64,
    table: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PinSlot {
    pub(crate) const fn new() -> Self {
        PinSlot {
            version: AtomicU64::new(0),
        }
    }

    /// The hit path: the value under `hash` in this thread's pinned
    /// snapshot, when the pin is current and holds a fresh copy at `epoch`.
    /// `None` sends the call to [`ArgFront::get`].
    #[inline]
    pub(crate) fn get<K: Clone + 'static, S: Clone + 'static>(
        &self,
        local: &'static PinKey,
        hash: u64,
        epoch: u64,
        matches: impl Fn(&K) -> bool,
    ) -> Option<S> {
        let version = self.version.load(Acquire);
        local
            .try_with(|pin| {
                let pin = pin.0.try_borrow().ok()?;
                let pin = pin.as_ref()?;
                if pin.version != version {
                    return None;
                }
                pin.table
                    .downcast_ref::<ArgTable<K, S>>()?
                    .get(hash, epoch, matches)
                    .cloned()
            })
            .ok()
            .flatten()
    }
}

impl<K: Clone + Send + Sync + 'static, S: Clone + Send + Sync + 'static> ArgFront<K, S> {
    pub(crate) fn new(capacity: usize) -> Self {
        ArgFront {
            snapshot: ArcSwap::from_pointee(ArgTable::new(0)),
            recent: RwLock::new(ArgTable::new(0)),
            recent_hits: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    /// A seeded hash of `args`.
    #[cfg(test)]
    pub(crate) fn hash<A: std::hash::Hash + ?Sized>(&self, args: &A) -> u64 {
        use std::hash::BuildHasher;
        ARG_SEED.hash_one(args)
    }

    /// The value copied for arguments that `matches` accepts, at `epoch`, if
    /// still fresh: the slow side of [`PinSlot::get`], which (re)pins the
    /// current snapshot for this thread.
    pub(crate) fn get(
        &self,
        pin: &PinSlot,
        local: &'static PinKey,
        hash: u64,
        epoch: u64,
        matches: impl Fn(&K) -> bool,
    ) -> Option<S> {
        let pinned = local.try_with(|slot| {
            // Busy only if a `Clone` impl of a cached value calls this
            // function again: that inner call reads the snapshot unpinned.
            let mut slot = slot.0.try_borrow_mut().ok()?;
            let version = pin.version.load(Acquire);
            if slot.as_ref().is_none_or(|p| p.version != version) {
                let table: Arc<dyn Any + Send + Sync> = self.snapshot.load_full();
                *slot = Some(Pin { version, table });
            }
            let table = slot.as_ref()?.table.downcast_ref::<ArgTable<K, S>>()?;
            Some(table.get(hash, epoch, &matches).cloned())
        });
        match pinned {
            Ok(Some(Some(value))) => return Some(value),
            Ok(Some(None)) => {}
            _ => {
                if let Some(value) = self.snapshot.load().get(hash, epoch, &matches) {
                    return Some(value.clone());
                }
            }
        }
        self.get_recent(pin, hash, epoch, matches)
    }

    #[cold]
    #[inline(never)]
    fn get_recent(&self, pin: &PinSlot, hash: u64, epoch: u64, matches: impl Fn(&K) -> bool) -> Option<S> {
        let value = {
            let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
            recent.get(hash, epoch, matches).cloned()?
        };
        let hits = self.recent_hits.fetch_add(1, Relaxed) + 1;
        if hits >= (self.snapshot.load().len() / 8).max(32) {
            let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
            self.merge(pin, &mut recent);
        }
        Some(value)
    }

    /// Copies a tier value read at `epoch` (read before the tier was), fresh
    /// until `until`.
    pub(crate) fn insert(&self, pin: &PinSlot, hash: u64, key: K, value: S, until: Option<Instant>, epoch: u64) {
        let until = deadline_nanos(until);
        let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
        if recent.epoch > epoch {
            // Copied before an invalidation this front has already seen.
            return;
        }
        if recent.epoch < epoch {
            recent.clear();
            recent.epoch = epoch;
        }
        recent.insert(hash, key, value, until);
        let snapshot = self.snapshot.load();
        if snapshot.epoch != recent.epoch || recent.len() >= (snapshot.len() / 4).max(32) {
            drop(snapshot);
            self.merge(pin, &mut recent);
        }
    }

    /// Moves `recent` (write-locked by the caller, so merges never overlap)
    /// into a new snapshot, within capacity.
    fn merge(&self, pin: &PinSlot, recent: &mut ArgTable<K, S>) {
        self.recent_hits.store(0, Relaxed);
        if recent.len() == 0 {
            return;
        }
        let old = self.snapshot.load_full();
        let mut table = if old.epoch == recent.epoch {
            (*old).clone()
        } else {
            ArgTable::new(recent.epoch)
        };
        table.absorb(recent);
        table.shrink_to(self.capacity);
        self.snapshot.store(Arc::new(table));
        pin.version.fetch_add(1, Release);
    }

    /// True when a copy is kept under `hash`, whatever its epoch.
    #[cfg(test)]
    pub(crate) fn holds(&self, hash: u64) -> bool {
        let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.snapshot.load();
        [&*recent, &**snapshot]
            .iter()
            .any(|t| t.forever.contains_key(&hash) || t.timed.contains_key(&hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_front_answers_only_at_its_epoch_and_while_fresh() {
        thread_local! {
            static TEST_PIN: ThreadPin = const { ThreadPin::new() };
        }
        let pin = PinSlot::new();
        let front = ArgFront::<u64, String>::new(16);
        let h = front.hash(&7u64);
        front.insert(&pin, h, 7, "seven".into(), None, 3);
        assert_eq!(front.get(&pin, &TEST_PIN, h, 3, |k| *k == 7).as_deref(), Some("seven"));
        assert_eq!(
            front.get(&pin, &TEST_PIN, h, 3, |k| *k == 8),
            None,
            "other arguments under the same hash"
        );
        assert_eq!(
            front.get(&pin, &TEST_PIN, h, 4, |k| *k == 7),
            None,
            "the epoch moved on"
        );
        front.insert(&pin, h, 7, "old".into(), None, 2);
        assert_eq!(
            front.get(&pin, &TEST_PIN, h, 3, |k| *k == 7).as_deref(),
            Some("seven"),
            "a late stale copy is dropped"
        );
        let h9 = front.hash(&9u64);
        let brief = Instant::now() + std::time::Duration::from_millis(5);
        front.insert(&pin, h9, 9, "brief".into(), Some(brief), 3);
        assert_eq!(
            front.get(&pin, &TEST_PIN, h9, 3, |k| *k == 9).as_deref(),
            Some("brief"),
            "served from `recent`"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(front.get(&pin, &TEST_PIN, h9, 3, |k| *k == 9), None, "expired");
        for k in 0..100u64 {
            front.insert(&pin, front.hash(&k), k, k.to_string(), None, 3);
        }
        let total = front.snapshot.load().len() + front.recent.read().unwrap().len();
        assert!(total <= 16 + 32, "{total}");
    }
}
