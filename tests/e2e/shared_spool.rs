//! Two daemons on one spool (a shared POSIX filesystem): each file is claimed by one of
//! them, and the claims of a daemon that died are taken over once its lease expired.

use std::time::{Duration, Instant};

use outpost_e2e::*;

fn shared_config(
    dir: &TestDir,
    port: u16,
    instance: &str,
    store: &Store,
    bucket: &str,
) -> std::path::PathBuf {
    let yaml = config_yaml(
        dir,
        port,
        &server_yaml("acme", store, bucket, "    max_concurrent_uploads: 8\n"),
    );
    let p = dir.path().join(format!("{instance}.yaml"));
    std::fs::write(&p, format!("instance: {instance}\nlease_ttl: 2s\n{yaml}")).expect("config");
    p
}

fn total_uploaded(ds: &[&Daemon]) -> f64 {
    ds.iter()
        .map(|d| {
            d.metric("outpost_files_uploaded_total{server=\"acme\"}")
                .unwrap_or(0.0)
        })
        .sum()
}

/// A daemon killed while it holds claims — among them several versions of one path —
/// has them taken over by another once its lease expired: nothing is lost, every file
/// arrives byte-identical, and the path ends with its last version (drop order holds
/// across the take-over).
#[test]
fn a_dead_daemons_claims_are_taken_over_and_nothing_is_lost() {
    use outpost_e2e::proxy::FaultProxy;
    let store = Store::s3s();
    let client = store.client();
    let bucket = bucket_name("shared");
    rt().block_on(create_bucket(&client, &bucket));
    // Alpha's uploads crawl (50 KB/s per request), so it is killed holding claims.
    let proxy = FaultProxy::start(&store.endpoint, 0.0, Duration::from_secs(1), 5);
    proxy
        .throttle
        .store(50_000, std::sync::atomic::Ordering::SeqCst);
    let slow = Store {
        endpoint: proxy.endpoint.clone(),
        ..store.clone()
    };
    let dir = TestDir::new();
    let (pa, pb) = (free_port(), free_port());
    let ca = shared_config(&dir, pa, "alpha", &slow, &bucket);
    let cb = shared_config(&dir, pb, "beta", &store, &bucket);
    let mut a = Daemon::start(&dir, &ca, pa, &slow);
    a.wait_ready();
    let mut files: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("d{}/f{i}.csv", i % 7), data(20_000 + i, i as u64)))
        .collect();
    for (rel, bytes) in &files {
        dir.drop_file("acme", rel, bytes);
    }
    // Five versions of one path, each dropped once alpha claimed the one before.
    let mut last = Vec::new();
    for v in 0..5u64 {
        last = data(30_000 + v as usize, 900 + v);
        dir.drop_file("acme", "same/latest.csv", &last);
        assert!(wait_until(Duration::from_secs(10), || !dir
            .spool()
            .join("acme/same/latest.csv")
            .exists()));
    }
    files.push(("same/latest.csv".into(), last));
    a.kill9();
    let held: Vec<_> = files_below(&dir.spool().join(".outpost/alpha/claims"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    let versions_held = held
        .iter()
        .filter(|p| p.to_string_lossy().contains("latest.csv"))
        .count();
    assert!(
        !held.is_empty() && versions_held >= 2,
        "alpha held {} claims, {versions_held} versions of same/latest.csv",
        held.len()
    );
    // Beta starts; alpha's lease (2 s) expires and beta takes its claims over.
    let mut b = Daemon::start(&dir, &cb, pb, &store);
    b.wait_ready();
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()
            && dir.left_in_spool("acme").is_empty()),
        "not drained; beta log:\n{}",
        b.log_text()
    );
    assert!(
        b.log_text().contains("took over the claims"),
        "{}",
        b.log_text()
    );
    eprintln!(
        "shared spool: alpha killed holding {} claims ({versions_held} versions of one path); beta took them over",
        held.len()
    );
    assert_eq!(b.stop(), Some(0));
    assert!(dir.failed().is_empty());
    rt().block_on(async {
        for (rel, want) in &files {
            assert!(
                get(&client, &bucket, &format!("pre/{rel}"))
                    .await
                    .as_deref()
                    == Some(want.as_slice()),
                "{rel}: not the last version"
            );
        }
    });
}

/// Drains 600 files with `daemons` daemons: the rate, and the files each published.
fn drain(daemons: usize) -> (f64, Vec<f64>) {
    let store = Store::s3s();
    let bucket = bucket_name("drain");
    rt().block_on(create_bucket(&store.client(), &bucket));
    let dir = TestDir::new();
    let n = 600;
    // Drop first, then start: both daemons find the backlog at start-up.
    for i in 0..n {
        dir.drop_file("acme", &format!("x/f{i}.csv"), &data(4096, i as u64));
    }
    let mut ds = Vec::new();
    let start = Instant::now();
    for k in 0..daemons {
        let port = free_port();
        let cfg = shared_config(&dir, port, &format!("i{k}"), &store, &bucket);
        ds.push(Daemon::start(&dir, &cfg, port, &store));
    }
    let refs: Vec<&Daemon> = ds.iter().collect();
    assert!(wait_until(Duration::from_secs(300), || total_uploaded(
        &refs
    ) >= n as f64));
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let per: Vec<f64> = refs
        .iter()
        .map(|d| {
            d.metric("outpost_files_uploaded_total{server=\"acme\"}")
                .unwrap_or(0.0)
        })
        .collect();
    for d in &mut ds {
        assert_eq!(d.stop(), Some(0));
    }
    (rate, per)
}

/// Two daemons drain one backlog together: every file published exactly once (no file
/// claimed by both: the upload count equals the backlog), by both daemons. The rate of
/// two against one is printed as a figure, not asserted (docs/scaling.md).
#[test]
fn drain_rate_of_two_daemons_against_one() {
    let (one, _) = drain(1);
    let (two, per_daemon) = drain(2);
    assert_eq!(per_daemon.iter().sum::<f64>(), 600.0, "{per_daemon:?}");
    assert!(
        per_daemon.iter().all(|n| *n > 0.0),
        "one daemon did all the work: {per_daemon:?}"
    );
    eprintln!(
        "shared spool drain rate: one daemon {one:.0} files/s, two daemons {two:.0} files/s ({:.2}x); split {per_daemon:?}",
        two / one
    );
}

fn twin_config(
    dir: &TestDir,
    port: u16,
    instance: &str,
    store: &Store,
    bucket: &str,
    extra: &str,
) -> std::path::PathBuf {
    let yaml = config_yaml(dir, port, &server_yaml("acme", store, bucket, extra));
    let p = dir.path().join(format!("{instance}.yaml"));
    std::fs::write(&p, format!("instance: {instance}\nlease_ttl: 60s\n{yaml}")).expect("config");
    p
}

/// The upload id an instance's journal records for server acme, if any.
fn recorded_upload(dir: &TestDir, instance: &str) -> Option<String> {
    files_below(&dir.spool().join(format!(".outpost/{instance}/claims/acme")))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "upload"))
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["upload_id"].as_str().map(str::to_owned))
        .find(|id| !id.is_empty())
}

/// Issue 11.8: two daemons on one spool publish the same relative path. Alpha holds the
/// intent of a CreateMultipartUpload whose answer it never recorded (a kill, hand-made
/// here as the previous version journals it), beta meanwhile uploads its own file of that
/// path. Looking for its lost upload, alpha must leave beta's upload alone: it is
/// recorded in beta's journal.
#[test]
fn a_daemon_never_aborts_another_daemons_upload_of_the_same_path() {
    let publisher = Store::rgw_publisher();
    let (bucket, oc) = rgw_bucket("twins", true);
    // Beta's parts crawl through a proxy, so its upload stays open a while.
    let proxy =
        crate::crash::SlowProxy::start(&publisher.endpoint, Duration::ZERO, Duration::from_secs(3));
    let via = Store {
        endpoint: proxy.endpoint.clone(),
        ..publisher.clone()
    };
    let dir = TestDir::new();
    let extra = "    checksum: md5\n    multipart: { threshold: 8MiB, part_size: 5MiB, concurrency: 1 }\n    timeouts: { read: 5s }\n";
    let (pa, pb) = (free_port(), free_port());
    let ca = twin_config(&dir, pa, "alpha", &publisher, &bucket, extra);
    let cb = twin_config(&dir, pb, "beta", &via, &bucket, extra);
    // Alpha's claim of same/x.bin and its unresolved intent, from just now.
    let claims = dir.spool().join(".outpost/alpha/claims/acme");
    std::fs::create_dir_all(&claims).expect("claims folder");
    let ours = data(10 << 20, 2);
    let data_path = claims.join("00000000000000000001~same%2Fx.bin.data");
    std::fs::write(&data_path, &ours).expect("claim");
    let mtime_ns = {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&data_path).expect("stat");
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let intent = serde_json::json!({
        "upload_id": "",
        "bucket": bucket,
        "key": "pre/same/x.bin",
        "size": ours.len(),
        "mtime_ns": mtime_ns,
        "part_size": 5 << 20,
        "suspect_since_unix": now - 2,
    });
    std::fs::write(
        claims.join("00000000000000000001.upload"),
        intent.to_string(),
    )
    .expect("journal");
    // Beta begins its upload of the same path after alpha's intent.
    let mut b = Daemon::start(&dir, &cb, pb, &via);
    b.wait_ready();
    let theirs = data(16 << 20, 1);
    dir.drop_file("acme", "same/x.bin", &theirs);
    assert!(
        wait_until(Duration::from_secs(30), || recorded_upload(&dir, "beta")
            .is_some()),
        "beta recorded no upload; log:\n{}",
        b.log_text()
    );
    let beta_id = recorded_upload(&dir, "beta").expect("beta's upload");
    let mut a = Daemon::start(&dir, &ca, pa, &publisher);
    a.wait_ready();
    let alpha_done = || {
        files_below(&claims)
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "data"))
    };
    assert!(
        wait_until(Duration::from_secs(60), alpha_done),
        "alpha did not publish its file; log:\n{}",
        a.log_text()
    );
    let alpha_log = a.log_text();
    let open: Vec<String> = rt().block_on(async {
        oc.list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .expect("list uploads")
            .uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(str::to_owned))
            .collect()
    });
    assert!(
        open.contains(&beta_id),
        "alpha aborted beta's live upload {beta_id} (open now: {open:?}); alpha's log:\n{alpha_log}"
    );
    assert!(
        !alpha_log.contains("aborted multipart upload"),
        "alpha aborted an upload; log:\n{alpha_log}"
    );
    // Beta completes its own upload, undisturbed, last.
    assert!(
        wait_until(Duration::from_secs(120), || dir.claimed().is_empty()),
        "beta did not publish; log:\n{}",
        b.log_text()
    );
    assert_eq!(
        b.metric("outpost_upload_errors_total{class=\"transient\",server=\"acme\"}"),
        Some(0.0),
        "beta's upload was disturbed; log:\n{}",
        b.log_text()
    );
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    rt().block_on(async {
        assert!(get(&oc, &bucket, "pre/same/x.bin").await.as_deref() == Some(theirs.as_slice()));
    });
    assert_eq!(crate::crash::uploads_left(&oc, &bucket), 0);
}
