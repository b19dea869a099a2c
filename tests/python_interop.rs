//! Interop with the real Python library: rick (and `cryptography`) from PyPI on
//! one side of a real redis-server, memorix on the other, both directions.
//!
//! The test builds a virtual environment once, in `target/interop-venv`, with
//! the pinned packages of `tests/interop/requirements.txt`, and reuses it while
//! that file is unchanged. It never skips: without python3, its venv module or
//! pip, it fails and says what to install. Set `MEMORIX_PYTHON` to use another
//! interpreter than `python3`.

mod support;

use memorix::crypto::{Algorithm, Fernet, Fernet256};
use memorix::prelude::*;
use memorix::{CryptRedisCache, Json, Pickle, RedisCache};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};
use support::RedisServer;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// 60 characters, 64 UTF-8 bytes: valid for rick, which counts bytes.
const NON_ASCII_KEY: &str = "ключkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
const KAT_TIME: u64 = 1_700_000_000;
const KAT_IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// How long `pip install` may take before the test gives up.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------- the venv

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    root().join("tests/interop/rick_side.py")
}

/// The venv's python, creating the venv on first use.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = root().join("target/interop-venv");
        let _lock = DirLock::acquire(&root().join("target/interop-venv.lock"));
        let base = std::env::var("MEMORIX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        ensure_venv(&venv, &base);
        venv.join("bin/python")
    })
}

fn ensure_venv(venv: &Path, base: &str) {
    let requirements = std::fs::read_to_string(root().join("tests/interop/requirements.txt"))
        .expect("read tests/interop/requirements.txt");
    let marker = venv.join("memorix-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str())
        && venv.join("bin/python").exists()
    {
        return;
    }
    let started = Instant::now();
    if venv.exists() {
        std::fs::remove_dir_all(venv).expect("remove the outdated interop venv");
    }
    match Command::new(base).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "`{base}` was not found or does not run. The Python interop test needs Python 3 with venv and pip: \
             install them with `apt-get install -y python3 python3-venv python3-pip` (Debian/Ubuntu) or \
             `brew install python` (macOS), or point MEMORIX_PYTHON at a Python 3 interpreter."
        ),
    }
    let out = run_with_timeout(
        Command::new(base).args(["-m", "venv"]).arg(venv),
        Duration::from_secs(120),
    );
    if !out.status.success() {
        panic!(
            "`{base} -m venv` failed; install the venv module and pip (Debian/Ubuntu: \
             `apt-get install -y python3-venv python3-pip`).\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run_with_timeout(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "-r",
            ])
            .arg(root().join("tests/interop/requirements.txt")),
        PIP_TIMEOUT,
    );
    if !out.status.success() {
        panic!(
            "pip could not install the packages of tests/interop/requirements.txt (rick from PyPI); \
             pip needs access to PyPI, and the venv pip (`apt-get install -y python3-pip` on Debian/Ubuntu).\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&marker, requirements).expect("write the venv marker");
    eprintln!("interop venv ready in {:.1} s", started.elapsed().as_secs_f64());
}

/// Runs a command to completion, killing it after `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait for child").is_some() {
            return child.wait_with_output().expect("collect child output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect child output");
            panic!(
                "{cmd:?} did not finish within {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A lock directory, so concurrent test processes (nextest) build the venv once.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> Self {
        std::fs::create_dir_all(path.parent().unwrap()).expect("create target/");
        let deadline = Instant::now() + PIP_TIMEOUT + Duration::from_secs(60);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock left by a killed run: older than any honest install.
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > PIP_TIMEOUT + Duration::from_secs(60));
                    if stale {
                        let _ = std::fs::remove_dir(path);
                    }
                    assert!(Instant::now() < deadline, "timed out waiting for {path:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {path:?}: {e}"),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `rick_side.py ARGS` and returns its stdout; panics with its stderr.
fn rick(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(python())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .arg(script())
            .args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "rick_side.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output").trim().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---------------------------------------------------------------- the fixture

/// The Rust twin of `FIXTURE` in rick_side.py.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fixture {
    name: String,
    unicode: String,
    count: i64,
    big: i64,
    negative: i64,
    ratio: f64,
    active: bool,
    inactive: bool,
    missing: Option<String>,
    tags: Vec<String>,
    nested: Nested,
    /// Bytes: pickle only (JSON has no bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<serde_bytes::ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    level: i64,
    inner: Inner,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    ok: bool,
    items: Vec<i64>,
}

fn fixture(with_bytes: bool) -> Fixture {
    Fixture {
        name: "Ada Lovelace".into(),
        unicode: "naïve café ☕ 日本".into(),
        count: 42,
        big: (1 << 40) + 7,
        negative: -17,
        ratio: 3.25,
        active: true,
        inactive: false,
        missing: None,
        tags: vec!["a".into(), "b".into(), "c".into()],
        nested: Nested {
            level: 2,
            inner: Inner {
                ok: true,
                items: vec![1, 2, 3],
            },
        },
        blob: with_bytes.then(|| serde_bytes::ByteBuf::from(b"\x00\x01binary\xff".to_vec())),
    }
}

/// rick writes under `key`, memorix reads an equal value; memorix writes under
/// `key2`, rick reads an equal value.
async fn both_directions(server: &RedisServer, mode: &str, cache: &dyn Cache, key_hex: &str, with_bytes: bool) {
    let port = server.port().to_string();
    let from_rick = format!("{mode}:from-rick");
    let from_memorix = format!("{mode}:from-memorix");

    rick(&["write", &port, mode, &from_rick, key_hex]);
    let read: Option<Fixture> = cache.get(&from_rick).await.unwrap();
    assert_eq!(read, Some(fixture(with_bytes)), "{mode}: memorix reading rick's entry");

    cache
        .set(&from_memorix, &fixture(with_bytes), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(rick(&["read", &port, mode, &from_memorix, key_hex]), "equal", "{mode}");
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn crypt_redis_cache_with_pickle_both_directions() {
    let server = RedisServer::start();
    let cache = CryptRedisCache::new(KEY, server.config()).await.unwrap();
    both_directions(&server, "crypt-pickle", &cache, &hex(KEY.as_bytes()), true).await;
}

#[tokio::test]
async fn crypt_redis_cache_with_a_non_ascii_key_of_64_bytes_both_directions() {
    let server = RedisServer::start();
    let cache = CryptRedisCache::new(NON_ASCII_KEY, server.config()).await.unwrap();
    both_directions(&server, "crypt-pickle", &cache, &hex(NON_ASCII_KEY.as_bytes()), true).await;
}

#[tokio::test]
async fn crypt_redis_cache_with_json_both_directions() {
    let server = RedisServer::start();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(KEY)
        .codec(Json)
        .connect()
        .await
        .unwrap();
    both_directions(&server, "crypt-json", &cache, &hex(KEY.as_bytes()), false).await;
}

#[tokio::test]
async fn plain_redis_cache_with_pickle_both_directions() {
    let server = RedisServer::start();
    let cache = RedisCache::builder()
        .config(server.config())
        .codec(Pickle)
        .connect()
        .await
        .unwrap();
    both_directions(&server, "pickle", &cache, "", true).await;
}

#[tokio::test]
async fn plain_redis_cache_with_json_both_directions() {
    let server = RedisServer::start();
    let cache = RedisCache::builder()
        .config(server.config())
        .codec(Json)
        .connect()
        .await
        .unwrap();
    both_directions(&server, "json", &cache, "", false).await;
}

#[tokio::test]
async fn standard_fernet_with_pickle_both_directions() {
    let server = RedisServer::start();
    let key = Fernet::generate_key().unwrap();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .algorithm(Algorithm::Fernet)
        .key(&key)
        .connect()
        .await
        .unwrap();
    // The standard Fernet key is ASCII base64; the script takes it as is.
    both_directions(&server, "fernet-pickle", &cache, &key, true).await;
}

#[test]
fn a_missing_python_fails_saying_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let panic = std::panic::catch_unwind(|| ensure_venv(&venv, "/nonexistent/python3")).unwrap_err();
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| panic.downcast_ref::<&str>().unwrap().to_string());
    assert!(
        message.contains("apt-get install -y python3 python3-venv python3-pip"),
        "{message}"
    );
    assert!(!venv.exists());
}

#[test]
fn known_answers_rick_tokens_equal_memorix_tokens() {
    for key in [KEY, NON_ASCII_KEY] {
        let cipher = Fernet256::new(key).unwrap();
        let lines = rick(&["kat", &hex(key.as_bytes())]);
        let mut count = 0;
        for line in lines.lines() {
            let vector: serde_json::Value = serde_json::from_str(line).unwrap();
            let plain = unhex(vector["plain"].as_str().unwrap());
            let rick_token = vector["token"].as_str().unwrap();
            assert_eq!(
                cipher.decrypt(rick_token).unwrap(),
                plain,
                "rick's token decrypts in Rust"
            );
            assert_eq!(
                cipher.encrypt_with_iv(&plain, KAT_TIME, KAT_IV),
                rick_token,
                "byte-identical token for {} bytes",
                plain.len()
            );
            count += 1;
        }
        assert_eq!(count, 7, "{lines}");
    }
}

#[test]
fn tokens_made_in_rust_decrypt_in_python() {
    let cipher = Fernet256::new(KEY).unwrap();
    let plain = "any bytes \u{0}\u{1} ☕".as_bytes();
    let token = cipher.encrypt(plain).unwrap();
    assert_eq!(rick(&["decrypt", &hex(KEY.as_bytes()), &token]), hex(plain));

    let fernet_key = Fernet::generate_key().unwrap();
    let fernet = Fernet::new(&fernet_key).unwrap();
    let token = fernet.encrypt(plain).unwrap();
    assert_eq!(rick(&["fernet-decrypt", &fernet_key, &token]), hex(plain));
    let from_python = rick(&["fernet-encrypt", &fernet_key, &hex(plain)]);
    assert_eq!(fernet.decrypt(&from_python).unwrap(), plain);
}

#[tokio::test]
async fn rick_cannot_read_and_memorix_rejects_across_keys() {
    let server = RedisServer::start();
    let port = server.port().to_string();
    // rick writes under one key; memorix with another key gets a Crypto error, not data.
    rick(&["write", &port, "crypt-pickle", "crypt-pickle:k", &hex(KEY.as_bytes())]);
    let other = CryptRedisCache::new(&Fernet256::generate_key().unwrap(), server.config())
        .await
        .unwrap();
    let err = other.get::<Fixture>("crypt-pickle:k").await.unwrap_err();
    assert!(matches!(err, memorix::CacheError::Crypto(_)), "{err:?}");
}
