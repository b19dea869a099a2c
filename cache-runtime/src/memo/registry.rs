//! The default cache and the named caches of memoized functions.

use super::tier::{advance_epoch, LocalTier, Tiered, DEFAULT_TIER_CAPACITY};
use crate::cache::Cache;
use crate::engine::{CryptRedisCache, MemoryCache, RedisCache};
use crate::error::Result;
use arc_swap::ArcSwap;
use once_cell::sync::Lazy;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The name under which `#[cached(encrypt)]` looks for its engine: register an
/// encrypted engine with `memorix::register(ENCRYPTED_CACHE, cache)`.
pub const ENCRYPTED_CACHE: &str = "encrypted";

/// Entries of the embedded default cache.
const EMBEDDED_CAPACITY: u64 = 100_000;

/// A cache as memoized functions see it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The engine itself; memo code reads and writes here.
    pub(crate) engine: Arc<dyn Cache>,
    /// What users get from the registry: the engine, or a [`Tiered`] wrapper.
    pub(crate) public: Arc<dyn Cache>,
    /// Decoded values, for in-process engines.
    pub(crate) tier: Option<Arc<LocalTier>>,
}

impl Slot {
    fn new<C: Cache + 'static>(cache: C) -> Self {
        let local = TypeId::of::<C>() == TypeId::of::<MemoryCache>();
        Self::from_arc(Arc::new(cache), local)
    }

    pub(crate) fn from_arc(engine: Arc<dyn Cache>, local: bool) -> Self {
        if local {
            let tier = Arc::new(LocalTier::new(DEFAULT_TIER_CAPACITY));
            let public: Arc<dyn Cache> = Arc::new(Tiered {
                inner: engine.clone(),
                tier: tier.clone(),
            });
            Slot {
                engine,
                public,
                tier: Some(tier),
            }
        } else {
            Slot {
                public: engine.clone(),
                engine,
                tier: None,
            }
        }
    }

    /// A slot for a cache passed with `cache = EXPR`: no typed tier.
    pub(crate) fn shared(engine: Arc<dyn Cache>) -> Self {
        Self::from_arc(engine, false)
    }

    /// True when the engine lives in this process (its futures never wait).
    pub(crate) fn is_local(&self) -> bool {
        self.tier.is_some()
    }
}

static DEFAULT: Lazy<ArcSwap<Slot>> =
    Lazy::new(|| ArcSwap::from_pointee(Slot::new(MemoryCache::new(EMBEDDED_CAPACITY))));

static NAMED: Lazy<RwLock<HashMap<String, Arc<Slot>>>> = Lazy::new(Default::default);

pub(crate) fn default_slot() -> arc_swap::Guard<Arc<Slot>> {
    DEFAULT.load()
}

pub(crate) fn named_slot(name: &str) -> Option<Arc<Slot>> {
    NAMED.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
}

/// Makes `cache` the default cache of every memoized function that names no
/// other (`#[cached]` without `cache = ...`).
///
/// Without a call to `init`, memoized functions use an embedded in-memory
/// cache of 100 000 entries. A [`MemoryCache`] given here keeps the typed fast
/// path; any other engine is reached through its [`Cache`] methods.
///
/// ```
/// memorix_runtime::memo::init(memorix_runtime::MemoryCache::new(1_000));
/// ```
pub fn init<C: Cache + 'static>(cache: C) {
    DEFAULT.store(Arc::new(Slot::new(cache)));
    advance_epoch();
}

/// Like [`init`], for a cache shared with other code. No typed fast path: the
/// other holders of the `Arc` could change entries behind its back.
pub fn init_shared(cache: Arc<dyn Cache>) {
    DEFAULT.store(Arc::new(Slot::from_arc(cache, false)));
    advance_epoch();
}

/// Registers `cache` under `name`, for `#[cached(cache = "name")]`. Replaces a
/// cache registered earlier under the same name.
///
/// ```
/// memorix_runtime::memo::register("users", memorix_runtime::MemoryCache::new(1_000));
/// assert!(memorix_runtime::memo::named_cache("users").is_some());
/// ```
pub fn register<C: Cache + 'static>(name: &str, cache: C) {
    let slot = Arc::new(Slot::new(cache));
    NAMED
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_owned(), slot);
    // Copies made from the replaced cache must not answer any more.
    advance_epoch();
}

/// Like [`register`], for a cache shared with other code (no typed fast path).
pub fn register_shared(name: &str, cache: Arc<dyn Cache>) {
    let slot = Arc::new(Slot::from_arc(cache, false));
    NAMED
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_owned(), slot);
    // Copies made from the replaced cache must not answer any more.
    advance_epoch();
}

/// The default cache of memoized functions. For an in-process engine, writes
/// through this handle also drop the decoded copies memoized functions keep.
pub fn default_cache() -> Arc<dyn Cache> {
    DEFAULT.load().public.clone()
}

/// The cache registered under `name`, if any.
pub fn named_cache(name: &str) -> Option<Arc<dyn Cache>> {
    named_slot(name).map(|s| s.public.clone())
}

/// The environment variable [`init_from_env`] reads the Redis URL from.
pub const REDIS_URL_ENV: &str = "REDIS_URL";

/// The environment variable [`init_from_env`] reads the key of the encrypted
/// engine from (64 UTF-8 bytes, as [`CryptRedisCache::new`] takes it).
pub const ENCRYPTION_KEY_ENV: &str = "MEMORIX_ENCRYPTION_KEY";

/// The environment variable [`init_from_env`] reads the key namespace from
/// (see [`set_namespace`](super::set_namespace)).
pub const NAMESPACE_ENV: &str = "MEMORIX_NAMESPACE";

/// Zero-setup configuration from the environment. When `REDIS_URL` is set it
/// connects the default cache of memoized functions to that server, makes it
/// the store of `#[rate_limit]` functions, and, when `MEMORIX_ENCRYPTION_KEY`
/// is set too, registers an encrypted engine with that key as
/// [`ENCRYPTED_CACHE`] for `#[cached(encrypt)]`. `MEMORIX_NAMESPACE`, when
/// set, replaces the `"memorix:"` key namespace. Without `REDIS_URL` the
/// in-memory default stays. Returns true when Redis was configured.
///
/// Redis being down at start is not an error: the cache starts degraded
/// (memoized functions run their body uncached, with no added wait) and
/// switches to Redis once it answers. Set
/// `MEMORIX_FAIL_ON_CONNECTION_ERROR=true` for a strict start that returns
/// the connection error instead (see
/// [`RedisConfig::fail_on_connection_error`](crate::RedisConfig::fail_on_connection_error)).
///
/// ```no_run
/// # async fn demo() -> memorix_runtime::Result<()> {
/// if memorix_runtime::init_from_env().await? {
///     println!("memoized functions cache in Redis");
/// }
/// # Ok(()) }
/// ```
pub async fn init_from_env() -> Result<bool> {
    if let Some(namespace) = env(NAMESPACE_ENV) {
        super::set_namespace(namespace);
    }
    let Some(url) = env(REDIS_URL_ENV) else {
        return Ok(false);
    };
    let strict = match env(STRICT_START_VAR) {
        Some(value) => strict_start(&value)?,
        None => false,
    };
    let config = crate::RedisConfig::from_url(&url)?
        .into_builder()
        .fail_on_connection_error(strict)
        .build()?;
    let cache = RedisCache::connect(config.clone()).await?;
    if let Some(key) = env(ENCRYPTION_KEY_ENV) {
        let encrypted = CryptRedisCache::builder().key(&key).config(config).connect().await?;
        register(ENCRYPTED_CACHE, encrypted);
    }
    crate::ratelimit::set_default_store(crate::ratelimit::Store::from_cache(&cache)?);
    init(cache);
    Ok(true)
}

/// A set, non-blank environment variable, trimmed.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The variable [`init_from_env`] reads for a strict start.
const STRICT_START_VAR: &str = "MEMORIX_FAIL_ON_CONNECTION_ERROR";

/// The boolean spellings `CacheFactory::from_env` accepts for the same variable.
fn strict_start(value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(crate::CacheError::config(
            "MEMORIX_FAIL_ON_CONNECTION_ERROR",
            format!("`{value}` is not a boolean"),
        )),
    }
}
