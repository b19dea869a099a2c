//! Riding out a Redis outage: writes that could not reach Redis are queued
//! (opening the breaker), a background probe is started, and once Redis
//! answers the queue is replayed before the new connections are installed,
//! L1 is cleared and the breaker closes. The breaker, the queue and the probe
//! loop themselves are in `breaker.rs`.

use super::backend::Backend;
use super::breaker::{self, PendingOp};
use super::Inner;
use crate::connection::RedisConnection;
use crate::keys::ttl_millis;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

impl Inner {
    pub(super) fn spawn_probe(&self) {
        if self.closed.load(Relaxed) || self.probing.swap(true, Relaxed) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(breaker::probe_loop(self.me.clone()));
            }
            Err(_) => self.probing.store(false, Relaxed),
        }
    }

    /// Queues a write that did not reach Redis, opening the breaker so the
    /// probe replays it.
    pub(super) fn defer(&self, full_key: String, op: PendingOp) {
        self.pending.push(full_key, op, || {
            if self.breaker.trip() {
                Metrics::bump(&self.metrics.breaker_opens, "memorix_circuit_breaker_opens_total");
            }
        });
        self.spawn_probe();
    }

    /// Called by the probe when Redis answers again: replays queued writes,
    /// installs the new connections, clears L1 and closes the breaker.
    pub(super) async fn recover(&self, conns: Vec<RedisConnection>) -> bool {
        let backend = Arc::new(Backend {
            conns,
            next: AtomicUsize::new(0),
        });
        let mut conn = backend.conn();
        loop {
            let ops = self.pending.take();
            if !ops.is_empty() {
                let mut pipe = redis::pipe();
                for (full_key, op) in &ops {
                    match op {
                        PendingOp::Set { sealed, expires } => match PendingOp::remaining(*expires) {
                            Some(Some(ttl)) => {
                                pipe.cmd("SET")
                                    .arg(full_key)
                                    .arg(sealed.as_slice())
                                    .arg("PX")
                                    .arg(ttl_millis(ttl))
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
                    self.publish(&mut pipe, full_key);
                }
                let sent =
                    tokio::time::timeout(self.redis_config.response_timeout(), pipe.query_async::<()>(&mut conn));
                match sent.await {
                    Ok(Ok(())) => {
                        self.metrics.replayed.fetch_add(ops.len() as u64, Relaxed);
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "replaying writes after an outage failed; will retry");
                        self.pending.restore(ops);
                        return false;
                    }
                    Err(_) => {
                        self.pending.restore(ops);
                        return false;
                    }
                }
            }
            let ops = self.pending.lock();
            if ops.is_empty() {
                self.backend.store(Some(backend));
                self.l1.clear();
                Metrics::bump(&self.metrics.l1_clears, "memorix_l1_clears_total");
                self.probing.store(false, Relaxed);
                self.breaker.close();
                drop(ops);
                Metrics::bump(&self.metrics.recoveries, "memorix_recoveries_total");
                tracing::info!(redis = %self.redis_config, "Redis reachable again; two-tier mode restored");
                return true;
            }
        }
    }
}
