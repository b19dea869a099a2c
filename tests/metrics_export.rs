//! `GenericRedisCache` with the `metrics` feature, scraped through a real
//! Prometheus exporter (`metrics-exporter-prometheus`, rendered in-process:
//! no listener) after a known workload on a real redis-server: every exported
//! count equals the one `stats()` reports, the latency histogram counts L1 hits
//! with their sampling weight, the L1 gauges match, and every series carries
//! the `cache` label of the cache that produced it.
#![cfg(feature = "metrics")]

mod support;

use memorix::prelude::*;
use memorix::{GenericRedisCache, GenericStats};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{unique_prefix, RedisServer};

/// One sample of the scrape: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (sample lines only).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The value of the series `name` whose labels are exactly `cache` plus `extra`.
fn value(samples: &[Sample], name: &str, cache: &str, extra: &[(&str, &str)]) -> u64 {
    let mut want: BTreeMap<String, String> = extra.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    want.insert("cache".into(), cache.into());
    let found: Vec<&Sample> = samples.iter().filter(|s| s.name == name && s.labels == want).collect();
    assert_eq!(found.len(), 1, "one series {name}{want:?} in the scrape: {found:?}");
    found[0].value as u64
}

fn install() -> PrometheusHandle {
    PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary")
}

async fn cache(server: &RedisServer, prefix: &str) -> GenericRedisCache {
    GenericRedisCache::builder()
        .redis(server.config())
        .prefix(prefix)
        .connect()
        .await
        .expect("connect")
}

/// Every count of `stats()` against the scrape.
fn assert_scrape_matches(samples: &[Sample], cache: &str, stats: &GenericStats) {
    let tier = |name, tier| value(samples, name, cache, &[("tier", tier)]);
    assert_eq!(tier("memorix_hits_total", "l1"), stats.l1.hits);
    assert_eq!(tier("memorix_hits_total", "redis"), stats.redis.hits);
    assert_eq!(tier("memorix_misses_total", "l1"), stats.l1.misses);
    assert_eq!(tier("memorix_misses_total", "redis"), stats.redis.misses);
    let plain = |name| value(samples, name, cache, &[]);
    assert_eq!(plain("memorix_gets_missed_total"), stats.misses);
    assert_eq!(plain("memorix_sets_total"), stats.sets);
    assert_eq!(plain("memorix_deletes_total"), stats.deletes);
    assert_eq!(plain("memorix_invalidations_sent_total"), stats.invalidations_sent);
    assert_eq!(plain("memorix_compressions_total"), stats.compression.compressions);
    assert_eq!(plain("memorix_compression_bytes_in_total"), stats.compression.bytes_in);
    assert_eq!(
        plain("memorix_compression_bytes_out_total"),
        stats.compression.bytes_out
    );
    assert_eq!(plain("memorix_l1_entries"), stats.l1_entries);
    assert_eq!(plain("memorix_l1_bytes"), stats.l1_bytes);
    for (op, latency) in &stats.latency {
        if latency.count > 0 {
            let count = value(samples, "memorix_operation_seconds_count", cache, &[("op", op)]);
            assert_eq!(count, latency.count, "latency count of {op}");
        }
    }
}

#[tokio::test]
async fn the_scraped_counts_equal_the_stats_after_a_known_workload() {
    let handle = install();
    let server = RedisServer::start();
    let (a, b) = (unique_prefix("metrics_a"), unique_prefix("metrics_b"));
    let cache_a = cache(&server, &a).await;
    let cache_b = cache(&server, &b).await;

    // Five keys, one large enough to be compressed; 40 gets of them (L1 hits),
    // two gets of absent keys, one delete, one exists; three sets on the other cache.
    let big = "compressible ".repeat(200);
    for i in 0..5 {
        let value = if i == 0 { big.clone() } else { format!("value {i}") };
        cache_a
            .set(&format!("k{i}"), &value, Some(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    for round in 0..8 {
        for i in 0..5 {
            let got: Option<String> = cache_a.get(&format!("k{i}")).await.unwrap();
            assert!(got.is_some(), "k{i} in round {round}");
        }
    }
    assert!(cache_a.get::<String>("absent").await.unwrap().is_none());
    assert!(Cache::remove(&cache_a, "k4").await.unwrap());
    assert!(cache_a.get::<String>("k4").await.unwrap().is_none());
    assert!(Cache::has(&cache_a, "k1").await.unwrap());
    for i in 0..3 {
        cache_b.set(&format!("k{i}"), &i, None).await.unwrap();
    }

    // stats() refreshes the L1 gauges, so the scrape follows it.
    let (stats, stats_b) = (cache_a.stats(), cache_b.stats());
    let samples = parse(&handle.render());

    // The workload as the cache saw it.
    assert_eq!((stats.gets, stats.hits, stats.misses), (42, 40, 2));
    assert_eq!((stats.l1.hits, stats.sets, stats.deletes), (40, 5, 1));
    assert!(stats.compression.compressions >= 1, "{stats:?}");
    // 40 L1 hits on one thread: two sampled, each standing for 16 gets.
    let l1_sampled = 40 / u64::from(memorix::L1_SAMPLE_EVERY) * u64::from(memorix::L1_SAMPLE_EVERY);
    assert_eq!(
        stats.latency["get"].count,
        l1_sampled + stats.redis.hits + stats.redis.misses
    );

    assert_scrape_matches(&samples, &a, &stats);
    let hits = value(&samples, "memorix_hits_total", &a, &[("tier", "l1")])
        + value(&samples, "memorix_hits_total", &a, &[("tier", "redis")]);
    assert_eq!(hits + value(&samples, "memorix_gets_missed_total", &a, &[]), 42);

    // The other cache's series are its own.
    assert_eq!(value(&samples, "memorix_sets_total", &b, &[]), 3);
    assert_scrape_matches(&samples, &b, &stats_b);

    // Every memorix series names its cache.
    let ours: Vec<&Sample> = samples.iter().filter(|s| s.name.starts_with("memorix_")).collect();
    assert!(ours.len() > 20, "{ours:?}");
    for sample in ours {
        let cache = sample.labels.get("cache").map(String::as_str);
        assert!(cache == Some(a.as_str()) || cache == Some(b.as_str()), "{sample:?}");
    }
}
