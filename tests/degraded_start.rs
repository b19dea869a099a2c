//! Starting while Redis is down: `RedisCache::connect`, `CryptRedisCache`,
//! `memo::init_from_env()` and the rate limiter's `Store::connect` succeed,
//! calls fail fast (memoized functions run their body, limiters answer their
//! policy), and caching resumes within 1 s of a server starting on that port,
//! without a restart. `fail_on_connection_error` keeps the strict start.

mod support;

use memorix::prelude::*;
use memorix::ratelimit::{OnUnavailable, Rate, RateLimiter, Store};
use memorix::{cached, memo, CryptRedisCache, RedisCache, RedisConfig};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};
use support::redis_server::free_port;
use support::RedisServer;

/// Both tests set `REDIS_URL` and `MEMORIX_FAIL_ON_CONNECTION_ERROR`.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn config(port: u16) -> RedisConfig {
    RedisConfig::builder()
        .port(port)
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

static NAMED_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "degraded", ttl = 60, key = "named:{id}")]
async fn named(id: u64) -> u64 {
    NAMED_LOADS.fetch_add(1, SeqCst);
    id * 3
}

#[cached(ttl = 60, key = "default:{id}")]
async fn on_default(id: u64) -> u64 {
    id * 5
}

/// Runs `call`, records how long it took in `times`, and checks it did not
/// wait for a timeout (300 ms; a shared 2-core machine may preempt a call
/// for a few ms, so the typical cost is checked on the median).
async fn fast<T>(times: &mut Vec<Duration>, what: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "{what} took {took:?}");
    times.push(took);
    out
}

#[tokio::test]
async fn every_entry_point_starts_degraded_and_caches_once_redis_starts() {
    let _env = ENV.lock().await;
    let port = free_port();
    let config = config(port);

    let direct = RedisCache::connect(config.clone()).await.expect("degraded start");
    memorix::register("degraded", RedisCache::connect(config.clone()).await.unwrap());
    let crypt = CryptRedisCache::builder()
        .key(KEY)
        .config(config.clone())
        .connect()
        .await
        .expect("degraded start");
    let store = Store::connect(&config).await.expect("degraded start");
    std::env::set_var("REDIS_URL", config.to_string());
    std::env::remove_var("MEMORIX_FAIL_ON_CONNECTION_ERROR");
    assert!(memo::init_from_env().await.expect("degraded start"));
    let open = RateLimiter::builder(Rate::parse("100/m").unwrap())
        .prefix("degraded:rl:open:")
        .store(store.clone())
        .build()
        .unwrap();
    let closed = RateLimiter::builder(Rate::parse("100/m").unwrap())
        .prefix("degraded:rl:closed:")
        .store(store)
        .on_unavailable(OnUnavailable::Deny)
        .build()
        .unwrap();

    // Serving while Redis is down: typed errors, the body's result, the policy.
    let mut times = Vec::new();
    let t = &mut times;
    for i in 0..20u64 {
        let err = fast(t, "direct get", direct.get::<u64>("k")).await.unwrap_err();
        assert!(err.is_connection(), "{err}");
        let err = fast(t, "crypt set", crypt.set("k", &i, None)).await.unwrap_err();
        assert!(err.is_connection(), "{err}");
        assert_eq!(fast(t, "memoized", named(i)).await, i * 3);
        assert_eq!(fast(t, "memoized on the default cache", on_default(i)).await, i * 5);
        assert!(fast(t, "fail-open limiter", open.check("u")).await.unwrap().allowed);
        assert!(!fast(t, "fail-closed limiter", closed.check("u")).await.unwrap().allowed);
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median < Duration::from_millis(1),
        "median call {median:?} while Redis is down"
    );
    assert_eq!(NAMED_LOADS.load(SeqCst), 20, "uncached while Redis is down");

    let server = RedisServer::start_on(port);
    let started = Instant::now();
    let mut raw = server.raw().await;
    let mut round = 0u64;
    loop {
        round += 1;
        let direct_ok = async {
            direct.set("k", &round, None).await?;
            direct.get::<u64>("k").await
        }
        .await
        .is_ok_and(|found| found == Some(round));
        let crypt_ok = async {
            crypt.set("c", &round, None).await?;
            crypt.get::<u64>("c").await
        }
        .await
        .is_ok_and(|found| found == Some(round));
        let id = 1000 + round;
        assert_eq!(named(id).await, id * 3);
        assert_eq!(on_default(id).await, id * 5);
        let (named_stored, default_stored): (bool, bool) = redis::pipe()
            .exists(named_cache_key(id))
            .exists(on_default_cache_key(id))
            .query_async(&mut raw)
            .await
            .unwrap();
        let before = open.stats().snapshot().allowed;
        let limited = open.check("u").await.unwrap().allowed && open.stats().snapshot().allowed > before;
        if direct_ok && crypt_ok && named_stored && default_stored && limited {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "caching resumes within 1 s: direct {direct_ok}, crypt {crypt_ok}, memo {named_stored}, \
             default {default_stored}, limiter {limited}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "start with Redis down: caching resumed {:?} after the server started",
        started.elapsed()
    );
    memorix::init(memorix::MemoryCache::new(100));
}

#[tokio::test]
async fn fail_on_connection_error_keeps_the_strict_start() {
    let _env = ENV.lock().await;
    let port = free_port();
    let strict = config(port)
        .into_builder()
        .fail_on_connection_error(true)
        .build()
        .unwrap();

    let err = RedisCache::builder()
        .config(config(port))
        .fail_on_connection_error(true)
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(RedisCache::connect(strict.clone()).await.unwrap_err().is_connection());
    let err = CryptRedisCache::builder()
        .key(KEY)
        .config(config(port))
        .fail_on_connection_error(true)
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(Store::connect(&strict).await.unwrap_err().is_connection());

    std::env::set_var("REDIS_URL", config(port).to_string());
    std::env::set_var("MEMORIX_FAIL_ON_CONNECTION_ERROR", "true");
    let err = memo::init_from_env().await.unwrap_err();
    std::env::remove_var("MEMORIX_FAIL_ON_CONNECTION_ERROR");
    assert!(err.is_connection(), "{err}");
}
