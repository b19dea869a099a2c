//! Distributed single-flight on a real redis-server, across real processes.

mod support;

use memorix::prelude::*;
use memorix::{cached, DistributedLoader, RedisCache, RedisConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::RedisServer;

const CHILD_ENV: &str = "MEMORIX_SINGLEFLIGHT_CHILD_URL";
const START_ENV: &str = "MEMORIX_SINGLEFLIGHT_START_MS";
const MODE_ENV: &str = "MEMORIX_SINGLEFLIGHT_MODE";
const CALLERS_PER_PROCESS: usize = 100;
const VALUE: &str = "the-value";

/// The server every process of one fleet test uses; the bodies count their
/// runs there, so the count covers every process.
static URL: OnceLock<String> = OnceLock::new();

fn count_load() -> Result<(), memorix::CacheError> {
    let url = URL.get().expect("set by the child");
    let mut raw = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .map_err(memorix::CacheError::from)?;
    let _: i64 = redis::cmd("INCR").arg("loads").query(&mut raw)?;
    Ok(())
}

async fn expensive_load() -> Result<String, memorix::CacheError> {
    count_load()?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(VALUE.to_owned())
}

#[cached(cache = "fleet", ttl = 60, key = "report", lock = "distributed")]
async fn report() -> Result<String, memorix::CacheError> {
    expensive_load().await
}

#[cached(cache = "fleet", ttl = 60, key = "report", lock = "distributed")]
fn report_sync() -> Result<String, memorix::CacheError> {
    count_load()?;
    std::thread::sleep(Duration::from_millis(400));
    Ok(VALUE.to_owned())
}

/// How the processes of a fleet test load the value.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `DistributedLoader::get_or_load` in async tasks.
    Loader,
    /// `#[cached(lock = "distributed")]` on an `async fn`, in tasks.
    CachedAsync,
    /// `#[cached(lock = "distributed")]` on a plain `fn`, in threads.
    CachedSync,
}

impl Mode {
    fn parse(name: &str) -> Mode {
        match name {
            "loader" => Mode::Loader,
            "async" => Mode::CachedAsync,
            "sync" => Mode::CachedSync,
            other => panic!("unknown mode {other}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Loader => "loader",
            Mode::CachedAsync => "async",
            Mode::CachedSync => "sync",
        }
    }
}

async fn wait_for_start() {
    let start_ms: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms))).await;
}

/// Not a test on its own: the body of each child process of the fleet tests,
/// which start it with `--ignored --exact`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the fleet tests"]
async fn singleflight_child() {
    let url = std::env::var(CHILD_ENV).expect("run by a fleet test");
    URL.set(url.clone()).unwrap();
    let cache = RedisCache::builder()
        .config(RedisConfig::from_url(&url).unwrap())
        .prefix("sf:")
        .connect()
        .await
        .unwrap();
    let mode = Mode::parse(&std::env::var(MODE_ENV).unwrap());
    let loader = Arc::new(DistributedLoader::new(cache.client().unwrap()));
    let cache = Arc::new(cache);
    memorix::memo::register_shared("fleet", cache.clone() as Arc<dyn memorix::Cache>);
    wait_for_start().await;

    let answers: Vec<String> = match mode {
        Mode::Loader => {
            let callers: Vec<_> = (0..CALLERS_PER_PROCESS)
                .map(|_| {
                    let (cache, loader) = (cache.clone(), loader.clone());
                    tokio::spawn(async move {
                        loader
                            .get_or_load(cache.as_ref(), "report", Some(Duration::from_secs(60)), expensive_load)
                            .await
                    })
                })
                .collect();
            futures::future::join_all(callers)
                .await
                .into_iter()
                .map(|r| r.unwrap().unwrap())
                .collect()
        }
        Mode::CachedAsync => {
            let callers: Vec<_> = (0..CALLERS_PER_PROCESS).map(|_| tokio::spawn(report())).collect();
            futures::future::join_all(callers)
                .await
                .into_iter()
                .map(|r| r.unwrap().unwrap())
                .collect()
        }
        Mode::CachedSync => {
            let callers: Vec<_> = (0..CALLERS_PER_PROCESS)
                .map(|_| std::thread::spawn(report_sync))
                .collect();
            tokio::task::spawn_blocking(move || callers.into_iter().map(|t| t.join().unwrap().unwrap()).collect())
                .await
                .unwrap()
        }
    };
    assert_eq!(answers.len(), CALLERS_PER_PROCESS);
    assert!(answers.iter().all(|a| a == VALUE), "every caller got the value");
}

/// Runs 4 child processes that each start 100 concurrent callers of one cold
/// key at the same instant; returns how often the body ran in total.
fn run_fleet(mode: Mode) -> i64 {
    let server = RedisServer::start();
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 1500;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--ignored", "--exact", "singleflight_child", "--test-threads", "1"])
                .env(CHILD_ENV, server.url())
                .env(START_ENV, start_ms.to_string())
                .env(MODE_ENV, mode.name())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child test process")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().unwrap().success(),
            "every caller in every process got the value"
        );
    }
    let mut raw = server.client().get_connection().unwrap();
    let leases: Vec<String> = redis::cmd("KEYS").arg("memorix:lock:*").query(&mut raw).unwrap();
    assert!(leases.is_empty(), "every lease was released: {leases:?}");
    redis::cmd("GET").arg("loads").query(&mut raw).unwrap()
}

#[test]
fn four_processes_run_the_body_once() {
    assert_eq!(
        run_fleet(Mode::Loader),
        1,
        "4 processes x {CALLERS_PER_PROCESS} callers"
    );
}

#[test]
fn cached_async_fn_with_distributed_lock_runs_once_across_processes() {
    assert_eq!(
        run_fleet(Mode::CachedAsync),
        1,
        "4 processes x {CALLERS_PER_PROCESS} tasks"
    );
}

#[test]
fn cached_sync_fn_with_distributed_lock_runs_once_across_processes() {
    assert_eq!(
        run_fleet(Mode::CachedSync),
        1,
        "4 processes x {CALLERS_PER_PROCESS} threads"
    );
}

static MEMORY_LOADS: AtomicU32 = AtomicU32::new(0);

#[cached(cache = "fleet-memory", key = "m:{id}", lock = "distributed")]
async fn on_memory(id: u32) -> u32 {
    MEMORY_LOADS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id * 2
}

#[tokio::test]
async fn distributed_lock_without_redis_coalesces_in_process() {
    memorix::register("fleet-memory", memorix::MemoryCache::new(100));
    let callers: Vec<_> = (0..50).map(|_| tokio::spawn(on_memory(21))).collect();
    for answer in futures::future::join_all(callers).await {
        assert_eq!(answer.unwrap(), 42);
    }
    assert_eq!(
        MEMORY_LOADS.load(Ordering::SeqCst),
        1,
        "local single-flight still applies"
    );
}

#[tokio::test]
async fn a_dead_lease_holder_is_taken_over_after_its_lease() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(server.config()).await.unwrap();
    let loader = DistributedLoader::new(cache.client().unwrap()).lease(Duration::from_millis(300));
    // A holder that took the lease and crashed.
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg("memorix:lock:k")
        .arg("crashed")
        .arg("PX")
        .arg(300)
        .query_async(&mut raw)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let value: u32 = loader
        .get_or_load(&cache, "k", None, || async { Ok::<_, String>(7) })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the lease, {:?}",
        started.elapsed()
    );
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(7));
    let lock: Option<String> = redis::cmd("GET")
        .arg("memorix:lock:k")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(lock, None, "our lease was released");
}

#[tokio::test]
async fn a_slow_loader_keeps_its_lease_alive() {
    let server = RedisServer::start();
    let cache = Arc::new(RedisCache::connect(server.config()).await.unwrap());
    let loader = Arc::new(DistributedLoader::new(cache.client().unwrap()).lease(Duration::from_millis(150)));
    let runs = Arc::new(AtomicU32::new(0));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loader, runs) = (cache.clone(), loader.clone(), runs.clone());
            tokio::spawn(async move {
                loader
                    .get_or_load(cache.as_ref(), "slow", None, || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Four lease lengths: without renewal others would take over.
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        Ok::<_, String>("done".to_owned())
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "done");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_loader_returns_its_error_and_frees_the_lease() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(server.config()).await.unwrap();
    let loader = DistributedLoader::new(cache.client().unwrap());
    let err = loader
        .get_or_load::<u32, _, _, _>(&cache, "k", None, || async { Err("db down") })
        .await
        .unwrap_err();
    assert_eq!(err, "db down");
    assert!(!cache.has("k").await.unwrap(), "nothing cached on failure");
    let value: u32 = loader
        .get_or_load(&cache, "k", None, || async { Ok::<_, String>(3) })
        .await
        .unwrap();
    assert_eq!(value, 3, "the next caller is not blocked by a leftover lease");
}

#[tokio::test]
async fn a_dead_redis_still_answers_from_the_loader() {
    let mut server = RedisServer::start();
    let config = server
        .config()
        .into_builder()
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let cache = RedisCache::connect(config).await.unwrap();
    let loader = DistributedLoader::new(cache.client().unwrap());
    server.stop();
    let value: u32 = loader
        .get_or_load(&cache, "k", None, || async { Ok::<_, String>(11) })
        .await
        .unwrap();
    assert_eq!(value, 11, "fail-open: cache and lease failures never fail the call");
}
