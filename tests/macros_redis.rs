//! The attribute macros on real redis-server processes: cache-aside, companions,
//! write-through / eviction, blocking functions, single-flight, stale values,
//! encryption, the default cache from `init` / `REDIS_URL`, and fail-open when
//! the server dies.

mod support;

use memorix::memo::{self, ENCRYPTED_CACHE};
use memorix::{cache_evict, cache_put, cached, CryptRedisCache, RedisCache};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use support::{unique_prefix, RedisServer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    bio: String,
}

async fn redis_cache(server: &RedisServer, test: &str) -> (RedisCache, String) {
    let prefix = unique_prefix(test);
    let cache = RedisCache::builder()
        .config(server.config())
        .prefix(prefix.clone())
        .connect()
        .await
        .expect("connect to the test server");
    (cache, prefix)
}

static PROFILE_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "redis-profiles", ttl = 30, key = "profile:{id}")]
async fn profile(id: u64) -> Result<Profile, String> {
    PROFILE_LOADS.fetch_add(1, SeqCst);
    Ok(Profile {
        id,
        bio: format!("bio{id}"),
    })
}

#[cache_put(cache = "redis-profiles", ttl = 30, key = "profile:{p.id}")]
async fn update_profile(p: Profile) -> Result<Profile, String> {
    Ok(p)
}

#[cache_evict(cache = "redis-profiles", key = "profile:{id}")]
async fn remove_profile(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn cache_aside_write_through_and_eviction_in_redis() {
    let server = RedisServer::start();
    let (cache, prefix) = redis_cache(&server, "profiles").await;
    memorix::register("redis-profiles", cache);
    let mut raw = server.raw().await;

    let before = PROFILE_LOADS.load(SeqCst);
    assert_eq!(profile(1).await.unwrap().bio, "bio1");
    assert_eq!(profile(1).await.unwrap().bio, "bio1");
    assert_eq!(
        PROFILE_LOADS.load(SeqCst) - before,
        1,
        "the second call is served by Redis"
    );
    let full_key = format!("{prefix}profile:1");
    let ttl: i64 = raw.ttl(&full_key).await.unwrap();
    assert!((1..=30).contains(&ttl), "stored with the attribute's TTL, got {ttl}");

    update_profile(Profile {
        id: 1,
        bio: "updated".into(),
    })
    .await
    .unwrap();
    assert_eq!(profile(1).await.unwrap().bio, "updated");
    remove_profile(1).await.unwrap();
    let exists: bool = raw.exists(&full_key).await.unwrap();
    assert!(!exists, "evicted from Redis");
    assert_eq!(profile(1).await.unwrap().bio, "bio1");
    assert_eq!(PROFILE_LOADS.load(SeqCst) - before, 2);

    assert!(profile_invalidate(1).await.unwrap());
    profile_prime(
        2,
        Profile {
            id: 2,
            bio: "primed".into(),
        },
    )
    .await
    .unwrap();
    let exists: bool = raw.exists(format!("{prefix}profile:2")).await.unwrap();
    assert!(exists, "prime writes to Redis");
    assert_eq!(profile(2).await.unwrap().bio, "primed");
}

static STAMPEDE: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "redis-stampede", ttl = 30, key = "cold:{id}")]
async fn cold(id: u32) -> u32 {
    STAMPEDE.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_on_redis_runs_the_body_once() {
    let server = RedisServer::start();
    let (cache, _) = redis_cache(&server, "stampede").await;
    memorix::register("redis-stampede", cache);
    let callers: Vec<_> = (0..1000).map(|_| tokio::spawn(cold(9))).collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 9);
    }
    assert_eq!(STAMPEDE.load(SeqCst), 1);
}

static FAIL: AtomicBool = AtomicBool::new(false);

#[cached(cache = "redis-stale", ttl = "100ms", stale_if_error = "1m", key = "stale:{id}")]
async fn quote(id: u32) -> Result<String, String> {
    if FAIL.load(SeqCst) {
        return Err("upstream down".into());
    }
    Ok(format!("quote{id}"))
}

#[tokio::test]
async fn stale_if_error_keeps_the_last_good_value_in_redis() {
    let server = RedisServer::start();
    let (cache, prefix) = redis_cache(&server, "stale").await;
    memorix::register("redis-stale", cache);
    assert_eq!(quote(1).await.unwrap(), "quote1");
    let mut raw = server.raw().await;
    let pttl: i64 = raw.pttl(format!("{prefix}stale:1")).await.unwrap();
    assert!(pttl > 1_000, "kept for ttl + stale window, got {pttl} ms");
    tokio::time::sleep(Duration::from_millis(250)).await;
    FAIL.store(true, SeqCst);
    assert_eq!(quote(1).await.unwrap(), "quote1", "expired, failed: the stale value");
    FAIL.store(false, SeqCst);
    assert_eq!(quote(1).await.unwrap(), "quote1");
}

static SYNC_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "redis-sync", ttl = 30, codec = "json")]
fn settings(user: &str) -> Vec<String> {
    SYNC_LOADS.fetch_add(1, SeqCst);
    vec![format!("{user}:dark-mode")]
}

#[test]
fn blocking_functions_use_redis_from_plain_threads() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (cache, prefix) = runtime.block_on(redis_cache(&server, "sync"));
    memorix::register("redis-sync", cache);
    assert_eq!(settings("ada"), ["ada:dark-mode"]);
    assert_eq!(settings("ada"), ["ada:dark-mode"]);
    assert_eq!(SYNC_LOADS.load(SeqCst), 1);
    let stored: Option<String> = runtime.block_on(async {
        let mut raw = server.raw().await;
        raw.get(format!("{prefix}{}", settings_cache_key("ada"))).await.unwrap()
    });
    assert_eq!(stored.as_deref(), Some(r#"["ada:dark-mode"]"#), "JSON codec in Redis");
    assert!(settings_invalidate("ada").unwrap());
    assert_eq!(settings("ada"), ["ada:dark-mode"]);
    assert_eq!(SYNC_LOADS.load(SeqCst), 2);
}

static DOWN_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "redis-down", ttl = 30, key = "down:{id}")]
async fn resilient(id: u32) -> Result<u32, String> {
    DOWN_LOADS.fetch_add(1, SeqCst);
    Ok(id)
}

#[tokio::test]
async fn a_dead_server_never_fails_the_call() {
    let mut server = RedisServer::start();
    let (cache, _) = redis_cache(&server, "down").await;
    memorix::register("redis-down", cache);
    assert_eq!(resilient(1).await, Ok(1));
    server.stop();
    let errors = memo::stats().cache_errors;
    assert_eq!(resilient(1).await, Ok(1), "Redis is down: the body answers");
    assert_eq!(resilient(2).await, Ok(2));
    assert!(memo::stats().cache_errors >= errors + 2, "failures are counted");
    assert!(DOWN_LOADS.load(SeqCst) >= 3);
}

static SECRET_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(encrypt, ttl = 30, key = "ssn:{id}")]
async fn ssn(id: u32) -> String {
    SECRET_LOADS.fetch_add(1, SeqCst);
    format!("123-45-{id:04}")
}

#[tokio::test]
async fn encrypt_uses_the_registered_encrypted_engine() {
    let server = RedisServer::start();
    let prefix = unique_prefix("encrypt");
    let key = memorix::crypto::generate_key().unwrap();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .prefix(prefix.clone())
        .key(&key)
        .connect()
        .await
        .unwrap();
    memorix::register(ENCRYPTED_CACHE, cache);
    assert_eq!(ssn(7).await, "123-45-0007");
    assert_eq!(ssn(7).await, "123-45-0007");
    assert_eq!(SECRET_LOADS.load(SeqCst), 1);
    let mut raw = server.raw().await;
    let stored: Vec<u8> = raw.get(format!("{prefix}ssn:7")).await.unwrap();
    assert!(!stored.is_empty());
    assert!(
        !String::from_utf8_lossy(&stored).contains("123-45"),
        "stored encrypted, not in the clear"
    );
}

static DEFAULT_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 30, key = "default:{id}")]
async fn on_default(id: u32) -> u32 {
    DEFAULT_LOADS.fetch_add(1, SeqCst);
    id
}

/// The only test of this file that touches the default cache.
#[tokio::test]
async fn init_from_env_points_the_default_cache_at_redis() {
    let server = RedisServer::start();
    std::env::set_var("REDIS_URL", server.url());
    assert!(memo::init_from_env().await.unwrap());
    assert_eq!(on_default(5).await, 5);
    let mut raw = server.raw().await;
    let exists: bool = raw.exists("default:5").await.unwrap();
    assert!(exists, "memoized into the Redis of REDIS_URL");
    memo::default_cache().remove("default:5").await.unwrap();
    assert_eq!(on_default(5).await, 5);
    assert_eq!(DEFAULT_LOADS.load(SeqCst), 2);

    memorix::init(memorix::MemoryCache::new(100));
    assert_eq!(on_default(5).await, 5);
    assert_eq!(DEFAULT_LOADS.load(SeqCst), 3, "a new default cache starts empty");
    assert!(memo::default_cache().has("default:5").await.unwrap());
}
