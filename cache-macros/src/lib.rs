//! Attribute macros of memorix. They expand into calls on `memorix-runtime`'s
//! hidden `__private` module; no cache logic lives here. Use them through the
//! `memorix` facade crate.
//!
//! - [`macro@cached`]: cache-aside memoization of a function, with companions
//!   `{fn}_invalidate`, `{fn}_prime`, `{fn}_no_cache` and `{fn}_cache_key`.
//! - [`macro@cache_put`]: write-through: run the function, store its result.
//! - [`macro@cache_evict`]: remove an entry (or all) when the function runs.
//!
//! Each expansion follows one pipeline: `attr` parses the options, `ast`
//! models the function, `check` applies the rules that span both, `expand`
//! generates. Every error is reported, each at the token it is about, and the
//! original function is still emitted so callers keep compiling.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;

/// Memoizes a function: the result for given arguments is cached and
/// returned on later calls (cache-aside).
///
/// ```ignore
/// #[memorix::cached(ttl = "5m", key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, DbError> { db::load(id).await }
/// ```
///
/// Options: `ttl` (seconds or `"1h30m"`), `prefix`, `name`, `key = "{a}:{b.c}"`,
/// `cache = "name" | EXPR`, `encrypt`, `compress`, `codec = "msgpack" | "json" |
/// "pickle" | "raw"`, `cache_err`, `cache_none`, `unless = FN`, `jitter`,
/// `refresh_ahead [= beta]`, `stale_if_error = "10m"`, `lock = "local" | "distributed" | "none"`,
/// `crate = "path"`. See the `memorix` crate documentation for each.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::Cached, args.into(), item.into()).into()
}

/// Write-through: runs the function, then stores its `Ok` / `Some` result (or
/// `value = EXPR`, evaluated before the body) under `key`.
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::CachePut, args.into(), item.into()).into()
}

/// Removes `key` (or every entry with `all_entries`) after a successful call,
/// or before the call with `before_invocation`.
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::CacheEvict, args.into(), item.into()).into()
}

mod rate_limit;

/// Rate-limits an `async fn` returning `Result<T, E>`: before the body runs,
/// the subject named by `key` is checked; over the limit the function returns
/// `Err(E::from(RateLimited { retry_after, .. }))`.
///
/// ```ignore
/// #[memorix::rate_limit(key = "{user_id}", rate = "100/m", burst = 10)]
/// async fn search(user_id: u64, q: String) -> Result<Vec<Hit>, ApiError> { ... }
/// ```
///
/// Options: `key` (required, `{arg}` placeholders), `rate` (required, `"100/m"`),
/// `burst` (GCRA only), `algorithm = "gcra" | "fixed_window" | "sliding_window"`,
/// `store = "name"` (see `memorix::ratelimit::register_store`), `crate = "path"`.
#[proc_macro_attribute]
pub fn rate_limit(args: proc_macro::TokenStream, item: proc_macro::TokenStream) -> proc_macro::TokenStream {
    rate_limit::rate_limit(args.into(), item.into()).into()
}
