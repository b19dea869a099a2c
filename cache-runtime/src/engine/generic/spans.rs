//! `tracing` spans around the public operations (feature `tracing`).
//!
//! Each operation runs inside a DEBUG span named `memorix.<op>` (target
//! `memorix_runtime::engine::generic::spans`) with the fields:
//!
//! - `cache`: the key prefix; `key`: the stored key, so a key longer than
//!   `hash_keys_longer_than` shows as its digest, like in Redis and in callbacks;
//! - `tier` (`"l1"`, `"redis"` or `"none"`) and `hit`, once a get knows them;
//!   `tier` of a set says where the value landed (`"l1"`: queued for replay);
//! - `keys` / `hits`: counts, for the batch operations;
//! - `error`: the error kind (`"timeout"`, `"codec"`, ...) when the call fails.
//!
//! Values never reach a span, nor does the Redis configuration (which holds
//! the password): fields are keys, counts and fixed labels only.
//!
//! Without the feature, [`OpSpan`] is a zero-sized type and every function
//! here is an empty inline one, so the call sites carry no `#[cfg]` and the
//! hot path no span.

use super::{Inner, Tier};
use std::future::Future;
use tracing::field::Empty;

#[cfg(feature = "tracing")]
/// The span of one cache operation.
pub(crate) struct OpSpan(tracing::Span);

#[cfg(not(feature = "tracing"))]
/// The span of one cache operation: nothing, without the feature.
pub(crate) struct OpSpan;

#[cfg(not(feature = "tracing"))]
const _: () = assert!(std::mem::size_of::<OpSpan>() == 0);

/// Opens the span `$name` of `$inner` with `cache` and the given fields; every
/// span may record an `error`.
#[cfg(feature = "tracing")]
macro_rules! op_span {
    ($inner:expr, $name:literal $(, $field:ident = $value:expr)*) => {
        // The prefix is read only when a subscriber wants the span.
        OpSpan(tracing::debug_span!(
            $name,
            cache = %$inner.prefix.get(),
            $($field = $value,)*
            error = Empty,
        ))
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! op_span {
    ($inner:expr, $name:literal $(, $field:ident = $value:expr)*) => {{
        let _ = ($inner, $(&$value),*);
        OpSpan
    }};
}

/// `memorix.get`: a single-key read, by the typed or the byte API.
pub(crate) fn get(inner: &Inner, key: &str) -> OpSpan {
    op_span!(inner, "memorix.get", key = key, tier = Empty, hit = Empty)
}

/// `memorix.set`: a single-key write.
pub(crate) fn set(inner: &Inner, key: &str) -> OpSpan {
    op_span!(inner, "memorix.set", key = key, tier = Empty)
}

/// `memorix.has`: an existence check; `hit` is the answer.
pub(crate) fn has(inner: &Inner, key: &str) -> OpSpan {
    op_span!(inner, "memorix.has", key = key, hit = Empty)
}

/// `memorix.remove`: a delete from both tiers; `hit` says whether the key existed.
pub(crate) fn remove(inner: &Inner, key: &str) -> OpSpan {
    op_span!(inner, "memorix.remove", key = key, hit = Empty)
}

/// `memorix.get_many`: a batch read of `keys` keys, `hits` of them found.
pub(crate) fn get_many(inner: &Inner, keys: usize) -> OpSpan {
    op_span!(inner, "memorix.get_many", keys = keys, hits = Empty)
}

/// `memorix.set_many`: a batch write; each entry also gets its `memorix.set`.
pub(crate) fn set_many(inner: &Inner, keys: usize) -> OpSpan {
    op_span!(inner, "memorix.set_many", keys = keys)
}

/// `memorix.purge`: removal of every key under the prefix.
pub(crate) fn purge(inner: &Inner) -> OpSpan {
    op_span!(inner, "memorix.purge")
}

#[cfg(feature = "tracing")]
impl OpSpan {
    /// Runs `op` inside the span and records the error kind if it fails.
    pub(crate) async fn run<T>(&self, op: impl Future<Output = crate::Result<T>>) -> crate::Result<T> {
        use tracing::Instrument;
        let result = op.instrument(self.0.clone()).await;
        if let Err(err) = &result {
            self.0.record("error", crate::metrics::error_kind(err));
        }
        result
    }

    /// What a get found: the tier that answered, or `None` for a miss.
    pub(crate) fn found(&self, tier: Option<Tier>) {
        self.0.record("tier", tier.map_or("none", label));
        self.0.record("hit", tier.is_some());
    }

    /// Where a write landed: Redis, or only L1 while Redis is unreachable.
    pub(crate) fn landed(&self, tier: Tier) {
        self.0.record("tier", label(tier));
    }

    /// The yes / no answer of `has` and `remove`.
    pub(crate) fn hit(&self, hit: bool) {
        self.0.record("hit", hit);
    }

    /// How many keys of a batch read were found.
    pub(crate) fn hits<T>(&self, found: &[Option<T>]) {
        self.0.record("hits", found.iter().filter(|v| v.is_some()).count());
    }
}

#[cfg(feature = "tracing")]
fn label(tier: Tier) -> &'static str {
    match tier {
        Tier::L1 => "l1",
        Tier::Redis => "redis",
    }
}

#[cfg(not(feature = "tracing"))]
impl OpSpan {
    /// Hands `op` back untouched; the bound keeps the error type inferred as
    /// with the feature.
    #[inline(always)]
    pub(crate) fn run<T, F: Future<Output = crate::Result<T>>>(&self, op: F) -> F {
        op
    }

    #[inline(always)]
    pub(crate) fn found(&self, _tier: Option<Tier>) {}

    #[inline(always)]
    pub(crate) fn landed(&self, _tier: Tier) {}

    #[inline(always)]
    pub(crate) fn hit(&self, _hit: bool) {}

    #[inline(always)]
    pub(crate) fn hits<T>(&self, _found: &[Option<T>]) {}
}
