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
///
/// `Display` prints this error's own message; its cause, when there is one,
/// is [`source()`](StdError::source), so a report that walks the chain prints
/// each cause once (a server's error reply is part of the message of
/// [`CacheError::Redis`], which has no further cause). [`CacheError::chain`]
/// renders the whole chain on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The server could not be reached, or the connection broke.
    #[error("cache connection error")]
    Connection(#[source] BoxError),

    /// The server did not answer in time.
    #[error("cache operation timed out")]
    Timeout,

    /// The server answered with an error (wrong type, script error, ACL denial, ...).
    /// The server's reply is this error's message, not a separate cause.
    #[error("redis error: {0}")]
    Redis(redis::RedisError),

    /// A value could not be serialized, or stored bytes could not be deserialized.
    #[error("codec `{codec}` failed")]
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

    /// This error and its causes on one line (`cache connection error:
    /// Connection refused`), for logs that print only `Display`.
    pub fn chain(&self) -> impl std::fmt::Display + '_ {
        Chain(self)
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

/// [`CacheError::chain`]: every message of the chain, `: `-separated.
struct Chain<'a>(&'a CacheError);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
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
    fn a_cause_is_printed_once_in_a_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let err = CacheError::Connection(Box::new(io));
        assert_eq!(err.to_string(), "cache connection error");
        assert_eq!(err.source().map(|s| s.to_string()).as_deref(), Some("refused by peer"));
        assert_eq!(err.chain().to_string(), "cache connection error: refused by peer");
        let codec = CacheError::codec("json", "expected value at line 1");
        assert_eq!(
            codec.chain().to_string(),
            "codec `json` failed: expected value at line 1"
        );
        for err in [err, codec] {
            let mut messages = vec![err.to_string()];
            let mut cause = err.source();
            while let Some(c) = cause {
                messages.push(c.to_string());
                cause = c.source();
            }
            for (i, m) in messages.iter().enumerate() {
                for later in &messages[i + 1..] {
                    assert!(!m.contains(later.as_str()), "`{m}` repeats its cause `{later}`");
                }
            }
        }
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
