//! [`Memo`]: what a memoized function calls. One `static` per function.
//!
//! A call goes: (plain arguments) probe the argument-keyed front, see
//! [`Memo::lookup_args`] → build the key (per-thread buffer, no allocation) →
//! probe the typed tier of an in-process cache → on a miss, join the key's
//! flight → the
//! leader reads the engine, runs the body if still missing, stores, shares the
//! value with the waiters. Every cache failure is absorbed: logged with
//! `tracing`, counted in [`stats`](super::stats), and the call goes on as if
//! nothing was cached.

use super::flight::{Flights, Leader, Outcome, Role};
use super::key::{build_key, push_namespace, with_key, KeyBuf};
use super::l0::{key_hash, PinSlot, TypedFront};
use super::registry::{default_slot, named_slot, Slot, ENCRYPTED_CACHE};
use super::spec::{Adapter, CacheChoice, CodecChoice, MemoSpec};
use super::stats;
use super::tier::{epoch, TierLookup, DEFAULT_TIER_CAPACITY};
use crate::cache::Cache;
use crate::codec::{self, Codec, Json, MsgPack, Pickle, RawBytes};
use crate::compression::Compression;
use crate::distributed::{DistributedLoader, Lease, Turn};
use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use crate::BlockingCache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bounds of a cached value: cloned out of the typed tier, shared with
/// waiting callers, encoded for the engine.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`",
    label = "this type is cached",
    note = "derive `Clone`, `serde::Serialize` and `serde::Deserialize` for it, or cache a type that has them"
)]
pub trait Storable: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
// Not recommended: a type missing any bound is reported once, as not `Storable`.
#[diagnostic::do_not_recommend]
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Storable for T {}

/// A copy of a value to cache (the generated adapters clone through here so
/// that a type missing `Clone` is reported as not [`Storable`], once).
#[inline]
#[doc(hidden)]
pub fn stored_clone<S: Storable>(value: &S) -> S {
    value.clone()
}

/// Asks the compiler for `S: Storable` before anything else does, so a type
/// that is not storable is reported once, at the type.
#[doc(hidden)]
#[inline(always)]
pub fn check_storable<S: Storable>() {}

/// The runtime state of one memoized function.
#[derive(Debug)]
pub struct Memo {
    pub(super) spec: MemoSpec,
    flights: OnceLock<Flights>,
    /// The typed front (`TypedFront<S>` of the function's cached type).
    front: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The argument-keyed front (`ArgFront<K, S>`), when the arguments are a [`KeyPart`].
    pub(super) args_front: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Where threads keep their snapshot of `args_front`.
    pub(super) args_pin: PinSlot,
    warned: AtomicBool,
}

/// Whether cache I/O may wait on this thread (synchronous functions) or awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    Async,
    Blocking,
}

/// A resolved cache: the registry's current slot, or one built for `cache = EXPR`.
enum SlotRef {
    Current(arc_swap::Guard<Arc<Slot>>),
    Owned(Arc<Slot>),
}

impl std::ops::Deref for SlotRef {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        match self {
            SlotRef::Current(guard) => guard,
            SlotRef::Owned(slot) => slot,
        }
    }
}

impl SlotRef {
    fn into_arc(self) -> Arc<Slot> {
        match self {
            SlotRef::Current(guard) => arc_swap::Guard::into_inner(guard),
            SlotRef::Owned(slot) => slot,
        }
    }
}

/// What [`Memo::lookup`] found.
#[derive(Debug)]
pub enum Lookup<S> {
    /// A fresh cached value.
    Hit(S),
    /// Nothing usable: call [`Memo::fill`] with the body.
    Miss(Miss<S>),
}

/// A miss, carried from [`Memo::lookup`] to [`Memo::fill`].
#[derive(Debug)]
pub struct Miss<S> {
    slot: Option<Arc<Slot>>,
    key: String,
    current: Option<S>,
    refresh: bool,
}

enum Probe<S> {
    Hit(S),
    Miss {
        key: String,
        current: Option<S>,
        refresh: bool,
    },
}

enum EngineRead<S> {
    Fresh(S, Option<Duration>, Duration),
    Stale(S),
    Miss,
}

/// Stored form of values of functions with `refresh_ahead` / `stale_if_error`.
#[derive(Deserialize)]
struct Stamped<S> {
    #[serde(rename = "memorix_v")]
    v: S,
    /// Fresh until, Unix milliseconds; 0 = forever.
    #[serde(rename = "memorix_f")]
    f: u64,
    /// Compute time of the body, milliseconds.
    #[serde(rename = "memorix_c")]
    c: u64,
}

#[derive(Serialize)]
struct StampedRef<'a, S> {
    #[serde(rename = "memorix_v")]
    v: &'a S,
    #[serde(rename = "memorix_f")]
    f: u64,
    #[serde(rename = "memorix_c")]
    c: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A uniform number in `(0, 1]`, from a per-thread xorshift generator.
fn unit_random() -> f64 {
    use std::cell::Cell;
    use std::hash::BuildHasher;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().hash_one(Instant::now()) | 1);
    }
    STATE
        .try_with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        })
        .unwrap_or(0.5)
}

/// Drives a future on this thread, parking between polls: the executor of
/// synchronous memoized functions (their cache I/O blocks inside it).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

impl Memo {
    /// The state of a function with these options.
    pub const fn new(spec: MemoSpec) -> Self {
        Memo {
            spec,
            flights: OnceLock::new(),
            front: OnceLock::new(),
            args_front: OnceLock::new(),
            args_pin: PinSlot::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// The options this function was compiled with.
    pub fn spec(&self) -> &MemoSpec {
        &self.spec
    }

    /// The typed front of this function, when it may be used: values of an
    /// in-process engine, no freshness metadata to consult, and `S` the type
    /// the front was made for (generic functions use it for one type only).
    #[inline]
    fn front<S: Storable>(&self) -> Option<&TypedFront<S>> {
        if self.spec.stamped() {
            return None;
        }
        self.front
            .get_or_init(|| Box::new(TypedFront::<S>::new(DEFAULT_TIER_CAPACITY)))
            .downcast_ref::<TypedFront<S>>()
    }

    fn flights(&self) -> &Flights {
        self.flights.get_or_init(Flights::default)
    }

    #[inline]
    fn start_key(&self, k: &mut KeyBuf) {
        match self.spec.prefix {
            Some(prefix) => k.lit(prefix),
            None => push_namespace(k),
        }
        if self.spec.derived_key {
            k.lit(self.spec.name);
            k.lit(":");
        }
        k.begin_args();
    }

    /// The cache key of one call, as `{fn}_cache_key` returns it.
    pub fn key(&self, build: impl FnOnce(&mut KeyBuf)) -> String {
        build_key(|k| {
            self.start_key(k);
            build(k);
        })
    }

    fn resolve(&self, expr: Option<Arc<dyn Cache>>) -> Result<SlotRef> {
        let missing = |name: &str, hint: &str| {
            CacheError::config(
                "cache",
                format!(
                    "`{}` uses the cache `{name}`, but none is registered under that name; {hint}",
                    self.spec.name
                ),
            )
        };
        match (self.spec.cache, expr) {
            (_, Some(cache)) => Ok(SlotRef::Owned(Arc::new(Slot::shared(cache)))),
            (CacheChoice::Default, None) => Ok(SlotRef::Current(default_slot())),
            (CacheChoice::Named(name), None) => named_slot(name)
                .map(SlotRef::Owned)
                .ok_or_else(|| missing(name, &format!("call `memorix::register(\"{name}\", cache)` at startup"))),
            (CacheChoice::Encrypted, None) => named_slot(ENCRYPTED_CACHE).map(SlotRef::Owned).ok_or_else(|| {
                missing(
                    ENCRYPTED_CACHE,
                    "`encrypt` needs an encrypted engine with a configured key: call \
                     `memorix::register(memorix::memo::ENCRYPTED_CACHE, encrypted_cache)` at startup",
                )
            }),
            (CacheChoice::Expr, None) => Err(CacheError::config("cache", "no cache expression was given")),
        }
    }

    /// Logs and counts a cache failure; the call goes on without the cache.
    fn absorb(&self, op: &str, err: &CacheError) {
        stats::cache_error();
        tracing::warn!(function = self.spec.name, op, error = %err.chain(), "memoized call continues without the cache");
    }

    /// Like [`Memo::absorb`], for a missing cache: counted as `misconfigured`
    /// and logged once at error level.
    fn absorb_config(&self, err: &CacheError) {
        stats::misconfigured();
        if !self.warned.swap(true, Relaxed) {
            tracing::error!(function = self.spec.name, error = %err.chain(), "memoized function runs uncached");
        }
    }

    fn codec<'a>(&self, slot: &'a Slot) -> &'a dyn Codec {
        match self.spec.codec {
            CodecChoice::Engine => slot.engine.codec(),
            CodecChoice::MsgPack => &MsgPack,
            CodecChoice::Json => &Json,
            CodecChoice::Pickle => &Pickle,
            CodecChoice::Raw => &RawBytes,
        }
    }

    fn jittered_ttl(&self) -> Option<Duration> {
        let ttl = self.spec.ttl?;
        Some(match self.spec.jitter {
            Some(jitter) if !jitter.is_zero() => ttl + jitter.mul_f64(unit_random()),
            _ => ttl,
        })
    }

    /// XFetch: refresh early with a probability that rises as expiry nears
    /// and with how long the body takes.
    fn should_refresh(&self, remaining: Option<Duration>, compute: Duration) -> bool {
        match remaining {
            Some(remaining) if self.spec.refresh_beta > 0.0 => {
                let gap = compute.as_secs_f64() * self.spec.refresh_beta * -unit_random().ln();
                gap >= remaining.as_secs_f64()
            }
            _ => false,
        }
    }

    /// Builds the key and reads the tier: `front` may answer first (a copy),
    /// `copy` is handed every fresh tier value for the next call.
    #[inline]
    fn probe<S: Storable>(
        &self,
        slot: &Slot,
        build: impl FnOnce(&mut KeyBuf),
        front: impl FnOnce(&str) -> Option<S>,
        copy: impl FnOnce(&str, &S, Option<Instant>),
    ) -> Probe<S> {
        with_key(
            |k| {
                self.start_key(k);
                build(k);
            },
            |key| {
                let Some(tier) = &slot.tier else {
                    return Probe::Miss {
                        key: key.to_owned(),
                        current: None,
                        refresh: false,
                    };
                };
                if let Some(value) = front(key) {
                    return Probe::Hit(value);
                }
                match tier.get::<S>(key) {
                    TierLookup::Fresh(value, fresh_until, compute) => {
                        copy(key, &value, fresh_until);
                        let remaining = fresh_until.map(|until| until.saturating_duration_since(Instant::now()));
                        if self.should_refresh(remaining, compute) {
                            Probe::Miss {
                                key: key.to_owned(),
                                current: Some(value),
                                refresh: true,
                            }
                        } else {
                            Probe::Hit(value)
                        }
                    }
                    TierLookup::Stale(value) => Probe::Miss {
                        key: key.to_owned(),
                        current: Some(value),
                        refresh: false,
                    },
                    TierLookup::Miss => Probe::Miss {
                        key: key.to_owned(),
                        current: None,
                        refresh: false,
                    },
                }
            },
        )
    }

    /// First half of a memoized call: resolve the cache, build the key, probe
    /// the typed tier. A hit needs nothing more; a miss goes to [`Memo::fill`]
    /// (or [`Memo::fill_blocking`]) with the body.
    #[inline]
    pub fn lookup<S: Storable>(&self, cache: Option<Arc<dyn Cache>>, build: impl FnOnce(&mut KeyBuf)) -> Lookup<S> {
        // Read before the tier is: a copy made now is dropped by any
        // invalidation that lands while it is being made.
        let epoch = epoch();
        let front = self.front::<S>();
        self.lookup_with(
            cache,
            build,
            |key| front.and_then(|front| front.get(key_hash(key), epoch)),
            |key, value: &S, fresh_until| {
                if let Some(front) = front {
                    front.insert(key_hash(key), value.clone(), fresh_until, epoch);
                }
            },
        )
    }

    pub(super) fn lookup_with<S: Storable>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        build: impl FnOnce(&mut KeyBuf),
        front: impl FnOnce(&str) -> Option<S>,
        copy: impl FnOnce(&str, &S, Option<Instant>),
    ) -> Lookup<S> {
        let slot = match self.resolve(cache) {
            Ok(slot) => slot,
            Err(err) => {
                self.absorb_config(&err);
                return Lookup::Miss(Miss {
                    slot: None,
                    key: String::new(),
                    current: None,
                    refresh: false,
                });
            }
        };
        match self.probe::<S>(&slot, build, front, copy) {
            Probe::Hit(value) => Lookup::Hit(value),
            Probe::Miss { key, current, refresh } => Lookup::Miss(Miss {
                slot: Some(slot.into_arc()),
                key,
                current,
                refresh,
            }),
        }
    }

    /// Second half of a memoized `async fn` call, after a miss.
    pub async fn fill<R, S, Fut>(&self, miss: Miss<S>, adapter: Adapter<R, S>, body: Fut) -> R
    where
        S: Storable,
        Fut: Future<Output = R>,
    {
        match &miss.slot {
            Some(slot) => {
                self.slow(slot, miss.key, miss.current, miss.refresh, adapter, body, Io::Async)
                    .await
            }
            None => body.await,
        }
    }

    /// Second half of a memoized plain `fn` call, after a miss. Remote engines
    /// are reached through the blocking facade; hits never get here.
    pub fn fill_blocking<R, S>(&self, miss: Miss<S>, adapter: Adapter<R, S>, body: impl FnOnce() -> R) -> R
    where
        S: Storable,
    {
        match &miss.slot {
            Some(slot) => {
                let body = async move { body() };
                block_on(self.slow(slot, miss.key, miss.current, miss.refresh, adapter, body, Io::Blocking))
            }
            None => body(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn slow<R, S, Fut>(
        &self,
        slot: &Slot,
        key: String,
        current: Option<S>,
        refresh: bool,
        adapter: Adapter<R, S>,
        body: Fut,
        io: Io,
    ) -> R
    where
        S: Storable,
        Fut: Future<Output = R>,
    {
        if refresh {
            if let (Some(value), Some(leader)) = (current.clone(), self.flights().try_lead(&key)) {
                stats::early_refresh();
                return self
                    .compute(slot, &key, Some(value), adapter, body, io, Some(leader), &mut None)
                    .await;
            }
            if let Some(value) = current {
                return (adapter.from_stored)(value);
            }
        }
        let mut stale = current;
        loop {
            let leader = if self.spec.single_flight {
                match self.flights().join(&key) {
                    Role::Leader(leader) => Some(leader),
                    Role::Waiter(waiter) => {
                        stats::coalesced();
                        match waiter.wait().await {
                            Outcome::Value(shared) => {
                                if let Some(value) = shared.downcast_ref::<S>() {
                                    return (adapter.from_stored)(value.clone());
                                }
                            }
                            Outcome::Result(shared) => {
                                if let Some(result) = adapter.share.and_then(|share| (share.unpack)(&*shared)) {
                                    return result;
                                }
                            }
                            Outcome::Abandoned => {}
                        }
                        // Nothing to take from this flight: join the next one,
                        // so the body still runs once at a time.
                        continue;
                    }
                }
            } else {
                None
            };
            // Another caller, process or write-through may have filled it meanwhile.
            match self.read_engine::<S>(slot, &key, io).await {
                EngineRead::Fresh(value, remaining, compute) => {
                    let refresh = self.should_refresh(remaining, compute);
                    if let Some(leader) = leader {
                        leader.finish(Outcome::Value(Arc::new(value.clone())));
                    }
                    if refresh {
                        if let Some(leader) = self.flights().try_lead(&key) {
                            stats::early_refresh();
                            return self
                                .compute(slot, &key, Some(value), adapter, body, io, Some(leader), &mut None)
                                .await;
                        }
                    }
                    return (adapter.from_stored)(value);
                }
                EngineRead::Stale(value) => stale = stale.or(Some(value)),
                EngineRead::Miss => {}
            }
            let lease = match self.fleet_turn::<S>(slot, &key, io).await {
                Turn::Landed(value) => {
                    if let Some(leader) = leader {
                        leader.finish(Outcome::Value(Arc::new(value.clone())));
                    }
                    return (adapter.from_stored)(value);
                }
                Turn::Lead(lease) => Some(lease),
                Turn::Alone => None,
            };
            let mut lease = lease;
            return self
                .compute(slot, &key, stale, adapter, body, io, leader, &mut lease)
                .await;
        }
    }

    /// `lock = "distributed"`: waits for this process's turn at `key` across
    /// the fleet, through a lease on the engine's Redis connection. Without
    /// the option, or without Redis behind the engine, every process loads
    /// for itself ([`Turn::Alone`]).
    async fn fleet_turn<S: Storable>(&self, slot: &Slot, key: &str, io: Io) -> Turn<S> {
        if !self.spec.distributed {
            return Turn::Alone;
        }
        let Some(conn) = slot.engine.redis_connection() else {
            return Turn::Alone;
        };
        let mut loader = DistributedLoader::new(conn);
        if io == Io::Blocking {
            // This thread is blocked on the call: renewals and waits must run
            // on a runtime that keeps going meanwhile.
            match crate::blocking::runtime() {
                Ok(runtime) => loader = loader.runtime(runtime.handle().clone()),
                Err(err) => {
                    self.absorb("lock", &err);
                    return Turn::Alone;
                }
            }
        }
        let read = || async {
            match self.read_engine::<S>(slot, key, io).await {
                EngineRead::Fresh(value, ..) => Some(value),
                EngineRead::Stale(_) | EngineRead::Miss => None,
            }
        };
        loader.turn_with(&*slot.engine, key, read).await
    }

    /// Runs the body, stores a cacheable result, answers the waiters.
    #[allow(clippy::too_many_arguments)]
    async fn compute<R, S, Fut>(
        &self,
        slot: &Slot,
        key: &str,
        fallback: Option<S>,
        adapter: Adapter<R, S>,
        body: Fut,
        io: Io,
        leader: Option<Leader<'_>>,
        lease: &mut Option<Lease>,
    ) -> R
    where
        S: Storable,
        Fut: Future<Output = R>,
    {
        stats::miss();
        let started = Instant::now();
        let result = body.await;
        let compute = started.elapsed();
        let cached = if (adapter.is_error)(&result) {
            None
        } else {
            (adapter.to_stored)(&result)
        };
        if let Some(value) = &cached {
            self.store(slot, key, value, compute, io).await;
        }
        // The fleet's lease goes before this process's flight ends, so that a
        // waiter taking over here finds it free.
        if let Some(lease) = lease.take() {
            // Boxed: this future sits on the stack of every level of a
            // recursive synchronous memoized function.
            Box::pin(lease.release()).await;
        }
        if (adapter.is_error)(&result) {
            if let Some(value) = fallback {
                stats::stale_served();
                tracing::warn!(
                    function = self.spec.name,
                    "call failed; answering with the last good value"
                );
                if let Some(leader) = leader {
                    leader.finish(Outcome::Value(Arc::new(value.clone())));
                }
                return (adapter.from_stored)(value);
            }
            share_result(leader, &adapter, &result);
            return result;
        }
        match cached {
            Some(value) => {
                if let Some(leader) = leader {
                    leader.finish(Outcome::Value(Arc::new(value)));
                }
            }
            None => share_result(leader, &adapter, &result),
        }
        result
    }

    async fn read_engine<S: Storable>(&self, slot: &Slot, key: &str, io: Io) -> EngineRead<S> {
        let bytes = match io_get(slot, key, io).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return EngineRead::Miss,
            Err(err) => {
                self.absorb("get", &err);
                return EngineRead::Miss;
            }
        };
        match self.decode::<S>(slot, bytes) {
            Ok((value, 0, compute)) => EngineRead::Fresh(value, None, compute),
            Ok((value, fresh_until, compute)) => {
                let now = unix_ms();
                if now < fresh_until {
                    EngineRead::Fresh(value, Some(Duration::from_millis(fresh_until - now)), compute)
                } else {
                    EngineRead::Stale(value)
                }
            }
            Err(err) => {
                self.absorb("decode", &err);
                EngineRead::Miss
            }
        }
    }

    fn encode<S: Serialize>(
        &self,
        slot: &Slot,
        value: &S,
        ttl: Option<Duration>,
        compute: Duration,
    ) -> Result<Vec<u8>> {
        let codec = self.codec(slot);
        let bytes = if self.spec.stamped() {
            let f = ttl.map_or(0, |t| {
                unix_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            });
            let c = u64::try_from(compute.as_millis()).unwrap_or(u64::MAX);
            codec::encode(codec, &StampedRef { v: value, f, c })?
        } else {
            codec::encode(codec, value)?
        };
        if self.spec.compress {
            Compression::default().seal(&bytes)
        } else {
            Ok(bytes)
        }
    }

    /// Decodes a stored value: `(value, fresh_until_ms or 0, compute time)`.
    /// Accepts both stored forms, so functions with and without freshness
    /// metadata can share keys.
    fn decode<S: DeserializeOwned>(&self, slot: &Slot, bytes: Vec<u8>) -> Result<(S, u64, Duration)> {
        let bytes = if self.spec.compress {
            Compression::default().open(&bytes)?
        } else {
            bytes
        };
        let codec = self.codec(slot);
        let stamped = || codec::decode::<Stamped<S>>(codec, &bytes).map(|s| (s.v, s.f, Duration::from_millis(s.c)));
        let plain = || codec::decode::<S>(codec, &bytes).map(|v| (v, 0, Duration::ZERO));
        if self.spec.stamped() {
            stamped().or_else(|err| plain().map_err(|_| err))
        } else {
            plain().or_else(|err| stamped().map_err(|_| err))
        }
    }

    /// Stores a value in the engine and, for in-process engines, the typed tier.
    async fn store_checked<S: Storable>(
        &self,
        slot: &Slot,
        key: &str,
        value: &S,
        compute: Duration,
        io: Io,
    ) -> Result<()> {
        let ttl = self.jittered_ttl();
        let keep = match (ttl, self.spec.stale_if_error) {
            (Some(ttl), Some(stale)) => Some(ttl + stale),
            (ttl, _) => ttl,
        };
        if let Some(tier) = &slot.tier {
            tier.insert(key, value.clone(), ttl, self.spec.stale_if_error, compute);
        }
        let bytes = self.encode(slot, value, ttl, compute);
        let written = match bytes {
            Ok(bytes) => io_set(slot, key, &bytes, keep, io).await,
            Err(err) => Err(err),
        };
        if written.is_err() {
            if let Some(tier) = &slot.tier {
                tier.remove(key);
            }
        }
        written
    }

    async fn store<S: Storable>(&self, slot: &Slot, key: &str, value: &S, compute: Duration, io: Io) {
        if let Err(err) = self.store_checked(slot, key, value, compute, io).await {
            self.absorb("set", &err);
        }
    }

    async fn remove(&self, slot: &Slot, key: &str, io: Io) -> Result<bool> {
        if let Some(tier) = &slot.tier {
            tier.remove(key);
        }
        match io {
            Io::Blocking if !slot.is_local() => BlockingCache::from_arc(slot.engine.clone()).remove(key),
            _ => slot.engine.remove(key).await,
        }
    }

    async fn purge(&self, slot: &Slot, io: Io) -> Result<()> {
        if let Some(tier) = &slot.tier {
            tier.clear();
        }
        match io {
            Io::Blocking if !slot.is_local() => BlockingCache::from_arc(slot.engine.clone()).purge(),
            _ => slot.engine.purge().await,
        }
    }

    async fn invalidate_io(&self, cache: Option<Arc<dyn Cache>>, key: String, io: Io) -> Result<bool> {
        let slot = self.resolve(cache)?.into_arc();
        self.remove(&slot, &key, io).await
    }

    async fn prime_io<S: Storable>(&self, cache: Option<Arc<dyn Cache>>, key: String, value: S, io: Io) -> Result<()> {
        let slot = self.resolve(cache)?.into_arc();
        self.store_checked(&slot, &key, &value, Duration::ZERO, io).await
    }

    /// `{fn}_invalidate` of an `async fn`: removes the entry under `key`
    /// (from [`Memo::key`]).
    pub async fn invalidate(&self, cache: Option<Arc<dyn Cache>>, key: String) -> Result<bool> {
        self.invalidate_io(cache, key, Io::Async).await
    }

    /// `{fn}_invalidate` of a plain `fn`.
    pub fn invalidate_blocking(&self, cache: Option<Arc<dyn Cache>>, key: String) -> Result<bool> {
        block_on(self.invalidate_io(cache, key, Io::Blocking))
    }

    /// `{fn}_prime` of an `async fn`: stores `value` as the result under `key`.
    pub async fn prime<S: Storable>(&self, cache: Option<Arc<dyn Cache>>, key: String, value: S) -> Result<()> {
        self.prime_io(cache, key, value, Io::Async).await
    }

    /// `{fn}_prime` of a plain `fn`.
    pub fn prime_blocking<S: Storable>(&self, cache: Option<Arc<dyn Cache>>, key: String, value: S) -> Result<()> {
        block_on(self.prime_io(cache, key, value, Io::Blocking))
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_io<R, S, Fut>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: String,
        value: Option<S>,
        to_stored: fn(&R) -> Option<S>,
        is_error: fn(&R) -> bool,
        body: Fut,
        io: Io,
    ) -> R
    where
        S: Storable,
        Fut: Future<Output = R>,
    {
        let result = body.await;
        if is_error(&result) {
            return result;
        }
        let Some(value) = value.or_else(|| to_stored(&result)) else {
            return result;
        };
        match self.resolve(cache) {
            Ok(slot) => {
                let slot = slot.into_arc();
                self.store(&slot, &key, &value, Duration::ZERO, io).await;
            }
            Err(err) => self.absorb_config(&err),
        }
        result
    }

    /// `#[cache_put]` on an `async fn`: runs the body, then stores `value`
    /// (the `value = ...` option, evaluated before the body) or the cacheable
    /// part of the result under `key`. A failed call stores nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn put<R, S, Fut>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: String,
        value: Option<S>,
        to_stored: fn(&R) -> Option<S>,
        is_error: fn(&R) -> bool,
        body: Fut,
    ) -> R
    where
        S: Storable,
        Fut: Future<Output = R>,
    {
        self.put_io(cache, key, value, to_stored, is_error, body, Io::Async)
            .await
    }

    /// `#[cache_put]` on a plain `fn`.
    #[allow(clippy::too_many_arguments)]
    pub fn put_blocking<R, S>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: String,
        value: Option<S>,
        to_stored: fn(&R) -> Option<S>,
        is_error: fn(&R) -> bool,
        body: impl FnOnce() -> R,
    ) -> R
    where
        S: Storable,
    {
        block_on(self.put_io(
            cache,
            key,
            value,
            to_stored,
            is_error,
            async move { body() },
            Io::Blocking,
        ))
    }

    async fn evict_now(&self, cache: Option<Arc<dyn Cache>>, key: Option<&str>, io: Io) {
        let slot = match self.resolve(cache) {
            Ok(slot) => slot.into_arc(),
            Err(err) => return self.absorb_config(&err),
        };
        let done = match key {
            Some(key) => self.remove(&slot, key, io).await.map(drop),
            None => self.purge(&slot, io).await,
        };
        if let Err(err) = done {
            self.absorb("evict", &err);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn evict_io<R, Fut: Future<Output = R>>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: Option<String>,
        before: bool,
        is_error: fn(&R) -> bool,
        body: Fut,
        io: Io,
    ) -> R {
        if before {
            self.evict_now(cache, key.as_deref(), io).await;
            return body.await;
        }
        let result = body.await;
        if !is_error(&result) {
            self.evict_now(cache, key.as_deref(), io).await;
        }
        result
    }

    /// `#[cache_evict]` on an `async fn`: removes `key` (or, when `None`
    /// (`all_entries`), every entry of the cache) after a successful call, or
    /// before the call with `before_invocation`.
    pub async fn evict<R, Fut: Future<Output = R>>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: Option<String>,
        before: bool,
        is_error: fn(&R) -> bool,
        body: Fut,
    ) -> R {
        self.evict_io(cache, key, before, is_error, body, Io::Async).await
    }

    /// `#[cache_evict]` on a plain `fn`.
    pub fn evict_blocking<R>(
        &self,
        cache: Option<Arc<dyn Cache>>,
        key: Option<String>,
        before: bool,
        is_error: fn(&R) -> bool,
        body: impl FnOnce() -> R,
    ) -> R {
        block_on(self.evict_io(cache, key, before, is_error, async move { body() }, Io::Blocking))
    }
}

/// Turns the value of `cache = EXPR` into a cache handle: any `Arc` of an
/// engine, or an `Arc<dyn Cache>` (also behind a reference or a lazy static).
pub trait CacheHandle {
    /// A shared handle to the cache.
    fn memorix_cache_handle(&self) -> Arc<dyn Cache>;
}

impl<C: Cache + 'static> CacheHandle for Arc<C> {
    fn memorix_cache_handle(&self) -> Arc<dyn Cache> {
        self.clone()
    }
}

impl CacheHandle for Arc<dyn Cache> {
    fn memorix_cache_handle(&self) -> Arc<dyn Cache> {
        self.clone()
    }
}

/// Ends a flight whose result is not cached: the waiters get a clone when
/// the return type allows one; otherwise dropping the leader abandons the
/// flight and the waiters take over one at a time.
fn share_result<R, S>(leader: Option<Leader<'_>>, adapter: &Adapter<R, S>, result: &R) {
    if let (Some(leader), Some(share)) = (leader, adapter.share) {
        leader.finish(Outcome::Result((share.pack)(result)));
    }
}

async fn io_get(slot: &Slot, key: &str, io: Io) -> Result<Option<Vec<u8>>> {
    match io {
        Io::Blocking if !slot.is_local() => BlockingCache::from_arc(slot.engine.clone()).get_bytes(key),
        _ => slot.engine.get_bytes(key).await,
    }
}

async fn io_set(slot: &Slot, key: &str, bytes: &[u8], ttl: Option<Duration>, io: Io) -> Result<()> {
    match io {
        Io::Blocking if !slot.is_local() => BlockingCache::from_arc(slot.engine.clone()).set_bytes(key, bytes, ttl),
        _ => slot.engine.set_bytes(key, bytes, ttl).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MEMO: Memo = Memo::new(MemoSpec {
        name: "tests::square",
        ..MemoSpec::DEFAULT
    });

    #[test]
    fn second_call_is_served_by_the_typed_tier() {
        for k in 0..3u64 {
            match MEMO.lookup::<u64>(None, |b| b.arg(&k)) {
                Lookup::Miss(miss) => assert_eq!(MEMO.fill_blocking(miss, Adapter::plain(), || k * k), k * k),
                Lookup::Hit(_) => panic!("cold key {k} was a hit"),
            }
        }
        for k in 0..3u64 {
            assert!(
                matches!(MEMO.lookup::<u64>(None, |b| b.arg(&k)), Lookup::Hit(v) if v == k * k),
                "warm key {k} missed the typed tier"
            );
        }
    }
}
