//! The Lua scripts, one per algorithm, and the reply they share.
//!
//! redis-rs's `Script` sends `EVALSHA` and falls back to `EVAL` (loading the
//! script) when the server answers `NOSCRIPT`, e.g. after a restart.

use super::decision::Decision;
use super::Algorithm;
use crate::error::{CacheError, Result};
use once_cell::sync::Lazy;
use redis::Script;
use std::time::Duration;

static GCRA: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/gcra.lua")));
static FIXED_WINDOW: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/fixed_window.lua")));
static SLIDING_WINDOW: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/sliding_window.lua")));

/// The script that decides for `algorithm`.
pub(crate) fn script(algorithm: Algorithm) -> &'static Script {
    match algorithm {
        Algorithm::Gcra => &GCRA,
        Algorithm::FixedWindow => &FIXED_WINDOW,
        Algorithm::SlidingWindow => &SLIDING_WINDOW,
    }
}

/// The settings a script reads from ARGV[1] and ARGV[2].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScriptParams {
    pub(crate) algorithm: Algorithm,
    /// GCRA: emission interval (µs). Windows: the limit.
    pub(crate) first: f64,
    /// GCRA: burst. Fixed window: window in ms. Sliding window: window in µs.
    pub(crate) second: u64,
}

/// Runs one decision on `conn`: one round trip, atomic on the server.
pub(crate) async fn run<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    params: ScriptParams,
    key: &str,
    n: u32,
    commit: bool,
) -> Result<Decision> {
    let mut invocation = script(params.algorithm).key(key);
    match params.algorithm {
        Algorithm::Gcra => invocation.arg(params.first),
        // Window limits are whole numbers; send them as integers.
        _ => invocation.arg(params.first as u64),
    };
    invocation.arg(params.second).arg(n).arg(if commit { "1" } else { "0" });
    let reply: Vec<i64> = invocation.invoke_async(conn).await?;
    parse_reply(&reply)
}

/// `{allowed, limit, remaining, retry_after_us, reset_after_us}` into a [`Decision`].
pub(crate) fn parse_reply(reply: &[i64]) -> Result<Decision> {
    let [allowed, limit, remaining, retry_us, reset_us] = reply else {
        return Err(CacheError::Redis(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "rate-limit script returned an unexpected reply",
            format!("{} fields", reply.len()),
        ))));
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Ok(Decision {
        allowed: *allowed == 1,
        limit: u64::try_from(*limit).unwrap_or(0),
        remaining: u64::try_from(*remaining).unwrap_or(0),
        retry_after: micros(*retry_us),
        reset_after: micros(*reset_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_parses_into_a_decision() {
        let d = parse_reply(&[0, 10, 0, 600_000, 6_000_000]).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(600));
        assert_eq!(d.reset_after, Duration::from_secs(6));
        assert!(parse_reply(&[1, 2]).is_err());
    }
}
