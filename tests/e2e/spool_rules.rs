//! The spool protocol as exporters see it: in-progress names wait for their rename,
//! the marker and quiet rules, and failed files that `requeue` puts back.

use std::time::Duration;

use outpost_e2e::*;

fn setup(tag: &str, extra: &str) -> (Store, String, TestDir, Daemon) {
    let store = Store::s3s();
    let Running {
        bucket,
        dir,
        daemon,
        ..
    } = acme(&store).tag(tag).extra(extra).start();
    (store, bucket, dir, daemon)
}

fn uploaded(d: &Daemon) -> f64 {
    d.metric("outpost_files_uploaded_total{server=\"acme\"}")
        .unwrap_or(-1.0)
}

#[test]
fn in_progress_names_wait_for_their_rename() {
    let (store, bucket, dir, d) = setup("inprog", "");
    let srv = dir.spool().join("acme");
    std::fs::create_dir_all(srv.join("dir/.hidden")).expect("mkdir");
    for name in [
        "x.csv.tmp",
        ".dot.csv",
        "y.part",
        "z.partial",
        "dir/.hidden/inside.csv",
    ] {
        std::fs::write(srv.join(name), "in progress").expect("write");
    }
    dir.drop_file("acme", "sentinel.csv", b"s");
    assert!(wait_until(Duration::from_secs(60), || uploaded(&d) == 1.0));
    std::thread::sleep(Duration::from_secs(5)); // more than two rescans
    assert_eq!(uploaded(&d), 1.0, "an in-progress name was published");
    std::fs::rename(srv.join("x.csv.tmp"), srv.join("x.csv")).expect("rename");
    std::fs::rename(srv.join("dir/.hidden"), srv.join("dir/shown")).expect("rename dir");
    assert!(
        wait_until(Duration::from_secs(60), || uploaded(&d) == 3.0),
        "log:\n{}",
        d.log_text()
    );
    rt().block_on(async {
        let c = store.client();
        assert!(get(&c, &bucket, "pre/x.csv").await.is_some());
        assert!(get(&c, &bucket, "pre/dir/shown/inside.csv").await.is_some());
        assert!(get(&c, &bucket, "pre/y.part").await.is_none());
    });
    assert!(srv.join("y.part").exists() && srv.join(".dot.csv").exists());
}

#[test]
fn marker_rule_publishes_once_the_marker_exists_and_removes_it() {
    let (store, bucket, dir, d) = setup("marker", "    completion: marker\n");
    let srv = dir.spool().join("acme");
    std::fs::write(srv.join("m.csv"), "marked data").expect("write");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(uploaded(&d), 0.0, "published before its marker");
    std::fs::write(srv.join("m.csv.ready"), "").expect("marker");
    assert!(wait_until(Duration::from_secs(60), || uploaded(&d) == 1.0));
    assert!(
        wait_until(Duration::from_secs(10), || !srv
            .join("m.csv.ready")
            .exists()),
        "marker left behind"
    );
    assert!(!srv.join("m.csv").exists());
    rt().block_on(async {
        assert_eq!(
            get(&store.client(), &bucket, "pre/m.csv").await.as_deref(),
            Some(&b"marked data"[..])
        );
        assert!(
            get(&store.client(), &bucket, "pre/m.csv.ready")
                .await
                .is_none()
        );
    });
}

#[test]
fn quiet_rule_waits_until_the_file_stops_changing() {
    let (store, bucket, dir, d) = setup("quiet", "    completion: quiet\n    quiet_period: 2s\n");
    let p = dir.spool().join("acme").join("q.csv");
    // Keep appending for a while: nothing may go out meanwhile.
    for i in 0..6 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .expect("open");
        writeln!(f, "line {i}").expect("append");
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(uploaded(&d), 0.0, "published while still changing");
    }
    assert!(wait_until(Duration::from_secs(60), || uploaded(&d) == 1.0));
    let want: String = (0..6).map(|i| format!("line {i}\n")).collect();
    rt().block_on(async {
        assert_eq!(
            get(&store.client(), &bucket, "pre/q.csv").await.as_deref(),
            Some(want.as_bytes())
        );
    });
}

#[test]
fn failed_files_are_recorded_shown_by_status_and_requeued() {
    // The endpoint is wrong (nothing listens there): every attempt fails with a
    // connection error until retries run out, and the file goes to .failed/.
    let store = Store::moto();
    let bucket = bucket_name("requeue");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let Running {
        dir,
        daemon: mut d,
        launch,
        ..
    } = acme(&store)
        .bucket(&bucket)
        .via(&dead)
        .retry("50ms", "100ms", 2)
        .start();
    let cfg_s = launch.cfg_str().to_owned();
    dir.drop_file("acme", "sub/lost.csv", b"precious");
    assert!(
        wait_until(Duration::from_secs(60), || dir.failed().len() == 2),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(
        d.metric("outpost_files_failed_total{reason=\"retries_exhausted\",server=\"acme\"}"),
        Some(1.0)
    );
    assert_eq!(d.stop(), Some(0));
    let failed = dir.spool().join(".failed/acme/sub");
    assert_eq!(
        std::fs::read(failed.join("lost.csv")).expect("failed copy"),
        b"precious"
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(failed.join(".lost.csv.error.json")).expect("record"),
    )
    .expect("json");
    assert_eq!(record["relative_path"], "sub/lost.csv");
    assert_eq!(record["bucket"], bucket.as_str());
    assert_eq!(record["key"], "pre/sub/lost.csv");
    assert_eq!(record["attempts"], 2);
    assert!(
        record["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connection")),
        "{record}"
    );
    // status works with the daemon down.
    let (code, out, err) = outpost(&["status", "-c", &cfg_s, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(st[0]["server"], "acme");
    assert_eq!(st[0]["failed_files"], 1);
    assert_eq!(st[0]["pending_files"], 0);
    assert_eq!(st[0]["daemon_running"], false);
    // The operator fixes the endpoint and requeues; the file goes out.
    rt().block_on(create_bucket(&store.client(), &bucket));
    dir.config(&config_yaml(
        &dir,
        launch.port,
        &Server::new("acme", &store.endpoint, &bucket)
            .retry("50ms", "100ms", 2)
            .yaml(),
    ));
    let (code, out, err) = outpost(&["requeue", "-c", &cfg_s, "acme", "--all"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 file(s) requeued"), "{out}");
    assert!(dir.failed().is_empty());
    let (_, out, _) = outpost(&["status", "-c", &cfg_s, "--json"], &[]);
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(st[0]["pending_files"], 1);
    let d = launch.start(&dir);
    assert!(wait_until(Duration::from_secs(60), || uploaded(&d) == 1.0));
    rt().block_on(async {
        assert_eq!(
            get(&store.client(), &bucket, "pre/sub/lost.csv")
                .await
                .as_deref(),
            Some(&b"precious"[..])
        );
    });
}
