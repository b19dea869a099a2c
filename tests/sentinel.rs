//! `RedisCache` through Redis Sentinel: a real primary, replica and three
//! sentinels; every Cache operation, then the primary killed and the cache
//! following the promoted replica without a restart.

mod support;

use memorix::prelude::*;
use memorix::{RedisCache, RedisConnection, Topology};
use std::time::{Duration, Instant};
use support::sentinel::RedisSentinel;
use support::{unique_prefix, RedisServer};

async fn cache_on(deployment: &RedisSentinel, prefix: &str) -> RedisCache {
    RedisCache::builder()
        .config(deployment.config())
        .prefix(prefix)
        .connect()
        .await
        .expect("connect through the sentinels")
}

fn primary_addr(cache: &RedisCache) -> String {
    match cache.client().unwrap() {
        RedisConnection::Sentinel(conn) => conn.primary_addr(),
        other => panic!("expected a sentinel connection, got {other:?}"),
    }
}

#[tokio::test]
async fn every_cache_operation_through_sentinel() {
    let deployment = RedisSentinel::start();
    assert_eq!(deployment.config().topology(), Topology::Sentinel);
    let prefix = unique_prefix("sentinel");
    let cache = cache_on(&deployment, &prefix).await;
    assert_eq!(primary_addr(&cache), format!("127.0.0.1:{}", deployment.primary_port()));

    assert_eq!(cache.get::<String>("missing").await.unwrap(), None);
    cache
        .set("greeting", &"hello", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(cache.get::<String>("greeting").await.unwrap().as_deref(), Some("hello"));
    assert!(cache.has("greeting").await.unwrap());
    let ttl = cache.ttl("greeting").await.unwrap().expect("a TTL was set");
    assert!(
        ttl > Duration::from_secs(55) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );

    // The write went to the primary the sentinels name.
    let mut primary = deployment.node_connection(deployment.primary_port());
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}greeting"))
        .query(&mut primary)
        .unwrap();
    assert_eq!(exists, 1);

    assert!(cache.remove("greeting").await.unwrap());
    assert!(!cache.remove("greeting").await.unwrap());

    let entries: Vec<(String, u32)> = (0..50).map(|i| (format!("k{i}"), i)).collect();
    let borrowed: Vec<(&str, u32)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    cache.set_many(&borrowed, None).await.unwrap();
    let names: Vec<&str> = borrowed.iter().map(|(k, _)| *k).collect();
    let values: Vec<Option<u32>> = cache.get_many(&names).await.unwrap();
    assert_eq!(values, (0..50).map(Some).collect::<Vec<_>>());

    let other = cache_on(&deployment, &unique_prefix("survivor")).await;
    other.set("kept", &1u8, None).await.unwrap();
    cache.purge().await.unwrap();
    assert_eq!(cache.get_many::<u32>(&names).await.unwrap(), vec![None; names.len()]);
    assert_eq!(
        other.get::<u8>("kept").await.unwrap(),
        Some(1),
        "another prefix survives"
    );
}

#[tokio::test]
async fn cache_follows_the_new_primary_after_the_old_one_is_killed() {
    let mut deployment = RedisSentinel::start();
    let prefix = unique_prefix("sentinel-failover");
    let cache = cache_on(&deployment, &prefix).await;
    cache.set("before", &7u32, None).await.unwrap();

    // Wait until the replica holds the write (replication is asynchronous).
    let mut replica = deployment.node_connection(deployment.replica_port());
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis::cmd("EXISTS")
        .arg(format!("{prefix}before"))
        .query::<u64>(&mut replica)
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "replica never received the write");
        std::thread::sleep(Duration::from_millis(20));
    }

    deployment.kill_primary();
    let failures = support::wait_until_served(&cache, "after", 8, "sentinel failover").await;

    assert!(failures > 0, "the kill was noticed");
    let new_primary = format!("127.0.0.1:{}", deployment.replica_port());
    assert_eq!(
        primary_addr(&cache),
        new_primary,
        "the cache moved to the promoted replica"
    );
    assert_eq!(deployment.primary_port_by_sentinels(), Some(deployment.replica_port()));
    let client = memorix::pubsub_client(&deployment.config()).await.unwrap();
    assert_eq!(
        client.get_connection_info().addr().to_string(),
        new_primary,
        "pubsub_client asks the sentinels anew"
    );
    assert_eq!(
        cache.get::<u32>("before").await.unwrap(),
        Some(7),
        "replicated data survives"
    );
    let mut promoted = deployment.node_connection(deployment.replica_port());
    let after: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}after"))
        .query(&mut promoted)
        .unwrap();
    let expected = memorix::encode(&memorix::MsgPack, &8u32).unwrap();
    assert_eq!(
        after,
        Some(expected),
        "writes after the failover land on the new primary"
    );
}

#[tokio::test]
async fn cache_follows_a_manual_failover_that_demotes_the_old_primary() {
    // SENTINEL FAILOVER keeps the old primary running, as a replica: the
    // cache's connection to it stays open, and writes answer READONLY.
    let deployment = RedisSentinel::start();
    let cache = cache_on(&deployment, &unique_prefix("sentinel-manual")).await;
    cache.set("before", &1u32, None).await.unwrap();
    let new_primary = format!("127.0.0.1:{}", deployment.replica_port());

    let mut sentinel = deployment.sentinel_connection(deployment.sentinel_ports()[0]);
    let () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(support::sentinel::MASTER_NAME)
        .query(&mut sentinel)
        .unwrap();
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        match cache.set("after", &2u32, None).await {
            Ok(()) if primary_addr(&cache) == new_primary => break,
            Ok(()) => {}
            Err(err) => {
                assert!(err.is_unavailable(), "{err}");
                failures += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "cache still on {} 15 s after SENTINEL FAILOVER ({failures} failed writes)",
            primary_addr(&cache)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "sentinel manual failover: writes reached the new primary {:?} after SENTINEL FAILOVER ({failures} failed writes)",
        started.elapsed()
    );
    assert_eq!(cache.get::<u32>("after").await.unwrap(), Some(2));
    assert_eq!(cache.get::<u32>("before").await.unwrap(), Some(1));
}

#[tokio::test]
async fn password_protected_sentinels_and_nodes() {
    let deployment = RedisSentinel::start_with_password("sn-s3cret");
    let config = deployment.config();
    assert!(!format!("{config:?}").contains("sn-s3cret"));
    assert!(!config.to_string().contains("sn-s3cret"));
    let cache = cache_on(&deployment, "auth:").await;
    cache.set("k", &5u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(5));

    // Right data-node password, wrong sentinel password: no primary is found.
    let wrong = deployment
        .url()
        .replace("sentinel_password=sn-s3cret", "sentinel_password=wrong-pw");
    let config =
        memorix::RedisConfig::from_url(&format!("{wrong}&connect_timeout=300ms&response_timeout=300ms")).unwrap();
    let err = RedisCache::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-pw"),
        "the password leaked: {err:?}"
    );
}

#[tokio::test]
async fn a_sentinel_config_with_no_reachable_sentinel_is_a_connection_error() {
    // A port nothing listens on: startup fails with a typed error, no panic.
    let port = support::redis_server::free_port();
    let config = memorix::RedisConfig::from_url(&format!(
        "redis+sentinel://127.0.0.1:{port}/mymaster/0?connect_timeout=200ms&response_timeout=200ms"
    ))
    .unwrap();
    let started = Instant::now();
    let err = RedisCache::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // RedisServer is shared by the other test files; name it so this file uses it too.
    let _: fn() -> RedisServer = RedisServer::start;
}

#[tokio::test]
async fn the_two_tier_cache_runs_through_sentinel() {
    use memorix::prelude::*;
    let sentinel = RedisSentinel::start();
    let cache = memorix::GenericRedisCache::builder()
        .redis(sentinel.config())
        .prefix("generic-sentinel:")
        .connect()
        .await
        .unwrap();
    assert!(
        cache.is_redis_available(),
        "connected through the sentinels, not memory-only"
    );
    cache
        .set("k", &"v", Some(std::time::Duration::from_secs(60)))
        .await
        .unwrap();
    let mut primary = sentinel.node_connection(sentinel.primary_port());
    let stored: bool = redis::cmd("EXISTS")
        .arg("generic-sentinel:k")
        .query(&mut primary)
        .unwrap();
    assert!(stored, "the value landed on the primary");
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some("v"));
    assert!(cache.remove("k").await.unwrap());
}
