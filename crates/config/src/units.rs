//! Human units in the configuration: sizes (`8MiB`) and durations (`30s`, `5m`), read
//! and written back the way the docs write them.

use std::time::Duration;

/// Parses a size such as `8MiB`, `64MB`, `512KiB` or `1024` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with a unit, like 8MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Parses a rate such as `50MiB/s` (a size per second), or `0` (unlimited): bytes
/// per second, 0 for no limit. A rate other than 0 is at least 1KiB/s.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let Some(size) = t.strip_suffix("/s") else {
        return Err(format!(
            "invalid rate {s:?}: expected a size per second like 50MiB/s, or 0 (unlimited)"
        ));
    };
    let n = parse_size(size).map_err(|e| format!("invalid rate {s:?}: {e}"))?;
    if n != 0 && n < 1024 {
        return Err(format!(
            "invalid rate {s:?}: at least 1KiB/s, or 0 (unlimited)"
        ));
    }
    Ok(n)
}

/// A rate as [`parse_rate`] reads it: `50MiB/s`, or `0`.
pub fn format_rate(n: u64) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{}/s", format_size(n))
    }
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}: expected a number with a unit, like 30s or 5m")
    })?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        "" => {
            return Err(format!(
                "invalid duration {s:?}: a unit is required (ms, s, m, h, d)"
            ));
        }
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (use ms, s, m, h, d)"
            ));
        }
    };
    Ok(d)
}

/// A period that `0` (or any zero duration) switches off: `None`.
pub fn parse_period(s: &str) -> Result<Option<Duration>, String> {
    if s.trim() == "0" {
        return Ok(None);
    }
    parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
}

/// `d` in the largest unit of `parse_duration` that writes it exactly (`300s` is `5m`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 && !d.is_zero() {
        return format!("{}ms", d.as_millis());
    }
    [(86_400, "d"), (3600, "h"), (60, "m")]
        .iter()
        .find(|(unit, _)| s >= *unit && s.is_multiple_of(*unit))
        .map_or_else(
            || format!("{s}s"),
            |(unit, name)| format!("{}{name}", s / unit),
        )
}

/// `n` bytes in the largest unit of `parse_size` that writes it exactly (`16MiB`, `64MB`).
pub fn format_size(n: u64) -> String {
    [
        (1 << 40, "TiB"),
        (1_000_000_000_000, "TB"),
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "KB"),
    ]
    .iter()
    .find(|(unit, _)| n >= *unit && n.is_multiple_of(*unit))
    .map_or_else(
        || n.to_string(),
        |(unit, name)| format!("{}{name}", n / unit),
    )
}
