//! Distributed single-flight on a real redis-server, across real processes.

mod support;

use memorix::prelude::*;
use memorix::{DistributedLoader, RedisCache, RedisConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::RedisServer;

const CHILD_ENV: &str = "MEMORIX_SINGLEFLIGHT_CHILD_URL";
const START_ENV: &str = "MEMORIX_SINGLEFLIGHT_START_MS";
const CALLERS_PER_PROCESS: usize = 100;

/// The body all processes race to run: counts its runs in Redis itself, so the
/// count covers every process.
async fn expensive_load(url: &str) -> Result<String, memorix::CacheError> {
    let mut raw = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(memorix::CacheError::from)?;
    let _: i64 = redis::cmd("INCR").arg("loads").query(&mut raw)?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok("the-value".to_owned())
}

/// Not a test on its own: the body of each child process of
/// `four_processes_run_the_body_once`, which starts it with `--ignored --exact`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of four_processes_run_the_body_once"]
async fn singleflight_child() {
    let url = std::env::var(CHILD_ENV).expect("run by four_processes_run_the_body_once");
    let start_ms: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let cache = Arc::new(
        RedisCache::builder()
            .config(RedisConfig::from_url(&url).unwrap())
            .prefix("sf:")
            .connect()
            .await
            .unwrap(),
    );
    let loader = Arc::new(DistributedLoader::new(cache.client().unwrap()));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms))).await;

    let callers: Vec<_> = (0..CALLERS_PER_PROCESS)
        .map(|_| {
            let (cache, loader, url) = (cache.clone(), loader.clone(), url.clone());
            tokio::spawn(async move {
                loader
                    .get_or_load(cache.as_ref(), "report", Some(Duration::from_secs(60)), || {
                        expensive_load(&url)
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "the-value");
    }
}

#[test]
fn four_processes_run_the_body_once() {
    let server = RedisServer::start();
    let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 1500;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--ignored", "--exact", "singleflight_child", "--test-threads", "1"])
                .env(CHILD_ENV, server.url())
                .env(START_ENV, start_ms.to_string())
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
    let loads: i64 = redis::cmd("GET").arg("loads").query(&mut raw).unwrap();
    assert_eq!(
        loads, 1,
        "4 processes x {CALLERS_PER_PROCESS} callers ran the body once in total"
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
