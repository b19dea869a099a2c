//! [`RedisCache`]: the cache API on one Redis server.

use crate::cache::{Cache, CacheExt, CorruptEntryPolicy};
use crate::codec::{Codec, MsgPack};
use crate::connection::{self, batch, Attempt, RedisConfig, RedisConnection};
use crate::error::{CacheError, Result};
use crate::keys::{effective_ttl, ttl_millis, Prefix};
use crate::pipeline::{Pipeline, Transform};
use crate::stats::CacheStats;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Where one command runs (see `RedisCache::route`).
enum Route {
    /// The live socket of the default connection number `index`.
    Direct {
        socket: redis::aio::MultiplexedConnection,
        attempt: Attempt,
        index: usize,
    },
    /// Any other connection, or the default one while it reconnects or
    /// fails fast.
    Handle(RedisConnection),
}

/// `prefix + key` as one Redis argument, written straight into the command
/// buffer: no `String` is built per call (the hot path of `get`).
struct PrefixedKey<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl redis::ToRedisArgs for PrefixedKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writing into a Vec cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

impl redis::ToSingleRedisArg for PrefixedKey<'_> {}

/// A cache on Redis.
///
/// Values are encoded by the codec (MessagePack by default), run through the
/// byte [`Pipeline`] (plain by default, so entries are byte-compatible with
/// other clients using the same codec, rick's `RedisCache` included) and
/// stored with `SET key value PX ttl`.
///
/// A server that stops answering costs one response timeout: the timeout
/// opens the connection's health breaker and later calls fail fast with a
/// connection error until a background `PING` is answered. A server that is
/// down at start is not an error either (the cache starts degraded and
/// connects in the background) unless
/// [`RedisCacheBuilder::fail_on_connection_error`] asks for a strict start.
///
/// ```no_run
/// use memorix_runtime::{Cache, CacheExt, RedisCache, RedisConfig};
/// use std::time::Duration;
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let cache = RedisCache::builder()
///     .config(RedisConfig::from_url("redis://127.0.0.1:6379/0")?)
///     .prefix("myapp:")
///     .connect()
///     .await?;
/// cache.set("user:1", &("Ada", 36), Some(Duration::from_secs(60))).await?;
/// let user: Option<(String, u32)> = cache.get("user:1").await?;
/// # let _ = user; Ok(()) }
/// ```
pub struct RedisCache {
    conns: ArcSwapOption<Vec<RedisConnection>>,
    next_conn: AtomicUsize,
    client: Option<redis::Client>,
    prefix: Prefix,
    codec: Arc<dyn Codec>,
    pipeline: Pipeline,
    default_ttl: Option<Duration>,
    retry_on_timeout: bool,
    on_corrupt: CorruptEntryPolicy,
    stats: CacheStats,
    health_check: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix.get())
            .field("codec", &self.codec.name())
            .field("pipeline", &self.pipeline)
            .field("default_ttl", &self.default_ttl)
            .field("closed", &self.conns.load().is_none())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisCache`].
#[must_use]
pub struct RedisCacheBuilder {
    config: Option<RedisConfig>,
    connection: Option<RedisConnection>,
    prefix: String,
    codec: Arc<dyn Codec>,
    pipeline: Pipeline,
    default_ttl: Option<Duration>,
    on_corrupt: CorruptEntryPolicy,
    fail_on_connection_error: Option<bool>,
}

impl Default for RedisCacheBuilder {
    fn default() -> Self {
        RedisCacheBuilder {
            config: None,
            connection: None,
            prefix: String::new(),
            codec: Arc::new(MsgPack),
            pipeline: Pipeline::plain(),
            default_ttl: None,
            on_corrupt: CorruptEntryPolicy::Error,
            fail_on_connection_error: None,
        }
    }
}

impl fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheBuilder")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

impl RedisCacheBuilder {
    /// Where to connect (default: `127.0.0.1:6379`).
    pub fn config(mut self, config: RedisConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Use a connection you built instead of opening one (rick's `backend=`).
    pub fn connection(mut self, connection: impl Into<RedisConnection>) -> Self {
        self.connection = Some(connection.into());
        self
    }

    /// Key prefix, e.g. `"myapp:prod:"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Codec for typed values (default: [`MsgPack`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Adds a byte transform (compression, encryption) after the codec.
    pub fn transform(mut self, stage: Arc<dyn Transform>) -> Self {
        self.pipeline = self.pipeline.then(stage);
        self
    }

    /// TTL used when a write passes `None`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// What typed reads do with entries that do not decode.
    pub fn on_corrupt_entry(mut self, policy: CorruptEntryPolicy) -> Self {
        self.on_corrupt = policy;
        self
    }

    /// Strict start: `connect()` returns the connection error when Redis is
    /// unreachable (default `false`, or the config's
    /// [`RedisConfig::fail_on_connection_error`]).
    ///
    /// By default the cache starts degraded instead, so a service boots
    /// during a Redis outage: every call fails fast with a connection error
    /// (memoized functions run their body uncached) while the connection is
    /// opened in the background, and the cache uses Redis as soon as it
    /// answers, without a restart. Applies to a standalone server; cluster
    /// and sentinel configs need their seed nodes at start.
    pub fn fail_on_connection_error(mut self, fail: bool) -> Self {
        self.fail_on_connection_error = Some(fail);
        self
    }

    /// Opens the connection (unless one was given) and builds the cache.
    /// An unreachable server starts the cache degraded unless
    /// [`fail_on_connection_error`](Self::fail_on_connection_error) is set.
    pub async fn connect(self) -> Result<RedisCache> {
        if self.default_ttl.is_some_and(|t| t.is_zero()) {
            return Err(CacheError::config("default_ttl", "must be greater than zero"));
        }
        let mut config = self.config.clone().unwrap_or_default();
        if let Some(fail) = self.fail_on_connection_error {
            config.fail_on_connection_error = fail;
        }
        let opened = self.connection.is_none();
        let (client, conns) = match self.connection.clone() {
            Some(conn) => (None, vec![conn]),
            None => connection::open(&config).await?,
        };
        let conns = Arc::new(conns);
        let health_check = match (opened, config.health_check_interval()) {
            (true, Some(every)) => Some(tokio::spawn(health_check(Arc::downgrade(&conns), every))),
            _ => None,
        };
        Ok(RedisCache {
            conns: ArcSwapOption::new(Some(conns)),
            next_conn: AtomicUsize::new(0),
            client,
            prefix: Prefix::new(self.prefix),
            codec: self.codec,
            pipeline: self.pipeline,
            default_ttl: self.default_ttl,
            retry_on_timeout: config.retry_on_timeout(),
            on_corrupt: self.on_corrupt,
            stats: CacheStats::default(),
            health_check,
        })
    }
}

/// Pings every connection at `every`, so a broken one reconnects before a
/// caller needs it. Stops when the cache is dropped or closed.
async fn health_check(conns: std::sync::Weak<Vec<RedisConnection>>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(conns) = conns.upgrade() else { return };
        for conn in conns.iter() {
            let mut conn = conn.clone();
            if let Err(err) = redis::cmd("PING").query_async::<()>(&mut conn).await {
                tracing::debug!(error = %err, "redis health check failed");
            }
        }
    }
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        if let Some(task) = &self.health_check {
            task.abort();
        }
    }
}

impl RedisCache {
    /// A builder with the defaults: `127.0.0.1:6379`, MessagePack, no prefix.
    pub fn builder() -> RedisCacheBuilder {
        RedisCacheBuilder::default()
    }

    /// Connects with `config` and the defaults for everything else.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        Self::builder().config(config).connect().await
    }

    /// Wraps a connection you already built (rick's `backend=`).
    pub async fn with_connection(connection: impl Into<RedisConnection>) -> Result<Self> {
        Self::builder().connection(connection).connect().await
    }

    /// The underlying connection, for pipelines, scripts, `INFO` and anything
    /// else redis-rs can do. Cloning it is cheap; it shares the socket.
    pub fn client(&self) -> Result<RedisConnection> {
        let conns = self.conns.load();
        let conns = conns.as_ref().ok_or(CacheError::Closed)?;
        Ok(conns[self.next_index(conns.len())].clone())
    }

    /// Reads and decodes `key`, exactly as [`CacheExt::get`] does, minus the
    /// boxed future every call through the object-safe [`Cache`] trait pays
    /// (this is the method `cache.get(..)` resolves to on a `RedisCache`).
    ///
    /// [`CacheExt::get`]: crate::CacheExt::get
    pub async fn get<T: DeserializeOwned + Send>(&self, key: &str) -> Result<Option<T>> {
        CacheExt::decode_found(self, self.read(key).await)
    }

    /// Encodes and stores `value`, exactly as [`CacheExt::set`] does, minus
    /// the boxed future of the object-safe [`Cache`] trait (this is the
    /// method `cache.set(..)` resolves to on a `RedisCache`).
    ///
    /// [`CacheExt::set`]: crate::CacheExt::set
    pub async fn set<T>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()>
    where
        T: serde::Serialize + ?Sized + Sync,
    {
        let bytes = crate::codec::encode(self.codec.as_ref(), value)?;
        self.run(&self.set_cmd(key, &bytes, ttl)?).await
    }

    /// Which connection the next command runs on. One connection (the
    /// default) needs no counter: a shared atomic bumped by every call costs
    /// cross-core traffic on the hot path.
    fn next_index(&self, len: usize) -> usize {
        match len {
            1 => 0,
            n => self.next_conn.fetch_add(1, Relaxed) % n,
        }
    }

    /// The connection for the next command: the default connection's live
    /// socket itself while it is up and healthy (no shared handle cloned per
    /// call, which is a contended reference count), else a handle, which
    /// waits for a reconnect in progress or fails fast.
    fn route(&self) -> Result<Route> {
        let conns = self.conns.load();
        let conns = conns.as_ref().ok_or(CacheError::Closed)?;
        let index = self.next_index(conns.len());
        Ok(match &conns[index] {
            RedisConnection::Reconnecting(conn) => match conn.up() {
                Some((socket, attempt)) => Route::Direct { socket, attempt, index },
                None => Route::Handle(conns[index].clone()),
            },
            other => Route::Handle(other.clone()),
        })
    }

    /// Tells the default connection `index` how the command of `attempt`
    /// on its socket went: a failure may open its health breaker or start a
    /// reconnect; a success resets a failure count, if one was running.
    fn report(&self, index: usize, attempt: Attempt, outcome: std::result::Result<(), &redis::RedisError>) {
        if let Some(conns) = self.conns.load().as_ref() {
            if let Some(RedisConnection::Reconnecting(conn)) = conns.get(index) {
                match outcome {
                    Ok(()) => conn.succeeded(attempt),
                    Err(err) => conn.failed(attempt, err),
                }
            }
        }
    }

    /// The redis-rs `Client` this cache opened its connections with, for
    /// pub/sub and other dedicated connections. `None` when the cache wraps a
    /// connection given to [`RedisCache::with_connection`], and on a cluster
    /// or sentinel config (no single server to point a client at).
    pub fn redis_client(&self) -> Option<&redis::Client> {
        self.client.as_ref()
    }

    /// The byte pipeline between the codec and Redis.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Deletes every key in the current database, whatever its prefix: rick's
    /// `purge()`. Prefer [`Cache::purge`], which removes only this cache's keys.
    pub async fn flush_db(&self) -> Result<()> {
        self.run(&redis::cmd("FLUSHDB")).await
    }

    /// Remaining time to live of `key`: `None` if the key does not exist or has
    /// no expiry.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let ms: i64 = self.run(&self.key_cmd("PTTL", key)).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// `name prefix+key`.
    fn key_cmd(&self, name: &str, key: &str) -> redis::Cmd {
        let prefix = self.prefix.current();
        let mut cmd = redis::cmd(name);
        cmd.arg(PrefixedKey { prefix: &prefix, key });
        cmd
    }

    /// Runs a command with this cache's timeout-retry policy. The retry
    /// takes a fresh route: after a timeout that opened the health breaker
    /// it fails fast instead of waiting out a second timeout.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        match self.run_once(cmd).await? {
            Err(err) if err.is_timeout() && self.retry_on_timeout => Ok(self.run_once(cmd).await??),
            other => Ok(other?),
        }
    }

    async fn run_once<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<redis::RedisResult<T>> {
        Ok(match self.route()? {
            Route::Direct {
                mut socket,
                attempt,
                index,
            } => {
                let result = cmd.query_async(&mut socket).await;
                if attempt.counting() || result.is_err() {
                    self.report(index, attempt, result.as_ref().map(|_| ()));
                }
                result
            }
            Route::Handle(mut conn) => cmd.query_async(&mut conn).await,
        })
    }

    /// Runs a pipeline with this cache's timeout-retry policy.
    async fn run_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.client()?;
        match pipe.query_async(&mut conn).await {
            Err(err) if err.is_timeout() && self.retry_on_timeout => Ok(pipe.query_async(&mut conn).await?),
            other => Ok(other?),
        }
    }

    fn set_cmd(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<redis::Cmd> {
        let sealed = self.pipeline.seal(value)?;
        let mut cmd = self.key_cmd("SET", key);
        cmd.arg(sealed.as_ref());
        if let Some(ttl) = effective_ttl(ttl, self.default_ttl)? {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        Ok(cmd)
    }

    /// `GET` of `key`, through the byte pipeline.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let stored: Option<Vec<u8>> = self.run(&self.key_cmd("GET", key)).await?;
        self.open_entry(stored)
    }

    fn open_entry(&self, stored: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        match stored {
            Some(bytes) => {
                self.stats.record_hit();
                self.pipeline.open(bytes).map(Some)
            }
            None => {
                self.stats.record_miss();
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(key).await
    }

    async fn set_bytes(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.run(&self.set_cmd(key, value, ttl)?).await
    }

    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<Option<Vec<u8>>> = match self.client()? {
            // One MGET per slot, one pipeline per primary.
            RedisConnection::Cluster(mut cluster) => {
                let keys: Vec<String> = keys.iter().map(|key| self.prefix.apply(key)).collect();
                cluster.mget(&keys).await?
            }
            _ => {
                let mut cmd = redis::cmd("MGET");
                let prefix = self.prefix.current();
                for key in keys {
                    cmd.arg(PrefixedKey { prefix: &prefix, key });
                }
                drop(prefix); // not held across the round trip
                self.run(&cmd).await?
            }
        };
        stored.into_iter().map(|entry| self.open_entry(entry)).collect()
    }

    async fn set_many_bytes(&self, entries: &[(&str, &[u8])], ttl: Option<Duration>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if let conn @ RedisConnection::Cluster(_) = &mut self.client()? {
            // A pipeline may not span slots on a cluster: one per primary instead.
            let cmds = entries
                .iter()
                .map(|(key, value)| Ok((self.prefix.apply(key), self.set_cmd(key, value, ttl)?)))
                .collect::<Result<Vec<_>>>()?;
            return batch::first_error(&batch::run_keyed(conn, cmds).await?);
        }
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            pipe.add_command(self.set_cmd(key, value, ttl)?).ignore();
        }
        self.run_pipe(&pipe).await
    }

    async fn has(&self, key: &str) -> Result<bool> {
        let count: u64 = self.run(&self.key_cmd("EXISTS", key)).await?;
        Ok(count > 0)
    }

    async fn remove(&self, key: &str) -> Result<bool> {
        let count: u64 = self.run(&self.key_cmd("UNLINK", key)).await?;
        Ok(count > 0)
    }

    /// Removes every key of this cache's namespace, on every primary of a
    /// cluster. An empty prefix, or one that does not end in a separator, is
    /// refused with [`CacheError::Config`] (see [`Cache::purge`]).
    async fn purge(&self) -> Result<()> {
        let prefix = self.prefix.get();
        batch::namespace_pattern(&prefix)?;
        batch::purge(&mut self.client()?, &prefix).await
    }

    async fn close(&self) -> Result<()> {
        if let Some(task) = &self.health_check {
            task.abort();
        }
        self.conns.store(None);
        Ok(())
    }

    fn prefix(&self) -> String {
        self.prefix.get()
    }

    fn set_prefix(&self, prefix: &str) {
        self.prefix.set(prefix);
    }

    fn codec(&self) -> &dyn Codec {
        self.codec.as_ref()
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }

    fn corrupt_entry_policy(&self) -> CorruptEntryPolicy {
        self.on_corrupt
    }

    fn redis_connection(&self) -> Option<RedisConnection> {
        self.client().ok()
    }
}
