//! Starts, stops and restarts real `redis-server` processes for tests.
//!
//! Every server binds 127.0.0.1 on a port the OS reported free, runs in its own
//! temporary directory with persistence off, and is killed when the handle is
//! dropped. If `redis-server` is not installed, startup fails with the command
//! that installs it: a test that needs Redis never silently skips.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "redis-server was not found on PATH. Install it: \
    `apt-get install -y redis-server` (Debian/Ubuntu), `brew install redis` (macOS), \
    or set REDIS_SERVER_BIN to its path.";

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a plain server on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a plain server on `port` (e.g. one a client was told to use
    /// before any server listened there).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("memorix-redis-")
            .tempdir()
            .expect("create temp dir");
        let mut server = RedisServer {
            port,
            dir,
            extra_args: Vec::new(),
            child: None,
        };
        server.spawn();
        server
    }

    /// Freezes the server (SIGSTOP): its sockets stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("server running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts a server with extra command-line arguments (e.g. `--requirepass x`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("memorix-redis-")
            .tempdir()
            .expect("create temp dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    /// Path of the `redis-server` binary.
    pub fn binary() -> String {
        std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A memorix config pointing at this server.
    pub fn config(&self) -> memorix::RedisConfig {
        memorix::RedisConfig::from_url(&self.url()).expect("valid test URL")
    }

    /// A plain redis-rs client, to inspect the server from the side.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid test URL")
    }

    /// A raw multiplexed connection, independent of the cache under test.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// Pauses every client of the server for `millis` (`CLIENT PAUSE ... ALL`):
    /// the server is up but answers nothing, as during a failover.
    pub async fn pause_clients(&self, millis: u64) {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(millis)
            .arg("ALL")
            .query_async(&mut self.raw().await)
            .await
            .expect("CLIENT PAUSE");
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The last `lines` lines the server logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot start redis-server: {e}. {INSTALL_HINT}"),
        };
        self.child = Some(child);
        self.wait_for_ping();
    }

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = self.client().get_connection_with_timeout(Duration::from_millis(200)) {
                let ping: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
                // A server with requirepass answers NOAUTH, which still proves it is up.
                match ping {
                    Ok(_) => return,
                    Err(e) if e.to_string().contains("NOAUTH") || e.to_string().contains("uthenticat") => return,
                    Err(_) => {}
                }
            }
            if !self.is_running() {
                panic!(
                    "redis-server on port {} exited during startup (args: {:?}); its log ends:\n{}",
                    self.port,
                    self.extra_args,
                    self.log_tail(8)
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port the OS just reported free, and never handed out before in
/// this process: a cluster picks its TLS and bus ports before its servers
/// bind them, and tests start servers in parallel.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind an ephemeral port")
            .local_addr()
            .expect("local addr")
            .port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}
