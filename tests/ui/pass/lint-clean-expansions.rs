//! Every shape of function under every attribute, with every companion used,
//! compiles without a single warning: generated code raises no lint.
#![deny(warnings)]
#![deny(unused_braces, unused_parens, unused_mut, unused_qualifications, unreachable_code)]

use memorix::{cache_evict, cache_put, cached, rate_limit};
use memorix::ratelimit::RateLimited;

#[cached]
fn square(n: u64) -> u64 { n * n }

#[cached(ttl = 60)]
fn unit() {}

#[cached(key = "sq:{n}")]
async fn square_async(n: u64) -> u64 { n * n }

#[cached(ttl = "5m", jitter = "10s", lock = "none")]
fn maybe(n: u32) -> Option<u32> { n.checked_sub(1) }

#[cached(cache_err, ttl = 1)]
fn fallible(n: u32) -> Result<u32, String> { Ok(n) }

#[cached(refresh_ahead = 2.0, ttl = 30, stale_if_error = 60)]
async fn refreshed(n: u32) -> Result<u32, String> { Ok(n) }

#[cached(unless = |v: &u32| *v == 0, codec = "json", compress, prefix = "p:", name = "named")]
fn filtered(n: u32) -> u32 { n }

#[cached]
fn generic<T: serde::Serialize + std::fmt::Debug>(v: T) -> String { format!("{v:?}") }

#[cached(key = "const:{n}")]
fn with_const<const N: usize>(n: u32) -> usize { N + n as usize }

struct Repo {
    id: u32,
}

impl Repo {
    #[cached(key = "{self.id}:{n}")]
    fn get(&self, n: u32) -> u32 { self.id + n }

    #[cached(key = "{self.id}:{n}")]
    async fn get_async(&self, n: u32) -> u32 { self.id + n }
}

#[cache_put(key = "sq:{n}")]
async fn put_square(n: u64) -> u64 { n * n }

#[cache_put(key = "sq:{n}", value = n * n)]
fn put_value(n: u64) -> u64 { n }

#[cache_evict(key = "sq:{n}")]
async fn evict_square(n: u64) {}

#[cache_evict(all_entries, before_invocation)]
fn evict_all() {}

#[derive(Debug)]
struct ApiError;

impl From<RateLimited> for ApiError {
    fn from(_: RateLimited) -> Self { ApiError }
}

#[rate_limit(key = "{user}", rate = "10/s")]
async fn limited(user: u32) -> Result<u32, ApiError> { Ok(user) }

async fn use_everything() -> memorix::Result<()> {
    let _: u64 = square(2);
    let _: bool = square_invalidate(2)?;
    square_prime(2, 4)?;
    let _: u64 = square_no_cache(2);
    let _: String = square_cache_key(2);
    unit();
    let _: bool = unit_invalidate()?;
    unit_prime(())?;
    unit_no_cache();
    let _: String = unit_cache_key();
    let _: u64 = square_async(2).await;
    let _: bool = square_async_invalidate(2).await?;
    square_async_prime(2, 4).await?;
    let _: u64 = square_async_no_cache(2).await;
    let _: String = square_async_cache_key(2);
    let _ = maybe(1);
    let _ = maybe_prime(1, 0)?;
    let _ = fallible(1);
    let _ = fallible_prime(1, Ok(1))?;
    let _ = refreshed(1).await;
    let _ = refreshed_prime(1, 1).await?;
    let _ = filtered(1);
    let _ = generic(1u8);
    let _ = generic_cache_key("x");
    let _ = generic_prime(1i64, String::new())?;
    let _ = with_const::<3>(1);
    let _ = with_const_cache_key::<3>(1);
    let repo = Repo { id: 1 };
    let _ = repo.get(1);
    let _ = repo.get_invalidate(1)?;
    let _ = repo.get_cache_key(1);
    let _ = repo.get_async(1).await;
    let _ = repo.get_async_prime(1, 2).await?;
    let _ = repo.get_async_no_cache(1).await;
    let _ = put_square(3).await;
    let _ = put_value(3);
    evict_square(3).await;
    evict_all();
    let _ = limited(1).await;
    Ok(())
}

fn main() {
    let _ = use_everything();
}
