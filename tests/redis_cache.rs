//! `RedisCache` against a real redis-server: every method of the Cache API,
//! prefixes, TTLs, batches, codecs, corrupt entries, a dead server, and the
//! default reconnecting connection (restarts, outages, frozen servers).

mod support;

use memorix::prelude::*;
use memorix::{
    CacheError, CorruptEntryPolicy, Json, MsgPack, Pickle, RawBytes, ReconnectingConnection, RedisCache, RedisConfig,
    RedisConnection,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{unique_prefix, RedisServer};

async fn cache_on(server: &RedisServer, prefix: &str) -> RedisCache {
    RedisCache::builder()
        .config(server.config())
        .prefix(prefix)
        .connect()
        .await
        .expect("connect to test redis")
}

#[tokio::test]
async fn get_set_has_remove_round_trip() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "app:").await;

    assert_eq!(cache.get::<String>("missing").await.unwrap(), None);
    cache.set("greeting", &"Hello, World!", None).await.unwrap();
    assert_eq!(
        cache.get::<String>("greeting").await.unwrap().as_deref(),
        Some("Hello, World!")
    );
    assert!(cache.has("greeting").await.unwrap());

    // The key is stored under the prefix, nowhere else.
    let mut raw = server.raw().await;
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("app:greeting")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(stored, Some(rmp_bytes(&"Hello, World!")));

    assert!(
        cache.remove("greeting").await.unwrap(),
        "remove of an existing key is true"
    );
    assert!(
        !cache.remove("greeting").await.unwrap(),
        "remove of a missing key is false"
    );
    assert!(!cache.has("greeting").await.unwrap());
    assert_eq!(cache.get::<String>("greeting").await.unwrap(), None);
}

fn rmp_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    memorix::encode(&MsgPack, v).unwrap()
}

#[tokio::test]
async fn overwrite_replaces_value_and_ttl() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "").await;
    cache.set("k", &1u32, Some(Duration::from_secs(100))).await.unwrap();
    cache.set("k", &2u32, None).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
    assert_eq!(
        cache.ttl("k").await.unwrap(),
        None,
        "a write without TTL clears the old expiry"
    );
}

#[tokio::test]
async fn ttl_is_millisecond_precise_and_expires() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "ttl:").await;
    cache
        .set("short", &"x", Some(Duration::from_millis(100)))
        .await
        .unwrap();
    cache.set("long", &"y", Some(Duration::from_secs(60))).await.unwrap();

    let mut raw = server.raw().await;
    let pttl: i64 = redis::cmd("PTTL").arg("ttl:short").query_async(&mut raw).await.unwrap();
    assert!((1..=100).contains(&pttl), "PX 100 stored, PTTL was {pttl}");
    let long = cache.ttl("long").await.unwrap().unwrap();
    assert!(
        long > Duration::from_secs(55) && long <= Duration::from_secs(60),
        "{long:?}"
    );

    assert!(cache.has("short").await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!cache.has("short").await.unwrap(), "expired after 100 ms");
    assert_eq!(cache.get::<String>("short").await.unwrap(), None);
    assert!(cache.has("long").await.unwrap());
}

#[tokio::test]
async fn zero_ttl_is_an_error_and_default_ttl_applies() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "").await;
    let err = cache.set("k", &1u8, Some(Duration::ZERO)).await.unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("`ttl`"), "{err}");
    assert!(!cache.has("k").await.unwrap(), "nothing was written");

    let with_default = RedisCache::builder()
        .config(server.config())
        .default_ttl(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    with_default.set("d", &1u8, None).await.unwrap();
    let ttl = with_default.ttl("d").await.unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(25) && ttl <= Duration::from_secs(30),
        "{ttl:?}"
    );
    let err = RedisCache::builder()
        .config(server.config())
        .default_ttl(Duration::ZERO)
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("default_ttl"), "{err}");
}

#[tokio::test]
async fn prefixes_isolate_reads_and_purges() {
    let server = RedisServer::start();
    let dev = cache_on(&server, "dev:").await;
    let prod = cache_on(&server, "prod:").await;
    // A prefix with glob characters must purge only its own keys.
    let globby = cache_on(&server, "we*rd[").await;

    dev.set("config", &"debug", None).await.unwrap();
    prod.set("config", &"quiet", None).await.unwrap();
    globby.set("config", &"odd", None).await.unwrap();
    let mut raw = server.raw().await;
    let _: () = redis::cmd("SET")
        .arg("we-other")
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();
    for i in 0..1200 {
        dev.set(&format!("bulk:{i}"), &i, None).await.unwrap();
    }

    assert_eq!(dev.get::<String>("config").await.unwrap().as_deref(), Some("debug"));
    assert_eq!(prod.get::<String>("config").await.unwrap().as_deref(), Some("quiet"));

    dev.purge().await.unwrap();
    assert!(!dev.has("config").await.unwrap());
    assert!(
        !dev.has("bulk:1199").await.unwrap(),
        "purge covers more than one SCAN batch"
    );
    assert_eq!(
        prod.get::<String>("config").await.unwrap().as_deref(),
        Some("quiet"),
        "prod untouched"
    );

    globby.purge().await.unwrap();
    assert!(!globby.has("config").await.unwrap());
    let other: Option<String> = redis::cmd("GET").arg("we-other").query_async(&mut raw).await.unwrap();
    assert_eq!(other.as_deref(), Some("x"), "glob characters in a prefix are escaped");
    assert!(prod.has("config").await.unwrap());

    // set_prefix switches namespace for later calls.
    prod.set_prefix("dev:");
    assert_eq!(prod.prefix(), "dev:");
    assert!(!prod.has("config").await.unwrap());

    // flush_db is the explicit whole-database flush.
    prod.flush_db().await.unwrap();
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    assert_eq!(size, 0);
}

async fn command_calls(raw: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(raw).await.unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn batch_operations_take_one_round_trip() {
    let server = RedisServer::start();
    let cache = cache_on(&server, &unique_prefix("batch")).await;
    let entries: Vec<(String, u32)> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    let borrowed: Vec<(&str, u32)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();

    let mut raw = server.raw().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    cache.set_many(&borrowed, Some(Duration::from_secs(60))).await.unwrap();
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    keys.push("absent");
    let values = cache.get_many::<u32>(&keys).await.unwrap();

    assert_eq!(values.len(), 101);
    assert_eq!(values[..100], (0..100).map(Some).collect::<Vec<_>>()[..]);
    assert_eq!(values[100], None);
    assert_eq!(
        command_calls(&mut raw, "mget").await,
        1,
        "get_many of 100 keys is one MGET"
    );
    assert_eq!(command_calls(&mut raw, "get").await, 0, "and no single GETs");
    assert_eq!(command_calls(&mut raw, "set").await, 100, "set_many pipelines 100 SETs");
    let ttl = cache.ttl("k42").await.unwrap().unwrap();
    assert!(ttl > Duration::from_secs(55));
    assert_eq!(cache.stats().hits(), 100);
    assert_eq!(cache.stats().misses(), 1);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Role {
    Admin,
    Guest { since: u32 },
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    roles: Vec<Role>,
    tags: BTreeMap<String, i64>,
    manager: Option<Box<Profile>>,
    nickname: Option<String>,
    score: f64,
    #[serde(with = "serde_bytes")]
    avatar: Vec<u8>,
}

fn sample_profile() -> Profile {
    Profile {
        id: 7,
        name: "Zoë 東京 🚀".into(),
        roles: vec![Role::Admin, Role::Guest { since: 2019 }, Role::Custom("ops".into())],
        tags: BTreeMap::from([("a".into(), -1), ("ключ".into(), i64::MAX)]),
        manager: Some(Box::new(Profile {
            id: 1,
            name: "Ada".into(),
            roles: vec![],
            tags: BTreeMap::new(),
            manager: None,
            nickname: Some("countess".into()),
            score: 0.5,
            avatar: vec![],
        })),
        nickname: None,
        score: 99.25,
        avatar: vec![0, 1, 2, 254, 255],
    }
}

async fn assert_round_trips(cache: &RedisCache) {
    let profile = sample_profile();
    cache.set("profile", &profile, None).await.unwrap();
    assert_eq!(cache.get::<Profile>("profile").await.unwrap(), Some(profile));

    let none: Option<u32> = None;
    cache.set("none", &none, None).await.unwrap();
    assert_eq!(
        cache.get::<Option<u32>>("none").await.unwrap(),
        Some(None),
        "a stored None is not a miss"
    );

    let unicode = "naïve café — 你好 — 🦀".to_owned();
    cache.set("unicode", &unicode, None).await.unwrap();
    assert_eq!(cache.get::<String>("unicode").await.unwrap(), Some(unicode));

    let bytes = serde_bytes::ByteBuf::from(vec![0u8, 159, 146, 150, 255]);
    cache.set("bytes", &bytes, None).await.unwrap();
    assert_eq!(cache.get::<serde_bytes::ByteBuf>("bytes").await.unwrap(), Some(bytes));

    let map: BTreeMap<String, Vec<Option<bool>>> = BTreeMap::from([("x".into(), vec![Some(true), None])]);
    cache.set("map", &map, None).await.unwrap();
    assert_eq!(
        cache.get::<BTreeMap<String, Vec<Option<bool>>>>("map").await.unwrap(),
        Some(map)
    );
}

#[tokio::test]
async fn every_structured_codec_round_trips_nested_values() {
    let server = RedisServer::start();
    let msgpack = RedisCache::builder()
        .config(server.config())
        .prefix("mp:")
        .codec(MsgPack)
        .connect()
        .await
        .unwrap();
    let json = RedisCache::builder()
        .config(server.config())
        .prefix("js:")
        .codec(Json)
        .connect()
        .await
        .unwrap();
    let pickle = RedisCache::builder()
        .config(server.config())
        .prefix("pk:")
        .codec(Pickle)
        .connect()
        .await
        .unwrap();
    assert_round_trips(&msgpack).await;
    assert_round_trips(&json).await;
    assert_round_trips(&pickle).await;

    // JSON entries are readable JSON in Redis.
    let mut raw = server.raw().await;
    let stored: String = redis::cmd("GET").arg("js:unicode").query_async(&mut raw).await.unwrap();
    assert_eq!(stored, "\"naïve café — 你好 — 🦀\"");
}

#[tokio::test]
async fn raw_codec_stores_bytes_unchanged() {
    let server = RedisServer::start();
    let cache = RedisCache::builder()
        .config(server.config())
        .codec(RawBytes)
        .connect()
        .await
        .unwrap();
    cache.set("page", "<h1>héllo</h1>", None).await.unwrap();
    cache
        .set("blob", &serde_bytes::Bytes::new(&[0, 255, 10]), None)
        .await
        .unwrap();
    let mut raw = server.raw().await;
    let stored: Vec<u8> = redis::cmd("GET").arg("blob").query_async(&mut raw).await.unwrap();
    assert_eq!(stored, [0, 255, 10]);
    assert_eq!(
        cache.get::<String>("page").await.unwrap().as_deref(),
        Some("<h1>héllo</h1>")
    );
    assert_eq!(cache.get::<Vec<u8>>("blob").await.unwrap(), Some(vec![0, 255, 10]));
    let err = cache.set("n", &5u32, None).await.unwrap_err();
    assert!(matches!(err, CacheError::Codec { codec: "raw", .. }), "{err}");

    // The raw-bytes variants skip the codec on every engine.
    cache.set_bytes("direct", b"\x01\x02", None).await.unwrap();
    assert_eq!(cache.get_bytes("direct").await.unwrap(), Some(b"\x01\x02".to_vec()));
}

#[tokio::test]
async fn corrupt_entries_give_the_documented_error_or_miss_and_stay_stored() {
    let server = RedisServer::start();
    let mut raw = server.raw().await;
    let garbage: &[u8] = &[0xc1, 0xff, 0x00, 0x13];
    let _: () = redis::cmd("SET")
        .arg("c:bad")
        .arg(garbage)
        .query_async(&mut raw)
        .await
        .unwrap();

    let strict = cache_on(&server, "c:").await;
    let err = strict.get::<Profile>("bad").await.unwrap_err();
    assert!(err.is_corrupt_entry(), "{err}");
    assert!(matches!(err, CacheError::Codec { codec: "msgpack", .. }));

    let lenient = RedisCache::builder()
        .config(server.config())
        .prefix("c:")
        .on_corrupt_entry(CorruptEntryPolicy::Miss)
        .connect()
        .await
        .unwrap();
    assert_eq!(lenient.get::<Profile>("bad").await.unwrap(), None);
    assert_eq!(lenient.stats().corrupt(), 1);
    assert_eq!((lenient.stats().hits(), lenient.stats().misses()), (0, 1));
    let batch = lenient.get_many::<Profile>(&["bad", "nothing"]).await.unwrap();
    assert_eq!(batch, vec![None, None]);

    // Valid msgpack of the wrong shape is a codec error too, not a panic.
    strict.set("shape", &"just a string", None).await.unwrap();
    assert!(strict.get::<Profile>("shape").await.unwrap_err().is_corrupt_entry());

    // Nothing was deleted: the reader may be the one that is out of date.
    let still: Vec<u8> = redis::cmd("GET").arg("c:bad").query_async(&mut raw).await.unwrap();
    assert_eq!(still, garbage);
}

#[tokio::test]
async fn hit_rate_counts_gets_only() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "hr:").await;
    cache.set("a", &1u8, None).await.unwrap();
    cache.remove("zzz").await.unwrap();
    assert_eq!(cache.hit_rate(), 0.0);
    cache.get::<u8>("a").await.unwrap();
    cache.get::<u8>("a").await.unwrap();
    cache.get::<u8>("a").await.unwrap();
    cache.get::<u8>("b").await.unwrap();
    assert_eq!(cache.hit_rate(), 0.75);
    assert_eq!(cache.stats().snapshot().hits, 3);
}

#[tokio::test]
async fn client_gives_the_raw_connection_for_pipelines() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "").await;
    let mut conn = cache.client().unwrap();
    let _: () = redis::pipe()
        .set("p1", 1)
        .set("p2", 2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (a, b): (u8, u8) = redis::pipe().get("p1").get("p2").query_async(&mut conn).await.unwrap();
    assert_eq!((a, b), (1, 2));
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap();
    assert!(info.contains("redis_version"));
    assert!(cache.redis_client().is_some());
}

#[tokio::test]
async fn with_connection_wraps_a_user_built_connection() {
    let server = RedisServer::start();
    let conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let cache = RedisCache::with_connection(conn).await.unwrap();
    cache.set("wrapped", &[1u16, 2, 3], None).await.unwrap();
    assert_eq!(cache.get::<Vec<u16>>("wrapped").await.unwrap(), Some(vec![1, 2, 3]));
    assert!(cache.redis_client().is_none());
}

#[tokio::test]
async fn close_makes_later_calls_fail_with_closed() {
    let server = RedisServer::start();
    let cache = cache_on(&server, "").await;
    cache.set("k", &1u8, None).await.unwrap();
    cache.close().await.unwrap();
    assert!(matches!(cache.get::<u8>("k").await, Err(CacheError::Closed)));
    assert!(matches!(cache.client(), Err(CacheError::Closed)));
}

#[tokio::test]
async fn dead_server_gives_typed_errors_and_recovers_after_restart() {
    let mut server = RedisServer::start();
    let config = server
        .config()
        .into_builder()
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let cache = RedisCache::connect(config).await.unwrap();
    cache.set("k", &1u8, None).await.unwrap();

    server.stop();
    let started = std::time::Instant::now();
    let err = cache.get::<u8>("k").await.unwrap_err();
    assert!(
        err.is_unavailable(),
        "a dead server is a connection/timeout error, got {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, not after a hang"
    );

    server.restart();
    // The connection manager reconnects by itself; allow it a few tries.
    let mut recovered = false;
    for _ in 0..50 {
        if cache.set("k", &2u8, None).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "cache reconnects after the server returns");
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn unreachable_server_at_a_strict_connect_is_a_connection_error() {
    let port = support::redis_server::free_port();
    let config = RedisConfig::builder()
        .port(port)
        .connect_timeout(Duration::from_millis(300))
        .fail_on_connection_error(true)
        .build()
        .unwrap();
    let err = RedisCache::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn password_protected_server_needs_the_password() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let config = RedisConfig::from_url(&format!("redis://:s3cret-pw@127.0.0.1:{}/0", server.port())).unwrap();
    assert!(!format!("{config:?}").contains("s3cret-pw"));
    let cache = RedisCache::connect(config).await.unwrap();
    cache.set("k", &"v", None).await.unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some("v"));

    let wrong = RedisConfig::from_url(&format!("redis://:nope@127.0.0.1:{}/0", server.port())).unwrap();
    let err = RedisCache::connect(wrong).await.unwrap_err();
    assert!(
        !err.to_string().contains("nope"),
        "the password never shows in errors: {err}"
    );
}

#[tokio::test]
async fn database_number_is_honoured() {
    let server = RedisServer::start();
    let db3 = RedisCache::connect(RedisConfig::from_url(&format!("redis://127.0.0.1:{}/3", server.port())).unwrap())
        .await
        .unwrap();
    db3.set("k", &"three", None).await.unwrap();
    let db0 = cache_on(&server, "").await;
    assert!(!db0.has("k").await.unwrap());
    assert!(db3.has("k").await.unwrap());
}

#[tokio::test]
async fn many_connections_spread_requests() {
    let server = RedisServer::start();
    let config = server.config().into_builder().max_connections(4).build().unwrap();
    let cache = std::sync::Arc::new(RedisCache::connect(config).await.unwrap());
    let mut raw = server.raw().await;
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut raw).await.unwrap();
    assert_eq!(clients.lines().count(), 5, "4 cache connections + the inspector");
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache.set(&format!("k{i}"), &i, None).await.unwrap();
                cache.get::<u32>(&format!("k{i}")).await.unwrap()
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Some(i as u32));
    }
}

// ---------------------------------------------------------------------------
// The default connection (`RedisConnection::Reconnecting`): one reconnect at a
// time, fail fast while down, never a hang.
// ---------------------------------------------------------------------------

/// Short timeouts, so an outage costs the tests little.
fn short_timeouts(server: &RedisServer, max_connections: usize) -> RedisConfig {
    server
        .config()
        .into_builder()
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .max_connections(max_connections)
        .build()
        .unwrap()
}

/// The next connection of `cache`, which must be the default kind.
fn reconnecting(cache: &RedisCache) -> ReconnectingConnection {
    match cache.client().unwrap() {
        RedisConnection::Reconnecting(conn) => conn,
        other => panic!("a standalone config opens reconnecting connections, got {other:?}"),
    }
}

/// Client connections the server has, the inspecting one (`raw`) included.
async fn client_count(raw: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(raw)
        .await
        .unwrap();
    list.lines().count()
}

/// Calls `get` until it succeeds; how long that took.
async fn wait_until_served(cache: &RedisCache, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if cache.get::<u8>("k").await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not served again within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_reconnects_once_per_connection_and_serves_again() {
    let mut server = RedisServer::start();
    let cache = Arc::new(RedisCache::connect(short_timeouts(&server, 2)).await.unwrap());
    cache.set("k", &1u8, None).await.unwrap();
    let conns = [reconnecting(&cache), reconnecting(&cache)];

    // 64 callers keep reading through the whole outage.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest_failure_us = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let (cache, stop) = (cache.clone(), stop.clone());
            let (slowest, failures) = (slowest_failure_us.clone(), failures.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let started = Instant::now();
                    if let Err(err) = cache.get::<u8>("k").await {
                        assert!(err.is_unavailable(), "a typed connection error, got {err}");
                        slowest.fetch_max(started.elapsed().as_micros() as u64, Relaxed);
                        failures.fetch_add(1, Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(failures.load(Relaxed) > 64, "the callers saw the outage");
    assert!(conns.iter().all(|c| !c.is_connected()), "{conns:?}");

    tokio::task::block_in_place(|| server.restart());
    let took = wait_until_served(&cache, Duration::from_secs(3)).await;
    // Attempts back off to one every 500 ms while the server is away.
    assert!(took < Duration::from_millis(1500), "served again after {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }

    // Dozens of callers failed at once, yet each connection was re-opened once.
    for conn in &conns {
        assert!(conn.is_connected());
        assert_eq!(conn.reconnects(), 1, "{conn:?}");
    }
    let mut raw = server.raw().await;
    assert_eq!(client_count(&mut raw).await, 3, "2 cache connections + the inspector");
    let slowest = Duration::from_micros(slowest_failure_us.load(Relaxed));
    assert!(slowest < Duration::from_secs(1), "a failed call took {slowest:?}");
}

#[tokio::test]
async fn calls_while_down_fail_within_the_response_timeout_then_at_once() {
    let mut server = RedisServer::start();
    let cache = RedisCache::connect(short_timeouts(&server, 1)).await.unwrap();
    cache.set("k", &1u8, None).await.unwrap();
    let conn = reconnecting(&cache);
    server.stop();

    for _ in 0..5 {
        let started = Instant::now();
        let err = cache.get::<u8>("k").await.unwrap_err();
        assert!(err.is_connection(), "a connection error, got {err}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(300 + 200),
            "within the 300 ms response timeout: {took:?}"
        );
    }
    // By now the quick attempts have failed: the connection is down and calls
    // do not wait at all (no queue builds up behind a dead server).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!conn.is_connected());
    let started = Instant::now();
    for _ in 0..100 {
        assert!(cache.get::<u8>("k").await.unwrap_err().is_connection());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "100 calls while down took {took:?}");
    assert!(format!("{conn:?}").contains("down"), "{conn:?}");

    server.restart();
    wait_until_served(&cache, Duration::from_secs(3)).await;
    assert_eq!(conn.reconnects(), 1);
}

#[tokio::test]
async fn a_killed_connection_is_replaced_at_once() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(short_timeouts(&server, 1)).await.unwrap();
    cache.set("k", &1u8, None).await.unwrap();
    let conn = reconnecting(&cache);
    let mut raw = server.raw().await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(killed, 1);

    // The server is up: the first call notices the broken socket, the reconnect
    // takes a round trip, and callers meanwhile wait for it rather than fail.
    let took = wait_until_served(&cache, Duration::from_secs(1)).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(conn.reconnects(), 1);
    assert_eq!(
        client_count(&mut raw).await,
        2,
        "the new cache connection + the inspector"
    );
}

#[tokio::test]
async fn a_frozen_server_times_out_without_reconnecting() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(short_timeouts(&server, 1)).await.unwrap();
    cache.set("k", &1u8, None).await.unwrap();
    let conn = reconnecting(&cache);
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut server.raw().await)
        .await
        .unwrap();
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();

    /// SIGCONT on the way out, even if an assertion fails.
    struct Thaw(String);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let thaw = Thaw(pid);

    // The socket is open but nothing answers: the response timeout bounds the call.
    let started = Instant::now();
    let err = cache.get::<u8>("k").await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "a timeout, got {err}");
    assert!(took < Duration::from_millis(300 + 200), "{took:?}");

    // Until a probe sees the server answer, calls fail fast.
    let started = Instant::now();
    let err = cache.get::<u8>("k").await.unwrap_err();
    assert!(err.is_connection(), "failing fast, got {err}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    // A timeout alone keeps the connection (the server may only be busy).
    drop(thaw);
    let thawed = Instant::now();
    while !conn.is_healthy() {
        assert!(
            thawed.elapsed() < Duration::from_secs(1),
            "the probe saw the server answer"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    assert_eq!(conn.reconnects(), 0);
    assert!(conn.is_connected());
}

#[tokio::test]
async fn reconnect_after_restart_authenticates_and_debug_hides_the_password() {
    let mut server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let config = RedisConfig::from_url(&format!(
        "redis://:s3cret-pw@127.0.0.1:{}/2?connect_timeout=300ms&response_timeout=300ms",
        server.port()
    ))
    .unwrap();
    let conn = ReconnectingConnection::open(&config).await.unwrap();
    let cache = RedisCache::with_connection(conn.clone()).await.unwrap();
    cache.set("k", &7u8, None).await.unwrap();

    server.restart();
    wait_until_served(&cache, Duration::from_secs(3)).await;
    // Password and database survived the reconnect (the restarted server is empty).
    cache.set("k", &8u8, None).await.unwrap();
    let mut raw = RedisConfig::from_url(&format!("redis://:s3cret-pw@127.0.0.1:{}/2", server.port()))
        .and_then(|config| memorix::client_for(&config))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg("k").query_async(&mut raw).await.unwrap();
    assert!(stored.is_some(), "written to db 2 of the restarted server");
    assert_eq!(conn.reconnects(), 1);
    let debug = format!("{conn:?} {:?}", RedisConnection::from(conn.clone()));
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    assert!(debug.contains("127.0.0.1"), "{debug}");
}

#[tokio::test]
async fn a_user_built_connection_manager_still_works() {
    let server = RedisServer::start();
    let manager = redis::aio::ConnectionManager::new(server.client()).await.unwrap();
    let cache = RedisCache::with_connection(manager).await.unwrap();
    assert!(matches!(cache.client().unwrap(), RedisConnection::Manager(_)));
    cache.set("k", &3u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(3));
}

#[tokio::test]
async fn reconnecting_connection_refuses_a_cluster_config() {
    let config = RedisConfig::from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap();
    let err = ReconnectingConnection::open(&config).await.unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("topology"), "{err}");
}

#[tokio::test]
async fn purge_is_refused_without_a_namespace_and_spares_sibling_prefixes() {
    let server = RedisServer::start();
    let mut raw = server.raw().await;
    let app = cache_on(&server, "app:").await;
    let sibling = cache_on(&server, "app2:").await;
    app.set("k", &1u8, None).await.unwrap();
    sibling.set("k", &2u8, None).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("unrelated")
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();

    // An empty prefix would wipe the database: refused, pointing at flush_db().
    let everything = cache_on(&server, "").await;
    let err = everything.purge().await.unwrap_err();
    assert!(err.is_config() && err.to_string().contains("flush_db()"), "{err}");
    // `app` would also match `app2:`: refused; `app:` is the namespace.
    let bare = cache_on(&server, "app").await;
    assert!(bare.purge().await.unwrap_err().is_config());
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    assert_eq!(size, 3, "a refused purge deletes nothing");

    app.purge().await.unwrap();
    assert!(!app.has("k").await.unwrap());
    assert_eq!(
        sibling.get::<u8>("k").await.unwrap(),
        Some(2),
        "app2: is not under app:"
    );
    let unrelated: Option<String> = redis::cmd("GET").arg("unrelated").query_async(&mut raw).await.unwrap();
    assert_eq!(unrelated.as_deref(), Some("x"));
}
