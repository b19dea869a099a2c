//! The inherent API of [`GenericRedisCache`]: construction, the typed `get`
//! that keeps decoded values in L1, per-operation TTLs, monitoring,
//! callbacks, availability and security reports. The byte API every engine
//! shares (`impl Cache`) is in `cache_impl.rs`.

use super::backend::Backend;
use super::callbacks::Callbacks;
use super::pending::Pending;
use super::{invalidation, security, spans};
use super::{
    CacheEvent, CallbackId, EventInfo, GenericRedisCache, GenericRedisCacheBuilder, Inner, SecurityStatus,
    SecurityValidation, Tier,
};
use crate::cache::Cache;
use crate::codec;
use crate::connection::health::Health;
use crate::connection::{self, RedisConfig};
use crate::envelope::Envelope;
use crate::error::{CacheError, Result};
use crate::keys::Prefix;
use crate::l1::L1;
use crate::metrics::{self, GenericStats, Metrics};
use crate::pipeline::Pipeline;
use crate::stats::CacheStats;
use arc_swap::ArcSwapOption;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let metrics = Metrics::new(&builder.prefix);
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
        let mut strict = redis_config.clone();
        strict.fail_on_connection_error = true;
        let opened = match tokio::time::timeout(
            redis_config.connect_timeout() * 2,
            connection::open_guarded(&strict, Health::passive()),
        )
        .await
        {
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
            breaker: Health::new(settings.breaker_threshold, settings.probe_interval, memory_only),
            pending: Pending::new(settings.max_pending),
            recovering: AtomicBool::new(false),
            recovered: tokio::sync::Notify::new(),
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
            in_gap: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            last_validation: Mutex::new(None),
            settings,
        });
        if memory_only {
            inner.spawn_probe();
        }
        #[cfg(feature = "metrics")]
        tokio::spawn(refresh_gauges(Arc::downgrade(&inner)));
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
            &self.inner.security_scope(),
        )
    }

    /// Connects and checks auth, TLS, the ACL user, anonymous access and the
    /// server version; the result also feeds [`Self::security_status`].
    pub async fn validate_security(&self) -> SecurityValidation {
        let result = security::validate(
            &self.inner.redis_config,
            self.inner.min_tls,
            &self.inner.security_scope(),
        )
        .await;
        *self.inner.last_validation.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        result
    }

    /// A readable security report; run [`Self::validate_security`] first to
    /// include the live checks.
    pub fn security_report(&self) -> String {
        security::report(
            &self.inner.redis_config,
            &self.security_status(),
            &self.inner.security_scope(),
        )
    }

    fn last_validation(&self) -> Option<SecurityValidation> {
        self.inner
            .last_validation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Keeps the exported L1 gauges current until the cache is dropped or closed.
#[cfg(feature = "metrics")]
async fn refresh_gauges(inner: std::sync::Weak<Inner>) {
    let mut every = tokio::time::interval(crate::metrics::GAUGE_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match inner.upgrade() {
            Some(inner) if !inner.closed.load(Relaxed) => {
                inner.metrics.l1_size(inner.l1.len(), inner.l1.bytes());
            }
            _ => return,
        }
    }
}
