//! A real Redis Cluster for tests: 3 primaries + 3 replicas, each a
//! `redis-server` on a free loopback port, joined with
//! `redis-cli --cluster create`.
//!
//! The node timeout is short (2 s) so a killed primary's replica is promoted
//! within a few seconds. Every process is killed when the handle is dropped.

use super::pki::Pki;
use super::redis_server::{free_port, RedisServer};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLI_HINT: &str = "redis-cli was not found on PATH. It ships with redis-server: \
    `apt-get install -y redis-server` (Debian/Ubuntu), `brew install redis` (macOS), \
    or set REDIS_CLI_BIN to its path.";

/// Cluster node timeout: how long a primary may be silent before its replica
/// takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// A running 6-node cluster, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    password: Option<String>,
    /// TLS client ports, in node order, for a cluster started with TLS.
    tls_ports: Vec<u16>,
}

/// What one node says about itself in `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// Client port.
    pub port: u16,
    /// True for a primary.
    pub primary: bool,
    /// Id of the primary, for a replica.
    pub primary_id: Option<String>,
    /// True when flagged `fail` or `fail?`.
    pub failing: bool,
}

impl RedisCluster {
    /// Starts 6 servers, creates the cluster (1 replica per primary) and waits
    /// until every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start() -> Self {
        Self::start_inner(None, None)
    }

    /// Like [`RedisCluster::start`], every node also serving TLS with the
    /// certificates of `pki`, and the cluster bus and replication over TLS.
    /// The plain ports stay open for the harness's own checks.
    pub fn start_tls(pki: &Pki) -> Self {
        Self::start_inner(None, Some(pki))
    }

    /// Like [`RedisCluster::start`], every node protected by `password`
    /// (`requirepass`, and `masterauth` for the replicas).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(Some(password), None)
    }

    fn start_inner(password: Option<&str>, pki: Option<&Pki>) -> Self {
        let timeout = NODE_TIMEOUT.as_millis().to_string();
        let auth: Vec<&str> = match password {
            Some(pw) => vec!["--requirepass", pw, "--masterauth", pw],
            None => Vec::new(),
        };
        // Each port is picked just before its server binds it: a port picked
        // early could meanwhile become the source port of a client connection.
        let (nodes, tls_ports): (Vec<RedisServer>, Vec<Option<u16>>) = (0..6)
            .map(|_| {
                let bus_port = free_port().to_string();
                let tls_port = pki.map(|_| free_port());
                let tls: Vec<String> = match (pki, tls_port) {
                    (Some(pki), Some(tls_port)) => {
                        let mut tls = pki.server_args(tls_port);
                        tls.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
                        tls
                    }
                    _ => Vec::new(),
                };
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus_port,
                    "--cluster-node-timeout",
                    &timeout,
                    // Promote a replica however long it was cut off: tests kill primaries.
                    "--cluster-replica-validity-factor",
                    "0",
                ];
                args.extend(&auth);
                args.extend(tls.iter().map(String::as_str));
                (RedisServer::start_with(&args), tls_port)
            })
            .unzip();
        let tls_ports: Vec<u16> = tls_ports.into_iter().flatten().collect();
        let mut cmd = Command::new(cli_binary());
        cmd.arg("--cluster").arg("create");
        for node in &nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port()));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null());
        if let Some(pw) = password {
            cmd.args(["-a", pw, "--no-auth-warning"]);
        }
        let output = run_bounded(cmd, Duration::from_secs(60));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            password: password.map(str::to_owned),
            tls_ports,
        };
        cluster.wait_until_healthy(Duration::from_secs(30));
        cluster
    }

    /// `redis+cluster://` URL listing every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}{}", self.auth(), hosts.join(","))
    }

    /// `rediss+cluster://` URL listing every node's TLS port as a seed.
    pub fn tls_url(&self) -> String {
        assert!(!self.tls_ports.is_empty(), "start the cluster with start_tls");
        let hosts: Vec<String> = self.tls_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        format!("rediss+cluster://{}{}", self.auth(), hosts.join(","))
    }

    /// `:password@` when the nodes have one.
    fn auth(&self) -> String {
        self.password.as_ref().map(|pw| format!(":{pw}@")).unwrap_or_default()
    }

    fn node_url(&self, port: u16) -> String {
        format!("redis://{}127.0.0.1:{port}/", self.auth())
    }

    /// A memorix config for this cluster, with short timeouts.
    pub fn config(&self) -> memorix::RedisConfig {
        memorix::RedisConfig::from_url(&format!("{}?response_timeout=1s&connect_timeout=500ms", self.url()))
            .expect("valid cluster URL")
    }

    /// Ports of every node, primaries and replicas.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// A plain connection to one node, by port.
    pub fn node_connection(&self, port: u16) -> redis::Connection {
        redis::Client::open(self.node_url(port))
            .expect("valid node URL")
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to cluster node")
    }

    /// `CLUSTER NODES` as seen by the node on `port`.
    pub fn nodes_seen_by(&self, port: u16) -> Vec<NodeInfo> {
        let mut conn = self.node_connection(port);
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .expect("CLUSTER NODES");
        parse_nodes(&text)
    }

    /// Ports of the live primaries, as a live node sees them.
    pub fn primary_ports(&self) -> Vec<u16> {
        let port = self.live_port();
        self.nodes_seen_by(port)
            .into_iter()
            .filter(|n| n.primary && !n.failing)
            .map(|n| n.port)
            .collect()
    }

    /// Port of the primary serving `key`.
    pub fn primary_port_of(&self, key: &str) -> u16 {
        let mut conn = self.node_connection(self.live_port());
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut conn)
            .expect("CLUSTER SLOTS");
        for range in ranges {
            let start: u16 = redis::from_redis_value_ref(&range[0]).expect("slot start");
            let end: u16 = redis::from_redis_value_ref(&range[1]).expect("slot end");
            if (start..=end).contains(&slot) {
                let node: Vec<redis::Value> = redis::from_redis_value_ref(&range[2]).expect("primary");
                return redis::from_redis_value_ref(&node[1]).expect("primary port");
            }
        }
        panic!("no primary serves slot {slot}");
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        node.stop();
    }

    /// A port of a node that is still running.
    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .find(|&port| {
                std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
            })
            .expect("at least one live cluster node")
    }

    /// Waits until the cluster serves every slot from a primary that is up,
    /// as every running node sees it.
    pub fn wait_until_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.health() {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => panic!("cluster not healthy after {within:?}: {why}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        let mut live = 0;
        for node in &self.nodes {
            let port = node.port();
            let Ok(mut conn) = redis::Client::open(self.node_url(port))
                .expect("valid node URL")
                .get_connection_with_timeout(Duration::from_millis(300))
            else {
                continue;
            };
            live += 1;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut conn)
                .map_err(|e| format!("{port}: {e}"))?;
            if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                return Err(format!(
                    "{port}: {}",
                    info.lines().take(4).collect::<Vec<_>>().join(" ")
                ));
            }
            let replication: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .map_err(|e| format!("{port}: {e}"))?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
                return Err(format!("{port}: replica not in sync yet"));
            }
        }
        if live == 0 {
            return Err("no node is running".into());
        }
        Ok(())
    }
}

/// Runs `cmd` to completion, killing it after `limit`: `redis-cli --cluster
/// create` waits forever for nodes that cannot join.
fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{CLI_HINT}"),
        Err(e) => panic!("cannot run redis-cli: {e}. {CLI_HINT}"),
    };
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for redis-cli").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("redis-cli output");
            panic!(
                "redis-cli --cluster create did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("redis-cli output")
}

/// Path of the `redis-cli` binary.
pub fn cli_binary() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // <id> <ip:port@cport> <flags> <primary-id or -> ...
            let port = fields[1]
                .split('@')
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad CLUSTER NODES line: {line}"));
            let flags = fields[2];
            NodeInfo {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains("master"),
                primary_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                failing: flags.contains("fail"),
            }
        })
        .collect()
}
