//! The circuit breaker in front of Redis (the writes kept for replay while
//! it is open are in `pending.rs`).
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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Weak;

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
}
