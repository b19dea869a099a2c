//! The probe that brings the two-tier engine back after an outage.
//!
//! The circuit breaker itself is the connection layer's `Health`, the one
//! every Redis path shares. Here it counts consecutive connection failures
//! and timeouts (a failed *write* opens it at once, since that write now
//! waits for replay). While it is open, calls skip Redis at once (no waiting
//! out timeouts), L1 serves, writes are queued (`pending.rs`), and the
//! breaker's probe runs [`probe_once`] every probe interval. When Redis
//! answers, queued writes and removes are replayed, L1 is cleared
//! (invalidations may have been missed) and the breaker closes (see
//! `super::recovery`).

use super::Inner;
use crate::connection;
use crate::connection::health::{Health, Probe};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Weak;

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
