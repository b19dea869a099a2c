//! Memoized-call hit path: memorix `#[cached]` vs the `cached` crate's
//! `#[cached]` vs a moka `get`, same workload, same run.
//!
//! Workload: 10 000 distinct `u64` keys, all warm; 2 threads each make
//! `OPS` calls striding through the keys (every side gets the same threads,
//! keys, stride and `black_box`). Reported: per-call nanoseconds (wall time /
//! calls per thread), median of `ROUNDS` rounds; the sides run back to back in
//! each round, in alternating order, and the ratios are medians of the
//! per-round (paired) ratios, which other load on the machine moves less than
//! the absolute numbers. The same pairing on one thread shows the cost of a
//! hit without contention. Also a stampede check: 1000 concurrent callers of
//! a cold key, counting body executions.
//!
//! Misses: one thread, `MISSES` distinct keys never seen before in each round
//! (every round starts past the keys of the previous ones), trivial bodies, on
//! the zero-setup in-memory cache: memorix `#[cached]` on a plain `fn` and on
//! an `async fn` (awaited in a loop on a current-thread runtime), the `cached`
//! crate's `#[cached]`, and a moka `get` + `insert` of a `String` key. Paired
//! rounds as above; ratios are memorix over each peer.
//!
//! Run: `cargo bench --bench memo` (prints JSON); `MEMO_BENCH=miss` runs only
//! the miss rows.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};
mod common;

const KEYS: u64 = 10_000;
const THREADS: u64 = 2;
const OPS: u64 = 2_000_000;
const ROUNDS: usize = 9;
const MISSES: u64 = 20_000;

#[memorix::cached]
fn memorix_square(k: u64) -> u64 {
    k.wrapping_mul(k)
}

#[cached::proc_macro::cached]
fn cached_square(k: u64) -> u64 {
    k.wrapping_mul(k)
}

static MOKA: std::sync::LazyLock<moka::sync::Cache<u64, u64>> =
    std::sync::LazyLock::new(|| moka::sync::Cache::new(KEYS * 2));

fn moka_square(k: u64) -> u64 {
    if let Some(v) = MOKA.get(&k) {
        return v;
    }
    let v = k.wrapping_mul(k);
    MOKA.insert(k, v);
    v
}

/// Wall time per call of `f` with `threads` threads over the warm key set.
fn per_call_ns(f: fn(u64) -> u64, threads: u64) -> f64 {
    for k in 0..KEYS {
        black_box(f(k));
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut k = t * 4_999;
                let mut acc = 0u64;
                for _ in 0..OPS {
                    acc = acc.wrapping_add(f(black_box(k)));
                    k = (k + 7_919) % KEYS;
                }
                black_box(acc);
            });
        }
    });
    start.elapsed().as_nanos() as f64 / OPS as f64
}

#[memorix::cached]
fn memorix_miss(k: u64) -> u64 {
    k.wrapping_mul(k)
}

#[memorix::cached]
async fn memorix_miss_async(k: u64) -> u64 {
    k.wrapping_mul(k)
}

#[cached::proc_macro::cached]
fn cached_miss(k: u64) -> u64 {
    k.wrapping_mul(k)
}

static MOKA_MISS: std::sync::LazyLock<moka::sync::Cache<String, u64>> =
    std::sync::LazyLock::new(|| moka::sync::Cache::new(100_000));

fn moka_miss(k: u64) -> u64 {
    let key = k.to_string();
    if let Some(v) = MOKA_MISS.get(&key) {
        return v;
    }
    let v = k.wrapping_mul(k);
    MOKA_MISS.insert(key, v);
    v
}

/// Nanoseconds per call of `f` over `MISSES` keys from `base` on, none seen before.
fn miss_ns(f: fn(u64) -> u64, base: u64) -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    for k in base..base + MISSES {
        acc = acc.wrapping_add(f(black_box(k)));
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / MISSES as f64
}

/// [`miss_ns`] of the async memoized function, awaited in a loop on a
/// current-thread runtime (the runtime's own cost is outside the loop).
fn async_miss_ns(base: u64) -> f64 {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
    }
    RT.with(|rt| {
        rt.block_on(async {
            let start = Instant::now();
            let mut acc = 0u64;
            for k in base..base + MISSES {
                acc = acc.wrapping_add(memorix_miss_async(black_box(k)).await);
            }
            black_box(acc);
            start.elapsed().as_nanos() as f64 / MISSES as f64
        })
    })
}

/// Miss rows, paired: memorix sync, memorix async, `cached`, moka; per-round ns / call.
fn misses() -> Vec<Vec<f64>> {
    let sides: [fn(u64) -> f64; 4] = [
        |base| miss_ns(memorix_miss, base),
        async_miss_ns,
        |base| miss_ns(cached_miss, base),
        |base| miss_ns(moka_miss, base),
    ];
    let mut out = vec![Vec::with_capacity(ROUNDS); sides.len()];
    for round in 0..ROUNDS {
        for i in 0..sides.len() {
            let side = (round + i) % sides.len();
            let base = (round * sides.len() + i) as u64 * MISSES;
            out[side].push(sides[side](base));
        }
    }
    out
}

static STAMPEDE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memorix::cached(ttl = 60)]
async fn stampede(id: u32) -> u32 {
    STAMPEDE_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    id
}

/// Runs `sides` back to back for `ROUNDS` rounds (rotating which goes first)
/// and returns each side's per-round ns / call.
fn paired(sides: &[fn(u64) -> u64], threads: u64) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::with_capacity(ROUNDS); sides.len()];
    for round in 0..ROUNDS {
        for i in 0..sides.len() {
            let side = (round + i) % sides.len();
            out[side].push(per_call_ns(sides[side], threads));
        }
    }
    out
}

/// Median over rounds of `a[round] / b[round]`.
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    common::median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

fn miss_report() -> serde_json::Value {
    let miss = misses();
    let med = |i: usize| common::median(miss[i].clone());
    serde_json::json!({
        "workload": { "distinct_keys_per_round": MISSES, "threads": 1, "rounds": ROUNDS },
        "median_ns_per_miss": {
            "memorix_cached_fn": med(0),
            "memorix_cached_async_fn": med(1),
            "cached_crate": med(2),
            "moka_get_insert_string_key": med(3),
        },
        "ratios": {
            "memorix_fn_over_cached_crate": paired_ratio(&miss[0], &miss[2]),
            "memorix_async_fn_over_cached_crate": paired_ratio(&miss[1], &miss[2]),
            "memorix_fn_over_moka": paired_ratio(&miss[0], &miss[3]),
            "memorix_async_fn_over_moka": paired_ratio(&miss[1], &miss[3]),
        },
        "targets_ns": { "memorix_async_fn_at_most": 1000, "memorix_fn_at_most": 1500 },
        "rounds_ns_per_miss": {
            "memorix_cached_fn": miss[0],
            "memorix_cached_async_fn": miss[1],
            "cached_crate": miss[2],
            "moka": miss[3],
        },
    })
}

fn main() {
    if std::env::var("MEMO_BENCH").as_deref() == Ok("miss") {
        let report = serde_json::json!({ "bench": "memo", "miss": miss_report() });
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
        return;
    }
    let miss = miss_report();
    let sides: [fn(u64) -> u64; 3] = [memorix_square, cached_square, moka_square];
    let two = paired(&sides, THREADS);
    let one = paired(&sides[..2], 1);
    let (m, c, k) = (
        common::median(two[0].clone()),
        common::median(two[1].clone()),
        common::median(two[2].clone()),
    );
    let (m1, c1) = (common::median(one[0].clone()), common::median(one[1].clone()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stampede_runs = runtime.block_on(async {
        let callers: Vec<_> = (0..1000).map(|_| tokio::spawn(stampede(7))).collect();
        for caller in callers {
            assert_eq!(caller.await.expect("caller"), 7);
        }
        STAMPEDE_RUNS.load(SeqCst)
    });

    let report = serde_json::json!({
        "bench": "memo",
        "workload": { "keys": KEYS, "threads": THREADS, "calls_per_thread": OPS, "rounds": ROUNDS },
        "median_ns_per_call": {
            "memorix_cached_hit": m,
            "cached_crate_hit": c,
            "moka_get": k,
        },
        "ratios": {
            "memorix_over_cached_crate": paired_ratio(&two[0], &two[1]),
            "moka_over_memorix": paired_ratio(&two[2], &two[0]),
        },
        "one_thread": {
            "median_ns_per_call": { "memorix_cached_hit": m1, "cached_crate_hit": c1 },
            "memorix_over_cached_crate": paired_ratio(&one[0], &one[1]),
        },
        "rounds_ns_per_call": {
            "memorix_cached_hit": two[0],
            "cached_crate_hit": two[1],
            "one_thread_memorix": one[0],
            "one_thread_cached_crate": one[1],
        },
        "targets": { "memorix_over_cached_crate_at_most": 1.2, "moka_over_memorix_at_least": 2.0 },
        "stampede": { "callers": 1000, "body_executions": stampede_runs },
        "miss": miss,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
