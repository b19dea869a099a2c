//! Monitoring of the two-tier engine: per-tier hits and misses, latency
//! histograms, compression, errors by kind, invalidations, L1 size.
//!
//! Counters on the L1 hit path are striped over cache-line-padded slots, so
//! threads hitting the cache at once do not fight over one counter. Latency is
//! timed on every Redis-tier operation and on one L1 hit in
//! [`L1_SAMPLE_EVERY`] (recorded with that weight), which keeps the clock off
//! most L1 hits while the percentiles stay unbiased.
//!
//! With the `metrics` feature every counter is also exported through the
//! `metrics` facade, from handles registered once per cache (labelled with
//! its prefix); the names, types and labels are listed on
//! `GenericRedisCache`.

use crate::error::CacheError;
use serde::Serialize;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// One L1 hit in this many has its latency timed (with weight `L1_SAMPLE_EVERY`).
pub const L1_SAMPLE_EVERY: u32 = 16;

/// How often the exported L1 gauges are refreshed (`metrics` feature).
#[cfg(feature = "metrics")]
pub(crate) const GAUGE_REFRESH: Duration = Duration::from_secs(1);

/// The exported handles, registered once per cache with its `cache` label, so
/// recording is one call on a handle, never a registry lookup.
#[cfg(feature = "metrics")]
mod export {
    use metrics::Label;
    pub(crate) use metrics::{Counter, Gauge, Histogram};

    fn labels(cache: &str, extra: Option<(&'static str, &'static str)>) -> Vec<Label> {
        let mut labels = vec![Label::new("cache", cache.to_owned())];
        labels.extend(extra.map(|(k, v)| Label::new(k, v)));
        labels
    }

    pub(crate) fn counter(name: &'static str, cache: &str, extra: Option<(&'static str, &'static str)>) -> Counter {
        metrics::counter!(name, labels(cache, extra))
    }

    pub(crate) fn gauge(name: &'static str, cache: &str) -> Gauge {
        metrics::gauge!(name, labels(cache, None))
    }

    pub(crate) fn histogram(name: &'static str, cache: &str, op: &'static str) -> Histogram {
        metrics::histogram!(name, labels(cache, Some(("op", op))))
    }
}

/// Without the `metrics` feature the handles are zero-sized no-ops.
#[cfg(not(feature = "metrics"))]
mod export {
    pub(crate) struct Counter;
    pub(crate) struct Gauge;
    pub(crate) struct Histogram;

    impl Counter {
        pub(crate) const fn noop() -> Self {
            Counter
        }

        #[inline]
        pub(crate) fn increment(&self, _: u64) {}
    }

    impl Gauge {
        #[inline]
        pub(crate) fn set(&self, _: f64) {}
    }

    impl Histogram {
        #[inline]
        pub(crate) fn record_many(&self, _: f64, _: usize) {}
    }

    pub(crate) fn counter(_: &'static str, _: &str, _: Option<(&'static str, &'static str)>) -> Counter {
        Counter
    }

    pub(crate) fn gauge(_: &'static str, _: &str) -> Gauge {
        Gauge
    }

    pub(crate) fn histogram(_: &'static str, _: &str, _: &'static str) -> Histogram {
        Histogram
    }
}

/// A counter that `stats()` reads and that is exported under one name.
pub(crate) struct Count {
    value: AtomicU64,
    exported: export::Counter,
}

impl Count {
    fn new(name: &'static str, cache: &str) -> Self {
        Self::labelled(name, cache, None)
    }

    fn labelled(name: &'static str, cache: &str, extra: Option<(&'static str, &'static str)>) -> Self {
        Count {
            value: AtomicU64::new(0),
            exported: export::counter(name, cache, extra),
        }
    }

    /// Counts one event.
    pub(crate) fn bump(&self) {
        self.add(1);
    }

    /// Counts `n` events.
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        self.exported.increment(n);
    }

    fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }

    /// Zeroes what `stats()` reads; the exported counter stays monotonic.
    fn reset(&self) {
        self.value.store(0, Relaxed);
    }
}

impl Default for Count {
    /// A counter that is not exported: for compression outside a cache.
    fn default() -> Self {
        Count {
            value: AtomicU64::new(0),
            exported: export::Counter::noop(),
        }
    }
}

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter spread over padded slots, one per thread (modulo the slot count).
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

thread_local! {
    static SLOT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Relaxed) % STRIPES
    };
    static SAMPLE: Cell<u32> = const { Cell::new(0) };
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let slot = SLOT.with(|s| *s);
        self.0[slot].0.fetch_add(n, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Relaxed)).sum()
    }

    fn reset(&self) {
        for p in &self.0 {
            p.0.store(0, Relaxed);
        }
    }
}

/// True once every [`L1_SAMPLE_EVERY`] calls on this thread.
#[inline]
pub(crate) fn sample_l1() -> bool {
    SAMPLE.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n % L1_SAMPLE_EVERY == 0
    })
}

/// Compression work: calls, bytes in and out, time.
#[derive(Default)]
pub struct CompressionCounters {
    calls: Count,
    bytes_in: Count,
    bytes_out: Count,
    nanos: AtomicU64,
}

impl std::fmt::Debug for CompressionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressionCounters")
            .field("calls", &self.calls.get())
            .field("bytes_in", &self.bytes_in.get())
            .field("bytes_out", &self.bytes_out.get())
            .finish_non_exhaustive()
    }
}

impl CompressionCounters {
    /// Counters exported with the label `cache`.
    pub(crate) fn exported(cache: &str) -> Self {
        CompressionCounters {
            calls: Count::new("memorix_compressions_total", cache),
            bytes_in: Count::new("memorix_compression_bytes_in_total", cache),
            bytes_out: Count::new("memorix_compression_bytes_out_total", cache),
            nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, bytes_in: usize, bytes_out: usize, took: Duration) {
        self.calls.bump();
        self.bytes_in.add(bytes_in as u64);
        self.bytes_out.add(bytes_out as u64);
        self.nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn snapshot(&self) -> CompressionStats {
        let (bytes_in, bytes_out) = (self.bytes_in.get(), self.bytes_out.get());
        CompressionStats {
            compressions: self.calls.get(),
            bytes_in,
            bytes_out,
            ratio: if bytes_out == 0 {
                0.0
            } else {
                bytes_in as f64 / bytes_out as f64
            },
            total_time_ms: self.nanos.load(Relaxed) as f64 / 1e6,
        }
    }

    fn reset(&self) {
        for c in [&self.calls, &self.bytes_in, &self.bytes_out] {
            c.reset();
        }
        self.nanos.store(0, Relaxed);
    }
}

/// Buckets: 4 per power of two from 64 ns up to about 70 s.
const BUCKETS: usize = 128;

/// A lock-free log-linear latency histogram.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
        }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < 64 {
        return 0;
    }
    let msb = 63 - nanos.leading_zeros() as usize;
    let sub = ((nanos >> (msb - 2)) & 3) as usize;
    ((msb - 6) * 4 + sub + 1).min(BUCKETS - 1)
}

/// Upper bound of a bucket, in nanoseconds.
fn bucket_ceiling(index: usize) -> u64 {
    if index == 0 {
        return 64;
    }
    let msb = (index - 1) / 4 + 6;
    let sub = ((index - 1) % 4) as u64;
    (1u64 << msb) + (sub + 1) * (1u64 << (msb - 2))
}

impl Histogram {
    pub(crate) fn record(&self, took: Duration, weight: u64) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(weight, Relaxed);
        self.count.fetch_add(weight, Relaxed);
    }

    fn snapshot(&self) -> LatencyStats {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let pct = |q: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_ceiling(i) as f64 / 1_000.0;
                }
            }
            bucket_ceiling(BUCKETS - 1) as f64 / 1_000.0
        };
        LatencyStats {
            count: total,
            p50_us: pct(0.50),
            p95_us: pct(0.95),
            p99_us: pct(0.99),
        }
    }

    fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
    }
}

/// The operations that get a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Set,
    Delete,
    Exists,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::Exists => "exists",
        }
    }
}

/// Error kinds counted separately.
const ERROR_KINDS: [&str; 9] = [
    "connection",
    "timeout",
    "redis",
    "codec",
    "crypto",
    "compression",
    "config",
    "closed",
    "circuit_open",
];

pub(crate) fn error_kind(err: &CacheError) -> &'static str {
    match err {
        CacheError::Connection(_) => "connection",
        CacheError::Timeout => "timeout",
        CacheError::Redis(_) => "redis",
        CacheError::Codec { .. } => "codec",
        CacheError::Crypto(_) => "crypto",
        CacheError::Compression(_) => "compression",
        CacheError::Config { .. } => "config",
        _ => "closed",
    }
}

/// Every counter of a two-tier cache.
pub(crate) struct Metrics {
    l1_hits: Striped,
    l1_misses: Striped,
    l1_hits_exported: export::Counter,
    l1_misses_exported: export::Counter,
    redis_hits: Count,
    redis_misses: Count,
    /// Gets that found nothing in any tier (Redis skipped or down included).
    pub(crate) misses: Count,
    pub(crate) sets: Count,
    pub(crate) deletes: Count,
    pub(crate) redis_set_failures: Count,
    pub(crate) slow_ops: Count,
    pub(crate) invalidations_sent: Count,
    pub(crate) invalidations_received: Count,
    pub(crate) l1_clears: Count,
    pub(crate) l1_evictions: Count,
    pub(crate) breaker_opens: Count,
    pub(crate) recoveries: Count,
    pub(crate) replayed: Count,
    pub(crate) dropped_writes: Count,
    errors: [Count; ERROR_KINDS.len()],
    pub(crate) compression: std::sync::Arc<CompressionCounters>,
    latency: [Histogram; 4],
    latency_exported: [export::Histogram; 4],
    l1_entries: export::Gauge,
    l1_bytes: export::Gauge,
}

const OPS: [Op; 4] = [Op::Get, Op::Set, Op::Delete, Op::Exists];

impl Metrics {
    /// The counters of the cache labelled `cache` (its prefix).
    pub(crate) fn new(cache: &str) -> Self {
        let count = |name| Count::new(name, cache);
        let tier = |name, tier| Count::labelled(name, cache, Some(("tier", tier)));
        Metrics {
            l1_hits: Striped::default(),
            l1_misses: Striped::default(),
            l1_hits_exported: export::counter("memorix_hits_total", cache, Some(("tier", "l1"))),
            l1_misses_exported: export::counter("memorix_misses_total", cache, Some(("tier", "l1"))),
            redis_hits: tier("memorix_hits_total", "redis"),
            redis_misses: tier("memorix_misses_total", "redis"),
            misses: count("memorix_gets_missed_total"),
            sets: count("memorix_sets_total"),
            deletes: count("memorix_deletes_total"),
            redis_set_failures: count("memorix_redis_set_failures_total"),
            slow_ops: count("memorix_slow_operations_total"),
            invalidations_sent: count("memorix_invalidations_sent_total"),
            invalidations_received: count("memorix_invalidations_received_total"),
            l1_clears: count("memorix_l1_clears_total"),
            l1_evictions: count("memorix_l1_evictions_total"),
            breaker_opens: count("memorix_circuit_breaker_opens_total"),
            recoveries: count("memorix_recoveries_total"),
            replayed: count("memorix_replayed_writes_total"),
            dropped_writes: count("memorix_dropped_writes_total"),
            errors: ERROR_KINDS.map(|kind| Count::labelled("memorix_errors_total", cache, Some(("kind", kind)))),
            compression: std::sync::Arc::new(CompressionCounters::exported(cache)),
            latency: Default::default(),
            latency_exported: OPS.map(|op| export::histogram("memorix_operation_seconds", cache, op.name())),
            l1_entries: export::gauge("memorix_l1_entries", cache),
            l1_bytes: export::gauge("memorix_l1_bytes", cache),
        }
    }

    /// Records one timed operation that stands for `weight` operations
    /// (a sampled L1 hit), in the histogram `stats()` reads and the exported one.
    pub(crate) fn latency(&self, op: Op, took: Duration, weight: u64) {
        self.latency[op as usize].record(took, weight);
        self.latency_exported[op as usize].record_many(took.as_secs_f64(), weight as usize);
    }

    pub(crate) fn error(&self, kind: &'static str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].bump();
        }
    }

    #[inline]
    pub(crate) fn l1_hit(&self) {
        self.l1_hits.add(1);
        self.l1_hits_exported.increment(1);
    }

    pub(crate) fn l1_miss(&self) {
        self.l1_misses.add(1);
        self.l1_misses_exported.increment(1);
    }

    pub(crate) fn redis_get(&self, hit: bool) {
        if hit {
            self.redis_hits.bump();
        } else {
            self.redis_misses.bump();
        }
    }

    /// Sets the exported L1 gauges.
    pub(crate) fn l1_size(&self, entries: u64, bytes: u64) {
        self.l1_entries.set(entries as f64);
        self.l1_bytes.set(bytes as f64);
    }

    /// Gets that found a value in either tier, and gets that found none.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.l1_hits.get() + self.redis_hits.get(), self.misses.get())
    }

    /// What `stats()` returns; also refreshes the exported L1 gauges.
    pub(crate) fn snapshot(&self, l1_entries: u64, l1_bytes: u64) -> GenericStats {
        self.l1_size(l1_entries, l1_bytes);
        let (hits, misses) = self.totals();
        GenericStats {
            gets: hits + misses,
            hits,
            misses,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            l1: TierStats {
                hits: self.l1_hits.get(),
                misses: self.l1_misses.get(),
            },
            redis: TierStats {
                hits: self.redis_hits.get(),
                misses: self.redis_misses.get(),
            },
            sets: self.sets.get(),
            deletes: self.deletes.get(),
            redis_set_failures: self.redis_set_failures.get(),
            slow_operations: self.slow_ops.get(),
            latency: OPS
                .into_iter()
                .map(|op| (op.name().to_owned(), self.latency[op as usize].snapshot()))
                .collect(),
            compression: self.compression.snapshot(),
            errors: ERROR_KINDS
                .iter()
                .zip(&self.errors)
                .map(|(k, c)| ((*k).to_owned(), c.get()))
                .filter(|(_, c)| *c > 0)
                .collect(),
            invalidations_sent: self.invalidations_sent.get(),
            invalidations_received: self.invalidations_received.get(),
            l1_clears: self.l1_clears.get(),
            l1_evictions: self.l1_evictions.get(),
            l1_entries,
            l1_bytes,
            circuit_breaker_opens: self.breaker_opens.get(),
            recoveries: self.recoveries.get(),
            replayed_writes: self.replayed.get(),
            dropped_writes: self.dropped_writes.get(),
        }
    }

    /// Zeroes what `stats()` reads (exported counters stay monotonic).
    pub(crate) fn reset(&self) {
        self.l1_hits.reset();
        self.l1_misses.reset();
        for c in [
            &self.redis_hits,
            &self.redis_misses,
            &self.misses,
            &self.sets,
            &self.deletes,
            &self.redis_set_failures,
            &self.slow_ops,
            &self.invalidations_sent,
            &self.invalidations_received,
            &self.l1_clears,
            &self.l1_evictions,
            &self.breaker_opens,
            &self.recoveries,
            &self.replayed,
            &self.dropped_writes,
        ]
        .into_iter()
        .chain(&self.errors)
        {
            c.reset();
        }
        for h in &self.latency {
            h.reset();
        }
        self.compression.reset();
    }
}

/// Hits and misses of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TierStats {
    /// Gets answered by this tier.
    pub hits: u64,
    /// Gets this tier could not answer.
    pub misses: u64,
}

/// Latency percentiles of one operation, in microseconds (bucket upper bounds,
/// within 25 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencyStats {
    /// Operations timed (L1 hits count with their sampling weight).
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// Compression totals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CompressionStats {
    /// Values above the threshold that went through zlib.
    pub compressions: u64,
    /// Bytes before compression.
    pub bytes_in: u64,
    /// Bytes after (a value that did not shrink counts as stored raw).
    pub bytes_out: u64,
    /// `bytes_in / bytes_out` (0 before the first compression).
    pub ratio: f64,
    /// Time spent compressing, in milliseconds.
    pub total_time_ms: f64,
}

/// A serializable snapshot of a two-tier cache's monitoring.
///
/// The hit rate counts gets only: sets and deletes never dilute it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GenericStats {
    /// Gets served (hits + misses).
    pub gets: u64,
    /// Gets that found a value in either tier.
    pub hits: u64,
    /// Gets that found nothing in either tier.
    pub misses: u64,
    /// `hits / gets`, 0 before the first get.
    pub hit_rate: f64,
    /// The memory tier.
    pub l1: TierStats,
    /// The Redis tier (only asked after an L1 miss).
    pub redis: TierStats,
    /// Sets.
    pub sets: u64,
    /// Deletes.
    pub deletes: u64,
    /// Sets whose Redis write failed (the value was kept in L1 and queued for replay).
    pub redis_set_failures: u64,
    /// Operations slower than the slow-operation threshold.
    pub slow_operations: u64,
    /// Latency per operation: `get`, `set`, `delete`, `exists`.
    pub latency: BTreeMap<String, LatencyStats>,
    /// Compression totals.
    pub compression: CompressionStats,
    /// Errors by kind (`connection`, `timeout`, `codec`, `circuit_open`, ...); zero kinds are left out.
    pub errors: BTreeMap<String, u64>,
    /// Invalidation messages published to other instances.
    pub invalidations_sent: u64,
    /// Invalidation messages received from other instances.
    pub invalidations_received: u64,
    /// Times L1 was cleared wholesale (after a reconnect, a purge, a prefix change).
    pub l1_clears: u64,
    /// Entries the L1 evicted for space.
    pub l1_evictions: u64,
    /// Live L1 entries.
    pub l1_entries: u64,
    /// Bytes held by L1 values.
    pub l1_bytes: u64,
    /// Times the circuit breaker opened.
    pub circuit_breaker_opens: u64,
    /// Times the cache reconnected after an outage (or after starting without Redis).
    pub recoveries: u64,
    /// Writes and removes replayed to Redis after an outage.
    pub replayed_writes: u64,
    /// Writes made during an outage that did not fit `max_pending_writes`
    /// (also `memorix_dropped_writes_total`): their keys are removed from
    /// Redis on recovery instead of replayed.
    pub dropped_writes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for nanos in [0u64, 63, 64, 80, 100, 1_000, 12_345, 1_000_000, 3_000_000_000] {
            let b = bucket_of(nanos);
            assert!(b >= last);
            last = b;
            assert!(bucket_ceiling(b) >= nanos, "{nanos} -> {b} -> {}", bucket_ceiling(b));
        }
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(10), 1);
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(5), 1);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert!((10.0..=13.0).contains(&s.p50_us), "{s:?}");
        assert!((5_000.0..=6_300.0).contains(&s.p99_us), "{s:?}");
    }
}
