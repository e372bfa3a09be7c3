//! The window's meaning with fixed times: ranges, wrap past midnight, several ranges,
//! the whole day, a named zone across both DST changes, and what is refused.

use std::time::SystemTime;

use jiff::Timestamp;

use super::Window;

/// An instant written in RFC 3339.
fn at(s: &str) -> SystemTime {
    SystemTime::from(s.parse::<Timestamp>().expect("RFC 3339"))
}

fn w(s: &str) -> Window {
    Window::parse(s).expect("valid window")
}

#[test]
fn a_range_past_midnight_is_open_overnight() {
    let win = w("22:00-06:00");
    assert!(!win.is_open(at("2025-03-10T21:59:59Z")));
    assert!(win.is_open(at("2025-03-10T22:00:00Z")));
    assert!(win.is_open(at("2025-03-11T05:59:59Z")));
    assert!(!win.is_open(at("2025-03-11T06:00:00Z")));
    assert_eq!(
        win.next_open(at("2025-03-10T12:00:00Z")),
        Some(at("2025-03-10T22:00:00Z"))
    );
    assert_eq!(
        win.next_close(at("2025-03-10T23:00:00Z")),
        Some(at("2025-03-11T06:00:00Z"))
    );
    // Just after the close, the next opening is the same evening.
    assert_eq!(
        win.next_open(at("2025-03-11T06:00:00Z")),
        Some(at("2025-03-11T22:00:00Z"))
    );
    assert_eq!(win.next_close(at("2025-03-11T12:00:00Z")), None);
    // Open: the next opening is now.
    let now = at("2025-03-11T01:00:00Z");
    assert_eq!(win.next_open(now), Some(now));
}

#[test]
fn several_ranges_and_the_whole_day() {
    let win = w("22:00-02:00, 04:00-06:00");
    assert!(!win.is_open(at("2025-01-02T03:00:00Z")));
    assert_eq!(
        win.next_open(at("2025-01-02T03:00:00Z")),
        Some(at("2025-01-02T04:00:00Z"))
    );
    assert_eq!(
        win.next_close(at("2025-01-01T23:00:00Z")),
        Some(at("2025-01-02T02:00:00Z"))
    );
    // Ranges that touch are one opening.
    let joined = w("20:00-24:00, 00:00-02:00");
    assert_eq!(
        joined.next_close(at("2025-01-01T21:00:00Z")),
        Some(at("2025-01-02T02:00:00Z"))
    );
    let all = w("00:00-24:00");
    for t in ["2025-01-01T00:00:00Z", "2025-06-30T23:59:59Z"] {
        let p = all.at(at(t));
        assert!(p.open && p.until.is_none(), "{t}: {p:?}");
    }
}

#[test]
fn a_named_zone_follows_its_wall_clock_across_dst() {
    // Berlin: CET (+01:00) in winter, CEST (+02:00) in summer.
    let win = w("22:00-06:00 Europe/Berlin");
    assert_eq!(
        win.next_open(at("2025-01-15T12:00:00Z")),
        Some(at("2025-01-15T21:00:00Z"))
    );
    assert_eq!(
        win.next_open(at("2025-07-15T12:00:00Z")),
        Some(at("2025-07-15T20:00:00Z"))
    );
    // The night of the spring change (30 March 2025, 02:00 -> 03:00): opens at 22:00
    // CET, closes at 06:00 CEST, one hour shorter.
    assert_eq!(
        win.next_close(at("2025-03-29T22:00:00Z")),
        Some(at("2025-03-30T04:00:00Z"))
    );
    assert_eq!(
        win.next_open(at("2025-03-30T12:00:00Z")),
        Some(at("2025-03-30T20:00:00Z"))
    );
    // The night of the autumn change (26 October 2025, 03:00 -> 02:00): one hour longer.
    assert_eq!(
        win.next_close(at("2025-10-25T21:00:00Z")),
        Some(at("2025-10-26T05:00:00Z"))
    );
}

#[test]
fn skipped_and_doubled_local_times_are_documented() {
    // 02:15-02:45 does not exist on 30 March 2025 in Berlin: it is taken one hour later
    // (03:15-03:45 CEST), so the window still opens that day.
    let gap = w("02:15-02:45 Europe/Berlin");
    assert_eq!(
        gap.next_open(at("2025-03-29T12:00:00Z")),
        Some(at("2025-03-30T01:15:00Z"))
    );
    assert_eq!(
        gap.next_close(at("2025-03-30T01:20:00Z")),
        Some(at("2025-03-30T01:45:00Z"))
    );
    // 02:15-02:45 happens twice on 26 October 2025: only the first occurrence (CEST)
    // opens the window.
    let fold = w("02:15-02:45 Europe/Berlin");
    assert_eq!(
        fold.next_open(at("2025-10-25T12:00:00Z")),
        Some(at("2025-10-26T00:15:00Z"))
    );
    assert!(
        !fold.is_open(at("2025-10-26T01:20:00Z")),
        "second 02:20 CET"
    );
    assert_eq!(
        fold.next_open(at("2025-10-26T01:20:00Z")),
        Some(at("2025-10-27T01:15:00Z"))
    );
}

#[test]
fn a_range_the_clock_skips_keeps_its_length() {
    // 02:00-03:00 on 30 March 2025 in Berlin: both ends are 03:00 CEST; the range keeps
    // its hour from its start (03:00-04:00 CEST) instead of vanishing for the day.
    let skipped = w("02:00-03:00 Europe/Berlin");
    assert_eq!(
        skipped.next_open(at("2025-03-29T12:00:00Z")),
        Some(at("2025-03-30T01:00:00Z"))
    );
    assert_eq!(
        skipped.next_close(at("2025-03-30T01:10:00Z")),
        Some(at("2025-03-30T02:00:00Z"))
    );
    // 02:30-03:15: starts at 03:30 CEST, keeps its 45 minutes.
    let partly = w("02:30-03:15 Europe/Berlin");
    assert_eq!(
        partly.next_open(at("2025-03-29T12:00:00Z")),
        Some(at("2025-03-30T01:30:00Z"))
    );
    assert_eq!(
        partly.next_close(at("2025-03-30T01:40:00Z")),
        Some(at("2025-03-30T02:15:00Z"))
    );
}

#[test]
fn bad_windows_are_refused_with_the_reason() {
    for (text, says) in [
        ("06:00-06:00", "is empty"),
        ("00:00-00:00", "is empty"),
        ("25:00-06:00", "HH:MM between 00:00 and 24:00"),
        ("22:60-06:00", "HH:MM between 00:00 and 24:00"),
        ("2:00-06:00", "HH:MM between 00:00 and 24:00"),
        ("24:00-06:00", "cannot start at 24:00"),
        ("22:00", "not a range"),
        ("", "not a range"),
        ("22:00-06:00, ", "not a range"),
        (
            "22:00-06:00 Mars/Olympus",
            "unknown time zone \"Mars/Olympus\"",
        ),
    ] {
        let err = Window::parse(text).expect_err(text);
        assert!(err.contains(says), "{text:?}: {err}");
    }
}

#[test]
fn written_back_as_read() {
    assert_eq!(w("22:00-06:00").to_string(), "22:00-06:00 UTC");
    assert_eq!(
        w(" 22:00 - 02:00,04:00-24:00  America/New_York").to_string(),
        "22:00-02:00, 04:00-24:00 America/New_York"
    );
    assert_eq!(w("08:00-00:00").to_string(), "08:00-24:00 UTC");
    assert_eq!(w("22:00-06:00 UTC"), w("22:00-06:00"));
}
