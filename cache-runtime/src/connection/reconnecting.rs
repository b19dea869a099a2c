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
//! draws the same line. But a timeout does count against the connection's
//! [`Health`]: a server that stopped answering costs one waited-out timeout,
//! after which calls fail fast until a probe's `PING` is answered again
//! (see `health.rs`).
//!
//! When the server is unreachable at start, the connection starts `Down`
//! and connects in the background, unless the config asks for a strict
//! start (`RedisConfig::fail_on_connection_error`).

use super::health::{self, Health, Probe, Ticket};
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
    /// Shared by every connection of one pool: a timeout makes all of them
    /// fail fast until the server answers a probe again.
    health: Health,
    /// How long a health probe waits for `PING`.
    probe_deadline: Duration,
}

/// A command let through to the live socket: the socket's generation (for
/// reconnects) and the health ticket (for the breaker).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    generation: u64,
    ticket: Ticket,
}

impl Attempt {
    /// True when the outcome must be reported even if it is a success (a
    /// failure count is running).
    #[inline]
    pub(crate) fn counting(&self) -> bool {
        self.ticket.counting()
    }
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

/// True when a connect failed because the server could not be reached (as
/// opposed to refusing the credentials or the database).
fn unreachable(err: &RedisError) -> bool {
    err.is_connection_refusal() || err.is_io_error() || err.is_timeout() || err.is_connection_dropped()
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
    /// few tens of milliseconds apart, each within the connect timeout. If
    /// they all fail, the connection starts down and keeps connecting in the
    /// background (calls fail fast meanwhile), or, with
    /// [`RedisConfig::fail_on_connection_error`], the error is returned. A
    /// cluster or sentinel config is an error naming `topology`
    /// (`RedisCache::connect` opens those with their own connection types).
    pub async fn open(config: &RedisConfig) -> Result<Self> {
        let client = client_for(config)?;
        Self::open_with_client(client, config, Health::for_connections(), false).await
    }

    /// [`open`](Self::open) with a client already built from `config`, and
    /// the health shared by the pool it belongs to; `start_down` skips the
    /// first attempts (another connection of the pool just failed them).
    pub(crate) async fn open_with_client(
        client: redis::Client,
        config: &RedisConfig,
        health: Health,
        start_down: bool,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| CacheError::config("runtime", "a Redis connection must be opened inside a tokio runtime"))?;
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.response_timeout()));
        let quick_attempts = config.reconnect_retries().saturating_add(1);
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        let link = loop {
            if start_down {
                break Link::Down;
            }
            match client.get_multiplexed_async_connection_with_config(&conn_config).await {
                Ok(conn) => break Link::Up { conn, generation: 0 },
                // A refused password or an unknown database is a
                // configuration error, not an outage: no degraded start.
                Err(err) if attempt >= quick_attempts && (config.fail_on_connection_error() || !unreachable(&err)) => {
                    return Err(err.into())
                }
                Err(err) if attempt >= quick_attempts => {
                    tracing::warn!(error = %err, "redis unreachable at start; calls fail fast while it connects in the background");
                    break Link::Down;
                }
                Err(err) => tracing::debug!(error = %err, attempt, "redis: connect failed, retrying"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
            attempt += 1;
        };
        let down = matches!(link, Link::Down);
        let conn = ReconnectingConnection {
            shared: Arc::new(Shared {
                client,
                conn_config,
                link: ArcSwap::from_pointee(link),
                changed: Notify::new(),
                wait_limit: config.connect_timeout().min(config.response_timeout()),
                quick_attempts,
                runtime,
                db: config.db(),
                reconnects: AtomicU64::new(0),
                health,
                probe_deadline: Health::probe_deadline(config.response_timeout()),
            }),
        };
        if down {
            tokio::spawn(reconnect(Arc::downgrade(&conn.shared), 0));
        }
        Ok(conn)
    }

    /// True while the connection is up (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        matches!(**self.shared.link.load(), Link::Up { .. })
    }

    /// True while calls go to the server: connected, and the server answered
    /// the last call or probe (false while calls fail fast because it timed
    /// out or went away).
    pub fn is_healthy(&self) -> bool {
        self.is_connected() && self.shared.health.is_closed()
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

    /// The live connection, if up and healthy. A caller that runs a command
    /// on it directly reports the outcome with [`succeeded`](Self::succeeded)
    /// or [`failed`](Self::failed).
    #[inline]
    pub(crate) fn up(&self) -> Option<(MultiplexedConnection, Attempt)> {
        let ticket = self.shared.health.admit()?;
        match &**self.shared.link.load() {
            Link::Up { conn, generation } => Some((
                conn.clone(),
                Attempt {
                    generation: *generation,
                    ticket,
                },
            )),
            _ => None,
        }
    }

    /// The live connection: at once when up, else after waiting (briefly)
    /// for a reconnect in progress; fails fast while down or unhealthy.
    async fn connection(&self) -> RedisResult<(MultiplexedConnection, Attempt)> {
        let Some(ticket) = self.shared.health.admit() else {
            return Err(health::unanswered_error());
        };
        let (conn, generation) = match &**self.shared.link.load() {
            Link::Up { conn, generation } => (conn.clone(), *generation),
            _ => self.wait_for_reconnect().await?,
        };
        Ok((conn, Attempt { generation, ticket }))
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

    /// The command of `attempt` was answered.
    #[inline]
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        self.shared.health.success(attempt.ticket);
    }

    /// After the command of `attempt` failed with `err`: a timeout counts
    /// against health (opening it starts the probe); a broken connection
    /// starts a reconnect unless another caller did (while it runs, callers
    /// wait briefly, then fail fast: the `Link` states above).
    pub(crate) fn failed(&self, attempt: Attempt, err: &RedisError) {
        if err.is_timeout() && self.shared.health.failure(attempt.ticket) {
            tracing::warn!(error = %err, "redis: not answering; calls fail fast until it does");
            self.spawn_probe();
        }
        if !breaks_connection(err) {
            return;
        }
        let generation = attempt.generation;
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

    /// Probes the server with `PING` on the live socket until it answers
    /// within the probe deadline. While the socket is being re-opened the
    /// probe waits: the reconnect closes the breaker itself.
    fn spawn_probe(&self) {
        let weak = Arc::downgrade(&self.shared);
        self.shared.health.spawn_probe(move || {
            let weak = weak.clone();
            Box::pin(async move {
                let Some(shared) = weak.upgrade() else {
                    return Probe::Stop;
                };
                let Link::Up { conn, .. } = &**shared.link.load() else {
                    return Probe::Silent;
                };
                let mut conn = conn.clone();
                let deadline = shared.probe_deadline;
                drop(shared);
                let ping = redis::cmd("PING");
                match tokio::time::timeout(deadline, ping.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => Probe::Answered,
                    _ => Probe::Silent,
                }
            })
        });
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
                // A fresh connection that completed its handshake: the
                // server answers.
                shared.health.close();
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
            let (mut conn, attempt) = self.connection().await?;
            let result = conn.send_packed_command(cmd).await;
            match &result {
                Ok(_) => self.succeeded(attempt),
                Err(err) => self.failed(attempt, err),
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
            let (mut conn, attempt) = self.connection().await?;
            let result = conn.send_packed_commands(pipeline, offset, count).await;
            match &result {
                Ok(_) => self.succeeded(attempt),
                Err(err) => self.failed(attempt, err),
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}
