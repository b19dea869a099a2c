//! `GenericRedisCache` security against real servers: TLS (rustls, mutual
//! TLS, certificate verification) on `redis-server --tls-port` with
//! certificates made here, and an ACL user limited to a key pattern.
//!
//! The TLS version floor is a property of the process (rustls takes it from
//! the process's crypto provider), so every TLS test of this binary runs
//! under a TLS 1.3 floor installed before its first connection.

mod support;

use memorix::prelude::*;
use memorix::{
    CacheError, GenericRedisCache, RedisCache, RedisConfig, SecurityConfig, TlsConfig, TlsVersion, SECURE_SCORE,
};
use std::time::Duration;
use support::pki::{arg, make_pki, Pki};
use support::RedisServer;

const ADMIN_PASSWORD: &str = "admin-pw-9f2c";
const CACHE_PASSWORD: &str = "cache-pw-41be";

/// A server with a plain port (for the harness) and a TLS port requiring
/// client certificates, `requirepass` on the default user, and an ACL user
/// `cache` limited to `app:*` keys and the `app:` invalidation channel.
async fn secured_server(pki: &Pki) -> (RedisServer, u16) {
    secured_server_with(pki, &[]).await
}

/// [`secured_server`] with more `redis-server` arguments.
async fn secured_server_with(pki: &Pki, extra: &[&str]) -> (RedisServer, u16) {
    tls13_process();
    let tls_port = support::redis_server::free_port();
    let mut args = vec![
        "--requirepass".to_owned(),
        ADMIN_PASSWORD.to_owned(),
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        arg(&pki.path("server.pem")),
        "--tls-key-file".to_owned(),
        arg(&pki.path("server.key")),
        "--tls-ca-cert-file".to_owned(),
        arg(&pki.path("ca.pem")),
        "--tls-auth-clients".to_owned(),
        "yes".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let server = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    add_cache_user(&server).await;
    (server, tls_port)
}

/// Installs the TLS 1.3 floor once, before any TLS connection of this binary.
fn tls13_process() {
    static FLOOR: std::sync::Once = std::sync::Once::new();
    FLOOR.call_once(|| memorix::install_tls_floor(TlsVersion::V1_3).expect("no TLS connection yet"));
}

/// The user `cache`, limited to `app:*` keys and the `app:` invalidation channel.
async fn add_cache_user(server: &RedisServer) {
    let admin = redis::Client::open(format!("redis://:{ADMIN_PASSWORD}@127.0.0.1:{}/0", server.port())).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("cache")
        .arg("on")
        .arg(format!(">{CACHE_PASSWORD}"))
        .arg("~app:*")
        .arg("&memorix:l1:app:*")
        .arg("+@all")
        .arg("-@dangerous")
        .arg("+info")
        .arg("+acl|whoami")
        .query_async(&mut admin)
        .await
        .unwrap();
}

fn tls_config(pki: &Pki, ca: &str) -> TlsConfig {
    TlsConfig::new()
        .ca_cert(pki.path(ca))
        .client_cert(pki.path("client.pem"), pki.path("client.key"))
}

fn tls_redis(port: u16) -> RedisConfig {
    RedisConfig::builder()
        .host("127.0.0.1")
        .port(port)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_with_an_acl_user_works_and_passes_the_security_check() {
    let pki = make_pki();
    let (server, tls_port) = secured_server(&pki).await;
    let security = SecurityConfig::new()
        .username("cache")
        .password(CACHE_PASSWORD)
        .tls(tls_config(&pki, "ca.pem"));
    let cache = GenericRedisCache::builder()
        .redis(tls_redis(tls_port))
        .security(security)
        .prefix("app:")
        .fail_on_connection_error(true)
        .connect()
        .await
        .expect("TLS + ACL connect");

    cache.set("greeting", &"over TLS", None).await.unwrap();
    let other = GenericRedisCache::builder()
        .redis(tls_redis(tls_port))
        .security(
            SecurityConfig::new()
                .username("cache")
                .password(CACHE_PASSWORD)
                .tls(tls_config(&pki, "ca.pem")),
        )
        .prefix("app:")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        other.get::<String>("greeting").await.unwrap().as_deref(),
        Some("over TLS")
    );
    assert_eq!(other.stats().redis.hits, 1, "read from Redis over TLS");

    // The value really is in the server, under the ACL user's key pattern.
    let admin = redis::Client::open(format!("redis://:{ADMIN_PASSWORD}@127.0.0.1:{}/0", server.port())).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("app:greeting")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(stored.is_some());

    let validation = cache.validate_security().await;
    assert!(validation.connected, "{validation:?}");
    assert_eq!(validation.authenticated_as.as_deref(), Some("cache"));
    assert!(validation.tls);
    assert_eq!(validation.anonymous_access_refused, Some(true));
    assert!(validation.server_version.is_some());
    assert!(
        validation.vulnerabilities.is_empty(),
        "{:?}",
        validation.vulnerabilities
    );
    assert_eq!(validation.score, 100);
    assert!(
        validation.score >= SECURE_SCORE && validation.is_secure,
        "{validation:?}"
    );
    let status = cache.security_status();
    assert_eq!(status.security_level, "high");
    assert!(status.client_certificate && status.certificate_verification);
    let report = cache.security_report();
    assert!(report.contains("SECURE") && report.contains("100/100"), "{report}");
    for text in [report, format!("{cache:?}"), format!("{status:?}")] {
        assert!(
            !text.contains(CACHE_PASSWORD) && !text.contains(ADMIN_PASSWORD),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_acl_key_pattern_is_enforced_and_errors_surface() {
    let pki = make_pki();
    let (server, _) = secured_server(&pki).await;
    let config = RedisConfig::builder()
        .host("127.0.0.1")
        .port(server.port())
        .username("cache")
        .password(CACHE_PASSWORD)
        .build()
        .unwrap();
    let allowed = GenericRedisCache::builder()
        .redis(config.clone())
        .prefix("app:")
        .connect()
        .await
        .unwrap();
    allowed.set("k", &1u8, None).await.unwrap();
    assert_eq!(allowed.get::<u8>("k").await.unwrap(), Some(1));

    // Outside `app:*` the server refuses: a Redis error, not a silent fallback.
    let outside = GenericRedisCache::builder()
        .redis(config)
        .prefix("other:")
        .connect()
        .await
        .unwrap();
    let err = outside.set("k", &1u8, None).await.unwrap_err();
    assert!(matches!(err, CacheError::Redis(_)), "{err}");
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    let err = outside.get::<u8>("k").await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    assert!(outside.is_redis_available(), "an ACL denial is not an outage");

    // No TLS: the check says so, and does not pass.
    let validation = allowed.validate_security().await;
    assert_eq!(validation.authenticated_as.as_deref(), Some("cache"));
    assert!(
        !validation.is_secure && validation.score < SECURE_SCORE,
        "{validation:?}"
    );
    assert!(allowed.security_recommendations().iter().any(|r| r.contains("TLS")));
}

#[tokio::test]
async fn certificates_are_verified_by_default() {
    let pki = make_pki();
    let (_server, tls_port) = secured_server(&pki).await;
    let err = GenericRedisCache::builder()
        .redis(tls_redis(tls_port))
        .security(
            SecurityConfig::new()
                .username("cache")
                .password(CACHE_PASSWORD)
                .tls(tls_config(&pki, "other-ca.pem")),
        )
        .fail_on_connection_error(true)
        .connect()
        .await
        .unwrap_err();
    assert!(
        err.is_unavailable(),
        "a server certificate from an untrusted CA is refused: {err}"
    );
}

/// The `ACL SETUSER` line the report suggests, with the placeholder password
/// replaced, applied as the server's admin.
async fn apply_suggested_acl(server: &RedisServer, recommendations: &[String]) -> String {
    let line = recommendations
        .iter()
        .find_map(|r| r.split('`').find(|part| part.starts_with("ACL SETUSER")))
        .unwrap_or_else(|| panic!("no ACL SETUSER line in {recommendations:?}"))
        .to_owned();
    assert!(
        !line.contains(CACHE_PASSWORD),
        "the suggestion carries a placeholder, not a password"
    );
    let admin = redis::Client::open(format!("redis://:{ADMIN_PASSWORD}@127.0.0.1:{}/0", server.port())).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::Cmd::new();
    for word in line.split_whitespace() {
        match word {
            ">PASSWORD" => cmd.arg(format!(">{CACHE_PASSWORD}")),
            other => cmd.arg(other),
        };
    }
    let _: () = cmd
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    line
}

#[tokio::test]
async fn the_suggested_acl_user_can_do_all_the_two_tier_cache_does_on_redis_7() {
    let server = RedisServer::start_with(&["--requirepass", ADMIN_PASSWORD]);
    let as_user = |user: Option<&str>| {
        let builder = RedisConfig::builder().host("127.0.0.1").port(server.port());
        match user {
            Some(user) => builder.username(user).password(CACHE_PASSWORD),
            None => builder.password(ADMIN_PASSWORD),
        }
        .build()
        .unwrap()
    };
    // The suggestion of a cache configured with prefix `shop:`, before any ACL user exists.
    let admin_cache = GenericRedisCache::builder()
        .redis(as_user(None))
        .prefix("shop:")
        .connect()
        .await
        .unwrap();
    let line = apply_suggested_acl(&server, &admin_cache.security_recommendations()).await;
    assert!(
        line.contains("&memorix:l1:shop:"),
        "channel access for invalidations: {line}"
    );

    let connect = || {
        GenericRedisCache::builder()
            .redis(as_user(Some("cache")))
            .prefix("shop:")
            .fail_on_connection_error(true)
            .connect()
    };
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(a.is_coherent() && b.is_coherent()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{line}: subscriptions did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.set("price", &1u32, Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(b.get::<u32>("price").await.unwrap(), Some(1));
    assert!(b.has("price").await.unwrap());
    // An update reaches B's L1 as an invalidation.
    a.set("price", &2u32, None).await.unwrap();
    while b.get::<u32>("price").await.unwrap() != Some(2) {
        assert!(std::time::Instant::now() < deadline, "{line}: no invalidation received");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(b.stats().invalidations_received >= 1);
    assert!(a.remove("price").await.unwrap());
    a.set("other", &3u32, None).await.unwrap();
    a.purge().await.unwrap();
    assert_eq!(b.get::<u32>("other").await.unwrap(), None);
    assert!(a.stats().errors.is_empty(), "{line}: {:?}", a.stats().errors);
    assert!(a.is_redis_available());

    let validation = a.validate_security().await;
    assert!(validation.connected, "{validation:?}");
    assert_eq!(validation.authenticated_as.as_deref(), Some("cache"));
    assert_eq!(validation.anonymous_access_refused, Some(true));
    assert!(validation.server_version.is_some());
    // Without TLS that is a vulnerability, not only a recommendation.
    assert!(
        validation.vulnerabilities.iter().any(|v| v.contains("no TLS")),
        "{validation:?}"
    );
}

#[tokio::test]
async fn a_tls_1_2_server_is_refused_under_a_1_3_floor_and_the_report_shows_the_negotiated_version() {
    let pki = make_pki();
    let (_old, old_port) = secured_server_with(&pki, &["--tls-protocols", "TLSv1.2"]).await;
    let (_new, new_port) = secured_server(&pki).await;
    let security = || {
        SecurityConfig::new()
            .username("cache")
            .password(CACHE_PASSWORD)
            .tls(tls_config(&pki, "ca.pem"))
            .min_tls_version(TlsVersion::V1_3)
    };
    let two_tier = |port: u16| {
        GenericRedisCache::builder()
            .redis(tls_redis(port))
            .security(security())
            .prefix("app:")
            .fail_on_connection_error(true)
            .connect()
    };
    let err = two_tier(old_port).await.unwrap_err();
    assert!(err.is_connection(), "a TLS 1.2-only server is refused: {err:?}");
    // The standalone engine takes the floor from the config itself.
    let standalone = RedisConfig::builder()
        .host("127.0.0.1")
        .port(old_port)
        .username("cache")
        .password(CACHE_PASSWORD)
        .tls(tls_config(&pki, "ca.pem").min_version(TlsVersion::V1_3))
        .fail_on_connection_error(true)
        .build()
        .unwrap();
    let err = RedisCache::connect(standalone.clone()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    // A plain TLS handshake with the same settings fails too: the floor is rustls's.
    let raw = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{old_port}/0"),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(pki.path("client.pem")).unwrap(),
                client_key: std::fs::read(pki.path("client.key")).unwrap(),
            }),
            root_cert: Some(std::fs::read(pki.path("ca.pem")).unwrap()),
        },
    )
    .unwrap();
    assert!(raw.get_multiplexed_async_connection().await.is_err());

    // The same settings reach a server that speaks TLS 1.3; the check reports it.
    let cache = two_tier(new_port).await.expect("TLS 1.3 server");
    cache.set("v", &1u8, None).await.unwrap();
    let validation = cache.validate_security().await;
    assert_eq!(validation.tls_version.as_deref(), Some("TLSv1.3"), "{validation:?}");
    let report = cache.security_report();
    assert!(report.contains("negotiated TLS version: TLSv1.3"), "{report}");
    assert!(report.contains("minimum TLS version:      1.3"), "{report}");
    let mut standalone = standalone.into_builder().port(new_port).build().unwrap();
    assert!(RedisCache::connect(standalone.clone()).await.is_ok());

    // Unverified TLS is not offered.
    let err = RedisConfig::from_url(&format!("rediss://127.0.0.1:{new_port}/0?insecure=true")).unwrap_err();
    assert!(matches!(&err, CacheError::Config { field: "insecure", .. }), "{err:?}");
    standalone = RedisConfig::from_url(&format!("rediss://127.0.0.1:{new_port}/0?min_tls_version=1.3")).unwrap();
    assert_eq!(standalone.tls().unwrap().min_version, TlsVersion::V1_3);
}

/// A `redis-server --sentinel` that speaks TLS only (no plain port) and has a
/// password, watching `primary_tls_port` over TLS. Killed on drop.
struct TlsSentinel {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SENTINEL_PASSWORD: &str = "sentinel-pw-77d1";

impl TlsSentinel {
    fn spawn(pki: &Pki, primary_tls_port: u16) -> Self {
        let port = support::redis_server::free_port();
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| arg(&pki.path(name));
        let conf = format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-client-cert-file {}\ntls-client-key-file {}\ntls-auth-clients optional\ntls-replication yes\n\
             requirepass {SENTINEL_PASSWORD}\ndir {}\nsentinel monitor mymaster 127.0.0.1 {primary_tls_port} 1\n",
            file("server.pem"),
            file("server.key"),
            file("ca.pem"),
            file("client.pem"),
            file("client.key"),
            arg(dir.path()),
        );
        let path = dir.path().join("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new(RedisServer::binary())
            .arg(&path)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        TlsSentinel { port, child, _dir: dir }
    }
}

#[tokio::test]
async fn rediss_sentinel_urls_reach_the_sentinels_over_tls() {
    let pki = make_pki();
    tls13_process();
    let primary_tls_port = support::redis_server::free_port();
    let args = pki.server_args(primary_tls_port);
    let _primary = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let sentinel = TlsSentinel::spawn(&pki, primary_tls_port);
    let url = format!(
        "rediss+sentinel://127.0.0.1:{}/mymaster/0?sentinel_password={SENTINEL_PASSWORD}&connect_timeout=500ms",
        sentinel.port
    );
    let config = RedisConfig::from_url(&url)
        .unwrap()
        .into_builder()
        .tls(tls_config(&pki, "ca.pem"))
        .build()
        .unwrap();
    assert!(!format!("{config:?} {config}").contains(SENTINEL_PASSWORD));
    // The sentinel has no plain port: connecting at all proves TLS to it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let cache = loop {
        match RedisCache::connect(config.clone()).await {
            Ok(cache) => break cache,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no TLS sentinel connection: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    cache.set("through-sentinel", &7u8, None).await.unwrap();
    assert_eq!(cache.get::<u8>("through-sentinel").await.unwrap(), Some(7));
}
