//! Order at the destination, observed through a proxy: `publish_last` control files go
//! after the data beside them, and a path dropped again is published after the earlier
//! file of that path, in drop order.

use std::time::Duration;

use outpost_e2e::proxy::FaultProxy;
use outpost_e2e::*;

#[test]
fn publish_last_files_arrive_after_every_data_file_beside_them() {
    let store = Store::s3s();
    let client = store.client();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let (bucket, dir, mut d) = acme_on(
        &store,
        Some(&proxy.endpoint),
        "last",
        "    publish_last: [\"*.info\"]\n    max_concurrent_uploads: 8\n",
    );
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
    assert!(wait_until(Duration::from_secs(120), || d
        .metric("outpost_files_uploaded_total{server=\"acme\"}")
        == Some(52.0)));
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
    rt().block_on(async {
        assert_eq!(
            get(&client, &bucket, "pre/batch/batch.info")
                .await
                .as_deref(),
            Some(&b"50 parts"[..])
        );
    });
}

/// Files found by the start-up scan with equal timestamps (a scan cannot tell their
/// drop order): the `publish_last` file still goes after the data beside it.
#[test]
fn publish_last_holds_for_files_found_at_start_up_with_equal_timestamps() {
    let store = Store::s3s();
    let bucket = bucket_name("lastscan");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let through = Store {
        endpoint: proxy.endpoint.clone(),
        ..store.clone()
    };
    let dir = TestDir::new();
    let port = free_port();
    let cfg = dir.config(&config_yaml(
        &dir,
        port,
        &server_yaml(
            "acme",
            &through,
            &bucket,
            "    publish_last: [\"*.info\"]\n    max_concurrent_uploads: 8\n",
        ),
    ));
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
    let mut d = Daemon::start(&dir, &cfg, port, &through);
    d.wait_ready();
    assert!(wait_until(Duration::from_secs(60), || d
        .metric("outpost_files_uploaded_total{server=\"acme\"}")
        == Some(21.0)));
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
    let client = store.client();
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 1);
    let (bucket, dir, mut d) = acme_on(
        &store,
        Some(&proxy.endpoint),
        "redrop",
        "    max_concurrent_uploads: 8\n",
    );
    // Version 1 is large (slow to send); versions 2 and 3 are small and dropped while it
    // is in flight: they must not overtake it.
    dir.drop_file("acme", "same.csv", &data(30 * 1024 * 1024, 1));
    std::thread::sleep(Duration::from_millis(50));
    dir.drop_file("acme", "same.csv", b"version 2");
    std::thread::sleep(Duration::from_millis(50));
    dir.drop_file("acme", "same.csv", b"version 3");
    assert!(wait_until(Duration::from_secs(120), || d
        .metric("outpost_files_uploaded_total{server=\"acme\"}")
        == Some(3.0)));
    assert_eq!(d.stop(), Some(0));
    let writes: Vec<String> = proxy
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .map(|(op, _)| op.clone())
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    rt().block_on(async {
        assert_eq!(
            get(&client, &bucket, "pre/same.csv").await.as_deref(),
            Some(&b"version 3"[..])
        );
    });
}
