//! The duration grammar, shared word for word by the runtime
//! ([`parse_duration`](crate::parse_duration)) and the attribute macros, which
//! include this file to check `ttl = "..."` and friends at compile time. No
//! dependencies, so both crates can compile it.

/// `250ms`, `30s`, `5m`, `1h30m`, `2d`: one or more `<number><unit>` parts
/// (units `ms`, `s`, `m`, `h`, `d`), or a bare number of seconds. `None` for
/// anything else, or past `u64::MAX` milliseconds.
pub(crate) fn parse_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(value.checked_mul(unit)?)?;
    }
    Some(total)
}
