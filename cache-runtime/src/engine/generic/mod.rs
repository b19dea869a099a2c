//! [`GenericRedisCache`]: two tiers (L1 memory + Redis), compression,
//! monitoring, callbacks, graceful degradation, cross-instance L1 coherence,
//! security assessment.
//!
//! - get: L1, then Redis (`GET` + `PTTL` in one round trip); a Redis hit fills
//!   L1 for no longer than the key's remaining Redis TTL.
//! - set: Redis (with the invalidation `PUBLISH` in the same round trip), then
//!   L1. If Redis is unreachable the value still lands in L1, the failure is
//!   counted and the write is replayed when Redis is back. If Redis refuses the
//!   write (ACL denial, wrong type) the error is returned and L1 drops the key.
//! - delete: both tiers. exists: asks Redis, never a possibly stale L1 (L1 only
//!   answers while Redis is down).
//! - Redis down at start: memory-only mode (or an error with
//!   `fail_on_connection_error`), switching to Redis by itself once reachable.
//! - Redis dying mid-run: a circuit breaker opens, L1 serves, a probe
//!   reconnects within a probe interval of Redis returning and replays the
//!   writes and removes made meanwhile, then clears L1.
//! - Other instances' writes reach L1 through pub/sub invalidation.
//!
//! Monitoring: [`GenericRedisCache::stats`] always; with the `metrics` feature
//! also through the `metrics` facade; with the `tracing` feature every
//! operation runs inside a `memorix.<op>` span recording the prefix, the key,
//! the tier that answered, hit or miss and the error kind, never a value or a
//! credential (see `spans.rs`).

mod breaker;
mod callbacks;
mod config;
mod factory;
mod invalidation;
mod security;
mod spans;

pub use self::callbacks::{CacheEvent, Callback, CallbackId, EventInfo, Tier};
pub use self::config::GenericRedisCacheBuilder;
pub use self::factory::CacheFactory;
pub use self::security::{SecurityConfig, SecurityStatus, SecurityValidation, TlsVersion, SECURE_SCORE};

use self::breaker::{Breaker, Pending, PendingOp};
use self::callbacks::Callbacks;
use self::config::Settings;
use self::spans::OpSpan;
use crate::cache::{Cache, CorruptEntryPolicy};
use crate::codec::{self, Codec};
use crate::connection::{self, RedisConfig, RedisConnection};
use crate::envelope::Envelope;
use crate::error::{CacheError, Result};
use crate::keys::{effective_ttl, ttl_millis, Prefix};
use crate::l1::{Entry, L1};
use crate::metrics::{self, GenericStats, Metrics, Op};
use crate::pipeline::Pipeline;
use crate::stats::CacheStats;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::FromRedisValue;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How many keys one SCAN step asks for during `purge`.
const PURGE_BATCH: usize = 500;

/// Open connections to Redis.
struct Backend {
    conns: Vec<RedisConnection>,
    next: AtomicUsize,
}

impl Backend {
    fn conn(&self) -> RedisConnection {
        self.conns[self.next.fetch_add(1, Relaxed) % self.conns.len()].clone()
    }
}

/// The state shared by the cache handle and its background tasks.
pub(crate) struct Inner {
    me: Weak<Inner>,
    settings: Settings,
    pub(crate) redis_config: RedisConfig,
    min_tls: TlsVersion,
    backend: ArcSwapOption<Backend>,
    breaker: Breaker,
    pending: Pending,
    probing: AtomicBool,
    l1: L1,
    prefix: Prefix,
    codec: Arc<dyn Codec>,
    pipeline: Pipeline,
    metrics: Metrics,
    stats: CacheStats,
    flushed: Mutex<(u64, u64)>,
    callbacks: Callbacks,
    instance_id: String,
    channel: String,
    coherent: AtomicBool,
    closed: AtomicBool,
    last_validation: Mutex<Option<SecurityValidation>>,
}

/// A two-tier cache: an in-process L1 in front of Redis.
///
/// ```no_run
/// use memorix_runtime::{CacheExt, GenericRedisCache};
/// use std::time::Duration;
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let cache = GenericRedisCache::builder()
///     .redis_url("redis://127.0.0.1:6379/0")
///     .prefix("app:")
///     .l1_cache_size(10_000)
///     .connect()
///     .await?; // Redis down? Memory-only until it comes back.
/// cache.set("user:1", &("Ada", 36), Some(Duration::from_secs(60))).await?;
/// // The typed get keeps the decoded value in L1: later hits clone it.
/// let user: Option<(String, u32)> = cache.get("user:1").await?;
/// println!("{}", serde_json::to_string(&cache.stats()).unwrap());
/// # let _ = user; Ok(()) }
/// ```
///
/// With the `tracing` feature, every operation (`get`, `set`, `has`, `remove`,
/// `get_many`, `set_many`, `purge`) runs inside a DEBUG span named
/// `memorix.<op>` with the fields `cache` (the prefix), `key` (as stored: a
/// hashed long key shows as its digest), `tier` (`"l1"`, `"redis"`, `"none"`),
/// `hit`, `keys` / `hits` for batches, and `error` (the error kind) on failure.
/// Values and credentials are never recorded. Without the feature no span is
/// created.
pub struct GenericRedisCache {
    inner: Arc<Inner>,
    subscriber: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for GenericRedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("GenericRedisCache")
            .field("redis", &inner.redis_config.to_string())
            .field("prefix", &inner.prefix.get())
            .field("codec", &inner.codec.name())
            .field("l1", &inner.l1)
            .field("redis_available", &self.is_redis_available())
            .field("pipeline", &inner.pipeline)
            .finish_non_exhaustive()
    }
}

impl Drop for GenericRedisCache {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

/// What the Redis tier of a get found: the codec bytes, and the L1 entry
/// when the read filled one.
type RedisHit = (Arc<[u8]>, Option<Arc<Entry>>);

/// One command, or a pipeline of several.
#[derive(Clone, Copy)]
enum Req<'a> {
    One(&'a redis::Cmd),
    Many(&'a redis::Pipeline),
}

/// Runs `req` once. The connection manager bounds it with the configured
/// response timeout; no extra timer per call.
async fn run<T: redis::FromRedisValue>(req: Req<'_>, conn: &mut RedisConnection) -> Result<T> {
    let result = match req {
        Req::One(cmd) => cmd.query_async::<T>(conn).await,
        Req::Many(pipe) => pipe.query_async::<T>(conn).await,
    };
    result.map_err(CacheError::from)
}

/// How a Redis call went, when it did not return a value.
enum Unavailable {
    /// The breaker is open or there is no connection: Redis was not asked.
    Skipped,
    /// Redis could not be reached (counted, breaker updated).
    Down,
}

impl GenericRedisCache {
    /// A builder with the defaults (see [`GenericRedisCacheBuilder`]).
    pub fn builder() -> GenericRedisCacheBuilder {
        GenericRedisCacheBuilder::default()
    }

    /// Connects to `url` with every other setting at its default.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().redis_url(url).connect().await
    }

    pub(crate) async fn from_builder(builder: GenericRedisCacheBuilder) -> Result<Self> {
        let (redis_config, compression, settings) = builder.validate()?;
        let metrics = Metrics::default();
        let mut envelope = Envelope::new(builder.codec.as_ref())
            .compression(compression)
            .counters(metrics.compression.clone());
        if let Some(cipher) = builder.cipher.clone() {
            envelope = envelope.cipher(cipher);
        }
        if redis_config.topology() == connection::Topology::Standalone {
            // Fails fast on a bad TLS file: a config error, not an outage.
            connection::client_for(&redis_config)?;
        }
        let opened =
            match tokio::time::timeout(redis_config.connect_timeout() * 2, connection::open(&redis_config)).await {
                Ok(Ok((_, conns))) => Ok(conns),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(CacheError::Timeout),
            };
        let backend = match opened {
            Ok(conns) => Some(Arc::new(Backend {
                conns,
                next: AtomicUsize::new(0),
            })),
            Err(err) if settings.fail_on_connection_error => return Err(err),
            Err(err) => {
                tracing::warn!(redis = %redis_config, error = %err,
                    "Redis unreachable; GenericRedisCache starts in memory-only mode and switches to Redis when it answers");
                None
            }
        };
        let memory_only = backend.is_none();
        let channel = invalidation::channel(&settings.namespace);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            l1: L1::new(settings.l1_size),
            breaker: Breaker::new(settings.breaker_threshold, memory_only),
            pending: Pending::new(settings.max_pending),
            probing: AtomicBool::new(false),
            redis_config,
            min_tls: builder
                .security
                .as_ref()
                .map_or_else(Default::default, |s| s.tls_version_floor()),
            backend: ArcSwapOption::new(backend),
            prefix: Prefix::new(builder.prefix.clone()),
            codec: builder.codec.clone(),
            pipeline: Pipeline::plain().then(Arc::new(envelope)),
            metrics,
            stats: CacheStats::default(),
            flushed: Mutex::new((0, 0)),
            callbacks: Callbacks::default(),
            instance_id: invalidation::new_instance_id(),
            channel,
            coherent: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_validation: Mutex::new(None),
            settings,
        });
        if memory_only {
            inner.spawn_probe();
        }
        let subscriber = (inner.settings.coherence && inner.settings.enable_l1).then(|| {
            tokio::spawn(invalidation::subscribe_loop(
                Arc::downgrade(&inner),
                inner.channel.clone(),
                inner.settings.probe_interval,
            ))
        });
        Ok(GenericRedisCache { inner, subscriber })
    }

    /// Reads and decodes the value under `key`, L1 first.
    ///
    /// The decoded value is kept in L1 beside its bytes, so the next hit for
    /// the same type clones it instead of decoding. This inherent method needs
    /// `T: Clone + 'static`; for other types use [`crate::CacheExt::get`]
    /// (`CacheExt::get(&cache, key)`), which decodes on every call.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let key = inner.user_key(key);
        let span = spans::get(inner, &key);
        span.run(async {
            if let Some(entry) = inner.l1_lookup(&key)? {
                span.found(Some(Tier::L1));
                if let Some(value) = entry.decoded::<T>() {
                    return Ok(Some(value));
                }
                return inner.decode_entry(&entry);
            }
            match inner.redis_get(&key, &span).await {
                Ok(Some((_, Some(entry)))) => inner.decode_entry(&entry),
                Ok(Some((bytes, None))) => {
                    let decoded = codec::decode(inner.codec.as_ref(), &bytes);
                    if let Err(err) = &decoded {
                        inner.metrics.error(metrics::error_kind(err));
                    }
                    inner.apply_policy(decoded.map(Some))
                }
                Ok(None) => Ok(None),
                Err(err) => inner.apply_policy(Err(err)),
            }
        })
        .await
    }

    /// Stores `value` with the TTL configured for `operation`
    /// ([`GenericRedisCacheBuilder::operation_ttl`]), else the default TTL.
    pub async fn set_for<T>(&self, operation: &str, key: &str, value: &T) -> Result<()>
    where
        T: Serialize + ?Sized + Sync,
    {
        let ttl = self.operation_ttl(operation);
        let bytes = codec::encode(self.inner.codec.as_ref(), value)?;
        self.set_bytes(key, &bytes, ttl).await
    }

    /// The TTL configured for `operation`, if any.
    pub fn operation_ttl(&self, operation: &str) -> Option<Duration> {
        self.inner.settings.operation_ttls.get(operation).copied()
    }

    /// The key actually used for `key`: itself, or a digest when it is longer
    /// than [`GenericRedisCacheBuilder::hash_keys_longer_than`].
    pub fn storage_key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        self.inner.user_key(key)
    }

    /// Monitoring snapshot: per-tier hits and misses, hit rate over gets,
    /// latency percentiles, compression, errors by kind, invalidations, L1 size.
    /// Serializable with serde.
    ///
    /// (The [`Cache::stats`] counters are reachable as `Cache::stats(&cache)`.)
    pub fn stats(&self) -> GenericStats {
        self.inner.metrics.snapshot(self.inner.l1.len(), self.inner.l1.bytes())
    }

    /// Sets every monitoring counter back to zero.
    pub fn reset_stats(&self) {
        self.inner.metrics.reset();
        self.inner.stats.reset();
        *self.inner.flushed.lock().unwrap_or_else(|p| p.into_inner()) = (0, 0);
    }

    /// Calls `handler` on every `event`. A handler that fails or panics is
    /// logged and does not affect the operation.
    pub fn register_callback<F>(&self, event: CacheEvent, handler: F) -> CallbackId
    where
        F: Fn(&EventInfo<'_>) -> std::result::Result<(), crate::BoxError> + Send + Sync + 'static,
    {
        self.inner.callbacks.register(event, Arc::new(handler))
    }

    /// Removes a handler; false if it was not registered.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        self.inner.callbacks.remove(id)
    }

    /// True while Redis is in use (connected, breaker closed).
    pub fn is_redis_available(&self) -> bool {
        self.inner.breaker.is_closed() && self.inner.backend.load().is_some()
    }

    /// True while other instances' invalidations are being received.
    pub fn is_coherent(&self) -> bool {
        self.inner.coherent.load(Relaxed)
    }

    /// Writes and removes waiting to be replayed to Redis.
    pub fn pending_writes(&self) -> usize {
        self.inner.pending.len()
    }

    /// This instance's id, carried by its invalidation messages.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The Redis settings in use (Display masks the password).
    pub fn redis_config(&self) -> &RedisConfig {
        &self.inner.redis_config
    }

    /// Security settings as configured, with the last validation if any.
    pub fn security_status(&self) -> SecurityStatus {
        security::status(&self.inner.redis_config, self.inner.min_tls, self.last_validation())
    }

    /// What to improve, from the last validation or else the configuration.
    pub fn security_recommendations(&self) -> Vec<String> {
        security::recommendations(
            &self.inner.redis_config,
            self.inner.min_tls,
            self.last_validation().as_ref(),
        )
    }

    /// Connects and checks auth, TLS, the ACL user, anonymous access and the
    /// server version; the result also feeds [`Self::security_status`].
    pub async fn validate_security(&self) -> SecurityValidation {
        let result = security::validate(&self.inner.redis_config, self.inner.min_tls).await;
        *self.inner.last_validation.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        result
    }

    /// A readable security report; run [`Self::validate_security`] first to
    /// include the live checks.
    pub fn security_report(&self) -> String {
        security::report(&self.inner.redis_config, &self.security_status())
    }

    fn last_validation(&self) -> Option<SecurityValidation> {
        self.inner
            .last_validation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Inner {
    #[inline]
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            Err(CacheError::Closed)
        } else {
            Ok(())
        }
    }

    /// The key under which `key` is stored (hashed when too long).
    #[inline]
    fn user_key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        match self.settings.hash_keys_longer_than {
            Some(max) if key.len() > max => Cow::Owned(factory::hashed_key(key)),
            _ => Cow::Borrowed(key),
        }
    }

    /// L1 serves reads when enabled, and always while Redis is unavailable.
    #[inline]
    fn l1_active(&self) -> bool {
        self.settings.enable_l1 || !self.breaker.is_closed()
    }

    #[inline]
    fn l1_lookup(&self, key: &str) -> Result<Option<Arc<Entry>>> {
        self.check_open()?;
        if !self.l1_active() {
            return Ok(None);
        }
        let started = metrics::sample_l1().then(Instant::now);
        match self.l1.get(key) {
            Some(entry) => {
                self.metrics.l1_hit();
                if let Some(started) = started {
                    self.metrics
                        .latency(Op::Get, started.elapsed(), u64::from(metrics::L1_SAMPLE_EVERY));
                }
                self.callbacks.fire(CacheEvent::GetHit, key, Some(Tier::L1), None);
                Ok(Some(entry))
            }
            None => {
                self.metrics.l1_miss();
                Ok(None)
            }
        }
    }

    fn decode_entry<T>(&self, entry: &Entry) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let decoded = codec::decode::<T>(self.codec.as_ref(), &entry.bytes);
        match &decoded {
            Ok(value) => entry.remember(value.clone()),
            Err(err) => self.metrics.error(metrics::error_kind(err)),
        }
        self.apply_policy(decoded.map(Some))
    }

    fn apply_policy<T>(&self, decoded: Result<Option<T>>) -> Result<Option<T>> {
        match decoded {
            Err(err) if err.is_corrupt_entry() => {
                if self.settings.on_corrupt == CorruptEntryPolicy::Miss {
                    tracing::warn!(error = %err, "cache entry does not decode; treated as a miss");
                    self.stats.record_corrupt();
                    Ok(None)
                } else {
                    Err(err)
                }
            }
            other => other,
        }
    }

    fn finish(&self, op: Op, started: Instant) {
        let took = started.elapsed();
        self.metrics.latency(op, took, 1);
        if took > self.settings.slow_threshold {
            Metrics::bump(&self.metrics.slow_ops, "memorix_slow_operations_total");
            tracing::warn!(
                op = op.name(),
                took_ms = took.as_secs_f64() * 1e3,
                "slow cache operation"
            );
        }
    }

    fn spawn_probe(&self) {
        if self.closed.load(Relaxed) || self.probing.swap(true, Relaxed) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(breaker::probe_loop(self.me.clone()));
            }
            Err(_) => self.probing.store(false, Relaxed),
        }
    }

    /// Runs `pipe` on Redis unless the breaker is open. Connection-class
    /// failures are counted and feed the breaker (a failed write opens it at
    /// once); server errors (wrong type, ACL denial) are returned.
    async fn exec<T: redis::FromRedisValue>(
        &self,
        req: Req<'_>,
        key: &str,
        write: bool,
    ) -> Result<std::result::Result<T, Unavailable>> {
        self.check_open()?;
        let mut conn = match (self.breaker.is_closed(), self.backend.load().as_ref()) {
            (true, Some(backend)) => backend.conn(),
            _ => {
                self.metrics.error("circuit_open");
                return Ok(Err(Unavailable::Skipped));
            }
        };
        let mut result = run(req, &mut conn).await;
        if matches!(result, Err(CacheError::Connection(_))) {
            // A dropped connection is re-opened by the connection manager:
            // one immediate retry hides a server restart from the caller.
            result = run(req, &mut conn).await;
        }
        match result {
            Ok(value) => {
                self.breaker.success();
                Ok(Ok(value))
            }
            Err(err) => {
                self.metrics.error(metrics::error_kind(&err));
                self.callbacks
                    .fire(CacheEvent::Error, key, Some(Tier::Redis), Some(&err));
                if matches!(err, CacheError::Redis(_)) {
                    return Err(err);
                }
                tracing::debug!(error = %err, "redis unavailable; serving from memory");
                let opened = if write {
                    self.breaker.trip()
                } else {
                    self.breaker.failure()
                };
                if opened {
                    Metrics::bump(&self.metrics.breaker_opens, "memorix_circuit_breaker_opens_total");
                    tracing::warn!(error = %err, "Redis unavailable: circuit breaker open, serving from L1");
                }
                if !self.breaker.is_closed() {
                    self.spawn_probe();
                }
                Ok(Err(Unavailable::Down))
            }
        }
    }

    /// Queues a write that did not reach Redis, opening the breaker so the
    /// probe replays it.
    fn defer(&self, full_key: String, op: PendingOp) {
        self.pending.push(full_key, op, || {
            if self.breaker.trip() {
                Metrics::bump(&self.metrics.breaker_opens, "memorix_circuit_breaker_opens_total");
            }
        });
        self.spawn_probe();
    }

    /// Stores codec bytes in L1 for at most `ttl` (and the L1 TTL cap).
    fn l1_put(&self, key: &str, bytes: Arc<[u8]>, ttl: Option<Duration>) {
        let ttl = match (ttl, self.settings.l1_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.l1.bump();
        let (_, evicted) = self.l1.insert(key, bytes, ttl);
        self.evicted(evicted);
    }

    fn evicted(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        self.metrics.l1_evictions.fetch_add(keys.len() as u64, Relaxed);
        for key in &keys {
            self.callbacks.fire(CacheEvent::Eviction, key, Some(Tier::L1), None);
        }
    }

    fn publish(&self, pipe: &mut redis::Pipeline, full_key: &str) {
        if self.settings.coherence {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(invalidation::key_message(&self.instance_id, full_key))
                .ignore();
        }
    }

    fn count_get(&self, hit: bool, key: &str, tier: Tier) {
        if hit {
            self.callbacks.fire(CacheEvent::GetHit, key, Some(tier), None);
        } else {
            Metrics::bump(&self.metrics.misses, "memorix_gets_missed_total");
            self.callbacks.fire(CacheEvent::GetMiss, key, None, None);
        }
    }

    /// The Redis tier of a get (after an L1 miss). Returns the codec bytes,
    /// and the L1 entry when it was filled.
    async fn redis_get(&self, key: &str, span: &OpSpan) -> Result<Option<RedisHit>> {
        let started = Instant::now();
        let full = self.prefix.apply(key);
        let fill = self.settings.enable_l1;
        let epoch = self.l1.epoch();
        let answer: std::result::Result<(Option<Vec<u8>>, Option<i64>), Unavailable> = if fill {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&full).cmd("PTTL").arg(&full);
            self.exec::<(Option<Vec<u8>>, i64)>(Req::Many(&pipe), key, false)
                .await?
                .map(|(v, t)| (v, Some(t)))
        } else {
            let mut get = redis::cmd("GET");
            get.arg(&full);
            self.exec::<Option<Vec<u8>>>(Req::One(&get), key, false)
                .await?
                .map(|v| (v, None))
        };
        let (tier, found) = match answer {
            Ok((stored, pttl)) => (Tier::Redis, self.redis_answer(key, stored, pttl, epoch)),
            Err(_) => (Tier::L1, Ok(self.redis_down(key))),
        };
        if let Ok(hit) = &found {
            span.found(hit.as_ref().map(|_| tier));
        }
        self.finish(Op::Get, started);
        found
    }

    /// Turns Redis's answer for `key` into codec bytes, filling L1 for no
    /// longer than `pttl` (milliseconds; -1 = no expiry) when given.
    fn redis_answer(
        &self,
        key: &str,
        stored: Option<Vec<u8>>,
        pttl: Option<i64>,
        epoch: u64,
    ) -> Result<Option<RedisHit>> {
        let Some(stored) = stored else {
            self.metrics.redis_get(false);
            self.count_get(false, key, Tier::Redis);
            return Ok(None);
        };
        self.metrics.redis_get(true);
        let plain: Arc<[u8]> = match self.pipeline.open(stored) {
            Ok(plain) => Arc::from(plain),
            Err(err) => {
                self.metrics.error(metrics::error_kind(&err));
                self.callbacks
                    .fire(CacheEvent::Error, key, Some(Tier::Redis), Some(&err));
                return Err(err);
            }
        };
        let entry = match pttl {
            Some(ms) if ms >= 0 || ms == -1 => {
                let ttl = u64::try_from(ms).ok().map(Duration::from_millis);
                let ttl = match (ttl, self.settings.l1_ttl) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.l1.fill(key, plain.clone(), ttl, epoch).map(|(entry, evicted)| {
                    self.evicted(evicted);
                    entry
                })
            }
            _ => None,
        };
        self.count_get(true, key, Tier::Redis);
        Ok(Some((plain, entry)))
    }

    /// A get while Redis is down: memory may still hold the value.
    fn redis_down(&self, key: &str) -> Option<RedisHit> {
        match (!self.settings.enable_l1).then(|| self.l1.get(key)).flatten() {
            Some(entry) => {
                self.metrics.l1_hit();
                self.callbacks.fire(CacheEvent::GetHit, key, Some(Tier::L1), None);
                Some((entry.bytes.clone(), Some(entry)))
            }
            None => {
                self.count_get(false, key, Tier::L1);
                None
            }
        }
    }

    /// Called by the probe when Redis answers again: replays queued writes,
    /// installs the new connections, clears L1 and closes the breaker.
    async fn recover(&self, conns: Vec<RedisConnection>) -> bool {
        let backend = Arc::new(Backend {
            conns,
            next: AtomicUsize::new(0),
        });
        let mut conn = backend.conn();
        loop {
            let ops = self.pending.take();
            if !ops.is_empty() {
                let mut pipe = redis::pipe();
                for (full_key, op) in &ops {
                    match op {
                        PendingOp::Set { sealed, expires } => match PendingOp::remaining(*expires) {
                            Some(Some(ttl)) => {
                                pipe.cmd("SET")
                                    .arg(full_key)
                                    .arg(sealed.as_slice())
                                    .arg("PX")
                                    .arg(ttl_millis(ttl))
                                    .ignore();
                            }
                            Some(None) => {
                                pipe.cmd("SET").arg(full_key).arg(sealed.as_slice()).ignore();
                            }
                            None => {
                                pipe.cmd("UNLINK").arg(full_key).ignore();
                            }
                        },
                        PendingOp::Remove => {
                            pipe.cmd("UNLINK").arg(full_key).ignore();
                        }
                    }
                    self.publish(&mut pipe, full_key);
                }
                let sent =
                    tokio::time::timeout(self.redis_config.response_timeout(), pipe.query_async::<()>(&mut conn));
                match sent.await {
                    Ok(Ok(())) => {
                        self.metrics.replayed.fetch_add(ops.len() as u64, Relaxed);
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "replaying writes after an outage failed; will retry");
                        self.pending.restore(ops);
                        return false;
                    }
                    Err(_) => {
                        self.pending.restore(ops);
                        return false;
                    }
                }
            }
            let ops = self.pending.lock();
            if ops.is_empty() {
                self.backend.store(Some(backend));
                self.l1.clear();
                Metrics::bump(&self.metrics.l1_clears, "memorix_l1_clears_total");
                self.probing.store(false, Relaxed);
                self.breaker.close();
                drop(ops);
                Metrics::bump(&self.metrics.recoveries, "memorix_recoveries_total");
                tracing::info!(redis = %self.redis_config, "Redis reachable again; two-tier mode restored");
                return true;
            }
        }
    }

    fn coherence_live(&self, live: bool) {
        self.coherent.store(live, Relaxed);
    }

    /// The subscription came back: invalidations may have been missed.
    fn on_resubscribed(&self) {
        if self.breaker.is_closed() {
            self.l1.clear();
            Metrics::bump(&self.metrics.l1_clears, "memorix_l1_clears_total");
        }
    }

    fn on_invalidation(&self, payload: &str) {
        match invalidation::parse(payload, &self.instance_id) {
            Some(invalidation::Message::Key(full_key)) => {
                Metrics::bump(
                    &self.metrics.invalidations_received,
                    "memorix_invalidations_received_total",
                );
                let prefix = self.prefix.get();
                if let Some(key) = full_key.strip_prefix(prefix.as_str()) {
                    self.l1.invalidate(key);
                }
            }
            Some(invalidation::Message::Purge(_)) => {
                Metrics::bump(
                    &self.metrics.invalidations_received,
                    "memorix_invalidations_received_total",
                );
                self.l1.clear();
                Metrics::bump(&self.metrics.l1_clears, "memorix_l1_clears_total");
            }
            None => {}
        }
    }

    /// Moves hit / miss totals into the [`CacheStats`] the trait exposes.
    fn flush_stats(&self) {
        let (hits, misses) = self.metrics.totals();
        let mut flushed = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        let (dh, dm) = (hits.saturating_sub(flushed.0), misses.saturating_sub(flushed.1));
        if dh > 0 || dm > 0 {
            self.stats.record_batch(dh, dm);
        }
        *flushed = (hits.max(flushed.0), misses.max(flushed.1));
    }
}

#[async_trait]
impl Cache for GenericRedisCache {
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let inner = &*self.inner;
        let key = inner.user_key(key);
        let span = spans::get(inner, &key);
        span.run(async {
            if let Some(entry) = inner.l1_lookup(&key)? {
                span.found(Some(Tier::L1));
                return Ok(Some(entry.bytes.to_vec()));
            }
            Ok(inner.redis_get(&key, &span).await?.map(|(bytes, _)| bytes.to_vec()))
        })
        .await
    }

    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let inner = &*self.inner;
        let key = inner.user_key(key);
        let span = spans::set(inner, &key);
        span.run(async {
            inner.check_open()?;
            let started = Instant::now();
            let ttl = effective_ttl(ttl, Some(inner.settings.default_ttl))?;
            let sealed = inner.pipeline.seal(value)?.into_owned();
            let full = inner.prefix.apply(&key);
            Metrics::bump(&inner.metrics.sets, "memorix_sets_total");
            let mut pipe = redis::pipe();
            let set = pipe.cmd("SET").arg(&full).arg(sealed.as_slice());
            if let Some(ttl) = ttl {
                set.arg("PX").arg(ttl_millis(ttl));
            }
            set.ignore();
            inner.publish(&mut pipe, &full);
            let outcome = inner.exec::<()>(Req::Many(&pipe), &key, true).await;
            let bytes: Arc<[u8]> = Arc::from(value);
            let result = match outcome {
                Ok(Ok(())) => {
                    span.landed(Tier::Redis);
                    if inner.settings.coherence {
                        Metrics::bump(&inner.metrics.invalidations_sent, "memorix_invalidations_sent_total");
                    }
                    if inner.settings.enable_l1 {
                        inner.l1_put(&key, bytes, ttl);
                    } else {
                        inner.l1.remove(&key);
                    }
                    Ok(())
                }
                Ok(Err(_)) => {
                    span.landed(Tier::L1);
                    Metrics::bump(&inner.metrics.redis_set_failures, "memorix_redis_set_failures_total");
                    inner.l1_put(&key, bytes, ttl);
                    let expires = ttl.and_then(|t| Instant::now().checked_add(t));
                    inner.defer(full, PendingOp::Set { sealed, expires });
                    Ok(())
                }
                Err(err) => {
                    // The server refused the write (ACL, wrong type, ...): the
                    // caller gets the error, and L1 must not serve a value Redis
                    // never accepted.
                    Metrics::bump(&inner.metrics.redis_set_failures, "memorix_redis_set_failures_total");
                    inner.l1.bump();
                    inner.l1.remove(&key);
                    Err(err)
                }
            };
            if result.is_ok() {
                inner.callbacks.fire(CacheEvent::Set, &key, None, None);
            }
            inner.finish(Op::Set, started);
            result
        })
        .await
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let inner = &*self.inner;
        let span = spans::get_many(inner, keys.len());
        let out = span
            .run(async {
                let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
                let mut missing: Vec<(usize, Cow<'_, str>)> = Vec::new();
                for (i, key) in keys.iter().enumerate() {
                    let key = inner.user_key(key);
                    match inner.l1_lookup(&key)? {
                        Some(entry) => out.push(Some(entry.bytes.to_vec())),
                        None => {
                            out.push(None);
                            missing.push((i, key));
                        }
                    }
                }
                if missing.is_empty() {
                    return Ok(out);
                }
                // Every L1 miss in one round trip: GET (+ PTTL to bound the L1 fill).
                let started = Instant::now();
                let fill = inner.settings.enable_l1;
                let epoch = inner.l1.epoch();
                let mut pipe = redis::pipe();
                for (_, key) in &missing {
                    let full = inner.prefix.apply(key);
                    pipe.cmd("GET").arg(&full);
                    if fill {
                        pipe.cmd("PTTL").arg(&full);
                    }
                }
                let answer = inner.exec::<Vec<redis::Value>>(Req::Many(&pipe), "*", false).await?;
                let mut values = match answer {
                    Ok(values) => values.into_iter(),
                    Err(_) => {
                        for (i, key) in &missing {
                            out[*i] = inner.redis_down(key).map(|(bytes, _)| bytes.to_vec());
                        }
                        inner.finish(Op::Get, started);
                        return Ok(out);
                    }
                };
                let parse_err = |e: redis::ParsingError| CacheError::Redis(e.into());
                for (i, key) in &missing {
                    let stored = values
                        .next()
                        .map(Option::<Vec<u8>>::from_redis_value)
                        .transpose()
                        .map_err(parse_err)?;
                    let pttl = if fill {
                        values
                            .next()
                            .map(i64::from_redis_value)
                            .transpose()
                            .map_err(parse_err)?
                    } else {
                        None
                    };
                    out[*i] = inner
                        .redis_answer(key, stored.flatten(), pttl, epoch)?
                        .map(|(bytes, _)| bytes.to_vec());
                }
                inner.finish(Op::Get, started);
                Ok(out)
            })
            .await?;
        span.hits(&out);
        Ok(out)
    }

    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        let span = spans::set_many(&self.inner, entries.len());
        span.run(async {
            effective_ttl(ttl, Some(self.inner.settings.default_ttl))?;
            for (key, value) in entries {
                self.set_bytes(key, value, ttl).await?;
            }
            Ok(())
        })
        .await
    }

    async fn has(&self, key: &str) -> Result<bool> {
        let inner = &*self.inner;
        let key = inner.user_key(key);
        let span = spans::has(inner, &key);
        span.run(async {
            inner.check_open()?;
            let started = Instant::now();
            let mut exists = redis::cmd("EXISTS");
            exists.arg(inner.prefix.apply(&key));
            let found = match inner.exec::<u64>(Req::One(&exists), &key, false).await? {
                Ok(n) => n > 0,
                Err(_) => inner.l1.get(&key).is_some(),
            };
            span.hit(found);
            inner.finish(Op::Exists, started);
            Ok(found)
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        let inner = &*self.inner;
        let key = inner.user_key(key);
        let span = spans::remove(inner, &key);
        span.run(async {
            inner.check_open()?;
            let started = Instant::now();
            let full = inner.prefix.apply(&key);
            inner.l1.bump();
            let in_l1 = inner.l1.remove(&key);
            Metrics::bump(&inner.metrics.deletes, "memorix_deletes_total");
            let mut pipe = redis::pipe();
            pipe.cmd("UNLINK").arg(&full);
            inner.publish(&mut pipe, &full);
            let existed = match inner.exec::<(u64,)>(Req::Many(&pipe), &key, true).await? {
                Ok((n,)) => {
                    if inner.settings.coherence {
                        Metrics::bump(&inner.metrics.invalidations_sent, "memorix_invalidations_sent_total");
                    }
                    n > 0
                }
                Err(_) => {
                    inner.defer(full, PendingOp::Remove);
                    in_l1
                }
            };
            span.hit(existed);
            inner.callbacks.fire(CacheEvent::Delete, &key, None, None);
            inner.finish(Op::Delete, started);
            Ok(existed)
        })
        .await
    }

    async fn purge(&self) -> Result<()> {
        let inner = &*self.inner;
        let span = spans::purge(inner);
        span.run(async {
            inner.check_open()?;
            inner.l1.clear();
            Metrics::bump(&inner.metrics.l1_clears, "memorix_l1_clears_total");
            let pattern = inner.prefix.scan_pattern();
            let mut cursor: u64 = 0;
            loop {
                let mut pipe = redis::pipe();
                pipe.cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(PURGE_BATCH);
                let ((next, keys),): ((u64, Vec<Vec<u8>>),) = inner
                    .exec(Req::Many(&pipe), "*", false)
                    .await?
                    .map_err(|_| CacheError::Connection("Redis is unavailable; purge needs it".into()))?;
                if !keys.is_empty() {
                    let mut unlink = redis::pipe();
                    unlink.cmd("UNLINK").arg(keys).ignore();
                    inner
                        .exec::<()>(Req::Many(&unlink), "*", false)
                        .await?
                        .map_err(|_| CacheError::Connection("Redis is unavailable; purge needs it".into()))?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            if inner.settings.coherence {
                let mut pipe = redis::pipe();
                pipe.cmd("PUBLISH")
                    .arg(&inner.channel)
                    .arg(invalidation::purge_message(&inner.instance_id, &inner.prefix.get()))
                    .ignore();
                let _ = inner.exec::<()>(Req::Many(&pipe), "*", false).await?;
            }
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Relaxed);
        if let Some(task) = &self.subscriber {
            task.abort();
        }
        self.inner.backend.store(None);
        self.inner.l1.clear();
        Ok(())
    }

    fn prefix(&self) -> String {
        self.inner.prefix.get()
    }

    fn set_prefix(&self, prefix: &str) {
        self.inner.prefix.set(prefix);
        self.inner.l1.clear();
    }

    fn codec(&self) -> &dyn Codec {
        self.inner.codec.as_ref()
    }

    fn stats(&self) -> &CacheStats {
        self.inner.flush_stats();
        &self.inner.stats
    }

    fn corrupt_entry_policy(&self) -> CorruptEntryPolicy {
        self.inner.settings.on_corrupt
    }

    /// A connection to Redis for anything else redis-rs can do; `None` while
    /// Redis is unavailable.
    fn redis_connection(&self) -> Option<RedisConnection> {
        self.inner.backend.load().as_ref().map(|b| b.conn())
    }
}
