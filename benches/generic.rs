//! `GenericRedisCache` benchmarks, each against its peer in the same run:
//!
//! 1. L1 hit, 2 threads over a 10k-key working set: `GenericRedisCache::get`
//!    vs moka's own `sync::Cache::get` on the same keys and values.
//! 2. Redis-tier hit (L1 off): `GenericRedisCache::get` vs `RedisCache::get`,
//!    64 concurrent tasks, same server, rounds alternated.
//! 3. zlib compression of a 100 KiB JSON document: ratio and MB/s.
//!
//! Run: `cargo bench --bench generic`. Prints one JSON object with medians.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use futures::FutureExt;
use memorix::prelude::*;
use memorix::{GenericRedisCache, RedisCache};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::RedisServer;

const KEYS: usize = 10_000;
const THREADS: usize = 2;
const L1_OPS_PER_THREAD: usize = 400_000;
const L1_ROUNDS: usize = 9;
const TASKS: usize = 64;
const OPS_PER_TASK: usize = 200;
const REDIS_ROUNDS: usize = 11;
const ZIP_ROUNDS: usize = 21;

/// A pseudo-random visiting order of the working set, one per thread.
fn order(seed: u64) -> Vec<usize> {
    let mut state = seed | 1;
    (0..L1_OPS_PER_THREAD)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % KEYS as u64) as usize
        })
        .collect()
}

/// On-CPU time of the calling thread (Linux `schedstat`), so a loaded machine
/// does not count time the thread spent waiting for a core; `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

/// Nanoseconds per get (on-CPU, and wall), per thread, with `THREADS` threads
/// reading at once.
fn l1_round<F>(keys: &Arc<Vec<String>>, orders: &Arc<Vec<Vec<usize>>>, get: F) -> (f64, f64)
where
    F: Fn(&str) -> u64 + Send + Sync + Clone + 'static,
{
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (keys, orders, get, barrier) = (keys.clone(), orders.clone(), get.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (started, cpu) = (Instant::now(), thread_cpu());
                let mut sum = 0u64;
                for &i in &orders[t] {
                    sum = sum.wrapping_add(get(&keys[i]));
                }
                std::hint::black_box(sum);
                let wall = started.elapsed();
                (thread_cpu().zip(cpu).map_or(wall, |(end, start)| end - start), wall)
            })
        })
        .collect();
    let times: Vec<(Duration, Duration)> = handles.into_iter().map(|h| h.join().expect("bench thread")).collect();
    let per_get = |d: Duration| d.as_nanos() as f64 / (THREADS * L1_OPS_PER_THREAD) as f64;
    (
        per_get(times.iter().map(|t| t.0).sum()),
        per_get(times.iter().map(|t| t.1).sum()),
    )
}

/// One Redis-tier round: `TASKS` tasks doing `OPS_PER_TASK` calls each; ops per second.
async fn redis_round<F, Fut>(op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::ops_per_sec(TASKS, OPS_PER_TASK, move |_| op()).await
}

fn json_document() -> Vec<u8> {
    let mut records = Vec::new();
    let mut i = 0u64;
    loop {
        records.push(serde_json::json!({
            "id": i,
            "name": format!("user {i}"),
            "email": format!("user{i}@example.com"),
            "active": i % 3 != 0,
            "score": (i * 37) % 101,
            "tags": ["alpha", "beta", if i % 2 == 0 { "even" } else { "odd" }],
            "bio": "Writes software, reads papers, drinks coffee.",
        }));
        i += 1;
        let doc = serde_json::to_vec(&records).expect("json");
        if doc.len() >= 100 * 1024 {
            return doc;
        }
    }
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // 1. L1 hits.
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("key:{i}")).collect());
    let orders: Arc<Vec<Vec<usize>>> = Arc::new((0..THREADS as u64).map(|t| order(0x9E37 + t)).collect());
    let ours = rt.block_on(async {
        let cache = GenericRedisCache::builder()
            .redis(server.config())
            .prefix("bench:l1:")
            .l1_cache_size(2 * KEYS)
            .connect()
            .await
            .expect("connect");
        for (i, key) in keys.iter().enumerate() {
            cache.set(key, &(i as u64), None).await.expect("seed");
        }
        for key in keys.iter() {
            cache.get::<u64>(key).await.expect("warm").expect("present");
        }
        Arc::new(cache)
    });
    let moka: moka::sync::Cache<String, u64> = moka::sync::Cache::new(2 * KEYS as u64);
    for (i, key) in keys.iter().enumerate() {
        moka.insert(key.clone(), i as u64);
    }
    let (mut ours_ns, mut moka_ns, mut ours_wall, mut moka_wall) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..L1_ROUNDS {
        let cache = ours.clone();
        let (cpu, wall) = l1_round(&keys, &orders, move |k| {
            cache
                .get::<u64>(k)
                .now_or_never()
                .expect("an L1 hit completes without waiting")
                .expect("get")
                .expect("hit")
        });
        ours_ns.push(cpu);
        ours_wall.push(wall);
        let m = moka.clone();
        let (cpu, wall) = l1_round(&keys, &orders, move |k| m.get(k).expect("hit"));
        moka_ns.push(cpu);
        moka_wall.push(wall);
    }
    let l1_stats = ours.stats();
    assert_eq!(l1_stats.redis.hits, 0, "every timed get was an L1 hit");

    // 2. Redis-tier hits.
    let (tier_ops, redis_ops) = rt.block_on(async {
        let value = serde_bytes::ByteBuf::from(vec![0xABu8; 1024]);
        let generic = Arc::new(
            GenericRedisCache::builder()
                .redis(server.config())
                .prefix("bench:tier:")
                .enable_l1_cache(false)
                .compression(false)
                .connect()
                .await
                .expect("connect"),
        );
        let plain = Arc::new(
            RedisCache::builder()
                .config(server.config())
                .prefix("bench:plain:")
                .connect()
                .await
                .expect("connect"),
        );
        generic.set("1k", &value, None).await.expect("seed");
        plain.set("1k", &value, None).await.expect("seed");
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for round in 0..REDIS_ROUNDS + 1 {
            let g = generic.clone();
            let a = redis_round(move || {
                let g = g.clone();
                async move {
                    let v: Option<serde_bytes::ByteBuf> = g.get("1k").await.expect("get");
                    assert!(v.is_some());
                }
            })
            .await;
            let p = plain.clone();
            let b = redis_round(move || {
                let p = p.clone();
                async move {
                    let v: Option<serde_bytes::ByteBuf> = p.get("1k").await.expect("get");
                    assert!(v.is_some());
                }
            })
            .await;
            if round > 0 {
                ours.push(a);
                peer.push(b);
            }
        }
        (common::median(ours), common::median(peer))
    });

    // 3. Compression of a 100 KiB JSON document.
    let doc = json_document();
    let packed = memorix::compress(&doc, 6).expect("compress");
    let (mut zip_mbs, mut unzip_mbs) = (Vec::new(), Vec::new());
    for _ in 0..ZIP_ROUNDS {
        let started = Instant::now();
        std::hint::black_box(memorix::compress(&doc, 6).expect("compress"));
        zip_mbs.push(doc.len() as f64 / started.elapsed().as_secs_f64() / 1e6);
        let started = Instant::now();
        std::hint::black_box(memorix::decompress(&packed, 64 << 20).expect("decompress"));
        unzip_mbs.push(doc.len() as f64 / started.elapsed().as_secs_f64() / 1e6);
    }

    let (ours_ns, moka_ns) = (common::median(ours_ns), common::median(moka_ns));
    let report = serde_json::json!({
        "bench": "generic",
        "l1_hit_2_threads_10k_keys": {
            "memorix_generic_cpu_ns_per_get": ours_ns,
            "moka_sync_cpu_ns_per_get": moka_ns,
            "moka_over_memorix": moka_ns / ours_ns,
            "memorix_generic_wall_ns_per_get": common::median(ours_wall),
            "moka_sync_wall_ns_per_get": common::median(moka_wall),
            "threads": THREADS,
            "rounds": L1_ROUNDS,
            "gets_per_round": THREADS * L1_OPS_PER_THREAD,
        },
        "redis_tier_hit_1k_64_tasks": {
            "memorix_generic_ops_per_s": tier_ops,
            "redis_cache_ops_per_s": redis_ops,
            "generic_over_redis_cache": tier_ops / redis_ops,
            "rounds": REDIS_ROUNDS,
        },
        "compression_100k_json_level6": {
            "input_bytes": doc.len(),
            "output_bytes": packed.len(),
            "ratio": doc.len() as f64 / packed.len() as f64,
            "compress_mb_per_s": common::median(zip_mbs),
            "decompress_mb_per_s": common::median(unzip_mbs),
            "rounds": ZIP_ROUNDS,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
