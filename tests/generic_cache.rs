//! `GenericRedisCache` on a real redis-server: both tiers, TTLs, delete and
//! exists, compression and the envelope, the zlib bomb, cross-instance L1
//! coherence, monitoring, callbacks, configuration and factory presets.

mod support;

use memorix::prelude::*;
use memorix::{
    CacheError, CacheEvent, CacheFactory, CorruptEntryPolicy, GenericRedisCache, Header, MsgPack, Secret,
    SecurityConfig, Tier,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{unique_prefix, RedisServer};

/// One callback invocation as the test records it.
type EventRecord = (CacheEvent, String, Option<Tier>);

async fn cache_on(server: &RedisServer, prefix: &str) -> GenericRedisCache {
    GenericRedisCache::builder()
        .redis(server.config())
        .prefix(prefix)
        .l1_cache_size(1_000)
        .connect()
        .await
        .expect("connect to test redis")
}

async fn raw_get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    let mut raw = server.raw().await;
    redis::cmd("GET").arg(key).query_async(&mut raw).await.unwrap()
}

async fn raw_pttl(server: &RedisServer, key: &str) -> i64 {
    let mut raw = server.raw().await;
    redis::cmd("PTTL").arg(key).query_async(&mut raw).await.unwrap()
}

#[tokio::test]
async fn round_trips_ttl_in_redis_and_both_tiers() {
    let server = RedisServer::start();
    let prefix = unique_prefix("rt");
    let cache = cache_on(&server, &prefix).await;
    assert!(cache.is_redis_available());

    assert_eq!(cache.get::<String>("missing").await.unwrap(), None);
    cache
        .set("user", &("Ada".to_owned(), 36u32), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    // L1 hit (the decoded value is reused), then the byte API.
    for _ in 0..3 {
        assert_eq!(
            cache.get::<(String, u32)>("user").await.unwrap(),
            Some(("Ada".into(), 36))
        );
    }
    let bytes = cache.get_bytes("user").await.unwrap().unwrap();
    assert_eq!(
        memorix::decode::<(String, u32)>(&MsgPack, &bytes).unwrap(),
        ("Ada".into(), 36)
    );
    // Typed reads through CacheExt decode every time and agree.
    assert_eq!(
        CacheExt::get::<(String, u32)>(&cache, "user").await.unwrap(),
        Some(("Ada".into(), 36))
    );

    // The TTL is applied in Redis.
    let pttl = raw_pttl(&server, &format!("{prefix}user")).await;
    assert!((55_000..=60_000).contains(&pttl), "PTTL {pttl}");
    // Default TTL 3600 s when None is passed.
    cache.set("dflt", &1u8, None).await.unwrap();
    let pttl = raw_pttl(&server, &format!("{prefix}dflt")).await;
    assert!((3_590_000..=3_600_000).contains(&pttl), "PTTL {pttl}");

    // The stored bytes carry the envelope header.
    let stored = raw_get(&server, &format!("{prefix}user")).await.unwrap();
    let (header, _) = Header::parse(&stored).unwrap();
    assert!(!header.compressed() && !header.encrypted());
    assert_eq!(header.codec_id(), 1);

    // A value read from Redis by another instance lives in its L1 no longer
    // than its remaining Redis TTL: both tiers expire together.
    cache
        .set("short", &"soon gone", Some(Duration::from_millis(400)))
        .await
        .unwrap();
    let other = cache_on(&server, &prefix).await;
    assert_eq!(
        other.get::<String>("short").await.unwrap().as_deref(),
        Some("soon gone")
    );
    assert_eq!(other.stats().redis.hits, 1);
    assert_eq!(
        other.get::<String>("short").await.unwrap().as_deref(),
        Some("soon gone")
    );
    assert_eq!(other.stats().l1.hits, 1, "second read is an L1 hit");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other.get::<String>("short").await.unwrap(), None);
    assert_eq!(cache.get::<String>("short").await.unwrap(), None);
    assert_eq!(raw_get(&server, &format!("{prefix}short")).await, None);

    // A zero TTL is a config error.
    let err = cache.set("zero", &1u8, Some(Duration::ZERO)).await.unwrap_err();
    assert!(err.is_config());
}

#[tokio::test]
async fn delete_and_exists_never_trust_a_stale_l1() {
    let server = RedisServer::start();
    let prefix = unique_prefix("del");
    let cache = cache_on(&server, &prefix).await;

    cache.set("k", &"v", None).await.unwrap();
    assert!(cache.has("k").await.unwrap());
    assert!(cache.remove("k").await.unwrap(), "existing key: true");
    assert!(!cache.remove("k").await.unwrap(), "missing key: false");
    assert!(!cache.has("k").await.unwrap());
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    // Redis keeps a short-lived tombstone, so a replay of an older write cannot
    // bring the key back.
    let left = raw_get(&server, &format!("{prefix}k")).await.expect("a tombstone");
    assert!(memorix::Header::parse(&left).unwrap().0.tombstone());

    // The key vanishes from Redis behind the cache's back (expiry, FLUSHDB):
    // exists asks Redis, not L1.
    cache.set("gone", &"v", None).await.unwrap();
    let mut raw = server.raw().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}gone"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!cache.has("gone").await.unwrap());

    // purge removes this prefix only, in both tiers.
    cache.set("a", &1u8, None).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("unrelated")
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();
    cache.purge().await.unwrap();
    assert_eq!(cache.get::<u8>("a").await.unwrap(), None);
    assert_eq!(raw_get(&server, "unrelated").await, Some(b"x".to_vec()));
}

#[tokio::test]
async fn compression_envelope_and_the_zlib_bomb() {
    let server = RedisServer::start();
    let prefix = unique_prefix("zip");
    let cache = GenericRedisCache::builder()
        .redis(server.config())
        .prefix(&prefix)
        .max_decompressed_size(1 << 20)
        .connect()
        .await
        .unwrap();

    let doc: Vec<String> = (0..400).map(|i| format!("line {i}: the quick brown fox")).collect();
    cache.set("doc", &doc, None).await.unwrap();
    let stored = raw_get(&server, &format!("{prefix}doc")).await.unwrap();
    let (header, _) = Header::parse(&stored).unwrap();
    assert!(header.compressed(), "values above 1000 bytes are compressed");
    assert!(stored.len() < memorix::encode(&MsgPack, &doc).unwrap().len() / 3);
    // Read back through Redis (not L1) by a reader with compression off.
    let reader = GenericRedisCache::builder()
        .redis(server.config())
        .prefix(&prefix)
        .compression(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(reader.get::<Vec<String>>("doc").await.unwrap(), Some(doc.clone()));
    let stats = cache.stats();
    assert_eq!(stats.compression.compressions, 1);
    assert!(stats.compression.ratio > 3.0, "{:?}", stats.compression);

    // Small values stay uncompressed.
    cache.set("small", &"tiny", None).await.unwrap();
    let small = raw_get(&server, &format!("{prefix}small")).await.unwrap();
    assert!(!Header::parse(&small).unwrap().0.compressed());

    // A zlib bomb planted in Redis: 64 MiB of zeros in a few KiB.
    let bomb = memorix::compress(&vec![0u8; 64 << 20], 9).unwrap();
    assert!(bomb.len() < 100 << 10);
    let mut planted = vec![memorix::ENVELOPE_MAGIC, memorix::ENVELOPE_VERSION, 0b01, 1];
    planted.extend_from_slice(&bomb);
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}bomb"))
        .arg(&planted)
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = cache.get::<Vec<u8>>("bomb").await.unwrap_err();
    assert!(matches!(err, CacheError::Compression(_)), "{err}");
    assert!(cache.get_bytes("bomb").await.unwrap_err().is_corrupt_entry());
    assert_eq!(cache.stats().errors.get("compression").copied(), Some(2));

    // With the Miss policy the bomb reads as a miss.
    let lenient = GenericRedisCache::builder()
        .redis(server.config())
        .prefix(&prefix)
        .on_corrupt_entry(CorruptEntryPolicy::Miss)
        .connect()
        .await
        .unwrap();
    assert_eq!(lenient.get::<Vec<u8>>("bomb").await.unwrap(), None);

    // Bytes without the header are refused with a typed error, not a panic.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}foreign"))
        .arg("plain text")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(cache.get::<String>("foreign").await.unwrap_err().is_corrupt_entry());
}

#[tokio::test]
async fn another_instance_stops_serving_the_old_value_within_50_ms() {
    let server = RedisServer::start();
    let prefix = unique_prefix("coh");
    let a = cache_on(&server, &prefix).await;
    let b = cache_on(&server, &prefix).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.is_coherent() && b.is_coherent()) {
        assert!(Instant::now() < deadline, "subscriptions did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_ne!(a.instance_id(), b.instance_id());

    for round in 0..5u32 {
        a.set("price", &round, None).await.unwrap();
        // B reads it (maybe from Redis, then from its L1).
        let seen = b.get::<u32>("price").await.unwrap();
        assert_eq!(seen, Some(round));
        assert_eq!(b.get::<u32>("price").await.unwrap(), Some(round));

        a.set("price", &(round + 100), None).await.unwrap();
        let updated = Instant::now();
        loop {
            if b.get::<u32>("price").await.unwrap() == Some(round + 100) {
                break;
            }
            assert!(
                updated.elapsed() < Duration::from_millis(50),
                "B still served the old value 50 ms after A's update"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // Removal propagates too.
    b.get::<u32>("price").await.unwrap();
    assert!(a.remove("price").await.unwrap());
    let removed = Instant::now();
    while b.get::<u32>("price").await.unwrap().is_some() {
        assert!(removed.elapsed() < Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(b.stats().invalidations_received >= 6);
    // An instance ignores its own messages: A's L1 still answers its own write.
    a.set("own", &7u8, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let hits = a.stats().l1.hits;
    assert_eq!(a.get::<u8>("own").await.unwrap(), Some(7));
    assert_eq!(a.stats().l1.hits, hits + 1);
}

#[tokio::test]
async fn monitoring_counts_gets_per_tier_and_serializes() {
    let server = RedisServer::start();
    let prefix = unique_prefix("mon");
    let cache = GenericRedisCache::builder()
        .redis(server.config())
        .prefix(&prefix)
        .slow_operation_threshold(Duration::from_nanos(1))
        .connect()
        .await
        .unwrap();
    cache.set("a", &1u32, None).await.unwrap();
    cache.set("b", &2u32, None).await.unwrap();
    cache.remove("b").await.unwrap();
    assert_eq!(cache.stats().gets, 0, "sets and deletes do not count as gets");
    assert_eq!(cache.stats().hit_rate, 0.0);

    for _ in 0..40 {
        cache.get::<u32>("a").await.unwrap();
    }
    cache.get::<u32>("missing").await.unwrap();
    let other = cache_on(&server, &prefix).await;
    other.get::<u32>("a").await.unwrap();

    let stats = cache.stats();
    assert_eq!((stats.l1.hits, stats.hits, stats.misses, stats.gets), (40, 40, 1, 41));
    assert_eq!(stats.redis.misses, 1);
    assert!((stats.hit_rate - 40.0 / 41.0).abs() < 1e-9);
    assert_eq!((stats.sets, stats.deletes), (2, 1));
    assert!(stats.slow_operations >= 3);
    assert!(stats.l1_entries >= 1 && stats.l1_bytes >= 1);
    let set_latency = stats.latency["set"];
    assert_eq!(set_latency.count, 2);
    assert!(set_latency.p50_us > 0.0 && set_latency.p99_us >= set_latency.p50_us);
    assert!(stats.latency["get"].count >= 1);
    assert_eq!(other.stats().redis.hits, 1);
    // The Cache trait's counters agree.
    assert_eq!(Cache::stats(&cache).hits(), 40);
    assert_eq!(Cache::stats(&cache).misses(), 1);

    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["l1"]["hits"], 40);
    assert!(json["latency"]["get"]["p95_us"].is_number());

    cache.reset_stats();
    let stats = cache.stats();
    assert_eq!((stats.gets, stats.sets, stats.latency["set"].count), (0, 0, 0));
    assert_eq!(Cache::stats(&cache).hits(), 0);
}

#[tokio::test]
async fn callbacks_fire_and_bad_handlers_do_not_break_operations() {
    let server = RedisServer::start();
    let prefix = unique_prefix("cb");
    let cache = GenericRedisCache::builder()
        .redis(server.config())
        .prefix(&prefix)
        .l1_cache_size(40)
        .connect()
        .await
        .unwrap();
    let log: Arc<Mutex<Vec<EventRecord>>> = Arc::default();
    let mut ids = Vec::new();
    for event in [
        CacheEvent::GetHit,
        CacheEvent::GetMiss,
        CacheEvent::Set,
        CacheEvent::Delete,
    ] {
        let log = log.clone();
        ids.push(cache.register_callback(event, move |info| {
            log.lock().unwrap().push((info.event, info.key.to_owned(), info.tier));
            Ok(())
        }));
        cache.register_callback(event, |_| Err("handler failed".into()));
        cache.register_callback(event, |_| panic!("handler panicked"));
    }
    let evictions = Arc::new(AtomicUsize::new(0));
    let ev = evictions.clone();
    cache.register_callback(CacheEvent::Eviction, move |_| {
        ev.fetch_add(1, SeqCst);
        Ok(())
    });

    cache.set("k", &1u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    assert_eq!(cache.get::<u8>("nope").await.unwrap(), None);
    assert!(cache.remove("k").await.unwrap());
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (CacheEvent::Set, "k".to_owned(), None),
            (CacheEvent::GetHit, "k".to_owned(), Some(Tier::L1)),
            (CacheEvent::GetMiss, "nope".to_owned(), None),
            (CacheEvent::Delete, "k".to_owned(), None),
        ]
    );

    for id in ids {
        assert!(cache.remove_callback(id));
    }
    cache.set("k", &2u8, None).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 4, "removed handlers are not called");

    for i in 0..200 {
        cache.set(&format!("fill{i}"), &i, None).await.unwrap();
    }
    assert!(evictions.load(SeqCst) >= 150, "{}", evictions.load(SeqCst));
    assert_eq!(cache.stats().l1_evictions as usize, evictions.load(SeqCst));
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let cases: Vec<(memorix::GenericRedisCacheBuilder, &str)> = vec![
        (GenericRedisCache::builder().l1_cache_size(0), "l1_cache_size"),
        (GenericRedisCache::builder().compression_level(12), "compression_level"),
        (GenericRedisCache::builder().default_ttl(Duration::ZERO), "default_ttl"),
        (GenericRedisCache::builder().redis_url("http://nope"), "url"),
        (
            GenericRedisCache::builder().circuit_breaker_threshold(0),
            "circuit_breaker_threshold",
        ),
        (
            GenericRedisCache::builder().max_decompressed_size(0),
            "max_decompressed_size",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.connect().await.unwrap_err();
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[tokio::test]
async fn factory_presets_and_settings_maps() {
    let server = RedisServer::start();
    let testing = CacheFactory::for_testing(&server.url()).await.unwrap();
    assert_eq!(testing.redis_config().db(), 15);
    testing.set("t", &1u8, None).await.unwrap();
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SELECT").arg(15).query_async(&mut raw).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg("t").query_async(&mut raw).await.unwrap();
    assert!((55_000..=60_000).contains(&pttl), "testing preset TTL is 60 s: {pttl}");
    // No L1: every get goes to Redis.
    testing.get::<u8>("t").await.unwrap();
    testing.get::<u8>("t").await.unwrap();
    assert_eq!((testing.stats().l1.hits, testing.stats().redis.hits), (0, 2));

    let web = CacheFactory::for_web_app(&server.url()).await.unwrap();
    web.set("w", &"x".repeat(1_500), None).await.unwrap();
    let stored = raw_get(&server, "w").await.unwrap();
    assert!(
        !Header::parse(&stored).unwrap().0.compressed(),
        "web threshold is 2000 bytes"
    );
    let pttl = raw_pttl(&server, "w").await;
    assert!((1_790_000..=1_800_000).contains(&pttl), "{pttl}");

    let ai = CacheFactory::ai_app()
        .redis(server.config())
        .prefix("ai:")
        .connect()
        .await
        .unwrap();
    assert_eq!(ai.operation_ttl("sentiment"), Some(Duration::from_secs(86_400)));
    let prompt = "Summarize: ".to_owned() + &"lorem ipsum ".repeat(200);
    ai.set_for("summarize", &prompt, &"a summary").await.unwrap();
    let key = ai.storage_key(&prompt).into_owned();
    assert!(key.len() < 120 && key.contains("#sha256:"));
    let pttl = raw_pttl(&server, &format!("ai:{key}")).await;
    assert!((7_190_000..=7_200_000).contains(&pttl), "{pttl}");
    assert_eq!(ai.get::<String>(&prompt).await.unwrap().as_deref(), Some("a summary"));

    let mut map = HashMap::new();
    map.insert("preset".to_owned(), "web".to_owned());
    map.insert("redis_url".to_owned(), server.url());
    map.insert("default_ttl".to_owned(), "2m".to_owned());
    map.insert("prefix".to_owned(), "m:".to_owned());
    let mapped = CacheFactory::from_map(&map).unwrap().connect().await.unwrap();
    mapped.set("x", &1u8, None).await.unwrap();
    let pttl = raw_pttl(&server, "m:x").await;
    assert!((115_000..=120_000).contains(&pttl), "{pttl}");
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_reports() {
    let server = RedisServer::start_with(&["--requirepass", "hunter2-secret"]);
    let cache = GenericRedisCache::builder()
        .redis(server.config())
        .security(SecurityConfig::new().password(Secret::new("hunter2-secret")))
        .connect()
        .await
        .unwrap();
    cache.set("k", &1u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    let validation = cache.validate_security().await;
    assert!(validation.connected);
    assert_eq!(validation.anonymous_access_refused, Some(true));
    assert!(!validation.is_secure, "no TLS, default user: {validation:?}");
    assert!(!cache.security_recommendations().is_empty());
    let report = cache.security_report();
    assert!(report.contains("score:"), "{report}");
    for text in [
        format!("{cache:?}"),
        report,
        format!("{:?}", cache.security_status()),
        cache.redis_config().to_string(),
    ] {
        assert!(!text.contains("hunter2"), "password leaked: {text}");
    }
}

#[tokio::test]
async fn batches_use_both_tiers() {
    let server = RedisServer::start();
    let prefix = unique_prefix("many");
    let a = cache_on(&server, &prefix).await;
    a.set_many(&[("x", 1u32), ("y", 2u32)], Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let b = cache_on(&server, &prefix).await;
    // One L1 hit in A's instance, Redis for the rest in B's.
    let got: Vec<Option<u32>> = CacheExt::get_many(&b, &["x", "missing", "y"]).await.unwrap();
    assert_eq!(got, vec![Some(1), None, Some(2)]);
    let stats = b.stats();
    assert_eq!((stats.redis.hits, stats.redis.misses, stats.misses), (2, 1, 1));
    // Filled into L1 with the Redis TTL: the second batch is all L1.
    let got: Vec<Option<u32>> = CacheExt::get_many(&b, &["y", "x"]).await.unwrap();
    assert_eq!(got, vec![Some(2), Some(1)]);
    assert_eq!(b.stats().l1.hits, 2);
    let pttl = raw_pttl(&server, &format!("{prefix}x")).await;
    assert!((25_000..=30_000).contains(&pttl), "{pttl}");
}
