//! What one memoized function asked for: the options of its attribute, as the
//! macro wrote them into a `static`.

use std::time::Duration;

/// The options of one `#[cached]`, `#[cache_put]` or `#[cache_evict]`.
#[derive(Debug, Clone, Copy)]
pub struct MemoSpec {
    /// The function's path, for logs and derived keys (`module::fn` or `name = ...`).
    pub name: &'static str,
    /// Prepended to every key (`prefix = ...`); `None` = the namespace set
    /// with [`set_namespace`](super::set_namespace) (default `"memorix:"`).
    pub prefix: Option<&'static str>,
    /// True when the key is derived from the arguments (no `key = ...`):
    /// then the key is `prefix + name + ":" + args`.
    pub derived_key: bool,
    /// How long a value is fresh; `None` = until evicted.
    pub ttl: Option<Duration>,
    /// Up to this much is added to each TTL at random.
    pub jitter: Option<Duration>,
    /// XFetch `beta` of `refresh_ahead`; 0 = no early refresh.
    pub refresh_beta: f64,
    /// How long past its TTL a value may still answer a failed call.
    pub stale_if_error: Option<Duration>,
    /// Coalesce concurrent misses of one key (`lock = "local"`, the default).
    pub single_flight: bool,
    /// Also coalesce across processes through a lease in Redis
    /// (`lock = "distributed"`); engines without Redis stay local.
    pub distributed: bool,
    /// Which cache.
    pub cache: CacheChoice,
    /// Which codec.
    pub codec: CodecChoice,
    /// zlib-compress stored values.
    pub compress: bool,
}

impl MemoSpec {
    /// The defaults, for the macro to override field by field.
    pub const DEFAULT: MemoSpec = MemoSpec {
        name: "",
        prefix: None,
        derived_key: true,
        ttl: None,
        jitter: None,
        refresh_beta: 0.0,
        stale_if_error: None,
        single_flight: true,
        distributed: false,
        cache: CacheChoice::Default,
        codec: CodecChoice::Engine,
        compress: false,
    };

    /// True when stored values carry freshness metadata (an envelope).
    pub(crate) fn stamped(&self) -> bool {
        self.refresh_beta > 0.0 || self.stale_if_error.is_some()
    }
}

/// Where values are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheChoice {
    /// The default cache ([`init`](super::init), or the embedded memory cache).
    Default,
    /// A cache given to [`register`](super::register) under this name.
    Named(&'static str),
    /// The cache registered as [`ENCRYPTED_CACHE`](super::ENCRYPTED_CACHE) (`encrypt`).
    Encrypted,
    /// `cache = EXPR`: the caller passes the cache on each call.
    Expr,
}

/// The codec of stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecChoice {
    /// The engine's own codec.
    Engine,
    /// MessagePack.
    MsgPack,
    /// JSON.
    Json,
    /// Python pickle.
    Pickle,
    /// Raw bytes / strings.
    Raw,
}

/// How a function's return value maps to what is cached, written by the macro
/// for the function's return type.
pub struct Adapter<R, S> {
    /// The part worth caching (`Ok` / `Some` by default), or `None`.
    pub to_stored: fn(&R) -> Option<S>,
    /// Rebuilds a return value from a cached one.
    pub from_stored: fn(S) -> R,
    /// True for a failed call (an `Err`): eligible for `stale_if_error`,
    /// not shared with waiting callers, never evicts.
    pub is_error: fn(&R) -> bool,
}

impl<R, S> Clone for Adapter<R, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, S> Copy for Adapter<R, S> {}

#[cfg(test)]
impl<T: Clone> Adapter<T, T> {
    /// Caches every return value as it is (unit tests).
    pub(crate) fn plain() -> Self {
        Adapter {
            to_stored: |r| Some(r.clone()),
            from_stored: |s| s,
            is_error: |_| false,
        }
    }
}

impl<R, S> std::fmt::Debug for Adapter<R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").finish_non_exhaustive()
    }
}
