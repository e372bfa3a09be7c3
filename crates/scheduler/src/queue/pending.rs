//! One server's pending index: every file not yet acknowledged, waiting or in flight, and
//! the views the dispatcher reads without a scan — per order key (same-path order, the
//! placement of files taken over from a dead daemon, the key in flight), per group (what
//! `publish_last` files wait for), by age, by backoff, and the byte total.
//!
//! Only four operations change it, and each keeps every view in step: [`insert`] (a file
//! arrives), [`take`] (an attempt starts), [`requeue`] (an attempt ended, the file waits
//! again) and [`forget`] (done with it); [`relabel`] when the `publish_last` globs change.
//! A reader adding a view adds it to those five; code outside this file only reads, and
//! changes a file's attempt record (the `pub(super)` fields of [`Pending`]) in place.
//!
//! Item sequence numbers are unique ([`Item::seq`]); a second file with a known one is
//! ignored.
//!
//! [`insert`]: PendingIndex::insert
//! [`take`]: PendingIndex::take
//! [`requeue`]: PendingIndex::requeue
//! [`forget`]: PendingIndex::forget
//! [`relabel`]: PendingIndex::relabel

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::Item;

/// A file in the index, with its attempt record.
pub(super) struct Pending<I> {
    /// The file, as the daemon handed it over.
    pub(super) item: I,
    /// Failed attempts so far.
    pub(super) failures: u32,
    /// When its first attempt started, for [`crate::History`].
    pub(super) first_attempt: Option<SystemTime>,
    /// When its latest attempt started, for [`crate::History`].
    pub(super) last_attempt: Option<SystemTime>,
    /// Its latest transient error, for [`crate::History`].
    pub(super) last_error: String,
    /// Times the destination refused this item (a `Blocked` outcome).
    pub(super) refusals: u32,
    /// The server's `accepted` count at this item's last refusal: if other items were
    /// accepted since, a new refusal is the object's own, not the server's.
    pub(super) refused_at: Option<u64>,
    /// Not to be attempted before this (set by [`PendingIndex::requeue`], which files it
    /// in the backoff view).
    not_before: Option<Instant>,
    /// It matches a `publish_last` glob: it waits for its group instead of counting in it.
    last: bool,
    /// It came back from `.failed/` (requeued): `publish_last` files of its group wait for
    /// it although it arrived later.
    returned: bool,
}

impl<I> Pending<I> {
    /// Its backoff ends after `now`.
    pub(super) fn in_backoff(&self, now: Instant) -> bool {
        self.not_before.is_some_and(|t| t > now)
    }

    pub(super) fn is_last(&self) -> bool {
        self.last
    }
}

/// What the index knows of one order key (present while a file of it is pending).
#[derive(Default)]
struct KeyState {
    /// Its waiting files' seqs, ascending: only the first may start.
    waiting: Vec<u64>,
    /// (drop time, seq) of its waiting files taken over from a dead daemon, ascending:
    /// such a file goes before this daemon's own files of the key dropped later.
    taken: Vec<(SystemTime, u64)>,
    /// A file of this key is in flight: the others wait.
    running: bool,
}

impl KeyState {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.taken.is_empty() && !self.running
    }
}

/// What the index knows of one group (present while a file of it is pending).
#[derive(Default)]
struct GroupState {
    /// Seqs of its files that are not `publish_last`.
    others: BTreeSet<u64>,
    /// (drop time, seq) of the same files.
    others_dropped: BTreeSet<(SystemTime, u64)>,
    /// How many of them came back from `.failed/`.
    others_returned: usize,
    /// Its `publish_last` files waiting (not in flight), for `status`.
    last_waiting: usize,
}

impl GroupState {
    fn is_empty(&self) -> bool {
        self.others.is_empty() && self.last_waiting == 0
    }
}

/// Sorted insert into a short vector.
fn add_sorted<T: Ord>(v: &mut Vec<T>, x: T) {
    let at = v.partition_point(|y| *y < x);
    v.insert(at, x);
}

/// Removal from a sorted vector.
fn remove_sorted<T: Ord>(v: &mut Vec<T>, x: &T) {
    if let Ok(at) = v.binary_search(x) {
        v.remove(at);
    }
}

/// Applies `f` to the state of `name` in `map`, dropping the entry once it is empty.
fn update<S: Default>(
    map: &mut HashMap<String, S>,
    name: &str,
    empty: fn(&S) -> bool,
    f: impl FnOnce(&mut S),
) {
    match map.get_mut(name) {
        Some(s) => f(s),
        None => f(map.entry(name.to_owned()).or_default()),
    }
    if map.get(name).is_some_and(empty) {
        map.remove(name);
    }
}

/// The file counts in its group (not `publish_last`) or leaves it.
fn tally_group<I: Item>(groups: &mut HashMap<String, GroupState>, p: &Pending<I>, join: bool) {
    if p.last {
        return;
    }
    let (seq, dropped) = (p.item.seq(), p.item.dropped_at());
    update(groups, p.item.group(), GroupState::is_empty, |g| {
        if join {
            g.others.insert(seq);
            g.others_dropped.insert((dropped, seq));
            g.others_returned += usize::from(p.returned);
        } else {
            g.others.remove(&seq);
            g.others_dropped.remove(&(dropped, seq));
            g.others_returned -= usize::from(p.returned);
        }
    });
}

/// The waiting `publish_last` files of the file's group, one more or one fewer.
fn tally_last_waiting<I: Item>(
    groups: &mut HashMap<String, GroupState>,
    p: &Pending<I>,
    more: bool,
) {
    if p.last {
        update(groups, p.item.group(), GroupState::is_empty, |g| {
            if more {
                g.last_waiting += 1;
            } else {
                g.last_waiting -= 1;
            }
        });
    }
}

/// One server's files not yet acknowledged.
pub(super) struct PendingIndex<I> {
    /// Waiting files by arrival order (seq).
    waiting: BTreeMap<u64, Pending<I>>,
    /// Files being attempted.
    running: HashMap<u64, Pending<I>>,
    /// Per order key with a file pending: same-path order without a scan.
    keys: HashMap<String, KeyState>,
    /// Per group with a file pending that counts in it: the `publish_last` check
    /// without a scan.
    groups: HashMap<String, GroupState>,
    /// (drop time, seq) of every file, for the oldest age.
    by_age: BTreeSet<(SystemTime, u64)>,
    /// (not before, seq) of waiting files with a backoff (ended or not): the next
    /// wake-up without a scan.
    backoff: BTreeSet<(Instant, u64)>,
    /// Bytes of every file.
    bytes: u64,
}

impl<I> Default for PendingIndex<I> {
    fn default() -> Self {
        PendingIndex {
            waiting: BTreeMap::new(),
            running: HashMap::new(),
            keys: HashMap::new(),
            groups: HashMap::new(),
            by_age: BTreeSet::new(),
            backoff: BTreeSet::new(),
            bytes: 0,
        }
    }
}

impl<I: Item> PendingIndex<I> {
    /// A file arrives and waits. `last`: it matches a `publish_last` glob; `returned`: it
    /// came back from `.failed/`.
    pub(super) fn insert(&mut self, item: I, last: bool, returned: bool) {
        let seq = item.seq();
        if self.waiting.contains_key(&seq) || self.running.contains_key(&seq) {
            tracing::warn!(seq, "a second file with a pending sequence number ignored");
            return;
        }
        let p = Pending {
            item,
            failures: 0,
            first_attempt: None,
            last_attempt: None,
            last_error: String::new(),
            refusals: 0,
            refused_at: None,
            not_before: None,
            last,
            returned,
        };
        self.bytes += p.item.size();
        self.by_age.insert((p.item.dropped_at(), seq));
        tally_group(&mut self.groups, &p, true);
        self.wait(p);
    }

    /// An attempt of a waiting file starts: it is in flight, and so is its key. `seq` is
    /// one of [`Self::firsts`]: a key is never in flight twice.
    pub(super) fn take(&mut self, seq: u64) -> Option<&mut Pending<I>> {
        let mut p = self.waiting.remove(&seq)?;
        if let Some(at) = p.not_before.take() {
            self.backoff.remove(&(at, seq));
        }
        let (dropped, taken) = (p.item.dropped_at(), p.item.taken_over());
        update(
            &mut self.keys,
            p.item.order_key(),
            KeyState::is_empty,
            |k| {
                remove_sorted(&mut k.waiting, &seq);
                if taken {
                    remove_sorted(&mut k.taken, &(dropped, seq));
                }
                k.running = true;
            },
        );
        tally_last_waiting(&mut self.groups, &p, false);
        Some(self.running.entry(seq).or_insert(p))
    }

    /// An attempt ended and its file waits again, until `not_before` if given.
    pub(super) fn requeue(&mut self, seq: u64, not_before: Option<Instant>) {
        let Some(mut p) = self.running.remove(&seq) else {
            return;
        };
        self.end_running(&p);
        if let Some(at) = not_before {
            self.backoff.insert((at, seq));
        }
        p.not_before = not_before;
        self.wait(p);
    }

    /// An attempt ended and its file leaves the index (delivered, dropped, failed, or
    /// given up).
    pub(super) fn forget(&mut self, seq: u64) -> Option<Pending<I>> {
        let p = self.running.remove(&seq)?;
        self.end_running(&p);
        self.bytes = self.bytes.saturating_sub(p.item.size());
        self.by_age.remove(&(p.item.dropped_at(), seq));
        tally_group(&mut self.groups, &p, false);
        Some(p)
    }

    /// The `publish_last` globs changed: which files are `publish_last`, again.
    pub(super) fn relabel(&mut self, is_last: impl Fn(&I) -> bool) {
        self.groups.clear();
        for p in self.waiting.values_mut() {
            p.last = is_last(&p.item);
            tally_group(&mut self.groups, p, true);
            tally_last_waiting(&mut self.groups, p, true);
        }
        for p in self.running.values_mut() {
            p.last = is_last(&p.item);
            tally_group(&mut self.groups, p, true);
        }
    }

    /// Files the waiting view and its key and group views.
    fn wait(&mut self, p: Pending<I>) {
        let (seq, dropped, taken) = (p.item.seq(), p.item.dropped_at(), p.item.taken_over());
        update(
            &mut self.keys,
            p.item.order_key(),
            KeyState::is_empty,
            |k| {
                add_sorted(&mut k.waiting, seq);
                if taken {
                    add_sorted(&mut k.taken, (dropped, seq));
                }
            },
        );
        tally_last_waiting(&mut self.groups, &p, true);
        self.waiting.insert(seq, p);
    }

    /// The key of a file no longer in flight is free.
    fn end_running(&mut self, p: &Pending<I>) {
        update(
            &mut self.keys,
            p.item.order_key(),
            KeyState::is_empty,
            |k| {
                k.running = false;
            },
        );
    }

    /// The file in flight with this seq, to update its attempt record.
    pub(super) fn running_mut(&mut self, seq: u64) -> Option<&mut Pending<I>> {
        self.running.get_mut(&seq)
    }

    /// For each order key not in flight, its waiting file that goes first, in arrival
    /// order: the lowest seq, unless a file taken over from a dead daemon was dropped
    /// before it. Later files of the key wait for it, whatever it decides.
    pub(super) fn firsts(&self) -> impl Iterator<Item = (u64, &Pending<I>)> {
        self.waiting.iter().filter_map(|(&seq, p)| {
            let k = self.keys.get(p.item.order_key())?;
            if k.running || k.waiting.first() != Some(&seq) {
                return None;
            }
            match k.taken.first() {
                Some(&(t, s)) if (t, s) < (p.item.dropped_at(), seq) => {
                    Some(self.waiting.get(&s).map_or((seq, p), |q| (s, q)))
                }
                _ => Some((seq, p)),
            }
        })
    }

    /// A file of `group` that is not `publish_last` is pending and goes before a file
    /// claimed as `seq` and dropped at `dropped`: claimed or dropped before it, or
    /// requeued from `.failed/`.
    pub(super) fn earlier_in_group(&self, group: &str, seq: u64, dropped: SystemTime) -> bool {
        self.groups.get(group).is_some_and(|g| {
            g.others_returned > 0
                || g.others.first().is_some_and(|&s| s < seq)
                || g.others_dropped.first().is_some_and(|&(t, _)| t < dropped)
        })
    }

    /// A `publish_last` file of `group` is waiting.
    pub(super) fn last_waiting_in(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| g.last_waiting > 0)
    }

    pub(super) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn running_len(&self) -> usize {
        self.running.len()
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Drop time of the oldest file.
    pub(super) fn oldest(&self) -> Option<SystemTime> {
        self.by_age.first().map(|(t, _)| *t)
    }

    /// Backoffs ending after `now`, soonest first.
    pub(super) fn backoffs_after(&self, now: Instant) -> impl Iterator<Item = Instant> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        self.backoff
            .range((Excluded((now, u64::MAX)), Unbounded))
            .map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests;
