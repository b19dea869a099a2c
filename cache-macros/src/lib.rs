//! Attribute macros of memorix. They expand into calls on `memorix-runtime`'s
//! hidden `__private` module; no cache logic lives here. Use them through the
//! `memorix` facade crate.
//!
//! - [`macro@cached`]: cache-aside memoization of a function, with companions
//!   `{fn}_invalidate`, `{fn}_prime`, `{fn}_no_cache` and `{fn}_cache_key`.
//! - [`macro@cache_put`]: write-through: run the function, store its result.
//! - [`macro@cache_evict`]: remove an entry (or all) when the function runs.
//! - [`macro@rate_limit`]: check a rate limit before the body runs.
//!
//! All four share one template syntax for `key` and one pipeline: `attr` parses the options, `ast`
//! models the function, `check` applies the rules that span both, `expand`
//! generates. Every error is reported, each at the token it is about, and the
//! original function is still emitted so callers keep compiling.

mod ast;
mod attr;
mod check;
mod ctxt;
// The runtime's duration grammar, the same file compiled twice: attributes
// and `parse_duration` accept exactly the same text.
#[path = "../../cache-runtime/src/duration_grammar.rs"]
mod duration_grammar;
mod expand;

use proc_macro::TokenStream;

/// Memoizes a function: the result for given arguments is cached and
/// returned on later calls (cache-aside). Works on `fn` and `async fn`, free
/// functions and methods, generic or not.
///
/// ```ignore
/// #[memorix::cached(ttl = "5m", key = "user:{id}")]
/// async fn get_user(id: u64) -> Result<User, DbError> { db::load(id).await }
/// ```
///
/// Companions generated next to it, with the same arguments:
/// `get_user_invalidate(id)` (remove the entry), `get_user_prime(id, value)`
/// (store one), `get_user_no_cache(id)` (run the body only) and
/// `get_user_cache_key(id)` (the key).
///
/// # The key
/// Every key starts with the namespace (`"memorix:"`, or what
/// `memorix::memo::set_namespace` set), or with `prefix` when given. Without
/// `key`, the rest is derived: the function's `module_path!()::name` (or
/// `name`), then for a generic function its instantiated type and const
/// parameters (`<u8>`, from `std::any::type_name`), then every argument,
/// `:`-separated, written by a serde serializer (text over 200 bytes becomes
/// `#` and its SHA-1). With `key = "..."` the rest is the template (after a
/// generic function's type parameters). A method needs `key`, naming what
/// identifies the instance (`key = "{self.id}:{n}"`; the attribute cannot
/// see a generic `impl`'s parameters, so name them there); `&mut` arguments are
/// rejected, since a hit skips the body. The cached type must be
/// `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`; key values
/// must be `Serialize`.
///
/// # Options
/// Each option may be given once.
///
/// | Option | Default | Example | Meaning |
/// |---|---|---|---|
/// | `ttl` | no expiry | `ttl = 60`, `ttl = "1h30m"` | Freshness; a bare number is seconds; units `ms` `s` `m` `h` `d`. |
/// | `prefix` | the namespace | `prefix = "billing:"` | Replaces the namespace. |
/// | `name` | `module::fn` | `name = "users"` | Name in a derived key and in logs. |
/// | `key` | derived | `key = "user:{id}:{req.lang}"` | Template: `{arg}`, `{arg.field}`, `{self.field}`, `{pair.0}`; `{{`/`}}` escape. |
/// | `cache` | default cache | `cache = "users"`, `cache = self.cache` | A registered cache, or an expression per call. |
/// | `encrypt` | off | `encrypt` | Use the engine registered as `ENCRYPTED_CACHE` (`init_from_env` does with `MEMORIX_ENCRYPTION_KEY`). |
/// | `compress` | off | `compress` | zlib-compress stored values. |
/// | `codec` | engine's codec | `codec = "json"` | `"msgpack"`, `"json"`, `"pickle"`, `"raw"`. |
/// | `cache_err` | off | `cache_err` | Cache `Err` values too. |
/// | `cache_none` | off | `cache_none` | Cache `None` too. |
/// | `unless` | off | `unless = \|u: &User\| u.is_guest` | Skip caching results for which it returns true. |
/// | `jitter` | none | `jitter = "30s"` | Up to this much added to each TTL at random. |
/// | `refresh_ahead` | off | `refresh_ahead`, `refresh_ahead = 2.0` | Early refresh near expiry (XFetch beta, default 1.0). |
/// | `stale_if_error` | off | `stale_if_error = "10m"` | On `Err`, answer the last good value up to this long past its TTL. |
/// | `lock` | `"local"` | `lock = "distributed"` | Coalesce misses per process, across processes, or `"none"`. |
/// | `crate` | `::memorix` | `crate = "my_app::memorix"` | Path of a re-exported memorix. |
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::Cached, args.into(), item.into()).into()
}

/// Write-through: runs the function, then stores its `Ok` / `Some` result (or
/// `value = EXPR`, evaluated before the body) under `key`.
///
/// ```ignore
/// #[memorix::cache_put(key = "user:{user.id}", ttl = "5m")]
/// async fn save_user(user: User) -> Result<User, DbError> { db::save(user).await }
/// ```
///
/// Options (each at most once): `key` (required; template as in
/// [`macro@cached`]), `ttl` (default: no expiry, `ttl = "5m"`), `prefix`
/// (default: the namespace), `name`, `value = EXPR` (default: the result),
/// `cache` (default cache), `encrypt`, `compress`, `codec` (engine's codec),
/// `jitter`, `crate` (`::memorix`) — each as in [`macro@cached`].
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::CachePut, args.into(), item.into()).into()
}

/// Removes `key` (or every entry with `all_entries`) after a successful call,
/// or before the call with `before_invocation`.
///
/// ```ignore
/// #[memorix::cache_evict(key = "user:{id}")]
/// async fn delete_user(id: u64) -> Result<(), DbError> { db::delete(id).await }
/// ```
///
/// Options (each at most once): `key` (required unless `all_entries`),
/// `all_entries` (off), `before_invocation` (off: evict after an `Ok` call),
/// `prefix`, `name`, `cache`, `encrypt`, `crate` — each as in [`macro@cached`].
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::CacheEvict, args.into(), item.into()).into()
}

/// Rate-limits an `async fn` returning `Result<T, E>`: before the body runs,
/// the subject named by `key` is checked; over the limit the function returns
/// `Err(E::from(RateLimited { retry_after, .. }))`.
///
/// ```ignore
/// #[memorix::rate_limit(key = "{user_id}", rate = "100/m", burst = 10)]
/// async fn search(user_id: u64, q: String) -> Result<Vec<Hit>, ApiError> { ... }
/// ```
///
/// Options (each at most once):
///
/// | Option | Default | Example | Meaning |
/// |---|---|---|---|
/// | `key` | required | `key = "{user.id}"` | The subject; the template syntax of [`macro@cached`]. |
/// | `rate` | required | `rate = "100/m"`, `rate = "5/30s"` | `<count>/<period>`, checked at compile time. |
/// | `burst` | the rate's count | `burst = 10` | Requests that may arrive at once (GCRA only). |
/// | `algorithm` | `"gcra"` | `algorithm = "sliding_window"` | `"gcra"`, `"fixed_window"`, `"sliding_window"`. |
/// | `store` | default store | `store = "api"` | A store from `memorix::ratelimit::register_store`. |
/// | `crate` | `::memorix` | `crate = "my_app::memorix"` | Path of a re-exported memorix. |
///
/// The store is looked up on each call: one registered after the first call
/// (`set_default_store`, or `memorix::init_from_env` with `REDIS_URL`) takes
/// over from then on. With none, limits are per process (logged once).
#[proc_macro_attribute]
pub fn rate_limit(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(attr::Kind::RateLimit, args.into(), item.into()).into()
}
