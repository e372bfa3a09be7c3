//! The three completion rules — when a file in a server folder is complete and may be
//! claimed — as pure code: no file system, no clock. Discovery asks [`judge`] about each
//! entry it looks at and does what the [`Verdict`] says.
//!
//! - `rename`: a file is complete as soon as it has its final name (in-progress names are
//!   filtered before a rule is asked).
//! - `marker`: a data file is complete once `<name><suffix>` exists beside it; the marker
//!   is removed with the claim.
//! - `quiet`: a file is complete once its size and modification time stayed the same for
//!   the quiet period, as seen by [`QuietTracker`] at the instants it is given.
//!
//! Touch this to change a rule; discovery (`discover/scan.rs`) only feeds it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::Hash;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outpost_config::Completion;

use crate::fsx::FileType;
use crate::rules::marker_target;

/// What a completion rule says about one entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not complete yet (or a marker waiting for its data): leave it.
    Wait,
    /// Complete: claim `data`, removing `marker` with it.
    Take {
        /// Relative path of the file to claim.
        data: PathBuf,
        /// Relative path of its marker (marker rule).
        marker: Option<PathBuf>,
    },
    /// A marker whose data file is not a regular file: look at that entry instead (it is
    /// refused there).
    Examine(PathBuf),
}

/// One look at a regular file: what the quiet rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// The verdict of `completion` on the regular file `rel` seen as `look` at `now`.
/// `sibling(name)` is the type of the entry `name` in the same folder, if there is one
/// (marker rule); `quiet` remembers files between looks (quiet rule) under `key()`.
pub(crate) fn judge<K: Eq + Hash>(
    completion: &Completion,
    rel: &Path,
    look: Look,
    sibling: impl Fn(&OsStr) -> Option<FileType>,
    quiet: &mut QuietTracker<K>,
    key: impl FnOnce() -> K,
    now: Instant,
) -> Verdict {
    match completion {
        Completion::Rename => Verdict::Take {
            data: rel.to_owned(),
            marker: None,
        },
        Completion::Marker { suffix } => marker(rel, suffix, sibling),
        Completion::Quiet { period } => {
            if quiet.observe(key(), look, *period, now) {
                Verdict::Take {
                    data: rel.to_owned(),
                    marker: None,
                }
            } else {
                Verdict::Wait
            }
        }
    }
}

/// The marker rule for the entry `rel`: a marker takes its data file, a data file is
/// taken with its marker; either waits for the other.
pub(crate) fn marker(
    rel: &Path,
    suffix: &str,
    sibling: impl Fn(&OsStr) -> Option<FileType>,
) -> Verdict {
    let name = rel.file_name().unwrap_or(rel.as_os_str());
    if let Some(data) = marker_target(name.as_bytes(), suffix) {
        let data_rel = rel.with_file_name(OsStr::from_bytes(data));
        return match sibling(OsStr::from_bytes(data)) {
            Some(FileType::RegularFile) => Verdict::Take {
                data: data_rel,
                marker: Some(rel.to_owned()),
            },
            Some(_) => Verdict::Examine(data_rel),
            None => Verdict::Wait,
        };
    }
    let mut m = name.to_owned();
    m.push(suffix);
    match sibling(&m) {
        Some(_) => Verdict::Take {
            data: rel.to_owned(),
            marker: Some(rel.with_file_name(&m)),
        },
        None => Verdict::Wait,
    }
}

/// A file under the quiet rule, last seen as it was.
#[derive(Debug)]
struct Seen {
    /// What it looked like.
    look: Look,
    /// Since when it has looked like that.
    since: Instant,
}

/// Files under the quiet rule not yet complete, each with the instant since which it has
/// not changed. Every instant comes from the caller, so the rule is tested without
/// sleeping. The period is asked for each time (`period_of`) because a reload may change
/// it, or the rule, while files are tracked.
#[derive(Debug)]
pub(crate) struct QuietTracker<K> {
    /// Tracked files; a file leaves when taken, forgotten, or its server is removed.
    seen: HashMap<K, Seen>,
}

impl<K> Default for QuietTracker<K> {
    fn default() -> Self {
        QuietTracker {
            seen: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> QuietTracker<K> {
    /// Looks at a file at `now`: true when it looked the same at least `period` ago —
    /// it is complete and forgotten. Otherwise it is tracked from `now` (first look, or
    /// changed since the last one).
    pub fn observe(&mut self, key: K, look: Look, period: Duration, now: Instant) -> bool {
        match self.seen.get(&key) {
            Some(s) if s.look == look => {
                if now.duration_since(s.since) >= period {
                    self.seen.remove(&key);
                    return true;
                }
                false
            }
            _ => {
                self.seen.insert(key, Seen { look, since: now });
                false
            }
        }
    }

    /// When the first tracked file under the quiet rule may be complete (`period_of`
    /// gives each file's period, `None` when its server no longer has the quiet rule).
    pub fn next_due(&self, period_of: impl Fn(&K) -> Option<Duration>) -> Option<Instant> {
        self.seen
            .iter()
            .filter_map(|(k, s)| Some(s.since + period_of(k)?))
            .min()
    }

    /// Whether the tracked `key` is due at `now` (or no longer under the quiet rule).
    pub fn is_due(
        &self,
        key: &K,
        now: Instant,
        period_of: impl Fn(&K) -> Option<Duration>,
    ) -> bool {
        self.seen
            .get(key)
            .is_some_and(|s| period_of(key).is_none_or(|p| s.since + p <= now))
    }

    /// The tracked files due at `now`: to be looked at again.
    pub fn due(&self, now: Instant, period_of: impl Fn(&K) -> Option<Duration>) -> Vec<K>
    where
        K: Clone,
    {
        self.seen
            .keys()
            .filter(|k| self.is_due(k, now, &period_of))
            .cloned()
            .collect()
    }

    /// Looks at a tracked file again one period after `now` (it could not be looked at
    /// for a passing reason); what it looked like is kept.
    pub fn postpone(&mut self, key: &K, now: Instant) {
        if let Some(s) = self.seen.get_mut(key) {
            s.since = now;
        }
    }

    /// Stops tracking a file.
    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// Keeps only the files `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.seen.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(30);

    fn look(size: u64, mtime_ns: i128) -> Look {
        Look { size, mtime_ns }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn quiet_takes_a_file_unchanged_for_the_period_and_not_before() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        assert!(
            !q.observe("a", look(10, 1), PERIOD, t0),
            "never on first sight"
        );
        assert_eq!(q.next_due(|_| Some(PERIOD)), Some(t0 + PERIOD));
        assert!(!q.observe("a", look(10, 1), PERIOD, t0 + secs(29)));
        assert!(q.due(t0 + secs(29), |_| Some(PERIOD)).is_empty());
        assert_eq!(q.due(t0 + PERIOD, |_| Some(PERIOD)), vec!["a"]);
        assert!(q.observe("a", look(10, 1), PERIOD, t0 + PERIOD));
        // Taken: forgotten.
        assert_eq!(q.next_due(|_| Some(PERIOD)), None);
    }

    #[test]
    fn a_file_that_could_not_be_looked_at_is_looked_at_again_a_period_later() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        q.observe("a", look(10, 1), PERIOD, t0);
        // Due, but the look failed with EIO: postponed, not forgotten, not due at once.
        q.postpone(&"a", t0 + PERIOD);
        assert!(q.due(t0 + PERIOD, |_| Some(PERIOD)).is_empty());
        assert_eq!(q.next_due(|_| Some(PERIOD)), Some(t0 + PERIOD + PERIOD));
        // Unchanged when it can be looked at: taken.
        assert!(q.observe("a", look(10, 1), PERIOD, t0 + PERIOD + PERIOD));
    }

    #[test]
    fn quiet_starts_again_on_any_change() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        q.observe("a", look(10, 1), PERIOD, t0);
        // Grown: the period starts again from this look.
        assert!(!q.observe("a", look(20, 1), PERIOD, t0 + secs(20)));
        assert!(!q.observe("a", look(20, 1), PERIOD, t0 + secs(40)));
        // Rewritten with the same size: the modification time tells.
        assert!(!q.observe("a", look(20, 2), PERIOD, t0 + secs(45)));
        assert_eq!(q.next_due(|_| Some(PERIOD)), Some(t0 + secs(75)));
        assert!(q.observe("a", look(20, 2), PERIOD, t0 + secs(75)));
    }

    #[test]
    fn quiet_periods_come_from_the_current_rule() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        q.observe("a", look(1, 1), PERIOD, t0);
        q.observe("b", look(1, 1), PERIOD, t0 + secs(5));
        // A reload shortened b's period; a's server no longer has the quiet rule.
        let period_of = |k: &&str| (*k == "b").then_some(secs(10));
        assert_eq!(q.next_due(period_of), Some(t0 + secs(15)));
        assert_eq!(q.due(t0 + secs(1), period_of), vec!["a"]);
        let mut due = q.due(t0 + secs(15), period_of);
        due.sort();
        assert_eq!(due, vec!["a", "b"]);
        q.forget(&"a");
        q.retain(|k| *k != "b");
        assert_eq!(q.next_due(|_| Some(PERIOD)), None);
    }

    #[test]
    fn quiet_with_no_period_still_needs_two_looks() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        assert!(!q.observe("a", look(1, 1), Duration::ZERO, t0));
        assert!(q.observe("a", look(1, 1), Duration::ZERO, t0));
    }

    fn none(_: &OsStr) -> Option<FileType> {
        None
    }

    #[test]
    fn marker_rule() {
        let regular = |_: &OsStr| Some(FileType::RegularFile);
        let take = |data: &str, marker: &str| Verdict::Take {
            data: data.into(),
            marker: Some(marker.into()),
        };
        // A data file waits for its marker, then is taken with it.
        assert_eq!(marker(Path::new("d/a.csv"), ".ready", none), Verdict::Wait);
        let only_marker = |n: &OsStr| (n == "a.csv.ready").then_some(FileType::RegularFile);
        assert_eq!(
            marker(Path::new("d/a.csv"), ".ready", only_marker),
            take("d/a.csv", "d/a.csv.ready")
        );
        // A marker takes its data file; waits without one; points at a data entry that
        // is not a regular file.
        assert_eq!(
            marker(Path::new("d/a.csv.ready"), ".ready", regular),
            take("d/a.csv", "d/a.csv.ready")
        );
        assert_eq!(
            marker(Path::new("a.csv.ready"), ".ready", none),
            Verdict::Wait
        );
        assert_eq!(
            marker(Path::new("a.csv.ready"), ".ready", |_| Some(
                FileType::Symlink
            )),
            Verdict::Examine("a.csv".into())
        );
        // The suffix alone is a data name, not a marker.
        assert_eq!(marker(Path::new("x/.ready"), ".ready", none), Verdict::Wait);
    }

    #[test]
    fn rename_takes_at_once_and_judge_dispatches() {
        let t0 = Instant::now();
        let mut q = QuietTracker::default();
        let rel = Path::new("a.csv");
        let l = look(1, 1);
        let want = Verdict::Take {
            data: rel.into(),
            marker: None,
        };
        assert_eq!(
            judge(&Completion::Rename, rel, l, none, &mut q, || 1, t0),
            want
        );
        let quiet = Completion::Quiet { period: PERIOD };
        assert_eq!(judge(&quiet, rel, l, none, &mut q, || 1, t0), Verdict::Wait);
        assert_eq!(judge(&quiet, rel, l, none, &mut q, || 1, t0 + PERIOD), want);
        let m = Completion::Marker {
            suffix: ".ready".into(),
        };
        assert_eq!(judge(&m, rel, l, none, &mut q, || 1, t0), Verdict::Wait);
    }
}
