//! What one memoized function asked for: the options of its attribute, as the
//! macro wrote them into a `static`.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
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
    /// never cached, never evicts.
    pub is_error: fn(&R) -> bool,
    /// How a result that is not cached (an error) reaches the callers waiting
    /// on the same key: `Some` when `R` is `Clone` (each waiter gets a copy),
    /// `None` otherwise (the waiters run the body one at a time). The macro
    /// fills it in with [`ShareProbe`].
    pub share: Option<Share<R>>,
}

/// Copies a return value to waiting callers (see [`Adapter::share`]).
pub struct Share<R> {
    /// Boxes a copy of the leader's result for the waiters.
    pub pack: fn(&R) -> Arc<dyn Any + Send + Sync>,
    /// A waiter's copy, back out of the box.
    pub unpack: fn(&(dyn Any + Send + Sync)) -> Option<R>,
}

impl<R> Clone for Share<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Share<R> {}

/// Picks [`Adapter::share`] at compile time (autoref specialisation):
/// `(&ShareProbe::<R>::new()).memorix_share()` is `Some` through
/// [`ShareByClone`] when `R` is `Clone + Send + Sync + 'static`, and `None`
/// through [`ShareNone`] otherwise. Both traits must be in scope.
pub struct ShareProbe<R>(PhantomData<fn() -> R>);

impl<R> ShareProbe<R> {
    /// A probe for the return type `R`.
    pub const fn new() -> Self {
        ShareProbe(PhantomData)
    }
}

impl<R> Default for ShareProbe<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// The [`ShareProbe`] answer for a cloneable return type.
pub trait ShareByClone<R> {
    /// `Some`: waiters get a clone of the leader's result.
    fn memorix_share(&self) -> Option<Share<R>>;
}

impl<R: Clone + Send + Sync + 'static> ShareByClone<R> for ShareProbe<R> {
    fn memorix_share(&self) -> Option<Share<R>> {
        Some(Share {
            pack: |r| Arc::new(r.clone()),
            unpack: |any| any.downcast_ref::<R>().cloned(),
        })
    }
}

/// The [`ShareProbe`] answer for any other return type.
pub trait ShareNone<R> {
    /// `None`: waiters run the body one at a time.
    fn memorix_share(&self) -> Option<Share<R>> {
        None
    }
}

impl<R> ShareNone<R> for &ShareProbe<R> {}

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
            share: None,
        }
    }
}

impl<R, S> std::fmt::Debug for Adapter<R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").finish_non_exhaustive()
    }
}
