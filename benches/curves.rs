//! Cost curves: how the price of one operation grows with the size of the job.
//! Each curve is written as a CSV file and an SVG plot (log-log axes) into
//! `benches/curves/` (or `$CURVES_DIR`); a same-run peer is drawn beside ours
//! where one exists, and the ratio is printed.
//!
//! 1. `get_many` / `set_many` on `RedisCache`, N = 1 … 10,000 keys of 100 B:
//!    time per key, one caller; peers: a raw redis-rs `MGET` of the same keys
//!    and a raw pipeline of `SET`s.
//! 2. `purge` of a namespace holding 10³ … 10⁵ keys (10⁶ with
//!    `CURVES_PURGE_MAX=1000000`), standalone and on a 3-primary cluster
//!    (`CURVES_CLUSTER=0` skips it): total time.
//! 3. `GenericRedisCache` L1 hit time vs entries held in L1, 10³ … 10⁶, one
//!    thread in random order (on-CPU time); peer: moka's `sync::Cache::get`.
//! 4. Memoized-call hit time vs number of memoized functions called in turn
//!    (1 … 32) on 1 and 2 threads.
//! 5. `RateLimiter::check` at 1 … 256 concurrent callers: wall time per check
//!    (1 / throughput); peer: a raw `EVALSHA` of the same script.
//!
//! Run: `scripts/curves` (that is `cargo bench --bench curves`).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use futures::FutureExt;
use memorix::prelude::*;
use memorix::ratelimit::{Rate, RateLimiter, Store};
use memorix::{GenericRedisCache, RedisCache};
use plotters::prelude::*;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::RedisServer;

const BATCH_SIZES: [usize; 9] = [1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000];
const BATCH_ROUNDS: usize = 5;
const VALUE_BYTES: usize = 100;
const PURGE_SIZES: [usize; 6] = [1_000, 3_000, 10_000, 30_000, 100_000, 1_000_000];
const PURGE_ROUNDS: usize = 3;
const L1_SIZES: [usize; 7] = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000];
const L1_GETS: usize = 200_000;
const L1_ROUNDS: usize = 5;
const MEMO_KEYS_PER_FN: u64 = 1_000;
const MEMO_CALLS: usize = 1_000_000;
const MEMO_ROUNDS: usize = 5;
const CALLERS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const CHECK_ROUNDS: usize = 5;
const GCRA_LUA: &str = include_str!("../cache-runtime/src/ratelimit/scripts/gcra.lua");

/// One curve of a plot: a name and its (x, y) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        points,
    }
}

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("CURVES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/curves"));
    std::fs::create_dir_all(&dir).expect("create the output folder");
    dir
}

/// Writes `<name>.csv`: a header and one row per line.
fn write_csv(name: &str, header: &str, rows: &[String]) {
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(out_dir().join(format!("{name}.csv")), text).expect("write csv");
}

/// Draws `curves` on log-log axes into `<name>.svg`.
fn plot(name: &str, title: &str, x_desc: &str, y_desc: &str, curves: &[Series]) {
    let all = || curves.iter().flat_map(|s| s.points.iter());
    let (x_min, x_max) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_min, y_max) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let path = out_dir().join(format!("{name}.svg"));
    let root = SVGBackend::new(&path, (760, 460)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x_min / 1.3..x_max * 1.3).log_scale(),
            (y_min / 1.6..y_max * 1.6).log_scale(),
        )
        .expect("axes");
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .expect("mesh");
    for (i, curve) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(curve.points.clone(), color.stroke_width(2)))
            .expect("line")
            .label(curve.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(curve.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .expect("points");
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .expect("legend");
    root.present().expect("write svg");
}

/// On-CPU time of the calling thread (Linux `schedstat`), so a loaded machine
/// does not count time spent waiting for a core; wall time elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

/// Runs `f` and returns its on-CPU time on this thread (wall time without `schedstat`).
fn cpu_time(f: impl FnOnce()) -> Duration {
    let (started, cpu) = (Instant::now(), thread_cpu());
    f();
    let wall = started.elapsed();
    thread_cpu().zip(cpu).map_or(wall, |(end, start)| end - start)
}

/// Median over rounds of `a[round] / b[round]`, to 3 decimals.
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    let ratio = common::median(a.iter().zip(b).map(|(a, b)| a / b).collect());
    (ratio * 1000.0).round() / 1000.0
}

/// Calls of one batch size per round: enough keys to time, few enough to stay quick.
fn batch_calls(n: usize) -> usize {
    (20_000 / n).clamp(3, 400)
}

/// Mean µs per key of `calls` sequential calls of `op` (which handles `n` keys).
async fn per_key_us<F, Fut>(n: usize, calls: usize, op: &F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for _ in 0..calls {
        op().await;
    }
    started.elapsed().as_secs_f64() * 1e6 / (calls * n) as f64
}

/// Curve 1: `get_many` / `set_many` against raw `MGET` / a `SET` pipeline.
async fn batches(server: &RedisServer) {
    let cache = RedisCache::builder()
        .config(server.config())
        .prefix("bench:batch:")
        .connect()
        .await
        .expect("connect");
    let raw = server.raw().await;
    let value = serde_bytes::ByteBuf::from(vec![0x5Au8; VALUE_BYTES]);
    let max = *BATCH_SIZES.last().expect("sizes");
    let names: Vec<String> = (0..max).map(|i| format!("k{i}")).collect();
    let full: Vec<String> = names.iter().map(|k| format!("bench:batch:{k}")).collect();
    let raw_names: Vec<String> = names.iter().map(|k| format!("bench:raw:{k}")).collect();
    let entries: Vec<(&str, &serde_bytes::ByteBuf)> = names.iter().map(|k| (k.as_str(), &value)).collect();
    cache.set_many(&entries, None).await.expect("seed");

    let (mut rows, mut curves) = (Vec::new(), vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()]);
    for &n in &BATCH_SIZES {
        let calls = batch_calls(n);
        let keys: Vec<&str> = names[..n].iter().map(String::as_str).collect();
        let get_ours = || async {
            let got: Vec<Option<serde_bytes::ByteBuf>> = cache.get_many(&keys).await.expect("get_many");
            assert!(got.iter().all(Option::is_some));
        };
        let get_raw = || {
            let mut conn = raw.clone();
            let keys = &full[..n];
            async move {
                let got: Vec<Option<Vec<u8>>> =
                    redis::cmd("MGET").arg(keys).query_async(&mut conn).await.expect("mget");
                assert!(got.iter().all(Option::is_some));
            }
        };
        let set_ours = || async {
            cache.set_many(&entries[..n], None).await.expect("set_many");
        };
        let set_raw = || {
            let mut conn = raw.clone();
            let (keys, bytes) = (&raw_names[..n], value.as_slice());
            async move {
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.cmd("SET").arg(key).arg(bytes).ignore();
                }
                let _: () = pipe.query_async(&mut conn).await.expect("pipeline");
            }
        };
        // Paired rounds, alternating which side goes first.
        let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        per_key_us(n, calls, &get_ours).await; // warm up
        for round in 0..BATCH_ROUNDS {
            if round % 2 == 0 {
                t[0].push(per_key_us(n, calls, &get_ours).await);
                t[1].push(per_key_us(n, calls, &get_raw).await);
                t[2].push(per_key_us(n, calls, &set_ours).await);
                t[3].push(per_key_us(n, calls, &set_raw).await);
            } else {
                t[1].push(per_key_us(n, calls, &get_raw).await);
                t[0].push(per_key_us(n, calls, &get_ours).await);
                t[3].push(per_key_us(n, calls, &set_raw).await);
                t[2].push(per_key_us(n, calls, &set_ours).await);
            }
        }
        let (get_ratio, set_ratio) = (paired_ratio(&t[0], &t[1]), paired_ratio(&t[2], &t[3]));
        let m: Vec<f64> = t.iter().map(|xs| common::median(xs.clone())).collect();
        for (curve, median) in curves.iter_mut().zip(&m) {
            curve.push((n as f64, *median));
        }
        println!(
            "batch n={n:>5}: get_many {:.3} µs/key, raw MGET {:.3} (time ratio {get_ratio}); \
             set_many {:.3}, raw SET pipeline {:.3} (time ratio {set_ratio})",
            m[0], m[1], m[2], m[3]
        );
        rows.push(format!(
            "{n},{:.4},{:.4},{get_ratio},{:.4},{:.4},{set_ratio}",
            m[0], m[1], m[2], m[3]
        ));
    }
    write_csv(
        "batch",
        "keys,get_many_us_per_key,raw_mget_us_per_key,get_time_ratio,set_many_us_per_key,raw_set_pipeline_us_per_key,set_time_ratio",
        &rows,
    );
    let [get, mget, set, pipe] = <[Vec<(f64, f64)>; 4]>::try_from(curves).expect("four curves");
    plot(
        "batch",
        "RedisCache get_many / set_many: time per key (100 B values)",
        "keys per call",
        "µs per key",
        &[
            series("get_many", get),
            series("raw MGET", mget),
            series("set_many", set),
            series("raw SET pipeline", pipe),
        ],
    );
    let mut conn = raw.clone();
    let _: () = redis::cmd("FLUSHALL")
        .arg("ASYNC")
        .query_async(&mut conn)
        .await
        .expect("flush");
}

/// Median ms of `purge` of a namespace of `n` keys, for every size up to `limit`.
/// The keys are written through the cache itself (one pipeline per primary on a cluster).
async fn purge_points(cache: &RedisCache, limit: usize) -> Vec<(usize, f64)> {
    let mut points = Vec::new();
    for &n in PURGE_SIZES.iter().filter(|&&n| n <= limit) {
        let names: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let mut times = Vec::new();
        for _ in 0..PURGE_ROUNDS {
            for chunk in names.chunks(10_000) {
                let entries: Vec<(&str, u8)> = chunk.iter().map(|k| (k.as_str(), 1u8)).collect();
                cache.set_many(&entries, None).await.expect("fill");
            }
            let started = Instant::now();
            cache.purge().await.expect("purge");
            times.push(started.elapsed().as_secs_f64() * 1e3);
            let probe: Vec<&str> = names.iter().take(1_000).map(String::as_str).collect();
            let left: Vec<Option<u8>> = cache.get_many(&probe).await.expect("probe");
            assert!(left.iter().all(Option::is_none), "purge left keys behind");
        }
        points.push((n, common::median(times)));
    }
    points
}

/// Curve 2: `purge` of a namespace of `n` keys, the only keys on the server,
/// on a standalone server and (unless `CURVES_CLUSTER=0`) a 3-primary cluster.
async fn purges(server: &RedisServer) {
    let limit: usize = std::env::var("CURVES_PURGE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let connect = |config: memorix::RedisConfig| async move {
        RedisCache::builder()
            .config(config)
            .prefix("bench:purge:")
            .connect()
            .await
            .expect("connect")
    };
    let standalone = purge_points(&connect(server.config()).await, limit).await;
    let cluster = if std::env::var("CURVES_CLUSTER").as_deref() == Ok("0") {
        Vec::new()
    } else {
        let cluster = tokio::task::spawn_blocking(support::cluster::RedisCluster::start)
            .await
            .expect("start the cluster");
        let points = purge_points(&connect(cluster.config()).await, limit).await;
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .expect("stop the cluster");
        points
    };
    let mut rows = Vec::new();
    for (i, &(n, ms)) in standalone.iter().enumerate() {
        let on_cluster = cluster.get(i).map(|p| p.1);
        println!(
            "purge n={n:>7}: standalone {ms:.2} ms ({:.3} µs per key), cluster {}",
            ms * 1e3 / n as f64,
            on_cluster.map_or("-".into(), |c| format!("{c:.2} ms"))
        );
        rows.push(format!(
            "{n},{ms:.3},{:.4},{}",
            ms * 1e3 / n as f64,
            on_cluster.map_or(String::new(), |c| format!("{c:.3}"))
        ));
    }
    write_csv("purge", "keys,standalone_ms,standalone_us_per_key,cluster_ms", &rows);
    let as_f64 = |points: Vec<(usize, f64)>| points.into_iter().map(|(n, ms)| (n as f64, ms)).collect();
    let mut curves = vec![series("standalone", as_f64(standalone))];
    if !cluster.is_empty() {
        curves.push(series("cluster (3 primaries)", as_f64(cluster)));
    }
    plot(
        "purge",
        "RedisCache purge of a namespace",
        "keys in the namespace",
        "ms per purge",
        &curves,
    );
}

/// A pseudo-random visiting order of `n` entries.
fn order(n: usize, count: usize) -> Vec<usize> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        })
        .collect()
}

/// Curve 3: L1 hit time against entries held, beside moka.
fn l1_hits(server: &RedisServer, rt: &tokio::runtime::Runtime) {
    let (mut rows, mut ours_curve, mut moka_curve) = (Vec::new(), Vec::new(), Vec::new());
    for &n in &L1_SIZES {
        let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
        let cache = rt.block_on(async {
            let cache = GenericRedisCache::builder()
                .redis(server.config())
                .prefix(format!("bench:l1:{n}:"))
                .l1_cache_size(2 * n) // room to spare: every timed read is a hit
                .connect()
                .await
                .expect("connect");
            for chunk in keys.chunks(10_000) {
                let entries: Vec<(&str, u64)> = chunk.iter().enumerate().map(|(i, k)| (k.as_str(), i as u64)).collect();
                cache.set_many(&entries, None).await.expect("seed");
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let got: Vec<Option<u64>> = cache.get_many(&refs).await.expect("warm");
                assert!(got.iter().all(Option::is_some));
            }
            cache
        });
        let moka: moka::sync::Cache<String, u64> = moka::sync::Cache::new(2 * n as u64);
        for (i, key) in keys.iter().enumerate() {
            moka.insert(key.clone(), i as u64);
        }
        moka.run_pending_tasks();
        let visits = order(n, L1_GETS);
        let redis_hits = cache.stats().redis.hits;
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for round in 0..=L1_ROUNDS {
            let ours_ns = cpu_time(|| {
                let mut sum = 0u64;
                for &i in &visits {
                    let v: u64 = cache
                        .get(&keys[i])
                        .now_or_never()
                        .expect("an L1 hit completes without waiting")
                        .expect("get")
                        .expect("hit");
                    sum = sum.wrapping_add(v);
                }
                black_box(sum);
            });
            let moka_ns = cpu_time(|| {
                let mut sum = 0u64;
                for &i in &visits {
                    sum = sum.wrapping_add(moka.get(&keys[i]).expect("hit"));
                }
                black_box(sum);
            });
            if round > 0 {
                // round 0 warms up
                ours.push(ours_ns.as_nanos() as f64 / L1_GETS as f64);
                peer.push(moka_ns.as_nanos() as f64 / L1_GETS as f64);
            }
        }
        assert_eq!(cache.stats().redis.hits, redis_hits, "every timed get was an L1 hit");
        let ratio = paired_ratio(&ours, &peer);
        let (o, m) = (common::median(ours), common::median(peer));
        println!("l1 n={n:>7}: GenericRedisCache get {o:.0} ns, moka get {m:.0} ns (time ratio {ratio})");
        rows.push(format!("{n},{o:.1},{m:.1},{ratio}"));
        ours_curve.push((n as f64, o));
        moka_curve.push((n as f64, m));
        rt.block_on(async {
            let mut conn = server.raw().await;
            let _: () = redis::cmd("FLUSHALL")
                .arg("ASYNC")
                .query_async(&mut conn)
                .await
                .expect("flush");
        });
    }
    write_csv("l1_hit", "entries,generic_get_ns,moka_get_ns,time_ratio", &rows);
    plot(
        "l1_hit",
        "GenericRedisCache L1 hit vs entries held (1 thread, random keys, on-CPU)",
        "entries in L1",
        "ns per get",
        &[
            series("GenericRedisCache::get (L1 hit)", ours_curve),
            series("moka sync::Cache::get", moka_curve),
        ],
    );
}

/// Defines memoized functions and the table of them, in order.
macro_rules! memo_fns {
    ($($name:ident),* $(,)?) => {
        $(
            #[memorix::cached]
            fn $name(k: u64) -> u64 {
                k.wrapping_mul(k)
            }
        )*
        pub static MEMO_FNS: &[fn(u64) -> u64] = &[$($name),*];
    };
}

/// The memoized functions; the macro's generated helpers (key, prime,
/// invalidate) go unused here.
#[allow(dead_code)]
mod memo {
    memo_fns!(
        m00, m01, m02, m03, m04, m05, m06, m07, m08, m09, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
        m22, m23, m24, m25, m26, m27, m28, m29, m30, m31,
    );
}
use memo::MEMO_FNS;

/// Wall ns per call with `threads` threads, each calling the first `fns`
/// memoized functions in turn over their warm keys.
fn memo_round(fns: usize, threads: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut k = t * 499;
                let mut acc = 0u64;
                for call in 0..MEMO_CALLS {
                    acc = acc.wrapping_add(MEMO_FNS[call % fns](black_box(k)));
                    k = (k + 7) % MEMO_KEYS_PER_FN;
                }
                black_box(acc);
            });
        }
    });
    started.elapsed().as_nanos() as f64 / MEMO_CALLS as f64
}

/// Curve 4: memo hit time against the number of memoized functions in use.
fn memo_hits() {
    for f in MEMO_FNS {
        for k in 0..MEMO_KEYS_PER_FN {
            black_box(f(k));
        }
    }
    let counts: Vec<usize> = (0..)
        .map(|p| 1usize << p)
        .take_while(|&c| c <= MEMO_FNS.len())
        .collect();
    let (mut rows, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
    for &fns in &counts {
        let mut t = [Vec::new(), Vec::new()];
        memo_round(fns, 1);
        for _ in 0..MEMO_ROUNDS {
            t[0].push(memo_round(fns, 1));
            t[1].push(memo_round(fns, 2));
        }
        let (a, b) = (common::median(t[0].clone()), common::median(t[1].clone()));
        println!("memo fns={fns:>2}: hit {a:.1} ns (1 thread), {b:.1} ns (2 threads)");
        rows.push(format!("{fns},{a:.2},{b:.2}"));
        one.push((fns as f64, a));
        two.push((fns as f64, b));
    }
    write_csv("memo_hit", "functions,one_thread_ns,two_threads_ns", &rows);
    plot(
        "memo_hit",
        "#[memorix::cached] hit vs memoized functions in use (wall, per thread)",
        "memoized functions called in turn",
        "ns per call",
        &[series("1 thread", one), series("2 threads", two)],
    );
}

/// Curve 5: `RateLimiter::check` at 1 … 256 concurrent callers, beside raw `EVALSHA`.
async fn checks(server: &RedisServer) {
    let rate = Rate::new(1_000_000_000, Duration::from_secs(1)); // never reached: every check runs the script
    let limiter = RateLimiter::builder(rate)
        .prefix("bench:rl:")
        .store(Store::redis(server.raw().await))
        .build()
        .expect("limiter");
    let raw = server.raw().await;
    let script = Arc::new(redis::Script::new(GCRA_LUA));
    let interval_us = rate.period().as_micros() as f64 / f64::from(rate.count());
    let subjects: Arc<Vec<String>> = Arc::new((0..1024).map(|i| format!("user:{i}")).collect());
    let ours = {
        let (limiter, subjects, next) = (limiter.clone(), subjects.clone(), Arc::new(AtomicUsize::new(0)));
        common::op(move || {
            let (limiter, subjects) = (limiter.clone(), subjects.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                assert!(limiter.check(&subjects[i % 1024]).await.expect("check").allowed);
            }
        })
    };
    let peer = {
        let (script, subjects, next) = (script.clone(), subjects.clone(), Arc::new(AtomicUsize::new(0)));
        common::op(move || {
            let (script, subjects, mut conn) = (script.clone(), subjects.clone(), raw.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let reply: Vec<i64> = script
                    .key(format!("bench:peer:{}", subjects[i % 1024]))
                    .arg(interval_us)
                    .arg(rate.count())
                    .arg(1u32)
                    .arg("1")
                    .invoke_async(&mut conn)
                    .await
                    .expect("evalsha");
                assert_eq!(reply[0], 1);
            }
        })
    };
    let (mut rows, mut ours_curve, mut peer_curve) = (Vec::new(), Vec::new(), Vec::new());
    for &callers in &CALLERS {
        let per_task = (4_000 / callers).max(16);
        let paired = common::paired(CHECK_ROUNDS, callers, per_task, &[ours.clone(), peer.clone()]).await;
        // µs of wall time per check: 1 / throughput.
        let (o, p) = (1e6 / paired.median(0), 1e6 / paired.median(1));
        let ratio = paired.ratio(0, 1);
        println!("check callers={callers:>3}: {o:.2} µs per check, raw EVALSHA {p:.2} (throughput ratio {ratio})");
        rows.push(format!("{callers},{o:.3},{p:.3},{ratio}"));
        ours_curve.push((callers as f64, o));
        peer_curve.push((callers as f64, p));
    }
    write_csv(
        "ratelimit_check",
        "callers,check_us_per_call,raw_evalsha_us_per_call,throughput_ratio",
        &rows,
    );
    plot(
        "ratelimit_check",
        "RateLimiter::check vs concurrent callers (wall time / checks)",
        "concurrent callers",
        "µs per check (1 / throughput)",
        &[
            series("RateLimiter::check", ours_curve),
            series("raw EVALSHA", peer_curve),
        ],
    );
}

fn main() {
    let only = std::env::var("CURVES_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|w| w == name);
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if wanted("batch") {
        rt.block_on(batches(&server));
    }
    if wanted("purge") {
        rt.block_on(purges(&server));
    }
    if wanted("l1") {
        l1_hits(&server, &rt);
    }
    if wanted("memo") {
        memo_hits();
    }
    if wanted("ratelimit") {
        rt.block_on(checks(&server));
    }
    println!("curves written to {}", out_dir().display());
}
