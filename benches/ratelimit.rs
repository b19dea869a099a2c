//! `RateLimiter::check` (GCRA on Redis) vs a raw redis-rs `EVALSHA` round trip
//! of the same Lua script with the same arguments, 64 concurrent tasks on one
//! multiplexed connection each, in the same run against the same server.
//! Each round runs both back to back (alternating which goes first) and
//! yields one ratio; the report gives the median of those paired ratios, which
//! a shared machine's load drift hits far less than a ratio of medians.
//!
//! A second pair measures an exhausted subject: memorix answers from its local
//! fast path, the raw script still makes the round trip.
//!
//! Run: `cargo bench --bench ratelimit`. Prints one JSON object.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use memorix::ratelimit::{Rate, RateLimiter, Store};
use std::sync::Arc;
use std::time::Duration;
use support::RedisServer;

const TASKS: usize = 64;
const OPS_PER_TASK: usize = 150;
const ROUNDS: usize = 21;
const SUBJECTS: usize = 1024;
const GCRA_LUA: &str = include_str!("../cache-runtime/src/ratelimit/scripts/gcra.lua");

/// One round: `TASKS` tasks doing `OPS_PER_TASK` calls each; ops per second.
async fn measure<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::ops_per_sec(TASKS, OPS_PER_TASK, op).await
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let subjects: Arc<Vec<String>> = Arc::new((0..SUBJECTS).map(|i| format!("user:{i}")).collect());
        // A limit no subject reaches: every check is allowed and makes the round trip.
        let rate = Rate::new(1_000_000_000, Duration::from_secs(1));
        let limiter = RateLimiter::builder(rate)
            .prefix("bench:ours:")
            .store(Store::redis(server.raw().await))
            .build()
            .expect("limiter");
        let raw = server.raw().await;
        let script = Arc::new(redis::Script::new(GCRA_LUA));
        let interval_us = rate.period().as_micros() as f64 / f64::from(rate.count());
        let burst = rate.count();

        let ours = {
            let (limiter, subjects) = (limiter.clone(), subjects.clone());
            move |i: usize| {
                let (limiter, subjects) = (limiter.clone(), subjects.clone());
                async move {
                    let d = limiter.check(&subjects[i % SUBJECTS]).await.expect("check");
                    assert!(d.allowed);
                }
            }
        };
        let peer = {
            let (script, subjects, raw) = (script.clone(), subjects.clone(), raw.clone());
            move |i: usize| {
                let (script, subjects, mut conn) = (script.clone(), subjects.clone(), raw.clone());
                async move {
                    let key = format!("bench:peer:{}", subjects[i % SUBJECTS]);
                    let reply: Vec<i64> = script
                        .key(key)
                        .arg(interval_us)
                        .arg(burst)
                        .arg(1u32)
                        .arg("1")
                        .invoke_async(&mut conn)
                        .await
                        .expect("evalsha");
                    assert_eq!(reply[0], 1);
                }
            }
        };

        // Exhausted subject: limit 1 per hour, already used.
        let tight = Rate::per_hour(1);
        let exhausted = RateLimiter::builder(tight)
            .prefix("bench:ours-denied:")
            .store(Store::redis(server.raw().await))
            .build()
            .expect("limiter");
        assert!(exhausted.check("x").await.unwrap().allowed);
        let denied_ours = {
            let exhausted = exhausted.clone();
            move |_: usize| {
                let exhausted = exhausted.clone();
                async move {
                    assert!(!exhausted.check("x").await.expect("check").allowed);
                }
            }
        };
        let tight_interval = tight.period().as_micros() as f64;
        let denied_peer = {
            let (script, raw) = (script.clone(), raw.clone());
            move |_: usize| {
                let (script, mut conn) = (script.clone(), raw.clone());
                async move {
                    let reply: Vec<i64> = script
                        .key("bench:peer-denied:x")
                        .arg(tight_interval)
                        .arg(1u32)
                        .arg(1u32)
                        .arg("1")
                        .invoke_async(&mut conn)
                        .await
                        .expect("evalsha");
                    assert_eq!(reply[0], 0, "the peer's subject is exhausted");
                }
            }
        };
        // Use up the peer's single request too.
        let first: Vec<i64> = script
            .key("bench:peer-denied:x")
            .arg(tight_interval)
            .arg(1u32)
            .arg(1u32)
            .arg("1")
            .invoke_async(&mut raw.clone())
            .await
            .expect("evalsha");
        assert_eq!(first[0], 1);
        // Warm-up: load the script, fill connection buffers.
        measure(ours.clone()).await;
        measure(peer.clone()).await;

        let (mut ours_ops, mut peer_ops, mut ratios) = (vec![], vec![], vec![]);
        let (mut ours_denied, mut peer_denied) = (vec![], vec![]);
        for round in 0..ROUNDS {
            let (o, p) = if round % 2 == 0 {
                let o = measure(ours.clone()).await;
                (o, measure(peer.clone()).await)
            } else {
                let p = measure(peer.clone()).await;
                (measure(ours.clone()).await, p)
            };
            ours_ops.push(o);
            peer_ops.push(p);
            ratios.push(o / p);
        }
        for _ in 0..3 {
            ours_denied.push(measure(denied_ours.clone()).await);
            peer_denied.push(measure(denied_peer.clone()).await);
        }
        let (ours_med, peer_med, ratio) = (
            common::median(ours_ops.clone()),
            common::median(peer_ops.clone()),
            common::median(ratios),
        );
        let (ours_denied_med, peer_denied_med) = (common::median(ours_denied), common::median(peer_denied));
        let report = serde_json::json!({
            "bench": "ratelimit",
            "tasks": TASKS,
            "ops_per_round": TASKS * OPS_PER_TASK,
            "rounds": ROUNDS,
            "allowed_check": {
                "memorix_ops_per_sec_median": ours_med.round(),
                "raw_evalsha_ops_per_sec_median": peer_med.round(),
                "ratio_median_of_paired_rounds": (ratio * 1000.0).round() / 1000.0,
                "overhead_pct": ((1.0 - ratio) * 1000.0).round() / 10.0,
                "ratio_of_medians": (ours_med / peer_med * 1000.0).round() / 1000.0,
                "memorix_rounds": ours_ops.iter().map(|x| x.round()).collect::<Vec<_>>(),
                "raw_rounds": peer_ops.iter().map(|x| x.round()).collect::<Vec<_>>(),
            },
            "exhausted_subject": {
                "memorix_local_fast_path_ops_per_sec_median": ours_denied_med.round(),
                "raw_evalsha_ops_per_sec_median": peer_denied_med.round(),
                "ratio": (ours_denied_med / peer_denied_med * 10.0).round() / 10.0,
            },
        });
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    });
}
