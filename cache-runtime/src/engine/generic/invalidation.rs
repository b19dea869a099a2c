//! Cross-instance L1 coherence over Redis pub/sub.
//!
//! Every write or removal that reaches Redis publishes, in the same round trip,
//! a message on the namespace's channel `memorix:l1:<namespace>`:
//! `<instance id> 0x1f k <full redis key>` for one key, or
//! `<instance id> 0x1f * <prefix>` for a purge. Every other instance drops the
//! key from its L1; an instance ignores its own messages. When the subscription
//! is lost and comes back, messages may have been missed, so L1 is cleared.

use super::Inner;
use futures_util::StreamExt;
use std::sync::Weak;
use std::time::Duration;

const SEP: char = '\u{1f}';

/// The pub/sub channel of a namespace.
pub(crate) fn channel(namespace: &str) -> String {
    format!("memorix:l1:{namespace}")
}

/// A key invalidation message.
pub(crate) fn key_message(instance: &str, full_key: &str) -> String {
    format!("{instance}{SEP}k{full_key}")
}

/// A purge message: every key under `prefix`.
pub(crate) fn purge_message(instance: &str, prefix: &str) -> String {
    format!("{instance}{SEP}*{prefix}")
}

/// What a received message asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Key(&'a str),
    Purge(&'a str),
}

/// Parses a message, or `None` if it is ours or malformed.
pub(crate) fn parse<'a>(payload: &'a str, own_instance: &str) -> Option<Message<'a>> {
    let (instance, rest) = payload.split_once(SEP)?;
    if instance == own_instance {
        return None;
    }
    match rest.as_bytes().first()? {
        b'k' => Some(Message::Key(&rest[1..])),
        b'*' => Some(Message::Purge(&rest[1..])),
        _ => None,
    }
}

/// A fresh random-enough instance id: time, process id and a counter, hashed.
pub(crate) fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// Subscribes and applies other instances' invalidations until the cache is
/// dropped. Reconnects every `retry` after losing the subscription.
///
/// The client is resolved again on every attempt, so the subscription follows
/// a sentinel failover or a cluster node going away.
pub(crate) async fn subscribe_loop(inner: Weak<Inner>, channel: String, retry: Duration) {
    let mut ever_subscribed = false;
    loop {
        let config = match inner.upgrade() {
            Some(inner) => inner.redis_config.clone(),
            None => return,
        };
        let subscribed = async {
            let client = crate::connection::pubsub_client(&config).await.ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        let connect_timeout = match inner.upgrade() {
            Some(inner) => inner.redis_config.connect_timeout(),
            None => return,
        };
        if let Ok(Some(mut pubsub)) = tokio::time::timeout(connect_timeout, subscribed).await {
            {
                let Some(inner) = inner.upgrade() else { return };
                if ever_subscribed {
                    inner.on_resubscribed();
                }
                inner.coherence_live(true);
            }
            ever_subscribed = true;
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(inner) = inner.upgrade() else { return };
                if let Ok(payload) = msg.get_payload::<String>() {
                    inner.on_invalidation(&payload);
                }
            }
            let Some(inner) = inner.upgrade() else { return };
            inner.coherence_live(false);
            inner.subscription_lost();
            tracing::debug!("L1 invalidation subscription lost; reconnecting");
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_own_ones_are_ignored() {
        let msg = key_message("a1", "app:user:1");
        assert_eq!(parse(&msg, "b2"), Some(Message::Key("app:user:1")));
        assert_eq!(parse(&msg, "a1"), None);
        assert_eq!(parse(&purge_message("a1", "app:"), "b2"), Some(Message::Purge("app:")));
        assert_eq!(parse("garbage", "b2"), None);
        assert_ne!(new_instance_id(), new_instance_id());
    }
}
