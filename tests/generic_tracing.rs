//! `GenericRedisCache` with the `tracing` feature, on a real redis-server:
//! every operation runs inside its `memorix.<op>` span, gets record the tier
//! that answered and hit / miss, failures record the error kind, and no span
//! or event carries a stored value or the Redis password.
#![cfg(feature = "tracing")]

mod support;

use memorix::prelude::*;
use memorix::{GenericRedisCache, RedisConfig};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use support::{unique_prefix, RedisServer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span or an event as the subscriber saw it.
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    /// Index of the parent span in [`Log::spans`].
    parent: Option<usize>,
    /// Every recorded field, in order; a later record of a name wins.
    fields: Vec<(&'static str, String)>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    spans: Vec<Captured>,
    events: Vec<Captured>,
    /// Entered spans, innermost last (the tests run on one thread).
    stack: Vec<usize>,
}

/// A subscriber that keeps every span and event in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Log>>);

impl Capture {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spans named `name`, oldest first.
    fn spans(&self, name: &str) -> Vec<Captured> {
        self.log().spans.iter().filter(|s| s.name == name).cloned().collect()
    }

    /// The most recent span named `name`.
    fn last(&self, name: &str) -> Captured {
        self.spans(name)
            .pop()
            .unwrap_or_else(|| panic!("no `{name}` span recorded"))
    }
}

struct Fields<'a>(&'a mut Vec<(&'static str, String)>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

fn index(id: &Id) -> usize {
    id.into_u64() as usize - 1
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut log = self.log();
        let parent = match attrs.parent() {
            Some(id) => Some(index(id)),
            None if attrs.is_contextual() => log.stack.last().copied(),
            None => None,
        };
        let mut span = Captured {
            name: attrs.metadata().name(),
            parent,
            fields: Vec::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        log.spans.push(span);
        Id::from_u64(log.spans.len() as u64)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut log = self.log();
        values.record(&mut Fields(&mut log.spans[index(id)].fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut log = self.log();
        let mut captured = Captured {
            name: event.metadata().name(),
            parent: log.stack.last().copied(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut captured.fields));
        log.events.push(captured);
    }

    fn enter(&self, id: &Id) {
        self.log().stack.push(index(id));
    }

    fn exit(&self, id: &Id) {
        let mut log = self.log();
        if let Some(at) = log.stack.iter().rposition(|i| *i == index(id)) {
            log.stack.remove(at);
        }
    }
}

/// Captures everything this test's thread traces until the guard drops.
/// `#[tokio::test]` runs on one thread, background tasks included.
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    (capture, guard)
}

async fn cache_on(config: RedisConfig, prefix: &str) -> GenericRedisCache {
    GenericRedisCache::builder()
        .redis(config)
        .prefix(prefix)
        .l1_cache_size(1_000)
        .connect()
        .await
        .expect("connect to test redis")
}

#[tokio::test]
async fn gets_record_the_tier_that_answered_and_hit_or_miss() {
    let (capture, _guard) = capture();
    let server = RedisServer::start();
    let prefix = unique_prefix("trace-tier");
    let writer = cache_on(server.config(), &prefix).await;
    let reader = cache_on(server.config(), &prefix).await;
    writer
        .set("user:1", &"Ada", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let set = capture.last("memorix.set");
    assert_eq!(set.field("cache"), Some(prefix.as_str()));
    assert_eq!(set.field("key"), Some("user:1"));
    assert_eq!(set.field("tier"), Some("redis"));
    assert_eq!(set.field("error"), None);

    // The reader's L1 is empty: Redis answers, then L1 does.
    for (round, tier) in [(1, "redis"), (2, "l1")] {
        assert_eq!(reader.get::<String>("user:1").await.unwrap().as_deref(), Some("Ada"));
        let get = capture.last("memorix.get");
        assert_eq!(get.field("key"), Some("user:1"), "round {round}");
        assert_eq!(get.field("tier"), Some(tier), "round {round}");
        assert_eq!(get.field("hit"), Some("true"), "round {round}");
    }

    // The byte API (behind CacheExt::get) traces the same way.
    let bytes_reader = cache_on(server.config(), &prefix).await;
    for tier in ["redis", "l1"] {
        let read: Option<String> = CacheExt::get(&bytes_reader, "user:1").await.unwrap();
        assert_eq!(read.as_deref(), Some("Ada"));
        let get = capture.last("memorix.get");
        assert_eq!((get.field("tier"), get.field("hit")), (Some(tier), Some("true")));
    }

    assert_eq!(reader.get::<String>("nobody").await.unwrap(), None);
    let miss = capture.last("memorix.get");
    assert_eq!(miss.field("key"), Some("nobody"));
    assert_eq!(miss.field("tier"), Some("none"));
    assert_eq!(miss.field("hit"), Some("false"));
    assert_eq!(miss.field("error"), None);
}

#[tokio::test]
async fn batches_nest_their_writes_and_count_their_hits() {
    let (capture, _guard) = capture();
    let server = RedisServer::start();
    let cache = cache_on(server.config(), &unique_prefix("trace-batch")).await;
    cache.set_many(&[("a", 1u32), ("b", 2)], None).await.unwrap();
    let batch = capture.last("memorix.set_many");
    assert_eq!(batch.field("keys"), Some("2"));
    let batch_at = capture.log().spans.iter().position(|s| s.name == "memorix.set_many");
    let nested: Vec<_> = capture
        .spans("memorix.set")
        .iter()
        .map(|s| (s.field("key").unwrap().to_owned(), s.parent))
        .collect();
    assert_eq!(
        nested,
        [("a".to_owned(), batch_at), ("b".to_owned(), batch_at)],
        "each write runs inside the batch's span"
    );

    let read: Vec<Option<u32>> = cache.get_many(&["a", "b", "absent"]).await.unwrap();
    assert_eq!(read, [Some(1), Some(2), None]);
    let batch = capture.last("memorix.get_many");
    assert_eq!((batch.field("keys"), batch.field("hits")), (Some("3"), Some("2")));

    assert!(cache.has("a").await.unwrap());
    assert_eq!(capture.last("memorix.has").field("hit"), Some("true"));
    assert!(!cache.remove("absent").await.unwrap());
    let remove = capture.last("memorix.remove");
    assert_eq!(
        (remove.field("key"), remove.field("hit")),
        (Some("absent"), Some("false"))
    );
    cache.purge().await.unwrap();
    assert_eq!(capture.spans("memorix.purge").len(), 1);
}

#[tokio::test]
async fn failures_record_the_error_kind() {
    let (capture, _guard) = capture();
    let mut server = RedisServer::start();
    let cache = cache_on(server.config(), &unique_prefix("trace-err")).await;
    cache.set("n", &7u8, None).await.unwrap();
    let wrong_type = cache.get::<Vec<String>>("n").await.unwrap_err();
    assert!(wrong_type.is_corrupt_entry(), "{wrong_type}");
    let get = capture.last("memorix.get");
    assert_eq!(get.field("tier"), Some("l1"), "found, then failed to decode");
    assert_eq!(get.field("error"), Some("codec"));

    // Redis gone: the write lands in L1 only, which the span says.
    server.stop();
    cache.set("outage", &1u8, None).await.unwrap();
    let set = capture.last("memorix.set");
    assert_eq!((set.field("tier"), set.field("error")), (Some("l1"), None));

    cache.close().await.unwrap();
    cache.set("late", &1u8, None).await.unwrap_err();
    assert_eq!(capture.last("memorix.set").field("error"), Some("closed"));
    cache.has("late").await.unwrap_err();
    assert_eq!(capture.last("memorix.has").field("error"), Some("closed"));
}

#[tokio::test]
async fn no_span_or_event_holds_a_value_or_the_password() {
    const PASSWORD: &str = "tracing-pw-5f1c9e";
    const VALUE: &str = "stored-value-8d2b4a";
    let (capture, _guard) = capture();
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", server.port());
    let cache = cache_on(RedisConfig::from_url(&url).unwrap(), &unique_prefix("trace-secret")).await;

    cache.set("k", &VALUE, None).await.unwrap();
    cache.set_bytes("raw", VALUE.as_bytes(), None).await.unwrap();
    cache.set_many(&[("m1", VALUE), ("m2", VALUE)], None).await.unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some(VALUE));
    assert_eq!(cache.get_bytes("raw").await.unwrap().as_deref(), Some(VALUE.as_bytes()));
    let many: Vec<Option<String>> = cache.get_many(&["m1", "m2"]).await.unwrap();
    assert_eq!(many, [Some(VALUE.to_owned()), Some(VALUE.to_owned())]);
    assert!(cache.has("k").await.unwrap());
    assert!(cache.remove("k").await.unwrap());
    cache.purge().await.unwrap();

    let log = capture.log();
    let ops = [
        "memorix.get",
        "memorix.set",
        "memorix.get_many",
        "memorix.set_many",
        "memorix.has",
        "memorix.remove",
        "memorix.purge",
    ];
    for op in ops {
        assert!(log.spans.iter().any(|s| s.name == op), "no `{op}` span");
    }
    // Memorix spans carry only keys, counts and labels: a new field that
    // could hold a value has to be added here on purpose.
    let allowed = ["cache", "key", "keys", "tier", "hit", "hits", "error"];
    for span in log.spans.iter().filter(|s| s.name.starts_with("memorix.")) {
        for (name, _) in &span.fields {
            assert!(allowed.contains(name), "`{}` records `{name}`", span.name);
        }
    }
    let value_bytes = format!("{:?}", VALUE.as_bytes());
    let value_bytes = &value_bytes[1..value_bytes.len() - 1];
    for record in log.spans.iter().chain(&log.events) {
        for (name, text) in &record.fields {
            for secret in [PASSWORD, VALUE, value_bytes] {
                assert!(!text.contains(secret), "`{}` field `{name}` leaks: {text}", record.name);
            }
        }
    }
}
