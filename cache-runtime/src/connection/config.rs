//! [`RedisConfig`]: where the server is and how to talk to it.

use super::secret::Secret;
use super::tls::TlsVersion;
use crate::error::{CacheError, Result};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// TLS settings for `rediss://` connections. Certificates and host names are
/// always verified: to trust a self-signed server, name its CA
/// ([`TlsConfig::ca_cert`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA that signed the server certificate; the system roots otherwise.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
    /// Lowest TLS version accepted (default 1.2). Enforced for the whole
    /// process, see [`TlsConfig::min_version`].
    pub min_version: TlsVersion,
}

impl TlsConfig {
    /// TLS with the system's root certificates and full verification.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust the CA in this PEM file.
    #[must_use]
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Present this client certificate and key (mutual TLS).
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(cert.into());
        self.client_key = Some(key.into());
        self
    }

    /// Lowest TLS version to accept. rustls gets it through the process's
    /// crypto provider, the one place every connection (standalone, pub/sub,
    /// cluster nodes, sentinels, reconnections) takes its settings from: the
    /// first TLS connection sets the process's floor, and a later one asking
    /// for 1.3 where 1.2 is already allowed fails with a `Config` error instead
    /// of connecting below its floor. Mixing floors in one process: call
    /// [`install_tls_floor`](crate::install_tls_floor) at start-up.
    #[must_use]
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }
}

/// How to reach one Redis server, and how patiently.
///
/// Defaults suit a cache: a dead server costs a caller at most the connect or
/// response timeout (1 s each), not a hang.
///
/// ```
/// use memorix_runtime::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::from_url("redis://app:s3cret@cache.internal:6380/2?response_timeout=250ms")?;
/// assert_eq!(config.port(), 6380);
/// assert_eq!(config.db(), 2);
/// assert_eq!(config.response_timeout(), Duration::from_millis(250));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// assert_eq!(config.to_string(), "redis://app:***@cache.internal:6380/2");
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) unix_socket: Option<PathBuf>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) max_connections: usize,
    pub(crate) retry_on_timeout: bool,
    pub(crate) health_check_interval: Option<Duration>,
    pub(crate) reconnect_retries: usize,
    pub(crate) fail_on_connection_error: bool,
    pub(crate) cluster_nodes: Vec<(String, u16)>,
    pub(crate) sentinel_master: Option<String>,
    pub(crate) sentinel_nodes: Vec<(String, u16)>,
    pub(crate) sentinel_password: Option<Secret>,
}

/// Which kind of Redis deployment a [`RedisConfig`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topology {
    /// One server at `host:port` or a unix socket (the default).
    Standalone,
    /// A Redis Cluster, discovered from [`RedisConfig::cluster_nodes`]. Keys
    /// are spread over the primaries by hash slot; failovers are followed.
    Cluster,
    /// A primary found through Redis Sentinel: [`RedisConfig::sentinel_master`]
    /// asked of [`RedisConfig::sentinel_nodes`]. After a failover the
    /// connection re-asks the sentinels and follows the new primary.
    Sentinel,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            unix_socket: None,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            keepalive: None,
            max_connections: 1,
            retry_on_timeout: false,
            health_check_interval: None,
            reconnect_retries: 3,
            fail_on_connection_error: false,
            cluster_nodes: Vec::new(),
            sentinel_master: None,
            sentinel_nodes: Vec::new(),
            sentinel_password: None,
        }
    }
}

impl RedisConfig {
    /// `127.0.0.1:6379`, database 0, no auth, no TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder(Self::default())
    }

    /// Parses a `redis://`, `rediss://` (TLS) or `redis+unix://` / `unix://` URL,
    /// or a cluster or sentinel URL.
    ///
    /// Form: `redis://[user][:password]@host[:port][/db][?option=value&...]`.
    /// Options: `db`, `connect_timeout`, `response_timeout`, `keepalive`,
    /// `health_check_interval` (durations like `250ms`, `2s`, `1m`),
    /// `max_connections`, `retry_on_timeout`, `min_tls_version` (`1.2` or `1.3`,
    /// `rediss` only). `insecure=true` is refused: certificates are always verified.
    ///
    /// - Redis Cluster: `redis+cluster://[user][:password]@host1:port1,host2:port2[?options]`
    ///   (`rediss+cluster://` for TLS). The hosts are seed nodes; the rest of the
    ///   cluster is discovered from them. Port 6379 when omitted; database 0 only.
    /// - Sentinel: `redis+sentinel://[user][:password]@s1:26379,s2:26379/master_name[/db][?options]`
    ///   (`rediss+sentinel://` for TLS to the sentinels and the data nodes, with
    ///   the same CA and client certificate). The hosts are sentinels
    ///   (port 26379 when omitted); user and password are those of the primary,
    ///   option `sentinel_password` the sentinels' own.
    ///
    /// ```
    /// use memorix_runtime::{RedisConfig, Topology};
    ///
    /// let cluster = RedisConfig::from_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")?;
    /// assert_eq!(cluster.topology(), Topology::Cluster);
    /// assert_eq!(cluster.cluster_nodes().len(), 2);
    /// assert_eq!(cluster.to_string(), "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7001");
    ///
    /// let sentinel = RedisConfig::from_url("redis+sentinel://s1:26379,s2/mymaster/2")?;
    /// assert_eq!(sentinel.topology(), Topology::Sentinel);
    /// assert_eq!(sentinel.sentinel_master(), Some("mymaster"));
    /// assert_eq!(sentinel.sentinel_nodes()[1], ("s2".to_owned(), 26379));
    /// assert_eq!(sentinel.db(), 2);
    /// # Ok::<_, memorix_runtime::CacheError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        super::url::parse(url)
    }

    /// Reads the URL from the `REDIS_URL` environment variable.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var("REDIS_URL")
            .map_err(|_| CacheError::config("REDIS_URL", "environment variable is not set"))?;
        Self::from_url(&url)
    }

    /// Server host name or IP.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Server port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Database number.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Password, if any. Its Debug and Display print `***`.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Unix socket path, if connecting through one.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_deref()
    }

    /// TLS settings, if TLS is on.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// How long to wait for a connection to open.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long to wait for a reply.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// TCP keepalive idle time, if on.
    pub fn keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Number of multiplexed connections.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Whether a timed-out command is retried once.
    pub fn retry_on_timeout(&self) -> bool {
        self.retry_on_timeout
    }

    /// Interval of background pings, if on.
    pub fn health_check_interval(&self) -> Option<Duration> {
        self.health_check_interval
    }

    /// Quick reconnect attempts a command waits for before the connection
    /// counts as down (later commands then fail at once while attempts go on
    /// in the background). On a cluster: retries of a failed request.
    pub fn reconnect_retries(&self) -> usize {
        self.reconnect_retries
    }

    /// Whether opening a connection to an unreachable standalone server is an
    /// error (`true`) or starts it degraded (`false`, the default): calls fail
    /// fast with a connection error while it connects in the background.
    pub fn fail_on_connection_error(&self) -> bool {
        self.fail_on_connection_error
    }

    /// Standalone, cluster or sentinel.
    pub fn topology(&self) -> Topology {
        if self.sentinel_master.is_some() || !self.sentinel_nodes.is_empty() {
            Topology::Sentinel
        } else if !self.cluster_nodes.is_empty() {
            Topology::Cluster
        } else {
            Topology::Standalone
        }
    }

    /// Seed nodes of a Redis Cluster (empty unless the topology is cluster).
    pub fn cluster_nodes(&self) -> &[(String, u16)] {
        &self.cluster_nodes
    }

    /// Name of the primary the sentinels watch, for a sentinel topology.
    pub fn sentinel_master(&self) -> Option<&str> {
        self.sentinel_master.as_deref()
    }

    /// Addresses of the sentinels (empty unless the topology is sentinel).
    pub fn sentinel_nodes(&self) -> &[(String, u16)] {
        &self.sentinel_nodes
    }

    /// Password of the sentinels themselves (their `requirepass`), if any.
    pub fn sentinel_password(&self) -> Option<&Secret> {
        self.sentinel_password.as_ref()
    }

    /// A builder starting from these settings.
    pub fn into_builder(self) -> RedisConfigBuilder {
        RedisConfigBuilder(self)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.validate_topology()?;
        if self.unix_socket.is_none() && self.topology() == Topology::Standalone {
            if self.host.is_empty() {
                return Err(CacheError::config("host", "must not be empty"));
            }
            if self.port == 0 {
                return Err(CacheError::config("port", "must be between 1 and 65535"));
            }
        }
        if !(0..=i64::from(u16::MAX)).contains(&self.db) {
            return Err(CacheError::config("db", "must be between 0 and 65535"));
        }
        if self.connect_timeout.is_zero() {
            return Err(CacheError::config("connect_timeout", "must be greater than zero"));
        }
        if self.response_timeout.is_zero() {
            return Err(CacheError::config("response_timeout", "must be greater than zero"));
        }
        if self.max_connections == 0 || self.max_connections > 1024 {
            return Err(CacheError::config("max_connections", "must be between 1 and 1024"));
        }
        if self.health_check_interval.is_some_and(|d| d.is_zero()) {
            return Err(CacheError::config("health_check_interval", "must be greater than zero"));
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                return Err(CacheError::config(
                    "tls.client_cert",
                    "a client certificate needs its key, and a key its certificate",
                ));
            }
            if self.unix_socket.is_some() {
                return Err(CacheError::config("tls", "TLS over a unix socket is not supported"));
            }
        }
        Ok(())
    }

    fn validate_topology(&self) -> Result<()> {
        let check_nodes = |field: &'static str, nodes: &[(String, u16)]| {
            for (host, port) in nodes {
                if host.is_empty() {
                    return Err(CacheError::config(field, "a node has an empty host"));
                }
                if *port == 0 {
                    return Err(CacheError::config(field, "a node has port 0"));
                }
            }
            Ok(())
        };
        if self.sentinel_password.is_some() && self.topology() != Topology::Sentinel {
            return Err(CacheError::config(
                "sentinel_password",
                "only applies to a sentinel config",
            ));
        }
        match self.topology() {
            Topology::Standalone => Ok(()),
            Topology::Cluster => {
                check_nodes("cluster_nodes", &self.cluster_nodes)?;
                if self.db != 0 {
                    return Err(CacheError::config("db", "must be 0: Redis Cluster has only database 0"));
                }
                if self.unix_socket.is_some() {
                    return Err(CacheError::config(
                        "unix_socket",
                        "cannot be combined with cluster nodes",
                    ));
                }
                Ok(())
            }
            Topology::Sentinel => {
                if !self.cluster_nodes.is_empty() {
                    return Err(CacheError::config(
                        "cluster_nodes",
                        "cannot be combined with sentinel settings; a config is either cluster or sentinel",
                    ));
                }
                match self.sentinel_master.as_deref() {
                    None => return Err(CacheError::config("sentinel_master", "is required with sentinel nodes")),
                    Some("") => return Err(CacheError::config("sentinel_master", "must not be empty")),
                    Some(_) => {}
                }
                if self.sentinel_nodes.is_empty() {
                    return Err(CacheError::config(
                        "sentinel_nodes",
                        "at least one sentinel address is required",
                    ));
                }
                check_nodes("sentinel_nodes", &self.sentinel_nodes)?;
                if self.unix_socket.is_some() {
                    return Err(CacheError::config(
                        "unix_socket",
                        "cannot be combined with sentinel settings",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Builds a [`RedisConfig`]; [`RedisConfigBuilder::build`] validates every field.
///
/// ```
/// use memorix_runtime::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::builder()
///     .host("10.0.0.5")
///     .port(6380)
///     .password("s3cret")
///     .response_timeout(Duration::from_millis(200))
///     .build()?;
/// assert_eq!(config.port(), 6380);
///
/// let err = RedisConfig::builder().port(0).build().unwrap_err();
/// assert!(err.to_string().contains("`port`"));
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RedisConfigBuilder(RedisConfig);

impl RedisConfigBuilder {
    /// Server host name or IP.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.0.host = host.into();
        self
    }

    /// Server port.
    pub fn port(mut self, port: u16) -> Self {
        self.0.port = port;
        self
    }

    /// Database number (0-15 on a default server).
    pub fn db(mut self, db: i64) -> Self {
        self.0.db = db;
        self
    }

    /// ACL user name (Redis 6+).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.0.username = Some(username.into());
        self
    }

    /// Password (for the ACL user, or the legacy `requirepass`).
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.0.password = Some(password.into());
        self
    }

    /// Connect through a unix socket instead of TCP.
    pub fn unix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.unix_socket = Some(path.into());
        self
    }

    /// Use TLS with these settings.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.0.tls = Some(tls);
        self
    }

    /// How long to wait for a connection to open.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// How long to wait for a reply to a command.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.0.response_timeout = timeout;
        self
    }

    /// TCP keepalive idle time; off by default.
    pub fn keepalive(mut self, idle: Duration) -> Self {
        self.0.keepalive = Some(idle);
        self
    }

    /// Number of multiplexed connections; requests are spread round-robin.
    /// One multiplexed connection already pipelines concurrent requests, so
    /// more only helps with very large values or many cores.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.0.max_connections = n;
        self
    }

    /// Retry a command once when it times out.
    pub fn retry_on_timeout(mut self, retry: bool) -> Self {
        self.0.retry_on_timeout = retry;
        self
    }

    /// Ping the server at this interval so a dead connection is noticed and
    /// re-opened before a caller needs it.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.0.health_check_interval = Some(interval);
        self
    }

    /// Quick reconnect attempts a command waits for before the connection
    /// counts as down (default 3; later commands fail at once while attempts go
    /// on in the background). On a cluster: retries of a failed request.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.0.reconnect_retries = retries;
        self
    }

    /// Strict start: opening a connection to an unreachable standalone server
    /// returns the connection error (default `false`).
    ///
    /// By default the connection starts degraded instead, so a service boots
    /// during a Redis outage: calls fail fast with a connection error
    /// (memoized functions run their body uncached, rate limiters answer
    /// their `OnUnavailable` policy) while it connects in the background, and
    /// Redis is used as soon as it answers. Cluster and sentinel connections
    /// need their seed nodes to start and always fail instead.
    pub fn fail_on_connection_error(mut self, fail: bool) -> Self {
        self.0.fail_on_connection_error = fail;
        self
    }

    /// Adds a seed node of a Redis Cluster; the config becomes a cluster config.
    /// Add two or three so startup survives one of them being down.
    ///
    /// ```
    /// use memorix_runtime::{RedisConfig, Topology};
    ///
    /// let config = RedisConfig::builder()
    ///     .cluster_node("10.0.0.1", 7000)
    ///     .cluster_node("10.0.0.2", 7000)
    ///     .password("s3cret")
    ///     .build()?;
    /// assert_eq!(config.topology(), Topology::Cluster);
    /// # Ok::<_, memorix_runtime::CacheError>(())
    /// ```
    pub fn cluster_node(mut self, host: impl Into<String>, port: u16) -> Self {
        self.0.cluster_nodes.push((host.into(), port));
        self
    }

    /// Name of the primary to ask the sentinels for; the config becomes a
    /// sentinel config. Username, password, db and TLS apply to the primary.
    ///
    /// ```
    /// use memorix_runtime::{RedisConfig, Topology};
    ///
    /// let config = RedisConfig::builder()
    ///     .sentinel_master("mymaster")
    ///     .sentinel_node("10.0.0.1", 26379)
    ///     .sentinel_node("10.0.0.2", 26379)
    ///     .build()?;
    /// assert_eq!(config.topology(), Topology::Sentinel);
    ///
    /// let err = RedisConfig::builder().sentinel_master("mymaster").build().unwrap_err();
    /// assert!(err.to_string().contains("`sentinel_nodes`"));
    /// # Ok::<_, memorix_runtime::CacheError>(())
    /// ```
    pub fn sentinel_master(mut self, name: impl Into<String>) -> Self {
        self.0.sentinel_master = Some(name.into());
        self
    }

    /// Adds the address of a sentinel (they usually listen on port 26379).
    pub fn sentinel_node(mut self, host: impl Into<String>, port: u16) -> Self {
        self.0.sentinel_nodes.push((host.into(), port));
        self
    }

    /// Password of the sentinels themselves, when they have `requirepass`
    /// (the primary's password is [`RedisConfigBuilder::password`]).
    pub fn sentinel_password(mut self, password: impl Into<Secret>) -> Self {
        self.0.sentinel_password = Some(password.into());
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<RedisConfig> {
        self.0.validate()?;
        Ok(self.0)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("unix_socket", &self.unix_socket)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("keepalive", &self.keepalive)
            .field("max_connections", &self.max_connections)
            .field("retry_on_timeout", &self.retry_on_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("fail_on_connection_error", &self.fail_on_connection_error)
            .field("topology", &self.topology())
            .field("cluster_nodes", &self.cluster_nodes)
            .field("sentinel_master", &self.sentinel_master)
            .field("sentinel_nodes", &self.sentinel_nodes)
            .field("sentinel_password", &self.sentinel_password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Prints the URL form with the password masked: `redis://user:***@host:port/db`.
impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(_)) => format!("{user}:***@"),
            (Some(user), None) => format!("{user}@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        let tls = if self.tls.is_some() { "s" } else { "" };
        let hosts = |nodes: &[(String, u16)]| {
            nodes
                .iter()
                .map(|(host, port)| match host.contains(':') {
                    true => format!("[{host}]:{port}"),
                    false => format!("{host}:{port}"),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.topology() {
            Topology::Cluster => return write!(f, "redis{tls}+cluster://{auth}{}", hosts(&self.cluster_nodes)),
            Topology::Sentinel => {
                let master = self.sentinel_master.as_deref().unwrap_or_default();
                let nodes = hosts(&self.sentinel_nodes);
                return write!(f, "redis{tls}+sentinel://{auth}{nodes}/{master}/{}", self.db);
            }
            Topology::Standalone => {}
        }
        match &self.unix_socket {
            Some(path) => write!(f, "redis+unix://{auth}{}?db={}", path.display(), self.db),
            None => {
                let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
                write!(f, "{scheme}://{auth}{}:{}/{}", self.host, self.port, self.db)
            }
        }
    }
}
