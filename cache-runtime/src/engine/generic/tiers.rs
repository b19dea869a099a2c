//! The read path through the two tiers, and L1 fills.
//!
//! An L1 lookup (the hot path, so kept `#[inline]`), the Redis tier of
//! a get (`GET` + `PTTL` in one round trip, so an L1 fill never outlives the
//! Redis TTL), what a get falls back to while Redis is down, decoding with
//! the corrupt-entry policy, and storing into L1 after a write.

use super::backend::{Req, Unavailable};
use super::spans::OpSpan;
use super::{CacheEvent, Inner, Tier};
use crate::cache::CorruptEntryPolicy;
use crate::codec;
use crate::envelope;
use crate::error::Result;
use crate::l1::Entry;
use crate::metrics::{self, Op};
use serde::de::DeserializeOwned;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the Redis tier of a get found: the codec bytes, and the L1 entry
/// when the read filled one.
pub(super) type RedisHit = (Arc<[u8]>, Option<Arc<Entry>>);

impl Inner {
    /// L1 answers before Redis is asked: when enabled, except in a
    /// subscription gap. Between losing the invalidation subscription and
    /// regaining it, invalidations go missing, so reads go to Redis (L1
    /// answers only if Redis does not); the entries filled before the gap are
    /// dropped when the subscription comes back.
    #[inline]
    fn l1_first(&self) -> bool {
        self.settings.enable_l1 && !self.in_gap.load(Relaxed)
    }

    /// L1 serves reads when trusted, and always while Redis is unavailable.
    #[inline]
    fn l1_active(&self) -> bool {
        self.l1_first() || !self.breaker.is_closed()
    }

    #[inline]
    pub(super) fn l1_lookup(&self, key: &str) -> Result<Option<Arc<Entry>>> {
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

    pub(super) fn decode_entry<T>(&self, entry: &Entry) -> Result<Option<T>>
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

    pub(super) fn apply_policy<T>(&self, decoded: Result<Option<T>>) -> Result<Option<T>> {
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

    /// Stores codec bytes in L1 for at most `ttl` (and the L1 TTL cap).
    pub(super) fn l1_put(&self, key: &str, bytes: Arc<[u8]>, ttl: Option<Duration>) {
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
        self.metrics.l1_evictions.add(keys.len() as u64);
        for key in &keys {
            self.callbacks.fire(CacheEvent::Eviction, key, Some(Tier::L1), None);
        }
    }

    fn count_get(&self, hit: bool, key: &str, tier: Tier) {
        if hit {
            self.callbacks.fire(CacheEvent::GetHit, key, Some(tier), None);
        } else {
            self.metrics.misses.bump();
            self.callbacks.fire(CacheEvent::GetMiss, key, None, None);
        }
    }

    /// The Redis tier of a get (after an L1 miss). Returns the codec bytes,
    /// and the L1 entry when it was filled.
    pub(super) async fn redis_get(&self, key: &str, span: &OpSpan) -> Result<Option<RedisHit>> {
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
    pub(super) fn redis_answer(
        &self,
        key: &str,
        stored: Option<Vec<u8>>,
        pttl: Option<i64>,
        epoch: u64,
    ) -> Result<Option<RedisHit>> {
        // A tombstone is a removal that Redis keeps for the replay order.
        let stored = stored.filter(|bytes| !envelope::is_tombstone(bytes));
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
    pub(super) fn redis_down(&self, key: &str) -> Option<RedisHit> {
        match (!self.l1_first()).then(|| self.l1.get(key)).flatten() {
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
}
