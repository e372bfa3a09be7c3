//! The two outputs of `outpost deliveries`: [`table`] for people (aligned columns,
//! sizes like `1.2 MiB`, ages like `3h 12m`, control characters in names escaped so a
//! hostile file name cannot drive the terminal) and [`json_lines`] for scripts (one
//! object per row with every field, times as RFC 3339 UTC). Pure functions of the rows
//! and the present.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::row::{Row, UnixMillis, format_utc, unix_millis};

const HEADER: [&str; 6] = [
    "TIME (UTC)",
    "AGE",
    "SERVER",
    "KEY",
    "SIZE",
    "OUTCOME/REASON",
];

/// `rows` as an aligned table with a header line, in the order given (queries return
/// them newest first); ages are counted to `now`. No rows: a line saying so.
pub fn table(rows: &[Row], now: SystemTime) -> String {
    if rows.is_empty() {
        return "no rows match\n".into();
    }
    let now = unix_millis(now);
    let lines: Vec<[String; 6]> = rows.iter().map(|r| cells(r, now)).collect();
    let mut width = HEADER.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in width.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for line in std::iter::once(&header).chain(&lines) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(width).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            // SIZE is right-aligned, the rest left-aligned.
            if i == 4 {
                let _ = write!(text, "{cell:>w$}");
            } else {
                let _ = write!(text, "{cell:<w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The six cells of one row.
fn cells(row: &Row, now: UnixMillis) -> [String; 6] {
    let time = row.time();
    let (key, size, what) = match row {
        Row::Delivered(d) => {
            let what = match d.outcome {
                crate::Outcome::Written => format!("written ({})", d.mode.as_str()),
                crate::Outcome::AlreadyPresent => "already present".to_owned(),
            };
            (printable(&d.key), human_size(d.size), what)
        }
        Row::Failed(f) => (
            printable(&f.key),
            "-".into(),
            format!("failed: {}", printable(&f.reason)),
        ),
        Row::Requeued(r) => (printable(&r.relative_path), "-".into(), "requeued".into()),
    };
    [
        format_utc(time),
        human_age(now.saturating_sub(time)),
        printable(row.server()),
        key,
        size,
        what,
    ]
}

/// `rows` as JSON lines: one object per row, `"kind"` first, then every field.
pub fn json_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        // A row holds strings and numbers only: serializing it cannot fail.
        match serde_json::to_string(row) {
            Ok(line) => out.push_str(&line),
            Err(e) => out.push_str(&serde_json::json!({ "error": e.to_string() }).to_string()),
        }
        out.push('\n');
    }
    out
}

/// A size with binary units and one decimal: `512 B`, `1.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1023.95 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// An age in its two largest units: `45s`, `12m 5s`, `3h 12m`, `2d 4h`; a time in the
/// future (another host's clock) is `0s`.
pub fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), the rest as written.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1_258_291, "1.2 MiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (5 << 30, "5.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_size(*bytes), *text, "{bytes}");
        }
    }

    #[test]
    fn ages() {
        let cases: &[(i64, &str)] = &[
            (-5_000, "0s"),
            (999, "0s"),
            (45_000, "45s"),
            (725_000, "12m 5s"),
            ((3 * 3600 + 12 * 60 + 7) * 1000, "3h 12m"),
            ((2 * 86_400 + 4 * 3600 + 59) * 1000, "2d 4h"),
        ];
        for (ms, text) in cases {
            assert_eq!(human_age(*ms), *text, "{ms}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("plain/é.csv"), "plain/é.csv");
    }
}
