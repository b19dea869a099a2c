//! Writes that could not reach Redis, kept for replay (see `recovery.rs`).
//!
//! The queue keeps the latest op per key, up to `max_pending_writes` keys.
//! Past that bound a write is dropped, but never silently: it is counted (the
//! `dropped_writes` statistic), and its key is remembered so that recovery
//! removes it from Redis (a stamped removal: a newer write from another
//! instance survives), since Redis would otherwise keep serving the value the
//! dropped write replaced. Only when the remembered keys outgrow the same
//! bound again is the key list given up for one flag, and recovery purges the
//! whole prefix (Redis and every instance's L1) instead.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A write that did not reach Redis.
#[derive(Debug, Clone)]
pub(crate) enum PendingOp {
    /// Store these sealed bytes (which carry their write stamp) until `expires`.
    Set {
        sealed: Vec<u8>,
        expires: Option<Instant>,
        stamp: u64,
    },
    /// Remove the key; made at `stamp` (microseconds since the Unix epoch).
    Remove { stamp: u64 },
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

    /// When the write was made.
    pub(crate) fn stamp(&self) -> u64 {
        match self {
            PendingOp::Set { stamp, .. } | PendingOp::Remove { stamp } => *stamp,
        }
    }
}

/// What recovery has to send.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// The latest op per full Redis key, dropped writes included as removals.
    pub(crate) ops: HashMap<String, PendingOp>,
    /// Too many writes were dropped to remember their keys: purge the prefix.
    pub(crate) purge: bool,
}

impl Backlog {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty() && !self.purge
    }
}

/// The queue itself.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    ops: HashMap<String, PendingOp>,
    /// Keys whose writes were dropped, with the stamp of the last one.
    dropped: HashMap<String, u64>,
    overflowed: bool,
}

impl Queue {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.dropped.is_empty() && !self.overflowed
    }
}

/// What [`Pending::push`] did with a write.
#[derive(Debug)]
pub(crate) enum Pushed {
    /// Queued for replay.
    Queued,
    /// The queue is full: counted, and its key removed on recovery.
    Dropped,
    /// Not queued, as the caller asked: the write is handed back.
    Refused(PendingOp),
}

/// Writes queued while Redis is unreachable, by full Redis key.
#[derive(Debug)]
pub(crate) struct Pending {
    queue: Mutex<Queue>,
    max: usize,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Self {
        Pending {
            queue: Mutex::new(Queue::default()),
            max,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` if `under_lock`, run while the queue is locked, says so
    /// (the caller checks and opens the breaker there, so a recovery cannot
    /// close it in between); otherwise hands `op` back.
    pub(crate) fn push(&self, key: String, op: PendingOp, under_lock: impl FnOnce() -> bool) -> Pushed {
        let mut queue = self.lock();
        if !under_lock() {
            return Pushed::Refused(op);
        }
        if queue.ops.len() < self.max || queue.ops.contains_key(&key) {
            queue.dropped.remove(&key);
            queue.ops.insert(key, op);
            return Pushed::Queued;
        }
        if queue.dropped.len() < self.max || queue.dropped.contains_key(&key) {
            queue.dropped.insert(key, op.stamp());
        } else {
            queue.overflowed = true;
        }
        Pushed::Dropped
    }

    /// Everything to replay, emptying the queue.
    pub(crate) fn take(&self) -> Backlog {
        let queue = std::mem::take(&mut *self.lock());
        let mut ops = queue.ops;
        for (key, stamp) in queue.dropped {
            ops.entry(key).or_insert(PendingOp::Remove { stamp });
        }
        Backlog {
            ops,
            purge: queue.overflowed,
        }
    }

    /// Puts back what a failed replay could not send, without overwriting
    /// newer ops.
    pub(crate) fn restore(&self, old: Backlog) {
        let mut queue = self.lock();
        queue.overflowed |= old.purge;
        for (key, op) in old.ops {
            if !queue.dropped.contains_key(&key) {
                queue.ops.entry(key).or_insert(op);
            }
        }
    }

    /// Keys waiting for replay (dropped keys included).
    pub(crate) fn len(&self) -> usize {
        let queue = self.lock();
        queue.ops.len() + queue.dropped.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(stamp: u64) -> PendingOp {
        PendingOp::Set {
            sealed: vec![1],
            expires: None,
            stamp,
        }
    }

    #[test]
    fn keeps_the_latest_op_and_remembers_dropped_keys() {
        let pending = Pending::new(2);
        assert!(matches!(
            pending.push("a".into(), PendingOp::Remove { stamp: 1 }, || true),
            Pushed::Queued
        ));
        assert!(matches!(pending.push("a".into(), set(2), || true), Pushed::Queued));
        assert!(
            matches!(pending.push("b".into(), set(3), || false), Pushed::Refused(_)),
            "handed back when the caller says not to queue"
        );
        assert!(matches!(
            pending.push("b".into(), PendingOp::Remove { stamp: 3 }, || true),
            Pushed::Queued
        ));
        assert!(
            matches!(pending.push("c".into(), set(4), || true), Pushed::Dropped),
            "full: dropped"
        );
        assert_eq!(pending.len(), 3);
        let backlog = pending.take();
        assert!(!backlog.purge);
        assert!(matches!(backlog.ops["a"], PendingOp::Set { stamp: 2, .. }));
        assert!(
            matches!(backlog.ops["c"], PendingOp::Remove { stamp: 4 }),
            "a dropped write is replayed as a removal"
        );
        pending.push("a".into(), PendingOp::Remove { stamp: 5 }, || true);
        pending.restore(backlog);
        assert!(matches!(pending.take().ops["a"], PendingOp::Remove { stamp: 5 }));
    }

    #[test]
    fn too_many_dropped_keys_turn_into_a_purge() {
        let pending = Pending::new(1);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            pending.push(key.into(), set(i as u64), || true);
        }
        let backlog = pending.take();
        assert!(backlog.purge && !backlog.is_empty());
        assert!(pending.take().is_empty());
    }
}
