//! The write path against a real SQLite file: rows round-trip, group commit under many
//! threads, duplicates, pruning, errors that never block (a locked database, a full
//! queue), and files that cannot be opened.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{delivered, failed, open, requeued, state};
use outpost_ledger::{
    Filter, Ledger, LedgerError, Options, Outcome, Row, now_millis, query, unix_millis,
};

fn all(path: &std::path::Path) -> Vec<Row> {
    query(path, &Filter::default()).expect("query")
}

#[test]
fn rows_round_trip_and_files_get_their_modes() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let now = now_millis();
    let mut d = delivered("acme", "out/2026/03/01/a.csv", 7, now - 3000);
    d.batch = Some("2026-03-01".into());
    d.mode = outpost_ledger::Mode::Multipart;
    let f = failed("acme", "out/b.csv", now - 2000);
    let r = requeued("acme", "b.csv", now - 1000);
    ledger.record(d.clone()).wait().expect("delivered stored");
    ledger.record(f.clone()).wait().expect("failed stored");
    ledger.record(r.clone()).wait().expect("requeued stored");
    assert_eq!(
        all(&path),
        vec![Row::Requeued(r), Row::Failed(f), Row::Delivered(d)]
    );
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().expect("folder")), 0o750);
    assert_eq!(mode(&path), 0o640);
    assert_eq!((ledger.errors(), ledger.dropped()), (0, 0));
    ledger.close();
    // Opened again (migrations are idempotent), the rows are there.
    let again = open(&path);
    assert_eq!(all(&path).len(), 3);
    again.close();
}

#[test]
fn a_thousand_rows_from_eight_threads_are_all_acknowledged() {
    let (_dir, path) = state();
    let ledger = Arc::new(open(&path));
    let now = now_millis();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let acks: Vec<_> = (0..125u64)
                    .map(|i| {
                        let seq = t * 1000 + i;
                        ledger.record(delivered("acme", &format!("out/t{t}/f{i}.csv"), seq, now))
                    })
                    .collect();
                acks.into_iter().map(|a| a.wait()).collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for ack in t.join().expect("thread") {
            ack.expect("acknowledged");
        }
    }
    assert_eq!(all(&path).len(), 1000);
    assert_eq!((ledger.errors(), ledger.dropped()), (0, 0));
}

#[test]
fn a_second_row_of_the_same_delivery_is_already_present() {
    let (_dir, path) = state();
    let ledger = open(&path);
    ledger.set_retention(Duration::from_secs(86_400));
    let now = now_millis();
    let first = delivered("acme", "out/a.csv", 1, now - 60_000);
    // The same claim again (crash after the store's acknowledgement).
    let same_claim = delivered("acme", "out/a.csv", 1, now - 50_000);
    // Another daemon took the claim over: another claim (other instance and seq), a
    // write of its own.
    let mut taken_over = delivered("acme", "out/a.csv", 1, now - 40_000);
    taken_over.instance = "host-b".into();
    taken_over.seq = 99;
    // New bytes under the same key: a new delivery.
    let mut new_bytes = delivered("acme", "out/a.csv", 2, now - 30_000);
    new_bytes.instance = "host-b".into();
    // The same bytes on another server: its own delivery.
    let other_server = delivered("beta", "out/a.csv", 1, now - 20_000);
    // The same bytes again, but the last one is older than the retention.
    let mut old = delivered("acme", "out/old.csv", 3, now - 3 * 86_400_000);
    let mut late = old.clone();
    old.instance = "host-b".into();
    late.delivered_at = now - 10_000;
    for row in [
        first,
        same_claim,
        taken_over,
        new_bytes,
        other_server,
        old,
        late,
    ] {
        ledger.record(row).wait().expect("stored");
    }
    let outcomes: Vec<(String, Outcome)> = all(&path)
        .into_iter()
        .rev()
        .map(|r| match r {
            Row::Delivered(d) => (format!("{}:{}:{}", d.server, d.key, d.seq), d.outcome),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let want = [
        ("acme:out/old.csv:3", Outcome::Written),
        ("acme:out/a.csv:1", Outcome::Written),
        ("acme:out/a.csv:1", Outcome::AlreadyPresent),
        ("acme:out/a.csv:99", Outcome::Written),
        ("acme:out/a.csv:2", Outcome::Written),
        ("beta:out/a.csv:1", Outcome::Written),
        ("acme:out/old.csv:3", Outcome::Written),
    ];
    let want: Vec<(String, Outcome)> = want.iter().map(|(k, o)| ((*k).to_owned(), *o)).collect();
    assert_eq!(outcomes, want);
}

#[test]
fn pruning_removes_old_rows_and_keeps_new_ones() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let now = now_millis();
    let day = 86_400_000;
    let acks: Vec<_> =
        (0..2500u64)
            .map(|i| {
                ledger.record(delivered(
                    "acme",
                    &format!("out/old{i}.csv"),
                    i,
                    now - 40 * day,
                ))
            })
            .chain((0..10u64).map(|i| {
                ledger.record(delivered("acme", &format!("out/new{i}.csv"), 5000 + i, now))
            }))
            .chain([
                ledger.record(failed("acme", "out/oldf.csv", now - 40 * day)),
                ledger.record(requeued("acme", "oldf.csv", now - 40 * day)),
                ledger.record(failed("acme", "out/newf.csv", now)),
            ])
            .collect();
    for a in acks {
        a.wait().expect("stored");
    }
    let cutoff = SystemTime::now() - Duration::from_secs(30 * 86_400);
    ledger.prune(cutoff).wait().expect("pruned");
    let rows = all(&path);
    assert_eq!(rows.len(), 11, "{rows:?}");
    assert!(rows.iter().all(|r| r.time() >= unix_millis(cutoff)));

    // The retention set by the daemon prunes by itself.
    ledger
        .record(delivered(
            "acme",
            "out/older.csv",
            9000,
            now - 2 * 3_600_000,
        ))
        .wait()
        .expect("stored");
    ledger.set_retention(Duration::from_secs(3600));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while all(&path).len() != 11 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not prune"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_locked_database_fails_rows_without_blocking_and_the_writer_recovers() {
    let (_dir, path) = state();
    let ledger = open(&path);
    ledger
        .record(delivered("acme", "out/a.csv", 1, now_millis()))
        .wait()
        .expect("stored");
    // Another process holds the write lock longer than the writer waits.
    let other = rusqlite::Connection::open(&path).expect("second connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let started = std::time::Instant::now();
    let ack = ledger.record(delivered("acme", "out/b.csv", 2, now_millis()));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "record waited"
    );
    let err = ack.wait().expect_err("locked");
    assert!(matches!(err, LedgerError::Write(_)), "{err}");
    assert!(err.is_lost_row());
    assert_eq!(ledger.errors(), 1);
    other.execute_batch("ROLLBACK").expect("unlock");
    ledger
        .record(delivered("acme", "out/c.csv", 3, now_millis()))
        .wait()
        .expect("works again");
    assert_eq!(all(&path).len(), 2);
}

#[test]
fn a_full_queue_drops_rows_at_once_and_counts_them() {
    let (_dir, path) = state();
    let ledger = Ledger::open_with(
        &path,
        Options {
            queue: 4,
            max_batch: 1000,
        },
    )
    .expect("open");
    // The writer is held inside a transaction by the lock: the queue fills.
    let other = rusqlite::Connection::open(&path).expect("second connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let acks: Vec<_> = (0..50u64)
        .map(|i| ledger.record(delivered("acme", &format!("out/{i}.csv"), i, now_millis())))
        .collect();
    assert!(ledger.dropped() > 0);
    other.execute_batch("ROLLBACK").expect("unlock");
    let results: Vec<_> = acks.into_iter().map(|a| a.wait()).collect();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(LedgerError::QueueFull)))
        .count();
    assert_eq!(full as u64, ledger.dropped());
    assert_eq!(
        all(&path).len() as u64,
        50 - ledger.dropped() - ledger.errors(),
    );
}

#[test]
fn an_unwritable_folder_is_an_error_that_names_the_path() {
    let (dir, _) = state();
    // A regular file where the state folder should be.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("file");
    let err = Ledger::open(&blocker.join("ledger.sqlite")).expect_err("refused");
    assert!(matches!(err, LedgerError::Create { .. }), "{err}");
    assert!(
        err.to_string().contains(&*blocker.to_string_lossy()),
        "{err}"
    );

    // A folder without write permission (root ignores modes: then not checked).
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).expect("folder");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    if std::fs::write(ro.join("probe"), b"").is_err() {
        let target = ro.join("ledger.sqlite");
        let err = Ledger::open(&target).expect_err("refused");
        assert!(
            err.to_string().contains(&*target.to_string_lossy()),
            "{err}"
        );
    }
}

#[test]
fn a_corrupt_file_is_a_clear_error() {
    let (_dir, path) = state();
    std::fs::create_dir_all(path.parent().expect("folder")).expect("folder");
    std::fs::write(&path, vec![b'#'; 8192]).expect("garbage");
    let err = Ledger::open(&path).expect_err("refused");
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&*path.to_string_lossy()) && text.contains("not a SQLite database"),
        "{text}"
    );
    let err = query(&path, &Filter::default()).expect_err("refused");
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = state();
    open(&path).close();
    let c = rusqlite::Connection::open(&path).expect("open");
    c.pragma_update(None, "user_version", 99).expect("bump");
    drop(c);
    let err = Ledger::open(&path).expect_err("refused");
    assert!(
        matches!(err, LedgerError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    let err = query(&path, &Filter::default()).expect_err("refused");
    assert!(err.to_string().contains("newer than this outpost"), "{err}");
}
