//! The axum example end to end: its router served on 127.0.0.1:0, a real
//! HTTP client on loopback, a real redis-server behind the limiter.

mod support;

#[allow(dead_code)] // the example's `main` is not used here
#[path = "../examples/axum_rate_limit.rs"]
mod example;

use memorix::ratelimit::Store;
use reqwest::StatusCode;
use support::RedisServer;

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("header {name} is not a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_request_gets_429_with_correct_headers() {
    let server = RedisServer::start();
    let limiter = example::limiter(Store::connect(&server.config()).await.unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tokio::spawn(example::serve(listener, example::router(limiter)));
    let url = format!("http://{addr}/hello");
    let client = reqwest::Client::new();

    for i in 1..=100u64 {
        let response = client.get(&url).header("x-api-key", "alice").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        assert_eq!(header(&response, "ratelimit-limit"), 100);
        assert_eq!(header(&response, "ratelimit-remaining"), 100 - i);
        let reset = header(&response, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "reset {reset}");
        assert!(response.headers().get("retry-after").is_none());
        assert_eq!(response.text().await.unwrap(), "hello\n");
    }

    let limited = client.get(&url).header("x-api-key", "alice").send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "ratelimit-limit"), 100);
    assert_eq!(header(&limited, "ratelimit-remaining"), 0);
    let retry_after = header(&limited, "retry-after");
    let reset = header(&limited, "ratelimit-reset");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        reset, retry_after,
        "a fixed window resets when it lets the next request in"
    );

    // Another API key has its own allowance; a request without one is keyed by client IP.
    let bob = client.get(&url).header("x-api-key", "bob").send().await.unwrap();
    assert_eq!(bob.status(), StatusCode::OK);
    assert_eq!(header(&bob, "ratelimit-remaining"), 99);
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::OK);
    let mut raw = server.raw().await;
    let ip_count: u64 = redis::cmd("GET")
        .arg("example:rl:ip:127.0.0.1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(ip_count, 1);
    let alice_count: u64 = redis::cmd("GET")
        .arg("example:rl:key:alice")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(alice_count, 100, "denied requests are not counted");

    app.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_answers_503_or_fails_open_as_configured() {
    use memorix::ratelimit::{OnUnavailable, Rate, RateLimiter};
    let mut server = RedisServer::start();
    let config = memorix::RedisConfig::from_url(&format!(
        "{}?connect_timeout=200ms&response_timeout=200ms",
        server.url()
    ))
    .unwrap();
    let store = Store::connect(&config).await.unwrap();
    let client = reqwest::Client::new();
    let mut urls = Vec::new();
    let mut apps = Vec::new();
    for policy in [OnUnavailable::Error, OnUnavailable::Allow] {
        let limiter = RateLimiter::builder(Rate::per_minute(100))
            .store(store.clone())
            .on_unavailable(policy)
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}/hello", listener.local_addr().unwrap()));
        apps.push(tokio::spawn(example::serve(listener, example::router(limiter))));
    }
    server.stop();

    let erroring = client.get(&urls[0]).header("x-api-key", "a").send().await.unwrap();
    assert_eq!(erroring.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&erroring, "retry-after"), 1);
    let open = client.get(&urls[1]).header("x-api-key", "a").send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK, "fail-open lets the request through");
    assert_eq!(open.text().await.unwrap(), "hello\n");
    for app in apps {
        app.abort();
    }
}
