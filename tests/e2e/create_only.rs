//! `overwrite: never` on moto (which honours `If-None-Match: *` on PutObject and
//! CompleteMultipartUpload): a key already holding another object is a conflict — the
//! file goes to `.failed/` with reason `exists` and the object is untouched, nothing of
//! a multipart upload stays open; free keys are created, single and multipart; and a
//! file sent again whose object is already there (its own earlier copy) counts as
//! delivered, never as a conflict.

use std::path::Path;
use std::time::Duration;

use outpost_e2e::*;

const NEVER: &str =
    "    overwrite: never\n    multipart: { threshold: 6MiB, part_size: 5MiB, concurrency: 2 }\n";

/// Puts `bytes` at `key` as the bucket owner would (no metadata).
fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: &[u8]) {
    rt().block_on(async {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bytes.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    });
}

/// The `x-amz-meta-outpost-file` token of `key`, if any.
fn token(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    rt().block_on(async {
        let out = client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
        out.metadata().and_then(|m| m.get("outpost-file").cloned())
    })
}

/// The failure record beside a file in `.failed/`.
fn record_of(failed: &Path) -> serde_json::Value {
    let name = failed.file_name().and_then(|n| n.to_str()).expect("name");
    let rec = failed.with_file_name(format!(".{name}.error.json"));
    let text = std::fs::read_to_string(&rec).unwrap_or_else(|e| panic!("{rec:?}: {e}"));
    serde_json::from_str(&text).expect("record is JSON")
}

#[test]
fn a_key_holding_another_object_is_a_conflict_and_stays_untouched() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&Store::moto())
        .tag("never-conflict")
        .extra(NEVER)
        .start();
    let theirs = b"the customer's own object".to_vec();
    let theirs_large = data(1 << 20, 77);
    put(&client, &bucket, "pre/taken.csv", &theirs);
    put(&client, &bucket, "pre/taken-large.bin", &theirs_large);
    dir.drop_file("acme", "taken.csv", b"our bytes, different");
    dir.drop_file("acme", "taken-large.bin", &data(11_000_000, 78));
    dir.drop_file("acme", "free.csv", b"a free key");
    let settled = wait_until(Duration::from_secs(90), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(1.0)
            && d.metric("outpost_files_failed_total{reason=\"exists\",server=\"acme\"}")
                == Some(2.0)
    });
    assert!(settled, "log:\n{}", d.log_text());
    // The objects already there are untouched; the free key was created.
    assert_delivered(&client, &bucket, "pre/taken.csv", &theirs);
    assert_delivered(&client, &bucket, "pre/taken-large.bin", &theirs_large);
    assert_delivered(&client, &bucket, "pre/free.csv", b"a free key");
    // Nothing of the multipart attempt stays open.
    assert_eq!(rt().block_on(open_uploads(&client, &bucket)), 0);
    let failed: Vec<_> = dir
        .failed()
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".error.json"))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in &failed {
        let rec = record_of(f);
        assert_eq!(rec["reason"], "exists", "{rec}");
        let why = rec["last_error"].as_str().unwrap_or_default();
        let size = if f.ends_with("taken.csv") {
            theirs.len()
        } else {
            theirs_large.len()
        };
        // The existing object's size, ETag and Last-Modified are in the record.
        assert!(why.contains(&format!("{size} bytes, ETag \"")), "{why}");
        assert!(why.contains("last modified 20"), "{why}");
    }
    assert!(dir.left_in_spool("acme").is_empty());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn single_and_multipart_are_created_with_their_token() {
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&Store::moto())
        .tag("never-create")
        .extra(NEVER)
        .start();
    let small = data(100_000, 1);
    let large = data(13_000_000, 2);
    dir.drop_file("acme", "a/small.csv", &small);
    dir.drop_file("acme", "a/large.bin", &large);
    let done = wait_until(Duration::from_secs(90), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(2.0)
    });
    assert!(done, "log:\n{}", d.log_text());
    assert_delivered(&client, &bucket, "pre/a/small.csv", &small);
    assert_delivered(&client, &bucket, "pre/a/large.bin", &large);
    for key in ["pre/a/small.csv", "pre/a/large.bin"] {
        let t = token(&client, &bucket, key).unwrap_or_else(|| panic!("{key} has no token"));
        assert_eq!(t.len(), 32, "{t}");
    }
    assert_ne!(
        token(&client, &bucket, "pre/a/small.csv"),
        token(&client, &bucket, "pre/a/large.bin")
    );
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    assert_eq!(rt().block_on(open_uploads(&client, &bucket)), 0);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_file_sent_again_over_its_own_object_counts_as_delivered() {
    // The window between the store's acknowledgement and the spool's finish, made
    // deterministic: each file is archived once delivered, then put back into the spool
    // (a rename keeps its mtime, so it is the same version of the same file). Sent
    // again, its write answers 412 and the object there is its own: delivered, not a
    // conflict, not written twice.
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&Store::moto())
        .tag("never-again")
        .extra(&format!("{NEVER}    after_upload: archive\n"))
        .start();
    let small = data(50_000, 3);
    let large = data(12_000_000, 4);
    dir.drop_file("acme", "small.csv", &small);
    dir.drop_file("acme", "large.bin", &large);
    let uploaded = |n: f64| {
        wait_until(Duration::from_secs(90), || {
            d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(n)
        })
    };
    assert!(uploaded(2.0), "log:\n{}", d.log_text());
    let tokens: Vec<_> = ["pre/small.csv", "pre/large.bin"]
        .iter()
        .map(|k| token(&client, &bucket, k))
        .collect();
    let archive = dir.spool().join(".archive/acme");
    for name in ["small.csv", "large.bin"] {
        let from = archive.join(name);
        assert!(from.exists(), "{from:?} not archived");
        std::fs::rename(&from, dir.spool().join("acme").join(name)).expect("put back");
    }
    assert!(uploaded(4.0), "log:\n{}", d.log_text());
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    assert_delivered(&client, &bucket, "pre/small.csv", &small);
    assert_delivered(&client, &bucket, "pre/large.bin", &large);
    let again: Vec<_> = ["pre/small.csv", "pre/large.bin"]
        .iter()
        .map(|k| token(&client, &bucket, k))
        .collect();
    assert_eq!(tokens, again);
    assert_eq!(rt().block_on(open_uploads(&client, &bucket)), 0);
    let log = d.log_text();
    assert!(log.contains("counted as delivered"), "{log}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn kill9_loop_with_overwrite_never_delivers_every_file_and_fails_none() {
    // A kill between the store's acknowledgement and the spool's finish sends the file
    // again: its write answers 412 over its own object, which counts as delivered.
    let kills: usize = std::env::var("OUTPOST_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(10, |n: usize| n.min(10));
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        launch,
    } = acme(&Store::moto()).tag("never-crash").extra(NEVER).start();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(13);
    for k in 0..kills {
        for i in 0..6 {
            let rel = format!("batch{k}/f{i}.csv");
            let bytes = data(rng.usize(0..200_000), (k * 100 + i) as u64);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        if k % 3 == 0 {
            let rel = format!("batch{k}/large.bin");
            let bytes = data(rng.usize(11_000_000..16_000_000), k as u64 + 9000);
            dir.drop_file("acme", &rel, &bytes);
            files.push((rel, bytes));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(50..1200)));
        d.kill9();
        d = launch.spawn(&dir);
        d.wait_ready();
    }
    let done = wait_until(Duration::from_secs(300), || {
        dir.left_in_spool("acme").is_empty() && dir.claimed().is_empty()
    });
    assert!(done, "spool did not drain; log:\n{}", d.log_text());
    assert_eq!(d.stop(), Some(0));
    let records: Vec<String> = dir
        .failed()
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".error.json"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        dir.failed().is_empty(),
        "in .failed: {:?} {records:?}; log:\n{}",
        dir.failed(),
        d.log_text()
    );
    assert_all_delivered(&client, &bucket, &files);
}
