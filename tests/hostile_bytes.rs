//! Hostile input. Values planted in Redis by anyone with write access, read
//! through every engine on a tokio worker thread (2 MiB stack): a deeply
//! nested value is a codec error, never a stack overflow that aborts the
//! process. Mistyped URLs that put a password where a host, path or option
//! should be: the error names the field and the rule, and the password shows
//! in no error, `Debug` output or log line.

mod support;

use memorix::crypto::Fernet256;
use memorix::prelude::*;
use memorix::{
    CacheError, Codec, CryptRedisCache, GenericRedisCache, Json, MsgPack, Pickle, RedisCache, RedisConfig,
    MAX_DECODE_DEPTH,
};
use std::sync::Arc;
use support::{unique_prefix, RedisServer};

/// Nesting far beyond any stack: 100k containers in 100-200 KB.
const HOSTILE_DEPTH: usize = 100_000;

fn json_nested(depth: usize) -> Vec<u8> {
    let mut out = vec![b'['; depth];
    out.extend(std::iter::repeat_n(b']', depth));
    out
}

/// `depth` one-element msgpack arrays around an empty one.
fn msgpack_nested(depth: usize) -> Vec<u8> {
    let mut out = vec![0x91; depth - 1];
    out.push(0x90);
    out
}

/// Lists nested inside one another, the way serde-pickle writes them.
fn pickle_nested(depth: usize) -> Vec<u8> {
    let mut out = vec![0x80, 3];
    out.extend(std::iter::repeat_n(b']', depth));
    out.extend(std::iter::repeat_n(b'a', depth - 1));
    out.push(b'.');
    out
}

/// Lists nested through the memo (`EMPTY_LIST MEMOIZE`), the way CPython's
/// pickler writes them: no structural nesting until deserialization.
fn pickle_memo_nested(depth: usize) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    for _ in 0..depth {
        out.extend_from_slice(&[b']', 0x94]);
    }
    out.extend(std::iter::repeat_n(b'a', depth - 1));
    out.push(b'.');
    out
}

/// Calls `$check(server, name, codec, builder)` for every codec and nesting style.
macro_rules! for_each_codec {
    ($server:expr, $check:ident) => {
        $check($server, "json", Json, json_nested).await;
        $check($server, "msgpack", MsgPack, msgpack_nested).await;
        $check($server, "pickle", Pickle, pickle_nested).await;
        $check($server, "pickle-memo", Pickle, pickle_memo_nested).await;
    };
}

async fn raw_set(server: &RedisServer, key: &str, value: &[u8]) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
}

/// A codec error that names the depth limit (serde_json and rmp-serde say it their way).
fn assert_too_deep<T: std::fmt::Debug>(what: &str, result: Result<T, CacheError>) {
    let reason = codec_reason(what, result);
    assert!(
        reason.contains("deeper than") || reason.contains("recursion limit") || reason.contains("depth limit"),
        "{what}: {reason}"
    );
}

fn codec_reason<T: std::fmt::Debug>(what: &str, result: Result<T, CacheError>) -> String {
    match result {
        Err(CacheError::Codec { source, .. }) => source.to_string(),
        other => panic!("{what}: expected a codec error, got {other:?}"),
    }
}

/// Runs `read` as a spawned task, so on a worker thread of the multi-thread runtime.
async fn on_worker<T: Send + 'static>(read: impl std::future::Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(read).await.expect("the read task did not panic")
}

async fn redis_cache_refuses(server: &RedisServer, name: &'static str, codec: impl Codec, build: fn(usize) -> Vec<u8>) {
    {
        let prefix = unique_prefix(name);
        let cache = RedisCache::builder()
            .config(server.config())
            .prefix(&prefix)
            .codec(codec)
            .connect()
            .await
            .map(Arc::new)
            .unwrap();
        raw_set(server, &format!("{prefix}deep"), &build(HOSTILE_DEPTH)).await;
        let c = cache.clone();
        assert_too_deep(
            name,
            on_worker(async move { c.get::<serde_json::Value>("deep").await }).await,
        );
        let c = cache.clone();
        // Whatever type the caller asked for: refused for its depth or its type.
        codec_reason(name, on_worker(async move { c.get::<String>("deep").await }).await);
        let c = cache.clone();
        codec_reason(name, on_worker(async move { c.get::<Vec<u32>>("deep").await }).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_values_are_codec_errors_in_redis_cache() {
    let server = RedisServer::start();
    for_each_codec!(&server, redis_cache_refuses);
}

async fn depth_limit_is_exact(
    server: &RedisServer,
    name: &'static str,
    codec: impl Codec,
    build: fn(usize) -> Vec<u8>,
) {
    {
        let prefix = unique_prefix(name);
        let cache = RedisCache::builder()
            .config(server.config())
            .prefix(&prefix)
            .codec(codec)
            .connect()
            .await
            .map(Arc::new)
            .unwrap();
        raw_set(server, &format!("{prefix}max"), &build(MAX_DECODE_DEPTH)).await;
        raw_set(server, &format!("{prefix}over"), &build(MAX_DECODE_DEPTH + 1)).await;
        let c = cache.clone();
        let value = on_worker(async move { c.get::<serde_json::Value>("max").await })
            .await
            .unwrap_or_else(|e| panic!("{name}: {MAX_DECODE_DEPTH} levels must decode: {e}"))
            .unwrap();
        let mut depth = 0;
        let mut cursor = &value;
        while let Some(inner) = cursor.as_array() {
            depth += 1;
            match inner.first() {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(depth, MAX_DECODE_DEPTH, "{name}");
        let c = cache.clone();
        assert_too_deep(
            name,
            on_worker(async move { c.get::<serde_json::Value>("over").await }).await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_reads_the_documented_depth_and_refuses_one_more() {
    let server = RedisServer::start();
    for_each_codec!(&server, depth_limit_is_exact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_pickles_are_codec_errors_in_crypt_redis_cache() {
    // Pickle is CryptRedisCache's default codec. The test holds the key, as a
    // writer that shares it would; without it nothing planted is decoded.
    let server = RedisServer::start();
    let key = memorix::crypto::generate_key().unwrap();
    let cipher = Fernet256::new(&key).unwrap();
    let prefix = unique_prefix("crypt");
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(&key)
        .prefix(&prefix)
        .connect()
        .await
        .map(Arc::new)
        .unwrap();
    assert_eq!(cache.codec().name(), "pickle");
    for (name, build) in [
        ("pickle", pickle_nested as fn(usize) -> Vec<u8>),
        ("pickle-memo", pickle_memo_nested),
    ] {
        let token = cipher.encrypt(&build(HOSTILE_DEPTH)).unwrap();
        raw_set(&server, &format!("{prefix}{name}"), token.as_bytes()).await;
        let c = cache.clone();
        let name_owned = name.to_owned();
        assert_too_deep(
            name,
            on_worker(async move { c.get::<serde_json::Value>(&name_owned).await }).await,
        );
    }
}

async fn two_tier_cache_refuses(
    server: &RedisServer,
    name: &'static str,
    codec: impl Codec,
    build: fn(usize) -> Vec<u8>,
) {
    {
        let prefix = unique_prefix(name);
        let cache = GenericRedisCache::builder()
            .redis(server.config())
            .prefix(&prefix)
            .codec(codec)
            .fail_on_connection_error(true)
            .connect()
            .await
            .map(Arc::new)
            .unwrap();
        // A valid envelope header (magic, version, no flags, the codec's id)
        // in front of the hostile body.
        let id = match name {
            "json" => 2,
            "msgpack" => 1,
            _ => 3,
        };
        let mut stored = vec![0xD7, 1, 0, id];
        stored.extend(build(HOSTILE_DEPTH));
        raw_set(server, &format!("{prefix}deep"), &stored).await;
        let c = cache.clone();
        assert_too_deep(
            name,
            on_worker(async move { c.get::<serde_json::Value>("deep").await }).await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_values_are_codec_errors_in_the_two_tier_cache() {
    let server = RedisServer::start();
    for_each_codec!(&server, two_tier_cache_refuses);
}

// ---------------------------------------------------------------- malformed URLs

/// The password every malformed URL below carries somewhere it does not belong.
const PASSWORD: &str = "Pw0rd9xQz";

fn malformed_urls() -> Vec<String> {
    let p = PASSWORD;
    vec![
        // A `/` in the password cuts the authority short: host `u`, port `1234`.
        format!("redis://u:1234/{p}@cache.internal:6379/0"),
        format!("redis://u:{p}/x@cache.internal:6379/0"),
        format!("redis://:{p}@cache.internal:6379/{p}"),
        format!("redis://:{p}@cache.internal:6379/0?db={p}"),
        format!("redis://:{p}@cache.internal:6379/0?max_connections={p}"),
        format!("rediss://:{p}@cache.internal:6379/0?insecure={p}"),
        format!("redis://:{p}@cache.internal:6379/0?insecure=true"),
        format!("redis://cache.internal:6379/0?connect_timeout={p}"),
        format!("redis://cache.internal:6379/0?response_timeout={p}"),
        format!("redis://cache.internal:6379/0?keepalive={p}"),
        format!("redis://cache.internal:6379/0?{p}=1"),
        format!("{p}://cache.internal:6379/0"),
        format!("redis://:{p}@cache.internal:99999/0"),
        format!("redis+cluster://u:1234/{p}@10.0.0.1:7000,10.0.0.2:7001"),
        format!("redis+cluster://:{p}@10.0.0.1:{p},10.0.0.2:7001"),
        format!("redis+cluster://:{p}@10.0.0.1:7000/3"),
        format!("redis+sentinel://:{p}@s1:26379,s2:26379/"),
        format!("redis+sentinel://:{p}@s1:26379/master/{p}"),
        format!("redis+sentinel://s1:26379/master/0?sentinel_password=x&{p}=1"),
    ]
}

#[test]
fn malformed_urls_never_echo_the_password() {
    for url in malformed_urls() {
        let err = RedisConfig::from_url(&url).expect_err(&url);
        assert!(err.is_config(), "{url}: {err:?}");
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(PASSWORD), "{url} leaked: {shown}");
    }
    // The error still says what to fix.
    let err = RedisConfig::from_url(&format!("redis://u:1234/{PASSWORD}@cache.internal:6379/0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration for `db`: the URL path must be a database number (0-65535); \
         the path holds an `@`: percent-encode `/` in the password as %2F"
    );
    let err = RedisConfig::from_url(&format!("redis://h/0?max_connections={PASSWORD}")).unwrap_err();
    assert!(err.to_string().contains("`max_connections`"), "{err}");
    let err = memorix::TlsVersion::parse(PASSWORD).unwrap_err();
    assert!(!err.to_string().contains(PASSWORD), "{err}");
}

#[tokio::test]
async fn malformed_urls_leave_no_password_in_logs() {
    let (log, _guard) = capture::start();
    for url in malformed_urls() {
        let err = GenericRedisCache::builder()
            .redis_url(&url)
            .connect()
            .await
            .expect_err(&url);
        assert!(err.is_config(), "{url}: {err:?}");
        assert!(!format!("{err} {err:?}").contains(PASSWORD), "{url}: {err:?}");
    }
    let lines = log.lines();
    for line in &lines {
        assert!(!line.contains(PASSWORD), "log line leaked the password: {line}");
    }
}

/// A subscriber that keeps every event and span of this thread as text.
mod capture {
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        pub fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl Subscriber for Log {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let mut line = Line(attrs.metadata().name().to_owned());
            attrs.record(&mut line);
            self.push(line.0);
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut line = Line(String::new());
            values.record(&mut line);
            self.push(line.0);
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(event.metadata().level().to_string());
            event.record(&mut line);
            self.push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Captures this thread's events until the guard drops (`#[tokio::test]`
    /// runs background tasks on the same thread).
    pub fn start() -> (Log, tracing::subscriber::DefaultGuard) {
        let log = Log::default();
        let guard = tracing::subscriber::set_default(log.clone());
        (log, guard)
    }
}
