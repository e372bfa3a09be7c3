//! SIGHUP reloads: servers added, changed and removed without disturbing the others; a
//! file that fails validation is refused and the running configuration kept.

use std::time::Duration;

use outpost_e2e::*;

fn hup(d: &Daemon) {
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
    let dir = TestDir::new();
    let port = free_port();
    let a = server_yaml("a", &store, &ba, "");
    let cfg = dir.config(&config_yaml(&dir, port, &a));
    let mut d = Daemon::start(&dir, &cfg, port, &store);
    d.wait_ready();
    dir.drop_file("a", "one.csv", b"1");
    assert!(wait_until(Duration::from_secs(30), || d
        .metric("outpost_files_uploaded_total{server=\"a\"}")
        == Some(1.0)));

    // Add server b, change a's prefix.
    let a2 = server_yaml("a", &store, &ba, "").replace("prefix: \"pre/\"", "prefix: \"v2/\"");
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
    assert!(d.log_text().contains("unknown field `bukket`"));
    dir.drop_file("b", "four.csv", b"4");
    assert!(wait_until(Duration::from_secs(30), || d
        .metric("outpost_files_uploaded_total{server=\"b\"}")
        == Some(2.0)));

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
    assert!(wait_until(Duration::from_secs(30), || d
        .metric("outpost_files_uploaded_total{server=\"a\"}")
        == Some(3.0)));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        dir.spool().join("b/five.csv").exists(),
        "a removed server's file was touched"
    );
    assert_eq!(d.stop(), Some(0));
}
