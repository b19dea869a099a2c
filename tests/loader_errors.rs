//! A failing loader under load: 200 concurrent callers of one key whose body
//! fails never run the body more than once at a time. With a `Clone` error
//! the waiters receive the leader's error (one run per flight); otherwise they
//! take over one at a time. Memoized functions (local and distributed lock)
//! and `DistributedLoader` on a real redis-server, the latter also across two
//! real processes.

mod support;

use memorix::{cached, DistributedLoader, RedisCache};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::RedisServer;

const CALLERS: usize = 200;
const BOUND: Duration = Duration::from_secs(30);

/// Runs and concurrency of one body.
#[derive(Default)]
struct Probe {
    runs: AtomicU32,
    active: AtomicU32,
    max_active: AtomicU32,
}

impl Probe {
    const fn new() -> Self {
        Probe {
            runs: AtomicU32::new(0),
            active: AtomicU32::new(0),
            max_active: AtomicU32::new(0),
        }
    }

    /// The body of a loader that fails after `work`.
    async fn fail_after(&self, work: Duration) {
        self.runs.fetch_add(1, SeqCst);
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.max_active.fetch_max(now, SeqCst);
        tokio::time::sleep(work).await;
        self.active.fetch_sub(1, SeqCst);
    }

    fn runs(&self) -> u32 {
        self.runs.load(SeqCst)
    }

    fn max_active(&self) -> u32 {
        self.max_active.load(SeqCst)
    }
}

/// An error type that cannot be cloned.
#[derive(Debug)]
struct Opaque;

/// An error type that can.
#[derive(Debug, Clone)]
struct Down;

/// A redis-server for one test, with a `RedisCache` on it registered as `name`.
async fn setup(name: &str) -> RedisServer {
    let server = RedisServer::start();
    let cache = RedisCache::builder()
        .config(server.config())
        .prefix(support::unique_prefix(name))
        .connect()
        .await
        .unwrap();
    memorix::register(name, cache);
    server
}

/// Starts `CALLERS` tasks at once and waits for all of them (bounded).
async fn storm<T, F, Fut>(call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call())).collect();
    let joined = tokio::time::timeout(BOUND, futures::future::join_all(tasks))
        .await
        .expect("every caller answered in time");
    eprintln!("{CALLERS} callers answered in {:?}", started.elapsed());
    joined.into_iter().map(|r| r.unwrap()).collect()
}

static LOCAL_CLONE: Probe = Probe::new();

#[cached(cache = "le-local-clone", key = "local-clone")]
async fn local_clone() -> Result<u32, String> {
    LOCAL_CLONE.fail_after(Duration::from_millis(50)).await;
    Err("database down".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_error_is_shared_with_every_waiter() {
    let _server = setup("le-local-clone").await;
    let answers = storm(local_clone).await;
    assert!(answers
        .iter()
        .all(|a| a.as_ref().err().map(String::as_str) == Some("database down")));
    eprintln!("clone error, local: {} runs", LOCAL_CLONE.runs());
    assert_eq!(LOCAL_CLONE.max_active(), 1, "never two bodies at once");
    // Callers that arrive after a flight ended start the next one: with a 50 ms
    // body and every task spawned up front, that is a handful at most.
    assert!(
        LOCAL_CLONE.runs() <= 3,
        "{} runs for {CALLERS} callers",
        LOCAL_CLONE.runs()
    );
}

static LOCAL_OPAQUE: Probe = Probe::new();

#[cached(cache = "le-local-opaque", key = "local-opaque")]
async fn local_opaque() -> Result<u32, Opaque> {
    LOCAL_OPAQUE.fail_after(Duration::from_millis(1)).await;
    Err(Opaque)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opaque_error_waiters_take_over_one_at_a_time() {
    let _server = setup("le-local-opaque").await;
    let answers = storm(local_opaque).await;
    assert!(answers.iter().all(|a| matches!(a, Err(Opaque))));
    assert_eq!(LOCAL_OPAQUE.max_active(), 1, "never two bodies at once");
    assert_eq!(LOCAL_OPAQUE.runs(), CALLERS as u32, "each caller ran the body in turn");
}

static FLEET_CLONE: Probe = Probe::new();

#[cached(cache = "le-fleet-clone", key = "fleet-clone", lock = "distributed")]
async fn fleet_clone() -> Result<u32, String> {
    FLEET_CLONE.fail_after(Duration::from_millis(50)).await;
    Err("database down".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_lock_shares_a_clone_error() {
    let _server = setup("le-fleet-clone").await;
    let answers = storm(fleet_clone).await;
    assert!(answers
        .iter()
        .all(|a| a.as_ref().err().map(String::as_str) == Some("database down")));
    eprintln!("clone error, distributed: {} runs", FLEET_CLONE.runs());
    assert_eq!(FLEET_CLONE.max_active(), 1);
    assert!(FLEET_CLONE.runs() <= 3, "{} runs", FLEET_CLONE.runs());
}

static FLEET_OPAQUE: Probe = Probe::new();

#[cached(cache = "le-fleet-opaque", key = "fleet-opaque", lock = "distributed")]
async fn fleet_opaque() -> Result<u32, Opaque> {
    FLEET_OPAQUE.fail_after(Duration::from_millis(1)).await;
    Err(Opaque)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_lock_opaque_error_takes_turns() {
    let _server = setup("le-fleet-opaque").await;
    let answers = storm(fleet_opaque).await;
    assert!(answers.iter().all(|a| matches!(a, Err(Opaque))));
    assert_eq!(FLEET_OPAQUE.max_active(), 1);
    assert_eq!(FLEET_OPAQUE.runs(), CALLERS as u32);
}

/// Two independent loaders on their own connections: to Redis, two processes.
async fn two_processes(server: &RedisServer, prefix: &str) -> Vec<(Arc<RedisCache>, DistributedLoader)> {
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let cache = RedisCache::builder()
            .config(server.config())
            .prefix(prefix)
            .connect()
            .await
            .unwrap();
        let loader = DistributedLoader::new(cache.client().unwrap());
        fleet.push((Arc::new(cache), loader));
    }
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loader_across_processes_never_runs_two_failing_loads_at_once() {
    static PROBE: Probe = Probe::new();
    let server = RedisServer::start();
    let fleet = two_processes(&server, &support::unique_prefix("le-loader")).await;
    let next = AtomicU32::new(0);
    let answers = storm(|| {
        let (cache, loader) = fleet[next.fetch_add(1, SeqCst) as usize % 2].clone();
        async move {
            loader
                .get_or_load(cache.as_ref(), "k", None, || async {
                    PROBE.fail_after(Duration::from_millis(1)).await;
                    Err::<u32, Opaque>(Opaque)
                })
                .await
        }
    })
    .await;
    assert!(answers.iter().all(|a| matches!(a, Err(Opaque))));
    assert_eq!(PROBE.max_active(), 1, "one load at a time across both processes");
    assert_eq!(PROBE.runs(), CALLERS as u32, "each caller loaded in turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_loader_error_runs_once_per_process_flight() {
    static PROBE: Probe = Probe::new();
    let server = RedisServer::start();
    let fleet = two_processes(&server, &support::unique_prefix("le-shared")).await;
    let next = AtomicU32::new(0);
    let answers = storm(|| {
        let (cache, loader) = fleet[next.fetch_add(1, SeqCst) as usize % 2].clone();
        async move {
            loader
                .get_or_load_shared(cache.as_ref(), "k", None, || async {
                    PROBE.fail_after(Duration::from_millis(50)).await;
                    Err::<u32, Down>(Down)
                })
                .await
        }
    })
    .await;
    assert!(answers.iter().all(|a| matches!(a, Err(Down))));
    eprintln!("shared loader error: {} runs", PROBE.runs());
    assert_eq!(PROBE.max_active(), 1, "one load at a time across both processes");
    // One flight per process; a late caller may start one more.
    assert!(PROBE.runs() <= 4, "{} runs for {CALLERS} callers", PROBE.runs());
}

const CHILD_ENV: &str = "MEMORIX_LOADER_ERRORS_CHILD_URL";
const START_ENV: &str = "MEMORIX_LOADER_ERRORS_START_MS";
const PROCESSES: usize = 2;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Not a test on its own: one process of
/// `failing_loads_across_processes_take_turns`, started with `--ignored --exact`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of failing_loads_across_processes_take_turns"]
async fn failing_loader_child() {
    let url = std::env::var(CHILD_ENV).expect("run by the fleet test");
    let config = memorix::RedisConfig::from_url(&url).unwrap();
    let cache = Arc::new(
        RedisCache::builder()
            .config(config)
            .prefix("fleet:")
            .connect()
            .await
            .unwrap(),
    );
    let loader = DistributedLoader::new(cache.client().unwrap());
    let counters = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let start_ms: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(unix_ms()))).await;
    let callers = CALLERS / PROCESSES;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (cache, loader, mut counters) = (cache.clone(), loader.clone(), counters.clone());
            tokio::spawn(async move {
                loader
                    .get_or_load(cache.as_ref(), "k", None, || async move {
                        // The fleet's concurrency, counted in Redis.
                        let active: i64 = redis::cmd("INCR")
                            .arg("active")
                            .query_async(&mut counters)
                            .await
                            .unwrap();
                        if active > 1 {
                            let _: () = redis::cmd("SET")
                                .arg("overlap")
                                .arg(active)
                                .query_async(&mut counters)
                                .await
                                .unwrap();
                        }
                        let _: i64 = redis::cmd("INCR")
                            .arg("loads")
                            .query_async(&mut counters)
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        let _: i64 = redis::cmd("DECR")
                            .arg("active")
                            .query_async(&mut counters)
                            .await
                            .unwrap();
                        Err::<u32, Opaque>(Opaque)
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Err(Opaque)));
    }
}

#[test]
fn failing_loads_across_processes_take_turns() {
    let server = RedisServer::start();
    let start_ms = unix_ms() + 1500;
    let exe = std::env::current_exe().unwrap();
    let started = std::time::Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--ignored", "--exact", "failing_loader_child", "--test-threads", "1"])
                .env(CHILD_ENV, server.url())
                .env(START_ENV, start_ms.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn child test process")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "every caller got the loader's error");
    }
    eprintln!(
        "{PROCESSES} processes x {} callers done {:?} after the start signal",
        CALLERS / PROCESSES,
        started.elapsed().saturating_sub(Duration::from_millis(1500))
    );
    let mut raw = server.client().get_connection().unwrap();
    let overlap: Option<i64> = redis::cmd("GET").arg("overlap").query(&mut raw).unwrap();
    assert_eq!(overlap, None, "two loaders ran at once");
    let loads: i64 = redis::cmd("GET").arg("loads").query(&mut raw).unwrap();
    assert_eq!(loads, CALLERS as i64, "each caller loaded in turn");
}
