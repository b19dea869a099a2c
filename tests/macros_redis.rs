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
    let full_key = format!("{prefix}memorix:profile:1");
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
    let exists: bool = raw.exists(format!("{prefix}memorix:profile:2")).await.unwrap();
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
    let pttl: i64 = raw.pttl(format!("{prefix}memorix:stale:1")).await.unwrap();
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

/// Serializes the tests that replace process-wide registrations (the
/// encrypted engine, the default cache, the rate-limit store).
static REGISTRY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn encrypt_uses_the_registered_encrypted_engine() {
    let _registry = REGISTRY.lock().await;
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
    let stored: Vec<u8> = raw.get(format!("{prefix}memorix:ssn:7")).await.unwrap();
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

#[cached(ttl = 30, key = "own:{id}", prefix = "app:")]
async fn own_prefix(id: u32) -> u32 {
    id
}

static VAULT_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(encrypt, ttl = 30, key = "vault:{id}")]
async fn vault(id: u32) -> String {
    VAULT_LOADS.fetch_add(1, SeqCst);
    format!("secret-{id}")
}

#[derive(Debug)]
struct Limited;

impl From<memorix::ratelimit::RateLimited> for Limited {
    fn from(_: memorix::ratelimit::RateLimited) -> Self {
        Limited
    }
}

#[memorix::rate_limit(key = "{user}", rate = "100/m")]
async fn limited(user: u32) -> Result<u32, Limited> {
    Ok(user)
}

/// The only test of this file that touches the default cache: zero setup from
/// the environment reaches every engine, whatever ran before it.
#[tokio::test]
async fn init_from_env_sets_up_cache_encryption_and_limiter() {
    let _registry = REGISTRY.lock().await;
    let server = RedisServer::start();
    let mut raw = server.raw().await;

    // Before any setup: `encrypt` runs uncached and says so in the stats (the
    // other encrypt test may have left its engine, on a stopped server, behind:
    // then the calls count as cache errors instead); the limiter counts in
    // process.
    let never_registered = memo::named_cache(ENCRYPTED_CACHE).is_none();
    let misconfigured = memo::stats().misconfigured;
    assert_eq!(vault(1).await, "secret-1");
    assert_eq!(vault(1).await, "secret-1");
    assert_eq!(
        VAULT_LOADS.load(SeqCst),
        2,
        "no working encrypted engine: nothing cached"
    );
    if never_registered {
        assert!(
            memo::stats().misconfigured >= misconfigured + 2,
            "counted as misconfigured"
        );
    }
    assert_eq!(limited(7).await.unwrap(), 7);
    let rl_keys: Vec<String> = raw.keys("memorix:rl:*").await.unwrap();
    assert!(
        rl_keys.is_empty(),
        "no store yet: limits are per process, got {rl_keys:?}"
    );

    std::env::set_var("REDIS_URL", server.url());
    std::env::set_var("MEMORIX_ENCRYPTION_KEY", memorix::crypto::generate_key().unwrap());
    assert!(memorix::init_from_env().await.unwrap());

    // The default cache, under the default namespace.
    assert_eq!(on_default(5).await, 5);
    let exists: bool = raw.exists("memorix:default:5").await.unwrap();
    assert!(exists, "memoized into the Redis of REDIS_URL, under `memorix:`");
    let bare: bool = raw.exists("default:5").await.unwrap();
    assert!(!bare, "no bare key in a shared database");
    assert_eq!(on_default_cache_key(5), "memorix:default:5");
    // `prefix` replaces the namespace.
    assert_eq!(own_prefix(3).await, 3);
    let exists: bool = raw.exists("app:own:3").await.unwrap();
    assert!(exists, "prefix overrides the namespace");
    memo::default_cache().remove("memorix:default:5").await.unwrap();
    assert_eq!(on_default(5).await, 5);
    assert_eq!(DEFAULT_LOADS.load(SeqCst), 2);

    // `encrypt` now finds the engine the key configured.
    assert_eq!(vault(1).await, "secret-1");
    assert_eq!(vault(1).await, "secret-1");
    assert_eq!(VAULT_LOADS.load(SeqCst), 3, "cached once the engine exists");
    let stored: Vec<u8> = raw.get("memorix:vault:1").await.unwrap();
    assert!(!stored.is_empty(), "stored in Redis");
    assert!(
        !String::from_utf8_lossy(&stored).contains("secret-1"),
        "stored encrypted, not in the clear"
    );

    // The limiter called before setup now counts in Redis.
    assert_eq!(limited(7).await.unwrap(), 7);
    let rl_keys: Vec<String> = raw.keys("memorix:rl:*").await.unwrap();
    assert!(!rl_keys.is_empty(), "limits in Redis after init_from_env");

    std::env::remove_var("MEMORIX_ENCRYPTION_KEY");
    memorix::init(memorix::MemoryCache::new(100));
    assert_eq!(on_default(5).await, 5);
    assert_eq!(DEFAULT_LOADS.load(SeqCst), 3, "a new default cache starts empty");
    assert!(memo::default_cache().has("memorix:default:5").await.unwrap());
}

static GENERIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "redis-generic", ttl = 30)]
async fn describe<T: Serialize + std::fmt::Debug + Send>(value: T) -> String {
    GENERIC_RUNS.fetch_add(1, SeqCst);
    format!("{value:?}")
}

#[cached(cache = "redis-generic", ttl = 30, key = "zero:{id}")]
async fn zero<T: Default + Serialize + Send>(id: u32) -> Vec<u8> {
    let _ = id;
    serde_json::to_vec(&T::default()).unwrap_or_default()
}

#[tokio::test]
async fn generic_functions_never_share_entries_across_types_in_redis() {
    let server = RedisServer::start();
    let (cache, prefix) = redis_cache(&server, "generic").await;
    memorix::register("redis-generic", cache);
    let mut raw = server.raw().await;
    for _ in 0..2 {
        assert_eq!(describe(1u8).await, "1");
        assert_eq!(describe("1").await, "\"1\"");
        assert_eq!(describe(1i64).await, "1");
    }
    assert_eq!(GENERIC_RUNS.load(SeqCst), 3, "one run per instantiation, then hits");
    let keys: Vec<String> = raw.keys(format!("{prefix}*describe*")).await.unwrap();
    assert_eq!(keys.len(), 3, "one entry per instantiation: {keys:?}");
    // A template that ignores `T` still keeps instantiations apart.
    assert_eq!(zero::<u8>(1).await, b"0");
    assert_eq!(zero::<String>(1).await, b"\"\"");
    assert_eq!(zero::<u8>(1).await, b"0");
    assert_ne!(zero_cache_key::<u8>(1), zero_cache_key::<String>(1));
}
