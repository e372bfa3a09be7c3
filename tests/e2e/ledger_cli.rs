//! The ledger's commands: `outpost deliveries` (table and JSON lines, filters, newest
//! first), `outpost audit` on radosgw (identical / missing / changed / not readable,
//! with and without `s3:ListBucket`) and the `requeued` rows of `outpost requeue`.
//! The ledger rows of deliveries are written here with the `outpost-ledger` crate, for
//! objects put with the bucket owner's client — as the daemon records them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_e2e::*;
use outpost_ledger::{Delivered, Failed, Ledger, Mode, Outcome, Row, now_millis, path_in};

/// Stores `rows` in the ledger of `state_dir` (created if need be).
fn write_rows(state_dir: &Path, rows: Vec<Row>) {
    let ledger = Ledger::open(&path_in(state_dir)).expect("open the ledger");
    for r in rows {
        ledger.record(r).wait().expect("row stored");
    }
    ledger.close();
}

/// A `delivered` row of acme for `bytes` at `key`, `ago_ms` before now.
fn delivered(bucket: &str, key: &str, bytes: &[u8], etag: Option<String>, ago_ms: i64) -> Row {
    let at = now_millis() - ago_ms;
    Row::Delivered(Delivered {
        server: "acme".into(),
        bucket: bucket.into(),
        key: key.into(),
        size: bytes.len() as u64,
        checksum_algorithm: "crc32c".into(),
        checksum: b64(&crc32c(bytes).to_be_bytes()),
        store_checksum: None,
        etag,
        version_id: None,
        relative_path: key.trim_start_matches("pre/").into(),
        dropped_at: at - 50,
        first_attempt: at - 20,
        delivered_at: at,
        attempts: 1,
        duration_ms: 20,
        mode: Mode::Single,
        outcome: Outcome::Written,
        instance: "test".into(),
        seq: fastrand::u64(..1 << 40),
        batch: None,
    })
}

/// CRC-32C (Castagnoli), as outpost computes it while reading a file.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Standard base64 with padding.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Puts `bytes` at `key` as the bucket owner; the ETag.
fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: &[u8]) -> Option<String> {
    rt().block_on(async {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bytes.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
            .e_tag()
            .map(str::to_owned)
    })
}

/// Deletes `key` as the bucket owner.
fn delete(client: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    rt().block_on(async {
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
    });
}

/// How the publisher may list the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    /// Not at all.
    No,
    /// `s3:ListBucket` on the bucket.
    Bucket,
    /// `s3:ListBucket` limited to the prefix by an `s3:prefix` condition.
    Prefix,
}

/// A radosgw bucket owned by the customer whose policy lets the publisher write and
/// read back under `pre/` (`s3:GetObject`), and list it as `list` says.
fn audit_bucket(tag: &str, list: List) -> (String, aws_sdk_s3::Client) {
    let bucket = bucket_name(tag);
    let oc = Store::rgw_owner().client();
    let publisher = serde_json::json!({"AWS": ["arn:aws:iam:::user/publisher"]});
    let mut statements = vec![serde_json::json!({
        "Effect": "Allow",
        "Principal": publisher,
        "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": [format!("arn:aws:s3:::{bucket}/pre/*")]
    })];
    if list != List::No {
        let mut st = serde_json::json!({
            "Effect": "Allow",
            "Principal": publisher,
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:aws:s3:::{bucket}")],
        });
        if list == List::Prefix {
            st["Condition"] = serde_json::json!({"StringLike": {"s3:prefix": "pre/*"}});
        }
        statements.push(st);
    }
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        put_policy(
            &oc,
            &bucket,
            &serde_json::json!({"Version": "2012-10-17", "Statement": statements}),
        )
        .await;
    });
    (bucket, oc)
}

/// acme on radosgw as the publisher, publishing to `bucket`, its ledger in the test's
/// folder; no daemon. The staged set-up and the ledger's folder.
fn staged(bucket: &str, owner: aws_sdk_s3::Client) -> (Staged, PathBuf) {
    let dir = TestDir::new();
    let state = dir.path().join("state");
    let staged = acme(&Store::rgw_publisher())
        .bucket(bucket)
        .checked_by(owner)
        .dir(dir)
        .top(&format!("state_dir: {}\n", state.display()))
        .stage();
    (staged, state)
}

/// The publisher's keys, for a command run by hand.
fn publisher_keys(s: &Staged) -> [(&str, &str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", s.launch.store.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s.launch.store.secret.as_str()),
    ]
}

#[test]
fn deliveries_lists_the_ledger_newest_first() {
    let (s, state) = staged("unused", Store::rgw_owner().client());
    let cfg = s.launch.cfg_str().to_owned();
    // No ledger yet: a clear one-line error, exit 1.
    let (code, out, err) = outpost(&["deliveries", "-c", &cfg], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("there is no delivery ledger") && err.lines().count() == 1,
        "{err}"
    );
    let b = &s.bucket;
    write_rows(
        &state,
        vec![
            delivered(b, "pre/old.csv", b"old", None, 3 * 86_400_000),
            delivered(b, "pre/a.csv", b"aaaa", Some("\"ea\"".into()), 30_000),
            delivered(b, "pre/b/1.csv", b"b1", Some("\"eb\"".into()), 20_000),
            Row::Failed(Failed {
                server: "acme".into(),
                bucket: b.clone(),
                key: "pre/bad.csv".into(),
                relative_path: "bad.csv".into(),
                reason: "exists".into(),
                record_path: "/spool/.failed/acme/.bad.csv.error.json".into(),
                at: now_millis() - 10_000,
                attempts: 1,
                instance: "test".into(),
            }),
            delivered(b, "pre/b/2.csv", b"b2", Some("\"eb2\"".into()), 1_000),
        ],
    );
    // JSON lines: every row of the last 24 h, newest first.
    let (code, out, err) = outpost(&["deliveries", "--json", "-c", &cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let keys: Vec<&str> = rows.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(
        keys,
        ["pre/b/2.csv", "pre/bad.csv", "pre/b/1.csv", "pre/a.csv"],
        "{out}"
    );
    assert_eq!(rows[0]["kind"], "delivered");
    assert_eq!(rows[0]["server"], "acme");
    assert_eq!(rows[0]["size"], 2);
    assert_eq!(rows[0]["etag"], "\"eb2\"");
    assert_eq!(rows[1]["kind"], "failed");
    assert_eq!(rows[1]["reason"], "exists");
    let times: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["delivered_at"].as_str().or(r["at"].as_str()))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // Further back, the older delivery too.
    let (_, out, _) = outpost(
        &["deliveries", "acme", "--since", "4d", "--json", "-c", &cfg],
        &[],
    );
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.contains("pre/old.csv")),
        "{out}"
    );
    let (_, all, _) = outpost(&["deliveries", "--since", "all", "--json", "-c", &cfg], &[]);
    assert_eq!(all, out);
    // A key prefix; failures only.
    let (_, out, _) = outpost(
        &["deliveries", "--key", "pre/b/", "--json", "-c", &cfg],
        &[],
    );
    let keys: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["key"].to_string())
        .collect();
    assert_eq!(keys, ["\"pre/b/2.csv\"", "\"pre/b/1.csv\""], "{out}");
    let (_, out, _) = outpost(&["deliveries", "--failed", "--json", "-c", &cfg], &[]);
    assert!(
        out.lines().count() == 1 && out.contains("\"kind\":\"failed\""),
        "{out}"
    );
    // The table for people: a header, then the rows newest first.
    let (code, out, err) = outpost(&["deliveries", "acme", "-c", &cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TIME (UTC)") && lines[0].contains("KEY"),
        "{out}"
    );
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[1].contains("pre/b/2.csv") && lines[1].contains("written"),
        "{out}"
    );
    assert!(lines[2].contains("failed: exists"), "{out}");
    // Nothing matches: said so, exit 0.
    let (code, out, _) = outpost(&["deliveries", "--key", "nope/", "-c", &cfg], &[]);
    assert_eq!((code, out.trim()), (0, "no rows match"));
    // An unknown server, a bad duration: exit 1.
    let (code, _, err) = outpost(&["deliveries", "zeta", "-c", &cfg], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"zeta\" is not configured"), "{err}");
    let (code, _, err) = outpost(&["deliveries", "--since", "yesterday", "-c", &cfg], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn audit_reports_exactly_the_deleted_and_the_overwritten_object() {
    let (bucket, oc) = audit_bucket("audit", List::Bucket);
    let (s, state) = staged(&bucket, oc.clone());
    let cfg = s.launch.cfg_str().to_owned();
    let env = publisher_keys(&s);
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("pre/f{i:02}.csv"), data(1000 + i, i as u64)))
        .collect();
    let mut rows = Vec::new();
    for (i, (key, bytes)) in files.iter().enumerate() {
        let etag = put(&oc, &bucket, key, bytes);
        rows.push(delivered(
            &bucket,
            key,
            bytes,
            etag,
            60_000 - i as i64 * 1000,
        ));
    }
    // An earlier delivery of f11 with other bytes: only the newest row of a key counts.
    rows.push(delivered(
        &bucket,
        "pre/f11.csv",
        b"older",
        Some("\"x\"".into()),
        120_000,
    ));
    // A delivery outside --since is not checked.
    rows.push(delivered(
        &bucket,
        "pre/gone-long-ago.csv",
        b"x",
        None,
        10 * 86_400_000,
    ));
    write_rows(&state, rows);

    let (code, out, err) = outpost(&["audit", "acme", "-c", &cfg], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("12 checked")
            && out.contains("12 identical, 0 missing, 0 changed, 0 not readable"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "only the summary: {out}");

    // The customer deletes one object and overwrites another (same size, other bytes).
    delete(&oc, &bucket, "pre/f03.csv");
    let other = data(1000 + 7, 99);
    put(&oc, &bucket, "pre/f07.csv", &other);
    let (code, out, err) = outpost(&["audit", "acme", "-c", &cfg], &env);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let missing: Vec<&&str> = lines.iter().filter(|l| l.starts_with("MISSING")).collect();
    let changed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("CHANGED")).collect();
    assert!(
        missing.len() == 1
            && missing[0].contains(&format!("s3://{bucket}/pre/f03.csv"))
            && missing[0].contains("404"),
        "{out}"
    );
    assert!(
        changed.len() == 1
            && changed[0].contains(&format!("s3://{bucket}/pre/f07.csv"))
            && changed[0].contains("ETag")
            && !changed[0].contains("size"),
        "{out}"
    );
    assert!(
        out.contains("12 checked")
            && out.contains("10 identical, 1 missing, 1 changed, 0 not readable"),
        "{out}"
    );
    // The publisher delivers f07 again (its newest row now holds the new bytes): only
    // the deleted object is left.
    let etag = rt().block_on(async {
        oc.head_object()
            .bucket(&bucket)
            .key("pre/f07.csv")
            .send()
            .await
            .expect("head")
            .e_tag()
            .map(str::to_owned)
    });
    write_rows(
        &state,
        vec![delivered(&bucket, "pre/f07.csv", &other, etag, 0)],
    );
    let (code, out, err) = outpost(&["audit", "acme", "-c", &cfg], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines().count() == 2
            && out.starts_with("MISSING")
            && out.contains("11 identical, 1 missing, 0 changed, 0 not readable"),
        "{out}"
    );
    // The server must be configured; the ledger must exist.
    let (code, _, err) = outpost(&["audit", "zeta", "-c", &cfg], &env);
    assert_eq!(code, 1, "{err}");
    std::fs::remove_file(path_in(&state)).expect("remove the ledger");
    let (code, _, err) = outpost(&["audit", "acme", "-c", &cfg], &env);
    assert!(code == 1 && err.contains("no delivery ledger"), "{err}");
}

#[test]
fn without_list_bucket_a_deleted_object_is_not_readable() {
    // No s3:ListBucket at all, and s3:ListBucket limited to the prefix by an s3:prefix
    // condition: HeadObject of a missing key carries no prefix, so radosgw answers 403
    // for it in both cases.
    for list in [List::No, List::Prefix] {
        let (bucket, oc) = audit_bucket("auditnl", list);
        let (s, state) = staged(&bucket, oc.clone());
        let cfg = s.launch.cfg_str().to_owned();
        let env = publisher_keys(&s);
        let mut rows = Vec::new();
        for (i, key) in ["pre/a.csv", "pre/b.csv"].iter().enumerate() {
            let bytes = data(500, i as u64);
            let etag = put(&oc, &bucket, key, &bytes);
            rows.push(delivered(&bucket, key, &bytes, etag, 5000));
        }
        write_rows(&state, rows);
        delete(&oc, &bucket, "pre/a.csv");
        let (code, out, err) = outpost(&["audit", "acme", "-c", &cfg], &env);
        assert_eq!(code, 1, "{list:?}: {out}{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with("NOT READABLE"))
            .unwrap_or_else(|| panic!("{list:?}: {out}"));
        assert!(
            line.contains("pre/a.csv") && line.contains("403"),
            "{list:?}: {out}"
        );
        assert!(
            out.contains("s3:ListBucket") && out.contains("`outpost policy acme`"),
            "{list:?}: {out}"
        );
        assert!(
            out.contains("2 checked")
                && out.contains("1 identical, 0 missing, 0 changed, 1 not readable"),
            "{list:?}: {out}"
        );
    }
}

#[test]
fn requeue_records_requeued_rows_in_an_existing_ledger() {
    // A dead endpoint: the files fail quickly and go to .failed/.
    let store = Store::moto();
    let dir = TestDir::new();
    let state = dir.path().join("state");
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&store)
        .bucket(&bucket_name("rq"))
        .via(&format!("http://127.0.0.1:{}", free_port()))
        .retry("50ms", "100ms", 2)
        .dir(dir)
        .top(&format!("state_dir: {}\n", state.display()))
        .start();
    let cfg = launch.cfg_str().to_owned();
    dir.drop_file("acme", "one.csv", b"1");
    dir.drop_file("acme", "sub/two.csv", b"2");
    assert!(
        wait_until(Duration::from_secs(60), || dir.failed().len() == 4),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
    // Without a ledger, requeue does not make one (made by another user, the daemon
    // could not write it): the same configuration with an empty state_dir.
    let empty = dir.path().join("empty-state");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        text.replace(&state.display().to_string(), &empty.display().to_string()),
    )
    .expect("write");
    let (code, out, err) = outpost(
        &[
            "requeue",
            "-c",
            other.to_str().expect("utf8"),
            "acme",
            "one.csv",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!path_in(&empty).exists());
    // With a ledger: one row per file, shown by deliveries.
    write_rows(&state, Vec::new());
    let (code, out, err) = outpost(&["requeue", "-c", &cfg, "acme", "--all"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 file(s) requeued") && err.is_empty(),
        "{out}{err}"
    );
    let (code, out, err) = outpost(&["deliveries", "--json", "-c", &cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let requeued: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|r| r["kind"] == "requeued")
        .collect();
    assert_eq!(requeued.len(), 1, "{out}");
    assert_eq!(requeued[0]["server"], "acme");
    assert_eq!(requeued[0]["relative_path"], "sub/two.csv");
}

/// The daemon's own rows: what it delivered is in `deliveries`, and `audit` finds
/// exactly the object the bucket's owner deleted and the one they rewrote.
#[test]
fn audit_of_the_daemons_own_deliveries_finds_the_deleted_and_the_rewritten() {
    let store = Store::s3s();
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        launch,
    } = acme(&store).tag("own-audit").start();
    for i in 0..4 {
        dir.drop_file("acme", &format!("day/f{i}.csv"), &data(1000 + i, i as u64));
    }
    d.wait_uploaded("acme", 4.0, 60);
    assert_eq!(d.stop(), Some(0));
    let cfg = launch.cfg_str().to_owned();
    // The daemon's identity (the store's keys in its environment).
    let keys = [
        ("AWS_ACCESS_KEY_ID", store.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", store.secret.as_str()),
    ];
    let (code, out, err) = outpost(&["deliveries", "-c", &cfg, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let delivered: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|r: &serde_json::Value| r["kind"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), 4, "{out}");
    let (code, out, err) = outpost(&["audit", "-c", &cfg, "acme"], &keys);
    assert_eq!(code, 0, "all identical: {out}{err}");
    rt().block_on(async {
        client
            .delete_object()
            .bucket(&bucket)
            .key("pre/day/f1.csv")
            .send()
            .await
            .expect("delete");
        client
            .put_object()
            .bucket(&bucket)
            .key("pre/day/f2.csv")
            .body(b"rewritten by the owner".to_vec().into())
            .send()
            .await
            .expect("rewrite");
    });
    let (code, out, err) = outpost(&["audit", "-c", &cfg, "acme"], &keys);
    assert_eq!(code, 1, "{out}{err}");
    let flagged: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("MISSING") || l.starts_with("CHANGED"))
        .collect();
    assert_eq!(flagged.len(), 2, "exactly two: {out}");
    assert!(
        flagged
            .iter()
            .any(|l| l.starts_with("MISSING") && l.contains("pre/day/f1.csv")),
        "{out}"
    );
    assert!(
        flagged
            .iter()
            .any(|l| l.starts_with("CHANGED") && l.contains("pre/day/f2.csv")),
        "{out}"
    );
    assert!(out.contains("4 checked"), "{out}");
}
