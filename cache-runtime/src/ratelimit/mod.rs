//! Rate limiting on Redis (GCRA, fixed and sliding window) and in process.
//!
//! A [`RateLimiter`] answers "may this subject make this request now?" with a
//! [`Decision`]: allowed, limit, remaining, `retry_after`, `reset_after`.
//!
//! # Exact under load
//! On Redis every decision is **one Lua script**, run atomically by the server
//! (`EVALSHA`, falling back to `EVAL` after a restart), reading the **server's
//! clock** (`TIME`) and never the client's. There is no read-compare-write
//! window between instances, so 400 concurrent attempts against a limit of 100
//! let exactly 100 through, and clock skew between service instances does not
//! matter. Each decision touches **one key** (`prefix + subject`), so the
//! limiter works on Redis Cluster.
//!
//! # Algorithms
//! - [`Algorithm::Gcra`] (default): the generic cell rate algorithm. One string
//!   key per subject holding a timestamp: O(1) memory. `burst` requests may
//!   arrive at once, then one per `period / count`. The key expires when the
//!   subject is back to full burst.
//! - [`Algorithm::FixedWindow`]: the classic counter, done atomically: `INCRBY`
//!   and `PEXPIRE` in one script. The window starts with the subject's first
//!   request; its key expires with the window. Cheap, but allows up to twice the
//!   limit across a window boundary.
//! - [`Algorithm::SlidingWindow`]: a sliding window **log** (a sorted set with
//!   one member per request, scored by server time). Chosen over the sliding
//!   window *counter* because the counter interpolates between two windows and
//!   can let more than `limit` requests into some window; the log is exact: never
//!   more than `limit` in any window of `period`. It costs O(limit) memory per
//!   subject, so for large limits prefer GCRA.
//!
//! # Stores
//! [`Store::redis`] (shared by every instance), [`Store::memory`] (in process,
//! the [`governor`](https://docs.rs/governor) crate's GCRA, whatever the
//! algorithm) or [`Store::null`] (allows everything). When Redis is unreachable
//! the limiter follows [`OnUnavailable`] (allow, deny, or return the error) and
//! counts it in [`RateLimiter::stats`].
//!
//! While Redis says a subject is exhausted, the limiter remembers it locally and
//! denies further requests of that subject **without a round trip** until the
//! `retry_after` it was given has passed ([`RateLimiterBuilder::local_fast_path`]).
//!
//! ```no_run
//! use memorix_runtime::ratelimit::{Algorithm, Rate, RateLimiter, Store};
//! use memorix_runtime::RedisConfig;
//!
//! # async fn demo() -> memorix_runtime::Result<()> {
//! let store = Store::connect(&RedisConfig::from_url("redis://127.0.0.1:6379")?).await?;
//! let limiter = RateLimiter::builder(Rate::parse("100/m")?)
//!     .burst(10)
//!     .algorithm(Algorithm::Gcra)
//!     .prefix("myapp:rl:login:")
//!     .store(store)
//!     .build()?;
//! let decision = limiter.check("user:42").await?;
//! if !decision.allowed {
//!     println!("retry in {:?}", decision.retry_after);
//! }
//! # Ok(()) }
//! ```
//!
//! # `#[rate_limit]` and the default store
//! Functions annotated with `#[rate_limit(...)]` build their limiter on first
//! call from the store registered with [`set_default_store`], or a store named
//! with `store = "name"` and registered with [`register_store`]. Register it at
//! startup, before the first call. Without one they limit in process (a warning
//! is logged once).

mod decision;
mod local;
mod rate;
pub(crate) mod registry;
mod scripts;
mod stats;
#[cfg(feature = "tower")]
mod tower;

pub use self::decision::{Decision, RateLimited};
pub use self::rate::Rate;
pub use self::registry::{register_store, set_default_store};
pub use self::stats::{RateLimiterSnapshot, RateLimiterStats};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::tower::{
    KeyExtractor, RateLimitLayer, RateLimitService, ANONYMOUS_SUBJECT, RATELIMIT_LIMIT, RATELIMIT_REMAINING,
    RATELIMIT_RESET,
};

use self::local::{ExhaustedSubjects, LocalLimiter};
use self::scripts::ScriptParams;
use crate::connection::{RedisConfig, RedisConnection};
use crate::engine::RedisCache;
use crate::error::{CacheError, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The prefix of limiter keys unless [`RateLimiterBuilder::prefix`] sets one.
pub const DEFAULT_PREFIX: &str = "memorix:rl:";

/// Which algorithm decides. See the [module docs](self) for the trade-offs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Generic cell rate algorithm: rate plus burst, O(1) memory (the default).
    #[default]
    Gcra,
    /// A counter per window that starts at the subject's first request.
    FixedWindow,
    /// A sliding window log: exact over any window, O(limit) memory.
    SlidingWindow,
}

impl FromStr for Algorithm {
    type Err = CacheError;

    /// `gcra`, `fixed_window` or `sliding_window` (`-` works for `_`).
    fn from_str(text: &str) -> Result<Self> {
        match text.replace('-', "_").as_str() {
            "gcra" => Ok(Algorithm::Gcra),
            "fixed_window" => Ok(Algorithm::FixedWindow),
            "sliding_window" => Ok(Algorithm::SlidingWindow),
            _ => Err(CacheError::config(
                "algorithm",
                format!("`{text}` is unknown; expected one of: gcra, fixed_window, sliding_window"),
            )),
        }
    }
}

/// What a Redis-backed limiter does when Redis cannot be reached (connection
/// refused or broken, timeout, closed). Every such event is counted in
/// [`RateLimiterStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnUnavailable {
    /// Fail open: allow the request (the default), so an outage of Redis does
    /// not become an outage of the service.
    #[default]
    Allow,
    /// Fail closed: deny the request, with `retry_after` set by
    /// [`RateLimiterBuilder::unavailable_retry_after`].
    Deny,
    /// Return the [`CacheError`] to the caller.
    Error,
}

/// Where a limiter keeps its state. Cheap to clone.
#[derive(Clone)]
pub struct Store(StoreKind);

#[derive(Clone)]
enum StoreKind {
    Redis {
        conns: Arc<[RedisConnection]>,
        next: Arc<AtomicUsize>,
    },
    Memory,
    Null,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            StoreKind::Redis { conns, .. } => write!(f, "Store::Redis({} connections)", conns.len()),
            StoreKind::Memory => f.write_str("Store::Memory"),
            StoreKind::Null => f.write_str("Store::Null"),
        }
    }
}

impl Store {
    /// Redis, over a connection you have (e.g. `RedisCache::client()?`).
    pub fn redis(conn: impl Into<RedisConnection>) -> Self {
        Store(StoreKind::Redis {
            conns: Arc::from(vec![conn.into()]),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Redis, spreading decisions over several connections in turn.
    pub fn redis_pool(conns: Vec<RedisConnection>) -> Result<Self> {
        if conns.is_empty() {
            return Err(CacheError::config("connections", "at least one connection is needed"));
        }
        Ok(Store(StoreKind::Redis {
            conns: Arc::from(conns),
            next: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// Redis, sharing a [`RedisCache`]'s connection.
    pub fn from_cache(cache: &RedisCache) -> Result<Self> {
        Ok(Self::redis(cache.client()?))
    }

    /// Redis: opens `config.max_connections()` self-healing connections.
    ///
    /// Redis being down at start is not an error: the store starts degraded,
    /// limiters answer their [`OnUnavailable`] policy at once while it
    /// connects in the background, and Redis decides again as soon as it
    /// answers. With [`RedisConfig::fail_on_connection_error`] set, the
    /// connection error is returned instead (a strict start).
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let (_client, conns) = crate::connection::open(config).await?;
        Self::redis_pool(conns)
    }

    /// In process: each instance limits on its own (tests, single-instance
    /// services, or a memory-mode cache).
    pub fn memory() -> Self {
        Store(StoreKind::Memory)
    }

    /// No limiting: every request is allowed (null mode).
    pub fn null() -> Self {
        Store(StoreKind::Null)
    }
}

/// Builds a [`RateLimiter`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RateLimiterBuilder {
    rate: Rate,
    burst: Option<u32>,
    algorithm: Algorithm,
    prefix: String,
    store: Store,
    on_unavailable: OnUnavailable,
    unavailable_retry_after: Duration,
    local_fast_path: bool,
}

impl RateLimiterBuilder {
    /// For GCRA: how many requests may arrive at once (default: the rate's
    /// count). Window algorithms take their limit from the rate and reject a burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The algorithm (default: [`Algorithm::Gcra`]).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Prefix of every key (default: [`DEFAULT_PREFIX`]). Give each limiter its
    /// own: two limiters with different rates or algorithms must not share keys.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Where the state lives (default: [`Store::memory`]).
    pub fn store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// Shorthand for `.store(Store::redis(conn))`.
    pub fn redis(self, conn: impl Into<RedisConnection>) -> Self {
        self.store(Store::redis(conn))
    }

    /// Shorthand for `.store(Store::memory())`.
    pub fn memory(self) -> Self {
        self.store(Store::memory())
    }

    /// Shorthand for `.store(Store::null())`.
    pub fn null(self) -> Self {
        self.store(Store::null())
    }

    /// What to do when Redis is unreachable (default: [`OnUnavailable::Allow`]).
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.on_unavailable = policy;
        self
    }

    /// The `retry_after` of a fail-closed denial (default: 1 s).
    pub fn unavailable_retry_after(mut self, retry_after: Duration) -> Self {
        self.unavailable_retry_after = retry_after;
        self
    }

    /// Deny locally, without a round trip, while Redis has said a subject is
    /// exhausted (default: on). Turn it off when other processes may `reset`
    /// subjects and that must take effect at once.
    pub fn local_fast_path(mut self, enabled: bool) -> Self {
        self.local_fast_path = enabled;
        self
    }

    /// Validates the settings and builds the limiter.
    pub fn build(self) -> Result<RateLimiter> {
        let limit = match (self.algorithm, self.burst) {
            (Algorithm::Gcra, Some(0)) => return Err(CacheError::config("burst", "must be at least 1")),
            (Algorithm::Gcra, Some(burst)) => burst,
            (Algorithm::Gcra, None) => self.rate.count(),
            (_, Some(_)) => {
                return Err(CacheError::config(
                    "burst",
                    "applies only to the GCRA algorithm; window algorithms allow `count` per window",
                ))
            }
            (_, None) => self.rate.count(),
        };
        let backend = match self.store.0 {
            StoreKind::Redis { conns, next } => Backend::Redis {
                conns,
                next,
                params: script_params(self.algorithm, self.rate, limit),
            },
            StoreKind::Memory => Backend::Memory(LocalLimiter::new(self.rate, limit)?),
            StoreKind::Null => Backend::Null,
        };
        let fast_path = (self.local_fast_path && matches!(backend, Backend::Redis { .. })).then(ExhaustedSubjects::new);
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                rate: self.rate,
                limit,
                algorithm: self.algorithm,
                prefix: self.prefix,
                backend,
                on_unavailable: self.on_unavailable,
                unavailable_retry_after: self.unavailable_retry_after,
                fast_path,
                stats: RateLimiterStats::default(),
            }),
        })
    }
}

fn script_params(algorithm: Algorithm, rate: Rate, limit: u32) -> ScriptParams {
    let period = rate.period();
    let (first, second) = match algorithm {
        Algorithm::Gcra => (rate.interval_micros(), u64::from(limit)),
        Algorithm::FixedWindow => (f64::from(limit), u64::try_from(period.as_millis()).unwrap_or(u64::MAX)),
        Algorithm::SlidingWindow => (f64::from(limit), u64::try_from(period.as_micros()).unwrap_or(u64::MAX)),
    };
    ScriptParams {
        algorithm,
        first,
        second,
    }
}

/// A rate limiter. Cheap to clone: clones share state and counters.
///
/// Subjects are strings (a user id, an API key, an IP); the Redis key is
/// `prefix + subject`.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    rate: Rate,
    limit: u32,
    algorithm: Algorithm,
    prefix: String,
    backend: Backend,
    on_unavailable: OnUnavailable,
    unavailable_retry_after: Duration,
    fast_path: Option<ExhaustedSubjects>,
    stats: RateLimiterStats,
}

enum Backend {
    Redis {
        conns: Arc<[RedisConnection]>,
        next: Arc<AtomicUsize>,
        params: ScriptParams,
    },
    Memory(LocalLimiter),
    Null,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = match &self.inner.backend {
            Backend::Redis { .. } => "redis",
            Backend::Memory(_) => "memory",
            Backend::Null => "null",
        };
        f.debug_struct("RateLimiter")
            .field("rate", &self.inner.rate)
            .field("limit", &self.inner.limit)
            .field("algorithm", &self.inner.algorithm)
            .field("prefix", &self.inner.prefix)
            .field("store", &store)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A builder for `rate`, with GCRA, burst = count, in-process store.
    pub fn builder(rate: Rate) -> RateLimiterBuilder {
        RateLimiterBuilder {
            rate,
            burst: None,
            algorithm: Algorithm::default(),
            prefix: DEFAULT_PREFIX.to_owned(),
            store: Store::memory(),
            on_unavailable: OnUnavailable::default(),
            unavailable_retry_after: Duration::from_secs(1),
            local_fast_path: true,
        }
    }

    /// Checks and records one request of `subject`.
    pub async fn check(&self, subject: &str) -> Result<Decision> {
        self.decide(subject, 1, true).await
    }

    /// Checks and records `n` requests (or `n` units of cost) at once: all or
    /// nothing. `n` larger than the limit can never pass and is an error.
    pub async fn check_n(&self, subject: &str, n: u32) -> Result<Decision> {
        self.decide(subject, n, true).await
    }

    /// What [`check`](Self::check) would answer now, without recording
    /// anything. `remaining` is the subject's current allowance.
    ///
    /// Needs a Redis (or null) store: governor, behind the memory store, cannot
    /// look without consuming, so the memory store answers a `Config` error.
    pub async fn peek(&self, subject: &str) -> Result<Decision> {
        self.decide(subject, 1, false).await
    }

    /// Forgets `subject`: it starts again with its full allowance.
    pub async fn reset(&self, subject: &str) -> Result<()> {
        let key = self.key(subject);
        if let Some(fast) = &self.inner.fast_path {
            fast.forget(&key);
        }
        match &self.inner.backend {
            Backend::Redis { conns, next, .. } => {
                let mut conn = pick(conns, next);
                redis::cmd("UNLINK").arg(&key).exec_async(&mut conn).await?;
                Ok(())
            }
            Backend::Memory(local) => {
                local.reset(&key);
                Ok(())
            }
            Backend::Null => Ok(()),
        }
    }

    /// The Redis key of `subject`: `prefix + subject`.
    pub fn key(&self, subject: &str) -> String {
        let mut key = String::with_capacity(self.inner.prefix.len() + subject.len());
        key.push_str(&self.inner.prefix);
        key.push_str(subject);
        key
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// The limit a [`Decision`] reports: the GCRA burst, or the count per window.
    pub fn limit(&self) -> u64 {
        u64::from(self.inner.limit)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// Allowed, denied and unavailability counters.
    pub fn stats(&self) -> &RateLimiterStats {
        &self.inner.stats
    }

    async fn decide(&self, subject: &str, n: u32, commit: bool) -> Result<Decision> {
        let inner = &*self.inner;
        let limit = u64::from(inner.limit);
        if u64::from(n) > limit {
            return Err(CacheError::config(
                "n",
                format!("asks for {n} requests at once, more than the limit of {limit}: it could never pass"),
            ));
        }
        let decision = match &inner.backend {
            Backend::Null => Decision::allow_all(limit),
            Backend::Memory(local) => {
                if !commit {
                    return Err(CacheError::config(
                        "store",
                        "peek needs the Redis store: the in-process (governor) limiter cannot look without consuming",
                    ));
                }
                local.check_n(&self.key(subject), n)
            }
            Backend::Redis { conns, next, params } => {
                let key = self.key(subject);
                if let Some(denied) = inner.fast_path.as_ref().and_then(|f| f.get(&key, n, limit)) {
                    inner.stats.record_local_denial();
                    return Ok(denied);
                }
                let mut conn = pick(conns, next);
                match scripts::run(&mut conn, *params, &key, n, commit).await {
                    Ok(decision) => {
                        if let Some(fast) = &inner.fast_path {
                            fast.record(&key, n, &decision);
                        }
                        decision
                    }
                    Err(err) => return self.unavailable(err),
                }
            }
        };
        if commit {
            inner.stats.record(decision.allowed);
        }
        Ok(decision)
    }

    fn unavailable(&self, err: CacheError) -> Result<Decision> {
        let inner = &*self.inner;
        let unreachable = matches!(
            err,
            CacheError::Connection(_) | CacheError::Timeout | CacheError::Closed
        );
        if !unreachable || inner.on_unavailable == OnUnavailable::Error {
            inner.stats.record_error();
            return Err(err);
        }
        tracing::warn!(error = %err, policy = ?inner.on_unavailable, "rate limiter: redis unavailable");
        let limit = u64::from(inner.limit);
        match inner.on_unavailable {
            OnUnavailable::Deny => {
                inner.stats.record_unavailable(false);
                Ok(Decision::deny_for(limit, inner.unavailable_retry_after))
            }
            _ => {
                inner.stats.record_unavailable(true);
                Ok(Decision::allow_all(limit))
            }
        }
    }
}

/// The next connection of the pool, in turn. Pools are never empty.
fn pick(conns: &[RedisConnection], next: &AtomicUsize) -> RedisConnection {
    conns[next.fetch_add(1, Relaxed) % conns.len()].clone()
}
