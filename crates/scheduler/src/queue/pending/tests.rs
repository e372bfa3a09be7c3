//! The pending index under random operations: after each, every view equals the one
//! recomputed from the files, and the per-key and per-group answers equal the scans the
//! dispatcher made before the index kept them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Pending, PendingIndex};
use crate::Item;

#[derive(Debug, Clone)]
struct F {
    key: String,
    seq: u64,
    dropped: u64,
    taken: bool,
}

impl Item for F {
    fn order_key(&self) -> &str {
        &self.key
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn size(&self) -> u64 {
        self.seq % 7 + 1
    }
    fn dropped_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.dropped)
    }
    fn group(&self) -> &str {
        crate::key_parts(&self.key).0
    }
    fn name(&self) -> &str {
        crate::key_parts(&self.key).1
    }
    fn taken_over(&self) -> bool {
        self.taken
    }
}

const KEYS: &[&str] = &["a/1", "a/2", "a/done", "b/1", "b/done", "c", "done"];

fn all(ix: &PendingIndex<F>) -> impl Iterator<Item = (&Pending<F>, bool)> {
    let waiting = ix.waiting.values().map(|p| (p, true));
    waiting.chain(ix.running.values().map(|p| (p, false)))
}

/// Every view equals the one recomputed from the files.
fn check(ix: &PendingIndex<F>) {
    let bytes: u64 = all(ix).map(|(p, _)| p.item.size()).sum();
    assert_eq!(ix.bytes, bytes);
    let age: BTreeSet<_> = all(ix)
        .map(|(p, _)| (p.item.dropped_at(), p.item.seq))
        .collect();
    assert_eq!(ix.by_age, age);
    let backoff: BTreeSet<_> = ix
        .waiting
        .values()
        .filter_map(|p| p.not_before.map(|t| (t, p.item.seq)))
        .collect();
    assert_eq!(ix.backoff, backoff);
    assert!(ix.running.values().all(|p| p.not_before.is_none()));
    let keys: BTreeSet<&str> = all(ix).map(|(p, _)| p.item.key.as_str()).collect();
    assert_eq!(ix.keys.len(), keys.len());
    for key in keys {
        let k = &ix.keys[key];
        let of_key = |p: &&Pending<F>| p.item.key == key;
        let waiting: Vec<u64> = ix
            .waiting
            .values()
            .filter(of_key)
            .map(|p| p.item.seq)
            .collect();
        assert_eq!(k.waiting, waiting);
        let mut taken: Vec<_> = ix
            .waiting
            .values()
            .filter(of_key)
            .filter(|p| p.item.taken)
            .map(|p| (p.item.dropped_at(), p.item.seq))
            .collect();
        taken.sort();
        assert_eq!(k.taken, taken);
        assert_eq!(k.running, ix.running.values().any(|p| of_key(&p)));
    }
    let groups: BTreeSet<&str> = all(ix)
        .filter(|(p, waiting)| !p.last || *waiting)
        .map(|(p, _)| p.item.group())
        .collect();
    assert_eq!(ix.groups.len(), groups.len());
    for group in groups {
        let g = &ix.groups[group];
        let others: Vec<&Pending<F>> = all(ix)
            .map(|(p, _)| p)
            .filter(|p| p.item.group() == group && !p.last)
            .collect();
        let seqs: BTreeSet<u64> = others.iter().map(|p| p.item.seq).collect();
        assert_eq!(g.others, seqs);
        let dropped: BTreeSet<_> = others
            .iter()
            .map(|p| (p.item.dropped_at(), p.item.seq))
            .collect();
        assert_eq!(g.others_dropped, dropped);
        assert_eq!(
            g.others_returned,
            others.iter().filter(|p| p.returned).count()
        );
        let last_waiting = ix
            .waiting
            .values()
            .filter(|p| p.item.group() == group && p.last);
        assert_eq!(g.last_waiting, last_waiting.count());
    }
}

/// The dispatcher's former scan: per key not in flight, its first waiting file by seq,
/// or an earlier-dropped file of the key taken over from a dead daemon.
fn firsts_by_scan(ix: &PendingIndex<F>) -> Vec<u64> {
    let running: HashSet<&str> = ix.running.values().map(|p| p.item.key.as_str()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (seq, p) in &ix.waiting {
        let key = p.item.key.as_str();
        if running.contains(key) || !seen.insert(key) {
            continue;
        }
        let first = ix
            .waiting
            .values()
            .filter(|q| q.item.key == key && q.item.taken)
            .map(|q| (q.item.dropped_at(), q.item.seq))
            .min()
            .filter(|&(t, s)| (t, s) < (p.item.dropped_at(), *seq))
            .map_or(*seq, |(_, s)| s);
        out.push(first);
    }
    out
}

/// The former `held_back` scan, without the failed files and the first scan.
fn earlier_by_scan(ix: &PendingIndex<F>, item: &F) -> bool {
    all(ix).any(|(p, _)| {
        (p.item.seq < item.seq || p.item.dropped_at() < item.dropped_at() || p.returned)
            && p.item.group() == item.group()
            && !p.last
    })
}

#[test]
fn random_operations_keep_every_view_in_step() {
    let mut rng = fastrand::Rng::with_seed(12);
    let now = Instant::now();
    for _round in 0..200 {
        let mut ix = PendingIndex::<F>::default();
        let mut suffix = "done";
        let mut seq = 0;
        for _op in 0..60 {
            let running: Vec<u64> = ix.running.keys().copied().collect();
            // The dispatcher starts only a first of its key (`firsts`).
            let waiting: Vec<u64> = ix.firsts().map(|(s, _)| s).collect();
            match rng.u8(0..10) {
                0..=3 => {
                    seq += 1;
                    let key = KEYS[rng.usize(..KEYS.len())].to_owned();
                    let last = key.ends_with(suffix);
                    let dropped = rng.u64(0..40);
                    let f = F {
                        key,
                        seq,
                        dropped,
                        taken: rng.bool(),
                    };
                    ix.insert(f, last, rng.u8(0..4) == 0);
                }
                4..=5 if !waiting.is_empty() => {
                    let s = waiting[rng.usize(..waiting.len())];
                    assert_eq!(ix.take(s).map(|p| p.item.seq), Some(s));
                }
                6..=7 if !running.is_empty() => {
                    let s = running[rng.usize(..running.len())];
                    let until = rng
                        .bool()
                        .then(|| now + Duration::from_millis(rng.u64(1..9)));
                    ix.requeue(s, until);
                }
                8 if !running.is_empty() => {
                    let s = running[rng.usize(..running.len())];
                    assert_eq!(ix.forget(s).map(|p| p.item.seq), Some(s));
                }
                9 => {
                    suffix = if suffix == "done" { "1" } else { "done" };
                    ix.relabel(|f| f.key.ends_with(suffix));
                }
                _ => {}
            }
            check(&ix);
            let firsts: Vec<u64> = ix.firsts().map(|(s, _)| s).collect();
            assert_eq!(firsts, firsts_by_scan(&ix));
            for p in ix.waiting.values() {
                let (g, s, d) = (p.item.group(), p.item.seq, p.item.dropped_at());
                assert_eq!(ix.earlier_in_group(g, s, d), earlier_by_scan(&ix, &p.item));
            }
            let groups: BTreeMap<&str, bool> = ix
                .waiting
                .values()
                .map(|p| {
                    (
                        p.item.group(),
                        ix.waiting
                            .values()
                            .any(|q| q.item.group() == p.item.group() && q.last),
                    )
                })
                .collect();
            for (g, any_last) in groups {
                assert_eq!(ix.last_waiting_in(g), any_last);
            }
        }
    }
}
