//! Hit and miss counters shared by every engine.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lock-free hit / miss counters. Only gets count: sets and removes do not
/// dilute the hit rate.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
}

/// A point-in-time copy of [`CacheStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Gets that found a value.
    pub hits: u64,
    /// Gets that found nothing.
    pub misses: u64,
    /// Entries that did not decode and were treated as misses.
    pub corrupt: u64,
    /// `hits / (hits + misses)`, 0 before the first get.
    pub hit_rate: f64,
}

impl CacheStats {
    /// Counts a get that found a value.
    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    /// Counts a get that found nothing.
    pub fn record_miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    /// Counts `n` gets by outcome, for batch reads.
    pub fn record_batch(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Relaxed);
        self.misses.fetch_add(misses, Relaxed);
    }

    /// Re-labels a counted hit as a miss because its bytes did not decode.
    pub fn record_corrupt(&self) {
        self.corrupt.fetch_add(1, Relaxed);
        // The raw read counted a hit; the caller saw a miss.
        let _ = self.hits.fetch_update(Relaxed, Relaxed, |h| h.checked_sub(1));
        self.misses.fetch_add(1, Relaxed);
    }

    /// Gets that found a value.
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// Gets that found nothing.
    pub fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }

    /// Entries that did not decode and were served as misses.
    pub fn corrupt(&self) -> u64 {
        self.corrupt.load(Relaxed)
    }

    /// Hits over gets, in `0.0..=1.0`; 0 before the first get.
    pub fn hit_rate(&self) -> f64 {
        let (hits, misses) = (self.hits(), self.misses());
        match hits + misses {
            0 => 0.0,
            total => hits as f64 / total as f64,
        }
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            hits: self.hits(),
            misses: self.misses(),
            corrupt: self.corrupt(),
            hit_rate: self.hit_rate(),
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.hits.store(0, Relaxed);
        self.misses.store(0, Relaxed);
        self.corrupt.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_counts_gets_only() {
        let stats = CacheStats::default();
        assert_eq!(stats.hit_rate(), 0.0);
        stats.record_hit();
        stats.record_hit();
        stats.record_hit();
        stats.record_miss();
        assert_eq!(stats.hit_rate(), 0.75);
        stats.record_corrupt();
        assert_eq!((stats.hits(), stats.misses(), stats.corrupt()), (2, 2, 1));
        stats.reset();
        assert_eq!(stats.snapshot().hits, 0);
    }
}
