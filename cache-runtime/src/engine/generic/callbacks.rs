//! Event callbacks: get-hit, get-miss, set, delete, error, eviction.
//!
//! A handler that returns an error or panics is logged and skipped: it never
//! breaks the cache operation that fired it. With no handler registered for an
//! event, firing it costs one relaxed atomic load.

use crate::error::{BoxError, CacheError};
use arc_swap::ArcSwap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheEvent {
    /// A get found a value (in L1 or Redis; see [`EventInfo::tier`]).
    GetHit,
    /// A get found nothing.
    GetMiss,
    /// A value was stored.
    Set,
    /// A key was deleted.
    Delete,
    /// An operation hit an error (also when the cache degraded and carried on).
    Error,
    /// L1 evicted a key to make room.
    Eviction,
}

const EVENTS: usize = 6;

impl CacheEvent {
    fn index(self) -> usize {
        self as usize
    }
}

/// The tier that answered a get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// The in-process memory tier.
    L1,
    /// Redis.
    Redis,
}

/// What a handler is told about an event.
#[derive(Debug)]
#[non_exhaustive]
pub struct EventInfo<'a> {
    /// The event.
    pub event: CacheEvent,
    /// The key, without the cache prefix.
    pub key: &'a str,
    /// Which tier answered, for get hits.
    pub tier: Option<Tier>,
    /// The error, for [`CacheEvent::Error`].
    pub error: Option<&'a CacheError>,
}

/// A registered handler. Return `Err` to have the failure logged.
pub type Callback = Arc<dyn Fn(&EventInfo<'_>) -> Result<(), BoxError> + Send + Sync>;

/// Identifies a registered handler, for [`crate::GenericRedisCache::remove_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type Registry = Vec<(CallbackId, CacheEvent, Callback)>;

/// The handlers of one cache.
#[derive(Default)]
pub(crate) struct Callbacks {
    list: ArcSwap<Registry>,
    counts: [AtomicUsize; EVENTS],
    next_id: AtomicU64,
    write: Mutex<()>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("registered", &self.list.load().len())
            .finish()
    }
}

impl Callbacks {
    pub(crate) fn register(&self, event: CacheEvent, callback: Callback) -> CallbackId {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let id = CallbackId(self.next_id.fetch_add(1, Relaxed));
        let mut list = Registry::clone(&self.list.load());
        list.push((id, event, callback));
        self.list.store(Arc::new(list));
        self.counts[event.index()].fetch_add(1, Relaxed);
        id
    }

    pub(crate) fn remove(&self, id: CallbackId) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = Registry::clone(&self.list.load());
        let Some(pos) = list.iter().position(|(i, _, _)| *i == id) else {
            return false;
        };
        let (_, event, _) = list.remove(pos);
        self.list.store(Arc::new(list));
        self.counts[event.index()].fetch_sub(1, Relaxed);
        true
    }

    /// True when some handler listens to `event`.
    #[inline]
    pub(crate) fn wants(&self, event: CacheEvent) -> bool {
        self.counts[event.index()].load(Relaxed) > 0
    }

    #[inline]
    pub(crate) fn fire(&self, event: CacheEvent, key: &str, tier: Option<Tier>, error: Option<&CacheError>) {
        if !self.wants(event) {
            return;
        }
        self.fire_slow(EventInfo {
            event,
            key,
            tier,
            error,
        });
    }

    #[cold]
    fn fire_slow(&self, info: EventInfo<'_>) {
        let list = self.list.load();
        for (id, event, callback) in list.iter() {
            if *event != info.event {
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| callback(&info))) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(callback = id.0, event = ?info.event, error = %err, "cache callback failed")
                }
                Err(_) => tracing::warn!(callback = id.0, event = ?info.event, "cache callback panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_and_panicking_handlers_are_contained() {
        let callbacks = Callbacks::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        callbacks.register(CacheEvent::Set, Arc::new(|_| Err("nope".into())));
        callbacks.register(CacheEvent::Set, Arc::new(|_| panic!("handler bug")));
        let id = callbacks.register(
            CacheEvent::Set,
            Arc::new(move |info| {
                assert_eq!(info.key, "k");
                s.fetch_add(1, Relaxed);
                Ok(())
            }),
        );
        callbacks.fire(CacheEvent::Set, "k", None, None);
        callbacks.fire(CacheEvent::Delete, "k", None, None);
        assert_eq!(seen.load(Relaxed), 1);
        assert!(callbacks.remove(id));
        assert!(!callbacks.remove(id));
        callbacks.fire(CacheEvent::Set, "k", None, None);
        assert_eq!(seen.load(Relaxed), 1);
    }
}
