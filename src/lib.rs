//! # memorix
//!
//! Caching for Rust services: one asynchronous [`Cache`] API over Redis, memory
//! or nothing; encrypted and two-tier engines; and attribute macros for
//! cache-aside memoization.
//!
//! This facade re-exports [`memorix_runtime`] (everything that runs) and
//! `memorix_macros` (the attributes).
//!
//! ```
//! use memorix::prelude::*;
//! use memorix::MemoryCache;
//! use std::time::Duration;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cache = MemoryCache::new(10_000);
//! cache.set("user:1", &("Ada", 36), Some(Duration::from_secs(60))).await?;
//! let user: Option<(String, u32)> = cache.get("user:1").await?;
//! assert_eq!(user, Some(("Ada".to_owned(), 36)));
//! # Ok::<_, memorix::CacheError>(())
//! # }).unwrap();
//! ```
//!
//! Memoization is one attribute; with no setup the values live in an embedded
//! in-memory cache (`memorix::init` / `memorix::register` choose others, and
//! `memorix::init_from_env` wires Redis, the encrypted engine and the rate
//! limiter from `REDIS_URL` / `MEMORIX_ENCRYPTION_KEY`). Keys start with the
//! namespace `memorix:`; the attributes' options, their defaults and the rule
//! for derived keys are listed on [`cached`](macro@cached) and in the README:
//!
//! ```
//! use memorix::cached;
//!
//! #[cached(ttl = "5m", key = "square:{n}")]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! assert_eq!(square(12), 144); // runs the body
//! assert_eq!(square(12), 144); // served from the cache
//! assert_eq!(square_cache_key(12), "memorix:square:12"); // the default namespace, then the key
//! assert!(square_invalidate(12)?);
//! # Ok::<_, memorix::CacheError>(())
//! ```

pub use memorix_macros::*;
pub use memorix_runtime::*;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
