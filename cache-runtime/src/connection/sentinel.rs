//! Redis Sentinel: a connection to the current primary that follows failovers.
//!
//! redis-rs's `SentinelClient` finds the primary (asking each sentinel, then
//! checking with `ROLE` that the node really is a primary) but hands out plain
//! connections to that one address: after a failover they keep talking to
//! the dead or demoted node. [`SentinelConnection`] wraps the current
//! primary's multiplexed connection and asks the sentinels again, in the
//! background, as soon as a command fails in a way a failover causes: the
//! connection broke or timed out, or the node answered `READONLY` (it was
//! demoted to replica). Commands keep failing fast until the new primary is
//! found, then run on it; no restart needed.
//!
//! A failover that leaves the old primary running (`SENTINEL FAILOVER`, a
//! network partition healing) produces no error at first: the old node keeps
//! accepting writes until the sentinels reconfigure it, which can take ten
//! seconds. So a background task also asks a sentinel for the primary's
//! address once a second (`SENTINEL GET-MASTER-ADDR-BY-NAME`, one small
//! command) and switches as soon as the answer changes.

use super::health::{self, Health, Probe, Ticket};
use super::{connection_info, RedisConfig, RedisConnection};
use crate::error::{CacheError, Result};
use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, RedisError, RedisFuture, ServerErrorKind, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sentinels are asked whether the primary moved.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long the background task keeps asking the sentinels for a new primary
/// before it gives up (the next failing command starts it again).
const REDISCOVERY_WINDOW: Duration = Duration::from_secs(60);

/// A connection to the primary that Redis Sentinel names, cheap to clone.
///
/// Every clone shares one multiplexed connection and one view of which node
/// is primary. When a command fails because the primary went away (broken
/// connection, timeout, `READONLY` from a demoted node), the sentinels are
/// asked again in the background and the connection moves to the new primary.
///
/// ```no_run
/// use memorix_runtime::{RedisCache, RedisConfig};
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let config = RedisConfig::from_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0")?;
/// let cache = RedisCache::connect(config).await?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<Shared>,
}

struct Shared {
    master_name: String,
    resolver: Resolver,
    current: ArcSwap<Primary>,
    rediscovering: AtomicBool,
    db: i64,
    /// Shared by the pool: a primary that stops answering makes every
    /// connection fail fast until it answers again or a new one is found.
    health: Health,
    probe_deadline: Duration,
}

/// Finds the primary: the sentinels to ask and how to connect to the answer.
struct Resolver {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    conn_config: AsyncConnectionConfig,
    timeout: Duration,
}

struct Primary {
    client: redis::Client,
    conn: MultiplexedConnection,
    /// Bumped on every switch, so late failures of the old connection do not
    /// trigger another rediscovery.
    generation: u64,
}

impl std::fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let primary = self.shared.current.load();
        f.debug_struct("SentinelConnection")
            .field("master_name", &self.shared.master_name)
            .field("primary", &primary.client.get_connection_info().addr().to_string())
            .field("switches", &primary.generation)
            .finish()
    }
}

impl From<SentinelConnection> for RedisConnection {
    fn from(conn: SentinelConnection) -> Self {
        RedisConnection::Sentinel(conn)
    }
}

/// True for failures a failover causes: the node is gone, silent, or no
/// longer primary.
fn points_to_failover(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

fn is_readonly_reply(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if err.kind() == Some(ServerErrorKind::ReadOnly))
}

impl SentinelConnection {
    /// Name of the primary the sentinels are asked for.
    pub fn master_name(&self) -> &str {
        &self.shared.master_name
    }

    /// A redis-rs client for the current primary, for pub/sub or other
    /// dedicated connections. It points at one node: ask again after a
    /// failover.
    pub fn primary_client(&self) -> redis::Client {
        self.shared.current.load().client.clone()
    }

    /// `host:port` of the node currently used as primary.
    pub fn primary_addr(&self) -> String {
        self.shared
            .current
            .load()
            .client
            .get_connection_info()
            .addr()
            .to_string()
    }

    /// Starts a background rediscovery unless one is running or the primary
    /// has already been replaced since `generation`.
    fn rediscover(&self, generation: u64) {
        let shared = &self.shared;
        if shared.current.load().generation != generation {
            return;
        }
        if shared.rediscovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(shared);
        tokio::spawn(rediscover(weak, generation));
    }

    /// Lets a call through unless the primary is known not to answer.
    fn admit(&self) -> redis::RedisResult<Ticket> {
        self.shared.health.admit().ok_or_else(health::unanswered_error)
    }

    /// Reports a call's outcome to the health breaker: a timeout counts
    /// against it (and starts the probe when it opens it).
    fn record(&self, ticket: Ticket, err: Option<&RedisError>) {
        match err {
            None => self.shared.health.success(ticket),
            Some(err) if err.is_timeout() && self.shared.health.failure(ticket) => {
                tracing::warn!(master = %self.shared.master_name, "sentinel: primary not answering; calls fail fast until it does");
                let weak = Arc::downgrade(&self.shared);
                self.shared.health.spawn_probe(move || Box::pin(probe(weak.clone())));
            }
            Some(_) => {}
        }
    }

    fn check(&self, generation: u64, result: &redis::RedisResult<Value>) {
        match result {
            Err(err) if points_to_failover(err) => self.rediscover(generation),
            Ok(value) if is_readonly_reply(value) => self.rediscover(generation),
            _ => {}
        }
    }
}

/// One health probe: `PING` on the primary in use, within the probe deadline.
async fn probe(weak: Weak<Shared>) -> Probe {
    let Some(shared) = weak.upgrade() else {
        return Probe::Stop;
    };
    let mut conn = shared.current.load().conn.clone();
    let deadline = shared.probe_deadline;
    drop(shared);
    let ping = redis::cmd("PING");
    match tokio::time::timeout(deadline, ping.query_async::<()>(&mut conn)).await {
        Ok(Ok(())) => Probe::Answered,
        _ => Probe::Silent,
    }
}

/// Asks the sentinels for the primary until one answers or the window closes.
async fn rediscover(weak: Weak<Shared>, generation: u64) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        match resolve(&shared.resolver).await {
            Ok((client, conn)) => {
                let addr = client.get_connection_info().addr().to_string();
                shared.current.store(Arc::new(Primary {
                    client,
                    conn,
                    generation: generation + 1,
                }));
                shared.rediscovering.store(false, Ordering::Release);
                // A fresh connection to the primary the sentinels name.
                shared.health.close();
                tracing::info!(master = %shared.master_name, primary = %addr, "sentinel: now using this primary");
                return;
            }
            Err(err) if started.elapsed() > REDISCOVERY_WINDOW => {
                shared.rediscovering.store(false, Ordering::Release);
                tracing::warn!(master = %shared.master_name, error = %err, "sentinel: no primary found; will retry on the next failure");
                return;
            }
            Err(err) => {
                tracing::debug!(master = %shared.master_name, error = %err, "sentinel: primary not found yet");
            }
        }
        drop(shared);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Asks a sentinel for the primary's address every [`WATCH_INTERVAL`] and
/// starts a rediscovery when it differs from the one in use. Ends when the
/// last clone of the connection is dropped.
async fn watch(weak: Weak<Shared>, sentinels: Vec<redis::ConnectionInfo>, conn_config: AsyncConnectionConfig) {
    let mut cached: Option<(usize, MultiplexedConnection)> = None;
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(shared) = weak.upgrade() else { return };
        let Some((host, port)) = ask_primary_addr(&shared.master_name, &sentinels, &mut cached, &conn_config).await
        else {
            continue;
        };
        let primary = shared.current.load_full();
        let (in_use_host, in_use_port) = host_port(&primary.client);
        if in_use_host != host || in_use_port != port {
            tracing::debug!(master = %shared.master_name, %host, port, "sentinel: primary moved");
            SentinelConnection { shared }.rediscover(primary.generation);
        }
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`, from the first sentinel that answers.
async fn ask_primary_addr(
    master_name: &str,
    sentinels: &[redis::ConnectionInfo],
    cached: &mut Option<(usize, MultiplexedConnection)>,
    conn_config: &AsyncConnectionConfig,
) -> Option<(String, u16)> {
    let start = cached.as_ref().map_or(0, |(i, _)| *i);
    for i in (0..sentinels.len()).map(|k| (start + k) % sentinels.len()) {
        let mut conn = match cached.take() {
            Some((j, conn)) if j == i => conn,
            _ => {
                let Ok(client) = redis::Client::open(sentinels[i].clone()) else {
                    continue;
                };
                match client.get_multiplexed_async_connection_with_config(conn_config).await {
                    Ok(conn) => conn,
                    Err(_) => continue,
                }
            }
        };
        let reply: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master_name)
            .query_async(&mut conn)
            .await;
        if let Ok(addr) = reply {
            *cached = Some((i, conn));
            if addr.is_some() {
                return addr;
            }
        }
    }
    None
}

fn host_port(client: &redis::Client) -> (String, u16) {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        other => (other.to_string(), 0),
    }
}

/// One lookup: ask the sentinels, open a connection to the primary they name.
async fn resolve(resolver: &Resolver) -> Result<(redis::Client, MultiplexedConnection)> {
    let lookup = async {
        let client = resolver.sentinel.lock().await.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&resolver.conn_config)
            .await?;
        Ok::<_, RedisError>((client, conn))
    };
    match tokio::time::timeout(resolver.timeout, lookup).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CacheError::Timeout),
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let ticket = self.admit()?;
            let primary = self.shared.current.load_full();
            let mut conn = primary.conn.clone();
            let result = conn.req_packed_command(cmd).await;
            self.record(ticket, result.as_ref().err());
            self.check(primary.generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let ticket = self.admit()?;
            let primary = self.shared.current.load_full();
            let mut conn = primary.conn.clone();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.record(ticket, result.as_ref().err());
            match &result {
                Err(err) if points_to_failover(err) => self.rediscover(primary.generation),
                Ok(values) if values.iter().any(is_readonly_reply) => self.rediscover(primary.generation),
                _ => {}
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

/// A redis-rs `SentinelClient` for the primary named in `config`, with the
/// primary's credentials, db and TLS, and the sentinels' own password.
fn sentinel_client(config: &RedisConfig) -> Result<SentinelClient> {
    let master_name = config
        .sentinel_master()
        .ok_or_else(|| CacheError::config("sentinel_master", "is required with sentinel nodes"))?;
    let sentinels = sentinel_addrs(config);
    // TCP settings (keepalive) as for a standalone server.
    let tcp = connection_info(config)?.tcp_settings().clone();
    let mut builder = SentinelClientBuilder::new(sentinels, master_name, SentinelServerType::Master)?
        .set_client_to_redis_db(config.db())
        .set_client_to_redis_tcp_settings(tcp.clone())
        .set_client_to_sentinel_tcp_settings(tcp);
    if let Some(user) = config.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = config.password() {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(password) = config.sentinel_password() {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    if let Some(tls) = config.tls() {
        let mode = super::tls_mode(tls)?;
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
        if let Some(certs) = super::tls_certificates(tls)? {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    Ok(builder.build()?)
}

/// The sentinels' addresses: over TLS when the config asks for TLS
/// (`rediss+sentinel://`), so the sentinel password never crosses in clear.
fn sentinel_addrs(config: &RedisConfig) -> Vec<redis::ConnectionAddr> {
    let tls = config.tls().is_some();
    config
        .sentinel_nodes()
        .iter()
        .map(|(host, port)| match tls {
            true => redis::ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            false => redis::ConnectionAddr::Tcp(host.clone(), *port),
        })
        .collect()
}

/// Connection settings of each sentinel for the watcher: TLS with the
/// config's certificates when asked for, and the sentinels' own password.
fn sentinel_infos(config: &RedisConfig) -> Result<Vec<redis::ConnectionInfo>> {
    let auth = match config.sentinel_password() {
        Some(password) => redis::RedisConnectionInfo::default().set_password(password.expose()),
        None => redis::RedisConnectionInfo::default(),
    };
    let certs = config.tls().map(super::tls_certificates).transpose()?.flatten();
    sentinel_addrs(config)
        .into_iter()
        .map(|addr| {
            let info = match &certs {
                Some(certs) => redis::Client::build_with_tls(addr, certs.clone())?
                    .get_connection_info()
                    .clone(),
                None => redis::IntoConnectionInfo::into_connection_info(addr)?,
            };
            Ok(info.set_redis_settings(auth.clone()))
        })
        .collect()
}

fn resolver(config: &RedisConfig) -> Result<Resolver> {
    Ok(Resolver {
        sentinel: tokio::sync::Mutex::new(sentinel_client(config)?),
        conn_config: AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.response_timeout())),
        timeout: config.connect_timeout() * 2 + config.response_timeout() * 2,
    })
}

/// A redis-rs client for the primary the sentinels name right now (checked
/// with `ROLE`), for pub/sub and other dedicated connections. Call it again
/// after a failure: every call asks the sentinels anew.
pub(super) async fn primary_client(config: &RedisConfig) -> Result<redis::Client> {
    Ok(resolve(&resolver(config)?).await?.0)
}

/// Asks the sentinels in `config` for the primary and opens
/// `config.max_connections()` connections that follow it.
pub(super) async fn open(config: &RedisConfig, health: Health) -> Result<Vec<RedisConnection>> {
    let master_name = config
        .sentinel_master()
        .ok_or_else(|| CacheError::config("sentinel_master", "is required with sentinel nodes"))?
        .to_owned();
    let sentinel_infos = sentinel_infos(config)?;
    let mut conns = Vec::with_capacity(config.max_connections());
    for _ in 0..config.max_connections() {
        let resolver = resolver(config)?;
        let (client, conn) = resolve(&resolver).await?;
        let shared = Shared {
            master_name: master_name.clone(),
            resolver,
            current: ArcSwap::from_pointee(Primary {
                client,
                conn,
                generation: 0,
            }),
            rediscovering: AtomicBool::new(false),
            db: config.db(),
            health: health.clone(),
            probe_deadline: Health::probe_deadline(config.response_timeout()),
        };
        let watch_config = shared.resolver.conn_config.clone();
        let shared = Arc::new(shared);
        tokio::spawn(watch(Arc::downgrade(&shared), sentinel_infos.clone(), watch_config));
        conns.push(RedisConnection::Sentinel(SentinelConnection { shared }));
    }
    Ok(conns)
}
