//! Counters of a [`RateLimiter`](super::RateLimiter).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lock-free counters of one limiter.
#[derive(Debug, Default)]
pub struct RateLimiterStats {
    allowed: AtomicU64,
    denied: AtomicU64,
    denied_locally: AtomicU64,
    unavailable_allowed: AtomicU64,
    unavailable_denied: AtomicU64,
    errors: AtomicU64,
}

/// A point-in-time copy of [`RateLimiterStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateLimiterSnapshot {
    /// Requests allowed by the store.
    pub allowed: u64,
    /// Requests denied, by the store or by the local fast path.
    pub denied: u64,
    /// Of `denied`, those answered by the local fast path without a round trip.
    pub denied_locally: u64,
    /// Requests allowed because Redis was unreachable (fail-open).
    pub unavailable_allowed: u64,
    /// Requests denied because Redis was unreachable (fail-closed).
    pub unavailable_denied: u64,
    /// Checks that returned an error (Redis unreachable with `OnUnavailable::Error`,
    /// or a server error such as a key of the wrong type).
    pub errors: u64,
}

impl RateLimiterStats {
    /// Copies the counters.
    pub fn snapshot(&self) -> RateLimiterSnapshot {
        RateLimiterSnapshot {
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.load(Relaxed),
            denied_locally: self.denied_locally.load(Relaxed),
            unavailable_allowed: self.unavailable_allowed.load(Relaxed),
            unavailable_denied: self.unavailable_denied.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    pub(crate) fn record(&self, allowed: bool) {
        if allowed { &self.allowed } else { &self.denied }.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_local_denial(&self) {
        self.denied.fetch_add(1, Relaxed);
        self.denied_locally.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_unavailable(&self, allowed: bool) {
        if allowed {
            &self.unavailable_allowed
        } else {
            &self.unavailable_denied
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }
}
