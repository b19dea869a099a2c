//! Riding out a Redis outage: writes that could not reach Redis are queued
//! (opening the breaker), a background probe is started, and once Redis
//! answers the queue is replayed before the new connections are installed,
//! L1 is cleared and the breaker closes. The queue and the probe are in
//! `breaker.rs`; the breaker is the connection layer's shared `Health`.

use super::backend::{Backend, Req};
use super::breaker::{self, PendingOp};
use super::Inner;
use crate::connection::RedisConnection;
use crate::keys::ttl_millis;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

impl Inner {
    pub(super) fn spawn_probe(&self) {
        if self.closed.load(Relaxed) {
            return;
        }
        let me = self.me.clone();
        self.breaker
            .spawn_probe(move || Box::pin(breaker::probe_once(me.clone())));
    }

    /// Queues a write that did not reach Redis, for the probe to replay.
    ///
    /// The breaker is open: the write was skipped, or its failure opened it.
    /// Two cases send the write to Redis instead: a recovery is replaying
    /// the queue (the write waits for it to end: queued writes arriving
    /// faster than a replay round trip would keep it from ever finishing),
    /// or a recovery closed the breaker since the write was skipped (queuing
    /// it would re-open the breaker right after the recovery).
    pub(super) async fn defer(&self, full_key: String, mut op: PendingOp) {
        for _ in 0..2 {
            let queue = || self.breaker.is_open() && !self.recovering.load(SeqCst);
            match self.pending.push(full_key.clone(), op, queue) {
                None => {
                    self.spawn_probe();
                    return;
                }
                Some(back) => op = back,
            }
            self.wait_for_recovery().await;
            let mut pipe = redis::pipe();
            op.add_to(&mut pipe, &full_key);
            self.publish(&mut pipe, &full_key);
            if let Ok(Ok(())) = self.exec::<()>(Req::Many(&pipe), &full_key, true).await {
                return;
            }
        }
        self.pending.push(full_key, op, || {
            if self.breaker.trip() {
                Metrics::bump(&self.metrics.breaker_opens, "memorix_circuit_breaker_opens_total");
            }
            true
        });
        self.spawn_probe();
    }

    /// Waits (at most a response timeout) for a recovery in progress to end.
    async fn wait_for_recovery(&self) {
        let ended = self.recovered.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if self.recovering.load(SeqCst) {
            let _ = tokio::time::timeout(self.redis_config.response_timeout(), ended).await;
        }
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
                self.breaker.close();
                drop(ops);
                Metrics::bump(&self.metrics.recoveries, "memorix_recoveries_total");
                tracing::info!(redis = %self.redis_config, "Redis reachable again; two-tier mode restored");
                return true;
            }
        }
    }
}
