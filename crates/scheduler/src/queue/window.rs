//! A server's delivery window as the dispatcher sees it: closed until when, asked at
//! every dispatch with the wall clock passed in. The answer is kept until the window's
//! next change, so that the dispatcher's turns over thousands of servers cost a
//! comparison each, and no server has a timer of its own: the dispatcher wakes once, at
//! the earliest opening of a server with waiting files ([`super::server`]). What a
//! window means is `outpost_config::Window`'s.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use outpost_config::Window;

/// A window found closed with no opening in sight (cannot happen with a valid window):
/// asked again after this long.
const RECHECK: Duration = Duration::from_secs(3600);

/// The last answer: open or not, and the span of wall-clock time it holds for.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// When it was computed: a clock set back before it asks again.
    from: SystemTime,
    /// The window's next change (`None`: never).
    until: Option<SystemTime>,
    /// Whether the window is open in between.
    open: bool,
}

/// The window of one server, and what it said last.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// `None`: always open.
    window: Option<Window>,
    /// The window's last answer, valid from `from` until `until`.
    known: Cell<Option<Known>>,
}

impl Gate {
    /// A new window (a start or a reload): applies at once.
    pub(super) fn set(&mut self, window: Option<Window>) {
        if self.window != window {
            self.window = window;
            self.known.set(None);
        }
    }

    /// `Some(when it opens)` while the window is closed at `wall`; `None` while it is
    /// open (or there is none).
    pub(super) fn closed_until(&self, wall: SystemTime) -> Option<SystemTime> {
        let window = self.window.as_ref()?;
        let known = match self.known.get() {
            Some(k) if k.from <= wall && k.until.is_none_or(|u| wall < u) => k,
            _ => {
                let p = window.at(wall);
                let k = Known {
                    from: wall,
                    // No change in sight: asked again after RECHECK all the same.
                    until: Some(p.until.unwrap_or(wall + RECHECK)),
                    open: p.open,
                };
                self.known.set(Some(k));
                k
            }
        };
        if known.open { None } else { known.until }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_the_opening_then_open_until_the_close() {
        let w = Window::parse("22:00-06:00").expect("window");
        let mut g = Gate::default();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        // 1970-01-01 12:00 UTC: closed until 22:00.
        assert_eq!(g.closed_until(t(12 * 3600)), None, "no window: open");
        g.set(Some(w));
        assert_eq!(g.closed_until(t(12 * 3600)), Some(t(22 * 3600)));
        assert_eq!(g.closed_until(t(21 * 3600)), Some(t(22 * 3600)));
        assert_eq!(g.closed_until(t(22 * 3600)), None);
        assert_eq!(g.closed_until(t(30 * 3600 - 1)), None);
        assert_eq!(g.closed_until(t(30 * 3600)), Some(t(46 * 3600)));
        // The clock set back: asked again.
        assert_eq!(g.closed_until(t(23 * 3600)), None);
        // A reload to a window open now applies at once.
        g.set(Some(Window::parse("00:00-24:00").expect("window")));
        assert_eq!(g.closed_until(t(12 * 3600)), None);
    }
}
