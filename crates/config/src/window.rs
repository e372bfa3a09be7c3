//! A server's delivery window (`window: "22:00-06:00, 12:00-13:00 Europe/Berlin"`): its
//! syntax, and as pure functions of a time passed in, whether it is open then and when
//! it next opens or closes. Times are the zone's wall clock; a range is resolved into
//! instants day by day with the *compatible* rule (a local time the clock skips is
//! taken one skip later, a local time the clock shows twice is its first occurrence).
//! The zone database is compiled in (`jiff`'s bundled tzdb): nothing is read from the
//! host. A reader changes what a window means here, and only here.

use std::fmt;
use std::time::SystemTime;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Minutes of a day.
const DAY_MIN: u16 = 24 * 60;

/// One range of a window, in minutes since local midnight: `start` in `0..1440`, `end`
/// in `1..=1440`; an `end` not after `start` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    /// Local minute the range opens at.
    start: u16,
    /// Local minute it closes at (`1440` = the next midnight).
    end: u16,
}

/// A delivery window: files of the server start only while it is open.
#[derive(Debug, Clone)]
pub struct Window {
    /// The ranges, as written.
    ranges: Vec<Range>,
    /// The zone whose wall clock the ranges are read in.
    zone: TimeZone,
    /// The zone's name as written (`UTC` when none was).
    zone_name: String,
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.ranges == other.ranges && self.zone_name == other.zone_name
    }
}

/// Where a window stands at a moment: open or closed, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Whether files may start.
    pub open: bool,
    /// When that changes: the next close when open (`None`: open around the clock), the
    /// next opening when closed.
    pub until: Option<SystemTime>,
}

/// `HH:MM` (`00:00` to `24:00`) as minutes of the day.
fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let t = h * 60 + m;
    (m < 60 && t <= DAY_MIN).then_some(t)
}

impl Window {
    /// Reads a window: comma-separated ranges `HH:MM-HH:MM`, the last one optionally
    /// followed by an IANA zone name (default `UTC`).
    pub fn parse(text: &str) -> Result<Window, String> {
        let bad = |why: String| Err(format!("invalid window {text:?}: {why}"));
        let mut pieces: Vec<&str> = text.split(',').map(str::trim).collect();
        let mut zone_name = "UTC".to_owned();
        if let Some(last) = pieces.last_mut()
            && let Some((range, zone)) = last.rsplit_once(char::is_whitespace)
            && zone.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            zone_name = zone.trim().to_owned();
            *last = range.trim();
        }
        let zone = if zone_name == "UTC" {
            TimeZone::UTC
        } else {
            match TimeZone::get(&zone_name) {
                Ok(z) => z,
                Err(_) => {
                    return bad(format!(
                        "unknown time zone {zone_name:?} (use an IANA name like Europe/Berlin, or UTC)"
                    ));
                }
            }
        };
        let mut ranges = Vec::new();
        for piece in pieces {
            let compact: String = piece.chars().filter(|c| !c.is_whitespace()).collect();
            let Some((a, b)) = compact.split_once('-') else {
                return bad(format!("{piece:?} is not a range HH:MM-HH:MM"));
            };
            let (Some(start), Some(end)) = (minutes(a), minutes(b)) else {
                return bad(format!(
                    "{piece:?}: a time must be HH:MM between 00:00 and 24:00"
                ));
            };
            if start == DAY_MIN {
                return bad(format!("{piece:?}: a range cannot start at 24:00"));
            }
            if start == end || (start == 0 && end == 0) {
                return bad(format!(
                    "{piece:?} is empty (use 00:00-24:00 for the whole day)"
                ));
            }
            ranges.push(Range {
                start,
                end: if end == 0 { DAY_MIN } else { end },
            });
        }
        Ok(Window {
            ranges,
            zone,
            zone_name,
        })
    }

    /// The instant the zone's clock shows `minute` minutes after the midnight starting
    /// `day` (`minute` may pass 1440): the compatible rule for skipped and doubled times.
    fn local(&self, day: Date, minute: u16) -> Option<Timestamp> {
        let day = day.checked_add(i64::from(minute / DAY_MIN).days()).ok()?;
        let m = minute % DAY_MIN;
        let dt = day.at((m / 60) as i8, (m % 60) as i8, 0, 0);
        dt.to_zoned(self.zone.clone()).ok().map(|z| z.timestamp())
    }

    /// The open intervals of the local days around `t` (two before, two after),
    /// sorted and merged where they touch.
    fn intervals(&self, t: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = t.to_zoned(self.zone.clone()).date();
        let mut all = Vec::new();
        for d in -2i64..=2 {
            let Ok(day) = today.checked_add(d.days()) else {
                continue;
            };
            for r in &self.ranges {
                let end = if r.end > r.start {
                    r.end
                } else {
                    r.end + DAY_MIN
                };
                if let (Some(a), Some(b)) = (self.local(day, r.start), self.local(day, end)) {
                    // A range the clock skips in part or whole (`02:00-03:00` on the
                    // spring-forward day) keeps its length from its (later) start: a
                    // window never silently disappears for a day.
                    let b = if a < b {
                        b
                    } else {
                        let minutes = i64::from(end - r.start);
                        a.checked_add(jiff::SignedDuration::from_mins(minutes))
                            .unwrap_or(a)
                    };
                    if a < b {
                        all.push((a, b));
                    }
                }
            }
        }
        all.sort();
        let mut merged: Vec<(Timestamp, Timestamp)> = Vec::new();
        for (a, b) in all {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// Whether the window is open at `t`, and until when.
    pub fn at(&self, t: SystemTime) -> Phase {
        let Ok(ts) = Timestamp::try_from(t) else {
            return Phase {
                open: true,
                until: None,
            };
        };
        let intervals = self.intervals(ts);
        let horizon = intervals.last().map(|i| i.1);
        if let Some(&(_, end)) = intervals.iter().find(|(a, b)| *a <= ts && ts < *b) {
            // Open up to the horizon: no close within days, i.e. around the clock.
            let until = (Some(end) != horizon).then(|| SystemTime::from(end));
            return Phase { open: true, until };
        }
        let next = intervals.iter().find(|(a, _)| *a > ts).map(|i| i.0);
        Phase {
            open: false,
            until: next.map(SystemTime::from),
        }
    }

    /// Whether the window is open at `t`.
    pub fn is_open(&self, t: SystemTime) -> bool {
        self.at(t).open
    }

    /// When the window next opens after `t` (`t` itself if it is open then).
    pub fn next_open(&self, t: SystemTime) -> Option<SystemTime> {
        let p = self.at(t);
        if p.open { Some(t) } else { p.until }
    }

    /// When the window next closes after `t`, if it is open then and closes at all.
    pub fn next_close(&self, t: SystemTime) -> Option<SystemTime> {
        let p = self.at(t);
        if p.open { p.until } else { None }
    }
}

/// The window as written back: `"22:00-06:00, 12:00-13:00 Europe/Berlin"`.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}-{}", hm(r.start), hm(r.end)))
            .collect();
        write!(f, "{} {}", ranges.join(", "), self.zone_name)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
