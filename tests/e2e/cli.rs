//! The one-shot commands as a user meets them at a shell: a closed pipe, a missing
//! identity, a summary in the words of the YAML file.

use std::process::{Command, Stdio};

use outpost_e2e::*;

/// A configuration with one server and nothing else.
fn one_server(dir: &TestDir) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.spool().join("acme")).expect("spool");
    dir.config(&format!(
        "spool_dir: {}\nservers:\n  acme:\n    bucket: acme-bucket\n    region: us-east-1\n    completion: marker\n    marker_suffix: .ready\n    publish_last: [\"*.info\"]\n",
        dir.spool().display()
    ))
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = TestDir::new();
    let cfg = one_server(&dir);
    for args in [vec!["check", "-c"], vec!["status", "-c"]] {
        // The read end is closed before the command writes: every write is EPIPE
        // (`outpost check | head -0`).
        let mut child = Command::new(outpost_bin())
            .args(&args)
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_reader_that_goes_away_does_not_hide_a_failure() {
    let dir = TestDir::new();
    let cfg = one_server(&dir);
    // Nothing to requeue under that name: the command fails (exit 1) whether or not
    // anyone reads what it prints.
    let mut child = Command::new(outpost_bin())
        .args(["requeue", "-c"])
        .arg(&cfg)
        .args(["acme", "no-such-file.csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-file.csv"), "{err}");
}

#[test]
fn check_never_prints_the_external_id() {
    let dir = TestDir::new();
    let cfg = dir.config(&format!(
        "spool_dir: {}\nservers:\n  acme:\n    bucket: acme-bucket\n    credentials: {{ mode: assume_role, role_arn: \"arn:aws:iam::111122223333:role/w\", external_id: ext-do-not-print }}\n",
        dir.spool().display()
    ));
    let (code, out, err) = outpost(&["check", "-c", cfg.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("role/w"), "{out}");
    assert!(
        !out.contains("ext-do-not-print") && !err.contains("ext-do-not-print"),
        "{out}{err}"
    );
}

#[test]
fn policy_without_an_identity_says_so_in_one_line() {
    let dir = TestDir::new();
    let cfg = one_server(&dir);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    // No credentials anywhere; instance metadata asked at a closed loopback port.
    let out = Command::new(outpost_bin())
        .args(["policy", "-c"])
        .arg(&cfg)
        .arg("acme")
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .output()
        .expect("policy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line, got:\n{err}");
    assert!(lines[0].contains("publisher_account_id"), "{err}");
}

#[test]
fn check_speaks_yaml_not_rust() {
    let dir = TestDir::new();
    let cfg = one_server(&dir);
    let (code, out, err) = outpost(&["check", "-c", cfg.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for rust in [
        "Marker {", "Quiet {", "Rename", "Internal", "Delete", "Some(", "\"*",
    ] {
        assert!(!out.contains(rust), "Rust Debug text {rust:?} in:\n{out}");
    }
    assert!(out.contains("marker"), "{out}");
}
