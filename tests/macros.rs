//! `#[cached]`, `#[cache_put]`, `#[cache_evict]` and the companions on
//! in-process caches: every option, single-flight, fail-open, recursion.
//!
//! Tests run in parallel in one process, so each uses its own keys, and none
//! replaces the default cache (that is tested in `macros_redis.rs`).

use memorix::memo::{self, named_cache};
use memorix::{cache_evict, cache_put, cached, Cache, MemoryCache};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

// ---------------------------------------------------------------- cache-aside

static USER_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "user:{id}")]
async fn get_user(id: u64) -> Result<User, String> {
    USER_LOADS.fetch_add(1, SeqCst);
    if id == 0 {
        return Err("no user 0".into());
    }
    Ok(User {
        id,
        name: format!("user{id}"),
    })
}

#[cache_put(key = "user:{user.id}")]
async fn save_user(user: User) -> Result<User, String> {
    Ok(user)
}

#[cache_evict(key = "user:{id}")]
async fn delete_user(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn cache_aside_write_through_and_eviction_share_keys() {
    let loads = || USER_LOADS.load(SeqCst);
    let before = loads();
    assert_eq!(get_user(1).await.unwrap().name, "user1");
    assert_eq!(get_user(1).await.unwrap().name, "user1");
    assert_eq!(loads() - before, 1, "second call is a hit");

    save_user(User {
        id: 1,
        name: "Ada".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        get_user(1).await.unwrap().name,
        "Ada",
        "write-through updates what #[cached] serves"
    );
    assert_eq!(loads() - before, 1);

    delete_user(1).await.unwrap();
    assert_eq!(
        get_user(1).await.unwrap().name,
        "user1",
        "evicted, so the body runs again"
    );
    assert_eq!(loads() - before, 2);

    // Errors are not cached by default.
    assert!(get_user(0).await.is_err());
    assert!(get_user(0).await.is_err());
    assert_eq!(loads() - before, 4);
}

#[tokio::test]
async fn companions_invalidate_prime_no_cache_and_key() {
    assert_eq!(get_user_cache_key(2), "memorix:user:2");
    get_user(2).await.unwrap();
    assert!(get_user_invalidate(2).await.unwrap());
    assert!(!get_user_invalidate(2).await.unwrap(), "already gone");

    get_user_prime(
        2,
        User {
            id: 2,
            name: "primed".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(get_user(2).await.unwrap().name, "primed");
    let before = USER_LOADS.load(SeqCst);
    assert_eq!(get_user_no_cache(2).await.unwrap().name, "user2");
    assert_eq!(USER_LOADS.load(SeqCst) - before, 1, "no_cache always runs the body");
    assert_eq!(get_user(2).await.unwrap().name, "primed", "and leaves the cache alone");
}

static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Plain `fn`, derived key from every argument, reference arguments.
#[cached(ttl = "5m")]
fn greet(name: &str, lang: &str) -> String {
    SYNC_RUNS.fetch_add(1, SeqCst);
    format!("{lang}:hello {name}")
}

#[test]
fn sync_functions_with_reference_arguments_and_derived_keys() {
    let before = SYNC_RUNS.load(SeqCst);
    assert_eq!(greet("ada", "en"), "en:hello ada");
    assert_eq!(greet("ada", "en"), "en:hello ada");
    assert_eq!(greet("ada", "fr"), "fr:hello ada");
    assert_eq!(SYNC_RUNS.load(SeqCst) - before, 2);
    // Derived keys: module path, function name, then the arguments.
    assert_eq!(greet_cache_key("ada", "en"), "memorix:macros::greet:ada:en");
    assert_ne!(greet_cache_key("a:b", "c"), greet_cache_key("a", "b:c"));
    assert!(greet_invalidate("ada", "en").unwrap());
    greet_prime("bob", "en", "hi bob".into()).unwrap();
    assert_eq!(greet("bob", "en"), "hi bob");
}

#[test]
fn long_keys_are_hashed() {
    let long = "x".repeat(1_000);
    let key = greet_cache_key(&long, "en");
    assert!(key.starts_with("memorix:macros::greet:#") && key.len() < 100, "{key}");
    assert_eq!(greet(&long, "en"), format!("en:hello {long}"));
}

// ------------------------------------------------------------ return kinds

static OPT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "opt:{id}")]
fn find(id: u32) -> Option<u32> {
    OPT_RUNS.fetch_add(1, SeqCst);
    (id % 2 == 0).then_some(id * 10)
}

#[cached(key = "opt-none:{id}", cache_none)]
fn find_caching_none(id: u32) -> Option<u32> {
    OPT_RUNS.fetch_add(1, SeqCst);
    (id % 2 == 0).then_some(id * 10)
}

#[test]
fn option_caches_some_by_default_and_none_with_cache_none() {
    let before = OPT_RUNS.load(SeqCst);
    assert_eq!(find(2), Some(20));
    assert_eq!(find(2), Some(20));
    assert_eq!(find(3), None);
    assert_eq!(find(3), None);
    assert_eq!(OPT_RUNS.load(SeqCst) - before, 3, "Some cached, None not");
    assert_eq!(find_caching_none(3), None);
    assert_eq!(find_caching_none(3), None);
    assert_eq!(OPT_RUNS.load(SeqCst) - before, 4, "None cached with cache_none");
}

static ERR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "err:{id}", cache_err)]
async fn failing(id: u32) -> Result<u32, String> {
    ERR_RUNS.fetch_add(1, SeqCst);
    Err(format!("boom {id}"))
}

#[cached(key = "unless:{n}", unless = |v: &Vec<u32>| v.is_empty())]
async fn list(n: u32) -> Vec<u32> {
    ERR_RUNS.fetch_add(1, SeqCst);
    (0..n).collect()
}

#[tokio::test]
async fn cache_err_and_unless() {
    let before = ERR_RUNS.load(SeqCst);
    assert_eq!(failing(1).await, Err("boom 1".into()));
    assert_eq!(failing(1).await, Err("boom 1".into()));
    assert_eq!(ERR_RUNS.load(SeqCst) - before, 1, "the Err is cached with cache_err");
    assert!(list(0).await.is_empty());
    assert!(list(0).await.is_empty());
    assert_eq!(list(2).await, [0, 1]);
    assert_eq!(list(2).await, [0, 1]);
    assert_eq!(ERR_RUNS.load(SeqCst) - before, 4, "empty lists skipped by `unless`");
}

// ---------------------------------------------------------- TTL and freshness

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "100ms", jitter = "20ms", key = "ttl:{id}")]
async fn short_lived(id: u32) -> u32 {
    TTL_RUNS.fetch_add(1, SeqCst) as u32 + id
}

#[tokio::test]
async fn ttl_with_jitter_expires_entries() {
    let first = short_lived(1).await;
    assert_eq!(short_lived(1).await, first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(short_lived(1).await, first, "expired after ttl + jitter");
}

static STALE_FAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(ttl = "50ms", stale_if_error = "10m", key = "stale:{id}")]
async fn flaky(id: u32) -> Result<String, String> {
    if STALE_FAIL.load(SeqCst) {
        Err("backend down".into())
    } else {
        Ok(format!("v{id}"))
    }
}

#[tokio::test]
async fn stale_if_error_serves_the_last_good_value() {
    assert_eq!(flaky(1).await.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(120)).await;
    STALE_FAIL.store(true, SeqCst);
    let stale_before = memo::stats().stale_served;
    assert_eq!(
        flaky(1).await.unwrap(),
        "v1",
        "expired, body fails: the last good value"
    );
    assert!(memo::stats().stale_served > stale_before);
    assert!(flaky(2).await.is_err(), "nothing stale to serve");
    STALE_FAIL.store(false, SeqCst);
}

static REFRESHES: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "10s", refresh_ahead = 100000.0, key = "refresh:{id}")]
async fn slow_refresh(id: u32) -> usize {
    tokio::time::sleep(Duration::from_millis(20)).await;
    REFRESHES.fetch_add(1, SeqCst) + id as usize
}

#[tokio::test]
async fn refresh_ahead_recomputes_before_expiry() {
    let first = slow_refresh(0).await;
    // With a huge beta, XFetch almost always draws an early refresh: each call
    // returns a value, and within a few calls one of them is a new one.
    let mut refreshed = false;
    for _ in 0..20 {
        if slow_refresh(0).await != first {
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "an early refresh replaced the value before its TTL");
    assert!(memo::stats().early_refreshes >= 1);
}

// --------------------------------------------------------------- single-flight

static STAMPEDE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "stampede:{id}")]
async fn expensive(id: u32) -> u32 {
    STAMPEDE_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    id * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_of_1000_callers_runs_the_body_once() {
    let callers: Vec<_> = (0..1000).map(|_| tokio::spawn(expensive(21))).collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap(), 42);
    }
    assert_eq!(STAMPEDE_RUNS.load(SeqCst), 1);
    assert!(memo::stats().coalesced >= 1);
}

static TAKEOVER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "takeover:{id}")]
async fn hangs_first_time(id: u32) -> u32 {
    if TAKEOVER_RUNS.fetch_add(1, SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_when_the_leader_is_dropped() {
    let leader = tokio::spawn(hangs_first_time(7));
    while TAKEOVER_RUNS.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = tokio::spawn(hangs_first_time(7));
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert_eq!(got.expect("the waiter did not hang").unwrap(), 7);
    assert_eq!(TAKEOVER_RUNS.load(SeqCst), 2);
}

static NO_LOCK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "nolock:{id}", lock = "none")]
fn no_lock(id: u32) -> u32 {
    NO_LOCK_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn lock_none_still_caches() {
    assert_eq!(no_lock(1), 1);
    assert_eq!(no_lock(1), 1);
    assert_eq!(NO_LOCK_RUNS.load(SeqCst), 1);
}

#[cached]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn recursion_does_not_deadlock() {
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
}

// ------------------------------------------------ methods, generics, impl Trait

struct Repo {
    tenant: String,
    calls: AtomicUsize,
}

impl Repo {
    #[cached(key = "repo:{self.tenant}:{id}")]
    async fn load(&self, id: u32) -> String {
        self.calls.fetch_add(1, SeqCst);
        format!("{}/{id}", self.tenant)
    }

    // Shared between instances on purpose: the key leaves `self` out.
    #[cached(key = "repo-count:{table}")]
    fn count(&self, table: &str) -> usize {
        self.calls.fetch_add(1, SeqCst);
        table.len()
    }
}

#[tokio::test]
async fn methods_key_on_self_or_share_explicitly() {
    let a = Repo {
        tenant: "a".into(),
        calls: AtomicUsize::new(0),
    };
    let b = Repo {
        tenant: "b".into(),
        calls: AtomicUsize::new(0),
    };
    assert_eq!(a.load(1).await, "a/1");
    assert_eq!(b.load(1).await, "b/1", "the template names self.tenant");
    assert_eq!(a.load(1).await, "a/1");
    assert_eq!(a.calls.load(SeqCst), 1);
    assert_eq!(a.load_cache_key(1), "memorix:repo:a:1");
    assert_eq!(a.count("users"), 5);
    assert_eq!(b.count("users"), 5, "self is not in the key: a hit");
    assert_eq!(b.calls.load(SeqCst), 1);
    assert_eq!(b.count_cache_key("users"), "memorix:repo-count:users");
}

static DESCRIBE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn describe<T: Serialize + std::fmt::Debug>(value: T) -> String {
    DESCRIBE_RUNS.fetch_add(1, SeqCst);
    format!("{value:?}")
}

/// A template that ignores `T`: instantiations still get their own entries.
#[cached(key = "generic:{id}")]
fn typed_default<T: Default + std::fmt::Debug>(id: u32) -> String {
    format!("{id}:{:?}", T::default())
}

#[cached(key = "impl:{id}")]
fn with_impl_trait(id: u32, log: impl Fn(u32)) -> u32 {
    log(id);
    id + 1
}

#[test]
fn generic_functions_keep_instantiations_apart() {
    // Same key text for every argument: only the type tells them apart.
    assert_eq!(describe(1u8), "1");
    assert_eq!(describe("1"), "\"1\"");
    assert_eq!(describe(1i64), "1");
    assert_eq!(describe(1u8), "1");
    assert_eq!(DESCRIBE_RUNS.load(SeqCst), 3, "one run per instantiation");
    assert_eq!(describe_cache_key(1u8), "memorix:macros::describe:<u8>:1");
    assert_ne!(describe_cache_key(1u8), describe_cache_key(1i64));
    assert_eq!(typed_default::<u8>(3), "3:0");
    assert_eq!(typed_default::<String>(3), "3:\"\"");
    assert_eq!(typed_default::<Option<u8>>(3), "3:None");
    assert_eq!(typed_default::<u8>(3), "3:0");
    assert_eq!(typed_default_cache_key::<u8>(3), "memorix:<u8>:generic:3");
}

#[test]
fn impl_trait_arguments() {
    let seen = AtomicUsize::new(0);
    assert_eq!(
        with_impl_trait(1, |_| {
            seen.fetch_add(1, SeqCst);
        }),
        2
    );
    assert_eq!(
        with_impl_trait(1, |_| {
            seen.fetch_add(1, SeqCst);
        }),
        2
    );
    assert_eq!(seen.load(SeqCst), 1);
}

// ------------------------------------------------------ caches and codecs

#[cached(cache = "memo-named", key = "named:{id}", codec = "json", prefix = "app:")]
async fn json_named(id: u32) -> User {
    User {
        id: id.into(),
        name: "json".into(),
    }
}

#[cached(cache = "memo-named", key = "big:{n}", compress)]
async fn big(n: usize) -> String {
    "a".repeat(n)
}

#[tokio::test]
async fn named_cache_json_codec_prefix_and_compression() {
    memorix::register("memo-named", MemoryCache::new(1_000));
    let cache = named_cache("memo-named").unwrap();
    json_named(3).await;
    let bytes = cache
        .get_bytes("app:named:3")
        .await
        .unwrap()
        .expect("stored under prefix + key");
    let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(stored["name"], "json");

    assert_eq!(big(10_000).await.len(), 10_000);
    let stored = cache.get_bytes("memorix:big:10000").await.unwrap().unwrap();
    assert!(stored.len() < 1_000, "stored compressed: {} bytes", stored.len());
    assert_eq!(big(10_000).await.len(), 10_000);

    // Writes through the registry handle drop the decoded copy too.
    cache.remove("app:named:3").await.unwrap();
    cache.set_bytes("memorix:big:10000", &[0xff], None).await.unwrap();
    let errors = memo::stats().cache_errors;
    assert_eq!(
        big(10_000).await.len(),
        10_000,
        "an undecodable entry is a miss, not an error"
    );
    assert!(memo::stats().cache_errors > errors);
}

static MISSING_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "never-registered", key = "missing:{id}")]
fn uses_missing_cache(id: u32) -> u32 {
    MISSING_RUNS.fetch_add(1, SeqCst);
    id
}

#[cached(encrypt, key = "secret:{id}")]
fn secret(id: u32) -> u32 {
    MISSING_RUNS.fetch_add(1, SeqCst);
    id
}

#[test]
fn a_missing_cache_fails_open() {
    let misconfigured = memo::stats().misconfigured;
    assert_eq!(uses_missing_cache(1), 1);
    assert_eq!(uses_missing_cache(1), 1);
    assert_eq!(secret(1), 1, "no encrypted cache registered: runs uncached");
    assert_eq!(MISSING_RUNS.load(SeqCst), 3, "nothing cached");
    assert!(
        memo::stats().misconfigured >= misconfigured + 3,
        "each uncached call is counted"
    );
    let err = uses_missing_cache_invalidate(1).unwrap_err();
    assert!(
        err.to_string().contains("memorix::register(\"never-registered\""),
        "{err}"
    );
    let err = secret_prime(1, 1).unwrap_err();
    assert!(err.to_string().contains("encrypted"), "{err}");
}

struct Service {
    cache: Arc<dyn Cache>,
}

impl Service {
    #[cached(cache = self.cache, key = "svc:{id}")]
    async fn get(&self, id: u32) -> u32 {
        id + 100
    }
}

#[tokio::test]
async fn cache_expression_picks_the_engine_per_call() {
    let one = Service {
        cache: Arc::new(MemoryCache::new(10)),
    };
    let two = Service {
        cache: Arc::new(MemoryCache::new(10)),
    };
    assert_eq!(one.get(1).await, 101);
    assert!(one.cache.has("memorix:svc:1").await.unwrap());
    assert!(!two.cache.has("memorix:svc:1").await.unwrap());
    two.get_prime(1, 5).await.unwrap();
    assert_eq!(two.get(1).await, 5);
    assert_eq!(one.get(1).await, 101);
}

#[cache_put(cache = "memo-put", key = "put:{id}", value = name.clone(), ttl = 60)]
fn rename(id: u32, name: String) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    Ok(())
}

#[cached(cache = "memo-put", key = "put:{id}")]
fn name_of(id: u32) -> String {
    format!("default{id}")
}

#[cache_evict(cache = "memo-put", all_entries)]
fn clear_names() {}

#[cache_evict(cache = "memo-put", key = "put:{id}", before_invocation)]
fn forget_then_fail(id: u32) -> Result<(), String> {
    let _ = id;
    Err("failed after eviction".into())
}

#[test]
fn put_value_expression_evict_all_and_before_invocation() {
    memorix::register("memo-put", MemoryCache::new(100));
    assert_eq!(name_of(1), "default1");
    rename(1, "Ada".into()).unwrap();
    assert_eq!(name_of(1), "Ada");
    assert!(rename(1, String::new()).is_err());
    assert_eq!(name_of(1), "Ada", "a failed write-through stores nothing");
    assert!(forget_then_fail(1).is_err());
    assert_eq!(name_of(1), "default1", "evicted before the body failed");
    rename(2, "Bob".into()).unwrap();
    clear_names();
    assert_eq!(name_of(2), "default2");
}

#[test]
fn crate_option_accepts_a_re_export_path() {
    mod reexport {
        pub use memorix as mx;
    }
    #[cached(crate = "reexport::mx", key = "crate-opt:{x}")]
    fn doubled(x: u32) -> u32 {
        x * 2
    }
    assert_eq!(doubled(4), 8);
    assert_eq!(doubled_cache_key(4), "memorix:crate-opt:4");
}

// ------------------------------------------------ the argument-keyed front
//
// Plain arguments (integers, strings, ...) are looked up by value in a
// per-function front before any key text is built. Each test warms the front
// (a miss, a hit copied from the tier, then a hit from the front itself)
// before changing the entry some other way.

static FRONT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "front:{id}")]
fn front_value(id: u64) -> u64 {
    FRONT_RUNS.fetch_add(1, SeqCst) as u64 * 1_000 + id
}

#[cache_put(key = "front:{id}", value = value)]
fn front_store(id: u64, value: u64) {
    let _ = (id, value);
}

#[cache_evict(key = "front:{id}")]
fn front_forget(id: u64) {
    let _ = id;
}

/// Calls `f` three times (miss, tier hit, front hit); all three must agree.
fn warm<T: PartialEq + std::fmt::Debug>(mut f: impl FnMut() -> T) -> T {
    let first = f();
    assert_eq!(f(), first);
    assert_eq!(f(), first);
    first
}

#[test]
fn front_hits_see_invalidate_prime_put_and_evict() {
    let v0 = warm(|| front_value(7));
    assert!(front_value_invalidate(7).unwrap());
    let v1 = warm(|| front_value(7));
    assert_ne!(v1, v0, "invalidated after a front hit: the body runs again");

    front_value_prime(7, 42).unwrap();
    assert_eq!(warm(|| front_value(7)), 42, "primed over a front copy");

    front_store(7, 43);
    assert_eq!(warm(|| front_value(7)), 43, "#[cache_put] over a front copy");

    front_forget(7);
    let v2 = warm(|| front_value(7));
    assert!(v2 != 43 && v2 % 1_000 == 7, "#[cache_evict] drops the front copy: {v2}");
    assert_eq!(front_value(8) % 1_000, 8, "other arguments, other entry");
}

static FRONT_ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "10m")]
async fn front_async(name: String, n: u8) -> String {
    let run = FRONT_ASYNC_RUNS.fetch_add(1, SeqCst);
    format!("{name}-{n}-{run}")
}

#[tokio::test]
async fn front_hits_see_removes_through_the_default_cache() {
    let first = front_async("ada".into(), 1).await;
    for _ in 0..3 {
        assert_eq!(front_async("ada".into(), 1).await, first);
    }
    assert_ne!(
        front_async("ada".into(), 2).await,
        first,
        "arguments are compared, not just hashed"
    );
    let key = front_async_cache_key("ada".into(), 1);
    assert!(memo::default_cache().remove(&key).await.unwrap());
    let second = front_async("ada".into(), 1).await;
    assert_ne!(second, first, "removed through default_cache(): the body runs again");
    assert_eq!(front_async("ada".into(), 1).await, second);
    assert!(front_async_invalidate("ada".into(), 1).await.unwrap());
    assert_ne!(front_async("ada".into(), 1).await, second);
}

#[cached]
fn front_square(x: u64) -> u64 {
    x * x
}

#[cached]
fn front_cube(x: u64) -> u64 {
    x * x * x
}

#[test]
fn two_functions_with_equal_arguments_keep_apart() {
    assert_eq!(warm(|| front_square(3)), 9);
    assert_eq!(warm(|| front_cube(3)), 27);
    assert_eq!(warm(|| front_square(3)), 9);
}

static FRONT_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "150ms")]
fn front_ttl(id: u32) -> usize {
    let _ = id;
    FRONT_TTL_RUNS.fetch_add(1, SeqCst)
}

#[test]
fn front_copies_expire_with_the_ttl() {
    let first = warm(|| front_ttl(1));
    std::thread::sleep(Duration::from_millis(400));
    let second = warm(|| front_ttl(1));
    assert_ne!(second, first, "a front copy does not outlive its TTL");
}

static FRONT_SWAP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "front-swap")]
fn front_swapped(id: u32) -> usize {
    let _ = id;
    FRONT_SWAP_RUNS.fetch_add(1, SeqCst)
}

#[test]
fn front_copies_do_not_survive_a_register_swap() {
    memorix::register("front-swap", MemoryCache::new(100));
    let first = warm(|| front_swapped(1));
    memorix::register("front-swap", MemoryCache::new(100));
    let second = warm(|| front_swapped(1));
    assert_ne!(second, first, "the new cache is empty: the body runs again");
}

static FRONT_STRUCT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A struct argument is not a plain key: the key-text path serves it.
#[cached]
fn front_user_len(user: User) -> usize {
    FRONT_STRUCT_RUNS.fetch_add(1, SeqCst);
    user.name.len()
}

#[test]
fn other_argument_types_keep_the_key_text_path() {
    let ada = User {
        id: 1,
        name: "Ada".into(),
    };
    let before = FRONT_STRUCT_RUNS.load(SeqCst);
    assert_eq!(warm(|| front_user_len(ada.clone())), 3);
    assert_eq!(FRONT_STRUCT_RUNS.load(SeqCst) - before, 1);
    assert!(front_user_len_invalidate(ada.clone()).unwrap());
    assert_eq!(warm(|| front_user_len(ada.clone())), 3);
    assert_eq!(FRONT_STRUCT_RUNS.load(SeqCst) - before, 2);
}
