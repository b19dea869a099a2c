//! A standalone server's self-healing connection, thinner than redis-rs's
//! `ConnectionManager`.
//!
//! `ConnectionManager` keeps its connection as a shared future: every command
//! clones that future, polls it, clones the connection out of it, and holds an
//! `ArcSwap` guard across the whole round trip. With many commands in flight
//! that costs about a tenth of a 1 KiB GET's throughput (BENCHMARKS.md).
//! [`ReconnectingConnection`] keeps the live `MultiplexedConnection` itself in
//! an `ArcSwap`: a command loads it, clones it and lets go before sending, as a
//! caller of a plain multiplexed connection would.
//!
//! When a command fails because the connection broke (dropped, reset,
//! refused, unparsable reply: redis-rs's `is_unrecoverable_error`), exactly
//! one task reconnects, whichever command noticed first (single flight: the
//! state moves from `Up` to `Connecting` by compare-and-swap). What callers
//! see while it works is chosen for a cache, where an error is a miss and a
//! hang is an outage:
//!
//! - `Connecting`: the first `1 + reconnect_retries` attempts, a few tens of
//!   milliseconds apart (a restart, an idle connection closed by a proxy).
//!   Callers wait for the outcome, but never longer than the connect or
//!   response timeout, whichever is shorter.
//! - `Down`: those attempts failed. Callers fail at once with a connection
//!   error (`CacheError::is_connection`) and never queue up; the task keeps
//!   trying, backing off to one attempt every 500 ms, until the server
//!   answers or the last clone of the connection is dropped.
//!
//! A timeout alone does not reconnect: the connection may be fine and the
//! server busy (`CLIENT PAUSE`, a slow script), and a new socket would
//! reorder the commands still queued on the old one. `ConnectionManager`
//! draws the same line.

use super::{client_for, RedisConfig, RedisConnection};
use crate::error::{CacheError, Result};
use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Pause after the first failed attempt; doubles after each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// Longest pause between two attempts while the server stays away.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// A multiplexed connection to one Redis server that reconnects by itself,
/// cheap to clone (every clone shares the socket and the reconnect state).
///
/// `RedisCache::connect` opens these for a standalone config; build one
/// yourself with [`ReconnectingConnection::open`] to share it between
/// caches, rate limiters and your own redis-rs commands. TLS, ACL user,
/// password, database, timeouts and keepalive all come from the
/// [`RedisConfig`], as for every other connection memorix opens.
///
/// ```no_run
/// use memorix_runtime::{RedisCache, RedisConfig, ReconnectingConnection};
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let config = RedisConfig::from_url("redis://127.0.0.1:6379/0?response_timeout=250ms")?;
/// let conn = ReconnectingConnection::open(&config).await?;
/// let cache = RedisCache::with_connection(conn.clone()).await?;
/// assert!(conn.is_connected());
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReconnectingConnection {
    shared: Arc<Shared>,
}

struct Shared {
    /// Opens new connections: address, TLS, credentials, database.
    client: redis::Client,
    conn_config: AsyncConnectionConfig,
    link: ArcSwap<Link>,
    /// Woken on every change of `link`, for callers waiting on a reconnect.
    changed: Notify,
    /// Longest a caller waits for a reconnect in progress.
    wait_limit: Duration,
    /// Attempts made while callers wait, before the connection counts as down.
    quick_attempts: usize,
    /// The runtime the connection was opened on: reconnect tasks run on the
    /// caller's runtime, or on this one when called from outside any.
    runtime: tokio::runtime::Handle,
    db: i64,
    /// Successful reconnects since the connection was opened.
    reconnects: AtomicU64,
}

/// The state every clone shares.
enum Link {
    /// Connected. `generation` counts successful connects, so a late failure
    /// of a replaced connection starts nothing.
    Up {
        conn: MultiplexedConnection,
        generation: u64,
    },
    /// The connection broke; the first attempts are running and callers wait
    /// for them (briefly).
    Connecting,
    /// Those attempts failed; callers fail fast while attempts go on.
    Down,
}

impl Link {
    fn name(&self) -> &'static str {
        match self {
            Link::Up { .. } => "up",
            Link::Connecting => "connecting",
            Link::Down => "down",
        }
    }
}

impl std::fmt::Debug for ReconnectingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address only: never the password or the ACL user.
        f.debug_struct("ReconnectingConnection")
            .field("addr", &self.shared.client.get_connection_info().addr().to_string())
            .field("db", &self.shared.db)
            .field("state", &self.shared.link.load().name())
            .field("reconnects", &self.reconnects())
            .finish()
    }
}

impl From<ReconnectingConnection> for RedisConnection {
    fn from(conn: ReconnectingConnection) -> Self {
        RedisConnection::Reconnecting(conn)
    }
}

/// The error a caller gets while the connection is down: an I/O error of
/// kind `NotConnected`, so it counts as a connection error everywhere
/// (`CacheError::is_connection`, redis-rs's `is_connection_dropped`).
fn down_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "redis connection is down; reconnecting in the background",
    ))
}

/// True when the socket is unusable and a new one is needed. Timeouts are
/// not: the server may only be slow (see the module docs).
fn breaks_connection(err: &RedisError) -> bool {
    !err.is_timeout() && (err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error())
}

impl ReconnectingConnection {
    /// Opens a connection to the standalone server in `config`.
    ///
    /// The first connect is tried `1 + config.reconnect_retries()` times, a
    /// few tens of milliseconds apart, each within the connect timeout. A
    /// cluster or sentinel config is an error naming `topology`
    /// (`RedisCache::connect` opens those with their own connection types).
    pub async fn open(config: &RedisConfig) -> Result<Self> {
        let client = client_for(config)?;
        Self::open_with_client(client, config).await
    }

    /// [`open`](Self::open) with a client already built from `config`.
    pub(crate) async fn open_with_client(client: redis::Client, config: &RedisConfig) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| CacheError::config("runtime", "a Redis connection must be opened inside a tokio runtime"))?;
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.response_timeout()));
        let quick_attempts = config.reconnect_retries().saturating_add(1);
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        let conn = loop {
            match client.get_multiplexed_async_connection_with_config(&conn_config).await {
                Ok(conn) => break conn,
                Err(err) if attempt >= quick_attempts => return Err(err.into()),
                Err(err) => tracing::debug!(error = %err, attempt, "redis: connect failed, retrying"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
            attempt += 1;
        };
        Ok(ReconnectingConnection {
            shared: Arc::new(Shared {
                client,
                conn_config,
                link: ArcSwap::from_pointee(Link::Up { conn, generation: 0 }),
                changed: Notify::new(),
                wait_limit: config.connect_timeout().min(config.response_timeout()),
                quick_attempts,
                runtime,
                db: config.db(),
                reconnects: AtomicU64::new(0),
            }),
        })
    }

    /// True while the connection is up (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        matches!(**self.shared.link.load(), Link::Up { .. })
    }

    /// How many times the connection has been re-opened since it was first
    /// opened.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Relaxed)
    }

    /// The redis-rs client new connections are opened with (for pub/sub and
    /// other dedicated connections).
    pub fn redis_client(&self) -> &redis::Client {
        &self.shared.client
    }

    /// The live connection and its generation, if up. A caller that runs a
    /// command on it directly reports a failure with [`failed`](Self::failed).
    pub(crate) fn up(&self) -> Option<(MultiplexedConnection, u64)> {
        match &**self.shared.link.load() {
            Link::Up { conn, generation } => Some((conn.clone(), *generation)),
            _ => None,
        }
    }

    /// The live connection and its generation: at once when up, else after
    /// waiting (briefly) for a reconnect in progress; fails fast while down.
    async fn connection(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        match self.up() {
            Some(up) => Ok(up),
            None => self.wait_for_reconnect().await,
        }
    }

    async fn wait_for_reconnect(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        let deadline = tokio::time::Instant::now() + self.shared.wait_limit;
        loop {
            // Registered before the state is read, so no change is missed.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match &**self.shared.link.load() {
                Link::Up { conn, generation } => return Ok((conn.clone(), *generation)),
                Link::Down => return Err(down_error()),
                Link::Connecting => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(down_error());
            }
        }
    }

    /// After a command on the connection of `generation` failed with `err`:
    /// starts a reconnect if the connection broke and nobody else has.
    pub(crate) fn failed(&self, generation: u64, err: &RedisError) {
        if !breaks_connection(err) {
            return;
        }
        let before = self.shared.link.rcu(|link| match **link {
            Link::Up { generation: g, .. } if g == generation => Arc::new(Link::Connecting),
            _ => Arc::clone(link),
        });
        // Only the caller that moved `Up(generation)` to `Connecting` starts
        // the task: every other one saw `Connecting`, `Down` or a newer `Up`.
        if matches!(*before, Link::Up { generation: g, .. } if g == generation) {
            tracing::warn!(error = %err, "redis: connection broken, reconnecting");
            self.shared.changed.notify_waiters();
            // The caller's runtime is alive by definition; the one the
            // connection was opened on may have shut down since.
            let task = reconnect(Arc::downgrade(&self.shared), generation);
            match tokio::runtime::Handle::try_current() {
                Ok(current) => current.spawn(task),
                Err(_) => self.shared.runtime.spawn(task),
            };
        }
    }
}

/// Re-opens the connection of `generation` until it works or the last clone
/// is dropped: `Connecting` for the quick attempts, then `Down`.
async fn reconnect(weak: Weak<Shared>, generation: u64) {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut failures = 0usize;
    loop {
        let Some(shared) = weak.upgrade() else { return };
        match shared
            .client
            .get_multiplexed_async_connection_with_config(&shared.conn_config)
            .await
        {
            Ok(conn) => {
                shared.link.store(Arc::new(Link::Up {
                    conn,
                    generation: generation + 1,
                }));
                shared.reconnects.fetch_add(1, Relaxed);
                shared.changed.notify_waiters();
                tracing::info!(failures, took = ?started.elapsed(), "redis: reconnected");
                return;
            }
            Err(err) => {
                failures += 1;
                let connecting = matches!(**shared.link.load(), Link::Connecting);
                if connecting && (failures >= shared.quick_attempts || started.elapsed() >= shared.wait_limit) {
                    shared.link.store(Arc::new(Link::Down));
                    shared.changed.notify_waiters();
                    tracing::warn!(error = %err, "redis: server unreachable; calls fail fast until it answers");
                } else {
                    tracing::debug!(error = %err, failures, "redis: reconnect failed, retrying");
                }
            }
        }
        drop(shared);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

impl ConnectionLike for ReconnectingConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut conn, generation) = self.connection().await?;
            let result = conn.send_packed_command(cmd).await;
            if let Err(err) = &result {
                self.failed(generation, err);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut conn, generation) = self.connection().await?;
            let result = conn.send_packed_commands(pipeline, offset, count).await;
            if let Err(err) = &result {
                self.failed(generation, err);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}
