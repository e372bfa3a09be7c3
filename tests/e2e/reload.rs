//! SIGHUP reloads: servers added, changed and removed without disturbing the others; a
//! file that fails validation is refused and the running configuration kept.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use outpost_e2e::*;

/// Sends SIGHUP to the daemon.
pub(crate) fn hup(d: &Daemon) {
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status();
}

#[test]
fn sighup_adds_changes_and_removes_servers_and_refuses_bad_files() {
    let store = Store::s3s();
    let client = store.client();
    let (ba, bb) = (bucket_name("rla"), bucket_name("rlb"));
    rt().block_on(async {
        create_bucket(&client, &ba).await;
        create_bucket(&client, &bb).await;
    });
    let Running {
        dir, daemon: mut d, ..
    } = acme(&store).name("a").bucket(&ba).start();
    let port = d.port;
    dir.drop_file("a", "one.csv", b"1");
    d.wait_uploaded("a", 1.0, 30);

    // Add server b, change a's prefix.
    let a2 = Server::new("a", &store.endpoint, &ba).prefix("v2/").yaml();
    let b = server_yaml("b", &store, &bb, "");
    dir.config(&config_yaml(&dir, port, &format!("{a2}{b}")));
    hup(&d);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log_text()
            .contains("configuration reloaded")),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        dir.spool().join("b").is_dir(),
        "server folder of b not created"
    );
    dir.drop_file("a", "two.csv", b"2");
    dir.drop_file("b", "three.csv", b"3");
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.metric("outpost_files_uploaded_total{server=\"a\"}") == Some(2.0)
                && d.metric("outpost_files_uploaded_total{server=\"b\"}") == Some(1.0)
        }),
        "log:\n{}",
        d.log_text()
    );
    rt().block_on(async {
        assert!(get(&client, &ba, "pre/one.csv").await.is_some());
        assert!(
            get(&client, &ba, "v2/two.csv").await.is_some(),
            "changed prefix not applied"
        );
        assert!(get(&client, &bb, "pre/three.csv").await.is_some());
    });

    // A broken file is refused; everything keeps running as before.
    dir.config("servers:\n  a:\n    bukket: nope\n");
    hup(&d);
    assert!(wait_until(Duration::from_secs(30), || d
        .log_text()
        .contains("new configuration refused")));
    assert!(d.log_text().contains("unknown key `bukket`"));
    dir.drop_file("b", "four.csv", b"4");
    d.wait_uploaded("b", 2.0, 30);

    // Remove b: its folder is left alone; a keeps working.
    dir.config(&config_yaml(&dir, port, &a2));
    hup(&d);
    assert!(wait_until(Duration::from_secs(30), || d
        .log_text()
        .matches("configuration reloaded")
        .count()
        == 2));
    dir.drop_file("b", "five.csv", b"5");
    dir.drop_file("a", "six.csv", b"6");
    d.wait_uploaded("a", 3.0, 30);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        dir.spool().join("b/five.csv").exists(),
        "a removed server's file was touched"
    );
    assert_eq!(d.stop(), Some(0));
}

/// A removed server leaves no series behind (a blocked one would alert forever), and
/// `instance` and `lease_ttl` changed by SIGHUP are announced as applying at the next
/// restart, like the other keys that shape the process.
#[test]
fn sighup_removes_a_removed_servers_series_and_warns_of_restart_only_keys() {
    let store = Store::s3s();
    let client = store.client();
    let ba = bucket_name("rlc");
    rt().block_on(create_bucket(&client, &ba));
    let dir = TestDir::new();
    let a = server_yaml("a", &store, &ba, "");
    // b signs with a wrong secret: the destination refuses us and b is blocked.
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret\n").expect("secret");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let b = server_yaml(
        "b",
        &store,
        &ba,
        &format!(
            "    credentials: {{ mode: static, access_key_id: {}, secret_access_key_file: {} }}\n",
            store.key,
            wrong.display()
        ),
    );
    let Running {
        dir, daemon: mut d, ..
    } = acme(&store)
        .name("a")
        .bucket(&ba)
        .dir(dir)
        .server_text(&b)
        .start();
    let port = d.port;
    dir.drop_file("b", "held.csv", b"b");
    dir.drop_file("a", "one.csv", b"1");
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.metric("outpost_server_blocked{server=\"b\"}") == Some(1.0)
                && d.metric("outpost_files_uploaded_total{server=\"a\"}") == Some(1.0)
        }),
        "b not blocked; log:\n{}",
        d.log_text()
    );

    // Remove b; change instance and lease_ttl.
    dir.config(&format!(
        "instance: elsewhere\nlease_ttl: 7s\n{}",
        config_yaml(&dir, port, &a)
    ));
    hup(&d);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log_text()
            .contains("configuration reloaded")),
        "log:\n{}",
        d.log_text()
    );
    let series_of_b = || {
        http_get(port, "/metrics").map(|(_, body)| {
            body.lines()
                .filter(|l| l.contains("server=\"b\""))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || series_of_b()
            .is_some_and(|v| v.is_empty())),
        "series of the removed server b remain: {:?}",
        series_of_b()
    );
    let log = d.log_text();
    for key in ["instance", "lease_ttl"] {
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("applies at the next restart")
                && l.contains(&format!("key=\"{key}\""))),
            "no restart warning for {key}; log:\n{log}"
        );
    }
    // a keeps working, in its running instance folder.
    dir.drop_file("a", "two.csv", b"2");
    d.wait_uploaded("a", 2.0, 30);
    assert_eq!(d.metric("outpost_server_blocked{server=\"a\"}"), Some(0.0));
    assert!(!dir.spool().join(".outpost/elsewhere").exists());
    // b's claimed file stays claimed, untouched, for when b is configured again.
    assert_eq!(dir.claimed().len(), 1, "{:?}", dir.claimed());
    assert!(dir.failed().is_empty());
    assert_eq!(d.stop(), Some(0));
}

/// A listener that never accepts: connections open, requests are never answered (the
/// client's read timeout fires).
fn black_hole() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", l.local_addr().expect("addr"));
    (l, endpoint)
}

/// A file whose last attempt ends after a reload removed its server is not lost and not
/// silently dropped: it stays claimed (logged), and goes out when the server is
/// configured again.
#[test]
fn a_file_given_up_after_its_server_was_removed_stays_claimed_until_it_returns() {
    let store = Store::s3s();
    let bucket = bucket_name("rlgone");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let (_hole, hole) = black_hole();
    let one_attempt = |endpoint: &str| {
        Server::new("b", endpoint, &bucket)
            .retry("100ms", "2s", 1)
            .extra("    timeouts: { connect: 1s, read: 4s }\n")
    };
    let a = server_yaml("a", &store, &bucket, "");
    let Running {
        dir, daemon: mut d, ..
    } = acme(&store)
        .name("a")
        .bucket(&bucket)
        .server(one_attempt(&hole))
        .start();
    let port = d.port;
    dir.drop_file("b", "late.csv", b"late");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric("outpost_uploads_in_flight{server=\"b\"}")
            == Some(1.0)),
        "log:\n{}",
        d.log_text()
    );
    // Removed while its only attempt hangs; the attempt then times out: give-up time.
    dir.config(&config_yaml(&dir, port, &a));
    hup(&d);
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log_text()
            .contains("it stays claimed until the server is configured again")),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(dir.claimed().len(), 1, "{:?}", dir.claimed());
    assert!(dir.failed().is_empty(), "{:?}", dir.failed());
    // b is back, now reachable: the claimed file goes out.
    dir.config(&config_yaml(
        &dir,
        port,
        &format!("{a}{}", one_attempt(&store.endpoint).yaml()),
    ));
    hup(&d);
    d.wait_uploaded("b", 1.0, 30);
    assert!(dir.claimed().is_empty(), "{:?}", dir.claimed());
    rt().block_on(async {
        assert_eq!(
            get(&store.client(), &bucket, "pre/late.csv")
                .await
                .as_deref(),
            Some(&b"late"[..])
        );
    });
    assert_eq!(d.stop(), Some(0));
}

/// SIGTERM waits for a give-up under way — cleaning up an unrecorded multipart upload on
/// a server that does not answer, then moving the file to `.failed/` — instead of
/// cutting it off.
#[test]
fn shutdown_waits_for_a_give_up_under_way() {
    let (_hole, hole) = black_hole();
    let nowhere = Store {
        endpoint: hole,
        key: "AKIAEXAMPLE".into(),
        secret: "not-a-secret".into(),
    };
    let Running {
        dir, daemon: mut d, ..
    } = acme(&nowhere)
        .bucket("bkt")
        .retry("100ms", "2s", 1)
        .extra("    timeouts: { connect: 1s, read: 2s }\n    multipart: { threshold: 5MiB, part_size: 5MiB }\n")
        .shutdown_grace("40s")
        .start();
    dir.drop_file("acme", "big.bin", &data(6 << 20, 7));
    // The only attempt times out on CreateMultipartUpload; the give-up then looks for
    // the upload it may have begun (unanswered too, retried) before failing the file.
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log_text()
            .contains("upload failed; no attempt left")),
        "log:\n{}",
        d.log_text()
    );
    // The only attempt is the last: nothing says it is retried.
    assert!(!d.log_text().contains("retrying"), "{}", d.log_text());
    assert_eq!(d.stop(), Some(0));
    let log = d.log_text();
    let failed = dir.failed();
    assert!(
        failed.iter().any(|p| p.ends_with("acme/big.bin")),
        "the give-up was cut off: failed {failed:?}, claimed {:?}; log:\n{log}",
        dir.claimed()
    );
    assert!(dir.claimed().is_empty(), "{:?}", dir.claimed());
    assert!(log.contains("retries_exhausted"), "{log}");
}
