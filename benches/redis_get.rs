//! `RedisCache::get` of a 1 KiB value vs raw redis-rs multiplexed GET of the
//! same bytes, 64 concurrent tasks, in the same run against the same server.
//!
//! Run: `cargo bench --bench redis_get`. Prints one JSON object.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use memorix::prelude::*;
use memorix::RedisCache;
use redis::AsyncCommands;
use std::sync::Arc;
use support::RedisServer;

const TASKS: usize = 64;
const OPS_PER_TASK: usize = 250;
const ROUNDS: usize = 21;
const KEY: &str = "bench:1k";

/// One round: `TASKS` tasks doing `OPS_PER_TASK` calls each; ops per second.
async fn measure<F, Fut>(op: &F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = op.clone();
    common::ops_per_sec(TASKS, OPS_PER_TASK, move |_| op()).await
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cache = Arc::new(RedisCache::connect(server.config()).await.expect("connect"));
        let value = serde_bytes::ByteBuf::from(vec![0xABu8; 1024]);
        cache.set(KEY, &value, None).await.expect("seed");
        let raw = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("raw connect");

        let ours = {
            let cache = cache.clone();
            move || {
                let cache = cache.clone();
                async move {
                    let v: Option<serde_bytes::ByteBuf> = cache.get(KEY).await.expect("get");
                    assert_eq!(v.map(|b| b.len()), Some(1024));
                }
            }
        };
        let peer = move || {
            let mut conn = raw.clone();
            async move {
                let v: Option<Vec<u8>> = conn.get(KEY).await.expect("raw get");
                assert!(v.is_some_and(|b| b.len() > 1024));
            }
        };

        // Warm up both, then alternate rounds so drift hits both sides alike.
        measure(&ours).await;
        measure(&peer).await;
        // Each round measures both sides back to back (in alternating order), and
        // the ratio is taken per round: load from other processes drifts slowly,
        // so it cancels within a pair, and the median drops the noisy pairs.
        let (mut ours_ops, mut peer_ops, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (o, p) = if round % 2 == 0 {
                let o = measure(&ours).await;
                (o, measure(&peer).await)
            } else {
                let p = measure(&peer).await;
                (measure(&ours).await, p)
            };
            ours_ops.push(o);
            peer_ops.push(p);
            ratios.push(o / p);
        }
        let (ours_median, peer_median, ratio) = (
            common::median(ours_ops),
            common::median(peer_ops),
            common::median(ratios),
        );
        println!(
            "{}",
            serde_json::json!({
                "bench": "redis_get_1k_64_tasks",
                "rounds": ROUNDS,
                "ops_per_round": TASKS * OPS_PER_TASK,
                "memorix_redis_cache_get_ops_per_sec_median": ours_median.round(),
                "raw_redis_rs_get_ops_per_sec_median": peer_median.round(),
                "ratio_memorix_over_raw_median_of_pairs": (ratio * 1000.0).round() / 1000.0,
                "target_ratio": 0.95
            })
        );
    });
}
