//! [`Rate`]: how many requests per how long, written `100/m`.

use crate::duration::parse_duration;
use crate::error::{CacheError, Result};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of requests per period: `100/m` is 100 per minute.
///
/// ```
/// use memorix_runtime::ratelimit::Rate;
/// use std::time::Duration;
///
/// let rate: Rate = "100/m".parse()?;
/// assert_eq!(rate, Rate::per_minute(100));
/// assert_eq!(rate.count(), 100);
/// assert_eq!(rate.period(), Duration::from_secs(60));
/// assert_eq!(rate.interval(), Duration::from_millis(600));
/// assert_eq!(Rate::parse("5/30s")?.period(), Duration::from_secs(30));
/// assert!(Rate::parse("100 per minute").is_err());
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    /// `count` requests per `period`. Both must be non-zero; [`Rate::try_new`]
    /// reports a zero instead of clamping it.
    ///
    /// A zero count or period is raised to the smallest valid value (1 request,
    /// 1 ms) so that this constructor never panics.
    pub const fn new(count: u32, period: Duration) -> Self {
        Rate {
            count: if count == 0 { 1 } else { count },
            period: if period.as_nanos() < 1_000_000 {
                Duration::from_millis(1)
            } else {
                period
            },
        }
    }

    /// `count` requests per `period`, rejecting zeros with an error naming `rate`.
    pub fn try_new(count: u32, period: Duration) -> Result<Self> {
        if count == 0 {
            return Err(CacheError::config("rate", "the request count must be at least 1"));
        }
        if period < Duration::from_millis(1) {
            return Err(CacheError::config("rate", "the period must be at least 1ms"));
        }
        Ok(Rate { count, period })
    }

    /// `count` requests per second.
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// `count` requests per day.
    pub fn per_day(count: u32) -> Self {
        Self::new(count, Duration::from_secs(86_400))
    }

    /// Parses `<count>/<period>`: the period is a unit (`s`, `m`, `h`, `d`,
    /// `ms`) or any duration `parse_duration` reads (`30s`, `1h30m`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            CacheError::config(
                "rate",
                format!("`{text}` {why}; write `<count>/<period>`, e.g. `100/m`, `10/s`, `5/30s`"),
            )
        };
        let (count, period) = text.split_once('/').ok_or_else(|| bad("has no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("does not start with a whole number"))?;
        let period = period.trim();
        let period = match period {
            "ms" | "s" | "m" | "h" | "d" => parse_duration("rate", &format!("1{period}")),
            _ => parse_duration("rate", period),
        }
        .map_err(|_| bad("has an unknown period"))?;
        Self::try_new(count, period)
    }

    /// Requests allowed per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The steady spacing between requests: `period / count`.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// The spacing in microseconds, fractional, as the Lua scripts take it.
    pub(crate) fn interval_micros(&self) -> f64 {
        self.period.as_micros() as f64 / f64::from(self.count)
    }
}

impl FromStr for Rate {
    type Err = CacheError;

    fn from_str(text: &str) -> Result<Self> {
        Rate::parse(text)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        match ms {
            1_000 => write!(f, "{}/s", self.count),
            60_000 => write!(f, "{}/m", self.count),
            3_600_000 => write!(f, "{}/h", self.count),
            86_400_000 => write!(f, "{}/d", self.count),
            _ => write!(f, "{}/{}ms", self.count, ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_durations() {
        assert_eq!(Rate::parse("10/s").unwrap(), Rate::per_second(10));
        assert_eq!(Rate::parse(" 7 / h ").unwrap(), Rate::per_hour(7));
        assert_eq!(Rate::parse("3/d").unwrap(), Rate::per_day(3));
        assert_eq!(Rate::parse("2/250ms").unwrap().period(), Duration::from_millis(250));
        assert_eq!(Rate::parse("100/m").unwrap().to_string(), "100/m");
    }

    #[test]
    fn rejects_bad_rates_naming_the_field() {
        for bad in ["", "100", "x/m", "0/m", "10/0s", "10/parsec", "-1/s"] {
            let err = Rate::parse(bad).unwrap_err();
            assert!(err.to_string().contains("`rate`"), "{bad}: {err}");
        }
    }
}
