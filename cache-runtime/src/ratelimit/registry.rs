//! The stores `#[rate_limit]` functions use, and the lazily built limiter each
//! annotated function keeps in a `static`.

use super::{Algorithm, Decision, Rate, RateLimited, RateLimiter, Store, DEFAULT_PREFIX};
use arc_swap::ArcSwapOption;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, RwLock};
use std::time::Duration;

static DEFAULT_STORE: RwLock<Option<Store>> = RwLock::new(None);
static NAMED_STORES: Lazy<RwLock<HashMap<String, Store>>> = Lazy::new(Default::default);
/// Bumped by every registration: limiters built against an older registry
/// resolve their store again on their next call.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Sets the store of every `#[rate_limit]` function without a `store = "..."`
/// option. Registration order does not matter: a function called before this
/// switches to the new store on its next call (its in-process counts are
/// dropped). [`init_from_env`](crate::memo::init_from_env) calls it when
/// `REDIS_URL` is set.
///
/// ```no_run
/// use memorix_runtime::ratelimit::{set_default_store, Store};
/// # async fn demo(cache: memorix_runtime::RedisCache) -> memorix_runtime::Result<()> {
/// set_default_store(Store::from_cache(&cache)?);
/// # Ok(()) }
/// ```
pub fn set_default_store(store: Store) {
    *DEFAULT_STORE.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    GENERATION.fetch_add(1, SeqCst);
}

/// Registers a store under `name`, for `#[rate_limit(store = "name", ...)]`.
/// Like [`set_default_store`], it may come before or after the first call.
pub fn register_store(name: impl Into<String>, store: Store) {
    NAMED_STORES
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.into(), store);
    GENERATION.fetch_add(1, SeqCst);
}

fn store_for(name: Option<&str>) -> Store {
    let found = match name {
        None => DEFAULT_STORE.read().unwrap_or_else(|e| e.into_inner()).clone(),
        Some(name) => NAMED_STORES
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned(),
    };
    found.unwrap_or_else(|| {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Relaxed) {
            tracing::warn!(
                store = name.unwrap_or("<default>"),
                "#[rate_limit]: no store is registered, so limits are per process until one is \
                 (memorix::init_from_env with REDIS_URL, or memorix::ratelimit::set_default_store)"
            );
        }
        Store::memory()
    })
}

/// A limiter and the registry generation it was built against.
#[derive(Debug)]
struct Built {
    generation: u64,
    /// `None` when the settings were rejected (logged once per build).
    limiter: Option<RateLimiter>,
}

/// The limiter of one `#[rate_limit]` function, built on its first call and
/// rebuilt when a store is registered later. Used by generated code only.
#[doc(hidden)]
#[derive(Debug)]
pub struct MacroLimiter {
    function: &'static str,
    rate: Rate,
    burst: Option<u32>,
    algorithm: Algorithm,
    store: Option<&'static str>,
    built: ArcSwapOption<Built>,
}

impl MacroLimiter {
    /// Settings as the attribute wrote them (already checked by the macro).
    pub const fn new(
        function: &'static str,
        rate: Rate,
        burst: Option<u32>,
        algorithm: Algorithm,
        store: Option<&'static str>,
    ) -> Self {
        MacroLimiter {
            function,
            rate,
            burst,
            algorithm,
            store,
            built: ArcSwapOption::const_empty(),
        }
    }

    fn limiter(&self) -> Arc<Built> {
        let generation = GENERATION.load(SeqCst);
        if let Some(built) = self.built.load_full() {
            if built.generation == generation {
                return built;
            }
        }
        let mut builder = RateLimiter::builder(self.rate)
            .algorithm(self.algorithm)
            .prefix(format!("{DEFAULT_PREFIX}{}:", self.function))
            .store(store_for(self.store));
        if let Some(burst) = self.burst {
            builder = builder.burst(burst);
        }
        let limiter = builder
            .build()
            .map_err(
                |err| tracing::error!(function = self.function, error = %err.chain(), "#[rate_limit]: bad settings"),
            )
            .ok();
        let built = Arc::new(Built { generation, limiter });
        self.built.store(Some(built.clone()));
        built
    }

    /// Checks one call of `subject`. An error of the store (Redis unreachable
    /// with `OnUnavailable::Error`, a server error) denies the call for 1 s:
    /// the function's error type only has to carry [`RateLimited`].
    pub async fn check(&self, subject: &str) -> Result<Decision, RateLimited> {
        let built = self.limiter();
        let Some(limiter) = &built.limiter else {
            return Err(RateLimited {
                retry_after: Duration::from_secs(1),
                limit: 0,
                reset_after: Duration::from_secs(1),
            });
        };
        match limiter.check(subject).await {
            Ok(decision) => decision.into_result(),
            Err(err) => {
                tracing::warn!(function = self.function, error = %err.chain(), "#[rate_limit]: check failed; denying");
                Err(RateLimited::from_decision(&Decision::deny_for(
                    limiter.limit(),
                    Duration::from_secs(1),
                )))
            }
        }
    }
}
