//! The one circuit breaker in front of Redis, shared by every path that
//! talks to it: the connections memorix opens (so `RedisCache`,
//! `CryptRedisCache`, memoized functions and the rate limiter), and the
//! two-tier engine's outage mode.
//!
//! A cache must treat a server that stopped answering (frozen, swapping, a
//! peer that accepts and never replies) like one that is gone: every call
//! that waits out a response timeout is an outage for its caller. So a
//! timeout counts against [`Health`] exactly like a refused or broken
//! connection. At the threshold the breaker opens and calls fail at once
//! (no socket is touched) until a background probe, with its own short
//! deadline, sees the server answer; then it closes.
//!
//! Closing starts a new *epoch*. A call admitted before the close carries
//! the old epoch in its [`Ticket`], and its late failure is ignored: a
//! command that was stuck on the dead server must not re-open the breaker
//! the moment the server is back.

use redis::RedisError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Longest a connection's probe waits for `PING`: a server that answers
/// slower than this is not ready to take the traffic back.
const PROBE_DEADLINE: Duration = Duration::from_millis(250);

/// Pause between two probes of a connection.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Bit 0 of the state word: the breaker is open. The other bits: the epoch.
const OPEN: u64 = 1;

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Redis answered (and whatever the owner needed to do is done): close.
    Answered,
    /// No answer yet: try again after the interval.
    Silent,
    /// The owner is gone or closed: stop probing.
    Stop,
}

/// A boxed probe future.
pub(crate) type ProbeFuture = Pin<Box<dyn Future<Output = Probe> + Send>>;

/// Proof that a call was let through, and in which epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    /// Failures were being counted when the call was admitted, so its
    /// success must reset them (else a success needs no shared write).
    counting: bool,
}

impl Ticket {
    /// True when failures were being counted at admission.
    #[inline]
    pub(crate) fn counting(&self) -> bool {
        self.counting
    }
}

/// A consecutive-failure circuit breaker with a single-flight probe. Cheap to
/// clone: clones share the state.
#[derive(Clone)]
pub(crate) struct Health {
    state: Arc<State>,
}

struct State {
    /// `epoch << 1 | OPEN`.
    word: AtomicU64,
    failures: AtomicU32,
    threshold: u32,
    interval: Duration,
    probing: AtomicBool,
    opens: AtomicU64,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("open", &self.is_open())
            .field("opens", &self.opens())
            .finish()
    }
}

impl Health {
    /// A breaker that opens after `threshold` consecutive failures and
    /// probes every `interval` while open; `open` starts it open.
    pub(crate) fn new(threshold: u32, interval: Duration, open: bool) -> Self {
        Health {
            state: Arc::new(State {
                word: AtomicU64::new(u64::from(open)),
                failures: AtomicU32::new(0),
                threshold: threshold.max(1),
                interval,
                probing: AtomicBool::new(false),
                opens: AtomicU64::new(0),
            }),
        }
    }

    /// The breaker of a connection pool: the first timeout or broken
    /// connection opens it (one waited-out timeout per outage, not one per
    /// call), and it is probed every 50 ms.
    pub(crate) fn for_connections() -> Self {
        Self::new(1, PROBE_INTERVAL, false)
    }

    /// A breaker that failures never open, for connections behind another
    /// breaker (the two-tier engine's): a second one in front of them would
    /// turn one slow reply into an outage of the whole pool.
    pub(crate) fn passive() -> Self {
        Self::new(u32::MAX, PROBE_INTERVAL, false)
    }

    /// How long a connection's probe waits for `PING`.
    pub(crate) fn probe_deadline(response_timeout: Duration) -> Duration {
        response_timeout.min(PROBE_DEADLINE)
    }

    /// True while calls may go to Redis.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.word.load(Acquire) & OPEN == 0
    }

    /// True while calls fail fast.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        !self.is_closed()
    }

    /// Lets a call through, unless the breaker is open.
    #[inline]
    pub(crate) fn admit(&self) -> Option<Ticket> {
        let word = self.state.word.load(Acquire);
        (word & OPEN == 0).then(|| Ticket {
            epoch: word >> 1,
            counting: self.state.failures.load(Relaxed) != 0,
        })
    }

    /// The call of `ticket` got an answer from Redis.
    #[inline]
    pub(crate) fn success(&self, ticket: Ticket) {
        if ticket.counting && !self.is_stale(ticket) {
            self.state.failures.store(0, Relaxed);
        }
    }

    /// True when the breaker closed again since `ticket` was handed out: the
    /// call was admitted before an outage that is over now.
    pub(crate) fn is_stale(&self, ticket: Ticket) -> bool {
        self.state.word.load(Acquire) >> 1 != ticket.epoch
    }

    /// The call of `ticket` timed out or lost its connection. True if this
    /// failure opened the breaker. A failure from an earlier epoch is
    /// ignored.
    pub(crate) fn failure(&self, ticket: Ticket) -> bool {
        let closed = ticket.epoch << 1;
        if self.state.threshold == u32::MAX || self.state.word.load(Acquire) != closed {
            return false;
        }
        let n = self.state.failures.fetch_add(1, Relaxed) + 1;
        n >= self.state.threshold && self.open_from(closed)
    }

    /// Opens the breaker now, whatever the count; true if it was closed.
    pub(crate) fn trip(&self) -> bool {
        let before = self.state.word.fetch_or(OPEN, AcqRel);
        let opened = before & OPEN == 0;
        if opened {
            self.state.opens.fetch_add(1, Relaxed);
        }
        opened
    }

    fn open_from(&self, closed: u64) -> bool {
        let opened = self
            .state
            .word
            .compare_exchange(closed, closed | OPEN, AcqRel, Acquire)
            .is_ok();
        if opened {
            self.state.opens.fetch_add(1, Relaxed);
        }
        opened
    }

    /// Closes the breaker and starts a new epoch; true if it was open.
    pub(crate) fn close(&self) -> bool {
        let mut word = self.state.word.load(Acquire);
        loop {
            if word & OPEN == 0 {
                return false;
            }
            self.state.failures.store(0, Relaxed);
            let next = ((word >> 1) + 1) << 1;
            match self.state.word.compare_exchange(word, next, AcqRel, Acquire) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// How many times the breaker opened.
    pub(crate) fn opens(&self) -> u64 {
        self.state.opens.load(Relaxed)
    }

    /// Starts the background probe unless one is running: every interval it
    /// runs `probe`, closes the breaker when it answers [`Probe::Answered`],
    /// and ends once the breaker is closed, on [`Probe::Stop`], or when every
    /// clone of this `Health` is dropped. Outside a tokio runtime nothing
    /// starts (the next failure inside one will).
    pub(crate) fn spawn_probe<F>(&self, probe: F)
    where
        F: Fn() -> ProbeFuture + Send + Sync + 'static,
    {
        if self.state.probing.swap(true, AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(probe_loop(Arc::downgrade(&self.state), probe));
            }
            Err(_) => self.state.probing.store(false, Release),
        }
    }
}

async fn probe_loop<F>(state: Weak<State>, probe: F)
where
    F: Fn() -> ProbeFuture + Send + Sync + 'static,
{
    loop {
        let Some(interval) = state.upgrade().map(|s| s.interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(shared) = state.upgrade() else { return };
        let health = Health { state: shared };
        if health.is_closed() && !keep_probing(&health) {
            return;
        }
        drop(health);
        match probe().await {
            Probe::Answered => {
                let Some(shared) = state.upgrade() else { return };
                let health = Health { state: shared };
                if health.close() {
                    tracing::info!("redis answers again; calls go to it");
                }
                if !keep_probing(&health) {
                    return;
                }
            }
            Probe::Silent => {}
            Probe::Stop => {
                if let Some(shared) = state.upgrade() {
                    shared.probing.store(false, Release);
                }
                return;
            }
        }
    }
}

/// Called by the probe once the breaker is closed: gives up the probe flag,
/// then takes it back if the breaker re-opened meanwhile (that opener saw
/// the flag set and started no probe of its own). True to keep going.
fn keep_probing(health: &Health) -> bool {
    health.state.probing.store(false, Release);
    health.is_open() && !health.state.probing.swap(true, AcqRel)
}

/// The error of a call refused while the breaker is open: an I/O error of
/// kind `NotConnected`, so it is a connection error everywhere
/// (`CacheError::is_connection`, redis-rs's `is_connection_dropped`).
pub(crate) fn unanswered_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "redis is not answering; calls fail fast until a probe sees it answer",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_and_closes() {
        let health = Health::new(3, PROBE_INTERVAL, false);
        let ticket = health.admit().unwrap();
        assert!(!health.failure(ticket));
        health.success(health.admit().unwrap());
        assert!(!health.failure(ticket));
        assert!(!health.failure(ticket));
        assert!(health.failure(ticket));
        assert!(health.is_open());
        assert!(health.admit().is_none());
        assert!(!health.failure(ticket), "already open");
        assert!(health.close());
        assert!(!health.close(), "already closed");
        assert!(health.is_closed());
        assert_eq!(health.opens(), 1);
    }

    #[test]
    fn a_failure_from_before_the_recovery_does_not_reopen() {
        let health = Health::new(1, PROBE_INTERVAL, false);
        let stuck = health.admit().unwrap();
        let first = health.admit().unwrap();
        assert!(health.failure(first));
        assert!(health.close());
        assert!(health.is_stale(stuck));
        assert!(!health.failure(stuck), "the stuck call ended after the recovery");
        assert!(health.is_closed());
        let fresh = health.admit().unwrap();
        assert!(!health.is_stale(fresh));
        assert!(health.failure(fresh));
    }

    #[test]
    fn a_passive_breaker_never_opens_on_failures() {
        let health = Health::passive();
        for _ in 0..1000 {
            assert!(!health.failure(health.admit().unwrap()));
        }
        assert!(health.is_closed());
    }

    #[test]
    fn trip_opens_at_once_and_starts_open() {
        let health = Health::new(5, PROBE_INTERVAL, true);
        assert!(health.is_open());
        assert!(!health.trip());
        assert!(health.close());
        assert!(health.trip());
        assert!(health.is_open());
    }

    #[tokio::test]
    async fn the_probe_closes_the_breaker_and_stops() {
        let health = Health::new(1, Duration::from_millis(1), true);
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        health.spawn_probe(move || {
            let n = counted.fetch_add(1, Relaxed);
            Box::pin(async move {
                if n < 2 {
                    Probe::Silent
                } else {
                    Probe::Answered
                }
            })
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while health.is_open() {
            assert!(tokio::time::Instant::now() < deadline, "probe never closed it");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(calls.load(Relaxed), 3);
    }
}
