//! `GenericRedisCache` benchmarks, each against its peer in the same run:
//!
//! 1. L1 hit, 2 threads over a 10k-key working set: `GenericRedisCache::get`
//!    vs moka's own `sync::Cache::get` on the same keys and values.
//! 2. Redis-tier hit (L1 off) of a compressible 1 KiB JSON value (so it is
//!    stored compressed): `GenericRedisCache::get` vs raw redis-rs `GET` of
//!    the plain bytes and `RedisCache::get`, 64 concurrent tasks, paired rounds.
//! 3. Writes with a TTL, 1 KiB JSON (compressed) and 100 B: `GenericRedisCache::set`
//!    (defaults: L1 on, coherence on) vs raw `SET .. PX` and `RedisCache::set`;
//!    a two-tier side with coherence off shows what the invalidation PUBLISH costs.
//! 4. zlib: compress + decompress of a 1 KiB JSON value through the default
//!    stage (per-thread state, level 1 up to 4 KiB) and at level 6; ratio and
//!    MB/s on a 100 KiB JSON document.
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
const WRITE_KEYS: usize = 1024;
const SMALL_ROUNDS: usize = 9;
const SMALL_CALLS: usize = 20_000;
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

/// Median ops/s of each side and its paired ratio to side 0, as a JSON row.
fn row(names: &[&str], paired: common::Paired) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        out.insert(format!("{name}_ops_per_s"), serde_json::json!(paired.median(i).round()));
        if i > 0 {
            out.insert(
                format!("{name}_over_{}", names[0]),
                serde_json::json!(paired.ratio(i, 0)),
            );
        }
    }
    out.insert("rounds".into(), serde_json::json!(REDIS_ROUNDS));
    out.insert("tasks".into(), serde_json::json!(TASKS));
    serde_json::Value::Object(out)
}

/// Write keys cycle through `WRITE_KEYS` names, one counter per side.
fn next_key(keys: &Arc<Vec<String>>, counter: &std::sync::atomic::AtomicUsize) -> String {
    keys[counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % WRITE_KEYS].clone()
}

/// Raw redis-rs `SET key value PX 60000` of `value`.
fn raw_set(conn: redis::aio::MultiplexedConnection, keys: Arc<Vec<String>>, value: Arc<Vec<u8>>) -> common::Op {
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    common::op(move || {
        let (mut conn, key, value) = (conn.clone(), next_key(&keys, &counter), value.clone());
        async move {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(value.as_slice())
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await
                .expect("raw set");
        }
    })
}

fn generic_set(cache: Arc<GenericRedisCache>, keys: Arc<Vec<String>>, value: Arc<serde_bytes::ByteBuf>) -> common::Op {
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    common::op(move || {
        let (cache, key, value) = (cache.clone(), next_key(&keys, &counter), value.clone());
        async move {
            cache
                .set(&key, &*value, Some(Duration::from_secs(60)))
                .await
                .expect("set");
        }
    })
}

fn plain_set(cache: Arc<RedisCache>, keys: Arc<Vec<String>>, value: Arc<serde_bytes::ByteBuf>) -> common::Op {
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    common::op(move || {
        let (cache, key, value) = (cache.clone(), next_key(&keys, &counter), value.clone());
        async move {
            cache
                .set(&key, &*value, Some(Duration::from_secs(60)))
                .await
                .expect("set");
        }
    })
}

async fn two_tier(server: &RedisServer, prefix: &str, coherence: bool, l1: bool) -> Arc<GenericRedisCache> {
    Arc::new(
        GenericRedisCache::builder()
            .redis(server.config())
            .prefix(prefix)
            .enable_l1_cache(l1)
            .l1_coherence(coherence)
            .connect()
            .await
            .expect("connect"),
    )
}

/// Rows 2 and 3: Redis-tier reads and writes, paired rounds against raw redis-rs.
async fn redis_rows(server: &RedisServer) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let json = common::json_value(1024);
    let value = Arc::new(serde_bytes::ByteBuf::from(json.clone()));
    let reader = two_tier(server, "bench:tier:", true, false).await;
    let plain = Arc::new(
        RedisCache::builder()
            .config(server.config())
            .prefix("bench:plain:")
            .connect()
            .await
            .expect("connect"),
    );
    let raw = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connect");
    reader.set("1k", &*value, None).await.expect("seed");
    plain.set("1k", &*value, None).await.expect("seed");
    let mut seed = raw.clone();
    let _: () = redis::cmd("SET")
        .arg("bench:raw:1k")
        .arg(json.as_slice())
        .query_async(&mut seed)
        .await
        .expect("seed raw");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("bench:tier:1k")
        .query_async(&mut seed)
        .await
        .expect("stored");
    let reads = [
        {
            let raw = raw.clone();
            common::op(move || {
                let mut conn = raw.clone();
                async move {
                    let v: Option<Vec<u8>> = redis::cmd("GET")
                        .arg("bench:raw:1k")
                        .query_async(&mut conn)
                        .await
                        .expect("raw get");
                    assert_eq!(v.map(|v| v.len()), Some(1024));
                }
            })
        },
        {
            let reader = reader.clone();
            common::op(move || {
                let reader = reader.clone();
                async move {
                    let v: Option<serde_bytes::ByteBuf> = reader.get("1k").await.expect("get");
                    assert_eq!(v.map(|v| v.len()), Some(1024));
                }
            })
        },
        {
            let plain = plain.clone();
            common::op(move || {
                let plain = plain.clone();
                async move {
                    let v: Option<serde_bytes::ByteBuf> = plain.get("1k").await.expect("get");
                    assert_eq!(v.map(|v| v.len()), Some(1024));
                }
            })
        },
    ];
    let mut tier = row(
        &["raw_get", "generic_get", "redis_cache_get"],
        common::paired(REDIS_ROUNDS, TASKS, OPS_PER_TASK, &reads).await,
    );
    tier["stored_bytes"] = serde_json::json!(stored.len());

    let writer = two_tier(server, "bench:w:", true, true).await;
    let quiet = two_tier(server, "bench:wq:", false, true).await;
    let keys = |tag: &str| Arc::new((0..WRITE_KEYS).map(|i| format!("bench:{tag}:{i}")).collect::<Vec<_>>());
    let mut write_rows = Vec::new();
    for (tag, bytes) in [("1k", json.clone()), ("100", common::json_value(100))] {
        let value = Arc::new(serde_bytes::ByteBuf::from(bytes.clone()));
        let sides = [
            raw_set(raw.clone(), keys(&format!("raw{tag}")), Arc::new(bytes)),
            generic_set(writer.clone(), keys(tag), value.clone()),
            plain_set(plain.clone(), keys(tag), value.clone()),
            generic_set(quiet.clone(), keys(tag), value.clone()),
        ];
        write_rows.push(row(
            &[
                "raw_set_px",
                "generic_set",
                "redis_cache_set",
                "generic_set_no_coherence",
            ],
            common::paired(REDIS_ROUNDS, TASKS, OPS_PER_TASK, &sides).await,
        ));
    }
    let writes_100 = write_rows.pop().expect("row");
    (tier, write_rows.pop().expect("row"), writes_100)
}

/// On-CPU microseconds per compress + decompress of a 1 KiB JSON value: through the
/// default stage (what the two-tier engine does), and at level 6.
fn small_value_zlib() -> serde_json::Value {
    use memorix::{Compression, Transform};
    let value = common::json_value(1024);
    let stage = Compression::default();
    let time = |f: &dyn Fn()| {
        let mut rounds = Vec::new();
        for _ in 0..SMALL_ROUNDS {
            // On-CPU time, so other processes on the machine do not count.
            let (started, cpu) = (Instant::now(), thread_cpu());
            for _ in 0..SMALL_CALLS {
                f();
            }
            let spent = thread_cpu()
                .zip(cpu)
                .map_or(started.elapsed(), |(end, start)| end - start);
            rounds.push(spent.as_secs_f64() * 1e6 / SMALL_CALLS as f64);
        }
        (common::median(rounds) * 100.0).round() / 100.0
    };
    let sealed = stage.seal(&value).expect("seal");
    let level6 = memorix::compress(&value, 6).expect("compress");
    serde_json::json!({
        "value_bytes": value.len(),
        "stage_stored_bytes": sealed.len(),
        "level6_bytes": level6.len(),
        "stage_seal_plus_open_us": time(&|| {
            let sealed = stage.seal(std::hint::black_box(&value)).expect("seal");
            std::hint::black_box(stage.open(&sealed).expect("open"));
        }),
        "stage_seal_us": time(&|| {
            std::hint::black_box(stage.seal(std::hint::black_box(&value)).expect("seal"));
        }),
        "level6_compress_plus_decompress_us": time(&|| {
            let packed = memorix::compress(std::hint::black_box(&value), 6).expect("compress");
            std::hint::black_box(memorix::decompress(&packed, 1 << 20).expect("decompress"));
        }),
        "rounds": SMALL_ROUNDS,
        "calls_per_round": SMALL_CALLS,
    })
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

    // 2. Redis-tier hits (L1 off) of a compressible 1 KiB value, and writes.
    let (tier, writes_1k, writes_100) = rt.block_on(redis_rows(&server));
    let small = small_value_zlib();

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
        "redis_tier_hit_1k_json_64_tasks": tier,
        "set_1k_json_64_tasks": writes_1k,
        "set_100b_64_tasks": writes_100,
        "zlib_1k_json_round_trip": small,
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
