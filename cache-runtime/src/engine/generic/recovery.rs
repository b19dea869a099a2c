//! Riding out a Redis outage: writes that could not reach Redis are queued
//! (opening the breaker), a background probe is started, and once Redis
//! answers the queue is replayed before the new connections are installed,
//! L1 is cleared and the breaker closes. The probe is in `probe.rs` (the
//! breaker is the connection layer's shared `Health`), the queue in
//! `pending.rs`.
//!
//! A replay never goes back in time: every value carries the stamp of its
//! original write (see `envelope.rs`), and each replayed write or removal is
//! a compare-and-set script that leaves a newer value in place, whether an
//! instance with a longer backlog replays last or a write made after the
//! recovery got there first. Removals leave a short-lived tombstone for the
//! same comparison. The order is by the writers' clocks, so it assumes clocks
//! kept in step (NTP); a skew shorter than the gap between two writes of one
//! key does not change it.

use super::backend::{Backend, Req};
use super::pending::{Backlog, PendingOp, Pushed};
use super::probe;
use super::{invalidation, Inner};
use crate::connection::{batch, RedisConnection};
use crate::envelope;
use crate::error::Result;
use crate::keys::ttl_millis;
use redis::FromRedisValue;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

impl Inner {
    pub(super) fn spawn_probe(&self) {
        if self.closed.load(Relaxed) {
            return;
        }
        let me = self.me.clone();
        self.breaker
            .spawn_probe(move || Box::pin(probe::probe_once(me.clone())));
    }

    /// Queues a write that did not reach Redis, for the probe to replay.
    ///
    /// The breaker is open: the write was skipped, or its failure opened it.
    /// Two cases send the write to Redis instead: a recovery is replaying
    /// the queue (the write waits for it to end: queued writes arriving
    /// faster than a replay round trip would keep it from ever finishing),
    /// or a recovery closed the breaker since the write was skipped (queuing
    /// it would re-open the breaker right after the recovery). Either way it
    /// is the stamped write a replay sends, so it never replaces a newer value.
    pub(super) async fn defer(&self, full_key: String, mut op: PendingOp) {
        for _ in 0..2 {
            let queue = || self.breaker.is_open() && !self.recovering.load(SeqCst);
            match self.pending.push(full_key.clone(), op, queue) {
                Pushed::Refused(back) => op = back,
                pushed => return self.queued(pushed),
            }
            self.wait_for_recovery().await;
            let mut pipe = redis::pipe();
            pipe.add_command(replay_cmd(&full_key, &op)).ignore();
            self.publish(&mut pipe, &full_key);
            if let Ok(Ok(())) = self.exec::<()>(Req::Many(&pipe), &full_key, true).await {
                return;
            }
        }
        let pushed = self.pending.push(full_key, op, || {
            if self.breaker.trip() {
                self.metrics.breaker_opens.bump();
            }
            true
        });
        self.queued(pushed);
    }

    /// Counts a dropped write, and makes sure a probe will replay the queue.
    fn queued(&self, pushed: Pushed) {
        if matches!(pushed, Pushed::Dropped) {
            self.metrics.dropped_writes.bump();
            tracing::warn!(
                max = self.settings.max_pending,
                "too many writes queued while Redis is down; one was dropped and its key will be removed on recovery"
            );
        }
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
            let backlog = self.pending.take();
            if !backlog.is_empty() {
                let budget = replay_budget(self.redis_config.response_timeout(), &backlog);
                let replayed = tokio::time::timeout(budget, self.replay(&mut conn, &backlog));
                match replayed.await {
                    Ok(Ok(())) => {
                        self.metrics.replayed.add(backlog.ops.len() as u64);
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "replaying writes after an outage failed; will retry");
                        self.pending.restore(backlog);
                        return false;
                    }
                    Err(_) => {
                        self.pending.restore(backlog);
                        return false;
                    }
                }
            }
            let queue = self.pending.lock();
            if queue.is_empty() {
                self.backend.store(Some(backend));
                self.l1.clear();
                self.metrics.l1_clears.bump();
                self.breaker.close();
                drop(queue);
                self.metrics.recoveries.bump();
                tracing::info!(redis = %self.redis_config, "Redis reachable again; two-tier mode restored");
                return true;
            }
        }
    }

    /// Sends a backlog: each op as a stamped write that Redis applies only if
    /// what it holds is not newer (so the last original write wins, whichever
    /// instance replays last), one round trip per node; then the
    /// invalidations. Writes that were dropped for want of room come back as
    /// removals; when even their keys could not be kept, the whole namespace
    /// is purged first, in Redis and in every instance's L1.
    async fn replay(&self, conn: &mut RedisConnection, backlog: &Backlog) -> Result<()> {
        if backlog.purge {
            let prefix = self.prefix.get();
            tracing::warn!("too many writes were dropped during the outage; purging the namespace");
            batch::purge(conn, &prefix).await?;
            if self.settings.coherence {
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(invalidation::purge_message(&self.instance_id, &prefix))
                    .query_async::<()>(conn)
                    .await?;
            }
        }
        let cmds: Vec<(String, redis::Cmd)> = backlog
            .ops
            .iter()
            .map(|(full_key, op)| (full_key.clone(), replay_cmd(full_key, op)))
            .collect();
        let replies = batch::run_keyed(conn, cmds).await?;
        batch::first_error(&replies)?;
        let superseded = replies
            .iter()
            .filter(|reply| matches!(<(i64, i64)>::from_redis_value((*reply).clone()), Ok((0, _))))
            .count();
        if superseded > 0 {
            tracing::info!(
                superseded,
                "replay skipped writes that Redis already holds newer values for"
            );
        }
        if self.settings.coherence && !backlog.ops.is_empty() {
            let mut pipe = redis::pipe();
            for full_key in backlog.ops.keys() {
                self.publish(&mut pipe, full_key);
            }
            pipe.query_async::<()>(conn).await?;
        }
        Ok(())
    }
}

/// How long a replay may take: one response timeout per thousand ops (the
/// backlog goes out in per-node pipelines), a few more for a purge.
fn replay_budget(response_timeout: Duration, backlog: &Backlog) -> Duration {
    let batches = 1 + u32::try_from(backlog.ops.len() / 1000).unwrap_or(u32::MAX);
    let purge = if backlog.purge { 4 } else { 0 };
    response_timeout.saturating_mul(batches.saturating_add(purge))
}

/// How long a removal's tombstone stays in Redis: long enough for every
/// instance to replay its backlog after an outage (each replays within a
/// probe interval of Redis answering), short enough to cost nothing.
pub(super) const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// Writes `ARGV[2]` (a sealed value or a tombstone, `PX ARGV[3]` unless "0")
/// under `KEYS[1]`, unless `ARGV[4]` is "1" and the value Redis holds carries
/// a newer write stamp than `ARGV[1]`. Reads the stamp of the envelope header
/// (see `envelope.rs`): magic 0xD7, version 1, flags byte (bit 2 stamped,
/// bit 3 tombstone), codec byte, then the stamp as a big-endian u64 of
/// microseconds (exact in a Lua double until the year 2255). One key only,
/// so it runs on a Cluster. Returns `{written, existed}`: `existed` is 1 when
/// the key held a value (not a tombstone).
const STAMPED_WRITE: &str = r"
local cur = redis.call('GET', KEYS[1])
local existed = 0
if cur then
  existed = 1
  if string.len(cur) >= 12 and string.byte(cur, 1) == 215 and string.byte(cur, 2) == 1 then
    local flags = string.byte(cur, 3)
    if math.floor(flags / 8) % 2 == 1 then existed = 0 end
    if ARGV[4] == '1' and math.floor(flags / 4) % 2 == 1 then
      local stamp = 0
      for i = 5, 12 do stamp = stamp * 256 + string.byte(cur, i) end
      if stamp > tonumber(ARGV[1]) then return {0, existed} end
    end
  end
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1, existed}
";

/// The stamped write of `value` under `full_key` (see [`STAMPED_WRITE`]):
/// `check` compares stamps (a replay); without it the write always lands
/// (a live removal).
pub(super) fn stamped_write(
    full_key: &str,
    stamp: u64,
    value: &[u8],
    ttl: Option<Duration>,
    check: bool,
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(STAMPED_WRITE)
        .arg(1)
        .arg(full_key)
        .arg(stamp)
        .arg(value)
        .arg(ttl.map_or(0, ttl_millis))
        .arg(if check { "1" } else { "0" });
    cmd
}

/// A removal made at `stamp`: a tombstone, so that no older write replayed
/// later brings the key back.
pub(super) fn removal(full_key: &str, stamp: u64, check: bool) -> redis::Cmd {
    stamped_write(full_key, stamp, &envelope::tombstone(stamp), Some(TOMBSTONE_TTL), check)
}

fn replay_cmd(full_key: &str, op: &PendingOp) -> redis::Cmd {
    match op {
        PendingOp::Set { sealed, expires, stamp } => match PendingOp::remaining(*expires) {
            Some(ttl) => stamped_write(full_key, *stamp, sealed, ttl, true),
            // Expired meanwhile: what is left to replay is its removal.
            None => removal(full_key, *stamp, true),
        },
        PendingOp::Remove { stamp } => removal(full_key, *stamp, true),
    }
}
