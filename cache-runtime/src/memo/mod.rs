//! Memoization support for the attribute macros: the default and named caches,
//! key building, single-flight, early refresh and fail-open calls.
//!
//! Most of this module is reached through `#[cached]`, `#[cache_put]` and
//! `#[cache_evict]`; the public items here configure where memoized values go:
//!
//! - [`init`] replaces the default cache (an embedded in-memory cache until
//!   then); [`init_from_env`] connects it to `REDIS_URL` when that is set,
//!   with the `#[rate_limit]` store and, given `MEMORIX_ENCRYPTION_KEY`, the
//!   encrypted engine of `#[cached(encrypt)]`.
//! - [`register`] names a cache for `#[cached(cache = "name")]`; an encrypted
//!   engine registered as [`ENCRYPTED_CACHE`] serves `#[cached(encrypt)]`.
//! - [`set_namespace`] chooses what memoized keys start with (default
//!   `"memorix:"`); `prefix = "..."` on an attribute replaces it.
//! - [`default_cache`] / [`named_cache`] hand the caches back, e.g. to purge.
//! - [`stats`] counts misses, absorbed cache errors, calls left uncached by a
//!   missing cache (`misconfigured`), stale answers and coalesced callers.
//!
//! In-process engines ([`MemoryCache`](crate::MemoryCache)) also keep each
//! memoized value decoded, so a hit is a hash lookup and a `clone()`; writes
//! through [`default_cache`] / [`named_cache`] keep both views in step.

mod args;
mod call;
pub(crate) mod flight;
mod key;
mod l0;
mod registry;
mod spec;
mod stats;
mod tier;

pub use args::{Args, Exact, KeyPart, ViaArgs, ViaKeyText};
pub use call::{check_storable, stored_clone, CacheHandle, Lookup, Memo, Miss, Storable};
pub use key::{namespace, set_namespace, KeyBuf, KeyError, KeyValue, DEFAULT_NAMESPACE, MAX_ARGS_LEN};
pub use l0::{PinKey, ThreadPin};
pub use registry::{
    default_cache, init, init_from_env, init_shared, named_cache, register, register_shared, ENCRYPTED_CACHE,
    ENCRYPTION_KEY_ENV, NAMESPACE_ENV, REDIS_URL_ENV,
};
pub use spec::{Adapter, CacheChoice, CodecChoice, MemoSpec, Share, ShareByClone, ShareNone, ShareProbe};
pub use stats::{stats, MemoStats};
pub use tier::{Tiered, DEFAULT_TIER_CAPACITY};
