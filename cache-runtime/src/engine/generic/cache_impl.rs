//! `impl Cache for GenericRedisCache`: the byte API every engine shares
//! (get / set / has / remove, the batch forms, purge, close). Gets ask L1
//! first; every Redis call goes through `Inner::exec`. What each operation
//! does while Redis is down is summed up in the module docs of `mod.rs`.

use super::backend::Req;
use super::breaker::PendingOp;
use super::{invalidation, spans};
use super::{CacheEvent, GenericRedisCache, Tier};
use crate::cache::{Cache, CorruptEntryPolicy};
use crate::codec::Codec;
use crate::connection::RedisConnection;
use crate::error::{CacheError, Result};
use crate::keys::{effective_ttl, ttl_millis};
use crate::metrics::{Metrics, Op};
use crate::stats::CacheStats;
use async_trait::async_trait;
use redis::FromRedisValue;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many keys one SCAN step asks for during `purge`.
const PURGE_BATCH: usize = 500;

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
                    inner.defer(full, PendingOp::Set { sealed, expires }).await;
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
                    inner.defer(full, PendingOp::Remove).await;
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
