//! `RedisCache` on a real 3-primary + 3-replica Redis Cluster: every Cache
//! operation, batches across slots, prefix purge over every primary, and a
//! primary killed mid-run.

mod support;

use memorix::prelude::*;
use memorix::{RedisCache, RedisConfig, RedisConnection, Topology};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use support::cluster::RedisCluster;
use support::{unique_prefix, RedisServer};

async fn cache_on(cluster: &RedisCluster, prefix: &str) -> RedisCache {
    RedisCache::builder()
        .config(cluster.config())
        .prefix(prefix)
        .connect()
        .await
        .expect("connect to test cluster")
}

/// Calls of `command` on the node on `port`, from `INFO commandstats`.
fn command_calls(cluster: &RedisCluster, port: u16, command: &str) -> u64 {
    let mut conn = cluster.node_connection(port);
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// Every key on the node on `port` (a primary), by SCAN.
fn keys_on(cluster: &RedisCluster, port: u16) -> Vec<String> {
    let mut conn = cluster.node_connection(port);
    redis::cmd("KEYS").arg("*").query(&mut conn).unwrap()
}

#[tokio::test]
async fn every_cache_operation_on_a_cluster() {
    let cluster = RedisCluster::start();
    let config = cluster.config();
    assert_eq!(config.topology(), Topology::Cluster);
    let prefix = unique_prefix("cluster");
    let cache = cache_on(&cluster, &prefix).await;
    assert!(matches!(cache.client().unwrap(), RedisConnection::Cluster(_)));
    assert!(cache.redis_client().is_none(), "no single redis::Client on a cluster");

    // get / set / has / remove / ttl
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
    cache
        .set("short", &1u8, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    assert!(cache.has("short").await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!cache.has("short").await.unwrap(), "expired after 100 ms");
    assert!(cache.remove("greeting").await.unwrap());
    assert!(!cache.remove("greeting").await.unwrap());
    assert!(!cache.has("greeting").await.unwrap());

    // set_many / get_many over keys of many slots and every primary; two keys
    // share a hash tag, so one slot holds several keys of the batch.
    let mut names: Vec<String> = (0..60).map(|i| format!("batch:{i}")).collect();
    names.extend(["{tag}:a", "{tag}:b", "{tag}:c"].map(String::from));
    let entries: Vec<(&str, u32)> = names.iter().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
    let primaries = cluster.primary_ports();
    assert_eq!(primaries.len(), 3, "3 primaries");
    let mget_before: HashMap<u16, u64> = primaries
        .iter()
        .map(|&p| (p, command_calls(&cluster, p, "mget")))
        .collect();
    cache.set_many(&entries, Some(Duration::from_secs(60))).await.unwrap();

    let owners: BTreeSet<u16> = names
        .iter()
        .map(|k| cluster.primary_port_of(&format!("{prefix}{k}")))
        .collect();
    assert_eq!(owners.len(), 3, "the batch spans every primary");
    for &port in &primaries {
        let on_node = keys_on(&cluster, port);
        assert!(
            on_node.iter().any(|k| k.starts_with(&prefix)),
            "primary {port} holds part of the batch"
        );
    }

    let mut lookup: Vec<&str> = names.iter().map(String::as_str).collect();
    lookup.insert(10, "not-there");
    let got: Vec<Option<u32>> = cache.get_many(&lookup).await.unwrap();
    let mut expected: Vec<Option<u32>> = (0..names.len() as u32).map(Some).collect();
    expected.insert(10, None);
    assert_eq!(got, expected, "values come back in the order asked, misses as None");

    // One MGET per slot, not one per key: the three {tag} keys share one.
    let slots: BTreeSet<u16> = lookup
        .iter()
        .map(|k| {
            let mut conn = cluster.node_connection(primaries[0]);
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("{prefix}{k}"))
                .query(&mut conn)
                .unwrap()
        })
        .collect();
    let mget_calls: u64 = primaries
        .iter()
        .map(|&p| command_calls(&cluster, p, "mget") - mget_before[&p])
        .sum();
    assert_eq!(mget_calls, slots.len() as u64, "one MGET per slot");
    assert!(slots.len() < lookup.len(), "the hash-tagged keys share a slot");

    // purge removes this prefix on every primary and leaves another prefix alone.
    let other = cache_on(&cluster, &unique_prefix("survivor")).await;
    let survivors: Vec<(String, u32)> = (0..30).map(|i| (format!("s:{i}"), i)).collect();
    let survivors: Vec<(&str, u32)> = survivors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    other.set_many(&survivors, None).await.unwrap();
    for i in 0..600 {
        cache.set(&format!("bulk:{i}"), &i, None).await.unwrap();
    }
    cache.purge().await.unwrap();
    for &port in &cluster.primary_ports() {
        let left: Vec<String> = keys_on(&cluster, port)
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "primary {port} still holds {left:?}");
    }
    assert!(!cache.has("bulk:599").await.unwrap());
    let kept: Vec<Option<u32>> = other
        .get_many(&survivors.iter().map(|(k, _)| *k).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(kept.iter().all(Option::is_some), "the other prefix survives the purge");

    // pubsub_client gives a node to subscribe on; a PUBLISH through the
    // cache's connection (sent to any node) reaches it.
    let client = memorix::pubsub_client(&cluster.config()).await.unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("memorix-test").await.unwrap();
    let mut conn = cache.client().unwrap();
    let mut messages = pubsub.on_message();
    let received = async {
        loop {
            let _: u64 = redis::cmd("PUBLISH")
                .arg("memorix-test")
                .arg("hello")
                .query_async(&mut conn)
                .await
                .unwrap();
            let next = tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut messages));
            if let Ok(Some(msg)) = next.await {
                return msg.get_payload::<String>().unwrap();
            }
        }
    };
    let payload = tokio::time::timeout(Duration::from_secs(5), received)
        .await
        .expect("message within 5 s");
    assert_eq!(payload, "hello");
    drop(messages);

    // Plain redis-rs commands and pipelines in one slot run on the handle too.
    let mut conn = cache.client().unwrap();
    let () = redis::pipe()
        .set("{p}:x", 1)
        .set("{p}:y", 2)
        .exec_async(&mut conn)
        .await
        .unwrap();
    let y: u32 = redis::cmd("GET").arg("{p}:y").query_async(&mut conn).await.unwrap();
    assert_eq!(y, 2);
}

#[tokio::test]
async fn the_rate_limiter_runs_on_a_cluster() {
    // Another engine on RedisConnection: each decision is one single-key script,
    // routed to the primary of the subject's slot.
    use memorix::ratelimit::{Algorithm, Rate, RateLimiter, Store};
    let cluster = RedisCluster::start();
    let store = Store::connect(&cluster.config()).await.unwrap();
    for algorithm in [Algorithm::Gcra, Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let limiter = RateLimiter::builder(Rate::parse("5/m").unwrap())
            .algorithm(algorithm)
            .prefix(unique_prefix("rl"))
            .store(store.clone())
            .local_fast_path(false)
            .build()
            .unwrap();
        // Twelve subjects: the chance that all share one primary is 3 / 3^12.
        let subjects: Vec<String> = (0..12).map(|i| format!("user:{i}")).collect();
        let owners: BTreeSet<u16> = subjects
            .iter()
            .map(|s| cluster.primary_port_of(&limiter.key(s)))
            .collect();
        assert!(owners.len() >= 2, "subjects spread over several primaries");
        for subject in subjects.iter().map(String::as_str) {
            for i in 0..5 {
                assert!(
                    limiter.check(subject).await.unwrap().allowed,
                    "{algorithm:?} {subject} #{i}"
                );
            }
            let denied = limiter.check(subject).await.unwrap();
            assert!(!denied.allowed, "{algorithm:?} {subject}: the 6th request is denied");
        }
    }
}

#[tokio::test]
async fn a_password_protected_cluster() {
    let cluster = RedisCluster::start_with_password("cl-s3cret");
    let cache = cache_on(&cluster, "auth:").await;
    cache
        .set_many(&[("a", 1u8), ("b", 2u8), ("c", 3u8)], None)
        .await
        .unwrap();
    assert_eq!(
        cache.get_many::<u8>(&["a", "b", "c"]).await.unwrap(),
        vec![Some(1), Some(2), Some(3)]
    );
    cache.purge().await.unwrap();
    assert!(!cache.has("a").await.unwrap());

    let wrong = cluster.url().replace("cl-s3cret", "wrong-pw");
    let config = RedisConfig::from_url(&format!("{wrong}?connect_timeout=500ms&response_timeout=500ms")).unwrap();
    let err = RedisCache::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("wrong-pw"), "the password leaked: {err}");
    assert!(!format!("{err:?}").contains("wrong-pw"), "the password leaked: {err:?}");
}

#[tokio::test]
async fn a_standalone_config_keeps_its_plain_connection_and_batches() {
    // The cluster paths must not change anything for a single server.
    let server = RedisServer::start();
    let cache = RedisCache::builder()
        .config(server.config())
        .prefix("solo:")
        .connect()
        .await
        .unwrap();
    assert_eq!(server.config().topology(), Topology::Standalone);
    assert!(matches!(cache.client().unwrap(), RedisConnection::Reconnecting(_)));
    cache.set_many(&[("a", 1u8), ("b", 2u8)], None).await.unwrap();
    assert_eq!(
        cache.get_many::<u8>(&["a", "b", "c"]).await.unwrap(),
        vec![Some(1), Some(2), None]
    );
    cache.purge().await.unwrap();
    assert_eq!(cache.get_many::<u8>(&["a", "b"]).await.unwrap(), vec![None, None]);
}

#[tokio::test]
async fn cache_serves_again_after_a_primary_is_killed() {
    let mut cluster = RedisCluster::start();
    let prefix = unique_prefix("failover");
    let cache = cache_on(&cluster, &prefix).await;
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, u32)> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
    cache.set_many(&entries, None).await.unwrap();

    let victim = cluster.primary_port_of(&format!("{prefix}k0"));
    let replica = cluster
        .nodes_seen_by(victim)
        .into_iter()
        .find(|n| {
            let primary_id = cluster
                .nodes_seen_by(victim)
                .into_iter()
                .find(|p| p.port == victim)
                .unwrap()
                .id;
            n.primary_id.as_deref() == Some(primary_id.as_str())
        })
        .expect("the primary has a replica")
        .port;
    // The replica has every key of its primary before the primary dies
    // (replication is asynchronous).
    let victim_keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}{k}"))
        .filter(|k| cluster.primary_port_of(k) == victim)
        .collect();
    let mut replica_conn = cluster.node_connection(replica);
    let () = redis::cmd("READONLY").query(&mut replica_conn).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    for key in &victim_keys {
        while redis::cmd("EXISTS").arg(key).query::<u64>(&mut replica_conn).unwrap() == 0 {
            assert!(Instant::now() < deadline, "replica never received {key}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    cluster.kill(victim);
    support::wait_until_served(&cache, "k0", 1000, "cluster failover").await;

    // The promoted replica serves the rest of the slot's keys, and every
    // batch operation works on the new topology.
    cluster.wait_until_healthy(Duration::from_secs(15));
    assert!(cluster.primary_ports().contains(&replica), "the replica was promoted");
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values: Vec<Option<u32>> = cache.get_many(&names).await.unwrap();
    assert_eq!(values[0], Some(1000));
    assert!(values.iter().all(Option::is_some), "no key lost: {values:?}");
    cache.set_many(&entries, None).await.unwrap();
    cache.purge().await.unwrap();
    assert_eq!(cache.get_many::<u32>(&names).await.unwrap(), vec![None; names.len()]);
}

#[test]
fn cluster_and_sentinel_urls_parse_and_errors_name_the_field() {
    let config =
        RedisConfig::from_url("redis+cluster://app:s3cret@127.0.0.1:7000,[::1]:7001,node3?response_timeout=200ms")
            .unwrap();
    assert_eq!(config.topology(), Topology::Cluster);
    assert_eq!(
        config.cluster_nodes(),
        &[
            ("127.0.0.1".to_owned(), 7000),
            ("::1".to_owned(), 7001),
            ("node3".to_owned(), 6379)
        ]
    );
    assert_eq!(config.username(), Some("app"));
    assert_eq!(config.password().unwrap().expose(), "s3cret");
    assert_eq!(config.response_timeout(), Duration::from_millis(200));
    assert!(!format!("{config:?}").contains("s3cret"));
    assert!(!config.to_string().contains("s3cret"));
    assert_eq!(
        config.to_string(),
        "redis+cluster://app:***@127.0.0.1:7000,[::1]:7001,node3:6379"
    );
    let reparsed = RedisConfig::from_url(&config.to_string().replace("***", "s3cret")).unwrap();
    assert_eq!(
        reparsed.cluster_nodes(),
        config.cluster_nodes(),
        "Display is a valid URL"
    );
    assert_eq!(reparsed.password(), config.password());

    let tls = RedisConfig::from_url("rediss+cluster://h:7000?min_tls_version=1.3").unwrap();
    assert_eq!(tls.tls().unwrap().min_version, memorix::TlsVersion::V1_3);

    let sentinel = RedisConfig::from_url("redis+sentinel://:pw@s1,s2:26380/mymaster/3").unwrap();
    assert_eq!(sentinel.topology(), Topology::Sentinel);
    assert_eq!(sentinel.sentinel_master(), Some("mymaster"));
    assert_eq!(
        sentinel.sentinel_nodes(),
        &[("s1".to_owned(), 26379), ("s2".to_owned(), 26380)]
    );
    assert_eq!(sentinel.db(), 3);
    assert_eq!(
        sentinel.to_string(),
        "redis+sentinel://:***@s1:26379,s2:26380/mymaster/3"
    );
    assert!(!format!("{sentinel:?}").contains("pw\""));

    let err_field = |url: &str| match RedisConfig::from_url(url).unwrap_err() {
        memorix::CacheError::Config { field, reason } => {
            assert!(!reason.contains("hunter2"), "the password leaked into `{reason}`");
            field
        }
        other => panic!("{url}: {other}"),
    };
    assert_eq!(err_field("redis+cluster://h1:7000/2"), "db");
    assert_eq!(err_field("redis+cluster://:hunter2@h1:notaport"), "cluster_nodes");
    assert_eq!(err_field("redis+cluster://:hunter2@h1:7000,,h2"), "cluster_nodes");
    assert_eq!(err_field("redis+cluster://h1:0"), "cluster_nodes");
    assert_eq!(err_field("redis+cluster://"), "cluster_nodes");
    assert_eq!(err_field("redis+sentinel://s1:26379"), "sentinel_master");
    assert_eq!(err_field("redis+sentinel://s1:26379/"), "sentinel_master");
    assert_eq!(err_field("redis+sentinel://s1:26379/m/x"), "db");
    assert_eq!(err_field("redis+cluster://h1?bogus=1"), "url");

    let err = RedisConfig::builder()
        .cluster_node("h1", 7000)
        .sentinel_master("m")
        .sentinel_node("s1", 26379)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`cluster_nodes`"), "{err}");
    let err = RedisConfig::builder().sentinel_node("s1", 26379).build().unwrap_err();
    assert!(err.to_string().contains("`sentinel_master`"), "{err}");
    let err = RedisConfig::builder().cluster_node("", 7000).build().unwrap_err();
    assert!(err.to_string().contains("`cluster_nodes`"), "{err}");
    let err = memorix::client_for(&config).unwrap_err();
    assert!(err.to_string().contains("`topology`"), "{err}");
}

#[tokio::test]
async fn the_two_tier_cache_runs_on_a_cluster_with_coherent_l1() {
    use memorix::GenericRedisCache;
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("generic-cluster");
    let open = || {
        GenericRedisCache::builder()
            .redis(cluster.config())
            .prefix(prefix.clone())
            .connect()
    };
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    assert!(
        a.is_redis_available() && b.is_redis_available(),
        "connected to the cluster, not memory-only"
    );

    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        a.set(key, &(i as u32), Some(Duration::from_secs(60))).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            b.get::<u32>(key).await.unwrap(),
            Some(i as u32),
            "B reads A's write (and fills its L1)"
        );
    }
    assert!(b.has(&keys[0]).await.unwrap());
    let spread: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.primary_port_of(&format!("{prefix}{k}")))
        .collect();
    assert!(spread.len() > 1, "keys spread over several primaries");

    // A's update reaches B's L1 through pub/sub on the cluster.
    a.set(&keys[0], &999u32, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get::<u32>(&keys[0]).await.unwrap() != Some(999) {
        assert!(Instant::now() < deadline, "B kept serving the old value from L1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.remove(&keys[1]).await.unwrap());
    assert!(!b.has(&keys[1]).await.unwrap());
}

#[tokio::test]
async fn a_tls_cluster_is_used_with_verified_certificates() {
    use memorix::{GenericRedisCache, TlsConfig};
    let pki = support::pki::make_pki();
    let cluster = RedisCluster::start_tls(&pki);
    let config = |ca: &str| {
        RedisConfig::from_url(&format!("{}?connect_timeout=1s&response_timeout=1s", cluster.tls_url()))
            .unwrap()
            .into_builder()
            .tls(TlsConfig::new().ca_cert(pki.path(ca)))
            .build()
            .unwrap()
    };
    let prefix = unique_prefix("tls-cluster");
    let cache = RedisCache::builder()
        .config(config("ca.pem"))
        .prefix(prefix.clone())
        .connect()
        .await
        .expect("connect over TLS");
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, u32)> = keys.iter().zip(0..).map(|(k, i)| (k.as_str(), i)).collect();
    cache.set_many(&entries, None).await.unwrap();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let expected: Vec<Option<u32>> = (0..20).map(Some).collect();
    assert_eq!(cache.get_many::<u32>(&refs).await.unwrap(), expected);
    let spread: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.primary_port_of(&format!("{prefix}{k}")))
        .collect();
    assert!(
        spread.len() > 1,
        "keys spread over several primaries, reached through TLS redirects"
    );

    let two_tier = GenericRedisCache::builder()
        .redis(config("ca.pem"))
        .prefix(prefix.clone())
        .fail_on_connection_error(true)
        .connect()
        .await
        .expect("the two-tier cache connects over TLS");
    two_tier.set("tier", &7u32, None).await.unwrap();
    assert!(
        cache.has("tier").await.unwrap(),
        "the two-tier write reached the cluster"
    );
    assert_eq!(two_tier.get::<u32>("tier").await.unwrap(), Some(7));
    cache.purge().await.unwrap();
    assert!(!cache.has("k7").await.unwrap());

    // Verification is on: a cluster whose certificates the CA did not sign is refused.
    let err = RedisCache::connect(config("other-ca.pem")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

/// Median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn the_two_tier_cache_batches_and_purges_per_node_on_a_cluster() {
    use memorix::GenericRedisCache;
    let cluster = RedisCluster::start();
    let base = unique_prefix("tier-batch");
    let (prefix, sibling) = (format!("{base}app:"), format!("{base}app2:"));
    let open = |prefix: String, l1: bool| {
        GenericRedisCache::builder()
            .redis(cluster.config())
            .prefix(prefix)
            .enable_l1_cache(l1)
            .connect()
    };
    let writer = open(prefix.clone(), true).await.unwrap();
    // L1 off: every get_many asks Redis, which is what is measured.
    let reader = open(prefix.clone(), false).await.unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, u32)> = names.iter().enumerate().map(|(i, k)| (k.as_str(), i as u32)).collect();
    let lookup: Vec<&str> = names.iter().map(String::as_str).collect();
    let spread: BTreeSet<u16> = names
        .iter()
        .map(|k| cluster.primary_port_of(&format!("{prefix}{k}")))
        .collect();
    assert_eq!(spread.len(), 3, "the batch spans every primary");

    let (mut sets, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let started = Instant::now();
        writer.set_many(&entries, Some(Duration::from_secs(60))).await.unwrap();
        sets.push(started.elapsed());
        let started = Instant::now();
        let got: Vec<Option<u32>> = reader.get_many(&lookup).await.unwrap();
        gets.push(started.elapsed());
        assert_eq!(got, (0..100).map(Some).collect::<Vec<_>>());
    }
    let plain = cache_on(&cluster, &format!("{base}plain:")).await;
    let mut plain_gets = Vec::new();
    plain.set_many(&entries, None).await.unwrap();
    for _ in 0..7 {
        let started = Instant::now();
        let got: Vec<Option<u32>> = plain.get_many(&lookup).await.unwrap();
        plain_gets.push(started.elapsed());
        assert_eq!(got.len(), 100);
    }
    eprintln!(
        "100 keys on a 3-primary cluster, median of 7: two-tier set_many {:?}, get_many {:?}; RedisCache get_many {:?}",
        median(sets),
        median(gets),
        median(plain_gets)
    );

    // purge: this namespace on every primary, never the sibling `app2:`.
    let other = open(sibling.clone(), true).await.unwrap();
    other.set("s", &1u32, None).await.unwrap();
    writer.purge().await.unwrap();
    for &port in &cluster.primary_ports() {
        assert!(
            !keys_on(&cluster, port).iter().any(|k| k.starts_with(&prefix)),
            "primary {port} still holds keys of the purged namespace"
        );
    }
    assert_eq!(
        other.get::<u32>("s").await.unwrap(),
        Some(1),
        "the sibling namespace survives"
    );
    assert_eq!(writer.get::<u32>("k1").await.unwrap(), None, "L1 was cleared too");

    // Prefixes that would reach beyond one namespace are refused.
    for refused in [String::new(), format!("{base}app")] {
        let cache = open(refused.clone(), true).await.unwrap();
        let err = cache.purge().await.unwrap_err();
        assert!(err.is_config(), "{refused:?}: {err}");
        let plain = cache_on(&cluster, &refused).await;
        assert!(plain.purge().await.unwrap_err().is_config());
    }
    assert_eq!(other.get::<u32>("s").await.unwrap(), Some(1));
}

#[tokio::test]
async fn the_two_tier_replay_keeps_newer_values_on_a_cluster() {
    use memorix::GenericRedisCache;
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("cluster-replay");
    let config = RedisConfig::from_url(&format!(
        "{}?response_timeout=300ms&connect_timeout=300ms",
        cluster.url()
    ))
    .unwrap();
    let open = |probe: Duration| {
        GenericRedisCache::builder()
            .redis(config.clone())
            .prefix(prefix.clone())
            .probe_interval(probe)
            .connect()
    };
    // The slow instance replays well after the others write.
    let slow = open(Duration::from_millis(2500)).await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let spread: BTreeSet<u16> = names
        .iter()
        .map(|k| cluster.primary_port_of(&format!("{prefix}{k}")))
        .collect();
    assert!(spread.len() > 1, "the backlog spans several primaries");

    let primaries = cluster.primary_ports();
    for &port in &primaries {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1000)
            .arg("ALL")
            .query(&mut cluster.node_connection(port))
            .unwrap();
    }
    for name in &names {
        slow.set(name, &"outage", None).await.unwrap();
    }
    assert!(!slow.is_redis_available());
    // Wait for every primary to answer again.
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        for port in primaries {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            loop {
                let answered = client
                    .get_connection_with_timeout(Duration::from_millis(100))
                    .and_then(|mut conn| {
                        conn.set_read_timeout(Some(Duration::from_millis(50)))?;
                        redis::cmd("PING").query::<String>(&mut conn)
                    });
                if answered.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "primary {port} did not answer after the pause"
                );
            }
        }
    })
    .await
    .unwrap();

    let live = open(Duration::from_millis(20)).await.unwrap();
    for name in &names[..10] {
        live.set(name, &"after", None).await.unwrap();
    }
    for name in &names[10..15] {
        live.remove(name).await.unwrap();
    }
    assert!(
        !slow.is_redis_available(),
        "the slow replay comes later: the order under test"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !slow.is_redis_available() {
        assert!(Instant::now() < deadline, "the slow instance did not recover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reader = open(Duration::from_millis(20)).await.unwrap();
    for (i, name) in names.iter().enumerate() {
        let expected = match i {
            0..10 => Some("after"),
            10..15 => None,
            _ => Some("outage"),
        };
        assert_eq!(reader.get::<String>(name).await.unwrap().as_deref(), expected, "{name}");
    }
}
