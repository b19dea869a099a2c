//! The synchronous API on one thread: `BlockingCache` get / set of a 100-byte
//! value on a `RedisCache` vs redis-rs's own blocking connection `GET` /
//! `SET .. PX` of the same bytes, same server, same run.
//!
//! Each round runs every side for `OPS` calls back to back (rotating which
//! goes first); ratios are per round, and the medians are printed, so load
//! from other processes cancels within a round.
//!
//! Run: `cargo bench --bench blocking`. Prints one JSON object.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use memorix::{BlockingCache, RedisCache};
use serde_bytes::ByteBuf;
use std::time::{Duration, Instant};
use support::RedisServer;

const ROUNDS: usize = 9;
const OPS: usize = 2_000;
const VALUE_LEN: usize = 100;
const TTL: Duration = Duration::from_secs(60);

type Side<'a> = Box<dyn FnMut(usize) + 'a>;

/// Microseconds per call of each side, and each side's per-round ratio of
/// speed to side 0 (speed = 1 / time), as medians over the rounds.
fn paired(sides: &mut [Side<'_>]) -> (Vec<f64>, Vec<f64>) {
    for side in sides.iter_mut() {
        (0..OPS / 4).for_each(&mut *side); // warm up
    }
    let mut micros = vec![Vec::new(); sides.len()];
    let mut ratios = vec![Vec::new(); sides.len()];
    for round in 0..ROUNDS {
        let mut this = vec![0.0; sides.len()];
        for k in 0..sides.len() {
            let index = (round + k) % sides.len();
            let started = Instant::now();
            (0..OPS).for_each(&mut sides[index]);
            this[index] = started.elapsed().as_secs_f64() * 1e6 / OPS as f64;
        }
        for (index, us) in this.iter().enumerate() {
            micros[index].push(*us);
            ratios[index].push(this[0] / us);
        }
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    (
        micros.into_iter().map(|m| round(common::median(m))).collect(),
        ratios.into_iter().map(|r| round(common::median(r))).collect(),
    )
}

fn main() {
    let server = RedisServer::start();
    let config = server.config();
    let cache = BlockingCache::connect(move || RedisCache::connect(config)).expect("connect");
    let mut raw = server.client().get_connection().expect("blocking connection");
    let value = ByteBuf::from(vec![0x5Au8; VALUE_LEN]);
    let encoded = rmp_serde_bytes(&value);
    cache.set("bench:sync:get", &value, Some(TTL)).expect("seed");
    let _: () = redis::cmd("SET")
        .arg("bench:raw:get")
        .arg(&encoded)
        .query(&mut raw)
        .expect("seed raw");
    let raw = std::cell::RefCell::new(raw);

    let (get_us, get_ratio) = paired(&mut [
        Box::new(|_| {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg("bench:raw:get")
                .query(&mut *raw.borrow_mut())
                .expect("raw get");
            assert!(v.is_some());
        }),
        Box::new(|_| {
            let v: Option<ByteBuf> = cache.get("bench:sync:get").expect("get");
            assert_eq!(v.map(|v| v.len()), Some(VALUE_LEN));
        }),
    ]);
    let (set_us, set_ratio) = paired(&mut [
        Box::new(|i| {
            let _: () = redis::cmd("SET")
                .arg(format!("bench:raw:set:{}", i % 1024))
                .arg(&encoded)
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .query(&mut *raw.borrow_mut())
                .expect("raw set");
        }),
        Box::new(|i| {
            cache
                .set(&format!("bench:sync:set:{}", i % 1024), &value, Some(TTL))
                .expect("set");
        }),
    ]);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "bench": "blocking_one_thread_100b",
            "rounds": ROUNDS,
            "calls_per_round": OPS,
            "get": {
                "redis_rs_blocking_us": get_us[0],
                "blocking_cache_us": get_us[1],
                "blocking_cache_over_redis_rs": get_ratio[1],
            },
            "set_px": {
                "redis_rs_blocking_us": set_us[0],
                "blocking_cache_us": set_us[1],
                "blocking_cache_over_redis_rs": set_ratio[1],
            },
            "target_ratio": 0.8,
        }))
        .expect("json")
    );
}

/// The bytes `BlockingCache::set` stores for `value` (MessagePack), so both
/// sides move the same payload.
fn rmp_serde_bytes(value: &ByteBuf) -> Vec<u8> {
    memorix::encode(&memorix::MsgPack, value).expect("encode")
}
