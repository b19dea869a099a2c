//! In-process pieces: the governor-based limiter of memory mode, and the
//! "known exhausted" fast path that spares Redis a round trip.

use super::decision::Decision;
use super::rate::Rate;
use crate::error::{CacheError, Result};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Direct = governor::RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Subjects tracked at most by one in-process limiter or fast path.
const MAX_SUBJECTS: u64 = 1_000_000;

/// GCRA in process, one governor limiter per subject. A subject idle for longer
/// than it takes to refill is dropped: its state is "full" again, so dropping
/// it changes no decision and keeps memory bounded.
pub(crate) struct LocalLimiter {
    quota: Quota,
    burst: u32,
    interval: Duration,
    subjects: moka::sync::Cache<String, Arc<Direct>>,
}

impl LocalLimiter {
    pub(crate) fn new(rate: Rate, burst: u32) -> Result<Self> {
        let burst_nz = NonZeroU32::new(burst).ok_or_else(|| CacheError::config("burst", "must be at least 1"))?;
        let interval = rate.interval().max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .ok_or_else(|| CacheError::config("rate", "the interval between requests is zero"))?
            .allow_burst(burst_nz);
        let refill = interval.saturating_mul(burst).max(Duration::from_secs(1));
        Ok(LocalLimiter {
            quota,
            burst,
            interval,
            subjects: moka::sync::Cache::builder()
                .max_capacity(MAX_SUBJECTS)
                .time_to_idle(refill)
                .build(),
        })
    }

    fn limiter(&self, key: &str) -> Arc<Direct> {
        self.subjects.get_with_by_ref(key, || {
            Arc::new(governor::RateLimiter::direct(self.quota).with_middleware::<StateInformationMiddleware>())
        })
    }

    pub(crate) fn check_n(&self, key: &str, n: u32) -> Decision {
        let limit = u64::from(self.burst);
        let Some(n) = NonZeroU32::new(n) else {
            return Decision::allow_all(limit);
        };
        let limiter = self.limiter(key);
        match limiter.check_n(n) {
            Ok(Ok(snapshot)) => {
                let remaining = u64::from(snapshot.remaining_burst_capacity());
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: self
                        .interval
                        .saturating_mul(self.burst.saturating_sub(remaining as u32)),
                }
            }
            Ok(Err(not_until)) => {
                let retry_after = not_until.wait_time_from(limiter.clock().now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    retry_after,
                    reset_after: self.interval.saturating_mul(self.burst).max(retry_after),
                }
            }
            // Callers check `n <= limit` first; answer "never" the same way.
            Err(_) => Decision::deny_for(limit, Duration::MAX),
        }
    }

    pub(crate) fn reset(&self, key: &str) {
        self.subjects.invalidate(key);
    }
}

/// Subjects the server just denied, with the instant their denial ends and the
/// smallest request size that was denied. While it lasts, a request at least
/// that big is denied here without a round trip: the server would say the same.
pub(crate) struct ExhaustedSubjects {
    entries: moka::sync::Cache<String, Exhausted>,
}

#[derive(Clone, Copy)]
struct Exhausted {
    until: Instant,
    reset_until: Instant,
    n: u32,
}

struct UntilExpiry;

impl moka::Expiry<String, Exhausted> for UntilExpiry {
    fn expire_after_create(&self, _key: &String, value: &Exhausted, created_at: Instant) -> Option<Duration> {
        Some(value.until.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Exhausted,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.until.saturating_duration_since(updated_at))
    }
}

impl ExhaustedSubjects {
    pub(crate) fn new() -> Self {
        ExhaustedSubjects {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_SUBJECTS)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// The local denial for `key`, if one is still running and covers `n`.
    pub(crate) fn get(&self, key: &str, n: u32, limit: u64) -> Option<Decision> {
        let entry = self.entries.get(key)?;
        let now = Instant::now();
        if n < entry.n || now >= entry.until {
            return None;
        }
        Some(Decision {
            allowed: false,
            limit,
            remaining: 0,
            retry_after: entry.until - now,
            reset_after: entry.reset_until.saturating_duration_since(now),
        })
    }

    /// Remembers a server denial.
    pub(crate) fn record(&self, key: &str, n: u32, decision: &Decision) {
        if decision.allowed || decision.retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        let (Some(until), Some(reset_until)) = (
            now.checked_add(decision.retry_after),
            now.checked_add(decision.reset_after),
        ) else {
            return;
        };
        // A running denial of a smaller request says more (it covers this one too).
        if self.entries.get(key).is_some_and(|old| old.until > now && old.n < n) {
            return;
        }
        self.entries.insert(key.to_owned(), Exhausted { until, reset_until, n });
    }

    pub(crate) fn forget(&self, key: &str) {
        self.entries.invalidate(key);
    }
}
