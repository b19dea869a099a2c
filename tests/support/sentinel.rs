//! A real Sentinel deployment for tests: a primary, one replica and three
//! sentinels (quorum 2), every process a `redis-server` on a free loopback
//! port with its own temporary directory.
//!
//! `down-after-milliseconds` is 2 s so a killed primary is replaced within a
//! few seconds. Every process is killed when the handle is dropped.

use super::redis_server::{free_port, RedisServer};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Name the sentinels know the primary by.
pub const MASTER_NAME: &str = "mymaster";

/// A primary + replica + 3 sentinels, killed on drop.
pub struct RedisSentinel {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<SentinelProcess>,
    password: Option<String>,
}

/// One `redis-server --sentinel` process.
struct SentinelProcess {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisSentinel {
    /// Starts the primary, its replica and 3 sentinels, and waits until every
    /// sentinel knows the replica and the other two sentinels.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Like [`RedisSentinel::start`], with `password` on every process: the
    /// data nodes (`requirepass`, `masterauth`) and the sentinels
    /// (`requirepass`, `sentinel auth-pass`, `sentinel sentinel-pass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password))
    }

    fn start_inner(password: Option<&str>) -> Self {
        let auth: Vec<&str> = match password {
            Some(pw) => vec!["--requirepass", pw, "--masterauth", pw],
            None => Vec::new(),
        };
        let primary = RedisServer::start_with(&auth);
        let primary_port = primary.port().to_string();
        let mut replica_args = vec!["--replicaof", "127.0.0.1", &primary_port];
        replica_args.extend(&auth);
        let replica = RedisServer::start_with(&replica_args);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::spawn(primary.port(), password))
            .collect();
        let deployment = RedisSentinel {
            primary,
            replica,
            sentinels,
            password: password.map(str::to_owned),
        };
        deployment.wait_until_ready(Duration::from_secs(30));
        deployment
    }

    /// `redis+sentinel://` URL listing the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinel_ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        match &self.password {
            Some(pw) => format!(
                "redis+sentinel://:{pw}@{}/{MASTER_NAME}/0?sentinel_password={pw}",
                hosts.join(",")
            ),
            None => format!("redis+sentinel://{}/{MASTER_NAME}/0", hosts.join(",")),
        }
    }

    /// A memorix config for this deployment, with short timeouts.
    pub fn config(&self) -> memorix::RedisConfig {
        let sep = if self.url().contains('?') { '&' } else { '?' };
        memorix::RedisConfig::from_url(&format!("{}{sep}response_timeout=1s&connect_timeout=500ms", self.url()))
            .expect("valid sentinel URL")
    }

    /// Ports of the sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Port of the primary the deployment started with.
    pub fn primary_port(&self) -> u16 {
        self.primary.port()
    }

    /// Port of the replica the deployment started with.
    pub fn replica_port(&self) -> u16 {
        self.replica.port()
    }

    /// A plain connection to a data node, by port.
    pub fn node_connection(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://{}127.0.0.1:{port}/", self.auth()))
            .expect("valid node URL")
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to redis node")
    }

    /// A plain connection to the sentinel on `port`.
    pub fn sentinel_connection(&self, port: u16) -> redis::Connection {
        sentinel_connection(port, self.password.as_deref())
            .unwrap_or_else(|| panic!("sentinel on port {port} does not answer"))
    }

    /// `:password@` when the processes have one.
    fn auth(&self) -> String {
        self.password.as_ref().map(|pw| format!(":{pw}@")).unwrap_or_default()
    }

    /// The primary's port according to the first sentinel that answers.
    pub fn primary_port_by_sentinels(&self) -> Option<u16> {
        self.sentinel_ports().into_iter().find_map(|port| {
            let mut conn = sentinel_connection(port, self.password.as_deref())?;
            let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .ok()?;
            addr.map(|(_, port)| port)
        })
    }

    /// The primary the deployment started with (e.g. to freeze it).
    pub fn primary(&self) -> &RedisServer {
        &self.primary
    }

    /// Kills the primary the deployment started with (SIGKILL).
    pub fn kill_primary(&mut self) {
        self.primary.stop();
    }

    /// Waits until the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels.
    pub fn wait_until_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.readiness() {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("sentinel deployment not ready after {within:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let mut replica = self.node_connection(self.replica.port());
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica)
            .map_err(|e| e.to_string())?;
        if !info.contains("master_link_status:up") {
            return Err("replica not in sync".into());
        }
        for port in self.sentinel_ports() {
            let mut conn =
                sentinel_connection(port, self.password.as_deref()).ok_or(format!("sentinel {port} not answering"))?;
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .map_err(|e| format!("sentinel {port}: {e}"))?;
            let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("SENTINELS")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .map_err(|e| format!("sentinel {port}: {e}"))?;
            if replicas.is_empty() || others.len() < 2 {
                return Err(format!(
                    "sentinel {port} knows {} replicas and {} other sentinels",
                    replicas.len(),
                    others.len()
                ));
            }
        }
        Ok(())
    }
}

impl SentinelProcess {
    fn spawn(primary_port: u16, password: Option<&str>) -> Self {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("memorix-sentinel-")
            .tempdir()
            .expect("create temp dir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 protected-mode no\n\
                 dir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n\
                 {auth}",
                dir = dir.path().display(),
                auth = match password {
                    Some(pw) => format!(
                        "requirepass {pw}\nsentinel auth-pass {MASTER_NAME} {pw}\nsentinel sentinel-pass {pw}\n"
                    ),
                    None => String::new(),
                },
            ),
        )
        .expect("write sentinel.conf");
        let child = match Command::new(RedisServer::binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot start redis-server --sentinel: {e}. Install redis-server: \
                 `apt-get install -y redis-server` (Debian/Ubuntu), `brew install redis` (macOS), \
                 or set REDIS_SERVER_BIN to its path."
            ),
        };
        let mut process = SentinelProcess { port, _dir: dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel_connection(port, password).is_none() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("sentinel on port {port} exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "sentinel on port {port} did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }
}

/// A connection to the sentinel on `port`, if it answers PING.
fn sentinel_connection(port: u16, password: Option<&str>) -> Option<redis::Connection> {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    let auth = password.map(|pw| format!(":{pw}@")).unwrap_or_default();
    let mut conn = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    redis::cmd("PING").query::<String>(&mut conn).ok()?;
    Some(conn)
}
