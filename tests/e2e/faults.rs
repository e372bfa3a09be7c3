//! Injected faults on every S3 call: with 20 % of the requests of every operation
//! failing in every way a network and a store can fail, 300 mixed files all arrive
//! byte-identical, retries show in the metrics, and no multipart upload is left open.

use std::time::Duration;

use outpost_e2e::proxy::FaultProxy;
use outpost_e2e::*;

#[test]
fn twenty_percent_faults_on_every_operation_lose_nothing() {
    // Listing allowed: outpost cleans an upload whose CreateMultipartUpload answer was
    // lost (docs/cross-account-setup.md).
    let (bucket, oc) = rgw_bucket("faults", true);
    let publisher = Store::rgw_publisher();
    let proxy = FaultProxy::start(&publisher.endpoint, 0.2, Duration::from_secs(4), 2026);
    let through = Store {
        endpoint: proxy.endpoint.clone(),
        ..publisher.clone()
    };
    let dir = TestDir::new();
    let port = free_port();
    let cfg = dir.config(&config_yaml(
        &dir,
        port,
        &server_yaml(
            "acme",
            &through,
            &bucket,
            "    checksum: md5\n    max_concurrent_uploads: 8\n    multipart: { threshold: 6MiB, part_size: 5MiB, concurrency: 2 }\n    timeouts: { connect: 2s, read: 2s }\n",
        )
        .replace("max_attempts: 50", "max_attempts: 100")
        .replace("max_backoff: 2s", "max_backoff: 500ms"),
    ));
    let mut d = Daemon::start(&dir, &cfg, port, &through);
    d.wait_ready();
    let mut files = Vec::new();
    for i in 0..300usize {
        let size = if i % 30 == 0 {
            11 * 1024 * 1024 + i
        } else {
            (i * 7919) % 200_000
        };
        let rel = format!("f{}/{i}.bin", i % 10);
        let bytes = data(size, i as u64);
        dir.drop_file("acme", &rel, &bytes);
        files.push((rel, bytes));
    }
    let done = wait_until(Duration::from_secs(900), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(files.len() as f64)
    });
    assert!(
        done,
        "not all files delivered; faults: {:?}",
        proxy.faults()
    );
    let retries = d
        .metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}")
        .unwrap_or(0.0);
    assert!(retries > 0.0, "no retry counted");
    assert_eq!(
        d.metric("outpost_server_blocked{server=\"acme\"}"),
        Some(0.0)
    );
    assert_eq!(d.stop(), Some(0));
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    assert!(dir.claimed().is_empty());
    eprintln!("faults injected: {:?}", proxy.counts.lock().expect("lock"));
    rt().block_on(async {
        for (rel, want) in &files {
            assert!(
                get(&oc, &bucket, &format!("pre/{rel}")).await.as_deref() == Some(want.as_slice()),
                "{rel}"
            );
        }
        assert_eq!(
            open_uploads(&oc, &bucket).await,
            0,
            "multipart uploads left open"
        );
    });
    eprintln!(
        "faults: {} files byte-identical; {retries} attempts retried; faults injected per operation: {:?}; by kind: {:?}",
        files.len(),
        proxy.faults(),
        proxy.counts.lock().expect("lock")
    );
}

/// CompleteMultipartUpload failing half the time in every way, including a 200 whose
/// body is an error (the upload is then *not* complete): every object arrives whole.
#[test]
fn complete_multipart_faults_including_200_with_an_error_body() {
    let store = Store::s3s();
    let client = store.client();
    let bucket = bucket_name("complete");
    rt().block_on(create_bucket(&client, &bucket));
    let proxy = FaultProxy::start_with(
        &store.endpoint,
        0.0,
        &[
            ("CompleteMultipartUpload", 0.5),
            ("CreateMultipartUpload", 0.2),
        ],
        Duration::from_secs(4),
        7,
    );
    let through = Store {
        endpoint: proxy.endpoint.clone(),
        ..store.clone()
    };
    let dir = TestDir::new();
    let port = free_port();
    let cfg = dir.config(&config_yaml(
        &dir,
        port,
        &server_yaml(
            "acme",
            &through,
            &bucket,
            "    multipart: { threshold: 5MiB, part_size: 5MiB }\n    timeouts: { connect: 2s, read: 2s }\n",
        )
        .replace("max_attempts: 50", "max_attempts: 100")
        .replace("max_backoff: 2s", "max_backoff: 300ms"),
    ));
    let mut d = Daemon::start(&dir, &cfg, port, &through);
    d.wait_ready();
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("m{i}.bin"),
                data(6 * 1024 * 1024 + i, 50 + i as u64),
            )
        })
        .collect();
    for (rel, bytes) in &files {
        dir.drop_file("acme", rel, bytes);
    }
    assert!(
        wait_until(Duration::from_secs(600), || d
            .metric("outpost_files_uploaded_total{server=\"acme\"}")
            == Some(12.0)),
        "faults: {:?}\nlog:\n{}",
        proxy.counts.lock().expect("lock"),
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
    let counts = proxy.counts.lock().expect("lock").clone();
    let ok200 = counts
        .get(&("CompleteMultipartUpload".into(), "Ok200Error".into()))
        .copied()
        .unwrap_or(0);
    eprintln!("complete faults: {counts:?}");
    if std::env::var("OUTPOST_TEST_DUMP").is_ok() {
        eprintln!("{}", d.log_text());
    }
    assert!(
        ok200 > 0,
        "the 200-with-error case was not exercised: {counts:?}"
    );
    assert!(
        !d.log_text().contains("refuses multipart"),
        "faults mistaken for a policy refusal"
    );
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
