//! The one error type of memorix.
//!
//! Every fallible operation returns [`CacheError`]. Its variants separate the
//! causes a caller reacts to differently: a dead server (retry later, fall back),
//! a value that does not decode (a bug or a foreign writer), a bad setting (fix
//! the configuration). Question methods such as [`CacheError::is_connection`]
//! spare callers a `match` when they only care about one class.

use std::error::Error as StdError;

/// A boxed error from a codec, a cipher or a user-supplied component.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Shorthand for `Result<T, CacheError>`.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The server could not be reached, or the connection broke.
    #[error("cache connection error: {0}")]
    Connection(#[source] BoxError),

    /// The server did not answer in time.
    #[error("cache operation timed out")]
    Timeout,

    /// The server answered with an error (wrong type, script error, ACL denial, ...).
    #[error("redis error: {0}")]
    Redis(#[source] redis::RedisError),

    /// A value could not be serialized, or stored bytes could not be deserialized.
    #[error("codec `{codec}` failed: {source}")]
    Codec {
        /// Name of the codec that failed (`msgpack`, `json`, ...).
        codec: &'static str,
        /// What the codec reported.
        #[source]
        source: BoxError,
    },

    /// Encryption or decryption failed: wrong key, tampered or foreign bytes.
    #[error("crypto error: {0}")]
    Crypto(String),

    /// Compressed bytes were corrupt or would inflate past the configured cap.
    #[error("compression error: {0}")]
    Compression(String),

    /// A setting is invalid. `field` names the setting so the fix is obvious.
    #[error("invalid configuration for `{field}`: {reason}")]
    Config {
        /// The configuration field, as the user spells it (`port`, `ttl`, `url`).
        field: &'static str,
        /// Why the value was rejected.
        reason: String,
    },

    /// The cache was closed with `close()` and cannot serve requests.
    #[error("cache is closed")]
    Closed,
}

impl CacheError {
    /// Builds a [`CacheError::Config`] for `field`.
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        CacheError::Config {
            field,
            reason: reason.into(),
        }
    }

    /// Builds a [`CacheError::Codec`] from any error.
    pub fn codec(codec: &'static str, source: impl Into<BoxError>) -> Self {
        CacheError::Codec {
            codec,
            source: source.into(),
        }
    }

    /// True when the server could not be reached or the connection broke.
    pub fn is_connection(&self) -> bool {
        matches!(self, CacheError::Connection(_))
    }

    /// True when the server did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CacheError::Timeout)
    }

    /// True for errors of the backing store itself: connection, timeout, or a
    /// server-side error. A fail-open caller treats these as "cache unavailable".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CacheError::Connection(_) | CacheError::Timeout | CacheError::Redis(_) | CacheError::Closed
        )
    }

    /// True when stored bytes could not be turned back into a value: the codec,
    /// the cipher or the decompressor rejected them.
    pub fn is_corrupt_entry(&self) -> bool {
        matches!(
            self,
            CacheError::Codec { .. } | CacheError::Crypto(_) | CacheError::Compression(_)
        )
    }

    /// True for an invalid setting or argument.
    pub fn is_config(&self) -> bool {
        matches!(self, CacheError::Config { .. })
    }
}

impl From<redis::RedisError> for CacheError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_timeout() {
            CacheError::Timeout
        } else if err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
        {
            CacheError::Connection(Box::new(err))
        } else {
            CacheError::Redis(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_and_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<CacheError>();
    }

    #[test]
    fn config_error_names_the_field() {
        let err = CacheError::config("port", "must be between 1 and 65535");
        assert_eq!(
            err.to_string(),
            "invalid configuration for `port`: must be between 1 and 65535"
        );
        assert!(err.is_config());
        assert!(!err.is_connection());
    }
}
