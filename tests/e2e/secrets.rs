//! No secret ever appears in a log line, a metric, or command output: a run through
//! every command and an error path at `RUST_LOG=trace` with JSON logs is searched for
//! the secret key, session tokens and signatures.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use outpost_e2e::*;

#[test]
fn no_secret_in_logs_metrics_outputs_or_failure_records() {
    let iam = super::cross_account_iam();
    let tag = fastrand::u32(..);
    let bucket = bucket_name("secrets");
    let user = format!("sec{tag}");
    let publisher = iam.user(
        &user,
        &[
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
            "sts:AssumeRole",
        ],
    );
    let role_arn = iam.py(&format!(
        "s3.create_bucket(Bucket='{bucket}')\n\
         trust={{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Principal':{{'AWS':'arn:aws:iam::123456789012:user/{user}'}},'Action':'sts:AssumeRole'}}]}}\n\
         r=iam.create_role(RoleName='r{tag}', AssumeRolePolicyDocument=json.dumps(trust))\n\
         iam.put_role_policy(RoleName='r{tag}', PolicyName='w', PolicyDocument=json.dumps({{'Version':'2012-10-17','Statement':[{{'Effect':'Allow','Action':['s3:PutObject'],'Resource':'*'}}]}}))\n\
         print(r['Role']['Arn'])"
    ));
    let dir = TestDir::new();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{}\n", publisher.secret)).expect("secret");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dead_yaml = format!(
        "  dead:\n    bucket: {bucket}\n    endpoint: {dead}\n    path_style: true\n    credentials: {{ mode: static, access_key_id: {}, secret_access_key_file: {} }}\n    retry: {{ initial_backoff: 10ms, max_backoff: 20ms, max_attempts: 2 }}\n",
        publisher.key,
        secret_file.display()
    );
    // The daemon's own identity (for assume_role) is the same user, from the environment.
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&publisher)
        .name("stat")
        .bucket(&bucket)
        .dir(dir)
        .top("publisher_account_id: \"123456789012\"\n")
        .extra(&format!(
            "    credentials: {{ mode: static, access_key_id: {}, secret_access_key_file: {} }}\n    multipart: {{ threshold: 5MiB, part_size: 5MiB }}\n",
            publisher.key,
            secret_file.display()
        ))
        .server(Server::new("role", &publisher.endpoint, &bucket).extra(&format!(
            "    credentials: {{ mode: assume_role, role_arn: \"{role_arn}\", external_id: ext-{tag} }}\n"
        )))
        .server_text(&dead_yaml)
        .env("RUST_LOG", "trace,aws_sigv4=trace,hyper=trace")
        .env("AWS_ENDPOINT_URL_STS", &iam.endpoint)
        .start();
    let port = d.port;
    let cfg_s = launch.cfg_str().to_owned();
    dir.drop_file("stat", "a.csv", b"static");
    dir.drop_file("stat", "big.bin", &data(6 * 1024 * 1024, 1));
    dir.drop_file("role", "b.csv", b"role");
    dir.drop_file("dead", "c.csv", b"dead");
    assert!(
        wait_until(Duration::from_secs(60), || {
            d.metric("outpost_files_uploaded_total{server=\"stat\"}") == Some(2.0)
                && d.metric("outpost_files_uploaded_total{server=\"role\"}") == Some(1.0)
                && dir.failed().len() == 2
        }),
        "log tail:\n{}",
        d.log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(d.stop(), Some(0));
    let mut everything = d.log_text();
    everything.push_str(&metrics);
    let run_envs: Vec<(&str, &str)> = vec![
        ("RUST_LOG", "trace"),
        ("AWS_ACCESS_KEY_ID", publisher.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", publisher.secret.as_str()),
        ("AWS_ENDPOINT_URL_STS", iam.endpoint.as_str()),
    ];
    for args in [
        vec!["--log-format", "json", "check", "-c", &cfg_s],
        vec!["--log-format", "json", "status", "-c", &cfg_s],
        vec!["--log-format", "json", "verify", "-c", &cfg_s],
        vec!["--log-format", "json", "policy", "-c", &cfg_s, "role"],
        vec![
            "--log-format",
            "json",
            "requeue",
            "-c",
            &cfg_s,
            "dead",
            "--all",
        ],
    ] {
        let (_, out, err) = outpost(&args, &run_envs);
        everything.push_str(&out);
        everything.push_str(&err);
    }
    for f in files_below(&dir.spool().join(".failed")) {
        everything.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    assert!(
        everything.len() > 10_000,
        "too little output to be a meaningful check"
    );
    assert!(
        !everything.contains(&publisher.secret),
        "the secret access key was printed"
    );
    let lower = everything.to_lowercase();
    for needle in [
        "signature=",
        "x-amz-security-token:",
        "\"x-amz-security-token\"",
        "sessiontoken",
        "secret_access_key\":",
        "calculated signing parameters",
    ] {
        assert!(!lower.contains(needle), "{needle:?} appears in the output");
    }
    eprintln!(
        "secrets: searched {} bytes of logs, metrics, command output and failure records",
        everything.len()
    );
}

/// A rotated secret is taken up by SIGHUP: a static-credentials server blocked on a
/// wrong secret heals without a restart once the file holds the right one, although
/// the configuration file did not change. Neither secret is ever printed.
#[test]
fn sighup_takes_up_a_rotated_secret_file() {
    let store = Store::s3s();
    let bucket = bucket_name("rotate");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let dir = TestDir::new();
    let secret_file = dir.path().join("secret");
    let wrong = format!("wrongsecret{:016x}", fastrand::u64(..));
    std::fs::write(&secret_file, format!("{wrong}\n")).expect("secret");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Probes of the blocked server 30 s and more apart: healing within seconds of the
    // SIGHUP means the reload probed at once with the new client.
    let Running {
        dir, daemon: mut d, ..
    } = acme(&store)
        .bucket(&bucket)
        .dir(dir)
        .retry("60s", "5m", 50)
        .extra(&format!(
            "    credentials: {{ mode: static, access_key_id: {}, secret_access_key_file: {} }}\n",
            store.key,
            secret_file.display()
        ))
        .start();
    dir.drop_file("acme", "a.csv", b"one");
    dir.drop_file("acme", "b.csv", b"two");
    assert!(
        wait_until(Duration::from_secs(30), || d
            .metric("outpost_server_blocked{server=\"acme\"}")
            == Some(1.0)),
        "not blocked on the wrong secret; log:\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("outpost_queue_files{server=\"acme\"}"),
        Some(2.0),
        "files not pending"
    );
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());

    // Rotate: the same file now holds the right secret; the YAML is unchanged.
    std::fs::write(&secret_file, format!("{}\n", store.secret)).expect("rotate");
    super::reload::hup(&d);
    assert!(
        wait_until(Duration::from_secs(20), || d
            .metric("outpost_files_uploaded_total{server=\"acme\"}")
            == Some(2.0)),
        "not healed after SIGHUP; log:\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("outpost_server_blocked{server=\"acme\"}"),
        Some(0.0)
    );
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    rt().block_on(async {
        assert!(get(&store.client(), &bucket, "pre/a.csv").await.is_some());
    });
    assert_eq!(d.stop(), Some(0));
    let log = d.log_text();
    assert!(
        log.contains("secret_access_key_file changed"),
        "reload does not say why: {log}"
    );
    assert!(
        !log.contains(&wrong) && !log.contains(&store.secret),
        "a secret was logged"
    );
}
