//! Encryption benchmarks, one run, one JSON object:
//!
//! - `CryptRedisCache` reads of a 1 KiB value (Fernet256) at 64 concurrent
//!   tasks vs raw redis-rs multiplexed `GET` of the same 1 KiB plaintext and
//!   a plain `RedisCache` read of it, on the same server, in paired rounds
//!   (every side once per round, rotating order; ratios taken within a round,
//!   medians printed): `get_bytes` and typed `get` with the `RawBytes` codec,
//!   and typed `get` with the default `Pickle` codec.
//! - Fernet256 encrypt / decrypt throughput in MB/s (1 KiB, 64 KiB, 1 MiB),
//!   with standard Fernet (the `fernet` crate, AES-128) beside it, and the
//!   primitives' own speed on the same bytes in the same run: HMAC-SHA256 by
//!   ring and by the RustCrypto `hmac` crate, AES-256-CBC by the `aes` /
//!   `cbc` crates; "reference" adds the times of one HMAC over the token body
//!   and one AES-CBC pass (the best of ring / RustCrypto for the HMAC), the
//!   floor any Fernet256 implementation pays.
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
use serde_bytes::ByteBuf;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::RedisServer;

const TASKS: usize = 64;
const VALUE_LEN: usize = 1024;
const KEY: &str = "bench:crypt:1k";
const RAW_KEY: &str = "bench:raw:1k";
const PLAIN_KEY: &str = "bench:plain:1k";
const PICKLE_KEY: &str = "bench:pickle:1k";

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
                ops_per_task: 250,
                cipher_time: Duration::from_millis(100),
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

/// On-CPU time of the calling thread (Linux `schedstat`), so other processes
/// on the machine do not count; wall time elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

/// MB/s (10^6 bytes, on-CPU time) of `op` over `len`-byte inputs, median of `rounds`.
fn throughput(rounds: usize, time: Duration, len: usize, mut op: impl FnMut()) -> f64 {
    let mut results = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (started, cpu) = (Instant::now(), thread_cpu());
        let mut iterations = 0u64;
        while started.elapsed() < time {
            for _ in 0..8 {
                op();
            }
            iterations += 8;
        }
        let spent = thread_cpu()
            .zip(cpu)
            .map_or(started.elapsed(), |(end, start)| end - start);
        results.push(iterations as f64 * len as f64 / spent.as_secs_f64() / 1e6);
    }
    (common::median(results) * 10.0).round() / 10.0
}

/// MB/s of `len` bytes through two passes taking `a` and `b` MB/s.
fn combined(a: f64, b: f64) -> f64 {
    (1.0 / (1.0 / a + 1.0 / b) * 10.0).round() / 10.0
}

fn cipher_throughput(plan: &Plan) -> serde_json::Value {
    use aes::cipher::block_padding::Pkcs7;
    use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
    use hmac::Mac;
    let f256 = Fernet256::new(&Fernet256::generate_key().expect("key")).expect("cipher");
    let fernet = Fernet::new(&Fernet::generate_key().expect("key")).expect("cipher");
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let (aes_key, iv) = ([9u8; 32], [3u8; 16]);
    let mut out = serde_json::Map::new();
    for (label, len) in [("1KiB", 1024usize), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let token256 = f256.encrypt(&plain).expect("encrypt");
        let token = fernet.encrypt(&plain).expect("encrypt");
        // What Fernet256 MACs: version, timestamp, IV, padded ciphertext.
        let body = vec![0x81u8; 25 + (len / 16 + 1) * 16];
        let ciphertext =
            cbc::Encryptor::<aes::Aes256>::new(&aes_key.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(&plain);
        let rounds = plan.rounds.min(5);
        let run = |op: &mut dyn FnMut()| throughput(rounds, plan.cipher_time, len, op);
        let encrypt = run(&mut || {
            black_box(f256.encrypt(black_box(&plain)).expect("encrypt"));
        });
        let decrypt = run(&mut || {
            black_box(f256.decrypt(black_box(&token256)).expect("decrypt"));
        });
        let hmac_ring = run(&mut || {
            black_box(ring::hmac::sign(&ring_key, black_box(&body)));
        });
        let hmac_rustcrypto = run(&mut || {
            let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&[7u8; 32]).expect("key");
            mac.update(black_box(&body));
            black_box(mac.finalize());
        });
        let aes_encrypt = run(&mut || {
            black_box(
                cbc::Encryptor::<aes::Aes256>::new(&aes_key.into(), &iv.into())
                    .encrypt_padded_vec_mut::<Pkcs7>(black_box(&plain)),
            );
        });
        let aes_decrypt = run(&mut || {
            black_box(
                cbc::Decryptor::<aes::Aes256>::new(&aes_key.into(), &iv.into())
                    .decrypt_padded_vec_mut::<Pkcs7>(black_box(&ciphertext))
                    .expect("padding"),
            );
        });
        let hmac_best = hmac_ring.max(hmac_rustcrypto);
        let (encrypt_ref, decrypt_ref) = (combined(hmac_best, aes_encrypt), combined(hmac_best, aes_decrypt));
        out.insert(
            label.to_owned(),
            serde_json::json!({
                "fernet256_encrypt_mb_per_sec": encrypt,
                "fernet256_decrypt_mb_per_sec": decrypt,
                "reference_hmac_plus_aes_cbc_encrypt_mb_per_sec": encrypt_ref,
                "reference_hmac_plus_aes_cbc_decrypt_mb_per_sec": decrypt_ref,
                "fernet256_encrypt_over_reference": (encrypt / encrypt_ref * 1000.0).round() / 1000.0,
                "fernet256_decrypt_over_reference": (decrypt / decrypt_ref * 1000.0).round() / 1000.0,
                "hmac_sha256_ring_mb_per_sec": hmac_ring,
                "hmac_sha256_rustcrypto_mb_per_sec": hmac_rustcrypto,
                "aes256_cbc_encrypt_mb_per_sec": aes_encrypt,
                "aes256_cbc_decrypt_mb_per_sec": aes_decrypt,
                "fernet_std_encrypt_mb_per_sec": run(&mut || {
                    black_box(fernet.encrypt(black_box(&plain)).expect("encrypt"));
                }),
                "fernet_std_decrypt_mb_per_sec": run(&mut || {
                    black_box(fernet.decrypt(black_box(&token)).expect("decrypt"));
                }),
            }),
        );
    }
    serde_json::Value::Object(out)
}

/// A read of `key` on `C` answering the value's length.
type Read<C> = fn(Arc<C>, &'static str) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

/// `get_bytes` or typed `get` of `key`, checking the value's length.
fn read_side<C: Send + Sync + 'static>(cache: Arc<C>, key: &'static str, read: Read<C>) -> common::Op {
    common::op(move || {
        let cache = cache.clone();
        async move {
            assert_eq!(read(cache, key).await, VALUE_LEN);
        }
    })
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

        let pickled = Arc::new(
            CryptRedisCache::builder()
                .config(server.config())
                .key(&Fernet256::generate_key().expect("key"))
                .connect()
                .await
                .expect("connect"),
        );
        pickled
            .set(PICKLE_KEY, &serde_bytes::Bytes::new(&value), None)
            .await
            .expect("seed pickle");

        let sides = [
            common::op(move || {
                let mut conn = raw.clone();
                async move {
                    let v: Option<Vec<u8>> = conn.get(RAW_KEY).await.expect("raw get");
                    assert_eq!(v.map(|b| b.len()), Some(VALUE_LEN));
                }
            }),
            read_side(cache.clone(), KEY, |c, k| {
                Box::pin(async move { c.get_bytes(k).await.expect("get").expect("hit").len() })
            }),
            read_side(plain_cache.clone(), PLAIN_KEY, |c, k| {
                Box::pin(async move { c.get_bytes(k).await.expect("get").expect("hit").len() })
            }),
            read_side(cache, KEY, |c, k| {
                Box::pin(async move { c.get::<ByteBuf>(k).await.expect("get").expect("hit").len() })
            }),
            read_side(plain_cache, PLAIN_KEY, |c, k| {
                Box::pin(async move { c.get::<ByteBuf>(k).await.expect("get").expect("hit").len() })
            }),
            read_side(pickled, PICKLE_KEY, |c, k| {
                Box::pin(async move { c.get::<ByteBuf>(k).await.expect("get").expect("hit").len() })
            }),
        ];
        let paired = common::paired(plan.rounds, TASKS, plan.ops_per_task, &sides).await;
        serde_json::json!({
            "tasks": TASKS,
            "value_bytes": VALUE_LEN,
            "stored_token_bytes": stored.len(),
            "rounds": plan.rounds,
            "ops_per_round": TASKS * plan.ops_per_task,
            "raw_redis_rs_get_ops_per_sec_median": paired.median(0).round(),
            "crypt_get_bytes_ops_per_sec_median": paired.median(1).round(),
            "plain_get_bytes_ops_per_sec_median": paired.median(2).round(),
            "crypt_get_ops_per_sec_median": paired.median(3).round(),
            "plain_get_ops_per_sec_median": paired.median(4).round(),
            "crypt_pickle_get_ops_per_sec_median": paired.median(5).round(),
            "ratio_crypt_get_bytes_over_raw": paired.ratio(1, 0),
            "ratio_crypt_get_bytes_over_plain_get_bytes": paired.ratio(1, 2),
            "ratio_crypt_get_over_raw": paired.ratio(3, 0),
            "ratio_crypt_get_over_plain_get": paired.ratio(3, 4),
            "ratio_plain_get_over_raw": paired.ratio(4, 0),
            "ratio_crypt_pickle_get_over_raw": paired.ratio(5, 0),
            "target_ratio_over_raw": 0.75,
            "target_ratio_over_plain": 0.85,
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
