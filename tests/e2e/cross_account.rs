//! Writing into buckets other people own: blocked servers that heal by themselves once
//! the customer applies the policy `outpost policy` prints, the single-PUT fallback,
//! `outpost verify`, assume-role, encryption and storage class, and isolation.

use std::time::{Duration, Instant};

use outpost_e2e::*;

/// The publisher's account as the configs below declare it; radosgw names the
/// publisher `arn:aws:iam:::user/publisher` instead.
const ACCOUNT: &str = "000000000000";

/// acme as the publisher on radosgw, to the owner's `bucket`, checked as the owner.
fn rgw_acme(bucket: &str, extra: &str) -> Setup {
    acme(&Store::rgw_publisher())
        .bucket(bucket)
        .checked_by(Store::rgw_owner().client())
        .top(&format!("publisher_account_id: \"{ACCOUNT}\"\n"))
        .extra(&format!("    checksum: md5\n{extra}"))
}

/// `outpost policy acme`, bucket-policy part, principal translated to radosgw's form.
fn generated_bucket_policy(cfg: &std::path::Path) -> serde_json::Value {
    let (code, out, err) = outpost(&["policy", "-c", cfg.to_str().expect("utf8"), "acme"], &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("policy json");
    let doc = v["parts"][0]["document"].to_string().replace(
        &format!("arn:aws:iam::{ACCOUNT}:root"),
        "arn:aws:iam:::user/publisher",
    );
    serde_json::from_str(&doc).expect("json")
}

#[test]
fn radosgw_blocked_server_heals_when_the_customer_applies_the_generated_policy() {
    let owner = Store::rgw_owner();
    let oc = owner.client();
    let bucket = bucket_name("heal");
    rt().block_on(create_bucket(&oc, &bucket)); // no bucket policy: the publisher is refused
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = rgw_acme(
        &bucket,
        "    multipart: { threshold: 8MiB, part_size: 5MiB }\n",
    )
    .start();
    let cfg = &launch.cfg;
    let mut files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("f{i}.csv"), data(1000 + i, i as u64)))
        .collect();
    files.push(("big/mp.bin".into(), data(20 * 1024 * 1024, 99)));
    for (rel, bytes) in &files {
        dir.drop_file("acme", rel, bytes);
    }
    assert!(
        wait_until(Duration::from_secs(60), || d
            .metric("outpost_server_blocked{server=\"acme\"}")
            == Some(1.0)),
        "not blocked; log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(3)); // a few probes
    assert!(dir.failed().is_empty(), "blocked files went to .failed");
    assert_eq!(dir.claimed().len(), files.len(), "files not all pending");
    assert_eq!(
        d.metric("outpost_files_uploaded_total{server=\"acme\"}"),
        Some(0.0)
    );
    let (code, out, _) = outpost(
        &["status", "-c", cfg.to_str().expect("utf8"), "--json"],
        &[],
    );
    assert_eq!(code, 0);
    let st: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(st[0]["blocked"], true, "{st}");
    let why = st[0]["blocked_reason"].as_str().unwrap_or("");
    assert!(
        why.contains("AccessDenied") && why.contains("outpost policy acme"),
        "{why}"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("server blocked").count(),
        1,
        "one ERROR line per state change:\n{log}"
    );
    // The customer applies the generated policy; delivery resumes without a restart.
    let policy = generated_bucket_policy(cfg);
    rt().block_on(put_policy(&oc, &bucket, &policy));
    let fixed = Instant::now();
    assert!(wait_until(Duration::from_secs(60), || d
        .metric("outpost_files_uploaded_total{server=\"acme\"}")
        .is_some_and(|n| n >= 1.0)));
    let first = fixed.elapsed();
    d.wait_uploaded("acme", files.len() as f64, 120);
    eprintln!("policy fix to first delivery: {:.2} s", first.as_secs_f64());
    assert_eq!(
        d.metric("outpost_server_blocked{server=\"acme\"}"),
        Some(0.0)
    );
    assert!(d.log_text().contains("server unblocked"));
    assert_eq!(d.stop(), Some(0));
    assert_all_delivered(&oc, &bucket, &files);
    rt().block_on(async {
        for (rel, _) in &files {
            let key = format!("pre/{rel}");
            let acl = oc
                .get_object_acl()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .expect("acl");
            assert!(
                acl.grants()
                    .iter()
                    .any(|g| g.grantee().and_then(|x| x.id()) == Some("owner")
                        && g.permission().map(|p| p.as_str()) == Some("FULL_CONTROL"))
            );
        }
        assert_eq!(open_uploads(&oc, &bucket).await, 0);
    });
}

#[test]
fn radosgw_single_put_policy_gets_large_files_by_fallback() {
    let owner = Store::rgw_owner();
    let oc = owner.client();
    let bucket = bucket_name("fallback");
    rt().block_on(async {
        create_bucket(&oc, &bucket).await;
        // Written for single PUTs: PutObject only with the ACL (radosgw then refuses
        // CreateMultipartUpload).
        put_policy(
            &oc,
            &bucket,
            &serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam:::user/publisher"]},
                "Action": ["s3:PutObject"],
                "Resource": [format!("arn:aws:s3:::{bucket}/*")],
                "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}
            }]}),
        )
        .await;
    });
    let Running {
        dir, daemon: mut d, ..
    } = rgw_acme(
        &bucket,
        "    multipart: { threshold: 8MiB, part_size: 5MiB }\n",
    )
    .start();
    let a = data(30 * 1024 * 1024, 1);
    let b = data(12 * 1024 * 1024, 2);
    dir.drop_file("acme", "a.bin", &a);
    d.wait_uploaded("acme", 1.0, 120);
    dir.drop_file("acme", "b.bin", &b);
    d.wait_uploaded("acme", 2.0, 120);
    let log = d.log_text();
    assert_eq!(
        log.matches("refuses multipart uploads but accepts single PUTs")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(d.stop(), Some(0));
    assert_delivered(&oc, &bucket, "pre/a.bin", &a);
    assert_delivered(&oc, &bucket, "pre/b.bin", &b);
    assert_eq!(rt().block_on(open_uploads(&oc, &bucket)), 0);
}

#[test]
fn radosgw_verify_says_ok_or_the_failing_step_and_the_fix() {
    let owner = Store::rgw_owner();
    let oc = owner.client();
    let good = bucket_name("vgood");
    let bare = bucket_name("vbare");
    let missing = bucket_name("vmissing");
    rt().block_on(async {
        create_bucket(&oc, &good).await;
        create_bucket(&oc, &bare).await;
    });
    let dir = TestDir::new();
    let port = free_port();
    let publisher = Store::rgw_publisher();
    let servers = [("good", &good), ("bare", &bare), ("missing", &missing)]
        .iter()
        .map(|(n, b)| server_yaml(n, &publisher, b, "    checksum: md5\n"))
        .collect::<String>();
    let cfg = dir.config(&format!(
        "publisher_account_id: \"{ACCOUNT}\"\n{}",
        config_yaml(&dir, port, &servers)
    ));
    let cfg_s = cfg.to_str().expect("utf8");
    let (_, out, err) = outpost(&["policy", "-c", cfg_s, "good"], &[]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    let doc: serde_json::Value =
        serde_json::from_str(&v["parts"][0]["document"].to_string().replace(
            &format!("arn:aws:iam::{ACCOUNT}:root"),
            "arn:aws:iam:::user/publisher",
        ))
        .expect("json");
    rt().block_on(put_policy(&oc, &good, &doc));
    let envs = [
        ("AWS_ACCESS_KEY_ID", publisher.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", publisher.secret.as_str()),
    ];
    let (code, out, err) = outpost(&["verify", "-c", cfg_s, "good"], &envs);
    assert_eq!(code, 0, "{out}{err}");
    for step in [
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "AbortMultipartUpload",
    ] {
        assert!(
            out.contains(&format!("{step} s3://{good}/pre/.outpost-verify: OK")),
            "{out}"
        );
    }
    rt().block_on(async {
        assert!(get(&oc, &good, "pre/.outpost-verify").await.is_some());
        assert_eq!(open_uploads(&oc, &good).await, 0);
    });
    let (code, out, _) = outpost(&["verify", "-c", cfg_s, "bare"], &envs);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PutObject") && out.contains("FAILED") && out.contains("AccessDenied"),
        "{out}"
    );
    assert!(
        out.contains("fix: ") && out.contains("outpost policy bare"),
        "{out}"
    );
    let (code, out, _) = outpost(&["verify", "-c", cfg_s, "missing"], &envs);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("NoSuchBucket") && out.contains("does not exist"),
        "{out}"
    );
    // All three at once: exit 1, the good one still OK.
    let (code, out, _) = outpost(&["verify", "-c", cfg_s], &envs);
    assert_eq!(code, 1);
    assert!(
        out.contains("good: OK") && out.contains("bare: FAILED") && out.contains("missing: FAILED"),
        "{out}"
    );
}

/// moto with IAM enforced: an admin creates users, roles and policies.
pub struct Iam {
    pub endpoint: String,
    pub admin: Store,
}

impl Iam {
    pub fn new() -> Iam {
        let endpoint = env("OUTPOST_TEST_MOTOAUTH_ENDPOINT");
        Iam {
            admin: Store {
                endpoint: endpoint.clone(),
                key: env("OUTPOST_TEST_MOTOAUTH_ADMIN_KEY"),
                secret: env("OUTPOST_TEST_MOTOAUTH_ADMIN_SECRET"),
            },
            endpoint,
        }
    }
    /// Runs a Python snippet with boto3 as the admin; returns its stdout.
    pub fn py(&self, code: &str) -> String {
        let prelude = format!(
            "import boto3, json\nkw=dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='{}', aws_secret_access_key='{}')\niam=boto3.client('iam', **kw)\ns3=boto3.client('s3', **kw)\n",
            self.endpoint, self.admin.key, self.admin.secret
        );
        let out = std::process::Command::new(env("OUTPOST_TEST_PYTHON"))
            .args(["-c", &format!("{prelude}{code}")])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
    /// Makes `bucket` and a role `role` that may write to it, which `user` may assume
    /// with the external id `ext-{tag}`; returns the role's ARN. moto matches the trust
    /// policy's principal against the caller's own ARN, and checks the sts:ExternalId
    /// condition.
    pub fn writer_role(&self, bucket: &str, user: &str, role: &str, tag: u32) -> String {
        self.py(&format!(
            "s3.create_bucket(Bucket='{bucket}')\n\
             trust={{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Principal':{{'AWS':'arn:aws:iam::123456789012:user/{user}'}},'Action':'sts:AssumeRole','Condition':{{'StringEquals':{{'sts:ExternalId':'ext-{tag}'}}}}}}]}}\n\
             r=iam.create_role(RoleName='{role}', AssumeRolePolicyDocument=json.dumps(trust))\n\
             iam.put_role_policy(RoleName='{role}', PolicyName='w', PolicyDocument=json.dumps({{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Action':['s3:PutObject','s3:AbortMultipartUpload','s3:ListMultipartUploadParts'],'Resource':'*'}}]}}))\n\
             print(r['Role']['Arn'])"
        ))
    }
    /// A user with keys and, optionally, an inline policy allowing `actions`.
    pub fn user(&self, name: &str, actions: &[&str]) -> Store {
        let policy = if actions.is_empty() {
            String::new()
        } else {
            format!(
                "iam.put_user_policy(UserName='{name}', PolicyName='p', PolicyDocument=json.dumps({{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Action':{actions:?},'Resource':'*'}}]}}))\n"
            )
        };
        let out = self.py(&format!(
            "iam.create_user(UserName='{name}')\n{policy}k=iam.create_access_key(UserName='{name}')['AccessKey']\nprint(k['AccessKeyId'], k['SecretAccessKey'])"
        ));
        let mut it = out.split_whitespace();
        Store {
            endpoint: self.endpoint.clone(),
            key: it.next().expect("key").into(),
            secret: it.next().expect("secret").into(),
        }
    }
}

#[test]
fn moto_assume_role_with_external_id_uploads() {
    let iam = Iam::new();
    let tag = fastrand::u32(..);
    let bucket = bucket_name("role");
    let role = format!("writer{tag}");
    let user = format!("pub{tag}");
    let publisher = iam.user(&user, &["sts:AssumeRole"]);
    let arn = iam.writer_role(&bucket, &user, &role, tag);
    let Running {
        dir,
        daemon: mut d,
        client: c,
        ..
    } = acme(&publisher)
        .bucket(&bucket)
        .checked_by(iam.admin.client())
        .extra(&format!("    credentials: {{ mode: assume_role, role_arn: \"{arn}\", external_id: \"ext-{tag}\" }}\n    multipart: {{ threshold: 8MiB, part_size: 5MiB }}\n"))
        .env("AWS_ENDPOINT_URL_STS", &iam.endpoint)
        .start();
    dir.drop_file("acme", "r.csv", b"via the customer's role");
    dir.drop_file("acme", "r.bin", &data(9 * 1024 * 1024, 3));
    d.wait_uploaded("acme", 2.0, 60);
    assert_eq!(d.stop(), Some(0));
    assert_delivered(&c, &bucket, "pre/r.csv", b"via the customer's role");
}

#[test]
fn moto_user_without_permission_blocks_then_resumes_when_granted() {
    let iam = Iam::new();
    let tag = fastrand::u32(..);
    let bucket = bucket_name("grant");
    iam.py(&format!("s3.create_bucket(Bucket='{bucket}')"));
    let user = format!("nope{tag}");
    let publisher = iam.user(&user, &[]);
    let Running {
        dir, daemon: mut d, ..
    } = acme(&publisher).bucket(&bucket).start();
    dir.drop_file("acme", "x.csv", b"held back");
    assert!(
        wait_until(Duration::from_secs(60), || d
            .metric("outpost_server_blocked{server=\"acme\"}")
            == Some(1.0)),
        "log:\n{}",
        d.log_text()
    );
    assert!(dir.failed().is_empty());
    iam.py(&format!(
        "iam.put_user_policy(UserName='{user}', PolicyName='w', PolicyDocument=json.dumps({{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Action':['s3:PutObject'],'Resource':'*'}}]}}))"
    ));
    d.wait_uploaded("acme", 1.0, 60);
    assert_eq!(
        d.metric("outpost_server_blocked{server=\"acme\"}"),
        Some(0.0)
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn moto_sse_and_storage_class_on_single_and_multipart() {
    for (tag, sse, want) in [
        (
            "kms",
            "{ mode: \"aws:kms\", kms_key_id: \"arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555\" }",
            "aws:kms",
        ),
        ("aes", "{ mode: AES256 }", "AES256"),
    ] {
        let Running {
            dir,
            daemon: mut d,
            bucket,
            client,
            ..
        } = acme(&Store::moto())
            .tag(&format!("sse{tag}"))
            .extra(&format!(
                "    sse: {sse}\n    storage_class: STANDARD_IA\n    multipart: {{ threshold: 8MiB, part_size: 5MiB }}\n"
            ))
            .start();
        dir.drop_file("acme", "one.csv", b"small");
        dir.drop_file("acme", "two.bin", &data(11 * 1024 * 1024, 4));
        d.wait_uploaded("acme", 2.0, 60);
        assert_eq!(d.stop(), Some(0));
        rt().block_on(async {
            for key in ["pre/one.csv", "pre/two.bin"] {
                let h = client
                    .head_object()
                    .bucket(&bucket)
                    .key(key)
                    .send()
                    .await
                    .expect("head");
                assert_eq!(
                    h.server_side_encryption().map(|s| s.as_str()),
                    Some(want),
                    "{key}"
                );
                assert_eq!(
                    h.storage_class().map(|s| s.as_str()),
                    Some("STANDARD_IA"),
                    "{key}"
                );
                if want == "aws:kms" {
                    assert!(
                        h.ssekms_key_id()
                            .is_some_and(|k| k.contains("11111111-2222")),
                        "{key}"
                    );
                }
            }
        });
    }
}

/// Accepts connections and never answers.
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", l.local_addr().expect("addr"));
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).expect("nonblocking");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(300) {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            if held.len() > 1000 {
                break;
            }
        }
    });
    (addr, h)
}

fn drain_time(with_black_hole: bool) -> Duration {
    let mut setup = acme(&Store::s3s())
        .tag("iso")
        .name("healthy")
        .extra("    max_concurrent_uploads: 2\n")
        .top("max_concurrent_uploads: 4\n");
    if with_black_hole {
        let (hole, _h) = black_hole();
        setup = setup.server_text(&format!(
            "  stuck:\n    bucket: nowhere\n    endpoint: {hole}\n    path_style: true\n    max_concurrent_uploads: 2\n    timeouts: {{ connect: 2s, read: 30s }}\n"
        ));
    }
    let Running {
        dir, daemon: mut d, ..
    } = setup.start();
    if with_black_hole {
        for i in 0..50 {
            dir.drop_file("stuck", &format!("s{i}.csv"), b"never answered");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let start = Instant::now();
    for i in 0..50 {
        dir.drop_file("healthy", &format!("h{i}.csv"), &data(10_000, i));
    }
    assert!(
        wait_until(Duration::from_secs(300), || d
            .metric("outpost_files_uploaded_total{server=\"healthy\"}")
            == Some(50.0)),
        "healthy server starved; log:\n{}",
        d.log_text()
    );
    let took = start.elapsed();
    if with_black_hole {
        assert_eq!(
            d.metric("outpost_files_uploaded_total{server=\"stuck\"}"),
            Some(0.0)
        );
        assert_eq!(
            d.metric("outpost_uploads_in_flight{server=\"stuck\"}"),
            Some(2.0)
        );
    }
    d.kill9();
    took
}

#[test]
fn black_holed_server_never_delays_another() {
    let alone = drain_time(false);
    let beside = drain_time(true);
    eprintln!(
        "isolation: 50 files to the healthy server in {:.2} s alone, {:.2} s beside a black-holed server",
        alone.as_secs_f64(),
        beside.as_secs_f64()
    );
}
