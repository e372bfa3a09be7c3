//! What holds a server's `publish_last` files beyond the order of their group: its files
//! in `.failed/` (reported, scanned, or being moved there), and discovery's first scan
//! not done yet. The pending files of a group are the pending index's part
//! ([`super::pending`]); a reader changing when a failed file stops holding its group
//! works here.

use std::collections::{HashMap, HashSet};

/// A server's files in `.failed/`, by group.
#[derive(Debug, Default)]
pub(super) struct FailedFiles {
    /// Per group, the order keys of its files in `.failed/` (given up, failed at once, or
    /// found there by a scan): `publish_last` files of that group wait until they are
    /// requeued or removed.
    by_group: HashMap<String, HashSet<String>>,
    /// Files given up whose move to `.failed/` is under way (seq → order key): a scan
    /// that does not see them there yet must not release their group.
    giving_up: HashMap<u64, String>,
    /// `publish_last` files wait for discovery's first scan (a file requeued while the
    /// daemon was down is found by it, not by the recovery of claims).
    pub(super) await_scan: bool,
}

impl FailedFiles {
    /// A file (its order key) is in `.failed/`. The caller leaves out `publish_last`
    /// files: a control file that failed holds nothing.
    pub(super) fn add(&mut self, key: &str) {
        let (group, _) = crate::key_parts(key);
        self.by_group
            .entry(group.to_owned())
            .or_default()
            .insert(key.to_owned());
    }

    /// The files in `.failed/` as a scan found them, plus those whose move is under
    /// way, replace what was known (`counts`: the caller's filter of [`Self::add`]).
    pub(super) fn rescanned(&mut self, keys: &[String], counts: impl Fn(&str) -> bool) {
        self.by_group.clear();
        let under_way: Vec<String> = self.giving_up.values().cloned().collect();
        for k in keys.iter().chain(under_way.iter()) {
            if counts(k) {
                self.add(k);
            }
        }
    }

    /// A file of `group` with order key `key` arrived or was delivered: it is no longer
    /// in `.failed/`. Whether it was.
    pub(super) fn left(&mut self, group: &str, key: &str) -> bool {
        let Some(set) = self.by_group.get_mut(group) else {
            return false;
        };
        let was = set.remove(key);
        if set.is_empty() {
            self.by_group.remove(group);
        }
        was
    }

    /// The give-up of `seq` (key `key`) started: its move to `.failed/` is under way.
    pub(super) fn giving_up(&mut self, seq: u64, key: &str) {
        self.giving_up.insert(seq, key.to_owned());
    }

    /// The give-up of `seq` is over: the next scan says where the file is.
    pub(super) fn gave_up(&mut self, seq: u64) {
        self.giving_up.remove(&seq);
    }

    /// A file of `group` is in `.failed/`.
    pub(super) fn holds(&self, group: &str) -> bool {
        self.by_group.get(group).is_some_and(|f| !f.is_empty())
    }

    /// Why `publish_last` files wait, for `status`: the first group with failed files
    /// for which `waiting(group)` says a `publish_last` file waits.
    pub(super) fn why_held(&self, waiting: impl Fn(&str) -> bool) -> Option<String> {
        let (g, f) = self
            .by_group
            .iter()
            .find(|(g, f)| !f.is_empty() && waiting(g))?;
        let mut failed: Vec<&str> = f.iter().map(String::as_str).collect();
        failed.sort();
        Some(format!(
            "publish_last files of folder {g:?} wait: {} of that folder failed (in .failed/); requeue it",
            failed.join(", ")
        ))
    }
}
