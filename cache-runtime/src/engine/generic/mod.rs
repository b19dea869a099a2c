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
//! - delete: both tiers; Redis keeps a 60 s tombstone (read as a miss) so
//!   that a replay of an older write cannot bring the key back. exists: asks
//!   Redis, never a possibly stale L1 (L1 only answers while Redis is down).
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
//!
//! Layout: this file holds the two structs ([`GenericRedisCache`], the
//! handle, and `Inner`, the state it shares with its background tasks) and
//! the few `Inner` helpers every operation uses. The rest, one concern each:
//!
//! - `api.rs`: construction and the inherent (typed, monitoring, security) API;
//! - `cache_impl.rs`: `impl Cache`, the byte API shared by every engine;
//! - `tiers.rs`: the read path through L1 and Redis, and L1 fills;
//! - `backend.rs`: the Redis connections and `exec`, the one way a command
//!   reaches them (through the circuit breaker);
//! - `recovery.rs`: queuing writes during an outage, probing, and replay
//!   (compare-and-set on write stamps, so a replay never goes back in time);
//! - `pending.rs`: the bounded queue of writes kept for replay;
//! - `coherence.rs`: publishing and applying L1 invalidations;
//! - `probe.rs`, `invalidation.rs`, `callbacks.rs`, `config.rs`,
//!   `factory.rs`, `security.rs`, `spans.rs`: as their own docs say.

mod api;
mod backend;
mod cache_impl;
mod callbacks;
mod coherence;
mod config;
mod factory;
mod invalidation;
mod pending;
mod probe;
mod recovery;
mod security;
mod spans;
mod tiers;

pub use self::callbacks::{CacheEvent, Callback, CallbackId, EventInfo, Tier};
pub use self::config::GenericRedisCacheBuilder;
pub use self::factory::CacheFactory;
pub use self::security::{SecurityConfig, SecurityStatus, SecurityValidation, TlsVersion, SECURE_SCORE};

use self::backend::Backend;
use self::callbacks::Callbacks;
use self::config::Settings;
use self::pending::Pending;
use crate::codec::Codec;
use crate::connection::health::Health;
use crate::connection::RedisConfig;
use crate::error::{CacheError, Result};
use crate::keys::Prefix;
use crate::l1::L1;
use crate::metrics::{Metrics, Op};
use crate::pipeline::Pipeline;
use crate::stats::CacheStats;
use arc_swap::ArcSwapOption;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// The state shared by the cache handle and its background tasks.
pub(crate) struct Inner {
    me: Weak<Inner>,
    settings: Settings,
    pub(crate) redis_config: RedisConfig,
    min_tls: TlsVersion,
    backend: ArcSwapOption<Backend>,
    /// The shared circuit breaker (`connection::health`), in front of Redis.
    breaker: Health,
    pending: Pending,
    /// Set while a recovery replays the queue: writes wait for it instead
    /// of queuing (a queue that keeps growing would never drain).
    recovering: AtomicBool,
    /// Woken when a recovery ends.
    recovered: tokio::sync::Notify,
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
    /// The invalidation subscription was live and is lost (not yet back).
    in_gap: AtomicBool,
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
///
/// # Metrics (`metrics` feature)
///
/// Every counter behind [`GenericStats`](crate::GenericStats) is also exported through the
/// [`metrics`](https://docs.rs/metrics) facade, so any Prometheus or StatsD
/// exporter picks it up. Each event bumps the exported counter exactly when it
/// bumps the one `stats()` reads, so the two agree (until
/// `reset_stats()`, which zeroes `stats()` only: exported counters never go
/// back, as Prometheus requires). Every metric carries the label `cache`: the
/// prefix the cache was built with. The handles are registered when the cache
/// is built, so install the recorder (exporter) before building the cache.
///
/// | name | type | labels | `stats()` field |
/// | --- | --- | --- | --- |
/// | `memorix_hits_total` | counter | `cache`, `tier` (`l1`, `redis`) | `l1.hits`, `redis.hits` |
/// | `memorix_misses_total` | counter | `cache`, `tier` (`l1`, `redis`) | `l1.misses`, `redis.misses` |
/// | `memorix_gets_missed_total` | counter | `cache` | `misses` (gets that found nothing in any tier) |
/// | `memorix_sets_total` | counter | `cache` | `sets` |
/// | `memorix_deletes_total` | counter | `cache` | `deletes` |
/// | `memorix_redis_set_failures_total` | counter | `cache` | `redis_set_failures` |
/// | `memorix_slow_operations_total` | counter | `cache` | `slow_operations` |
/// | `memorix_errors_total` | counter | `cache`, `kind` | `errors` |
/// | `memorix_invalidations_sent_total` | counter | `cache` | `invalidations_sent` |
/// | `memorix_invalidations_received_total` | counter | `cache` | `invalidations_received` |
/// | `memorix_l1_clears_total` | counter | `cache` | `l1_clears` |
/// | `memorix_l1_evictions_total` | counter | `cache` | `l1_evictions` |
/// | `memorix_circuit_breaker_opens_total` | counter | `cache` | `circuit_breaker_opens` |
/// | `memorix_recoveries_total` | counter | `cache` | `recoveries` |
/// | `memorix_replayed_writes_total` | counter | `cache` | `replayed_writes` |
/// | `memorix_dropped_writes_total` | counter | `cache` | `dropped_writes` |
/// | `memorix_compressions_total` | counter | `cache` | `compression.compressions` |
/// | `memorix_compression_bytes_in_total` | counter | `cache` | `compression.bytes_in` |
/// | `memorix_compression_bytes_out_total` | counter | `cache` | `compression.bytes_out` |
/// | `memorix_operation_seconds` | histogram | `cache`, `op` (`get`, `set`, `delete`, `exists`) | `latency[op]` |
/// | `memorix_l1_entries` | gauge | `cache` | `l1_entries` |
/// | `memorix_l1_bytes` | gauge | `cache` | `l1_bytes` |
///
/// Gets served = hits (both tiers) + `memorix_gets_missed_total`.
///
/// `memorix_operation_seconds` is sampled on L1 hits: one L1 hit in
/// [`L1_SAMPLE_EVERY`](crate::L1_SAMPLE_EVERY) per thread is timed and recorded with that weight
/// (`record_many`), every Redis-tier operation is recorded once. Its count
/// therefore equals `stats().latency[op].count` and its quantiles are not
/// biased toward Redis, but it is an estimate of the number of operations:
/// count operations with the counters above, which are exact.
///
/// The gauges are refreshed every second and on every `stats()`
/// call (measuring L1's bytes walks its entries, too slow for every write).
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

// Kept beside the struct because every sibling module calls them: private
// items of this module are visible to all of its submodules.
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

    /// The config with a strict start: the engine opens its connections
    /// itself and needs to know when Redis is unreachable (it then runs
    /// memory-only and probes).
    fn strict_config(&self) -> RedisConfig {
        let mut config = self.redis_config.clone();
        config.fail_on_connection_error = true;
        config
    }

    fn finish(&self, op: Op, started: Instant) {
        let took = started.elapsed();
        self.metrics.latency(op, took, 1);
        if took > self.settings.slow_threshold {
            self.metrics.slow_ops.bump();
            tracing::warn!(
                op = op.name(),
                took_ms = took.as_secs_f64() * 1e3,
                "slow cache operation"
            );
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
