//! Files dropped in the spool arrive byte-identical at `<prefix><relpath>`, with the
//! bucket owner holding FULL_CONTROL, on each of the three servers.

use std::time::Duration;

use outpost_e2e::*;

/// 32 files: empty, tiny, mid-size, nested, names with spaces, `%`, `+` and unicode.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    let sizes = [
        0usize,
        1,
        17,
        100,
        1000,
        4096,
        65_536,
        100_000,
        1 << 20,
        2_000_000,
    ];
    let dirs = ["", "a/", "a/b/", "c/d/e/"];
    let mut out = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        for (j, d) in dirs.iter().enumerate().take(3) {
            out.push((
                format!("{d}file-{i}-{j}.csv"),
                data(*size, (i * 10 + j) as u64),
            ));
        }
    }
    out.push(("c/d/e/with space.csv".into(), data(300, 1)));
    out.push(("per%cent+plus.csv".into(), data(301, 2)));
    out.push(("données-é.csv".into(), data(302, 3)));
    out
}

/// Runs a daemon for `server_yaml`, drops `files` and waits until the spool is empty;
/// then checks every object byte for byte with `check`.
fn publish(
    store: &Store,
    check: &Store,
    bucket: &str,
    extra: &str,
    files: &[(String, Vec<u8>)],
    envs: &[(&str, &str)],
) -> TestDir {
    let setup = envs.iter().fold(
        acme(store)
            .bucket(bucket)
            .checked_by(check.client())
            .extra(extra),
        |s, (k, v)| s.env(k, v),
    );
    let Running {
        dir,
        daemon: mut d,
        client,
        ..
    } = setup.start();
    for (rel, bytes) in files {
        dir.drop_file("acme", rel, bytes);
    }
    let n = files.len() as f64;
    let done = wait_until(Duration::from_secs(300), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(n)
    });
    assert!(done, "not all files uploaded; log:\n{}", d.log_text());
    assert_eq!(d.metric("outpost_queue_files{server=\"acme\"}"), Some(0.0));
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    assert_eq!(
        d.metric("outpost_bytes_uploaded_total{server=\"acme\"}"),
        Some(bytes as f64)
    );
    assert_eq!(d.stop(), Some(0), "clean stop exits 0");
    // stderr is a file here, as under systemd: plain text, no colour codes.
    assert!(!d.log_text().contains('\x1b'), "escape codes in the log");
    assert!(
        dir.left_in_spool("acme").is_empty(),
        "spool not empty: {:?}",
        dir.left_in_spool("acme")
    );
    assert!(dir.claimed().is_empty());
    assert!(dir.failed().is_empty());
    assert_all_delivered(&client, bucket, files);
    dir
}

/// The owner's ACL view of `key`: (owner id, grants as (grantee id, permission)).
async fn acl(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<(String, String)> {
    let a = client
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObjectAcl {key}: {e:?}"));
    a.grants()
        .iter()
        .map(|g| {
            (
                g.grantee().and_then(|x| x.id()).unwrap_or("").to_owned(),
                g.permission()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn publisher_statement(bucket: &str, condition: bool) -> serde_json::Value {
    let mut put = serde_json::json!({
        "Sid": "PublisherPut",
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
        "Action": ["s3:PutObject"],
        "Resource": [format!("arn:aws:s3:::{bucket}/pre/*")],
    });
    if condition {
        put["Condition"] =
            serde_json::json!({"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}});
    } else {
        put["Action"] = serde_json::json!([
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts"
        ]);
    }
    serde_json::json!({"Version": "2012-10-17", "Statement": [put]})
}

#[test]
fn radosgw_cross_account_single_puts_owner_gets_full_control() {
    let owner = Store::rgw_owner();
    let bucket = bucket_name("rgw");
    let oc = owner.client();
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        // The customer's policy admits PutObject only with the ACL.
        put_policy(&oc, &bucket, &publisher_statement(&bucket, true)).await;
    });
    let files = sample_files();
    assert!(files.len() >= 30);
    publish(
        &Store::rgw_publisher(),
        &owner,
        &bucket,
        "    checksum: md5\n",
        &files,
        &[],
    );
    rt().block_on(async {
        for (rel, _) in &files {
            let grants = acl(&oc, &bucket, &format!("pre/{rel}")).await;
            assert!(
                grants.contains(&("owner".into(), "FULL_CONTROL".into())),
                "pre/{rel}: owner lacks FULL_CONTROL: {grants:?}"
            );
        }
    });
}

#[test]
fn radosgw_multipart_arrives_whole_with_owner_control() {
    let owner = Store::rgw_owner();
    let bucket = bucket_name("rgwmp");
    let oc = owner.client();
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        // radosgw refuses multipart under an s3:x-amz-acl condition: unconditional allow.
        put_policy(&oc, &bucket, &publisher_statement(&bucket, false)).await;
    });
    let files = vec![
        ("big/one.bin".to_owned(), data(23 * 1024 * 1024 + 7, 42)),
        ("small.csv".to_owned(), data(1000, 43)),
    ];
    publish(
        &Store::rgw_publisher(),
        &owner,
        &bucket,
        "    checksum: md5\n    multipart: { threshold: 8MiB, part_size: 5MiB, concurrency: 3 }\n",
        &files,
        &[],
    );
    rt().block_on(async {
        let grants = acl(&oc, &bucket, "pre/big/one.bin").await;
        assert!(
            grants.contains(&("owner".into(), "FULL_CONTROL".into())),
            "{grants:?}"
        );
        assert_eq!(
            open_uploads(&oc, &bucket).await,
            0,
            "incomplete multipart uploads left"
        );
    });
}

/// A radosgw bucket the publisher may write to (multipart included), with the owner's
/// store and the publisher's store on radosgw's TLS endpoint.
fn tls_bucket(tag: &str) -> (String, Store, Store) {
    let owner = Store::rgw_owner();
    let bucket = bucket_name(tag);
    let oc = owner.client();
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        put_policy(&oc, &bucket, &publisher_statement(&bucket, false)).await;
    });
    let publisher = Store {
        endpoint: env("OUTPOST_TEST_RGW_TLS_ENDPOINT"),
        ..Store::rgw_publisher()
    };
    (bucket, owner, publisher)
}

#[test]
fn radosgw_over_tls_single_and_multipart_arrive_whole() {
    // Over TLS `md5` sends Content-MD5 with the payload unsigned; `signed_payload` signs
    // the payload (radosgw recomputes its SHA-256) and sends no header. The store's
    // certificate is trusted through SSL_CERT_FILE, as an operator would for a private CA.
    for checksum in ["md5", "signed_payload"] {
        let (bucket, owner, publisher) = tls_bucket("rgwtls");
        let oc = owner.client();
        assert!(publisher.endpoint.starts_with("https://"));
        let files = vec![
            ("tls/big.bin".to_owned(), data(13 * 1024 * 1024 + 5, 44)),
            ("tls/small.csv".to_owned(), data(70_000, 45)),
            ("tls/empty.csv".to_owned(), Vec::new()),
        ];
        let ca = env("OUTPOST_TEST_RGW_CA");
        publish(
            &publisher,
            &owner,
            &bucket,
            &format!(
                "    checksum: {checksum}\n    multipart: {{ threshold: 8MiB, part_size: 5MiB, concurrency: 3 }}\n"
            ),
            &files,
            &[("SSL_CERT_FILE", &ca)],
        );
        rt().block_on(async {
            assert_eq!(open_uploads(&oc, &bucket).await, 0, "{checksum}");
        });
    }
}

#[test]
fn s3s_fs_publishes_files_and_multipart_with_crc32c() {
    let store = Store::s3s();
    let bucket = bucket_name("s3s");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let mut files = sample_files();
    files.push(("mp/large.bin".into(), data(12 * 1024 * 1024 + 3, 9)));
    publish(
        &store,
        &store,
        &bucket,
        "    checksum: crc32c\n    multipart: { threshold: 8MiB, part_size: 5MiB }\n",
        &files,
        &[],
    );
}

#[test]
fn moto_publishes_files_and_multipart() {
    let store = Store::moto();
    let bucket = bucket_name("moto");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let mut files = sample_files();
    files.push(("mp/large.bin".into(), data(11 * 1024 * 1024, 10)));
    publish(
        &store,
        &store,
        &bucket,
        "    checksum: crc64nvme\n    multipart: { threshold: 8MiB, part_size: 5MiB }\n",
        &files,
        &[],
    );
}

#[test]
fn an_untrusted_certificate_blocks_the_server_and_trusting_the_ca_delivers() {
    let (bucket, owner, publisher) = tls_bucket("rgwca");
    let Staged {
        dir,
        client: oc,
        launch,
        ..
    } = acme(&publisher)
        .bucket(&bucket)
        .checked_by(owner.client())
        .extra("    checksum: md5\n")
        .stage();
    // The private CA is not trusted (no SSL_CERT_FILE): `verify` says so and how to fix.
    let keys = [
        ("AWS_ACCESS_KEY_ID", publisher.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", publisher.secret.as_str()),
    ];
    let cfg_s = launch.cfg_str();
    let (code, out, _) = outpost(&["verify", "-c", cfg_s], &keys);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not trusted") && out.contains("SSL_CERT_FILE"),
        "{out}"
    );
    assert!(!out.contains("bucket policy"), "{out}");
    // The daemon blocks the server: the file stays pending, nothing goes to .failed/.
    let mut d = launch.start(&dir);
    dir.drop_file("acme", "held.csv", &data(5000, 7));
    let blocked = wait_until(Duration::from_secs(60), || {
        d.metric("outpost_server_blocked{server=\"acme\"}") == Some(1.0)
    });
    assert!(blocked, "not blocked; log:\n{}", d.log_text());
    assert!(d.log_text().contains("SSL_CERT_FILE"), "{}", d.log_text());
    assert_eq!(d.stop(), Some(0));
    assert!(dir.failed().is_empty());
    // Trusting the CA (as a systemd drop-in would) delivers it.
    let ca = env("OUTPOST_TEST_RGW_CA");
    let d = launch.with_env("SSL_CERT_FILE", &ca).start(&dir);
    let done = wait_until(Duration::from_secs(60), || {
        d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(1.0)
    });
    assert!(done, "not delivered; log:\n{}", d.log_text());
    assert_delivered(&oc, &bucket, "pre/held.csv", &data(5000, 7));
}
