//! Human durations: `250ms`, `30s`, `5m`, `1h30m`, `2d`.

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
    let text = text.trim();
    let bad = || {
        CacheError::config(
            field,
            format!("`{text}` is not a duration; write e.g. `250ms`, `30s`, `5m`, `1h30m`"),
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = value.checked_mul(unit_ms).ok_or_else(bad)?;
        total = total.checked_add(Duration::from_millis(part)).ok_or_else(bad)?;
    }
    Ok(total)
}
