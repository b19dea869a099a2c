//! Shared test fixtures: real `redis-server` processes on free loopback ports.
//!
//! Each test file pulls this in with `mod support;`. Not every file uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod cluster;
pub mod pki;
pub mod redis_server;
pub mod sentinel;

pub use redis_server::RedisServer;

/// A unique key prefix per test, so tests sharing one server never collide.
pub fn unique_prefix(test: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t:{test}:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// After a failover: writes `value` under `key` and reads it back until a
/// round succeeds. Every failed round must be an availability error, and the
/// cache must serve again within 15 s. Prints the time taken and returns the
/// number of failed rounds; `what` names the scenario in messages.
pub async fn wait_until_served(cache: &memorix::RedisCache, key: &str, value: u32, what: &str) -> u32 {
    let started = std::time::Instant::now();
    let mut failures = 0u32;
    loop {
        let round = async {
            cache.set(key, &value, None).await?;
            cache.get::<u32>(key).await
        };
        match round.await {
            Ok(Some(read)) if read == value => break,
            Ok(other) => panic!("{what}: {key} read back as {other:?}"),
            Err(err) => {
                assert!(err.is_unavailable(), "a dead primary is an availability error: {err}");
                failures += 1;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{what}: cache did not serve again within 15 s ({failures} failed rounds)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let recovered = started.elapsed();
    eprintln!("{what}: cache served again {recovered:?} after the primary was killed ({failures} failed rounds)");
    failures
}

/// Polls `ok` every 5 ms until it holds, failing the test after `limit`;
/// returns how long it took. For conditions no event announces (a value
/// reaching another instance's L1, a breaker closing).
pub async fn wait_until(what: &str, limit: std::time::Duration, mut ok: impl FnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    started.elapsed()
}
