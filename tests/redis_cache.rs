//! `RedisCache` against a real redis-server: every method of the Cache API,
//! prefixes, TTLs, batches, codecs, corrupt entries and a dead server.

mod support;

use memorix::prelude::*;
use memorix::{CacheError, CorruptEntryPolicy, Json, MsgPack, Pickle, RawBytes, RedisCache, RedisConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
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
async fn unreachable_server_at_connect_is_a_connection_error() {
    let port = support::redis_server::free_port();
    let config = RedisConfig::builder()
        .port(port)
        .connect_timeout(Duration::from_millis(300))
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
