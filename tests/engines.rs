//! MemoryCache, NullCache, the shared Cache API across engines, and RedisConfig.

use memorix::prelude::*;
use memorix::{CacheError, CorruptEntryPolicy, Json, MemoryCache, NullCache, RedisConfig, TlsConfig};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn memory_cache_evicts_at_its_bound() {
    let cache = MemoryCache::new(100);
    for i in 0..500u32 {
        cache.set(&format!("k{i}"), &i, None).await.unwrap();
    }
    assert!(cache.len() <= 100, "bounded by entries, held {}", cache.len());
    assert!(cache.len() >= 90, "but keeps about its bound, held {}", cache.len());
    // LRU: the newest write always lands.
    assert_eq!(cache.get::<u32>("k499").await.unwrap(), Some(499));
    assert_eq!(cache.get::<u32>("k0").await.unwrap(), None, "the oldest went first");
}

#[tokio::test]
async fn memory_cache_expires_entries_by_their_own_ttl() {
    let cache = MemoryCache::builder()
        .max_entries(10)
        .default_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    cache
        .set("short", &1u8, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    cache.set("default", &2u8, None).await.unwrap();
    assert!(cache.has("short").await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!cache.has("short").await.unwrap());
    assert_eq!(cache.get::<u8>("short").await.unwrap(), None);
    assert_eq!(cache.get::<u8>("default").await.unwrap(), Some(2));
    assert!(cache
        .set("z", &0u8, Some(Duration::ZERO))
        .await
        .unwrap_err()
        .is_config());
}

#[tokio::test]
async fn memory_cache_prefix_purge_and_remove() {
    let cache = MemoryCache::builder().prefix("a:").build().unwrap();
    cache.set("x", &1u8, None).await.unwrap();
    cache.set_prefix("b:");
    cache.set("x", &2u8, None).await.unwrap();
    cache.purge().await.unwrap();
    assert!(!cache.has("x").await.unwrap(), "b: purged");
    cache.set_prefix("a:");
    assert_eq!(cache.get::<u8>("x").await.unwrap(), Some(1), "a: untouched");
    assert!(cache.remove("x").await.unwrap());
    assert!(!cache.remove("x").await.unwrap());
    cache.set_many(&[("m", 1u8), ("n", 2u8)], None).await.unwrap();
    assert_eq!(
        cache.get_many::<u8>(&["m", "n", "o"]).await.unwrap(),
        vec![Some(1), Some(2), None]
    );
    assert_eq!(cache.stats().misses(), 1);
}

#[tokio::test]
async fn memory_cache_corrupt_entry_policy() {
    let strict = MemoryCache::builder().codec(Json).build().unwrap();
    strict.set_bytes("bad", b"{not json", None).await.unwrap();
    assert!(strict.get::<u8>("bad").await.unwrap_err().is_corrupt_entry());
    let lenient = MemoryCache::builder()
        .codec(Json)
        .on_corrupt_entry(CorruptEntryPolicy::Miss)
        .build()
        .unwrap();
    lenient.set_bytes("bad", b"{not json", None).await.unwrap();
    assert_eq!(lenient.get::<u8>("bad").await.unwrap(), None);
    assert_eq!(
        lenient.get_bytes("bad").await.unwrap(),
        Some(b"{not json".to_vec()),
        "still stored"
    );
    assert!(MemoryCache::builder()
        .max_entries(0)
        .build()
        .unwrap_err()
        .to_string()
        .contains("max_entries"));
}

#[tokio::test]
async fn null_cache_stores_nothing_and_succeeds() {
    let cache = NullCache::new();
    cache.set("k", &"v", Some(Duration::from_secs(1))).await.unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
    assert!(!cache.has("k").await.unwrap());
    assert!(!cache.remove("k").await.unwrap());
    cache.set_many(&[("a", 1u8)], None).await.unwrap();
    assert_eq!(cache.get_many::<u8>(&["a", "b"]).await.unwrap(), vec![None, None]);
    cache.purge().await.unwrap();
    cache.close().await.unwrap();
    assert_eq!(cache.stats().misses(), 3);
    assert_eq!(cache.hit_rate(), 0.0);
    assert!(cache
        .set("k", &1u8, Some(Duration::ZERO))
        .await
        .unwrap_err()
        .is_config());
}

#[tokio::test]
async fn engines_swap_behind_dyn_cache() {
    let engines: Vec<Arc<dyn Cache>> = vec![Arc::new(MemoryCache::new(10)), Arc::new(NullCache::new())];
    let mut found = Vec::new();
    for cache in engines {
        cache.set("k", &vec![1u8, 2], None).await.unwrap();
        found.push(cache.get::<Vec<u8>>("k").await.unwrap());
    }
    assert_eq!(found, vec![Some(vec![1, 2]), None]);
}

#[test]
fn config_parses_every_url_form() {
    let c = RedisConfig::from_url("redis://localhost").unwrap();
    assert_eq!((c.host(), c.port(), c.db()), ("localhost", 6379, 0));

    let c = RedisConfig::from_url(
        "redis://app%40corp:p%40ss@10.1.2.3:6380/4?connect_timeout=2s&response_timeout=150ms&max_connections=3&retry_on_timeout=true&keepalive=30s&health_check_interval=5s",
    )
    .unwrap();
    assert_eq!(c.username(), Some("app@corp"));
    assert_eq!(c.password().unwrap().expose(), "p@ss");
    assert_eq!((c.host(), c.port(), c.db()), ("10.1.2.3", 6380, 4));
    assert_eq!(c.connect_timeout(), Duration::from_secs(2));
    assert_eq!(c.response_timeout(), Duration::from_millis(150));
    assert_eq!(c.max_connections(), 3);
    assert!(c.retry_on_timeout());
    assert_eq!(c.keepalive(), Some(Duration::from_secs(30)));
    assert_eq!(c.health_check_interval(), Some(Duration::from_secs(5)));

    let tls = RedisConfig::from_url("rediss://cache.example:6390?min_tls_version=1.3").unwrap();
    assert_eq!(tls.tls().unwrap().min_version, memorix::TlsVersion::V1_3);
    assert_eq!(tls.to_string(), "rediss://cache.example:6390/0");

    let unix = RedisConfig::from_url("redis+unix:///var/run/redis.sock?db=2").unwrap();
    assert_eq!(unix.unix_socket().unwrap().to_str(), Some("/var/run/redis.sock"));
    assert_eq!(unix.db(), 2);
    assert!(RedisConfig::from_url("unix:///tmp/r.sock").is_ok());

    let ipv6 = RedisConfig::from_url("redis://[::1]:7000").unwrap();
    assert_eq!(ipv6.host(), "::1");
}

fn field_of(err: CacheError) -> &'static str {
    match err {
        CacheError::Config { field, .. } => field,
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn config_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("http://localhost", "url"),
        ("not a url", "url"),
        ("redis://localhost/abc", "db"),
        ("redis://localhost/-1", "db"),
        ("redis://localhost:0", "port"),
        ("redis://localhost?response_timeout=soon", "response_timeout"),
        ("redis://localhost?connect_timeout=0", "connect_timeout"),
        ("redis://localhost?max_connections=0", "max_connections"),
        ("redis://localhost?max_connections=many", "max_connections"),
        ("redis://localhost?retry_on_timeout=maybe", "retry_on_timeout"),
        ("redis://localhost?insecure=true", "insecure"),
        ("redis://localhost?colour=blue", "url"),
    ];
    for (url, field) in cases {
        let err = RedisConfig::from_url(url).unwrap_err();
        assert_eq!(field_of(err), *field, "for {url}");
    }
    let builder_cases = [
        (RedisConfig::builder().host(""), "host"),
        (RedisConfig::builder().port(0), "port"),
        (RedisConfig::builder().db(70_000), "db"),
        (
            RedisConfig::builder().response_timeout(Duration::ZERO),
            "response_timeout",
        ),
        (RedisConfig::builder().max_connections(0), "max_connections"),
        (
            RedisConfig::builder().health_check_interval(Duration::ZERO),
            "health_check_interval",
        ),
        (
            RedisConfig::builder()
                .tls(TlsConfig::new().client_cert("c.pem", "k.pem").ca_cert("ca.pem"))
                .unix_socket("/s"),
            "tls",
        ),
    ];
    for (builder, field) in builder_cases {
        assert_eq!(field_of(builder.build().unwrap_err()), field);
    }
}

#[test]
fn passwords_never_show_in_debug_display_or_errors() {
    let c = RedisConfig::from_url("redis://bob:hunter2-secret@db.internal:6379/1").unwrap();
    let debug = format!("{c:?}");
    let display = c.to_string();
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!display.contains("hunter2"), "{display}");
    assert_eq!(display, "redis://bob:***@db.internal:6379/1");
    assert!(format!("{:?}", c.password().unwrap()).contains("***"));
    let built = RedisConfig::builder().password("hunter2-secret").build().unwrap();
    assert!(!format!("{built:?} {built}").contains("hunter2"));
    // A URL that fails to parse does not echo its password back.
    let err = RedisConfig::from_url("redis://bob:hunter2-secret@db.internal:99999").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn from_env_reads_redis_url() {
    // One test owns REDIS_URL in this binary, so there is no race on the variable.
    std::env::set_var("REDIS_URL", "redis://envhost:6381/5");
    let c = RedisConfig::from_env().unwrap();
    assert_eq!((c.host(), c.port(), c.db()), ("envhost", 6381, 5));
    std::env::remove_var("REDIS_URL");
    assert_eq!(field_of(RedisConfig::from_env().unwrap_err()), "REDIS_URL");
}
