//! Process-wide counters of memoized functions.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static MISSES: AtomicU64 = AtomicU64::new(0);
static CACHE_ERRORS: AtomicU64 = AtomicU64::new(0);
static STALE_SERVED: AtomicU64 = AtomicU64::new(0);
static EARLY_REFRESHES: AtomicU64 = AtomicU64::new(0);
static COALESCED: AtomicU64 = AtomicU64::new(0);
static MISCONFIGURED: AtomicU64 = AtomicU64::new(0);

/// A copy of the memoization counters, from [`stats`].
///
/// Hits on the typed in-process path are not counted: a shared counter would
/// cost more than the hit itself. The engines' own [`CacheStats`](crate::CacheStats)
/// count reads that reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoStats {
    /// Calls that ran the function body because nothing usable was cached.
    pub misses: u64,
    /// Cache failures (unreachable engine, undecodable entry) that were
    /// absorbed: the call went on without the cache.
    pub cache_errors: u64,
    /// Calls that ran uncached because their cache is not set up: a
    /// `cache = "name"` nobody registered, or `encrypt` with no encrypted
    /// engine (see [`init_from_env`](super::init_from_env)). Non-zero means
    /// a startup step is missing; the first such call also logs an error.
    pub misconfigured: u64,
    /// Failed calls answered with the last good value (`stale_if_error`).
    pub stale_served: u64,
    /// Early background refreshes started by `refresh_ahead`.
    pub early_refreshes: u64,
    /// Callers that waited for another caller's body instead of running it.
    pub coalesced: u64,
}

/// The memoization counters of this process.
pub fn stats() -> MemoStats {
    MemoStats {
        misses: MISSES.load(Relaxed),
        cache_errors: CACHE_ERRORS.load(Relaxed),
        misconfigured: MISCONFIGURED.load(Relaxed),
        stale_served: STALE_SERVED.load(Relaxed),
        early_refreshes: EARLY_REFRESHES.load(Relaxed),
        coalesced: COALESCED.load(Relaxed),
    }
}

pub(crate) fn miss() {
    MISSES.fetch_add(1, Relaxed);
}
pub(crate) fn cache_error() {
    CACHE_ERRORS.fetch_add(1, Relaxed);
}
pub(crate) fn misconfigured() {
    MISCONFIGURED.fetch_add(1, Relaxed);
}
pub(crate) fn stale_served() {
    STALE_SERVED.fetch_add(1, Relaxed);
}
pub(crate) fn early_refresh() {
    EARLY_REFRESHES.fetch_add(1, Relaxed);
}
pub(crate) fn coalesced() {
    COALESCED.fetch_add(1, Relaxed);
}
