//! Encryption benchmarks, one run, one JSON object:
//!
//! - `CryptRedisCache::get` of a 1 KiB value (Fernet256, RawBytes codec) at 64
//!   concurrent tasks vs raw redis-rs multiplexed `GET` of the same 1 KiB
//!   plaintext, on the same server, rounds alternated; medians and the ratio.
//!   A plain `RedisCache::get` of the same bytes is measured too, so the cost
//!   of encryption alone shows.
//! - Fernet256 encrypt / decrypt throughput in MB/s (1 KiB, 64 KiB, 1 MiB),
//!   with standard Fernet (the `fernet` crate, AES-128) as the reference.
//!
//! Run: `cargo bench --bench crypt`. Without `--bench` (as `cargo test
//! --benches` runs it) it does one short round of each, as a smoke test.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use memorix::crypto::{Fernet, Fernet256};
use memorix::prelude::*;
use memorix::{CryptRedisCache, RawBytes, RedisCache};
use redis::AsyncCommands;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::RedisServer;

const TASKS: usize = 64;
const VALUE_LEN: usize = 1024;
const KEY: &str = "bench:crypt:1k";
const RAW_KEY: &str = "bench:raw:1k";
const PLAIN_KEY: &str = "bench:plain:1k";

struct Plan {
    rounds: usize,
    ops_per_task: usize,
    cipher_time: Duration,
}

impl Plan {
    fn from_args() -> Self {
        if std::env::args().any(|a| a == "--bench") {
            Plan {
                rounds: 9,
                ops_per_task: 500,
                cipher_time: Duration::from_millis(200),
            }
        } else {
            Plan {
                rounds: 1,
                ops_per_task: 20,
                cipher_time: Duration::from_millis(5),
            }
        }
    }
}

/// One round: `TASKS` tasks doing `ops_per_task` calls each; ops per second.
async fn measure<F, Fut>(ops_per_task: usize, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::ops_per_sec(TASKS, ops_per_task, move |_| op()).await
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// MB/s (10^6 bytes) of `op` over `len`-byte inputs, median of `rounds`.
fn throughput(rounds: usize, time: Duration, len: usize, mut op: impl FnMut()) -> f64 {
    let mut results = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut iterations = 0u64;
        while started.elapsed() < time {
            for _ in 0..8 {
                op();
            }
            iterations += 8;
        }
        results.push(iterations as f64 * len as f64 / started.elapsed().as_secs_f64() / 1e6);
    }
    (common::median(results) * 10.0).round() / 10.0
}

fn cipher_throughput(plan: &Plan) -> serde_json::Value {
    let f256 = Fernet256::new(&Fernet256::generate_key().expect("key")).expect("cipher");
    let fernet = Fernet::new(&Fernet::generate_key().expect("key")).expect("cipher");
    let mut out = serde_json::Map::new();
    for (label, len) in [("1KiB", 1024usize), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let token256 = f256.encrypt(&plain).expect("encrypt");
        let token = fernet.encrypt(&plain).expect("encrypt");
        let rounds = plan.rounds.min(5);
        out.insert(
            label.to_owned(),
            serde_json::json!({
                "fernet256_encrypt_mb_per_sec": throughput(rounds, plan.cipher_time, len, || {
                    black_box(f256.encrypt(black_box(&plain)).expect("encrypt"));
                }),
                "fernet256_decrypt_mb_per_sec": throughput(rounds, plan.cipher_time, len, || {
                    black_box(f256.decrypt(black_box(&token256)).expect("decrypt"));
                }),
                "fernet_std_encrypt_mb_per_sec": throughput(rounds, plan.cipher_time, len, || {
                    black_box(fernet.encrypt(black_box(&plain)).expect("encrypt"));
                }),
                "fernet_std_decrypt_mb_per_sec": throughput(rounds, plan.cipher_time, len, || {
                    black_box(fernet.decrypt(black_box(&token)).expect("decrypt"));
                }),
            }),
        );
    }
    serde_json::Value::Object(out)
}

fn main() {
    let plan = Plan::from_args();
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let get = rt.block_on(async {
        let cache = Arc::new(
            CryptRedisCache::builder()
                .config(server.config())
                .key(&Fernet256::generate_key().expect("key"))
                .codec(RawBytes)
                .connect()
                .await
                .expect("connect"),
        );
        let value: Vec<u8> = (0..VALUE_LEN).map(|i| (i * 7 % 256) as u8).collect();
        cache
            .set(KEY, &serde_bytes::Bytes::new(&value), None)
            .await
            .expect("seed");
        let mut raw = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("raw connect");
        let _: () = raw.set(RAW_KEY, &value).await.expect("seed raw");
        let stored: Vec<u8> = raw.get(KEY).await.expect("read token");
        let plain_cache = Arc::new(
            RedisCache::builder()
                .config(server.config())
                .codec(RawBytes)
                .connect()
                .await
                .expect("connect"),
        );
        plain_cache
            .set(PLAIN_KEY, &serde_bytes::Bytes::new(&value), None)
            .await
            .expect("seed plain");

        let ours = {
            let cache = cache.clone();
            move || {
                let cache = cache.clone();
                async move {
                    let v = cache.get_bytes(KEY).await.expect("encrypted get");
                    assert_eq!(v.map(|b| b.len()), Some(VALUE_LEN));
                }
            }
        };
        let plain = move || {
            let cache = plain_cache.clone();
            async move {
                let v = cache.get_bytes(PLAIN_KEY).await.expect("plain get");
                assert_eq!(v.map(|b| b.len()), Some(VALUE_LEN));
            }
        };
        let peer = move || {
            let mut conn = raw.clone();
            async move {
                let v: Option<Vec<u8>> = conn.get(RAW_KEY).await.expect("raw get");
                assert_eq!(v.map(|b| b.len()), Some(VALUE_LEN));
            }
        };

        // Warm up both, then alternate rounds so drift hits both sides alike.
        measure(plan.ops_per_task, ours.clone()).await;
        measure(plan.ops_per_task, peer.clone()).await;
        measure(plan.ops_per_task, plain.clone()).await;
        let (mut ours_ops, mut peer_ops, mut plain_ops) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.rounds {
            ours_ops.push(measure(plan.ops_per_task, ours.clone()).await);
            peer_ops.push(measure(plan.ops_per_task, peer.clone()).await);
            plain_ops.push(measure(plan.ops_per_task, plain.clone()).await);
        }
        let (ours_median, peer_median, plain_median) = (
            common::median(ours_ops),
            common::median(peer_ops),
            common::median(plain_ops),
        );
        serde_json::json!({
            "tasks": TASKS,
            "value_bytes": VALUE_LEN,
            "stored_token_bytes": stored.len(),
            "rounds": plan.rounds,
            "ops_per_round": TASKS * plan.ops_per_task,
            "memorix_crypt_get_ops_per_sec_median": ours_median.round(),
            "raw_redis_rs_get_ops_per_sec_median": peer_median.round(),
            "memorix_plain_redis_cache_get_ops_per_sec_median": plain_median.round(),
            "ratio_memorix_over_raw": round3(ours_median / peer_median),
            "ratio_crypt_over_plain_redis_cache": round3(ours_median / plain_median),
            "target_ratio": 0.85
        })
    });
    let ciphers = cipher_throughput(&plan);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "bench": "crypt",
            "mode": if plan.rounds > 1 { "full" } else { "smoke" },
            "crypt_get_1k_64_tasks": get,
            "cipher_throughput": ciphers,
        }))
        .expect("json")
    );
}
