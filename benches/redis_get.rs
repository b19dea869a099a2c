//! `RedisCache::get` of a 1 KiB value vs raw redis-rs multiplexed GET of the
//! same bytes, 64 concurrent tasks, in the same run against the same server.
//!
//! Two more sides locate any gap: a raw redis-rs GET through memorix's
//! default connection (`ReconnectingConnection`, no cache layer: the cost of
//! the connection), and `RedisCache` over a plain `MultiplexedConnection`
//! (no reconnect logic: the cost of the cache layer). Every side has its own
//! socket, as the default `RedisCache` does.
//!
//! Writes too: `RedisCache::set` of the same 1 KiB value with a TTL vs raw
//! redis-rs `SET key value PX ttl` of the bytes it stores, 64 tasks, paired
//! rounds (keys cycle through 1024 names per side).
//!
//! Run: `cargo bench --bench redis_get`. Prints one JSON object.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use memorix::{RedisCache, RedisConnection};
use redis::AsyncCommands;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use support::RedisServer;

const TASKS: usize = 64;
const OPS_PER_TASK: usize = 250;
const ROUNDS: usize = 21;
const KEY: &str = "bench:1k";

type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One round: `TASKS` tasks doing `OPS_PER_TASK` calls each; ops per second.
async fn measure(op: &Op) -> f64 {
    let op = op.clone();
    common::ops_per_sec(TASKS, OPS_PER_TASK, move |_| op()).await
}

fn cache_get(cache: Arc<RedisCache>) -> Op {
    Arc::new(move || {
        let cache = cache.clone();
        Box::pin(async move {
            let v: Option<serde_bytes::ByteBuf> = cache.get(KEY).await.expect("get");
            assert_eq!(v.map(|b| b.len()), Some(1024));
        })
    })
}

fn raw_get<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static>(conn: C) -> Op {
    Arc::new(move || {
        let mut conn = conn.clone();
        Box::pin(async move {
            let v: Option<Vec<u8>> = conn.get(KEY).await.expect("raw get");
            assert!(v.is_some_and(|b| b.len() > 1024));
        })
    })
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
        let default_conn = match cache.client().expect("client") {
            RedisConnection::Reconnecting(conn) => conn,
            other => panic!("expected the default reconnecting connection, got {other:?}"),
        };
        // The connection the diagnostic side reads through: its own socket.
        let reconnecting = memorix::ReconnectingConnection::open(&server.config())
            .await
            .expect("connect");
        assert_eq!(format!("{default_conn:?}"), format!("{reconnecting:?}"));
        let plain = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("plain connect");
        let cache_on_plain = Arc::new(RedisCache::with_connection(plain).await.expect("wrap"));

        // memorix, raw, raw through ReconnectingConnection, RedisCache on plain.
        let sides = [
            cache_get(cache),
            raw_get(raw),
            raw_get(reconnecting),
            cache_get(cache_on_plain),
        ];
        for side in &sides {
            measure(side).await; // warm up
        }
        // Each round measures every side back to back (in rotating order), and
        // the ratios are taken per round: load from other processes drifts
        // slowly, so it cancels within a round, and the median drops the noisy
        // rounds.
        let mut ops = vec![Vec::new(); sides.len()];
        let mut ratios = vec![Vec::new(); sides.len()];
        for round in 0..ROUNDS {
            let mut this = [0.0; 4];
            for k in 0..sides.len() {
                let side = (round + k) % sides.len();
                this[side] = measure(&sides[side]).await;
            }
            for side in 0..sides.len() {
                ops[side].push(this[side]);
                ratios[side].push(this[side] / this[1]);
            }
        }
        let writes = write_ratios(&server, &value).await;
        let median = |xs: &Vec<f64>| common::median(xs.clone());
        let ratio = |side: usize| (median(&ratios[side]) * 1000.0).round() / 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "bench": "redis_get_1k_64_tasks",
                "rounds": ROUNDS,
                "ops_per_round": TASKS * OPS_PER_TASK,
                "memorix_redis_cache_get_ops_per_sec_median": median(&ops[0]).round(),
                "raw_redis_rs_get_ops_per_sec_median": median(&ops[1]).round(),
                "ratio_memorix_over_raw_median_of_pairs": ratio(0),
                "target_ratio": 0.95,
                "diagnostic_raw_get_via_reconnecting_connection_over_raw": ratio(2),
                "diagnostic_redis_cache_on_plain_multiplexed_over_raw": ratio(3),
                "set_px_1k_64_tasks": writes,
            })
        );
    });
}

const WRITE_KEYS: usize = 1024;
const WRITE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Key `i` of a side's `WRITE_KEYS` names, round robin.
fn write_key(keys: &[String], counter: &std::sync::atomic::AtomicUsize) -> String {
    keys[counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % WRITE_KEYS].clone()
}

/// `RedisCache::set` vs raw `SET .. PX` of the bytes it stores, paired rounds.
async fn write_ratios(server: &RedisServer, value: &serde_bytes::ByteBuf) -> serde_json::Value {
    let cache = Arc::new(RedisCache::connect(server.config()).await.expect("connect"));
    let raw = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connect");
    let stored = Arc::new(memorix::encode(&memorix::MsgPack, value).expect("encode"));
    let names = |side: &str| Arc::new((0..WRITE_KEYS).map(|i| format!("bench:{side}:{i}")).collect::<Vec<_>>());
    let (raw_keys, cache_keys) = (names("rawset"), names("set"));
    let (raw_counter, cache_counter) = (Arc::new(Default::default()), Arc::new(Default::default()));
    let value = Arc::new(value.clone());
    let sides = [
        common::op(move || {
            let (mut conn, key, stored) = (raw.clone(), write_key(&raw_keys, &raw_counter), stored.clone());
            async move {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(stored.as_slice())
                    .arg("PX")
                    .arg(WRITE_TTL.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .expect("raw set");
            }
        }),
        common::op(move || {
            let (cache, key, value) = (cache.clone(), write_key(&cache_keys, &cache_counter), value.clone());
            async move {
                cache.set(&key, &*value, Some(WRITE_TTL)).await.expect("set");
            }
        }),
    ];
    let paired = common::paired(ROUNDS, TASKS, OPS_PER_TASK, &sides).await;
    serde_json::json!({
        "raw_set_px_ops_per_sec_median": paired.median(0).round(),
        "memorix_redis_cache_set_ops_per_sec_median": paired.median(1).round(),
        "ratio_memorix_set_over_raw_median_of_pairs": paired.ratio(1, 0),
        "target_ratio": 0.9,
    })
}
