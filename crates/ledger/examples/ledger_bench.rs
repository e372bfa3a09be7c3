//! The ledger's measurements for docs/benchmarks.md (not a test): inserts N delivered
//! rows (default 1,000,000; ~60-byte keys, 8 servers, spread over 30 days) through
//! `record` and its group commit, then prints the file size per row and per million,
//! the insert rate, the latency of a lone row's acknowledgement, and the time of the
//! queries `outpost deliveries` makes.
//!
//! `cargo run --release --example ledger_bench -p outpost-ledger [-- ROWS [FOLDER]]`

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use outpost_ledger::{Delivered, Filter, Ledger, Mode, Outcome, now_millis, query, render};

const SERVERS: [&str; 8] = [
    "acme", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
];
const DAY: i64 = 86_400_000;

fn row(i: u64, n: u64, now: i64) -> Delivered {
    let server = SERVERS[(i % 8) as usize];
    // Oldest first, the newest now: 30 days of traffic.
    let at = now - 30 * DAY + (30 * DAY) * i as i64 / n as i64;
    let day = 1 + (i * 30 / n);
    let rel = format!(
        "exports/2026/03/{day:02}/segment-{:06}/part-{:05}.csv.gz",
        i / 100,
        i % 100
    );
    Delivered {
        server: server.into(),
        bucket: format!("{server}-incoming-data"),
        key: format!("{server}/{rel}"),
        size: 200_000 + i % 50_000,
        checksum_algorithm: "crc32c".into(),
        checksum: format!("{:08x}==", i.wrapping_mul(2_654_435_761) & 0xffff_ffff),
        store_checksum: Some(format!(
            "{:08x}==",
            i.wrapping_mul(2_654_435_761) & 0xffff_ffff
        )),
        etag: Some(format!(
            "\"{:032x}\"",
            u128::from(i) * 0x9e37_79b9_7f4a_7c15
        )),
        version_id: None,
        relative_path: rel,
        dropped_at: at - 2_000,
        first_attempt: at - 1_500,
        delivered_at: at,
        attempts: 1,
        duration_ms: 180,
        mode: Mode::Single,
        outcome: Outcome::Written,
        instance: "outpost-1".into(),
        seq: i,
        batch: None,
    }
}

fn size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len())
        })
        .sum()
}

/// Best and first of five runs of `filter`, and the rows it returned.
fn time_query(path: &Path, name: &str, filter: &Filter) {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        n = query(path, filter).expect("query").len();
        times.push(t.elapsed());
    }
    let best = times.iter().min().copied().unwrap_or_default();
    println!(
        "query {name:<40} {n:>7} rows  first {:>8.1} ms  best {:>8.1} ms",
        ms(times[0]),
        ms(best)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("ROWS is a number"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_owned(), PathBuf::from);
    let path = dir.join("ledger.sqlite");
    let _ = std::fs::remove_file(&path);
    let now = now_millis();

    let ledger = Ledger::open(&path).expect("open");
    // A lone row's acknowledgement: what a worker waits before finishing a file.
    let mut lone = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        ledger.record(row(n + i, n, now)).wait().expect("stored");
        lone.push(t.elapsed());
    }
    lone.sort();
    println!(
        "lone row acknowledged: median {:.3} ms, p99 {:.3} ms",
        ms(lone[100]),
        ms(lone[197])
    );
    drop(ledger);
    std::fs::remove_file(&path).expect("start again");
    for s in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(s);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }

    let ledger = Ledger::open(&path).expect("open");
    let started = Instant::now();
    let mut pending = VecDeque::new();
    for i in 0..n {
        pending.push_back(ledger.record(row(i, n, now)));
        // Stay below the queue's 10,000 slots, as a daemon's workers would.
        if pending.len() >= 8_000
            && let Some(a) = pending.pop_front()
        {
            a.wait().expect("stored");
        }
    }
    for a in pending {
        a.wait().expect("stored");
    }
    let took = started.elapsed();
    assert_eq!((ledger.errors(), ledger.dropped()), (0, 0));
    println!(
        "inserted {n} rows in {:.1} s: {:.0} rows/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!("while open (with WAL): {} bytes", size(&path));
    ledger.close();
    let bytes = size(&path);
    println!(
        "file after close: {bytes} bytes = {:.0} bytes/row = {:.1} MiB per million rows",
        bytes as f64 / n as f64,
        bytes as f64 / n as f64 * 1e6 / 1048576.0
    );

    let day = Some(Duration::from_secs(86_400));
    let f = Filter::default;
    time_query(&path, "--since 24h", &Filter { since: day, ..f() });
    time_query(
        &path,
        "--since 24h (limit 1000)",
        &Filter {
            since: day,
            limit: Some(1000),
            ..f()
        },
    );
    time_query(
        &path,
        "acme --since 24h",
        &Filter {
            server: Some("acme".into()),
            since: day,
            ..f()
        },
    );
    time_query(
        &path,
        "--since 7d (limit 1000)",
        &Filter {
            since: Some(Duration::from_secs(7 * 86_400)),
            limit: Some(1000),
            ..f()
        },
    );
    time_query(
        &path,
        "(no filter, limit 100)",
        &Filter {
            limit: Some(100),
            ..f()
        },
    );
    time_query(
        &path,
        "--key acme/exports/2026/03/15/ (1 day)",
        &Filter {
            key_prefix: Some("acme/exports/2026/03/15/".into()),
            ..f()
        },
    );
    time_query(
        &path,
        "--key one segment folder",
        &Filter {
            key_prefix: Some(format!(
                "acme/exports/2026/03/{:02}/segment-{:06}/",
                1 + (n / 2 * 30 / n),
                n / 2 / 100
            )),
            ..f()
        },
    );
    time_query(
        &path,
        "--key acme/ (limit 1000)",
        &Filter {
            key_prefix: Some("acme/".into()),
            limit: Some(1000),
            ..f()
        },
    );
    time_query(
        &path,
        "--since 24h --key acme/",
        &Filter {
            since: day,
            key_prefix: Some("acme/".into()),
            ..f()
        },
    );
    time_query(
        &path,
        "--failed",
        &Filter {
            failed: true,
            ..f()
        },
    );

    let t = Instant::now();
    let rows = query(&path, &Filter { since: day, ..f() }).expect("query");
    let table = render::table(&rows, SystemTime::now());
    let json = render::json_lines(&rows);
    println!(
        "--since 24h read and rendered: {} rows, table {} KiB, JSON {} KiB, {:.1} ms",
        rows.len(),
        table.len() / 1024,
        json.len() / 1024,
        ms(t.elapsed())
    );
}
