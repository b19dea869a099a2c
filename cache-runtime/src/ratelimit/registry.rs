//! The stores `#[rate_limit]` functions use, and the lazily built limiter each
//! annotated function keeps in a `static`.

use super::{Algorithm, Decision, Rate, RateLimited, RateLimiter, Store, DEFAULT_PREFIX};
use once_cell::sync::{Lazy, OnceCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

static DEFAULT_STORE: RwLock<Option<Store>> = RwLock::new(None);
static NAMED_STORES: Lazy<RwLock<HashMap<String, Store>>> = Lazy::new(Default::default);

/// Sets the store of every `#[rate_limit]` function without a `store = "..."`
/// option. Call it at startup, before the first limited call: each function
/// builds its limiter once, on its first call.
///
/// ```no_run
/// use memorix_runtime::ratelimit::{set_default_store, Store};
/// # async fn demo(cache: memorix_runtime::RedisCache) -> memorix_runtime::Result<()> {
/// set_default_store(Store::from_cache(&cache)?);
/// # Ok(()) }
/// ```
pub fn set_default_store(store: Store) {
    *DEFAULT_STORE.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
}

/// Registers a store under `name`, for `#[rate_limit(store = "name", ...)]`.
pub fn register_store(name: impl Into<String>, store: Store) {
    NAMED_STORES
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.into(), store);
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
                "#[rate_limit]: no store registered (see memorix::ratelimit::set_default_store); limiting in process"
            );
        }
        Store::memory()
    })
}

/// The limiter of one `#[rate_limit]` function, built on its first call.
/// Used by generated code only.
#[doc(hidden)]
#[derive(Debug)]
pub struct MacroLimiter {
    function: &'static str,
    rate: &'static str,
    burst: Option<u32>,
    algorithm: &'static str,
    store: Option<&'static str>,
    limiter: OnceCell<Option<RateLimiter>>,
}

impl MacroLimiter {
    /// Settings as the attribute wrote them (already checked by the macro).
    pub const fn new(
        function: &'static str,
        rate: &'static str,
        burst: Option<u32>,
        algorithm: &'static str,
        store: Option<&'static str>,
    ) -> Self {
        MacroLimiter {
            function,
            rate,
            burst,
            algorithm,
            store,
            limiter: OnceCell::new(),
        }
    }

    fn limiter(&self) -> Option<&RateLimiter> {
        self.limiter
            .get_or_init(|| {
                let built = (|| {
                    let mut builder = RateLimiter::builder(Rate::parse(self.rate)?)
                        .algorithm(self.algorithm.parse::<Algorithm>()?)
                        .prefix(format!("{DEFAULT_PREFIX}{}:", self.function))
                        .store(store_for(self.store));
                    if let Some(burst) = self.burst {
                        builder = builder.burst(burst);
                    }
                    builder.build()
                })();
                built
                    .map_err(
                        |err| tracing::error!(function = self.function, error = %err, "#[rate_limit]: bad settings"),
                    )
                    .ok()
            })
            .as_ref()
    }

    /// Checks one call of `subject`. An error of the store (Redis unreachable
    /// with `OnUnavailable::Error`, a server error) denies the call for 1 s:
    /// the function's error type only has to carry [`RateLimited`].
    pub async fn check(&self, subject: &str) -> Result<Decision, RateLimited> {
        let Some(limiter) = self.limiter() else {
            return Err(RateLimited {
                retry_after: Duration::from_secs(1),
                limit: 0,
                reset_after: Duration::from_secs(1),
            });
        };
        match limiter.check(subject).await {
            Ok(decision) => decision.into_result(),
            Err(err) => {
                tracing::warn!(function = self.function, error = %err, "#[rate_limit]: check failed; denying");
                Err(RateLimited::from_decision(&Decision::deny_for(
                    limiter.limit(),
                    Duration::from_secs(1),
                )))
            }
        }
    }
}
