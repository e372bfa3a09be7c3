//! Crash loop: `kill -9` at random moments of a mixed run (small files and multipart
//! files), restarting each time; in the end every file is delivered byte-identical,
//! none lost, none in `.failed/`.

use std::time::Duration;

use outpost_e2e::*;

#[test]
fn kill9_loop_loses_nothing() {
    let kills: usize = std::env::var("OUTPOST_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let publisher = Store::rgw_publisher();
    // With listing allowed, outpost also aborts an upload a kill interrupted between its
    // creation and its journal entry.
    let (bucket, oc) = rgw_bucket("crash", true);
    let dir = TestDir::new();
    let port = free_port();
    let cfg = dir.config(&config_yaml(
        &dir,
        port,
        &server_yaml(
            "acme",
            &publisher,
            &bucket,
            "    checksum: md5\n    multipart: { threshold: 6MiB, part_size: 5MiB, concurrency: 2 }\n",
        ),
    ));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut d = Daemon::start(&dir, &cfg, port, &publisher);
    d.wait_ready();
    for k in 0..kills {
        // Drop a batch: small files, and now and then a multipart file.
        for i in 0..8 {
            let rel = format!("batch{k}/f{i}.csv");
            let bytes = data(rng.usize(0..300_000), (k * 100 + i) as u64);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        if k % 4 == 0 {
            let rel = format!("batch{k}/large.bin");
            let bytes = data(rng.usize(11_000_000..21_000_000), k as u64 + 5000);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(50..1500)));
        d.kill9();
        d = Daemon::start(&dir, &cfg, port, &publisher);
        // Sometimes kill again right away, during start-up and recovery.
        if rng.u8(..) < 40 {
            std::thread::sleep(Duration::from_millis(rng.u64(0..150)));
            d.kill9();
            d = Daemon::start(&dir, &cfg, port, &publisher);
        }
        d.wait_ready();
    }
    let done = wait_until(Duration::from_secs(600), || {
        dir.left_in_spool("acme").is_empty() && dir.claimed().is_empty()
    });
    assert!(done, "spool did not drain; log:\n{}", d.log_text());
    assert_eq!(d.stop(), Some(0));
    assert!(
        dir.failed().is_empty(),
        "files in .failed: {:?}",
        dir.failed()
    );
    rt().block_on(async {
        for (rel, want) in &files {
            let got = get(&oc, &bucket, &format!("pre/{rel}")).await;
            assert!(got.as_deref() == Some(want.as_slice()), "pre/{rel} missing or different after the crash loop");
        }
        let open = open_uploads(&oc, &bucket).await;
        eprintln!(
            "crash loop: {kills}+ kills, {} files checked byte-identical, 0 lost, 0 failed, {open} multipart uploads left open",
            files.len()
        );
        assert_eq!(open, 0, "multipart uploads left open after the final clean stop");
    });
}

/// SIGTERM during a multipart upload: exits 0 within the grace, leaves the upload
/// recorded, and the next run resumes it with ListParts and completes it.
#[test]
fn sigterm_mid_multipart_resumes_after_restart() {
    let publisher = Store::rgw_publisher();
    let (bucket, oc) = rgw_bucket("term", false);
    let dir = TestDir::new();
    let port = free_port();
    let yaml = config_yaml(
        &dir,
        port,
        &server_yaml(
            "acme",
            &publisher,
            &bucket,
            "    checksum: md5\n    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n",
        ),
    )
    .replace("shutdown_grace: 5s", "shutdown_grace: 0s");
    let cfg = dir.config(&yaml);
    let big = data(60 * 1024 * 1024, 77);
    let mut d = Daemon::start(&dir, &cfg, port, &publisher);
    d.wait_ready();
    dir.drop_file("acme", "big.bin", &big);
    // A journal holding a real upload id (the intent is journaled before the create).
    let journal = || {
        files_below(&dir.spool().join(".outpost"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "upload"))
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| !t.contains("\"upload_id\":\"\"")))
    };
    assert!(
        wait_until(Duration::from_secs(60), journal),
        "no multipart journal; log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(300)); // a part or two on the wire
    let t = std::time::Instant::now();
    assert_eq!(d.stop(), Some(0), "log:\n{}", d.log_text());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t.elapsed()
    );
    if d.metric("outpost_files_uploaded_total{server=\"acme\"}")
        .is_none()
        && journal()
    {
        // Interrupted as intended: the upload is still recorded and open.
        assert_eq!(dir.claimed().len(), 1);
        rt().block_on(async { assert_eq!(open_uploads(&oc, &bucket).await, 1) });
    }
    let mut d = Daemon::start(&dir, &cfg, port, &publisher);
    d.wait_ready();
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()),
        "not delivered after restart; log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("resuming multipart upload"),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
    rt().block_on(async {
        assert!(get(&oc, &bucket, "pre/big.bin").await.as_deref() == Some(big.as_slice()));
        assert_eq!(open_uploads(&oc, &bucket).await, 0);
    });
}

/// A file rewritten while its multipart upload runs is never completed as is: the
/// upload is aborted and the file sent again, whole, as it now is.
#[test]
fn file_changed_during_multipart_is_not_published_as_is() {
    let store = Store::s3s();
    let client = store.client();
    let (bucket, dir, mut d) = acme_on(
        &store,
        None,
        "changed",
        "    multipart: { threshold: 5MiB, part_size: 5MiB, concurrency: 1 }\n",
    );
    let original = data(80 * 1024 * 1024, 1);
    dir.drop_file("acme", "grow.bin", &original);
    // Append to the claimed file while its parts are being sent.
    let claimed = || dir.claimed().into_iter().next();
    assert!(wait_until(Duration::from_secs(30), || claimed().is_some()
        && d.metric("outpost_uploads_in_flight{server=\"acme\"}")
            == Some(1.0)));
    std::thread::sleep(Duration::from_millis(200)); // its first parts are on the wire
    let path = claimed().expect("claimed");
    let extra = data(1000, 2);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open claim");
        f.write_all(&extra).expect("append");
    }
    assert!(
        wait_until(Duration::from_secs(120), || d
            .metric("outpost_files_uploaded_total{server=\"acme\"}")
            == Some(1.0)),
        "log:\n{}",
        d.log_text()
    );
    let mut want = original.clone();
    want.extend_from_slice(&extra);
    rt().block_on(async {
        let got = get(&client, &bucket, "pre/grow.bin").await.expect("object");
        assert_eq!(
            got.len(),
            want.len(),
            "published a mix of old and new content"
        );
        assert!(got == want);
    });
    let log = d.log_text();
    assert_eq!(
        d.metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}"),
        Some(1.0),
        "the change was not detected:\n{log}"
    );
    assert!(
        log.contains("changed during its upload"),
        "change not logged:\n{log}"
    );
    assert_eq!(d.stop(), Some(0));
}
