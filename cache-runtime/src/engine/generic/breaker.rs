//! The circuit breaker in front of Redis, and the writes kept for replay
//! while it is open.
//!
//! Closed: every call goes to Redis; consecutive connection failures are
//! counted and the breaker opens at the threshold (a failed *write* opens it
//! at once, since that write now waits for replay). Open: calls skip Redis at
//! once (no waiting out timeouts), L1 serves, writes are queued, and a
//! background probe (see `super::recovery`) tries Redis every probe interval.
//! When Redis answers, queued writes and removes are replayed, L1 is cleared
//! (invalidations may have been missed) and the breaker closes.

use super::Inner;
use crate::connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// Consecutive-failure circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    threshold: u32,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open: bool) -> Self {
        Breaker {
            open: AtomicBool::new(open),
            failures: AtomicU32::new(0),
            threshold,
        }
    }

    /// True while calls may go to Redis.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        !self.open.load(Relaxed)
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// Counts a failure; true if this one opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        n >= self.threshold && self.trip()
    }

    /// Opens the breaker now; true if it was closed.
    pub(crate) fn trip(&self) -> bool {
        !self.open.swap(true, Relaxed)
    }

    pub(crate) fn close(&self) {
        self.failures.store(0, Relaxed);
        self.open.store(false, Relaxed);
    }
}

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

    /// Queues `op`; `under_lock` runs while the queue is locked (the caller
    /// opens the breaker there, so a recovery cannot close it in between).
    pub(crate) fn push(&self, key: String, op: PendingOp, under_lock: impl FnOnce()) {
        let mut ops = self.lock();
        under_lock();
        if ops.len() >= self.max && !ops.contains_key(&key) {
            self.dropped.fetch_add(1, Relaxed);
            tracing::warn!(
                max = self.max,
                "too many writes queued while Redis is down; one was dropped"
            );
            return;
        }
        ops.insert(key, op);
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

/// Tries Redis every probe interval until it answers, then hands fresh
/// connections to `Inner::recover`. Ends when the cache is dropped or closed.
pub(crate) async fn probe_loop(inner: Weak<Inner>) {
    loop {
        let (interval, connect_timeout) = match inner.upgrade() {
            Some(i) => (i.settings.probe_interval, i.redis_config.connect_timeout()),
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Relaxed) {
            inner.probing.store(false, Relaxed);
            return;
        }
        // A cheap check first: one plain connection and a PING.
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
            continue;
        }
        let opened = tokio::time::timeout(connect_timeout * 2, connection::open(&inner.redis_config)).await;
        let Ok(Ok((_, conns))) = opened else { continue };
        if inner.recover(conns).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_and_closes() {
        let breaker = Breaker::new(3, false);
        assert!(!breaker.failure());
        breaker.success();
        assert!(!breaker.failure());
        assert!(!breaker.failure());
        assert!(breaker.failure());
        assert!(!breaker.is_closed());
        assert!(!breaker.failure(), "already open");
        breaker.close();
        assert!(breaker.is_closed());
    }

    #[test]
    fn pending_keeps_the_latest_op_and_is_bounded() {
        let pending = Pending::new(2);
        pending.push("a".into(), PendingOp::Remove, || {});
        pending.push(
            "a".into(),
            PendingOp::Set {
                sealed: vec![1],
                expires: None,
            },
            || {},
        );
        pending.push("b".into(), PendingOp::Remove, || {});
        pending.push("c".into(), PendingOp::Remove, || {});
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.dropped.load(Relaxed), 1);
        let ops = pending.take();
        assert!(matches!(ops["a"], PendingOp::Set { .. }));
        pending.push("a".into(), PendingOp::Remove, || {});
        pending.restore(ops);
        assert!(matches!(pending.take()["a"], PendingOp::Remove));
    }
}
