//! Key prefixes and TTL validation, shared by every engine.

use crate::error::{CacheError, Result};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

/// A key prefix that can be swapped at run time without locking readers.
#[derive(Debug)]
pub(crate) struct Prefix(ArcSwap<String>);

impl Prefix {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Prefix(ArcSwap::from_pointee(prefix.into()))
    }

    pub(crate) fn get(&self) -> String {
        self.0.load().as_ref().clone()
    }

    pub(crate) fn set(&self, prefix: &str) {
        self.0.store(Arc::new(prefix.to_owned()));
    }

    /// The current prefix, borrowed: no allocation (for engines that write
    /// `prefix + key` straight into a command buffer).
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<String>> {
        self.0.load()
    }

    /// `prefix + key`, in one allocation.
    pub(crate) fn apply(&self, key: &str) -> String {
        let prefix = self.0.load();
        let mut full = String::with_capacity(prefix.len() + key.len());
        full.push_str(&prefix);
        full.push_str(key);
        full
    }

    /// A Redis `SCAN MATCH` pattern for every key under the prefix, with glob
    /// characters in the prefix escaped so `a*` purges only `a*...` keys.
    pub(crate) fn scan_pattern(&self) -> String {
        scan_pattern(&self.0.load())
    }
}

/// A Redis `SCAN MATCH` pattern for every key that starts with `prefix`, with
/// glob characters in the prefix escaped so `a*` matches only `a*...` keys.
pub(crate) fn scan_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// Resolves the TTL of a write: the caller's, else the engine default, else
/// none. Zero is rejected: a zero TTL is almost always a unit mistake, and
/// silently picking a default would hide it.
pub(crate) fn effective_ttl(ttl: Option<Duration>, default: Option<Duration>) -> Result<Option<Duration>> {
    match ttl.or(default) {
        Some(ttl) if ttl.is_zero() => Err(CacheError::config(
            "ttl",
            "must be greater than zero; use None for no expiry",
        )),
        other => Ok(other),
    }
}

/// A TTL in whole milliseconds for `PX`, rounding sub-millisecond TTLs up so
/// that a tiny TTL never becomes "no expiry".
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis().max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        assert_eq!(Prefix::new("a*b?[c]\\:").scan_pattern(), "a\\*b\\?\\[c\\]\\\\:*");
        assert_eq!(Prefix::new("").scan_pattern(), "*");
    }

    #[test]
    fn zero_ttl_is_an_error_naming_the_field() {
        let err = effective_ttl(Some(Duration::ZERO), None).unwrap_err();
        assert!(err.to_string().contains("`ttl`"));
        assert_eq!(
            effective_ttl(None, Some(Duration::from_secs(5))).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(effective_ttl(None, None).unwrap(), None);
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
    }
}
