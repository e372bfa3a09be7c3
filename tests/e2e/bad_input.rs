//! Bad input gets a clear error and loses nothing: configuration errors (exit 78 with
//! line and column), loose secret files, links and special files in the spool.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use outpost_e2e::*;

#[test]
fn config_errors_exit_78_with_line_and_column() {
    let dir = TestDir::new();
    let cases = [
        (
            "servers:\n  a:\n    bucket: bkt\n    bukket: c\n",
            ":5:5: ",
            "unknown key `bukket`",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    max_concurrent_uploads: lots\n",
            ":5:29: ",
            "invalid type",
        ),
        (
            "servers:\n  a:\n    bucket: bkt\n    multipart: { part_size: 8 parsecs }\n",
            ":5:",
            "unknown unit",
        ),
        (
            "servers:\n  \"no/slash\":\n    bucket: bkt\n",
            ":3:3: ",
            "invalid server name",
        ),
        (
            "servers:\n  a:\n    prefix: x/\n",
            ":3:3: ",
            "missing required key `bucket`",
        ),
        (
            "servers:\n  a:\n    bucket: \"unterminated\n",
            ":5:1: ",
            "unexpected end of stream",
        ),
        (
            "servers: [1, 2]\n",
            ":2:10: ",
            "must be a mapping of server names",
        ),
    ];
    for (yaml, loc, words) in cases {
        let cfg = dir.config(&format!("spool_dir: {}\n{yaml}", dir.spool().display()));
        let cfg_s = cfg.to_str().expect("utf8");
        for cmd in ["check", "run"] {
            let (code, _out, err) = outpost(&[cmd, "-c", cfg_s], &[]);
            assert_eq!(code, 78, "{cmd} on {yaml:?}: {err}");
            assert!(
                err.contains(&format!("outpost.yaml{loc}")),
                "{cmd}: no location {loc} in {err:?}"
            );
            assert!(
                err.contains(words),
                "{cmd}: reason lacks {words:?}: {err:?}"
            );
        }
    }
    // A missing file is a configuration error too.
    let (code, _, err) = outpost(&["check", "-c", "/nonexistent/outpost.yaml"], &[]);
    assert_eq!(code, 78);
    assert!(err.contains("/nonexistent/outpost.yaml"), "{err}");
}

#[test]
fn secret_file_readable_by_others_is_refused() {
    let dir = TestDir::new();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not-a-real-secret-value\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = dir.config(&format!(
        "spool_dir: {}\nservers:\n  a:\n    bucket: bkt\n    credentials: {{ mode: static, access_key_id: AKIAEXAMPLE, secret_access_key_file: {} }}\n",
        dir.spool().display(),
        secret.display()
    ));
    let cfg_s = cfg.to_str().expect("utf8");
    for cmd in ["check", "run"] {
        let (code, out, err) = outpost(&[cmd, "-c", cfg_s], &[]);
        assert_eq!(code, 78, "{cmd}: {err}");
        assert!(err.contains("readable by group or others"), "{cmd}: {err}");
        assert!(
            !out.contains("not-a-real-secret-value") && !err.contains("not-a-real-secret-value")
        );
    }
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = outpost(&["check", "-c", cfg_s], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("not-a-real-secret-value") && !err.contains("not-a-real-secret-value"));
}

#[test]
fn symlinks_and_fifos_are_refused_counted_and_never_followed() {
    let Staged {
        dir,
        bucket,
        client,
        launch,
    } = acme(&Store::s3s()).tag("links").stage();
    // A secret-looking file outside the spool, reachable only through links.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("private.csv"), "outside the spool").expect("write");
    let mut d = launch.start(&dir);
    let srv = dir.spool().join("acme");
    std::os::unix::fs::symlink(outside.join("private.csv"), srv.join("link.csv")).expect("symlink");
    std::os::unix::fs::symlink(&outside, srv.join("linkdir")).expect("symlink dir");
    let fifo = srv.join("pipe.csv");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    dir.drop_file("acme", "ok.csv", b"regular");
    let ok = wait_until(Duration::from_secs(60), || {
        d.metric("outpost_files_rejected_total{reason=\"symlink\",server=\"acme\"}") == Some(2.0)
            && d.metric("outpost_files_rejected_total{reason=\"special_file\",server=\"acme\"}")
                == Some(1.0)
            && d.metric("outpost_files_uploaded_total{server=\"acme\"}") == Some(1.0)
    });
    assert!(ok, "refusals not counted; log:\n{}", d.log_text());
    // Rescans do not count them again, and the daemon keeps working.
    std::thread::sleep(Duration::from_secs(3));
    dir.drop_file("acme", "ok2.csv", b"regular too");
    d.wait_uploaded("acme", 2.0, 60);
    assert_eq!(
        d.metric("outpost_files_rejected_total{reason=\"symlink\",server=\"acme\"}"),
        Some(2.0)
    );
    let log = d.log_text();
    assert!(
        log.contains("link.csv") && log.contains("pipe.csv"),
        "refusals not logged:\n{log}"
    );
    assert_eq!(d.stop(), Some(0));
    // Nothing was followed: the links and the fifo are still there, the outside file too,
    // and no object holds its content.
    assert!(
        std::fs::symlink_metadata(srv.join("link.csv"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::symlink_metadata(&fifo).is_ok());
    assert!(outside.join("private.csv").exists());
    rt().block_on(async {
        assert!(get(&client, &bucket, "pre/link.csv").await.is_none());
        assert!(
            get(&client, &bucket, "pre/linkdir/private.csv")
                .await
                .is_none()
        );
        assert!(get(&client, &bucket, "pre/pipe.csv").await.is_none());
    });
    assert_delivered(&client, &bucket, "pre/ok.csv", b"regular");
}

/// `check` refuses every spool layout `run` refuses, with the same words, and creates
/// nothing; `run` refuses it before touching the spool, with exit 78 (the unit's
/// `RestartPreventExitStatus=78` then stops the restart loop).
#[test]
fn check_and_run_refuse_the_same_spool_layouts_with_78() {
    let dir = TestDir::new();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let config = |spool: &std::path::Path| {
        dir.config(&format!(
            "spool_dir: {}\nlisten: 127.0.0.1:{}\nservers:\n  acme:\n    bucket: bkt\n    endpoint: http://127.0.0.1:1\n",
            spool.display(),
            free_port()
        ))
    };
    // (set-up, spool_dir, words the refusal holds)
    type Setup = fn(&std::path::Path, &std::path::Path);
    let cases: [(&str, Setup, &str); 4] = [
        (
            "server folder is a link",
            |spool, outside| {
                std::fs::create_dir_all(spool).expect("mkdir");
                std::os::unix::fs::symlink(outside, spool.join("acme")).expect("symlink");
            },
            "acme is a symbolic link",
        ),
        (
            "state folder is a link",
            |spool, outside| {
                std::fs::create_dir_all(spool).expect("mkdir");
                std::os::unix::fs::symlink(outside, spool.join(".outpost")).expect("symlink");
            },
            ".outpost is a symbolic link",
        ),
        (
            "spool_dir below a regular file",
            |spool, _| {
                let file = spool.parent().expect("parent");
                std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                std::fs::write(file, "a file, not a folder").expect("write");
            },
            "which is not a folder",
        ),
        (
            "spool_dir is a link",
            |spool, outside| {
                std::fs::create_dir_all(spool.parent().expect("parent")).expect("mkdir");
                std::os::unix::fs::symlink(outside, spool).expect("symlink");
            },
            "is a symbolic link",
        ),
    ];
    for (i, (what, setup, words)) in cases.into_iter().enumerate() {
        let spool = dir.path().join(format!("case{i}")).join("spool");
        setup(&spool, &outside);
        let cfg = config(&spool);
        let cfg_s = cfg.to_str().expect("utf8");
        for cmd in ["check", "run"] {
            let (code, _out, err) = outpost(&[cmd, "-c", cfg_s], &[]);
            assert_eq!(code, 78, "{what}: {cmd} exit {code}: {err}");
            assert!(
                err.contains(words),
                "{what}: {cmd} does not say {words:?}: {err}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&outside).expect("outside").count(),
            0,
            "{what}: something was created through the link"
        );
    }

    // A spool that does not exist yet is valid, and `check` does not create it.
    let fresh = dir.path().join("fresh").join("spool");
    let cfg = config(&fresh);
    let (code, out, err) = outpost(&["check", "-c", cfg.to_str().expect("utf8")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        !dir.path().join("fresh").exists(),
        "check created the spool"
    );
}

/// Two daemons with one instance name on one spool is a configuration error (exit 78);
/// `check` beside the running daemon still says the configuration is valid.
#[test]
fn a_second_daemon_on_the_same_instance_exits_78() {
    let nowhere = Store {
        endpoint: "http://127.0.0.1:1".into(),
        key: "AKIAEXAMPLE".into(),
        secret: "not-a-secret".into(),
    };
    let Running {
        dir: _dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&nowhere).bucket("bkt").start();
    let cfg_s = launch.cfg_str();
    let (code, _, err) = outpost(&["check", "-c", cfg_s], &[]);
    assert_eq!(code, 0, "check beside a running daemon: {err}");
    let (code, _, err) = outpost(&["run", "-c", cfg_s], &[]);
    assert_eq!(code, 78, "second daemon: {err}");
    assert!(err.contains("already running"), "{err}");
    assert_eq!(d.stop(), Some(0));
}
