//! Rate limiting against real redis-server processes: exactness under
//! concurrency, GCRA timing, key expiry, peek / reset, fail-open / fail-closed,
//! the in-process store and the `#[rate_limit]` attribute.

mod support;

use memorix::ratelimit::{Algorithm, OnUnavailable, Rate, RateLimiter, Store};
use memorix::RedisConfig;
use std::time::{Duration, Instant};
use support::{unique_prefix, RedisServer};

const ALGORITHMS: [Algorithm; 3] = [Algorithm::Gcra, Algorithm::FixedWindow, Algorithm::SlidingWindow];

/// A rate whose limit is 100 and which refills too slowly to matter during a test.
fn hundred_per(algorithm: Algorithm) -> Rate {
    match algorithm {
        Algorithm::Gcra => Rate::per_hour(100),
        _ => Rate::per_minute(100),
    }
}

async fn limiter(server: &RedisServer, rate: Rate, algorithm: Algorithm, prefix: &str) -> RateLimiter {
    RateLimiter::builder(rate)
        .algorithm(algorithm)
        .prefix(prefix)
        .store(Store::connect(&server.config()).await.expect("connect"))
        .build()
        .expect("build limiter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_limit_passes_under_concurrency_for_every_algorithm() {
    let server = RedisServer::start();
    for algorithm in ALGORITHMS {
        let prefix = unique_prefix("exact");
        // Four limiters, each on its own connection, like four service instances.
        let mut limiters = Vec::new();
        for _ in 0..4 {
            limiters.push(limiter(&server, hundred_per(algorithm), algorithm, &prefix).await);
        }
        let mut tasks = Vec::new();
        for limiter in &limiters {
            for _ in 0..100 {
                let limiter = limiter.clone();
                tasks.push(tokio::spawn(
                    async move { limiter.check("subject").await.expect("check") },
                ));
            }
        }
        let mut allowed = 0;
        for task in tasks {
            let decision = task.await.expect("task");
            assert_eq!(decision.limit, 100, "{algorithm:?}");
            if decision.allowed {
                allowed += 1;
            } else {
                assert!(decision.retry_after > Duration::ZERO, "{algorithm:?}: {decision:?}");
                assert_eq!(decision.remaining, 0, "{algorithm:?}");
            }
        }
        assert_eq!(allowed, 100, "{algorithm:?}: 400 attempts against a limit of 100");
        let counted: u64 = limiters.iter().map(|l| l.stats().snapshot().allowed).sum();
        assert_eq!(counted, 100, "{algorithm:?}");
        let denied: u64 = limiters.iter().map(|l| l.stats().snapshot().denied).sum();
        assert_eq!(denied, 300, "{algorithm:?}");
        // The next request is still denied, and peek agrees without consuming.
        let peek = limiters[0].peek("subject").await.unwrap();
        assert!(!peek.allowed && peek.remaining == 0, "{algorithm:?}: {peek:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_spaces_requests_and_retry_after_is_accurate() {
    let server = RedisServer::start();
    let prefix = unique_prefix("gcra");
    // 2 per second, burst 1: one request every 500 ms.
    let limiter = RateLimiter::builder(Rate::per_second(2))
        .burst(1)
        .prefix(&prefix)
        .redis(server.raw().await)
        .local_fast_path(false)
        .build()
        .unwrap();
    let interval = Duration::from_millis(500);
    let tolerance = Duration::from_millis(50);

    let started = Instant::now();
    let first = limiter.check("s").await.unwrap();
    assert!(first.allowed);
    assert_eq!((first.limit, first.remaining), (1, 0));
    assert!(
        first.reset_after <= interval && first.reset_after + tolerance >= interval,
        "{first:?}"
    );

    let denied = limiter.check("s").await.unwrap();
    // The server's clock moved by at most the time the client saw pass.
    let elapsed = started.elapsed();
    assert!(!denied.allowed);
    assert!(
        denied.retry_after <= interval && denied.retry_after + elapsed + Duration::from_millis(1) >= interval,
        "retry_after {:?} should be 500 ms minus the {elapsed:?} that passed",
        denied.retry_after
    );
    if elapsed < Duration::from_millis(20) {
        assert!(denied.retry_after + tolerance >= interval, "{denied:?}");
    }

    // Too early: still denied, and retry_after shrank by at least the time slept.
    let slept = denied.retry_after.saturating_sub(Duration::from_millis(250));
    tokio::time::sleep(slept).await;
    let early = limiter.check("s").await.unwrap();
    assert!(!early.allowed, "{early:?}");
    assert!(
        early.retry_after + slept <= denied.retry_after + Duration::from_millis(1),
        "{early:?}"
    );
    // At retry_after (plus a few ms): allowed.
    tokio::time::sleep(early.retry_after + Duration::from_millis(5)).await;
    assert!(limiter.check("s").await.unwrap().allowed);

    // Steady spacing: polling every 20 ms for ~1.3 s never lets two requests closer than 500 ms.
    let start = Instant::now();
    let mut allowed_at = Vec::new();
    while start.elapsed() < Duration::from_millis(1300) {
        if limiter.check("s").await.unwrap().allowed {
            allowed_at.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!((1..=3).contains(&allowed_at.len()), "{allowed_at:?}");
    for pair in allowed_at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap + tolerance >= interval, "gap {gap:?}");
    }
}

#[tokio::test]
async fn window_keys_expire_with_their_window() {
    let server = RedisServer::start();
    let mut raw = server.raw().await;
    for algorithm in ALGORITHMS {
        let prefix = unique_prefix("expiry");
        let limiter = limiter(&server, Rate::new(3, Duration::from_millis(600)), algorithm, &prefix).await;
        for _ in 0..3 {
            assert!(limiter.check("k").await.unwrap().allowed, "{algorithm:?}");
        }
        let denied = limiter.check("k").await.unwrap();
        assert!(!denied.allowed, "{algorithm:?}");
        assert!(
            denied.retry_after <= Duration::from_millis(600),
            "{algorithm:?}: {denied:?}"
        );
        let pttl: i64 = redis::cmd("PTTL")
            .arg(limiter.key("k"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            pttl > 0 && pttl <= 600,
            "{algorithm:?}: the key must carry its window as TTL, got {pttl}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let exists: bool = redis::cmd("EXISTS")
            .arg(limiter.key("k"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(!exists, "{algorithm:?}: the key outlived its window");
        // The local fast path has expired too: a fresh allowance.
        let fresh = limiter.check("k").await.unwrap();
        assert!(fresh.allowed && fresh.remaining == 2, "{algorithm:?}: {fresh:?}");
    }
}

#[tokio::test]
async fn check_n_peek_and_reset() {
    let server = RedisServer::start();
    for algorithm in ALGORITHMS {
        let limiter = limiter(&server, Rate::per_minute(10), algorithm, &unique_prefix("ops")).await;
        let seven = limiter.check_n("a", 7).await.unwrap();
        assert!(seven.allowed && seven.remaining == 3, "{algorithm:?}: {seven:?}");
        let four = limiter.check_n("a", 4).await.unwrap();
        assert!(!four.allowed && four.remaining == 3, "{algorithm:?}: {four:?}");
        // A denial of 4 does not stop a request of 3.
        let peek = limiter.peek("a").await.unwrap();
        assert!(peek.allowed && peek.remaining == 3, "{algorithm:?}: {peek:?}");
        assert_eq!(limiter.peek("a").await.unwrap().remaining, 3, "peek must not consume");
        assert!(limiter.check_n("a", 3).await.unwrap().allowed, "{algorithm:?}");
        assert!(!limiter.check("a").await.unwrap().allowed, "{algorithm:?}");
        // Subjects are independent.
        assert_eq!(limiter.check("b").await.unwrap().remaining, 9, "{algorithm:?}");

        limiter.reset("a").await.unwrap();
        let after = limiter.peek("a").await.unwrap();
        assert!(after.allowed && after.remaining == 10, "{algorithm:?}: {after:?}");

        let err = limiter.check_n("a", 11).await.unwrap_err();
        assert!(err.is_config() && err.to_string().contains("`n`"), "{err}");
    }
}

#[tokio::test]
async fn local_fast_path_denies_without_a_round_trip() {
    let server = RedisServer::start();
    let limiter = limiter(
        &server,
        Rate::per_minute(2),
        Algorithm::FixedWindow,
        &unique_prefix("fast"),
    )
    .await;
    assert!(limiter.check("x").await.unwrap().allowed);
    assert!(limiter.check("x").await.unwrap().allowed);
    let first_denial = limiter.check("x").await.unwrap();
    assert!(!first_denial.allowed);
    let mut raw = server.raw().await;
    let calls_before = script_calls(&mut raw).await;
    for _ in 0..20 {
        let denied = limiter.check("x").await.unwrap();
        assert!(!denied.allowed && denied.retry_after <= first_denial.retry_after);
    }
    assert_eq!(script_calls(&mut raw).await, calls_before, "denials must be local");
    let stats = limiter.stats().snapshot();
    assert_eq!((stats.allowed, stats.denied, stats.denied_locally), (2, 21, 20));
    // reset clears the local denial too.
    limiter.reset("x").await.unwrap();
    assert!(limiter.check("x").await.unwrap().allowed);
}

async fn script_calls(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(raw).await.unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn scripts_reload_after_a_script_flush() {
    let server = RedisServer::start();
    let limiter = limiter(&server, Rate::per_minute(5), Algorithm::Gcra, &unique_prefix("flush")).await;
    assert!(limiter.check("s").await.unwrap().allowed);
    let mut raw = server.raw().await;
    redis::cmd("SCRIPT").arg("FLUSH").exec_async(&mut raw).await.unwrap();
    let second = limiter.check("s").await.unwrap();
    assert!(second.allowed && second.remaining == 3, "{second:?}");
}

#[tokio::test]
async fn unreachable_redis_follows_the_policy_and_is_counted() {
    let mut server = RedisServer::start();
    let config = RedisConfig::from_url(&format!(
        "{}?connect_timeout=200ms&response_timeout=200ms",
        server.url()
    ))
    .unwrap();
    let store = Store::connect(&config).await.unwrap();
    let build = |policy| {
        RateLimiter::builder(Rate::per_minute(10))
            .prefix(unique_prefix("down"))
            .store(store.clone())
            .on_unavailable(policy)
            .unavailable_retry_after(Duration::from_secs(3))
            .build()
            .unwrap()
    };
    let open = build(OnUnavailable::Allow);
    let closed = build(OnUnavailable::Deny);
    let erroring = build(OnUnavailable::Error);
    assert!(open.check("s").await.unwrap().allowed);
    server.stop();

    let started = Instant::now();
    let allowed = open.check("s").await.unwrap();
    assert!(allowed.allowed);
    let denied = closed.check("s").await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Duration::from_secs(3));
    let err = erroring.check("s").await.unwrap_err();
    assert!(err.is_connection() || err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead server must not hang callers"
    );

    assert_eq!(open.stats().snapshot().unavailable_allowed, 1);
    assert_eq!(closed.stats().snapshot().unavailable_denied, 1);
    assert_eq!(erroring.stats().snapshot().errors, 1);
}

#[tokio::test]
async fn memory_store_uses_governor_and_null_store_allows_everything() {
    let limiter = RateLimiter::builder(Rate::per_second(5)).memory().build().unwrap();
    let started = Instant::now();
    for expected_remaining in (0..5).rev() {
        let d = limiter.check("m").await.unwrap();
        assert!(d.allowed && d.remaining == expected_remaining, "{d:?}");
    }
    let denied = limiter.check("m").await.unwrap();
    assert!(!denied.allowed);
    let elapsed = started.elapsed();
    assert!(
        denied.retry_after <= Duration::from_millis(200)
            && denied.retry_after + elapsed + Duration::from_millis(1) >= Duration::from_millis(200),
        "{denied:?} after {elapsed:?}"
    );
    assert!(limiter.check("other").await.unwrap().allowed);
    limiter.reset("m").await.unwrap();
    assert!(limiter.check("m").await.unwrap().allowed);
    assert!(limiter.peek("m").await.unwrap_err().is_config());

    let null = RateLimiter::builder(Rate::per_second(1)).null().build().unwrap();
    for _ in 0..10 {
        assert!(null.check("n").await.unwrap().allowed);
    }
}

#[test]
fn builder_rejects_bad_settings_by_name() {
    let err = RateLimiter::builder(Rate::per_second(1))
        .algorithm(Algorithm::FixedWindow)
        .burst(5)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`burst`"), "{err}");
    let err = RateLimiter::builder(Rate::per_second(1)).burst(0).build().unwrap_err();
    assert!(err.to_string().contains("`burst`"), "{err}");
    assert!("leaky".parse::<Algorithm>().unwrap_err().to_string().contains("gcra"));
    assert_eq!("sliding-window".parse::<Algorithm>().unwrap(), Algorithm::SlidingWindow);
}

mod attribute {
    use super::*;
    use memorix::ratelimit::{register_store, set_default_store, RateLimited};

    #[derive(Debug, PartialEq)]
    enum ApiError {
        TooManyRequests { retry_after: Duration },
    }

    impl From<RateLimited> for ApiError {
        fn from(limited: RateLimited) -> Self {
            ApiError::TooManyRequests {
                retry_after: limited.retry_after,
            }
        }
    }

    #[memorix::rate_limit(key = "{user_id}", rate = "3/m")]
    async fn search(user_id: u64, query: &str) -> Result<String, ApiError> {
        Ok(format!("{user_id}:{query}"))
    }

    #[memorix::rate_limit(
        key = "tenant:{tenant}:{user}",
        rate = "2/h",
        algorithm = "fixed_window",
        store = "windows"
    )]
    async fn upload(tenant: String, user: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
        Ok(user)
    }

    #[memorix::rate_limit(key = "{id}", rate = "1/h", burst = 2, store = "never-registered")]
    async fn local_only(id: u8) -> Result<u8, ApiError> {
        Ok(id)
    }

    struct Service {
        greeting: &'static str,
    }

    impl Service {
        #[memorix::rate_limit(key = "{name}", rate = "1/d", algorithm = "sliding-window", store = "windows")]
        async fn greet(&self, name: &str) -> Result<String, ApiError> {
            Ok(format!("{} {name}", self.greeting))
        }
    }

    #[tokio::test]
    async fn rate_limit_attribute_returns_rate_limited_through_from() {
        let server = RedisServer::start();
        set_default_store(Store::connect(&server.config()).await.unwrap());
        register_store("windows", Store::redis(server.raw().await));

        for _ in 0..3 {
            assert_eq!(search(7, "rust").await.unwrap(), "7:rust");
        }
        match search(7, "rust").await {
            Err(ApiError::TooManyRequests { retry_after }) => {
                // 3 per minute: the next slot opens 20 s after the first call.
                assert!(retry_after <= Duration::from_secs(20) && retry_after >= Duration::from_secs(19));
            }
            other => panic!("expected TooManyRequests, got {other:?}"),
        }
        assert!(search(8, "rust").await.is_ok(), "another subject has its own allowance");
        // The state is on the server, under the function's own prefix.
        let mut raw = server.raw().await;
        let exists: bool = redis::cmd("EXISTS")
            .arg("memorix:rl:ratelimit::attribute::search:7")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(exists);

        // A named store, fixed window, a key with two arguments and a format spec.
        assert_eq!(upload("acme".into(), 5).await.unwrap(), 5);
        assert_eq!(upload("acme".into(), 5).await.unwrap(), 5);
        let err = upload("acme".into(), 5).await.unwrap_err();
        let limited = err.downcast_ref::<RateLimited>().expect("a RateLimited inside the box");
        assert_eq!(limited.limit, 2);
        assert!(limited.retry_after_secs() > 3000 && limited.retry_after_secs() <= 3600);
        let window_key: i64 = redis::cmd("PTTL")
            .arg("memorix:rl:ratelimit::attribute::upload:tenant:acme:5")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(window_key > 0, "the fixed window key carries its window");

        // Methods work too; `&self` is untouched.
        let service = Service { greeting: "hello" };
        assert_eq!(service.greet("ada").await.unwrap(), "hello ada");
        assert!(matches!(
            service.greet("ada").await,
            Err(ApiError::TooManyRequests { .. })
        ));

        // An unregistered store falls back to the in-process limiter: still limited.
        assert_eq!(local_only(1).await.unwrap(), 1);
        assert_eq!(local_only(1).await.unwrap(), 1);
        assert!(local_only(1).await.is_err());
    }
}
