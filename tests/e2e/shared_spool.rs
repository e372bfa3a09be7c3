//! Two daemons on one spool (a shared POSIX filesystem): each file is claimed by one of
//! them, and the claims of a daemon that died are taken over once its lease expired.

use std::time::{Duration, Instant};

use outpost_e2e::*;

fn shared_config(
    dir: &TestDir,
    port: u16,
    instance: &str,
    store: &Store,
    bucket: &str,
) -> std::path::PathBuf {
    let yaml = config_yaml(
        dir,
        port,
        &server_yaml("acme", store, bucket, "    max_concurrent_uploads: 8\n"),
    );
    let p = dir.path().join(format!("{instance}.yaml"));
    std::fs::write(&p, format!("instance: {instance}\nlease_ttl: 2s\n{yaml}")).expect("config");
    p
}

fn total_uploaded(ds: &[&Daemon]) -> f64 {
    ds.iter()
        .map(|d| {
            d.metric("outpost_files_uploaded_total{server=\"acme\"}")
                .unwrap_or(0.0)
        })
        .sum()
}

#[test]
fn a_dead_daemons_claims_are_taken_over_and_nothing_is_lost() {
    let store = Store::s3s();
    let client = store.client();
    let bucket = bucket_name("shared");
    rt().block_on(create_bucket(&client, &bucket));
    let dir = TestDir::new();
    let (pa, pb) = (free_port(), free_port());
    let ca = shared_config(&dir, pa, "alpha", &store, &bucket);
    let cb = shared_config(&dir, pb, "beta", &store, &bucket);
    let mut a = Daemon::start(&dir, &ca, pa, &store);
    let mut b = Daemon::start(&dir, &cb, pb, &store);
    a.wait_ready();
    b.wait_ready();
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("d{}/f{i}.csv", i % 7), data(20_000 + i, i as u64)))
        .collect();
    for (rel, bytes) in &files {
        dir.drop_file("acme", rel, bytes);
    }
    // Kill alpha while it still holds claims.
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    let held_by_alpha = files_below(&dir.spool().join(".outpost/alpha/claims"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .count();
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()
            && dir.left_in_spool("acme").is_empty()),
        "not drained; beta log:\n{}",
        b.log_text()
    );
    if held_by_alpha > 0 {
        assert!(
            b.log_text().contains("took over the claims"),
            "{}",
            b.log_text()
        );
    }
    eprintln!("shared spool: alpha killed holding {held_by_alpha} claims; beta took them over");
    assert_eq!(b.stop(), Some(0));
    assert!(dir.failed().is_empty());
    rt().block_on(async {
        for (rel, want) in &files {
            assert!(
                get(&client, &bucket, &format!("pre/{rel}"))
                    .await
                    .as_deref()
                    == Some(want.as_slice()),
                "{rel}"
            );
        }
    });
}

fn drain(daemons: usize) -> f64 {
    let store = Store::s3s();
    let bucket = bucket_name("drain");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let dir = TestDir::new();
    let n = 600;
    // Drop first, then start: both daemons find the backlog at start-up.
    for i in 0..n {
        dir.drop_file("acme", &format!("x/f{i}.csv"), &data(4096, i as u64));
    }
    let mut ds = Vec::new();
    let start = Instant::now();
    for k in 0..daemons {
        let port = free_port();
        let cfg = shared_config(&dir, port, &format!("i{k}"), &store, &bucket);
        ds.push(Daemon::start(&dir, &cfg, port, &store));
    }
    let refs: Vec<&Daemon> = ds.iter().collect();
    assert!(wait_until(Duration::from_secs(300), || total_uploaded(
        &refs
    ) >= n as f64));
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for d in &mut ds {
        assert_eq!(d.stop(), Some(0));
    }
    rate
}

#[test]
fn drain_rate_of_two_daemons_against_one() {
    let one = drain(1);
    let two = drain(2);
    eprintln!(
        "shared spool drain rate: one daemon {one:.0} files/s, two daemons {two:.0} files/s ({:.2}x)",
        two / one
    );
}
