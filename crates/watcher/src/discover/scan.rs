//! Looking at entries: the top of the spool (unknown server folders), a folder tree
//! (start-up scan, rescan, a new folder), one path an event named, and the quiet-rule
//! files due for another look. Each regular file is judged by the pure completion rules
//! (`crate::completion`); what is complete goes to `take`. Touch this to change which
//! entries are looked at, or in which order.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use outpost_config::Globs;

use super::event_loop::State;
use crate::RejectReason;
use crate::completion::{self, Look, Verdict};
use crate::fsx::{self, FileType};
use crate::rules::in_progress;

/// How long an emptied sub-folder must stay empty before it is removed.
const EMPTY_DIR_AGE: Duration = Duration::from_secs(300);

impl State {
    /// Every server folder, from the top; folders of servers not configured are
    /// reported (once) and left alone.
    pub(super) fn full_scan(&mut self) {
        let root = self.d.spool.root().to_owned();
        // Every tenth scan looks at every folder whatever its stamp: that bounds what a
        // file system with coarse timestamps and a wall clock stepped back could hide.
        self.scans = self.scans.wrapping_add(1);
        if self.scans.is_multiple_of(FULL_EVERY) {
            self.empty_seen.clear();
        }
        if let Ok(entries) = self.d.spool.root_entries() {
            for name in entries {
                let n = name.to_string_lossy().into_owned();
                if n.starts_with('.') || self.rules.contains_key(&n) {
                    continue;
                }
                self.reject_at(
                    &n,
                    Path::new(""),
                    RejectReason::UnknownServer,
                    &root.join(&name),
                );
            }
        }
        let names: Vec<String> = self.d.servers.iter().map(|s| s.name.clone()).collect();
        for s in names {
            if self.refresh(&s) {
                self.empty_seen.remove(&s);
            }
            // A folder a listing found empty, and unchanged since (the same inode,
            // modification and change times), is not opened again: 10,000 idle servers
            // cost two stats each per rescan, not an open, a listing and an inotify event.
            let now = wall_ns();
            let stamp = self.d.spool.server_stamp(&s);
            if stamp.is_some() && self.empty_seen.get(&s) == stamp.as_ref() {
                continue;
            }
            let empty = self.scan_tree(&s, PathBuf::new(), true);
            match stamp {
                Some(st) if empty && settled(&st, now) => {
                    self.empty_seen.insert(s, st);
                }
                _ => {
                    self.empty_seen.remove(&s);
                }
            }
        }
    }

    /// A server folder removed or replaced since it was opened is made again, re-opened
    /// and watched anew.
    pub(super) fn refresh(&mut self, server: &str) -> bool {
        match self.d.spool.refresh_server(server) {
            Ok(true) => {
                self.watch(server);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(server, error = %e, "cannot make the server folder again");
                false
            }
        }
    }

    /// Handles one path an event named.
    pub(super) fn examine(&mut self, server: &str, rel: &Path) {
        if rel.components().any(|c| in_progress(c.as_os_str())) {
            // In-progress names, and anything inside a dot-folder, wait for their rename.
            return;
        }
        let Ok(root) = self.d.spool.server_root(server) else {
            return;
        };
        let (parent, name) = fsx::split(rel);
        let pfd = match fsx::open_dir_beneath(&root, parent) {
            Ok(fd) => fd,
            Err(e) => {
                self.open_error(server, parent, &e);
                return;
            }
        };
        let st = match fsx::lstat_at(&pfd, name) {
            Ok(st) => st,
            Err(_) => return,
        };
        match fsx::kind(&st) {
            FileType::Directory => {
                // A new folder: notify hands us its event before it adds the folder's
                // watch (at the end of the batch it is reading), so a file landing in
                // between would be seen neither by this scan nor by an event. One round
                // trip to notify's loop first: by then the watch is in place.
                self.settle_watches();
                self.scan_tree(server, rel.to_owned(), false);
            }
            _ => self.consider(server, &pfd, rel, Some(&st)),
        }
    }

    /// Scans the folder `rel` and everything below it.
    pub(super) fn scan_tree(&mut self, server: &str, rel: PathBuf, remove_empty: bool) -> bool {
        let Ok(root) = self.d.spool.server_root(server) else {
            return false;
        };
        let mut top_empty = false;
        let top = rel.clone();
        let mut stack = vec![rel];
        while let Some(dir) = stack.pop() {
            let fd = match fsx::open_dir_beneath(&root, &dir) {
                Ok(fd) => fd,
                Err(e) => {
                    self.open_error(server, &dir, &e);
                    continue;
                }
            };
            let entries = match fsx::list(&fd) {
                Ok(v) => v,
                Err(e) => {
                    self.open_error(server, &dir, &e);
                    continue;
                }
            };
            if entries.is_empty() && dir == top {
                top_empty = true;
            }
            if entries.is_empty() && remove_empty && !dir.as_os_str().is_empty() {
                self.remove_if_stale(&root, &dir);
                continue;
            }
            // Files in modification order: the best guess of drop order for files found
            // by a scan (same-path and publish_last order follow it).
            let mut files = Vec::new();
            for (i, (name, ft)) in entries.into_iter().enumerate() {
                if i % 256 == 0 {
                    self.beat();
                }
                let child = dir.join(&name);
                let st = fsx::lstat_at(&fd, &name).ok();
                let is_dir = match ft {
                    FileType::Directory => true,
                    FileType::Unknown => st.as_ref().map(fsx::kind) == Some(FileType::Directory),
                    _ => false,
                };
                if is_dir {
                    if !in_progress(&name) {
                        stack.push(child);
                    }
                } else {
                    files.push((st.as_ref().map_or(0, fsx::mtime_ns), child, st));
                }
            }
            // `publish_last` files after the others, each group by drop time; the globs
            // compiled once per folder, each name matched once.
            let globs = self
                .rules
                .get(server)
                .map(|r| Globs::new(&r.publish_last))
                .unwrap_or_default();
            let mut files: Vec<_> = files
                .into_iter()
                .map(|(mtime, child, st)| {
                    let name = child.file_name().map(|n| n.to_string_lossy());
                    (globs.any(&name.unwrap_or_default()), mtime, child, st)
                })
                .collect();
            files.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
            for (_, _, child, st) in files {
                self.consider(server, &fd, &child, st.as_ref());
            }
        }
        top_empty
    }

    /// Removes the empty sub-folder `dir` once it has stayed empty long enough.
    fn remove_if_stale(&self, root: &OwnedFd, dir: &Path) {
        let (parent, name) = fsx::split(dir);
        let Ok(pfd) = fsx::open_dir_beneath(root, parent) else {
            return;
        };
        let Ok(st) = fsx::lstat_at(&pfd, name) else {
            return;
        };
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
        if SystemTime::now().duration_since(mtime).unwrap_or_default() >= EMPTY_DIR_AGE {
            // Fails harmlessly if something was dropped into it meanwhile.
            let _ = fsx::rmdir_at(&pfd, name);
        }
    }

    /// A non-folder entry `rel` in the open folder `dir` (`st`: its status, if known):
    /// refused unless it is a regular file, else judged by its server's completion rule.
    fn consider(&mut self, server: &str, dir: &OwnedFd, rel: &Path, st: Option<&rustix::fs::Stat>) {
        let name = fsx::split(rel).1;
        if in_progress(name) {
            return;
        }
        let st = match st {
            Some(st) => *st,
            None => match fsx::lstat_at(dir, name) {
                Ok(st) => st,
                Err(_) => return,
            },
        };
        match fsx::kind(&st) {
            FileType::RegularFile => {}
            FileType::Symlink => {
                self.reject(server, rel, RejectReason::Symlink);
                return;
            }
            _ => {
                self.reject(server, rel, RejectReason::Special);
                return;
            }
        }
        let Some(rule) = self.rules.get(server).cloned() else {
            return;
        };
        if rule.batches && self.consider_batch(&rule, rel) {
            return;
        }
        let look = Look {
            size: st.st_size as u64,
            mtime_ns: fsx::mtime_ns(&st),
        };
        let verdict = completion::judge(
            &rule.completion,
            rel,
            look,
            |n| fsx::lstat_at(dir, n).ok().map(|st| fsx::kind(&st)),
            &mut self.quiet,
            || (server.to_owned(), rel.to_owned()),
            Instant::now(),
        );
        match verdict {
            Verdict::Wait => {}
            Verdict::Take { data, marker } => self.take(&rule, &data, marker.as_deref()),
            Verdict::Examine(data) => self.consider(server, dir, &data, None),
        }
    }

    /// When the first quiet-rule file may be complete.
    pub(super) fn next_quiet_check(&self) -> Option<Instant> {
        self.quiet.next_due(self.quiet_period())
    }

    /// Looks again at the quiet-rule files that may be complete now. One that is
    /// neither taken nor changed by that look — gone, refused, or its server no longer
    /// under the quiet rule — is forgotten (looked at again only on its next event).
    /// One that could not be looked at for a passing reason (EIO, ESTALE, ENOMEM…) is
    /// looked at again a period later, not forgotten.
    pub(super) fn check_quiet(&mut self) {
        let now = Instant::now();
        for key in self.quiet.due(now, self.quiet_period()) {
            let (server, rel) = &key;
            let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
            let passing = match self.d.spool.server_root(server) {
                Ok(root) => match fsx::open_dir_beneath(&root, fsx::split(rel).0)
                    .and_then(|fd| fsx::lstat_at(&fd, fsx::split(rel).1).map(|st| (fd, st)))
                {
                    Ok((fd, st)) => {
                        self.consider(server, &fd, rel, Some(&st));
                        false
                    }
                    Err(e) => !gone(&e),
                },
                Err(e) => e.io_error().is_some_and(|e| !gone(e)),
            };
            if self.quiet.is_due(&key, now, self.quiet_period()) {
                if passing {
                    self.quiet.postpone(&key, now);
                } else {
                    self.quiet.forget(&key);
                }
            }
        }
    }

    /// The quiet period of a tracked file's server, if it (still) has the quiet rule.
    fn quiet_period(&self) -> impl Fn(&(String, PathBuf)) -> Option<Duration> + '_ {
        |(server, _)| match self.rules.get(server).map(|r| &r.completion) {
            Some(outpost_config::Completion::Quiet { period }) => Some(*period),
            _ => None,
        }
    }
}

/// Scans between two that list every folder whatever its stamp.
const FULL_EVERY: u64 = 10;

/// The wall clock, ns since the epoch.
fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Whether a folder's `stamp` was at least two seconds old at `now` (read before the
/// stamp): a change right after the listing within the same timestamp tick (up to 2 s
/// on the coarsest file systems) would leave a younger stamp unchanged, so only a
/// settled stamp may vouch for an unchanged folder.
fn settled(stamp: &crate::spool::DirStamp, now: i128) -> bool {
    stamp.mtime_ns.max(stamp.ctime_ns) <= now - 2_000_000_000
}
