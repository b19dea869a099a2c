//! The blocking facade from a plain thread and from inside both tokio runtime
//! flavours, on Redis and on memory.

mod support;

use memorix::{BlockingCache, MemoryCache, RedisCache};
use std::time::Duration;
use support::RedisServer;

fn redis_blocking(server: &RedisServer) -> BlockingCache {
    let config = server.config();
    BlockingCache::connect(move || RedisCache::connect(config)).expect("connect")
}

fn exercise(cache: &BlockingCache, tag: &str) {
    let key = format!("{tag}:k");
    assert_eq!(cache.get::<String>(&key).unwrap(), None);
    cache
        .set(&key, &format!("value-{tag}"), Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(cache.get::<String>(&key).unwrap(), Some(format!("value-{tag}")));
    assert!(cache.has(&key).unwrap());
    cache
        .set_many(
            &[(format!("{tag}:a").as_str(), 1u8), (format!("{tag}:b").as_str(), 2u8)],
            None,
        )
        .unwrap();
    assert_eq!(
        cache
            .get_many::<u8>(&[&format!("{tag}:a"), &format!("{tag}:b")])
            .unwrap(),
        vec![Some(1), Some(2)]
    );
    assert!(cache.remove(&key).unwrap());
    assert!(!cache.remove(&key).unwrap());
}

#[test]
fn from_a_plain_thread() {
    let server = RedisServer::start();
    let cache = redis_blocking(&server);
    exercise(&cache, "plain");
    let clone = cache.clone();
    std::thread::spawn(move || exercise(&clone, "other-thread"))
        .join()
        .unwrap();
    cache.set_prefix("p:");
    cache.set("x", &1u8, None).unwrap();
    cache.purge().unwrap();
    assert!(!cache.has("x").unwrap());
    cache.close().unwrap();
    assert!(cache.get::<u8>("x").is_err());
}

#[test]
fn from_inside_a_current_thread_runtime() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The only runtime thread blocks here; the work runs elsewhere, so no deadlock.
        let cache = redis_blocking(&server);
        exercise(&cache, "current");
        exercise(&BlockingCache::new(MemoryCache::new(10)), "current-mem");
    });
}

#[test]
fn from_inside_a_multi_thread_runtime() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = redis_blocking(&server);
        exercise(&cache, "multi");
        let handle = tokio::spawn(async move {
            exercise(&cache, "multi-task");
        });
        handle.await.unwrap();
    });
}

#[tokio::test(flavor = "current_thread")]
async fn from_a_tokio_test() {
    let server = RedisServer::start();
    let cache = redis_blocking(&server);
    exercise(&cache, "tokio-test");
}

#[test]
fn from_many_plain_threads_at_once() {
    let server = RedisServer::start();
    let cache = redis_blocking(&server);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let key = format!("many:{t}:{i}");
                    cache.set(&key, &i, None).unwrap();
                    assert_eq!(cache.get::<u32>(&key).unwrap(), Some(i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn from_a_blocking_pool_thread_and_a_foreign_executor() {
    let server = RedisServer::start();
    let cache = redis_blocking(&server);
    // A non-tokio executor on a plain thread: the call runs on this thread.
    futures::executor::block_on(async { exercise(&cache, "foreign-executor") });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clone = cache.clone();
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || exercise(&clone, "spawn-blocking"))
            .await
            .unwrap();
    });
}
