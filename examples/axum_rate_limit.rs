//! An axum server rate-limited by memorix's tower layer: 100 requests per
//! minute per API key (`x-api-key` header), or per client IP without one.
//! Over the limit the answer is `429 Too Many Requests` with `Retry-After` and
//! `RateLimit-Limit / -Remaining / -Reset` headers.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_rate_limit --features tower
//! curl -i -H 'x-api-key: demo' http://127.0.0.1:3000/hello
//! ```
//!
//! `tests/ratelimit_http.rs` serves this same router and drives it over loopback.

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use memorix::ratelimit::{Algorithm, KeyExtractor, Rate, RateLimitLayer, RateLimiter, Store};
use memorix::RedisConfig;
use std::net::SocketAddr;

/// The limiter of the example: a fixed window of 100 requests per minute,
/// keys under `example:rl:`.
pub fn limiter(store: Store) -> memorix::Result<RateLimiter> {
    RateLimiter::builder(Rate::per_minute(100))
        .algorithm(Algorithm::FixedWindow)
        .prefix("example:rl:")
        .store(store)
        .build()
}

/// The subject of a request: its API key, else the client's IP address.
pub fn subject() -> KeyExtractor {
    KeyExtractor::from_fn(|parts| {
        let api_key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        match api_key {
            Some(key) => Some(format!("key:{key}")),
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| format!("ip:{}", peer.ip())),
        }
    })
}

/// The application: `GET /hello`, every route behind the rate limit.
pub fn router(limiter: RateLimiter) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::new(limiter, subject()))
}

/// Serves `router` on `listener`, with client addresses for the IP fallback.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = match std::env::var("REDIS_URL") {
        Ok(url) => RedisConfig::from_url(&url)?,
        Err(_) => RedisConfig::default(),
    };
    let limiter = limiter(Store::connect(&config).await?)?;
    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}/hello (100 requests per minute per x-api-key or IP)");
    serve(listener, router(limiter)).await?;
    Ok(())
}
