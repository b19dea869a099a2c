//! Outage mode of the two-tier engine: the writes kept for replay while
//! Redis is unreachable, and the probe that brings Redis back.
//!
//! The circuit breaker itself is the connection layer's `Health`, the one
//! every Redis path shares. Here it counts consecutive connection failures
//! and timeouts (a failed *write* opens it at once, since that write now
//! waits for replay). While it is open, calls skip Redis at once (no waiting
//! out timeouts), L1 serves, writes are queued, and the breaker's probe runs
//! [`probe_once`] every probe interval. When Redis answers, queued writes and
//! removes are replayed, L1 is cleared (invalidations may have been missed)
//! and the breaker closes (see `super::recovery`).

use super::Inner;
use crate::connection;
use crate::connection::health::{Health, Probe};
use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// A write that did not reach Redis.
#[derive(Debug, Clone)]
pub(crate) enum PendingOp {
    /// Store these sealed bytes until `expires`.
    Set { sealed: Vec<u8>, expires: Option<Instant> },
    /// Remove the key.
    Remove,
}

impl PendingOp {
    /// Remaining TTL of a set; `None` if it already expired (nothing to replay
    /// but a removal).
    pub(crate) fn remaining(expires: Option<Instant>) -> Option<Option<Duration>> {
        match expires {
            None => Some(None),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(Some(left))
            }
        }
    }

    /// The commands that apply this op to `full_key` (a set whose TTL ran out
    /// is a removal).
    pub(crate) fn add_to(&self, pipe: &mut redis::Pipeline, full_key: &str) {
        match self {
            PendingOp::Set { sealed, expires } => match PendingOp::remaining(*expires) {
                Some(Some(ttl)) => {
                    pipe.cmd("SET")
                        .arg(full_key)
                        .arg(sealed.as_slice())
                        .arg("PX")
                        .arg(crate::keys::ttl_millis(ttl))
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
    }
}

/// Writes queued while Redis is unreachable, by full Redis key. The latest op
/// per key wins. Past `max` keys, new keys are dropped and counted.
#[derive(Debug)]
pub(crate) struct Pending {
    ops: Mutex<HashMap<String, PendingOp>>,
    max: usize,
    dropped: std::sync::atomic::AtomicU64,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Self {
        Pending {
            ops: Mutex::new(HashMap::new()),
            max,
            dropped: Default::default(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingOp>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` if `under_lock`, run while the queue is locked, says so
    /// (the caller checks the breaker there, so a recovery cannot close it in
    /// between); otherwise hands `op` back. `None` when queued
    /// (or dropped, past `max`).
    pub(crate) fn push(&self, key: String, op: PendingOp, under_lock: impl FnOnce() -> bool) -> Option<PendingOp> {
        let mut ops = self.lock();
        if !under_lock() {
            return Some(op);
        }
        if ops.len() >= self.max && !ops.contains_key(&key) {
            self.dropped.fetch_add(1, Relaxed);
            tracing::warn!(
                max = self.max,
                "too many writes queued while Redis is down; one was dropped"
            );
            return None;
        }
        ops.insert(key, op);
        None
    }

    pub(crate) fn take(&self) -> HashMap<String, PendingOp> {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back ops a failed replay could not send, without overwriting newer ones.
    pub(crate) fn restore(&self, old: HashMap<String, PendingOp>) {
        let mut ops = self.lock();
        for (key, op) in old {
            ops.entry(key).or_insert(op);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One probe of an open breaker: a cheap check first (one plain connection
/// and a `PING`), then fresh connections handed to `Inner::recover`, which
/// replays the queued writes and closes the breaker.
pub(crate) async fn probe_once(inner: Weak<Inner>) -> Probe {
    let Some(inner) = inner.upgrade() else {
        return Probe::Stop;
    };
    if inner.closed.load(Relaxed) {
        return Probe::Stop;
    }
    let connect_timeout = inner.redis_config.connect_timeout();
    let settings = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(connect_timeout));
    let config = inner.redis_config.clone();
    let ping = async move {
        let client = connection::pubsub_client(&config).await?;
        let mut conn = client.get_multiplexed_async_connection_with_config(&settings).await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok::<_, crate::CacheError>(())
    };
    if !matches!(tokio::time::timeout(connect_timeout, ping).await, Ok(Ok(()))) {
        return Probe::Silent;
    }
    let opened = tokio::time::timeout(
        connect_timeout * 2,
        connection::open_guarded(&inner.strict_config(), Health::passive()),
    )
    .await;
    let Ok(Ok((_, conns))) = opened else {
        return Probe::Silent;
    };
    inner.recovering.store(true, SeqCst);
    let recovered = inner.recover(conns).await;
    inner.recovering.store(false, SeqCst);
    inner.recovered.notify_waiters();
    if recovered {
        Probe::Answered
    } else {
        Probe::Silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keeps_the_latest_op_and_is_bounded() {
        let pending = Pending::new(2);
        pending.push("a".into(), PendingOp::Remove, || true);
        pending.push(
            "a".into(),
            PendingOp::Set {
                sealed: vec![1],
                expires: None,
            },
            || true,
        );
        assert!(
            pending.push("b".into(), PendingOp::Remove, || false).is_some(),
            "handed back when the caller says not to queue"
        );
        pending.push("b".into(), PendingOp::Remove, || true);
        pending.push("c".into(), PendingOp::Remove, || true);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.dropped.load(Relaxed), 1);
        let ops = pending.take();
        assert!(matches!(ops["a"], PendingOp::Set { .. }));
        pending.push("a".into(), PendingOp::Remove, || true);
        pending.restore(ops);
        assert!(matches!(pending.take()["a"], PendingOp::Remove));
    }
}
