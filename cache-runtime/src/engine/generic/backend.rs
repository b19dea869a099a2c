//! The Redis side of the cache: the open connections ([`Backend`]) and
//! `Inner::exec`, the one way a command reaches them. `exec` consults the
//! circuit breaker before sending, retries once after a dropped connection,
//! and turns connection-class failures into breaker state (and a probe)
//! instead of errors: callers get an error only from a closed cache or a
//! server refusal (ACL denial, wrong type).

use super::{CacheEvent, Inner, Tier};
use crate::connection::{batch, RedisConnection};
use crate::error::{CacheError, Result};
use crate::metrics;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Open connections to Redis.
pub(super) struct Backend {
    pub(super) conns: Vec<RedisConnection>,
    pub(super) next: AtomicUsize,
}

impl Backend {
    pub(super) fn conn(&self) -> RedisConnection {
        self.conns[self.next.fetch_add(1, Relaxed) % self.conns.len()].clone()
    }
}

/// One command, a pipeline of several, a batch of single-key commands, or a
/// namespace purge. Batches and purges go through the shared
/// `connection::batch` code: one round trip per node on a cluster.
#[derive(Clone, Copy)]
pub(super) enum Req<'a> {
    One(&'a redis::Cmd),
    Many(&'a redis::Pipeline),
    /// Single-key commands, each with the key it touches; the reply is one
    /// value per command, in order.
    Keyed(&'a [(String, redis::Cmd)]),
    /// Every key of this namespace (the prefix).
    Purge(&'a str),
}

/// Runs `req` once. The connection manager bounds it with the configured
/// response timeout; no extra timer per call.
async fn run<T: redis::FromRedisValue>(req: Req<'_>, conn: &mut RedisConnection) -> Result<T> {
    let result = match req {
        Req::One(cmd) => cmd.query_async::<T>(conn).await,
        Req::Many(pipe) => pipe.query_async::<T>(conn).await,
        Req::Keyed(cmds) => {
            let replies = batch::run_keyed(conn, cmds.to_vec()).await?;
            return Ok(T::from_redis_value(redis::Value::Array(replies)).map_err(redis::RedisError::from)?);
        }
        Req::Purge(prefix) => {
            batch::purge(conn, prefix).await?;
            return Ok(T::from_redis_value(redis::Value::Nil).map_err(redis::RedisError::from)?);
        }
    };
    result.map_err(CacheError::from)
}

/// How a Redis call went, when it did not return a value.
pub(super) enum Unavailable {
    /// The breaker is open or there is no connection: Redis was not asked.
    Skipped,
    /// Redis could not be reached (counted, breaker updated).
    Down,
}

impl Inner {
    /// Runs `pipe` on Redis unless the breaker is open. Connection-class
    /// failures and timeouts are counted and feed the breaker (a failed
    /// write opens it at once); server errors (wrong type, ACL denial) are
    /// returned.
    ///
    /// A call admitted before a recovery that fails after it (it was stuck
    /// on the dead connections) does not touch the breaker: it is run once
    /// more on the connections installed by the recovery. Counting it would
    /// re-open the breaker just after Redis came back.
    pub(super) async fn exec<T: redis::FromRedisValue>(
        &self,
        req: Req<'_>,
        key: &str,
        write: bool,
    ) -> Result<std::result::Result<T, Unavailable>> {
        let mut may_rerun = true;
        loop {
            self.check_open()?;
            let (ticket, mut conn) = match (self.breaker.admit(), self.backend.load().as_ref()) {
                (Some(ticket), Some(backend)) => (ticket, backend.conn()),
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
            let err = match result {
                Ok(value) => {
                    self.breaker.success(ticket);
                    return Ok(Ok(value));
                }
                Err(err) => err,
            };
            let server_reply = matches!(err, CacheError::Redis(_));
            if !server_reply && may_rerun && self.breaker.is_stale(ticket) {
                may_rerun = false;
                continue;
            }
            self.metrics.error(metrics::error_kind(&err));
            self.callbacks
                .fire(CacheEvent::Error, key, Some(Tier::Redis), Some(&err));
            if server_reply {
                return Err(err);
            }
            tracing::debug!(error = %err, "redis unavailable; serving from memory");
            let opened = if write {
                self.breaker.trip()
            } else {
                self.breaker.failure(ticket)
            };
            if opened {
                self.metrics.breaker_opens.bump();
                tracing::warn!(error = %err, "Redis unavailable: circuit breaker open, serving from L1");
            }
            if !self.breaker.is_closed() {
                self.spawn_probe();
            }
            return Ok(Err(Unavailable::Down));
        }
    }
}
