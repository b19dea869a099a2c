//! The two-tier engine after an outage, on real redis-server processes: a
//! replay never goes back in time (two instances with backlogs of different
//! ages; a write made after recovery and a slower instance's replay), writes
//! beyond `max_pending_writes` are counted and leave no stale value, and an
//! L1 filled before a lost subscription is not served once Redis is back.

mod support;

use memorix::prelude::*;
use memorix::{GenericRedisCache, MsgPack, RedisConfig, Transform};
use std::time::{Duration, Instant};
use support::{unique_prefix, wait_until, RedisServer};

/// A slow prober replays long after a fast one.
const SLOW_PROBE: Duration = Duration::from_millis(1500);
const FAST_PROBE: Duration = Duration::from_millis(20);

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::from_url(&format!(
        "{}?connect_timeout=300ms&response_timeout=300ms",
        server.url()
    ))
    .unwrap()
}

async fn instance(server: &RedisServer, prefix: &str, probe: Duration) -> GenericRedisCache {
    GenericRedisCache::builder()
        .redis(config(server))
        .prefix(prefix)
        .probe_interval(probe)
        .connect()
        .await
        .unwrap()
}

/// What Redis holds under `key`, read by an instance with an empty L1.
async fn truth(server: &RedisServer, prefix: &str, key: &str) -> Option<String> {
    let reader = instance(server, prefix, FAST_PROBE).await;
    reader.get::<String>(key).await.unwrap()
}

#[tokio::test]
async fn the_later_outage_write_wins_whichever_instance_replays_last() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("replay-order");
    // A replays last: its backlog is the older one.
    let a = instance(&server, &prefix, SLOW_PROBE).await;
    let b = instance(&server, &prefix, FAST_PROBE).await;
    server.stop();
    a.set("k", &"A", None).await.unwrap();
    a.set("gone", &"A", None).await.unwrap();
    b.set("k", &"B", None).await.unwrap(); // later: wins
    b.remove("gone").await.unwrap(); // a removal wins the same way
    assert!(!a.is_redis_available() && !b.is_redis_available());

    server.restart();
    let b_took = wait_until("B recovers", Duration::from_secs(2), || b.is_redis_available()).await;
    assert!(!a.is_redis_available(), "A has not replayed yet: the order under test");
    let a_later = wait_until("A recovers", Duration::from_secs(3), || a.is_redis_available()).await;
    eprintln!("B replayed {b_took:?} after the restart, A {a_later:?} after B");

    assert_eq!(truth(&server, &prefix, "k").await.as_deref(), Some("B"));
    assert_eq!(truth(&server, &prefix, "gone").await, None);
    for instance in [&a, &b] {
        assert_eq!(instance.get::<String>("k").await.unwrap().as_deref(), Some("B"));
        assert_eq!(instance.get::<String>("gone").await.unwrap(), None);
    }
    assert!(a.stats().replayed_writes >= 2 && b.stats().replayed_writes >= 2);
}

#[tokio::test]
async fn a_write_after_recovery_survives_a_slower_replay() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("replay-late");
    let slow = instance(&server, &prefix, SLOW_PROBE).await;
    server.stop();
    slow.set("k", &"during the outage", None).await.unwrap();
    slow.set("resurrect", &"during the outage", None).await.unwrap();
    server.restart();

    // Another instance writes and removes after the restart, before the slow
    // instance has replayed.
    let live = instance(&server, &prefix, FAST_PROBE).await;
    live.set("k", &"after recovery", None).await.unwrap();
    live.remove("resurrect").await.unwrap();
    assert!(
        !slow.is_redis_available(),
        "the replay comes later: the order under test"
    );
    wait_until("slow recovers", Duration::from_secs(3), || slow.is_redis_available()).await;

    assert_eq!(truth(&server, &prefix, "k").await.as_deref(), Some("after recovery"));
    assert_eq!(truth(&server, &prefix, "resurrect").await, None, "the removal stands");
    assert_eq!(
        slow.get::<String>("k").await.unwrap().as_deref(),
        Some("after recovery")
    );
    assert_eq!(slow.get::<String>("resurrect").await.unwrap(), None);
}

#[tokio::test]
async fn dropped_writes_are_counted_and_their_keys_removed_on_recovery() {
    // Redis keeps its data but stops answering for a while (CLIENT PAUSE):
    // without the cleanup, the old values of dropped writes would survive.
    let server = RedisServer::start();
    let prefix = unique_prefix("dropped");
    let cache = GenericRedisCache::builder()
        .redis(config(&server))
        .prefix(&prefix)
        .probe_interval(FAST_PROBE)
        .max_pending_writes(10)
        .connect()
        .await
        .unwrap();
    for i in 0..20u32 {
        cache.set(&format!("k{i}"), &"old", None).await.unwrap();
    }
    server.pause_clients(1500).await;
    let paused = Instant::now();
    for i in 0..20u32 {
        cache.set(&format!("k{i}"), &"new", None).await.unwrap();
    }
    assert!(
        paused.elapsed() < Duration::from_millis(1500),
        "the pause outlasted the writes"
    );
    assert_eq!(cache.stats().dropped_writes, 10, "20 writes, room for 10");
    assert_eq!(cache.pending_writes(), 20, "10 writes and 10 keys to remove");

    wait_until("recovery", Duration::from_secs(4), || cache.is_redis_available()).await;
    let (mut new, mut removed) = (0, 0);
    for i in 0..20u32 {
        match truth(&server, &prefix, &format!("k{i}")).await.as_deref() {
            Some("new") => new += 1,
            None => removed += 1,
            Some(other) => panic!("k{i} holds the stale value {other:?}"),
        }
    }
    assert_eq!((new, removed), (10, 10));
}

#[tokio::test]
async fn too_many_dropped_writes_purge_the_namespace() {
    let server = RedisServer::start();
    let prefix = unique_prefix("overflow");
    let cache = GenericRedisCache::builder()
        .redis(config(&server))
        .prefix(&prefix)
        .probe_interval(FAST_PROBE)
        .max_pending_writes(2)
        .connect()
        .await
        .unwrap();
    for i in 0..6u32 {
        cache.set(&format!("k{i}"), &"old", None).await.unwrap();
    }
    server.pause_clients(1000).await;
    for i in 0..6u32 {
        cache.set(&format!("k{i}"), &"new", None).await.unwrap();
    }
    assert_eq!(cache.stats().dropped_writes, 4);
    wait_until("recovery", Duration::from_secs(4), || cache.is_redis_available()).await;
    for i in 0..6u32 {
        let held = truth(&server, &prefix, &format!("k{i}")).await;
        assert_ne!(held.as_deref(), Some("old"), "k{i} kept a stale value");
    }
}

#[tokio::test]
async fn l1_filled_before_a_lost_subscription_is_not_served_after_a_restart() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("gap");
    // A resubscribes late (its retry is the probe interval); it has no
    // traffic during the outage, so its breaker never opens.
    let a = instance(&server, &prefix, SLOW_PROBE).await;
    wait_until("subscription", Duration::from_secs(2), || a.is_coherent()).await;
    a.set("k", &"before".to_owned(), None).await.unwrap();
    assert_eq!(a.get::<String>("k").await.unwrap().as_deref(), Some("before"));

    server.restart();
    wait_until("subscription lost", Duration::from_secs(2), || !a.is_coherent()).await;
    // Another writer changes the key while A cannot hear about it.
    let sealed = memorix::Envelope::new(&MsgPack)
        .seal(&memorix::encode(&MsgPack, &"after".to_owned()).unwrap())
        .unwrap();
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}k"))
        .arg(sealed)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(a.get::<String>("k").await.unwrap().as_deref(), Some("after"));
    assert!(!a.is_coherent(), "read during the gap: the case under test");
    let gap = wait_until("resubscription", Duration::from_secs(4), || a.is_coherent()).await;
    eprintln!("the subscription came back {gap:?} after the fresh read");
    assert_eq!(a.get::<String>("k").await.unwrap().as_deref(), Some("after"));
}
