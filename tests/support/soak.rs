//! Fault-injection soak: 64 tasks call a `#[cached]` function and write values
//! through a `GenericRedisCache` while redis-server is killed and restarted
//! twice. Shared by `tests/soak.rs` (asserts) and `benches/soak.rs` (reports
//! latencies).

use crate::support::RedisServer;
use memorix::prelude::*;
use memorix::{cached, GenericRedisCache};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TASKS: usize = 64;
const ITEMS: u32 = 256;

/// Body runs of the memoized function (all of them, and those during outages).
static BODY_RUNS: AtomicU64 = AtomicU64::new(0);
static BODY_RUNS_IN_OUTAGE: AtomicU64 = AtomicU64::new(0);
static IN_OUTAGE: AtomicBool = AtomicBool::new(false);

#[cached(ttl = "10m", key = "item:{id}")]
async fn item(id: u32) -> Result<u64, String> {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    if IN_OUTAGE.load(Ordering::Relaxed) {
        BODY_RUNS_IN_OUTAGE.fetch_add(1, Ordering::Relaxed);
    }
    Ok(u64::from(id) * 2)
}

/// What one soak run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Calls of the memoized function, and how many happened while Redis was down.
    pub calls: u64,
    pub calls_in_outage: u64,
    pub body_runs: u64,
    pub body_runs_in_outage: u64,
    /// Errors that reached a caller (must stay 0).
    pub caller_errors: u64,
    /// Reads of earlier writes answered from L1 while Redis was down.
    pub l1_reads_in_outage: u64,
    /// Writes made after the last recovery, and how many a plain Redis client then saw.
    pub final_writes: u64,
    pub final_writes_visible: u64,
    /// Seconds from the last restart until Redis took writes through the cache again.
    pub recovery_secs: f64,
    /// Per-call latencies in microseconds, split by phase.
    pub latencies_up_us: Vec<u64>,
    pub latencies_outage_us: Vec<u64>,
}

/// The `q` quantile of `samples` (sorts them).
pub fn quantile(samples: &mut [u64], q: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// Runs the soak for about `phase * 7` (up, down, up, down, up, then checks).
pub async fn run(phase: Duration) -> SoakReport {
    let mut server = RedisServer::start();
    let config = server
        .config()
        .into_builder()
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .build()
        .expect("config");
    let cache = Arc::new(
        GenericRedisCache::builder()
            .redis(config)
            .prefix("soak:")
            .l1_cache_size(10_000)
            .probe_interval(Duration::from_millis(100))
            .connect()
            .await
            .expect("two-tier cache"),
    );
    memorix::memo::init_shared(cache.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(SoakReport::default()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (cache, stop, report) = (cache.clone(), stop.clone(), report.clone());
            tokio::spawn(async move { worker(t, cache, stop, report).await })
        })
        .collect();

    for _ in 0..2 {
        tokio::time::sleep(phase).await;
        IN_OUTAGE.store(true, Ordering::SeqCst);
        server.stop();
        tokio::time::sleep(phase).await;
        server.restart();
        IN_OUTAGE.store(false, Ordering::SeqCst);
    }
    let restarted = Instant::now();
    // Recovery: the cache takes writes into Redis again.
    let mut raw = server.raw().await;
    let recovery_secs = loop {
        let probe = format!("probe:{}", restarted.elapsed().as_micros());
        let _ = cache.set(&probe, &1u8, None).await;
        let seen: bool = redis::cmd("EXISTS")
            .arg(format!("soak:{probe}"))
            .query_async(&mut raw)
            .await
            .unwrap_or(false);
        if seen || restarted.elapsed() > Duration::from_secs(20) {
            break restarted.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("no worker panicked");
    }

    // Every write made after recovery is in Redis: the key exists for a plain
    // client, and a second instance without L1 reads the value back.
    let checker = GenericRedisCache::builder()
        .redis(server.config())
        .prefix("soak:")
        .enable_l1_cache(false)
        .connect()
        .await
        .expect("checker");
    let mut final_writes = 0;
    let mut visible = 0;
    for t in 0..TASKS {
        let key = format!("final:{t}");
        cache.set(&key, &(t as u64), None).await.expect("write after recovery");
        final_writes += 1;
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("soak:{key}"))
            .query_async(&mut raw)
            .await
            .unwrap_or(false);
        if exists && checker.get::<u64>(&key).await.ok().flatten() == Some(t as u64) {
            visible += 1;
        }
    }
    let mut report = std::mem::take(&mut *report.lock().unwrap());
    report.body_runs = BODY_RUNS.load(Ordering::Relaxed);
    report.body_runs_in_outage = BODY_RUNS_IN_OUTAGE.load(Ordering::Relaxed);
    report.final_writes = final_writes;
    report.final_writes_visible = visible;
    report.recovery_secs = recovery_secs;
    report
}

async fn worker(t: usize, cache: Arc<GenericRedisCache>, stop: Arc<AtomicBool>, report: Arc<Mutex<SoakReport>>) {
    let mut local = SoakReport::default();
    let mut n: u32 = 0;
    let own_key = format!("task:{t}");
    let _ = cache.set(&own_key, &(t as u64), None).await;
    while !stop.load(Ordering::Relaxed) {
        let id = (n.wrapping_mul(2_654_435_761) ^ t as u32) % ITEMS;
        let outage = IN_OUTAGE.load(Ordering::Relaxed);
        let started = Instant::now();
        match item(id).await {
            Ok(v) => assert_eq!(v, u64::from(id) * 2, "memoized value"),
            Err(_) => local.caller_errors += 1,
        }
        let micros = started.elapsed().as_micros() as u64;
        if outage {
            local.calls_in_outage += 1;
            local.latencies_outage_us.push(micros);
            if let Ok(Some(v)) = cache.get::<u64>(&own_key).await {
                assert_eq!(v, t as u64);
                local.l1_reads_in_outage += 1;
            }
        } else {
            local.latencies_up_us.push(micros);
        }
        local.calls += 1;
        // Writes keep flowing in every phase; during an outage they land in L1
        // and are replayed.
        if n % 16 == 0 && cache.set(&format!("w:{t}:{}", n % 64), &n, None).await.is_err() {
            local.caller_errors += 1;
        }
        n = n.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut shared = report.lock().unwrap();
    shared.calls += local.calls;
    shared.calls_in_outage += local.calls_in_outage;
    shared.caller_errors += local.caller_errors;
    shared.l1_reads_in_outage += local.l1_reads_in_outage;
    shared.latencies_up_us.extend(local.latencies_up_us);
    shared.latencies_outage_us.extend(local.latencies_outage_us);
}
