//! Order at the destination, observed through a proxy: `publish_last` control files go
//! after the data beside them, and a path dropped again is published after the earlier
//! file of that path, in drop order.

use std::time::Duration;

use outpost_e2e::proxy::FaultProxy;
use outpost_e2e::*;

#[test]
fn publish_last_files_arrive_after_every_data_file_beside_them() {
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&store)
        .tag("last")
        .via(&proxy.endpoint)
        .extra("    publish_last: [\"*.info\"]\n    max_concurrent_uploads: 8\n")
        .start();
    // A sub-folder's file is not "beside" the .info and may go at any time.
    dir.drop_file("acme", "batch/sub/x.csv", &data(100, 0));
    for i in 0..50 {
        dir.drop_file(
            "acme",
            &format!("batch/part-{i:02}.csv"),
            &data(50_000 + i * 1000, i as u64),
        );
    }
    dir.drop_file("acme", "batch/batch.info", b"50 parts");
    d.wait_uploaded("acme", 52.0, 120);
    assert_eq!(d.stop(), Some(0));
    let arrivals = proxy.arrivals.lock().expect("lock").clone();
    let pos = |suffix: &str| {
        arrivals
            .iter()
            .position(|(_, p)| p.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} never arrived"))
    };
    let info = pos("/batch/batch.info");
    for i in 0..50 {
        assert!(
            pos(&format!("/batch/part-{i:02}.csv")) < info,
            "part {i} arrived after the .info"
        );
    }
    eprintln!(
        "publish_last: .info arrived {} of {}",
        info + 1,
        arrivals.len()
    );
    assert_delivered(&client, &bucket, "pre/batch/batch.info", b"50 parts");
}

/// Files found by the start-up scan with equal timestamps (a scan cannot tell their
/// drop order): the `publish_last` file still goes after the data beside it.
#[test]
fn publish_last_holds_for_files_found_at_start_up_with_equal_timestamps() {
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let staged = acme(&store)
        .tag("lastscan")
        .via(&proxy.endpoint)
        .extra("    publish_last: [\"*.info\"]\n    max_concurrent_uploads: 8\n")
        .stage();
    let dir = &staged.dir;
    dir.drop_file("acme", "b/a.info", b"control");
    for i in 0..20 {
        dir.drop_file("acme", &format!("b/z{i:02}.csv"), &data(10_000, i));
    }
    let same = std::process::Command::new("touch")
        .args(["-d", "2026-11-01 00:00:00"])
        .args((0..20).map(|i| dir.spool().join(format!("acme/b/z{i:02}.csv"))))
        .arg(dir.spool().join("acme/b/a.info"))
        .status()
        .expect("touch");
    assert!(same.success());
    let mut d = staged.launch.start(dir);
    d.wait_uploaded("acme", 21.0, 60);
    assert_eq!(d.stop(), Some(0));
    let arrivals = proxy.arrivals.lock().expect("lock").clone();
    let last = arrivals.last().map(|(_, p)| p.clone()).unwrap_or_default();
    assert!(
        last.ends_with("/b/a.info"),
        "the .info was not last: {arrivals:?}"
    );
}

#[test]
fn a_path_dropped_again_is_published_after_the_earlier_file() {
    let store = Store::s3s();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let Running {
        dir,
        daemon: mut d,
        bucket,
        client,
        ..
    } = acme(&store)
        .tag("redrop")
        .via(&proxy.endpoint)
        .extra("    max_concurrent_uploads: 8\n")
        .start();
    // Version 1 is large (slow to send); versions 2 and 3 are small and dropped while it
    // is in flight: they must not overtake it.
    dir.drop_file("acme", "same.csv", &data(30 * 1024 * 1024, 1));
    std::thread::sleep(Duration::from_millis(50));
    dir.drop_file("acme", "same.csv", b"version 2");
    std::thread::sleep(Duration::from_millis(50));
    dir.drop_file("acme", "same.csv", b"version 3");
    d.wait_uploaded("acme", 3.0, 120);
    assert_eq!(d.stop(), Some(0));
    let writes: Vec<String> = proxy
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .map(|(op, _)| op.clone())
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert_delivered(&client, &bucket, "pre/same.csv", b"version 3");
}

/// Issue 11.4: a sibling that goes to `.failed/` at once (a name that is not UTF-8)
/// holds the folder's `publish_last` file — also after a restart, when the hold is
/// derived from `.failed/` — and removing the failed file releases it.
#[test]
fn publish_last_waits_for_a_sibling_failed_at_once_also_after_a_restart() {
    use std::os::unix::ffi::OsStringExt;
    let Staged {
        dir,
        bucket,
        client: c,
        launch,
    } = acme(&Store::s3s())
        .tag("lastfail")
        .extra("    publish_last: [\"*.info\"]\n")
        .stage();
    // The whole batch is in place before the daemon starts (one scan finds it).
    let batch = dir.spool().join("acme/batch");
    std::fs::create_dir_all(&batch).expect("mkdir");
    std::fs::write(batch.join("1.csv"), b"one").expect("write");
    std::fs::write(batch.join("2.csv"), b"two").expect("write");
    let bad = std::ffi::OsString::from_vec(b"bad\xffname.csv".to_vec());
    std::fs::write(batch.join(&bad), b"three").expect("write");
    std::fs::write(batch.join("batch.info"), b"control").expect("write");
    let has = |key: &str| rt().block_on(get(&c, &bucket, key)).is_some();
    let mut d = launch.start(&dir);
    assert!(
        wait_until(Duration::from_secs(30), || has("pre/batch/1.csv")
            && has("pre/batch/2.csv")),
        "log:\n{}",
        d.log_text()
    );
    let failed = dir.spool().join(".failed/acme/batch").join(&bad);
    assert!(failed.exists(), "{:?}", dir.failed());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !has("pre/batch/batch.info"),
        "batch.info went out beside a failed file"
    );
    assert_eq!(d.stop(), Some(0));
    // After a restart the hold comes from `.failed/` itself.
    let mut d = launch.start(&dir);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !has("pre/batch/batch.info"),
        "batch.info went out after a restart"
    );
    let (_, status, _) = outpost(&["status", "-c", launch.cfg_str()], &[]);
    assert!(
        status.contains("bad"),
        "status does not say what holds it:\n{status}"
    );
    // The operator removes the failed file: the next rescan releases the control file.
    std::fs::remove_file(&failed).expect("rm");
    assert!(
        wait_until(Duration::from_secs(30), || has("pre/batch/batch.info")),
        "log:\n{}",
        d.log_text()
    );
    assert_eq!(d.stop(), Some(0));
}
