//! Human durations: `250ms`, `30s`, `5m`, `1h30m`, `2d`. The grammar lives in
//! `duration_grammar.rs`, which the attribute macros compile too.

use crate::duration_grammar::parse_millis;
use crate::error::{CacheError, Result};
use std::time::Duration;

/// Parses a duration written as one or more `<number><unit>` parts, with units
/// `ms`, `s`, `m`, `h`, `d`. A bare number means seconds.
///
/// `field` names the setting in the error, so a bad value says where it came from.
///
/// ```
/// use memorix_runtime::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("ttl", "1h30m")?, Duration::from_secs(5400));
/// assert_eq!(parse_duration("ttl", "250ms")?, Duration::from_millis(250));
/// assert_eq!(parse_duration("ttl", "90")?, Duration::from_secs(90));
/// assert!(parse_duration("ttl", "5 parsecs").is_err());
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration> {
    let bad = || {
        CacheError::config(
            field,
            format!(
                "`{}` is not a duration; write e.g. `250ms`, `30s`, `5m`, `1h30m`",
                text.trim()
            ),
        )
    };
    parse_millis(text).map(Duration::from_millis).ok_or_else(bad)
}
