//! [`Decision`] (the answer of a limiter) and [`RateLimited`] (the error a
//! denied call returns).

use std::fmt;
use std::time::Duration;

/// The answer to one rate-limit check.
///
/// ```
/// use memorix_runtime::ratelimit::{RateLimiter, Rate};
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let limiter = RateLimiter::builder(Rate::per_second(2)).memory().build()?;
/// let first = limiter.check("user:1").await?;
/// assert!(first.allowed);
/// assert_eq!(first.limit, 2);
/// assert_eq!(first.remaining, 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The most requests the subject may make at once (GCRA: the burst; windows:
    /// the count per window).
    pub limit: u64,
    /// Requests still allowed right now, after this decision.
    pub remaining: u64,
    /// How long to wait before the same request would be allowed; zero when allowed.
    pub retry_after: Duration,
    /// How long until the subject is back to its full `limit` (GCRA, sliding
    /// window) or its window ends (fixed window).
    pub reset_after: Duration,
}

impl Decision {
    /// `Ok(self)` when allowed, else the [`RateLimited`] error to return.
    pub fn into_result(self) -> Result<Decision, RateLimited> {
        if self.allowed {
            Ok(self)
        } else {
            Err(RateLimited::from_decision(&self))
        }
    }

    pub(crate) fn allow_all(limit: u64) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining: limit,
            retry_after: Duration::ZERO,
            reset_after: Duration::ZERO,
        }
    }

    pub(crate) fn deny_for(limit: u64, retry_after: Duration) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining: 0,
            retry_after,
            reset_after: retry_after,
        }
    }
}

/// A call was denied by a rate limiter. `#[rate_limit]` returns it through
/// `From<RateLimited>` for the function's error type.
///
/// ```
/// use memorix_runtime::ratelimit::RateLimited;
///
/// #[derive(Debug)]
/// enum ApiError {
///     TooManyRequests { retry_after_secs: u64 },
/// }
///
/// impl From<RateLimited> for ApiError {
///     fn from(limited: RateLimited) -> Self {
///         ApiError::TooManyRequests { retry_after_secs: limited.retry_after_secs() }
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    /// How long to wait before retrying.
    pub retry_after: Duration,
    /// The limit that was reached.
    pub limit: u64,
    /// How long until the subject is back to its full limit.
    pub reset_after: Duration,
}

impl RateLimited {
    /// Builds the error from a denying decision.
    pub fn from_decision(decision: &Decision) -> Self {
        RateLimited {
            retry_after: decision.retry_after,
            limit: decision.limit,
            reset_after: decision.reset_after,
        }
    }

    /// `retry_after` in whole seconds, rounded up, as HTTP's `Retry-After` wants it.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit of {} exceeded; retry after {} ms",
            self.limit,
            self.retry_after.as_millis()
        )
    }
}

impl std::error::Error for RateLimited {}

/// Whole seconds, rounded up: a client told `0` would retry at once.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
