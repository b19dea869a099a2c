//! `GenericRedisCache` when Redis goes away: memory-only start, the circuit
//! breaker, serving from L1, replaying writes, and recovery within 1 s of
//! redis-server coming back (killed and restarted mid-test, same port).

mod support;

use memorix::prelude::*;
use memorix::{CacheFactory, GenericRedisCache, MsgPack, RedisConfig, Transform};
use std::time::{Duration, Instant};
use support::{unique_prefix, wait_until, RedisServer};

/// Short timeouts so a dead server costs little; recovery is the probe's job.
fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::from_url(&format!(
        "{}?connect_timeout=300ms&response_timeout=300ms",
        server.url()
    ))
    .unwrap()
}

async fn connect(server: &RedisServer, prefix: &str) -> GenericRedisCache {
    GenericRedisCache::builder()
        .redis(config(server))
        .prefix(prefix)
        .connect()
        .await
        .unwrap()
}

async fn raw_get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    let mut raw = server.raw().await;
    redis::cmd("GET").arg(key).query_async(&mut raw).await.unwrap()
}

#[tokio::test]
async fn kill_and_restart_mid_run_surfaces_no_error_and_recovers_within_1s() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("kill");
    let cache = connect(&server, &prefix).await;
    cache.set("before", &"kept in L1", None).await.unwrap();
    cache.set("doomed", &"removed during the outage", None).await.unwrap();

    server.stop();

    // Nothing surfaces: L1 serves, writes land in memory, misses are misses.
    let outage = Instant::now();
    for i in 0..20u32 {
        assert_eq!(
            cache.get::<String>("before").await.unwrap().as_deref(),
            Some("kept in L1")
        );
        cache.set(&format!("during{i}"), &i, None).await.unwrap();
        assert_eq!(cache.get::<u32>(&format!("during{i}")).await.unwrap(), Some(i));
        assert_eq!(cache.get::<u32>("never-set").await.unwrap(), None);
    }
    assert!(cache.remove("doomed").await.unwrap(), "it was in L1");
    assert!(!cache.is_redis_available(), "breaker open");
    assert!(
        outage.elapsed() < Duration::from_secs(5),
        "calls stopped waiting on timeouts once the breaker opened: {:?}",
        outage.elapsed()
    );
    let stats = cache.stats();
    assert!(stats.circuit_breaker_opens >= 1);
    assert!(stats.redis_set_failures >= 1);
    assert!(cache.pending_writes() >= 20);

    server.restart();
    let restarted = Instant::now();
    wait_until("recovery", Duration::from_secs(1), || cache.is_redis_available()).await;
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(1), "recovered in {took:?}");

    // Writes made during the outage were replayed into the new server.
    assert_eq!(cache.pending_writes(), 0);
    for i in 0..20u32 {
        let stored = raw_get(&server, &format!("{prefix}during{i}")).await;
        assert!(stored.is_some(), "during{i} was replayed");
        assert_eq!(cache.get::<u32>(&format!("during{i}")).await.unwrap(), Some(i));
    }
    let doomed = raw_get(&server, &format!("{prefix}doomed")).await;
    assert!(
        doomed.is_none_or(|v| memorix::Header::parse(&v).unwrap().0.tombstone()),
        "the removal was replayed (as a tombstone)"
    );
    assert_eq!(cache.get::<String>("doomed").await.unwrap(), None);
    assert!(cache.stats().replayed_writes >= 21);
    assert!(cache.stats().recoveries >= 1);
    // Back in two-tier mode: a fresh write reaches Redis.
    cache.set("after", &1u8, None).await.unwrap();
    assert!(raw_get(&server, &format!("{prefix}after")).await.is_some());
}

#[tokio::test]
async fn writes_that_failed_do_not_leave_stale_values_in_a_surviving_redis() {
    // Redis keeps its data but stops answering A for a while (CLIENT PAUSE):
    // A's write and removal during the pause must win over the old values.
    let server = RedisServer::start();
    let prefix = unique_prefix("stale");
    let a = connect(&server, &prefix).await;
    a.set("k", &"old", None).await.unwrap();
    a.set("gone", &"old", None).await.unwrap();
    server.pause_clients(1500).await;
    let paused = Instant::now();
    a.set("k", &"new", None).await.unwrap();
    a.remove("gone").await.unwrap();
    assert_eq!(a.get::<String>("k").await.unwrap().as_deref(), Some("new"));
    assert!(
        paused.elapsed() < Duration::from_millis(1500),
        "the pause outlasted the writes"
    );
    assert!(!a.is_redis_available());
    wait_until("recovery", Duration::from_secs(3), || a.is_redis_available()).await;
    let b = connect(&server, &prefix).await;
    assert_eq!(b.get::<String>("k").await.unwrap().as_deref(), Some("new"));
    assert_eq!(b.get::<String>("gone").await.unwrap(), None);
}

#[tokio::test]
async fn memory_only_at_start_then_switches_to_redis() {
    let mut server = RedisServer::start();
    let cfg = config(&server);
    server.stop();

    // fail_on_connection_error: an error, not a silent fallback.
    let err = GenericRedisCache::builder()
        .redis(cfg.clone())
        .fail_on_connection_error(true)
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    let prefix = unique_prefix("memonly");
    let cache = GenericRedisCache::builder()
        .redis(cfg.clone())
        .prefix(&prefix)
        .connect()
        .await
        .expect("memory-only mode");
    assert!(!cache.is_redis_available());
    cache.set("k", &"in memory", None).await.unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some("in memory"));
    assert!(cache.has("k").await.unwrap());

    // A factory preset with L1 off still works from memory.
    let testing = CacheFactory::testing(&cfg.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    testing.set("t", &5u8, None).await.unwrap();
    assert_eq!(testing.get::<u8>("t").await.unwrap(), Some(5));

    server.restart();
    let took = wait_until("switch to Redis", Duration::from_secs(1), || {
        cache.is_redis_available() && testing.is_redis_available()
    })
    .await;
    assert!(took < Duration::from_secs(1));
    // The memory-only write was replayed into Redis.
    assert!(raw_get(&server, &format!("{prefix}k")).await.is_some());
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some("in memory"));
    cache.set("later", &1u8, None).await.unwrap();
    assert!(raw_get(&server, &format!("{prefix}later")).await.is_some());
}

#[tokio::test]
async fn l1_is_cleared_after_the_subscription_reconnects() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("resub");
    let a = connect(&server, &prefix).await;
    wait_until("subscription", Duration::from_secs(2), || a.is_coherent()).await;
    a.set("k", &1u8, None).await.unwrap();
    server.restart();
    // While the subscription was down, another writer changed the key.
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}k"))
        .arg(
            memorix::Envelope::new(&MsgPack)
                .seal(&memorix::encode(&MsgPack, &2u8).unwrap())
                .unwrap(),
        )
        .query_async(&mut raw)
        .await
        .unwrap();
    wait_until("resubscription", Duration::from_secs(2), || {
        a.is_coherent() && a.is_redis_available()
    })
    .await;
    wait_until("fresh value", Duration::from_secs(1), || a.stats().l1_clears >= 1).await;
    assert_eq!(a.get::<u8>("k").await.unwrap(), Some(2));
}
