//! The read side against a real SQLite file: filters, reads while the writer writes and
//! with no writer, and the two outputs of `outpost deliveries`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{delivered, failed, open, requeued, state};
use outpost_ledger::{Filter, LedgerError, Row, query, query_at, render};

const NOW: i64 = 1_772_366_400_000; // 2026-03-01 12:00:00 UTC
const HOUR: i64 = 3_600_000;

/// A ledger with rows of two servers over three days, closed (no daemon).
fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = state();
    let ledger = open(&path);
    let acks = vec![
        ledger.record(delivered("acme", "out/2026/a.csv", 1, NOW - 50 * HOUR)),
        ledger.record(delivered("acme", "out/2026/b.csv", 2, NOW - 3 * HOUR)),
        ledger.record(delivered("beta", "in/b.csv", 3, NOW - 2 * HOUR)),
        ledger.record(failed("acme", "out/2026/c.csv", NOW - HOUR)),
        ledger.record(requeued("acme", "2026/c.csv", NOW - HOUR / 2)),
        ledger.record(delivered("acme", "out/2027/d.csv", 4, NOW - 60_000)),
    ];
    for a in acks {
        a.wait().expect("stored");
    }
    ledger.close();
    (dir, path)
}

/// `(kind, key or path)` of each row, in order.
fn names(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| match r {
            Row::Delivered(d) => format!("delivered {}", d.key),
            Row::Failed(f) => format!("failed {}", f.key),
            Row::Requeued(q) => format!("requeued {}", q.relative_path),
        })
        .collect()
}

#[test]
fn filters_select_rows_newest_first() {
    let (_dir, path) = fixture();
    let f = |server: Option<&str>,
             since_h: Option<u64>,
             key: Option<&str>,
             failed: bool,
             limit: Option<usize>| Filter {
        server: server.map(Into::into),
        since: since_h.map(|h| Duration::from_secs(h * 3600)),
        key_prefix: key.map(Into::into),
        failed,
        limit,
    };
    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (
            f(None, None, None, false, None),
            vec![
                "delivered out/2027/d.csv",
                "requeued 2026/c.csv",
                "failed out/2026/c.csv",
                "delivered in/b.csv",
                "delivered out/2026/b.csv",
                "delivered out/2026/a.csv",
            ],
        ),
        (
            f(None, None, None, false, Some(2)),
            vec!["delivered out/2027/d.csv", "requeued 2026/c.csv"],
        ),
        (
            f(Some("beta"), Some(24), None, false, None),
            vec!["delivered in/b.csv"],
        ),
        (
            f(Some("acme"), Some(24), None, false, None),
            vec![
                "delivered out/2027/d.csv",
                "requeued 2026/c.csv",
                "failed out/2026/c.csv",
                "delivered out/2026/b.csv",
            ],
        ),
        (
            f(None, None, Some("out/2026/"), false, None),
            vec![
                "failed out/2026/c.csv",
                "delivered out/2026/b.csv",
                "delivered out/2026/a.csv",
            ],
        ),
        (
            f(None, Some(24), Some("out/2026/"), false, None),
            vec!["failed out/2026/c.csv", "delivered out/2026/b.csv"],
        ),
        (
            f(None, None, None, true, None),
            vec!["failed out/2026/c.csv"],
        ),
        (f(Some("beta"), None, None, true, None), vec![]),
        (f(Some("nobody"), None, None, false, None), vec![]),
    ];
    for (filter, want) in cases {
        let rows = query_at(&path, &filter, NOW).expect("query");
        assert_eq!(names(&rows), want, "{filter:?}");
    }
}

#[test]
fn reads_work_while_the_writer_writes() {
    let (_dir, path) = state();
    let ledger = open(&path);
    let writer = std::thread::spawn({
        let now = outpost_ledger::now_millis();
        move || {
            for i in 0..3000u64 {
                let ack = ledger.record(delivered("acme", &format!("out/{i}.csv"), i, now));
                if i % 100 == 99 {
                    ack.wait().expect("stored");
                }
            }
            ledger
        }
    });
    let mut seen = 0;
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let n = query(&path, &Filter::default())
            .expect("read while writing")
            .len();
        assert!(n >= seen, "rows went back from {seen} to {n}");
        seen = n;
        reads += 1;
    }
    let ledger = writer.join().expect("writer");
    ledger.sync().wait().expect("synced");
    assert_eq!(query(&path, &Filter::default()).expect("read").len(), 3000);
    ledger.close();
    // And with no daemon at all.
    assert_eq!(
        query(
            &path,
            &Filter {
                since: Some(Duration::from_secs(3600)),
                ..Filter::default()
            }
        )
        .expect("read")
        .len(),
        3000
    );
}

#[test]
fn a_missing_ledger_says_so_and_an_empty_one_has_no_rows() {
    let (_dir, path) = state();
    let err = query(&path, &Filter::default()).expect_err("missing");
    assert!(matches!(err, LedgerError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("state_dir"), "{err}");
    open(&path).close();
    assert!(query(&path, &Filter::default()).expect("empty").is_empty());
}

#[test]
fn json_lines_parse_with_every_field() {
    let (_dir, path) = fixture();
    let rows = query(&path, &Filter::default()).expect("query");
    let text = render::json_lines(&rows);
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.len(), rows.len());
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "delivered",
            "requeued",
            "failed",
            "delivered",
            "delivered",
            "delivered"
        ]
    );
    let d = &objects[0];
    for field in [
        "server",
        "bucket",
        "key",
        "size",
        "checksum_algorithm",
        "checksum",
        "store_checksum",
        "etag",
        "version_id",
        "relative_path",
        "dropped_at",
        "first_attempt",
        "delivered_at",
        "attempts",
        "duration_ms",
        "mode",
        "outcome",
        "instance",
        "seq",
        "batch",
    ] {
        assert!(d.get(field).is_some(), "{field} missing in {d}");
    }
    assert_eq!(d["delivered_at"], "2026-03-01T11:59:00.000Z");
    assert_eq!(d["outcome"], "written");
    assert_eq!(d["size"], 1_258_295);
    assert_eq!(objects[2]["reason"], "exists");
    assert_eq!(objects[1]["at"], "2026-03-01T11:30:00.000Z");
}

#[test]
fn the_table_reads_like_a_person_wants() {
    let (_dir, path) = fixture();
    let rows = query(
        &path,
        &Filter {
            limit: Some(4),
            ..Filter::default()
        },
    )
    .expect("query");
    let now = UNIX_EPOCH + Duration::from_millis(NOW as u64);
    let text = render::table(&rows, now);
    let want = "\
TIME (UTC)           AGE     SERVER  KEY                SIZE  OUTCOME/REASON
2026-03-01 11:59:00  1m 0s   acme    out/2027/d.csv  1.2 MiB  written (single)
2026-03-01 11:30:00  30m 0s  acme    2026/c.csv            -  requeued
2026-03-01 11:00:00  1h 0m   acme    out/2026/c.csv        -  failed: exists
2026-03-01 10:00:00  2h 0m   beta    in/b.csv        1.2 MiB  written (single)
";
    assert_eq!(text, want);
    assert_eq!(render::table(&[], SystemTime::now()), "no rows match\n");
}
