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
    let publisher = Store::rgw_publisher();
    let proxy = FaultProxy::start(&publisher.endpoint, 0.2, Duration::from_secs(4), 2026);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: oc,
        ..
    } = acme(&publisher)
        .tag("faults")
        .rgw_bucket(true)
        .via(&proxy.endpoint)
        .retry("100ms", "500ms", 100)
        .extra("    checksum: md5\n    max_concurrent_uploads: 8\n    multipart: { threshold: 6MiB, part_size: 5MiB, concurrency: 2 }\n    timeouts: { connect: 2s, read: 2s }\n")
        .start();
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
    assert_all_delivered(&oc, &bucket, &files);
    assert_eq!(
        rt().block_on(open_uploads(&oc, &bucket)),
        0,
        "multipart uploads left open"
    );
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
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&store)
        .tag("complete")
        .via(&proxy.endpoint)
        .retry("100ms", "300ms", 100)
        .extra("    multipart: { threshold: 5MiB, part_size: 5MiB }\n    timeouts: { connect: 2s, read: 2s }\n")
        .start();
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
    assert_all_delivered(&client, &bucket, &files);
}

/// Issue 11.11: one flipped bit in the body of a single PUT and of an UploadPart is
/// refused by the store, outpost retries (and counts it), and the objects are
/// byte-identical; every PutObject and UploadPart carries its check. On radosgw with
/// Content-MD5 (`md5`) and with the signed payload alone (`signed_payload`, issue 15:
/// radosgw recomputes `x-amz-content-sha256`, and no Content-MD5 hashes every byte a
/// second time), and on s3s-fs with CRC32C.
#[test]
fn a_flipped_bit_is_refused_by_the_store_retried_and_counted() {
    for (store, checksum, header, not_sent) in [
        (Store::rgw_publisher(), "md5", "content-md5", None),
        (
            Store::rgw_publisher(),
            "signed_payload",
            "x-amz-content-sha256",
            Some("content-md5"),
        ),
        (Store::s3s(), "crc32c", "x-amz-checksum-crc32c", None),
    ] {
        let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 7);
        {
            let mut f = proxy.flip.lock().expect("lock");
            f.insert("PutObject".into(), 1);
            f.insert("UploadPart".into(), 1);
        }
        let mut setup = acme(&store).tag("flip").via(&proxy.endpoint).extra(&format!(
            "    checksum: {checksum}\n    multipart: {{ threshold: 8MiB, part_size: 5MiB, concurrency: 2 }}\n"
        ));
        if store.endpoint == Store::rgw_publisher().endpoint {
            setup = setup.rgw_bucket(false);
        }
        let Running {
            dir,
            daemon: mut d,
            bucket,
            client: c,
            ..
        } = setup.start();
        let small = data(2 * 1024 * 1024 + 3, 11);
        let large = data(12 * 1024 * 1024 + 5, 12);
        dir.drop_file("acme", "small.bin", &small);
        dir.drop_file("acme", "large.bin", &large);
        assert!(
            wait_until(Duration::from_secs(120), || d
                .metric("outpost_files_uploaded_total{server=\"acme\"}")
                == Some(2.0)),
            "{checksum}: log:\n{}",
            d.log_text()
        );
        let flipped = proxy.total(|_, what| what == "Flipped");
        assert_eq!(
            flipped,
            2,
            "{checksum}: {:?}",
            proxy.counts.lock().expect("lock")
        );
        let retried = d
            .metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}")
            .unwrap_or(0.0);
        assert!(retried >= 2.0, "{checksum}: {retried} retries counted");
        for (op, names) in proxy.heads.lock().expect("lock").iter() {
            if op == "PutObject" || op == "UploadPart" {
                assert!(
                    names.iter().any(|n| n == header),
                    "{checksum}: {op} without {header}: {names:?}"
                );
                assert!(
                    not_sent.is_none_or(|h| !names.iter().any(|n| n == h)),
                    "{checksum}: {op} with {not_sent:?}: {names:?}"
                );
            }
        }
        assert_delivered(&c, &bucket, "pre/small.bin", &small);
        assert_delivered(&c, &bucket, "pre/large.bin", &large);
        assert!(dir.failed().is_empty());
        assert_eq!(d.stop(), Some(0));
    }
}

/// The proxy of the environment (`HTTP_PROXY`, as with `HTTPS_PROXY` for TLS endpoints)
/// carries the daemon's requests: every server's client shares one HTTPS client, and that
/// client must keep the SDK's default of honouring it (an operator behind an egress
/// proxy relies on it).
#[test]
fn the_environments_proxy_carries_every_request() {
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 3);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client: c,
        ..
    } = acme(&store)
        .tag("egress")
        .env("HTTP_PROXY", &proxy.endpoint)
        .env("NO_PROXY", "")
        .start();
    let files: Vec<Vec<u8>> = (0..3u64).map(|i| data(10_000 + i as usize, i)).collect();
    for (i, f) in files.iter().enumerate() {
        dir.drop_file("acme", &format!("f{i}.bin"), f);
    }
    assert!(
        wait_until(Duration::from_secs(60), || d
            .metric("outpost_files_uploaded_total{server=\"acme\"}")
            == Some(3.0)),
        "log:\n{}",
        d.log_text()
    );
    for (i, f) in files.iter().enumerate() {
        assert_delivered(&c, &bucket, &format!("pre/f{i}.bin"), f);
    }
    let puts = proxy.total(|op, _| op == "PutObject");
    assert!(puts >= 3, "PutObject through the proxy: {puts}");
    assert_eq!(d.stop(), Some(0));
}
