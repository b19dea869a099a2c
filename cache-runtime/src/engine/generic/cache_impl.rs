//! `impl Cache for GenericRedisCache`: the byte API every engine shares
//! (get / set / has / remove, the batch forms, purge, close). Gets ask L1
//! first; every Redis call goes through `Inner::exec`. What each operation
//! does while Redis is down is summed up in the module docs of `mod.rs`.

use super::backend::Req;
use super::pending::PendingOp;
use super::{invalidation, recovery, spans};
use super::{CacheEvent, GenericRedisCache, Tier};
use crate::cache::{Cache, CorruptEntryPolicy};
use crate::codec::Codec;
use crate::connection::{batch, RedisConnection};
use crate::envelope::{self, Header, HEADER_LEN, STAMP_LEN};
use crate::error::{CacheError, Result};
use crate::keys::{effective_ttl, ttl_millis};
use crate::metrics::Op;
use crate::stats::CacheStats;
use async_trait::async_trait;
use redis::FromRedisValue;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            inner.metrics.sets.bump();
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
                        inner.metrics.invalidations_sent.bump();
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
                    inner.metrics.redis_set_failures.bump();
                    inner.l1_put(&key, bytes, ttl);
                    let expires = ttl.and_then(|t| Instant::now().checked_add(t));
                    let stamp = Header::parse(&sealed)
                        .ok()
                        .and_then(|(header, _)| header.stamp())
                        .unwrap_or_else(envelope::write_stamp);
                    inner.defer(full, PendingOp::Set { sealed, expires, stamp }).await;
                    Ok(())
                }
                Err(err) => {
                    // The server refused the write (ACL, wrong type, ...): the
                    // caller gets the error, and L1 must not serve a value Redis
                    // never accepted.
                    inner.metrics.redis_set_failures.bump();
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
                // Single-key commands, so a cluster answers in one round trip per node.
                let mut cmds = Vec::with_capacity(missing.len() * 2);
                for (_, key) in &missing {
                    let full = inner.prefix.apply(key);
                    let mut get = redis::cmd("GET");
                    get.arg(&full);
                    if fill {
                        let mut pttl = redis::cmd("PTTL");
                        pttl.arg(&full);
                        cmds.push((full.clone(), get));
                        cmds.push((full, pttl));
                    } else {
                        cmds.push((full, get));
                    }
                }
                let answer = inner.exec::<Vec<redis::Value>>(Req::Keyed(&cmds), "*", false).await?;
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
                batch::first_error(values.as_slice())?;
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
        let inner = &*self.inner;
        let span = spans::set_many(inner, entries.len());
        span.run(async {
            inner.check_open()?;
            let ttl = effective_ttl(ttl, Some(inner.settings.default_ttl))?;
            let started = Instant::now();
            let mut cmds = Vec::with_capacity(entries.len());
            let mut sealed = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key = inner.user_key(key);
                let full = inner.prefix.apply(&key);
                let bytes = inner.pipeline.seal(value)?.into_owned();
                let mut set = redis::cmd("SET");
                set.arg(&full).arg(bytes.as_slice());
                if let Some(ttl) = ttl {
                    set.arg("PX").arg(ttl_millis(ttl));
                }
                cmds.push((full, set));
                sealed.push((key, bytes, *value));
            }
            // One round trip per node for the writes, then one for the invalidations.
            let written = inner.exec::<Vec<redis::Value>>(Req::Keyed(&cmds), "*", true).await?;
            let landed = match written {
                Ok(replies) => {
                    if let Err(err) = batch::first_error(&replies) {
                        for (key, ..) in &sealed {
                            inner.l1.bump();
                            inner.l1.remove(key);
                        }
                        return Err(err);
                    }
                    if inner.settings.coherence {
                        let mut pipe = redis::pipe();
                        for (full, _) in &cmds {
                            inner.publish(&mut pipe, full);
                        }
                        // The writes landed: a failed invalidation must not
                        // keep this instance's L1 from taking them.
                        if let Ok(Ok(())) = inner.exec::<()>(Req::Many(&pipe), "*", false).await {
                            for _ in &cmds {
                                inner.metrics.invalidations_sent.bump();
                            }
                        }
                    }
                    true
                }
                Err(_) => false,
            };
            for ((key, bytes, value), (full, _)) in sealed.into_iter().zip(cmds) {
                // Each entry still gets its own `memorix.set` span, inside the batch's.
                let entry = spans::set(inner, &key);
                entry
                    .run(async {
                        inner.metrics.sets.bump();
                        let plain: Arc<[u8]> = Arc::from(value);
                        if landed {
                            entry.landed(Tier::Redis);
                            if inner.settings.enable_l1 {
                                inner.l1_put(&key, plain, ttl);
                            } else {
                                inner.l1.remove(&key);
                            }
                        } else {
                            entry.landed(Tier::L1);
                            inner.metrics.redis_set_failures.bump();
                            inner.l1_put(&key, plain, ttl);
                            let expires = ttl.and_then(|t| Instant::now().checked_add(t));
                            let stamp = Header::parse(&bytes)
                                .ok()
                                .and_then(|(header, _)| header.stamp())
                                .unwrap_or_else(envelope::write_stamp);
                            inner
                                .defer(
                                    full,
                                    PendingOp::Set {
                                        sealed: bytes,
                                        expires,
                                        stamp,
                                    },
                                )
                                .await;
                        }
                        inner.callbacks.fire(CacheEvent::Set, &key, None, None);
                        Ok::<(), CacheError>(())
                    })
                    .await?;
            }
            inner.finish(Op::Set, started);
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
            // The header is enough to tell a value from a tombstone (a removal).
            let mut head = redis::cmd("GETRANGE");
            head.arg(inner.prefix.apply(&key))
                .arg(0)
                .arg(HEADER_LEN + STAMP_LEN - 1);
            let found = match inner.exec::<Vec<u8>>(Req::One(&head), &key, false).await? {
                Ok(head) => !head.is_empty() && !envelope::is_tombstone(&head),
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
            inner.metrics.deletes.bump();
            // A tombstone rather than UNLINK: an older write replayed after
            // an outage must not bring the key back.
            let stamp = envelope::write_stamp();
            let mut pipe = redis::pipe();
            pipe.add_command(recovery::removal(&full, stamp, false));
            inner.publish(&mut pipe, &full);
            let existed = match inner.exec::<((i64, i64),)>(Req::Many(&pipe), &key, true).await? {
                Ok(((_, existed),)) => {
                    if inner.settings.coherence {
                        inner.metrics.invalidations_sent.bump();
                    }
                    existed > 0
                }
                Err(_) => {
                    inner.defer(full, PendingOp::Remove { stamp }).await;
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
            let prefix = inner.prefix.get();
            // Refused before anything is cleared: an empty or sibling-matching prefix.
            batch::namespace_pattern(&prefix)?;
            inner.l1.clear();
            inner.metrics.l1_clears.bump();
            inner
                .exec::<()>(Req::Purge(&prefix), "*", false)
                .await?
                .map_err(|_| CacheError::Connection("Redis is unavailable; purge needs it".into()))?;
            if inner.settings.coherence {
                let mut pipe = redis::pipe();
                pipe.cmd("PUBLISH")
                    .arg(&inner.channel)
                    .arg(invalidation::purge_message(&inner.instance_id, &prefix))
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
