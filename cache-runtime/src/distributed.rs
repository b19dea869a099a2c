//! Distributed single-flight: one loader per key across a fleet of processes.
//!
//! When a hot key expires, every process that misses would run the expensive
//! loader at once (a stampede). [`DistributedLoader::get_or_load`] lets exactly
//! one of them load: it takes a lease with `SET lock NX PX`, keeps the lease
//! alive while the loader runs, stores the value, and releases the lease with a
//! compare-and-delete script so it never frees a lease it no longer owns. The
//! others wait for the value to land and read it from the cache.
//!
//! [`DistributedLoader::turn`] is the same protocol for callers that store
//! values their own way: `#[cached(lock = "distributed")]` is built on it.
//!
//! If the lease holder dies, its lease expires and a waiter takes over. If
//! waiting takes longer than `wait_timeout`, or Redis itself fails, a caller
//! runs the loader itself: availability beats strict once-only loading.
//!
//! A failing loader does not stampede: the lease is held while it runs, so
//! only one loader runs at a time per key across the fleet, errors included.
//! When it fails, its lease is released and the next waiter takes it and
//! loads: an error cannot cross processes, so waiters in other processes take
//! over one at a time. Callers in one process share one flight per key (the
//! same single-flight as memoized functions): with
//! [`get_or_load_shared`](DistributedLoader::get_or_load_shared) (a `Clone`
//! error type) they all receive the leader's error, so the loader ran once
//! for them; with [`get_or_load`](DistributedLoader::get_or_load) they take
//! over one at a time.

use crate::cache::{Cache, CacheExt};
use crate::codec;
use crate::connection::RedisConnection;
use crate::error::Result;
use crate::keys::ttl_millis;
use crate::memo::flight::{Flights, Outcome, Role};
use crate::memo::Share;
use once_cell::sync::Lazy;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// Deletes the lease only if it still holds our token.
static RELEASE: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// Extends the lease only if it still holds our token.
static RENEW: Lazy<redis::Script> = Lazy::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});

/// Coordinates loaders across processes through leases in Redis.
///
/// ```no_run
/// use memorix_runtime::{DistributedLoader, RedisCache, RedisConfig};
/// use std::time::Duration;
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let cache = RedisCache::connect(RedisConfig::new()).await?;
/// let loader = DistributedLoader::new(cache.client()?);
/// let report: String = loader
///     .get_or_load(&cache, "report:today", Some(Duration::from_secs(300)), || async {
///         Ok::<_, memorix_runtime::CacheError>("expensive".to_owned())
///     })
///     .await?;
/// # let _ = report; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DistributedLoader {
    conn: RedisConnection,
    lease: Duration,
    wait_timeout: Duration,
    lock_prefix: String,
    runtime: Option<Handle>,
    /// This process's callers of each key (shared by clones of the loader).
    local: Arc<Flights>,
}

impl DistributedLoader {
    /// A loader with a 10 s lease (renewed while the loader runs) that waits at
    /// most 30 s for another process's value.
    pub fn new(conn: RedisConnection) -> Self {
        DistributedLoader {
            conn,
            lease: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(30),
            lock_prefix: "memorix:lock:".to_owned(),
            runtime: None,
            local: Arc::default(),
        }
    }

    /// How long a lease lives without renewal. A crashed holder blocks others
    /// for at most this long.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How long a waiter waits before it loads by itself.
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Prefix of the lease keys (default `memorix:lock:`).
    #[must_use]
    pub fn lock_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.lock_prefix = prefix.into();
        self
    }

    /// Runs lease commands, renewals and waits on `runtime` instead of the
    /// caller's: for callers that poll the loader outside a tokio runtime, or
    /// on a runtime they are blocking (synchronous memoized functions do).
    #[must_use]
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Returns the cached value of `key`, or runs `load` in exactly one
    /// process at a time, stores its value with `ttl` and returns it.
    ///
    /// Only the loader's own error reaches the caller. Cache and lock failures
    /// are logged and never fail the call: the worst case is that the loader
    /// runs more than once.
    ///
    /// When the loader fails, callers waiting in this process take over one
    /// at a time (each runs its own loader, never two at once); use
    /// [`get_or_load_shared`](Self::get_or_load_shared) to hand them the
    /// error instead.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        cache: &dyn Cache,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.coalesced(cache, key, ttl, load, None).await
    }

    /// Like [`get_or_load`](Self::get_or_load), but a failure of the loader
    /// is handed to every caller waiting for the same key in this process: the
    /// loader runs once for all of them. (Other processes cannot receive the
    /// error; their waiters take the lease and load, one at a time.)
    pub async fn get_or_load_shared<T, E, F, Fut>(
        &self,
        cache: &dyn Cache,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let share = Share {
            pack: |err: &E| -> Arc<dyn Any + Send + Sync> { Arc::new(err.clone()) },
            unpack: |any| any.downcast_ref::<E>().cloned(),
        };
        self.coalesced(cache, key, ttl, load, Some(share)).await
    }

    /// One flight per key in this process: the leader goes through the lease;
    /// waiters read the value it stored, receive its error (`share`), or take
    /// over one at a time.
    async fn coalesced<T, E, F, Fut>(
        &self,
        cache: &dyn Cache,
        key: &str,
        ttl: Option<Duration>,
        load: F,
        share: Option<Share<E>>,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let flight_key = format!("{}{}", cache.prefix(), key);
        loop {
            let leader = match self.local.join(&flight_key) {
                Role::Leader(leader) => leader,
                Role::Waiter(waiter) => {
                    match waiter.wait().await {
                        Outcome::Value(_) => {
                            if let Some(Ok(value)) = read(cache, key).await.map(|b| codec::decode(cache.codec(), &b)) {
                                return Ok(value);
                            }
                        }
                        Outcome::Result(err) => {
                            if let Some(err) = share.and_then(|share| (share.unpack)(&*err)) {
                                return Err(err);
                            }
                        }
                        Outcome::Abandoned => {}
                    }
                    continue;
                }
            };
            let result = self.leased(cache, key, ttl, load).await;
            match (&result, share) {
                (Ok(_), _) => leader.finish(Outcome::Value(Arc::new(()))),
                (Err(err), Some(share)) => leader.finish(Outcome::Result((share.pack)(err))),
                // Dropping the leader abandons the flight: one waiter takes over.
                (Err(_), None) => drop(leader),
            }
            return result;
        }
    }

    /// The cross-process part of a load: wait for the lease or the value.
    async fn leased<T, E, F, Fut>(
        &self,
        cache: &dyn Cache,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let lease = match self.turn(cache, key).await {
            Turn::Landed(bytes) => match codec::decode(cache.codec(), &bytes) {
                Ok(value) => return Ok(value),
                Err(err) => {
                    tracing::warn!(key, error = %err, "the stored value does not decode; loading here");
                    None
                }
            },
            Turn::Lead(lease) => Some(lease),
            Turn::Alone => None,
        };
        let outcome = load().await;
        if let Ok(value) = &outcome {
            if let Err(err) = cache.set(key, value, ttl).await {
                tracing::warn!(key, error = %err, "could not store the loaded value");
            }
        }
        if let Some(lease) = lease {
            lease.release().await;
        }
        outcome
    }

    /// Waits for this caller's turn at `key`: the value lands (another process
    /// loaded it), this caller gets the lease and must load, or waiting gave up
    /// (timeout, Redis failure) and this caller loads without a lease.
    ///
    /// The building block of [`get_or_load`](Self::get_or_load), for callers
    /// that store values their own way (the memoization layer does).
    pub async fn turn(&self, cache: &dyn Cache, key: &str) -> Turn<Vec<u8>> {
        self.turn_with(cache, key, || read(cache, key)).await
    }

    /// Like [`turn`](Self::turn), with the caller's own `read`: it answers
    /// `Some` once a value usable by this caller has landed (the memoization
    /// layer decodes and checks freshness there).
    pub async fn turn_with<T, R, Fut>(&self, cache: &dyn Cache, key: &str, mut read: R) -> Turn<T>
    where
        R: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let lock_key = format!("{}{}{}", self.lock_prefix, cache.prefix(), key);
        let token = random_token();
        let deadline = Instant::now() + self.wait_timeout;
        let mut backoff = Duration::from_millis(2);
        loop {
            if let Some(value) = read().await {
                return Turn::Landed(value);
            }
            match self.try_acquire(&lock_key, &token).await {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => {
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Ok(false) => {
                    tracing::warn!(key, "waited too long for another loader; loading here");
                    return Turn::Alone;
                }
                Err(err) => {
                    tracing::warn!(key, error = %err, "lease unavailable; loading without it");
                    return Turn::Alone;
                }
            }
        }
        let renew = renew_while_loading(self.conn.clone(), lock_key.clone(), token.clone(), self.lease);
        let lease = Lease {
            renewal: match &self.runtime {
                Some(runtime) => runtime.spawn(renew),
                None => tokio::spawn(renew),
            },
            conn: self.conn.clone(),
            runtime: self.runtime.clone(),
            lock_key,
            token,
        };
        // The value may have landed between our read and the acquire: check
        // once more before doing the work.
        match read().await {
            Some(value) => {
                lease.release().await;
                Turn::Landed(value)
            }
            None => Turn::Lead(lease),
        }
    }

    async fn try_acquire(&self, lock_key: &str, token: &str) -> Result<bool> {
        let mut set = redis::cmd("SET");
        set.arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(self.lease));
        let mut conn = self.conn.clone();
        let reply: Option<String> = on(&self.runtime, async move { set.query_async(&mut conn).await })
            .await
            .unwrap_or_else(|| Err(closed_runtime()))?;
        Ok(reply.is_some())
    }

    async fn pause(&self, period: Duration) {
        // The timer registers where it is created: create it on the runtime.
        on(&self.runtime, async move { tokio::time::sleep(period).await }).await;
    }
}

/// Runs `work` on `runtime` when one is set, else in place. `None` when the
/// runtime shut down under it.
async fn on<F>(runtime: &Option<Handle>, work: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match runtime {
        Some(runtime) => runtime.spawn(work).await.ok(),
        None => Some(work.await),
    }
}

fn closed_runtime() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the lease runtime shut down"))
}

/// What [`DistributedLoader::turn`] decided for one caller.
#[derive(Debug)]
pub enum Turn<T> {
    /// Another process stored the value: here it is, as the reader returned it.
    Landed(T),
    /// This caller holds the lease: load, store, then [`Lease::release`].
    Lead(Lease),
    /// Waiting gave up (timeout or Redis failure): load without a lease.
    Alone,
}

/// A lease on one key in Redis, renewed in the background until released.
///
/// Dropping a lease without releasing it stops the renewal; the lease then
/// expires by itself.
#[derive(Debug)]
pub struct Lease {
    conn: RedisConnection,
    runtime: Option<Handle>,
    lock_key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Frees the lease if it is still ours (compare-and-delete), so waiters in
    /// other processes stop waiting at once.
    pub async fn release(mut self) {
        self.renewal.abort();
        let (lock_key, token) = (std::mem::take(&mut self.lock_key), std::mem::take(&mut self.token));
        let mut conn = self.conn.clone();
        let release = async move { RELEASE.key(lock_key).arg(token).invoke_async::<i64>(&mut conn).await };
        let released = on(&self.runtime, release)
            .await
            .unwrap_or_else(|| Err(closed_runtime()));
        if let Err(err) = released {
            tracing::debug!(error = %err, "lease release failed; it will expire by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// A failing cache reads as a miss here: the caller then loads.
async fn read(cache: &dyn Cache, key: &str) -> Option<Vec<u8>> {
    match cache.get_bytes(key).await {
        Ok(found) => found,
        Err(err) => {
            tracing::debug!(key, error = %err, "cache read failed during single-flight");
            None
        }
    }
}

/// Renews the lease at a third of its length until aborted or lost.
async fn renew_while_loading(mut conn: RedisConnection, lock_key: String, token: String, lease: Duration) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let renewed: redis::RedisResult<i64> = RENEW
            .key(&lock_key)
            .arg(&token)
            .arg(ttl_millis(lease))
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => return, // the lease is gone or someone else's: stop touching it
            Err(err) => tracing::debug!(error = %err, "lease renewal failed"),
        }
    }
}

/// 128 random bits, hex-encoded: a lease token no other holder can guess.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to time and address entropy. Uniqueness
        // across processes, not secrecy, is what the token needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (std::process::id() as u128) << 64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
