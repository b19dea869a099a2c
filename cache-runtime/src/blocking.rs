//! [`BlockingCache`]: the cache API for synchronous code.
//!
//! Calls run in the context of one shared background tokio runtime owned by
//! memorix, which drives connections, timers and background tasks. From a
//! plain thread a call runs on the calling thread itself (no hop to another
//! thread and back); from inside a tokio runtime (either flavour) it runs on
//! the shared runtime while the caller waits, so there is no nested
//! `block_on` to panic and no single-threaded runtime to starve.

use crate::cache::{Cache, CacheExt};
use crate::error::{CacheError, Result};
use crate::stats::CacheStats;
use once_cell::sync::Lazy;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The runtime that drives blocking calls and the connections they open.
static RUNTIME: Lazy<std::result::Result<tokio::runtime::Runtime, String>> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("memorix-blocking")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
});

pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .as_ref()
        .map_err(|e| CacheError::Connection(format!("cannot start the blocking runtime: {e}").into()))
}

/// Runs `future` to completion for a synchronous caller.
///
/// On a thread with no runtime (the common case: plain synchronous code, a
/// sync memoized function) the future runs right here, inside the shared
/// runtime's context, so its timers and spawned tasks (connection drivers)
/// live there: the call costs no hop to another thread and back (measured at
/// about 3x the time of the round trip itself for one `GET`). Inside a
/// runtime the calling thread may not start another, so the future goes to
/// the shared runtime and this thread waits for the answer.
fn wait<T: Send + 'static>(future: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let runtime = runtime()?;
    match tokio::runtime::Handle::try_current() {
        Err(_) => runtime.block_on(future),
        Ok(current) => wait_elsewhere(runtime, current.runtime_flavor(), future),
    }
}

/// Runs `future` on the shared runtime and blocks this runtime thread until
/// it answers: no nested `block_on` to panic, no single-threaded runtime to
/// starve (the work never runs on it).
fn wait_elsewhere<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    flavor: tokio::runtime::RuntimeFlavor,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    let recv = move || rx.recv();
    let answer = match flavor {
        // Tell a multi-thread runtime this worker is about to block, so it moves
        // its other tasks elsewhere instead of stalling them.
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(recv),
        _ => recv(),
    };
    answer.map_err(|_| CacheError::Connection("the blocking runtime dropped the call".into()))?
}

/// A synchronous handle to any [`Cache`].
///
/// ```
/// use memorix_runtime::{BlockingCache, MemoryCache};
///
/// let cache = BlockingCache::new(MemoryCache::new(100));
/// cache.set("k", &"v", None)?;
/// assert_eq!(cache.get::<String>("k")?, Some("v".to_owned()));
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
///
/// For Redis, open the connection through [`BlockingCache::connect`] so that
/// its background tasks live on the shared runtime:
///
/// ```no_run
/// use memorix_runtime::{BlockingCache, RedisCache, RedisConfig};
///
/// let cache = BlockingCache::connect(|| RedisCache::connect(RedisConfig::new()))?;
/// cache.set("k", &1u32, None)?;
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BlockingCache {
    inner: Arc<dyn Cache>,
}

impl BlockingCache {
    /// Wraps a cache that needs no runtime of its own (memory, null), or one
    /// whose connection was opened on a runtime that keeps running.
    pub fn new(cache: impl Cache + 'static) -> Self {
        BlockingCache { inner: Arc::new(cache) }
    }

    /// Wraps a shared cache.
    pub fn from_arc(cache: Arc<dyn Cache>) -> Self {
        BlockingCache { inner: cache }
    }

    /// Builds a cache on the shared runtime, e.g. `|| RedisCache::connect(config)`.
    pub fn connect<C, F, Fut>(open: F) -> Result<Self>
    where
        C: Cache + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C>> + Send + 'static,
    {
        let cache = wait(open())?;
        Ok(Self::new(cache))
    }

    /// The async cache behind this handle.
    pub fn inner(&self) -> &Arc<dyn Cache> {
        &self.inner
    }

    fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Cache>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        wait(op(self.inner.clone()))
    }

    /// See [`CacheExt::get`].
    pub fn get<T: DeserializeOwned + Send + 'static>(&self, key: &str) -> Result<Option<T>> {
        let key = key.to_owned();
        self.call(|c| async move { c.get::<T>(&key).await })
    }

    /// See [`CacheExt::set`].
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
        let bytes = crate::codec::encode(self.inner.codec(), value)?;
        self.set_bytes(key, &bytes, ttl)
    }

    /// See [`Cache::get_bytes`].
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.call(|c| async move { c.get_bytes(&key).await })
    }

    /// See [`Cache::set_bytes`].
    pub fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.call(|c| async move { c.set_bytes(&key, &value, ttl).await })
    }

    /// See [`CacheExt::get_many`].
    pub fn get_many<T: DeserializeOwned + Send + 'static>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.call(|c| async move {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.get_many::<T>(&refs).await
        })
    }

    /// See [`CacheExt::set_many`].
    pub fn set_many<T: Serialize>(&self, entries: &[(&str, T)], ttl: Option<Duration>) -> Result<()> {
        let encoded = entries
            .iter()
            .map(|(k, v)| Ok(((*k).to_owned(), crate::codec::encode(self.inner.codec(), v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.call(|c| async move {
            let refs: Vec<(&str, &[u8])> = encoded.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            c.set_many_bytes(&refs, ttl).await
        })
    }

    /// See [`Cache::has`].
    pub fn has(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.call(|c| async move { c.has(&key).await })
    }

    /// See [`Cache::remove`].
    pub fn remove(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.call(|c| async move { c.remove(&key).await })
    }

    /// See [`Cache::purge`].
    pub fn purge(&self) -> Result<()> {
        self.call(|c| async move { c.purge().await })
    }

    /// See [`Cache::close`].
    pub fn close(&self) -> Result<()> {
        self.call(|c| async move { c.close().await })
    }

    /// See [`Cache::set_prefix`].
    pub fn set_prefix(&self, prefix: &str) {
        self.inner.set_prefix(prefix);
    }

    /// See [`Cache::prefix`].
    pub fn prefix(&self) -> String {
        self.inner.prefix()
    }

    /// See [`Cache::stats`].
    pub fn stats(&self) -> &CacheStats {
        self.inner.stats()
    }

    /// See [`Cache::hit_rate`].
    pub fn hit_rate(&self) -> f64 {
        self.inner.hit_rate()
    }
}
