//! A server that stops answering (SIGSTOP: sockets open, no replies) costs
//! one waited-out timeout, not one per call: the shared health breaker opens
//! on the first timeout, every path fails fast (direct calls with a typed
//! error, memoized calls run their body uncached, `#[cache_put]` returns its
//! result, the rate limiter answers its policy), and caching resumes within
//! 1 s of SIGCONT. Also: the two-tier engine's breaker does not re-open
//! right after a recovery.

mod support;

use memorix::prelude::*;
use memorix::ratelimit::{OnUnavailable, Rate, RateLimiter, Store};
use memorix::{cache_put, cached, GenericRedisCache, RedisCache, RedisConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{unique_prefix, RedisServer};

/// One test at a time: the latency figures must not include another
/// test's load on the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIMEOUT: Duration = Duration::from_secs(1);

fn config(server: &RedisServer, response_timeout: Duration) -> RedisConfig {
    server
        .config()
        .into_builder()
        .response_timeout(response_timeout)
        .build()
        .unwrap()
}

async fn cache(server: &RedisServer, prefix: &str, response_timeout: Duration) -> RedisCache {
    RedisCache::builder()
        .config(config(server, response_timeout))
        .prefix(prefix)
        .connect()
        .await
        .unwrap()
}

#[cached(cache = "hung-memo", ttl = 60, key = "double:{id}")]
async fn double(id: u64) -> Result<u64, String> {
    Ok(id * 2)
}

#[cache_put(cache = "hung-put", ttl = 60, key = "put:{id}")]
async fn put(id: u64) -> Result<u64, String> {
    Ok(id + 1)
}

/// `q`-quantile of `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// One call: when it started (since the test's epoch) and how long it took.
#[derive(Clone, Copy)]
struct Sample {
    started: Duration,
    took: Duration,
    memo: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_for_5s_under_64_tasks_costs_one_timeout_then_fails_fast() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let prefix = unique_prefix("hung");
    memorix::register("hung-memo", cache(&server, &prefix, TIMEOUT).await);
    let direct = Arc::new(cache(&server, &prefix, TIMEOUT).await);

    let epoch = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let direct_errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let (samples, stop, direct, direct_errors) =
            (samples.clone(), stop.clone(), direct.clone(), direct_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                n += 1;
                // Fresh keys: every memoized call reads, runs the body and writes.
                let id = task * 1_000_000 + n;
                let memo = n % 2 == 0;
                let started = Instant::now();
                if memo {
                    assert_eq!(double(id).await, Ok(id * 2), "the body's result, cached or not");
                } else {
                    let key = format!("direct:{id}");
                    let round = async {
                        direct.set(&key, &id, None).await?;
                        direct.get::<u64>(&key).await
                    };
                    match round.await {
                        Ok(found) => assert_eq!(found, Some(id)),
                        Err(err) => {
                            assert!(err.is_connection() || err.is_timeout(), "typed: {err}");
                            direct_errors.fetch_add(1, SeqCst);
                        }
                    }
                }
                let took = started.elapsed();
                samples.lock().unwrap().push(Sample {
                    started: started - epoch,
                    took,
                    memo,
                });
                // Paced load: about 64 calls every 5 ms.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.freeze();
    let frozen = epoch.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.thaw();
    let thawed = epoch.elapsed();

    // Caching resumes: a direct round trip works and a memoized call lands
    // in Redis.
    let mut raw = server.raw().await;
    let resumed = loop {
        let id = 7_000_000_000 + epoch.elapsed().as_micros() as u64;
        let round = async {
            direct.set("resume", &id, None).await?;
            direct.get::<u64>("resume").await
        };
        let direct_ok = matches!(round.await, Ok(Some(found)) if found == id);
        assert_eq!(double(id).await, Ok(id * 2));
        let stored: bool = redis::cmd("EXISTS")
            .arg(format!("{prefix}{}", double_cache_key(id)))
            .query_async(&mut raw)
            .await
            .unwrap();
        if direct_ok && stored {
            break epoch.elapsed() - thawed;
        }
        assert!(
            epoch.elapsed() - thawed < Duration::from_secs(2),
            "caching did not resume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let samples = samples.lock().unwrap().clone();
    let slack = Duration::from_millis(150);
    // Calls in flight at the freeze, or started before the breaker opened,
    // wait at most one timeout.
    let during: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.started + s.took > frozen && s.started < thawed)
        .collect();
    let longest = during.iter().map(|s| s.took).max().unwrap();
    assert!(longest <= TIMEOUT + slack, "longest wait while frozen: {longest:?}");
    // After that window: fail fast.
    let after_window = |memo: bool| -> Vec<Duration> {
        during
            .iter()
            .filter(|s| s.memo == memo && s.started > frozen + TIMEOUT + slack)
            .map(|s| s.took)
            .collect()
    };
    let (mut memo, mut direct_calls) = (after_window(true), after_window(false));
    assert!(
        memo.len() > 1000 && direct_calls.len() > 1000,
        "{} {}",
        memo.len(),
        direct_calls.len()
    );
    let memo_p99 = quantile(&mut memo, 0.99);
    let direct_p50 = quantile(&mut direct_calls, 0.5);
    let direct_p99 = quantile(&mut direct_calls, 0.99);
    println!(
        "hung server: longest in-flight wait {longest:?}; after it, memoized p99 {memo_p99:?} ({} calls), \
         direct p50 {direct_p50:?} p99 {direct_p99:?} ({} calls); caching resumed {resumed:?} after SIGCONT",
        memo.len(),
        direct_calls.len()
    );
    assert!(memo_p99 <= Duration::from_millis(5), "memoized p99 {memo_p99:?}");
    assert!(direct_p99 <= Duration::from_millis(5), "direct p99 {direct_p99:?}");
    assert!(direct_p50 <= Duration::from_millis(1), "direct p50 {direct_p50:?}");
    assert!(direct_errors.load(SeqCst) > 0);
    assert!(resumed < Duration::from_secs(1), "resumed {resumed:?} after SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_put_and_the_rate_limiter_answer_at_once_while_hung() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let prefix = unique_prefix("hung-put");
    let timeout = Duration::from_millis(300);
    memorix::register("hung-put", cache(&server, &prefix, timeout).await);
    let store = Store::connect(&config(&server, timeout)).await.unwrap();
    let limiter = |policy: OnUnavailable, name: &str| {
        RateLimiter::builder(Rate::parse("1000/m").unwrap())
            .prefix(format!("{prefix}rl:{name}:"))
            .store(store.clone())
            .on_unavailable(policy)
            .build()
            .unwrap()
    };
    let open = limiter(OnUnavailable::Allow, "open");
    let closed = limiter(OnUnavailable::Deny, "closed");
    assert_eq!(put(1).await, Ok(2));
    assert!(open.check("user").await.unwrap().allowed);

    server.freeze();
    // The first call waits out one timeout and opens the breakers.
    let started = Instant::now();
    assert_eq!(put(2).await, Ok(3));
    assert!(
        started.elapsed() <= timeout + Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let _ = open.check("user").await.unwrap();
    assert!(
        started.elapsed() <= timeout + Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );

    // Then everything answers at once (no call near the timeout; the
    // typical cost checked on the median, as the machine is shared).
    let mut times = Vec::new();
    for i in 0..200u64 {
        let started = Instant::now();
        assert_eq!(put(i).await, Ok(i + 1));
        assert!(open.check("user").await.unwrap().allowed, "fail-open");
        assert!(!closed.check("user").await.unwrap().allowed, "fail-closed");
        let took = started.elapsed();
        assert!(took < timeout / 3, "call {i} took {took:?}");
        times.push(took);
    }
    let median = quantile(&mut times, 0.5);
    assert!(
        median < Duration::from_millis(1),
        "median of a put and two checks: {median:?}"
    );
    assert!(open.stats().snapshot().unavailable_allowed >= 200);
    assert!(closed.stats().snapshot().unavailable_denied >= 200);

    server.thaw();
    let thawed = Instant::now();
    let mut raw = server.raw().await;
    loop {
        assert_eq!(put(500).await, Ok(501));
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}memorix:put:500"))
            .query_async(&mut raw)
            .await
            .unwrap();
        let before = open.stats().snapshot().allowed;
        let decided = open.check("user").await.unwrap().allowed && open.stats().snapshot().allowed > before;
        if stored.is_some() && decided {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(1),
            "writes and decisions resume within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_behind_sentinel_costs_one_timeout_then_fails_fast() {
    let _serial = SERIAL.lock().await;
    let deployment = support::sentinel::RedisSentinel::start();
    let timeout = Duration::from_millis(300);
    let config = deployment
        .config()
        .into_builder()
        .response_timeout(timeout)
        .build()
        .unwrap();
    let cache = RedisCache::builder()
        .config(config)
        .prefix(unique_prefix("hung-sentinel"))
        .connect()
        .await
        .unwrap();
    cache.set("k", &1u8, None).await.unwrap();

    // Frozen for less than the sentinels' down-after (2 s): no failover.
    deployment.primary().freeze();
    let frozen = Instant::now();
    let err = cache.get::<u8>("k").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        frozen.elapsed() <= timeout + Duration::from_millis(150),
        "{:?}",
        frozen.elapsed()
    );
    let mut times = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let err = cache.get::<u8>("k").await.unwrap_err();
        assert!(err.is_connection(), "{err}");
        assert!(started.elapsed() < timeout / 3, "{:?}", started.elapsed());
        times.push(started.elapsed());
    }
    let median = quantile(&mut times, 0.5);
    assert!(
        median < Duration::from_millis(1),
        "median failing-fast call: {median:?}"
    );
    deployment.primary().thaw();
    let thawed = Instant::now();
    while cache.get::<u8>("k").await.ok() != Some(Some(1)) {
        assert!(thawed.elapsed() < Duration::from_secs(1), "calls resume within 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Kills and restarts the server under 48 tasks writing and reading, six
/// times: each outage opens the two-tier breaker once, the recovery ends
/// within 1 s although writes keep arriving (they wait for the replay
/// instead of growing the queue it drains), and the breaker stays closed
/// after it (no failure or queued write from before the recovery re-opens
/// it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_tier_breaker_stays_closed_after_each_recovery() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::start();
    let config = RedisConfig::from_url(&format!(
        "{}?connect_timeout=300ms&response_timeout=300ms",
        server.url()
    ))
    .unwrap();
    let cache = Arc::new(
        GenericRedisCache::builder()
            .redis(config)
            .prefix(unique_prefix("two-tier"))
            .connect()
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..48u64 {
        let (cache, stop) = (cache.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                n += 1;
                let key = format!("k{}", (task * 31 + n) % 200);
                cache.set(&key, &n, None).await.unwrap();
                cache.get::<u64>(&key).await.unwrap();
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        }));
    }
    let mut recoveries = Vec::new();
    for round in 1..=6u64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop();
        let opened = Instant::now();
        while cache.is_redis_available() {
            assert!(opened.elapsed() < Duration::from_secs(2), "breaker never opened");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.restart();
        let restarted = Instant::now();
        while !cache.is_redis_available() {
            assert!(
                restarted.elapsed() < Duration::from_secs(1),
                "round {round}: no recovery; {} writes pending, {:?}",
                cache.pending_writes(),
                cache.stats()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        recoveries.push(restarted.elapsed());
        // Load keeps running after the recovery: the breaker stays closed.
        let closed = Instant::now();
        while closed.elapsed() < Duration::from_millis(300) {
            assert!(cache.is_redis_available(), "round {round}: re-opened after recovery");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(cache.stats().circuit_breaker_opens, round, "one open per outage");
    }
    stop.store(true, SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    println!("two-tier recoveries after restart: {recoveries:?}");
}
